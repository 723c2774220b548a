# mDNS for one Leither node (RFC 6762 / RFC 6763), querier side: the socket, the receive loop,
# and browsing for other nodes (`<name>._leither._tcp.local.` PTR, SRV, TXT and A records).
# The responder that advertises this node (probing, announcing, answering, conflicts) is
# leither.mdnsresp, an optional part (leither.parts): stock ESP32 firmware keeps UDP 5353 for
# ESP-IDF's own responder, so a board running the ROMFS bundle browses only and its bundle
# leaves the responder out; a frozen firmware (ESP-IDF's responder off) carries it. make()
# gives the node whichever it has. Packets go through leither.dns and the socket details live
# in leither.port.net. Runs unchanged on MicroPython and CPython.
#
# Querier, by RFC 6762 section: §5.2 continuous queries at 0, 1, 3, 7... s with known answers
# (§7.1, only those past half their TTL); instances lacking SRV/TXT/A resolved by direct
# questions, once a second per name; announcements gathered meanwhile; cache-flush records
# replace what they flush; goodbyes (TTL 0) forget.
# Heap: the browse cache is bounded in records and bytes and freed when no browse runs;
# received packets are at most _RECV_MAX bytes.
"""mDNS/DNS-SD querier for `_leither._tcp.local.` (browse), and the node's choice of mDNS."""

from . import dns
from .compat import const, ticks_diff, ticks_ms
from .errors import DecodeError

SERVICE = "_leither._tcp.local"
MDNS_GROUP = "224.0.0.251"
MDNS_PORT = const(5353)

_RECV_MAX = const(1500)  # bytes read per datagram: one Ethernet MTU; bigger ones are dropped
_CACHE_MAX = const(48)  # browse cache, records: 16 nodes x (PTR, SRV, TXT)
CACHE_BYTES = const(10240)  # and at most this much heap: 48 typical records take 9.3 KB on a
# 32-bit board (measured); names of hostile length count in full. Freed when the browse ends.
_ENTRY_BYTES = const(144)  # heap of one cache entry besides its strings (Record, [r, ticks])
_RESULTS_MAX = const(16)  # nodes returned by one browse: a home LAN
_OOM_RETRY_MS = const(50)  # wait before receiving again after a MemoryError

# States of the responder (public: the runtime and tests read .state).
IDLE = const(0)
PROBING = const(1)
ANNOUNCED = const(2)
STOPPED = const(3)


def _entry_bytes(record):
    """Estimated heap of a cached record (PTR, SRV, TXT or A): entry, name and rdata."""
    rdata = record.rdata
    if record.rtype == dns.TYPE_SRV:
        size = len(rdata[3])
    elif record.rtype == dns.TYPE_TXT:
        size = 0
        for item in rdata:
            size += len(item) + 16
    else:
        size = len(rdata)
    return _ENTRY_BYTES + len(record.name) + size


try:
    import asyncio

    sleep_ms = asyncio.sleep_ms  # MicroPython
except AttributeError:  # CPython

    async def sleep_ms(ms):
        await asyncio.sleep(ms / 1000)


def _default_log(line):
    print("mdns:", line)


def make(name, port, txt, addresses, log=None):
    """The node's mDNS: the responder (leither.mdnsresp) where this bundle has it, else a
    Querier that browses but does not advertise the node (said once in the log)."""
    try:
        from .mdnsresp import MDNS as cls
    except ImportError:
        from . import parts  # only now: a node with the responder keeps no parts module

        if "mdns_responder" in parts.present():
            raise  # it is here and failed to import: a bug to see, not a missing part
        (log or _default_log)(parts.message("mdns_responder") +
                              ": browsing only, this node is not advertised")
        cls = Querier
    return cls(name, port, txt, addresses, log=log)


class Querier:
    """One node's view of other nodes over mDNS, without advertising itself.

    name: the node name (instance and host label); port: the RPC port; txt: dict of TXT keys;
    addresses: the node's IPv4 addresses (strings); sock: a socket from
    leither.port.net.open_mdns_socket() or None to open one at start(); log: a callable
    taking one line. leither.mdnsresp.MDNS adds the responder on the same attributes.
    """

    def __init__(self, name, port, txt, addresses, sock=None, service=SERVICE, log=None):
        self.base_name = name
        self.name = name
        self.port = port
        self.txt = dict(txt)
        self.addresses = list(addresses)
        self.service = service
        self.sock = sock
        self._own_sock = sock is None
        self.log = log or _default_log
        self.responding = False  # True once a responder answers for the node (mdnsresp)
        self.state = IDLE
        self.dropped = 0  # packets dropped as malformed
        self.out_of_memory = 0  # receives or packets given up for lack of heap (retried)
        self.announced = asyncio.Event()  # set by the responder once the name is ours
        self._cache = []  # [record, ticks received] while a browse runs, at most _CACHE_MAX
        self._cache_bytes = 0  # their estimated heap, at most CACHE_BYTES
        self._browsing = 0
        self._tasks = []
        self._names()

    def _names(self):
        label = dns.escape_label(self.name)
        self.instance = label + "." + self.service
        self.host = label + ".local"

    def _send(self, data, ip, port):
        from .port import net

        return net.sendto(self.sock, data, ip, port)

    def _spawn(self, coro):
        task = asyncio.create_task(coro)
        self._tasks = [t for t in self._tasks if not t.done()] + [task]
        return task

    # ---- incoming packets ---------------------------------------------------------------

    def handle_packet(self, data, src):
        """Process one datagram from src = (ip, port). Bad input is counted and dropped."""
        try:
            msg = dns.decode(data)
        except DecodeError as err:
            self.dropped += 1
            if self.dropped <= 3 or self.dropped % 100 == 0:  # a flood must not flood the log
                self.log(f"dropped a bad packet from {src[0]} ({self.dropped} so far): {err}")
            return
        if msg.is_response:
            self._on_response(msg)
        else:
            self._on_query(msg, src)

    def _on_response(self, msg):
        if self._browsing:
            self._cache_records(msg.answers + msg.additionals)

    def _on_query(self, msg, src):
        pass  # a querier answers nothing (leither.mdnsresp does)

    def update_txt(self, changes):
        """Merge changes into the TXT keys (a None value removes the key); the responder
        announces them (leither.mdnsresp), a querier only keeps them."""
        for key in changes:
            if changes[key] is None:
                self.txt.pop(key, None)
            else:
                self.txt[key] = changes[key]

    # ---- querier ------------------------------------------------------------------------

    def _cache_records(self, records):
        service = self.service
        suffix = "." + service.lower()
        now = ticks_ms()
        hosts = [r.rdata[3].lower() for r, _ in self._cache if r.rtype == dns.TYPE_SRV]
        hosts += [r.rdata[3].lower() for r in records if r.rtype == dns.TYPE_SRV]
        for record in records:
            lname = record.name.lower()
            if record.rtype == dns.TYPE_PTR:
                wanted = dns.name_eq(record.name, service)
            elif record.rtype in (dns.TYPE_SRV, dns.TYPE_TXT):
                wanted = lname.endswith(suffix)
            elif record.rtype == dns.TYPE_A:
                wanted = lname in hosts
            else:
                wanted = False
            if not wanted:
                continue
            for entry in self._cache:
                old = entry[0]
                if old.same_data(record) or (record.flush and old.rtype == record.rtype
                                             and dns.name_eq(old.name, record.name)
                                             and record.rtype != dns.TYPE_A):
                    self._cache.remove(entry)
                    self._cache_bytes -= _entry_bytes(old)
                    break
            if record.ttl == 0:
                continue  # a goodbye: forget it
            cost = _entry_bytes(record)
            while self._cache and (len(self._cache) >= _CACHE_MAX or
                                   self._cache_bytes + cost > CACHE_BYTES):
                self._cache_bytes -= _entry_bytes(self._cache.pop(0)[0])  # oldest first
            self._cache.append([record, now])
            self._cache_bytes += cost

    def _cached(self, rtype, name):
        return [r for r, _ in self._cache if r.rtype == rtype and dns.name_eq(r.name, name)]

    def _known_answers(self, rtype, name):
        now = ticks_ms()
        out = []
        for record, at in self._cache:
            if record.rtype == rtype and dns.name_eq(record.name, name):
                left = record.ttl - ticks_diff(now, at) // 1000
                if left * 2 >= record.ttl:  # §7.1: only answers past half their TTL
                    out.append(dns.Record(record.name, rtype, record.rdata, left))
        return out

    def _query(self, questions, known=()):
        msg = dns.Message(0, questions=questions, answers=list(known))
        self._send(dns.encode(msg), MDNS_GROUP, MDNS_PORT)

    async def browse(self, service=None, timeout_ms=3000, include_self=False):
        """Collect the instances of service seen within timeout_ms.

        Returns a list of dicts: name, instance, host, port, addresses, txt (dict), id.
        Queries at 0, 1, 3, 7... s (RFC 6762 §5.2) with known answers, resolves instances
        that lack SRV/TXT/A with direct queries, and gathers announcements meanwhile.
        """
        service = service or self.service
        saved = self.service
        self.service = service  # what _cache_records keeps
        if not self._browsing:
            self._cache = []
            self._cache_bytes = 0
        self._browsing += 1
        try:
            start = ticks_ms()
            next_ptr = 0
            gap = 1000
            asked = {}
            while True:
                elapsed = ticks_diff(ticks_ms(), start)
                if elapsed >= timeout_ms:
                    break
                if elapsed >= next_ptr:
                    self._query([dns.Question(service, dns.TYPE_PTR)],
                                self._known_answers(dns.TYPE_PTR, service))
                    next_ptr += gap
                    gap *= 2
                self._resolve(service, asked)
                await sleep_ms(min(100, timeout_ms - elapsed))
            return self._results(service, include_self)
        finally:
            self.service = saved
            self._browsing -= 1
            if not self._browsing:
                # Nothing reads the cache between browses: give its heap back.
                self._cache = []
                self._cache_bytes = 0

    def _resolve(self, service, asked):
        """Ask directly for what an instance still lacks; once a second per name."""
        now = ticks_ms()
        for ptr in self._cached(dns.TYPE_PTR, service):
            instance = ptr.rdata
            questions = []
            srv = self._cached(dns.TYPE_SRV, instance)
            if not srv or not self._cached(dns.TYPE_TXT, instance):
                questions = [dns.Question(instance, dns.TYPE_SRV),
                             dns.Question(instance, dns.TYPE_TXT)]
            elif not self._cached(dns.TYPE_A, srv[0].rdata[3]):
                questions = [dns.Question(srv[0].rdata[3], dns.TYPE_A)]
            if not questions:
                continue
            key = questions[0].name.lower()
            if key in asked and ticks_diff(now, asked[key]) < 1000:
                continue
            if len(asked) > _RESULTS_MAX * 2:
                asked.clear()
            asked[key] = now
            self._query(questions)

    def _results(self, service, include_self):
        out = []
        for ptr in self._cached(dns.TYPE_PTR, service):
            instance = ptr.rdata
            if not include_self and dns.name_eq(instance, self.instance):
                continue
            srv = self._cached(dns.TYPE_SRV, instance)
            if not srv:
                continue
            txt = self._cached(dns.TYPE_TXT, instance)
            txt = dns.txt_decode(txt[0].rdata) if txt else {}
            host = srv[0].rdata[3]
            label = dns.split_name(instance)[0]
            out.append({"name": label, "instance": instance, "host": host,
                        "port": srv[0].rdata[2], "txt": txt, "id": txt.get("id"),
                        "addresses": [r.rdata for r in self._cached(dns.TYPE_A, host)]})
            if len(out) >= _RESULTS_MAX:
                break
        return out

    # ---- lifecycle ----------------------------------------------------------------------

    async def start(self):
        """Open the socket if none was given and begin; returns at once. A responder then
        probes for the name (await .announced.wait() to know when it is ours)."""
        if self.sock is None:
            from .port import net

            try:
                self.sock = net.open_mdns_socket(self.addresses[0] if self.addresses else None)
            except net.PortBusyError as err:
                self.log(f"{err}: query-only mode")
                self.sock = net.open_query_socket()
                self.responding = False
        self._spawn(self._receive_loop())
        self._begin()

    def _begin(self):
        pass  # the responder's tasks (leither.mdnsresp)

    def goodbye(self):
        """Stop answering (a responder first sends its records with TTL 0); no await."""
        self.state = STOPPED

    def close(self):
        """Cancel our tasks; close the socket if we opened it."""
        self.state = STOPPED
        for task in self._tasks:
            try:
                task.cancel()
            except RuntimeError:
                pass  # MicroPython after SIGINT: the loop died inside this task
        self._tasks = []
        if self._own_sock and self.sock is not None:
            self.sock.close()
            self.sock = None

    async def stop(self):
        """Say goodbye and stop; closes the socket only if we opened it."""
        self.goodbye()
        tasks = self._tasks
        self.close()
        await sleep_ms(0)
        del tasks

    async def _receive_loop(self):
        from .port import net

        while True:
            try:
                data, src = await net.recvfrom(self.sock, _RECV_MAX)
            except MemoryError:
                # No _RECV_MAX-byte block free right now (the heap is busy or fragmented, e.g.
                # during a bulk transfer): the datagram stays queued in the stack. Free what
                # can be freed and try again shortly; mDNS must outlive a busy moment.
                self.out_of_memory += 1
                import gc

                gc.collect()
                await sleep_ms(_OOM_RETRY_MS)
                continue
            except OSError as err:
                self.log(f"receive failed: {err}")
                await sleep_ms(100)
                continue
            try:
                self.handle_packet(data, src)
            except Exception as err:  # noqa: BLE001 - hostile input must never stop the node
                data = None  # give its heap back before anything else
                self.dropped += 1
                if isinstance(err, MemoryError):
                    self.out_of_memory += 1
                elif self.dropped <= 3 or self.dropped % 100 == 0:
                    self.log(f"packet from {src[0]} dropped: {type(err).__name__} {err}")


# ---- standalone runner ----------------------------------------------------------------------
# `-m leither.mdns` runs one responder or a browse from the command line (tests and benches on
# the host use it); the runner lives in leither.mdnsrun, which a board's bundle leaves out.

if __name__ == "__main__":
    from .mdnsrun import main

    main()
