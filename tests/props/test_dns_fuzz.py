"""Fuzz and cross-check the DNS codec (CPython only).

* random and mutated packets raise only DecodeError (the node drops them and keeps serving);
* messages we encode parse the same in python-zeroconf, and packets python-zeroconf builds
  parse the same in ours.

FUZZ_EXAMPLES (env) sets the number of examples per property; `make fuzz` uses 20000.
"""
from __future__ import annotations

import asyncio
import os
import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zeroconf import (
    DNSAddress,
    DNSIncoming,
    DNSOutgoing,
    DNSPointer,
    DNSService,
    DNSText,
)
from zeroconf import const as zc_const

from leither import dns
from leither.errors import DecodeError

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)
name = st.lists(label, min_size=1, max_size=4).map(lambda ls: ".".join(ls) + ".local")
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
txt_strings = st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=6).map(tuple)


@st.composite
def records(draw: st.DrawFn) -> dns.Record:
    kind = draw(st.sampled_from(["A", "PTR", "SRV", "TXT"]))
    rname = draw(name)
    ttl = draw(st.integers(0, 2**31 - 1))
    flush = draw(st.booleans())
    if kind == "A":
        return dns.Record(rname, dns.TYPE_A, draw(ipv4), ttl, flush=flush)
    if kind == "PTR":
        return dns.Record(rname, dns.TYPE_PTR, draw(name), ttl, flush=flush)
    if kind == "SRV":
        rdata = (draw(st.integers(0, 65535)), draw(st.integers(0, 65535)),
                 draw(st.integers(0, 65535)), draw(name))
        return dns.Record(rname, dns.TYPE_SRV, rdata, ttl, flush=flush)
    return dns.Record(rname, dns.TYPE_TXT, draw(txt_strings), ttl, flush=flush)


def _zeroconf_packet() -> bytes:
    out = DNSOutgoing(zc_const._FLAGS_QR_RESPONSE | zc_const._FLAGS_AA)
    out.add_answer_at_time(DNSPointer("_leither._tcp.local.", 12, 1, 4500,
                                      "n._leither._tcp.local."), 0)
    out.add_answer_at_time(DNSService("n._leither._tcp.local.", 33, 0x8001, 120, 0, 0, 4800,
                                      "n.local."), 0)
    out.add_answer_at_time(DNSText("n._leither._tcp.local.", 16, 0x8001, 4500,
                                   b"\x04id=a\x06pair=1"), 0)
    out.add_answer_at_time(DNSAddress("n.local.", 1, 0x8001, 120,
                                      socket.inet_aton("10.1.2.3")), 0)
    return out.packets()[0]


SEED = _zeroconf_packet()


def _decode_or_reject(data: bytes) -> None:
    try:
        msg = dns.decode(data)
    except DecodeError:
        return
    assert len(msg.questions) + len(msg.answers) + len(msg.authorities) + \
        len(msg.additionals) <= dns.MAX_ENTRIES
    # What parses re-encodes and parses back to the same names and data.
    again = dns.decode(dns.encode(msg))
    assert [q.name for q in again.questions] == [q.name for q in msg.questions]
    for section, back in ((msg.answers, again.answers), (msg.additionals, again.additionals)):
        assert len(section) == len(back)
        for a, b in zip(section, back):
            if a.rtype != dns.TYPE_NSEC:  # we write only NSEC window 0
                assert a.same_data(b), (a, b)


@SETTINGS
@given(st.binary(max_size=600))
def test_fuzz_random_bytes(data: bytes) -> None:
    _decode_or_reject(data)


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, len(SEED) - 1), st.integers(0, 255)), max_size=8),
       st.integers(0, len(SEED)))
def test_fuzz_mutated_zeroconf_packet(flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(SEED)
    for pos, value in flips:
        data[pos] = value
    _decode_or_reject(bytes(data[:cut]))


@SETTINGS
@given(st.binary(min_size=12, max_size=12), st.lists(st.integers(0, 255), max_size=300))
def test_fuzz_pointer_soup(header: bytes, body: list[int]) -> None:
    # Bodies rich in pointer bytes (0xC0..0xFF) exercise the loop guard.
    _decode_or_reject(header + bytes(b if i % 3 else (0xC0 | (b & 0x3F))
                                     for i, b in enumerate(body)))


@SETTINGS
@given(st.lists(records(), min_size=1, max_size=10))
def test_our_encoding_reads_the_same_in_zeroconf(recs: list[dns.Record]) -> None:
    wire = dns.encode(dns.Message(dns.FLAG_QR | dns.FLAG_AA, answers=recs))
    ours = dns.decode(wire).answers
    assert all(a.same_data(b) and a.ttl == b.ttl for a, b in zip(recs, ours))
    theirs = DNSIncoming(wire).answers()
    assert len(theirs) == len(recs)
    for rec, zc in zip(recs, theirs):
        assert zc.name.rstrip(".").lower() == rec.name.lower()
        assert zc.type == rec.rtype and zc.ttl == rec.ttl and zc.unique == rec.flush
        if rec.rtype == dns.TYPE_A:
            assert socket.inet_ntoa(zc.address) == rec.rdata  # type: ignore[attr-defined]
        elif rec.rtype == dns.TYPE_PTR:
            assert zc.alias.rstrip(".").lower() == rec.rdata.lower()  # type: ignore
        elif rec.rtype == dns.TYPE_SRV:
            assert (zc.priority, zc.weight, zc.port) == rec.rdata[:3]  # type: ignore
            assert zc.server.rstrip(".").lower() == rec.rdata[3].lower()  # type: ignore
        else:
            assert zc.text == b"".join(bytes([len(s)]) + s for s in rec.rdata)  # type: ignore


@SETTINGS
@given(st.lists(records(), min_size=1, max_size=10))
def test_zeroconf_encoding_reads_the_same_in_ours(recs: list[dns.Record]) -> None:
    out = DNSOutgoing(zc_const._FLAGS_QR_RESPONSE | zc_const._FLAGS_AA)
    for rec in recs:
        cls = 1 | (0x8000 if rec.flush else 0)
        if rec.rtype == dns.TYPE_A:
            zc = DNSAddress(rec.name + ".", 1, cls, rec.ttl, socket.inet_aton(rec.rdata))
        elif rec.rtype == dns.TYPE_PTR:
            zc = DNSPointer(rec.name + ".", 12, cls, rec.ttl, rec.rdata + ".")
        elif rec.rtype == dns.TYPE_SRV:
            p, w, port, target = rec.rdata
            zc = DNSService(rec.name + ".", 33, cls, rec.ttl, p, w, port, target + ".")
        else:
            zc = DNSText(rec.name + ".", 16, cls, rec.ttl,
                         b"".join(bytes([len(s)]) + s for s in rec.rdata))
        out.add_answer_at_time(zc, 0)
    for packet in out.packets():
        for ours in dns.decode(packet).answers:
            assert any(ours.same_data(rec) and ours.ttl == rec.ttl and ours.flush == rec.flush
                       for rec in recs)


# A query for the engine's own names (n.local, n._leither._tcp.local) with a known answer.
QUERY_SEED = dns.encode(dns.Message(0, questions=[
    dns.Question("_leither._tcp.local", dns.TYPE_PTR),
    dns.Question("n._leither._tcp.local", dns.TYPE_SRV, unicast=True),
    dns.Question("n.local", dns.TYPE_A)], answers=[
    dns.Record("_leither._tcp.local", dns.TYPE_PTR, "n._leither._tcp.local", 4500)]))


def _engine() -> tuple[object, list[bytes]]:
    from leither import mdns, mdnsresp

    sent: list[bytes] = []
    m = mdnsresp.MDNS("n", 4800, {"id": "a"}, ["10.1.2.3"], sock=object(), log=lambda line: None)
    m.state = mdns.ANNOUNCED
    m._browsing = 1  # also exercise the querier's cache
    m._send = lambda data, ip, port: sent.append(data) or True  # type: ignore[method-assign]
    return m, sent


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, len(SEED) - 1), st.integers(0, 255)), max_size=8),
       st.integers(12, len(SEED)), st.booleans(), st.integers(1, 65535))
def test_fuzz_engine_never_raises(flips: list[tuple[int, int]], cut: int, as_query: bool,
                                  port: int) -> None:
    """Hostile packets into the responder: it drops or answers, never raises, and whatever
    it sends is a well-formed message."""
    m, sent = _engine()
    data = bytearray(QUERY_SEED if as_query else SEED)
    for pos, value in flips:
        data[pos % len(data)] = value
    cut = min(cut, len(data))

    async def feed() -> None:
        # Inside a loop: a conflict may restart probing, which spawns a task.
        m.handle_packet(bytes(data[:cut]), ("10.9.9.9", port))  # type: ignore[attr-defined]
        m.send_pending()  # type: ignore[attr-defined]
        m.close()  # type: ignore[attr-defined]

    asyncio.run(feed())
    for packet in sent:
        assert dns.decode(packet).is_response
    assert len(m._cache) <= 48  # type: ignore[attr-defined]
