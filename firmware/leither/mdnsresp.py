# mDNS responder for one Leither node (RFC 6762 / RFC 6763): advertises
# `<name>._leither._tcp.local.` with SRV, TXT and A records, on top of leither.mdns's querier
# (socket, receive loop, browse). An optional part (leither.parts "mdns_responder"): stock ESP32
# firmware keeps UDP 5353 for ESP-IDF's own responder, so there the node could only browse and
# the board's ROMFS bundle leaves this module out; leither.mdns.make() picks what the bundle has.
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
"""mDNS/DNS-SD responder for `_leither._tcp.local.` (the node's presence on the LAN)."""

import asyncio
import os

from . import dns
from .compat import const, ticks_diff, ticks_ms
from .mdns import MDNS_GROUP, SERVICE, Querier, sleep_ms

# leither.mdns's states and port, as private constants: no module globals held for them.
_PROBING = const(1)
_ANNOUNCED = const(2)
_STOPPED = const(3)
_MDNS_PORT = const(5353)

META_QUERY = "_services._dns-sd._udp.local"  # RFC 6763 §9
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
_UNICAST_PER_S = const(20)  # unicast replies per second: QU and one-shot askers on a home LAN
_PENDING_MAX = const(12)  # records waiting for a delayed multicast: all of ours, twice over


def _rand_ms(low, high):
    raw = os.urandom(2)
    return low + (raw[0] * 256 + raw[1]) % (high - low + 1)


def _tiebreak(ours, theirs):
    """RFC 6762 §8.2: >0 when our records win, <0 when theirs do, 0 when identical."""
    a = sorted([(r.rclass, r.rtype, dns.rdata_bytes(r)) for r in ours])
    b = sorted([(r.rclass, r.rtype, dns.rdata_bytes(r)) for r in theirs])
    for x, y in zip(a, b):
        if x != y:
            return 1 if x > y else -1
    return (len(a) > len(b)) - (len(a) < len(b))


if hasattr(asyncio, "wait_for_ms"):  # MicroPython

    async def _wait_event(event, ms):
        try:
            await asyncio.wait_for_ms(event.wait(), ms)
        except asyncio.TimeoutError:  # noqa: UP041 - MicroPython has its own class
            pass

else:  # CPython

    async def _wait_event(event, ms):
        try:
            await asyncio.wait_for(event.wait(), ms / 1000)
        except asyncio.TimeoutError:  # noqa: UP041 - MicroPython has its own class
            pass


class MDNS(Querier):
    """One node's mDNS presence and its view of other nodes (arguments: leither.mdns.Querier).
    After conflicts .name holds the name actually in use."""

    def __init__(self, name, port, txt, addresses, sock=None, service=SERVICE, log=None):
        super().__init__(name, port, txt, addresses, sock, service, log)
        self.responding = True  # False in query-only mode (5353 busy, see port.net)
        self._rename_count = 1
        self._conflict = False
        self._lost = False
        self._conflict_times = []
        self._last_mcast = {}  # record -> ticks of its last multicast (our few records)
        self._pending = []  # records for the next delayed multicast, at most _PENDING_MAX
        self._pending_due = None
        self._wake = asyncio.Event()
        self._txt_task = None
        self._unicast_window = ticks_ms()
        self._unicast_count = 0
        self._build()

    def _begin(self):
        self._spawn(self._send_loop())
        if self.responding:
            self._spawn(self._probe_and_announce())

    # ---- our records --------------------------------------------------------------------

    def _build(self):
        self._names()
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

    def _send_records(self, answers, additionals=(), ip=MDNS_GROUP, port=_MDNS_PORT, ttl=None):
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
        if not self.responding or self.state not in (_PROBING, _ANNOUNCED):
            return
        unique = self._unique()
        for record in records:
            if not self._owns_name(record.name):
                continue
            if any(record.same_data(mine) for mine in unique):
                continue  # our own packet looped back, or another copy of the truth
            if record.ttl == 0:
                continue  # a goodbye: its sender is giving the name up
            if self.state == _PROBING:
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
        if self.state == _PROBING:
            self._check_probe(msg)
            return
        if self.state != _ANNOUNCED:
            return
        if not msg.questions:
            # §7.2: the rest of a truncated query's known answers: drop what they cover.
            self._pending = [r for r in self._pending if not self._known(r, msg.answers)]
            return
        legacy = src[1] != _MDNS_PORT
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
            await sleep_ms(_rand_ms(0, _PROBE_GAP))
        while True:
            self.state = _PROBING
            self._conflict = False
            self._lost = False
            for i in range(_PROBES):
                self._send(self._probe_packet(i == 0), MDNS_GROUP, _MDNS_PORT)
                await sleep_ms(_PROBE_GAP)
                if self._conflict or self._lost:
                    break
            if self._conflict:
                now = ticks_ms()
                self._conflict_times = [t for t in self._conflict_times
                                        if ticks_diff(now, t) < _CONFLICT_WINDOW] + [now]
                self._rename()
                if len(self._conflict_times) > _CONFLICT_MAX:
                    await sleep_ms(_CONFLICT_WAIT)
                continue
            if self._lost:
                self.log(f"lost a simultaneous probe for {self.name}: probing again")
                await sleep_ms(_LOST_WAIT)
                continue
            break
        self.state = _ANNOUNCED
        for i in range(_ANNOUNCES):
            if i:
                await sleep_ms(_ANNOUNCE_GAP)
                if self.state != _ANNOUNCED:
                    return
            self._announce(self.records())
            if not i:
                where = ",".join(self.addresses)
                self.log(f"announced {self.name} on {where} port {self.port}")
                self.announced.set()

    def _restart_probe(self):
        self.state = _PROBING
        self.announced = asyncio.Event()
        self._spawn(self._probe_and_announce(False))

    # ---- TXT updates --------------------------------------------------------------------

    def update_txt(self, changes):
        """Merge changes into the TXT keys (a None value removes the key) and announce them.

        The new TXT goes out at once (or as soon as the 1 s rate limit allows) and once more
        a second later (RFC 6762 §8.4).
        """
        super().update_txt(changes)
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
        if self.state == _ANNOUNCED and self.responding:
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
                    await sleep_ms(wait)
            if self.state != _ANNOUNCED:
                return
            self._announce([self.txt_record])

    # ---- lifecycle ----------------------------------------------------------------------

    def goodbye(self):
        """Send all our records with TTL 0 (RFC 6762 §10.1) and stop answering; no await.

        Safe from a KeyboardInterrupt handler after the event loop died.
        """
        if self.state == _ANNOUNCED and self.responding and self.sock is not None:
            self._send_records(self.records(), ttl=0)
            self.log(f"goodbye {self.name}")
        self.state = _STOPPED

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
        if self.state == _ANNOUNCED and records:
            self._multicast(records, _RATE_MS, self._additionals(records, ()))
