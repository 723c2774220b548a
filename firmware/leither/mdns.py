# mDNS responder and querier for one Leither node (RFC 6762 / RFC 6763): advertises
# `<name>._leither._tcp.local.` with SRV, TXT and A records, and browses for other nodes.
# The engine is handed its socket and the node's facts; packets go through leither.dns and the
# socket details live in leither.port.net. Runs unchanged on MicroPython and CPython.
#
# What it does, by RFC 6762 section:
#   §8.1 probing: 3 probes 250 ms apart (first after 0-250 ms, QU), authority records attached;
#        a conflicting answer renames the node "name-2", "name-3"... and probes again; more
#        than 15 conflicts in 10 s wait 5 s before the next probe.
#   §8.2 simultaneous probes: tie-break on the sorted authority records; the loser waits 1 s
#        and probes again (then meets the winner's answer and renames).
#   §8.3 announcing: 2 unsolicited responses 1 s apart, unique records with cache-flush.
#   §8.4 updates: update_txt() announces the new TXT at once (twice, 1 s apart).
#   §9   conflict after announcing: back to probing.
#   §6   answers to PTR/SRV/TXT/A/ANY and to _services._dns-sd._udp; NSEC for absent types;
#        unique-only answers at once, answers with shared records after 20-120 ms; a record is
#        multicast at most once per second (probe defence: 250 ms); QU questions answered by
#        unicast unless the record was not multicast within a quarter of its TTL; one-shot
#        queries from ports other than 5353 answered by unicast with their ID (§6.7).
#   §7.1 known-answer suppression; §7.4 duplicate answer suppression.
#   §10.1 goodbye: all records with TTL 0 on stop().
# Heap: all state is a handful of records; the browse cache and the pending answers are bounded
# below; received packets are at most _RECV_MAX bytes.
"""mDNS/DNS-SD responder and querier for `_leither._tcp.local.`"""

import os

from . import dns
from .compat import const, ticks_diff, ticks_ms
from .errors import DecodeError

SERVICE = "_leither._tcp.local"
META_QUERY = "_services._dns-sd._udp.local"  # RFC 6763 §9
MDNS_GROUP = "224.0.0.251"
MDNS_PORT = const(5353)

_TTL_HOST = const(120)  # s: records naming a host (A, SRV, NSEC), RFC 6762 §10
_TTL_OTHER = const(4500)  # s: the rest (PTR, TXT), RFC 6762 §10
_TTL_LEGACY = const(10)  # s: cap for one-shot unicast replies, RFC 6762 §6.7
_PROBE_GAP = const(250)  # ms between probes, §8.1
_PROBES = const(3)  # §8.1
_ANNOUNCES = const(2)  # §8.3: at least two
_ANNOUNCE_GAP = const(1000)  # ms, §8.3
_LOST_WAIT = const(1000)  # ms after losing a tie-break, §8.2
_RATE_MS = const(1000)  # ms: one multicast of a record per second, §6
_DEFEND_MS = const(250)  # ms: the faster rate allowed when defending against a probe, §6
_CONFLICT_WINDOW = const(10000)  # ms; more than _CONFLICT_MAX conflicts in it -> wait, §8.1
_CONFLICT_MAX = const(15)
_CONFLICT_WAIT = const(5000)  # ms
_RECV_MAX = const(1500)  # bytes read per datagram: one Ethernet MTU; bigger ones are dropped
_CACHE_MAX = const(48)  # browse cache, records: 16 nodes x (PTR, SRV, TXT)
CACHE_BYTES = const(10240)  # and at most this much heap: 48 typical records take 9.3 KB on a
# 32-bit board (measured); names of hostile length count in full. Freed when the browse ends.
_ENTRY_BYTES = const(144)  # heap of one cache entry besides its strings (Record, [r, ticks])
_RESULTS_MAX = const(16)  # nodes returned by one browse: a home LAN
_UNICAST_PER_S = const(20)  # unicast replies per second: QU and one-shot askers on a home LAN
_PENDING_MAX = const(12)  # records waiting for a delayed multicast: all of ours, twice over
_OOM_RETRY_MS = const(50)  # wait before receiving again after a MemoryError

# States of the responder (public: the runtime and tests read .state).
IDLE = const(0)
PROBING = const(1)
ANNOUNCED = const(2)
STOPPED = const(3)


def _rand_ms(low, high):
    raw = os.urandom(2)
    return low + (raw[0] * 256 + raw[1]) % (high - low + 1)


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


def _tiebreak(ours, theirs):
    """RFC 6762 §8.2: >0 when our records win, <0 when theirs do, 0 when identical."""
    a = sorted([(r.rclass, r.rtype, dns.rdata_bytes(r)) for r in ours])
    b = sorted([(r.rclass, r.rtype, dns.rdata_bytes(r)) for r in theirs])
    for x, y in zip(a, b):
        if x != y:
            return 1 if x > y else -1
    return (len(a) > len(b)) - (len(a) < len(b))


try:
    import asyncio

    _sleep_ms = asyncio.sleep_ms  # MicroPython

    async def _wait_event(event, ms):
        try:
            await asyncio.wait_for_ms(event.wait(), ms)
        except asyncio.TimeoutError:  # noqa: UP041 - MicroPython has its own class
            pass

except AttributeError:  # CPython

    async def _sleep_ms(ms):
        await asyncio.sleep(ms / 1000)

    async def _wait_event(event, ms):
        try:
            await asyncio.wait_for(event.wait(), ms / 1000)
        except asyncio.TimeoutError:  # noqa: UP041 - MicroPython has its own class
            pass


def _collect():
    import gc

    gc.collect()


def _default_log(line):
    print("mdns:", line)


class MDNS:
    """One node's mDNS presence and its view of other nodes.

    name: the node name (instance and host label); port: the RPC port; txt: dict of TXT keys;
    addresses: the node's IPv4 addresses (strings); sock: a socket from
    leither.port.net.open_mdns_socket() or None to open one at start(); log: a callable
    taking one line. After conflicts .name holds the name actually in use.
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
        self.responding = True  # False in query-only mode (5353 busy, see port.net)
        self.state = IDLE
        self.dropped = 0  # packets dropped as malformed
        self.out_of_memory = 0  # receives or packets given up for lack of heap (retried)
        self.announced = asyncio.Event()
        self._rename_count = 1
        self._conflict = False
        self._lost = False
        self._conflict_times = []
        self._last_mcast = {}  # record -> ticks of its last multicast (our few records)
        self._pending = []  # records for the next delayed multicast, at most _PENDING_MAX
        self._pending_due = None
        self._wake = asyncio.Event()
        self._cache = []  # [record, ticks received] while a browse runs, at most _CACHE_MAX
        self._cache_bytes = 0  # their estimated heap, at most CACHE_BYTES
        self._browsing = 0
        self._tasks = []
        self._txt_task = None
        self._unicast_window = ticks_ms()
        self._unicast_count = 0
        self._build()

    # ---- our records --------------------------------------------------------------------

    def _build(self):
        label = dns.escape_label(self.name)
        self.instance = label + "." + self.service
        self.host = label + ".local"
        flush = True
        self.ptr = dns.Record(self.service, dns.TYPE_PTR, self.instance, _TTL_OTHER)
        self.meta = dns.Record(META_QUERY, dns.TYPE_PTR, self.service, _TTL_OTHER)
        self.srv = dns.Record(self.instance, dns.TYPE_SRV, (0, 0, self.port, self.host),
                              _TTL_HOST, flush=flush)
        self.txt_record = dns.Record(self.instance, dns.TYPE_TXT, dns.txt_encode(self.txt),
                                     _TTL_OTHER, flush=flush)
        self.a_records = [dns.Record(self.host, dns.TYPE_A, ip, _TTL_HOST, flush=flush)
                          for ip in self.addresses]
        self.nsec_instance = dns.Record(self.instance, dns.TYPE_NSEC,
                                        (self.instance, (dns.TYPE_TXT, dns.TYPE_SRV)),
                                        _TTL_HOST, flush=flush)
        self.nsec_host = dns.Record(self.host, dns.TYPE_NSEC, (self.host, (dns.TYPE_A,)),
                                    _TTL_HOST, flush=flush)
        self._last_mcast = {}

    def records(self):
        """Every record we answer for, shared ones first."""
        return [self.ptr, self.meta, self.srv, self.txt_record] + self.a_records + [
            self.nsec_instance, self.nsec_host]

    def _unique(self):
        return [self.srv, self.txt_record] + self.a_records + [self.nsec_instance,
                                                                self.nsec_host]

    def _is_shared(self, record):
        return record is self.ptr or record is self.meta

    # ---- sending ------------------------------------------------------------------------

    def _send(self, data, ip, port):
        from .port import net

        return net.sendto(self.sock, data, ip, port)

    def _send_records(self, answers, additionals=(), ip=MDNS_GROUP, port=MDNS_PORT, ttl=None):
        if ttl is not None:
            answers = [dns.Record(r.name, r.rtype, r.rdata, ttl, r.rclass, r.flush)
                       for r in answers]
            additionals = []
        msg = dns.Message(dns.FLAG_QR | dns.FLAG_AA, answers=list(answers),
                          additionals=list(additionals))
        self._send(dns.encode(msg), ip, port)

    def _multicast(self, records, min_gap=_RATE_MS, additionals=()):
        """Multicast the records not sent within min_gap ms (RFC 6762 §6 rate limit)."""
        now = ticks_ms()
        allowed = []
        for record in records:
            last = self._last_mcast.get(record)
            if last is None or ticks_diff(now, last) >= min_gap:
                allowed.append(record)
                self._last_mcast[record] = now
        if allowed:
            extra = [r for r in additionals if r not in allowed]
            self._send_records(allowed, extra)
        return allowed

    def _announce(self, records):
        now = ticks_ms()
        for record in records:
            self._last_mcast[record] = now
        self._send_records(records)

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

    def _owns_name(self, name):
        return dns.name_eq(name, self.instance) or dns.name_eq(name, self.host)

    def _on_response(self, msg):
        records = msg.answers + msg.additionals
        if self._browsing:
            self._cache_records(records)
        if self._pending:
            # §7.4: someone else just multicast a record we were about to send.
            for record in records:
                for mine in self._pending:
                    if mine.same_data(record) and record.ttl * 2 >= mine.ttl:
                        self._pending.remove(mine)
                        break
        if not self.responding or self.state not in (PROBING, ANNOUNCED):
            return
        unique = self._unique()
        for record in records:
            if not self._owns_name(record.name):
                continue
            if any(record.same_data(mine) for mine in unique):
                continue  # our own packet looped back, or another copy of the truth
            if record.ttl == 0:
                continue  # a goodbye: its sender is giving the name up
            if self.state == PROBING:
                self._conflict = True
                return
            if any(record.rtype == mine.rtype and
                                  dns.name_eq(record.name, mine.name) for mine in unique):
                self.log(f"conflict on {record.name} after announcing: probing again")
                self._restart_probe()
                return

    def _on_query(self, msg, src):
        if not self.responding:
            return
        if self.state == PROBING:
            self._check_probe(msg)
            return
        if self.state != ANNOUNCED:
            return
        if not msg.questions:
            # §7.2: the rest of a truncated query's known answers: drop what they cover.
            self._pending = [r for r in self._pending if not self._known(r, msg.answers)]
            return
        legacy = src[1] != MDNS_PORT
        answers = []
        unicast = []
        for q in msg.questions:
            if q.qclass not in (dns.CLASS_IN, dns.CLASS_ANY):
                continue
            for record in self._answers_for(q):
                if record in answers or record in unicast:
                    continue
                if self._known(record, msg.answers):
                    continue  # §7.1 known-answer suppression
                if q.unicast and not legacy and self._recently_sent(record, record.ttl * 250):
                    unicast.append(record)
                else:
                    answers.append(record)
        if not answers and not unicast:
            return
        if (legacy or unicast) and not self._unicast_allowed():
            # Over the unicast reply budget (a flood of spoofed queries must not turn the node
            # into an amplifier): multicast instead (rate-limited per record) or stay quiet.
            if legacy:
                return
            answers += unicast
            unicast = []
        if legacy:
            # §6.7: reply to the asker's port with its ID and questions, short TTLs, no flush.
            replies = [dns.Record(r.name, r.rtype, r.rdata, min(r.ttl, _TTL_LEGACY), r.rclass)
                       for r in answers]
            out = dns.Message(dns.FLAG_QR | dns.FLAG_AA, msg.id, questions=msg.questions,
                              answers=replies)
            self._send(dns.encode(out), src[0], src[1])
            return
        if unicast:
            self._send_records(unicast, self._additionals(unicast, msg.answers), src[0],
                               src[1])
        if not answers:
            return
        probe = bool(msg.authorities)
        if msg.flags & dns.FLAG_TC:
            # §7.2: more known answers follow in further packets: wait 400-500 ms for them.
            self._schedule(answers, _rand_ms(400, 500))
        elif all(not self._is_shared(r) for r in answers):
            # Unique records only: answer at once (§6); a probe gets the defence rate.
            self._multicast(answers, _DEFEND_MS if probe else _RATE_MS,
                            self._additionals(answers, msg.answers))
        else:
            self._schedule(answers, _rand_ms(20, 120))

    def _answers_for(self, q):
        out = []
        for record in (self.ptr, self.meta, self.srv, self.txt_record) + tuple(self.a_records):
            if dns.name_eq(q.name, record.name) and q.qtype in (record.rtype, dns.TYPE_ANY):
                out.append(record)
        if not out and q.qtype != dns.TYPE_ANY:
            # §6.1: we own the name but not this type: say so with NSEC.
            if dns.name_eq(q.name, self.host):
                out.append(self.nsec_host)
            elif dns.name_eq(q.name, self.instance):
                out.append(self.nsec_instance)
        return out

    def _additionals(self, answers, known):
        """RFC 6763 §12: PTR brings SRV, TXT and A; SRV brings A; minus what the asker has."""
        extra = []
        for record in answers:
            if record is self.ptr:
                extra += [self.srv, self.txt_record] + self.a_records
            elif record is self.srv:
                extra += self.a_records
        if extra:
            if self.srv in extra:
                extra.append(self.nsec_instance)
            extra.append(self.nsec_host)
        out = []
        for record in extra:
            if (record not in answers and record not in out
                    and not self._known(record, known)):
                out.append(record)
        return out

    @staticmethod
    def _known(record, known_answers):
        # §7.1: suppress when the asker holds the record with at least half our TTL.
        for k in known_answers:
            if k.ttl * 2 >= record.ttl and record.same_data(k):
                return True
        return False

    def _unicast_allowed(self):
        """At most _UNICAST_PER_S unicast replies in any one-second window."""
        now = ticks_ms()
        if ticks_diff(now, self._unicast_window) >= 1000:
            self._unicast_window = now
            self._unicast_count = 0
        self._unicast_count += 1
        return self._unicast_count <= _UNICAST_PER_S

    def _recently_sent(self, record, window_ms):
        last = self._last_mcast.get(record)
        return last is not None and ticks_diff(ticks_ms(), last) < window_ms

    def _schedule(self, records, delay_ms):
        for record in records:
            if record not in self._pending and len(self._pending) < _PENDING_MAX:
                self._pending.append(record)
        due = ticks_ms() + delay_ms
        if self._pending_due is None or ticks_diff(due, self._pending_due) < 0:
            self._pending_due = due
        self._wake.set()

    def _check_probe(self, msg):
        """§8.2: another host probing for one of our names at the same time."""
        for name, ours in ((self.instance, [self.srv, self.txt_record]),
                           (self.host, self.a_records)):
            theirs = [r for r in msg.authorities if dns.name_eq(r.name, name)]
            if theirs and ours and _tiebreak(ours, theirs) < 0:
                self._lost = True

    # ---- probing and announcing ---------------------------------------------------------

    def _probe_packet(self, first):
        questions = [dns.Question(self.instance, dns.TYPE_ANY, unicast=first),
                     dns.Question(self.host, dns.TYPE_ANY, unicast=first)]
        authorities = [self.srv, self.txt_record] + self.a_records
        return dns.encode(dns.Message(0, questions=questions, authorities=authorities))

    def _rename(self):
        self._rename_count += 1
        old = self.name
        self.name = f"{self.base_name}-{self._rename_count}"
        self._build()
        self.log(f"name {old} is taken: now {self.name}")

    async def _probe_and_announce(self, first_delay=True):
        if first_delay:
            await _sleep_ms(_rand_ms(0, _PROBE_GAP))
        while True:
            self.state = PROBING
            self._conflict = False
            self._lost = False
            for i in range(_PROBES):
                self._send(self._probe_packet(i == 0), MDNS_GROUP, MDNS_PORT)
                await _sleep_ms(_PROBE_GAP)
                if self._conflict or self._lost:
                    break
            if self._conflict:
                now = ticks_ms()
                self._conflict_times = [t for t in self._conflict_times
                                        if ticks_diff(now, t) < _CONFLICT_WINDOW] + [now]
                self._rename()
                if len(self._conflict_times) > _CONFLICT_MAX:
                    await _sleep_ms(_CONFLICT_WAIT)
                continue
            if self._lost:
                self.log(f"lost a simultaneous probe for {self.name}: probing again")
                await _sleep_ms(_LOST_WAIT)
                continue
            break
        self.state = ANNOUNCED
        for i in range(_ANNOUNCES):
            if i:
                await _sleep_ms(_ANNOUNCE_GAP)
                if self.state != ANNOUNCED:
                    return
            self._announce(self.records())
            if not i:
                where = ",".join(self.addresses)
                self.log(f"announced {self.name} on {where} port {self.port}")
                self.announced.set()

    def _restart_probe(self):
        self.state = PROBING
        self.announced = asyncio.Event()
        self._spawn(self._probe_and_announce(False))

    def _spawn(self, coro):
        task = asyncio.create_task(coro)
        self._tasks = [t for t in self._tasks if not t.done()] + [task]
        return task

    # ---- TXT updates --------------------------------------------------------------------

    def update_txt(self, changes):
        """Merge changes into the TXT keys (a None value removes the key) and announce them.

        The new TXT goes out at once (or as soon as the 1 s rate limit allows) and once more
        a second later (RFC 6762 §8.4).
        """
        for key in changes:
            if changes[key] is None:
                self.txt.pop(key, None)
            else:
                self.txt[key] = changes[key]
        old = self.txt_record
        if dns.txt_encode(self.txt) == old.rdata:
            return  # nothing changed: no announcement
        self.txt_record = dns.Record(self.instance, dns.TYPE_TXT, dns.txt_encode(self.txt),
                                     _TTL_OTHER, flush=True)
        last = self._last_mcast.pop(old, None)
        if last is not None:
            self._last_mcast[self.txt_record] = last
        if old in self._pending:
            self._pending.remove(old)
        if self.state == ANNOUNCED and self.responding:
            if self._txt_task is not None and not self._txt_task.done():
                self._txt_task.cancel()
            self._txt_task = self._spawn(self._announce_txt())

    async def _announce_txt(self):
        for _i in range(_ANNOUNCES):
            record = self.txt_record
            last = self._last_mcast.get(record)
            if last is not None:
                wait = _RATE_MS - ticks_diff(ticks_ms(), last)
                if wait > 0:
                    await _sleep_ms(wait)
            if self.state != ANNOUNCED:
                return
            self._announce([self.txt_record])

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
                await _sleep_ms(min(100, timeout_ms - elapsed))
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
        """Open the socket if none was given and begin probing; returns at once.

        Await .announced.wait() to know when the name is ours.
        """
        if self.sock is None:
            from .port import net

            try:
                self.sock = net.open_mdns_socket(self.addresses[0] if self.addresses else None)
            except net.PortBusyError as err:
                self.log(f"{err}: query-only mode")
                self.sock = net.open_query_socket()
                self.responding = False
        self._spawn(self._receive_loop())
        self._spawn(self._send_loop())
        if self.responding:
            self._spawn(self._probe_and_announce())

    def goodbye(self):
        """Send all our records with TTL 0 (RFC 6762 §10.1) and stop answering; no await.

        Safe from a KeyboardInterrupt handler after the event loop died.
        """
        if self.state == ANNOUNCED and self.responding and self.sock is not None:
            self._send_records(self.records(), ttl=0)
            self.log(f"goodbye {self.name}")
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
        await _sleep_ms(0)
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
                _collect()
                await _sleep_ms(_OOM_RETRY_MS)
                continue
            except OSError as err:
                self.log(f"receive failed: {err}")
                await _sleep_ms(100)
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

    async def _send_loop(self):
        while True:
            if self._pending_due is None:
                await self._wake.wait()
                self._wake.clear()
                continue
            wait = ticks_diff(self._pending_due, ticks_ms())
            if wait > 0:
                await _wait_event(self._wake, wait)
                self._wake.clear()
                continue
            self.send_pending()

    def send_pending(self):
        """Multicast the delayed answers now (the send loop calls this when they are due)."""
        records = self._pending
        self._pending = []
        self._pending_due = None
        if self.state == ANNOUNCED and records:
            self._multicast(records, _RATE_MS, self._additionals(records, ()))


# ---- standalone runner ----------------------------------------------------------------------
# `-m leither.mdns` runs one responder or a browse from the command line (tests and benches on
# the host use it); the runner lives in leither.mdnsrun, which a board's bundle leaves out.

if __name__ == "__main__":
    from .mdnsrun import main

    main()
