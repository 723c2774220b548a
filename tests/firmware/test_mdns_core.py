# The mDNS engine without sockets: queries in, packets out, on both interpreters. Each test
# feeds wire packets to MDNS.handle_packet and decodes what the engine sends.
import sys

# The engine's bytecode (~16 KB), the DNS codec (~8 KB), asyncio and this module do not leave
# enough of a 64K heap for the tests' packets; the node itself runs at 128K.
# Passes from 84K (its code and ours sit in the unix port's heap); 20% headroom
# so a shifted heap layout cannot fail it (ci/mp_heap_margin.py).
MP_HEAP = "112K"

if ".frozen" not in sys.path:
    sys.path.append(".frozen")  # MicroPython: asyncio is frozen into the unix port

from leither import dns, mdns, mdnsresp  # noqa: E402

from testutil import random_bytes  # noqa: E402

PEER = ("10.0.0.9", 5353)
SRV_T = dns.TYPE_SRV


def make(state=mdns.ANNOUNCED, addresses=("10.0.0.2",)):
    m = mdnsresp.MDNS("node-a", 4800, {"id": "abc", "pair": "0"}, list(addresses),
                      sock=object(), log=lambda line: None)
    m.state = state
    sent = []
    m._send = lambda data, ip, port: sent.append((dns.decode(data), ip, port)) or True
    return m, sent


def query(*questions, known=(), authorities=(), msg_id=0):
    return dns.encode(dns.Message(0, msg_id, questions=list(questions), answers=list(known),
                                  authorities=list(authorities)))


def q(name, qtype, unicast=False):
    return dns.Question(name, qtype, unicast=unicast)


def types(records):
    return sorted(r.rtype for r in records)


def test_ptr_query_answered_after_delay_with_additionals():
    m, sent = make()
    m.handle_packet(query(q("_leither._tcp.local", dns.TYPE_PTR)), PEER)
    assert sent == [] and m._pending == [m.ptr]  # shared record: 20-120 ms later
    m.send_pending()
    ((msg, ip, port),) = sent
    assert (ip, port) == ("224.0.0.251", 5353) and msg.flags & dns.FLAG_AA
    (ptr,) = msg.answers
    assert ptr.rdata == "node-a._leither._tcp.local" and not ptr.flush and ptr.ttl == 4500
    assert types(msg.additionals) == [dns.TYPE_A, dns.TYPE_TXT, SRV_T, dns.TYPE_NSEC,
                                      dns.TYPE_NSEC]
    srv = next(r for r in msg.additionals if r.rtype == SRV_T)
    assert srv.rdata == (0, 0, 4800, "node-a.local") and srv.flush and srv.ttl == 120


def test_unique_query_answered_at_once_case_insensitively():
    m, sent = make()
    m.handle_packet(query(q("NODE-A._leither._tcp.local", SRV_T)), PEER)
    ((msg, ip, _),) = sent
    assert ip == "224.0.0.251" and types(msg.answers) == [SRV_T]
    assert [r.rdata for r in msg.additionals if r.rtype == dns.TYPE_A] == ["10.0.0.2"]


def test_txt_and_a_queries():
    m, sent = make(addresses=("10.0.0.2", "10.0.1.2"))
    m.handle_packet(query(q("node-a._leither._tcp.local", dns.TYPE_TXT),
                          q("node-a.local", dns.TYPE_A)), PEER)
    ((msg, _, _),) = sent
    txt = next(r for r in msg.answers if r.rtype == dns.TYPE_TXT)
    assert dns.txt_decode(txt.rdata) == {"id": "abc", "pair": "0"}
    assert sorted(r.rdata for r in msg.answers if r.rtype == dns.TYPE_A) == ["10.0.0.2",
                                                                            "10.0.1.2"]


def test_meta_query_lists_the_service_type():
    m, sent = make()
    m.handle_packet(query(q("_services._dns-sd._udp.local", dns.TYPE_PTR)), PEER)
    m.send_pending()
    ((msg, _, _),) = sent
    assert [(r.name, r.rdata) for r in msg.answers] == [("_services._dns-sd._udp.local",
                                                         "_leither._tcp.local")]


def test_aaaa_query_gets_nsec():
    m, sent = make()
    m.handle_packet(query(q("node-a.local", dns.TYPE_AAAA)), PEER)
    ((msg, _, _),) = sent
    (nsec,) = msg.answers
    assert nsec.rtype == dns.TYPE_NSEC and nsec.rdata == ("node-a.local", (dns.TYPE_A,))


def test_other_names_ignored():
    m, sent = make()
    m.handle_packet(query(q("other._leither._tcp.local", SRV_T), q("_http._tcp.local", 12)),
                    PEER)
    m.send_pending()
    assert sent == []


def test_known_answer_suppression():
    m, _sent = make()
    fresh = dns.Record("_leither._tcp.local", dns.TYPE_PTR, "node-a._leither._tcp.local", 4000)
    m.handle_packet(query(q("_leither._tcp.local", dns.TYPE_PTR), known=[fresh]), PEER)
    assert m._pending == []
    stale = dns.Record("_leither._tcp.local", dns.TYPE_PTR, "node-a._leither._tcp.local", 2000)
    m.handle_packet(query(q("_leither._tcp.local", dns.TYPE_PTR), known=[stale]), PEER)
    assert m._pending == [m.ptr]  # under half the TTL: answered again


def test_duplicate_answer_suppression():
    m, sent = make()
    m.handle_packet(query(q("_leither._tcp.local", dns.TYPE_PTR)), PEER)
    other = dns.Record("_leither._tcp.local", dns.TYPE_PTR, "node-a._leither._tcp.local", 4500)
    m.handle_packet(dns.encode(dns.Message(dns.FLAG_QR, answers=[other])), PEER)
    m.send_pending()
    assert sent == []


def test_rate_limit_one_multicast_per_second():
    m, sent = make()
    m.handle_packet(query(q("node-a._leither._tcp.local", SRV_T)), PEER)
    m.handle_packet(query(q("node-a._leither._tcp.local", SRV_T)), PEER)
    assert len(sent) == 1


def test_qu_question_unicast_after_recent_multicast():
    m, sent = make()
    m.handle_packet(query(q("node-a._leither._tcp.local", SRV_T, unicast=True)), PEER)
    assert sent[-1][1] == "224.0.0.251"  # not multicast lately: multicast (§5.4)
    m.handle_packet(query(q("node-a._leither._tcp.local", SRV_T, unicast=True)),
                    ("10.0.0.7", 5353))
    assert sent[-1][1:] == ("10.0.0.7", 5353) and types(sent[-1][0].answers) == [SRV_T]


def test_legacy_unicast_reply():
    m, sent = make()
    m.handle_packet(query(q("node-a.local", dns.TYPE_A), msg_id=0x1234), ("10.0.0.7", 40000))
    ((msg, ip, port),) = sent
    assert (ip, port) == ("10.0.0.7", 40000) and msg.id == 0x1234
    assert [x.name for x in msg.questions] == ["node-a.local"]
    (a,) = msg.answers
    assert a.ttl == 10 and not a.flush and a.rdata == "10.0.0.2"


def test_no_answers_while_probing_or_stopped():
    for state in (mdns.PROBING, mdns.IDLE, mdns.STOPPED):
        m, sent = make(state)
        m.handle_packet(query(q("node-a._leither._tcp.local", SRV_T)), PEER)
        assert sent == []


def test_probe_conflict_detection():
    m, _ = make(mdns.PROBING)
    ours = dns.Record("node-a.local", dns.TYPE_A, "10.0.0.2", 120, flush=True)
    m.handle_packet(dns.encode(dns.Message(dns.FLAG_QR, answers=[ours])), PEER)
    assert not m._conflict  # our own announcement looped back
    theirs = dns.Record("node-a.local", dns.TYPE_A, "10.0.0.3", 120, flush=True)
    m.handle_packet(dns.encode(dns.Message(dns.FLAG_QR, answers=[theirs])), PEER)
    assert m._conflict


def test_simultaneous_probe_tiebreak():
    m, _ = make(mdns.PROBING)
    probe_q = q("node-a.local", dns.TYPE_ANY)
    lower = dns.Record("node-a.local", dns.TYPE_A, "10.0.0.1", 120)
    m.handle_packet(query(probe_q, authorities=[lower]), PEER)
    assert not m._lost  # our 10.0.0.2 is greater: we win
    same = dns.Record("node-a.local", dns.TYPE_A, "10.0.0.2", 120)
    m.handle_packet(query(probe_q, authorities=[same]), PEER)
    assert not m._lost  # our own probe
    higher = dns.Record("node-a.local", dns.TYPE_A, "10.0.0.3", 120)
    m.handle_packet(query(probe_q, authorities=[higher]), PEER)
    assert m._lost


def test_probe_packet_shape():
    m, _ = make(mdns.PROBING)
    msg = dns.decode(m._probe_packet(True))
    assert [(x.name, x.qtype, x.unicast) for x in msg.questions] == [
        ("node-a._leither._tcp.local", dns.TYPE_ANY, True), ("node-a.local", dns.TYPE_ANY, True)]
    assert types(msg.authorities) == [dns.TYPE_A, dns.TYPE_TXT, SRV_T]
    assert not dns.decode(m._probe_packet(False)).questions[0].unicast


def test_rename_rebuilds_records():
    m, _ = make(mdns.PROBING)
    m._rename()
    m._rename()
    assert m.name == "node-a-3" and m.instance == "node-a-3._leither._tcp.local"
    assert m.srv.rdata[3] == "node-a-3.local" and m.ptr.rdata == m.instance
    assert m.a_records[0].name == "node-a-3.local"


def test_goodbye_sends_every_record_with_ttl_zero():
    m, sent = make()
    m.goodbye()
    ((msg, ip, _),) = sent
    assert ip == "224.0.0.251" and msg.answers and all(r.ttl == 0 for r in msg.answers)
    assert types(msg.answers) == types(m.records())
    assert m.state == mdns.STOPPED
    m.goodbye()
    assert len(sent) == 1


def test_hostile_packets_dropped():
    m, sent = make()
    for i in range(300):
        m.handle_packet(random_bytes(12 + i % 200, seed=i), PEER)
    m.handle_packet(b"", PEER)
    assert m.dropped > 250
    m.handle_packet(query(q("node-a._leither._tcp.local", SRV_T)), PEER)
    assert sent  # still answering


def test_browse_cache_and_results():
    _browse_cache_and_results(make()[0])


def test_a_querier_browses_and_answers_nothing():
    # What a board without the responder part runs (leither.mdns.make): the same browse, no
    # advertising: a query for its own name gets no answer, a TXT update announces nothing.
    sent = []
    m = mdns.Querier("node-a", 4800, {"id": "abc"}, ["10.0.0.2"], sock=object(),
                     log=lambda line: None)
    m._send = lambda data, ip, port: sent.append(data) or True
    m.handle_packet(query(q("node-a._leither._tcp.local", dns.TYPE_ANY)), PEER)
    m.update_txt({"pair": "1", "id": None})
    assert sent == [] and m.txt == {"pair": "1"} and not m.responding
    _browse_cache_and_results(m)


def _browse_cache_and_results(m):
    m._browsing = 1
    inst = "node-b._leither._tcp.local"
    answers = [dns.Record("_leither._tcp.local", dns.TYPE_PTR, inst, 4500),
               dns.Record("_http._tcp.local", dns.TYPE_PTR, "web._http._tcp.local", 4500),
               dns.Record(inst, SRV_T, (0, 0, 4801, "node-b.local"), 120, flush=True),
               dns.Record(inst, dns.TYPE_TXT, (b"id=bbb", b"pair=1"), 4500, flush=True),
               dns.Record("node-b.local", dns.TYPE_A, "10.0.0.5", 120, flush=True),
               dns.Record("unrelated.local", dns.TYPE_A, "10.0.0.6", 120, flush=True)]
    m.handle_packet(dns.encode(dns.Message(dns.FLAG_QR, answers=answers)), PEER)
    assert len(m._cache) == 4  # the unrelated PTR and A are not kept
    (res,) = m._results(mdns.SERVICE, False)
    assert res == {"name": "node-b", "instance": inst, "host": "node-b.local", "port": 4801,
                   "txt": {"id": "bbb", "pair": "1"}, "id": "bbb", "addresses": ["10.0.0.5"]}
    # A newer TXT (cache-flush) replaces the old one; a goodbye removes the instance.
    new_txt = dns.Record(inst, dns.TYPE_TXT, (b"id=bbb", b"pair=0"), 4500, flush=True)
    m.handle_packet(dns.encode(dns.Message(dns.FLAG_QR, answers=[new_txt])), PEER)
    assert m._results(mdns.SERVICE, False)[0]["txt"]["pair"] == "0"
    bye = dns.Record("_leither._tcp.local", dns.TYPE_PTR, inst, 0)
    m.handle_packet(dns.encode(dns.Message(dns.FLAG_QR, answers=[bye])), PEER)
    assert m._results(mdns.SERVICE, False) == []


def test_browse_cache_is_bounded():
    m, _ = make()
    m._browsing = 1
    for i in range(100):
        ptr = dns.Record("_leither._tcp.local", dns.TYPE_PTR, f"n{i}._leither._tcp.local",
                         4500)
        m.handle_packet(dns.encode(dns.Message(dns.FLAG_QR, answers=[ptr])), PEER)
    assert len(m._cache) == 48  # _CACHE_MAX: oldest entries dropped first
    assert m._cache[-1][0].rdata == "n99._leither._tcp.local"


def test_update_txt_announces_at_once():
    import asyncio

    m, sent = make()

    async def run():
        m.update_txt({"pair": "1", "peer": "xyz"})
        for _ in range(100):  # polled, up to 5 s: a loaded machine may take its time
            if sent:
                break
            await asyncio.sleep(0.05)
        m.close()

    asyncio.run(run())
    ((msg, ip, _),) = sent
    assert ip == "224.0.0.251"
    (txt,) = msg.answers
    assert txt.flush and dns.txt_decode(txt.rdata) == {"id": "abc", "pair": "1", "peer": "xyz"}
    m.update_txt({"peer": None})
    assert dns.txt_decode(m.txt_record.rdata) == {"id": "abc", "pair": "1"}


def test_truncated_query_waits_for_more_known_answers():
    m, sent = make()
    tc = dns.encode(dns.Message(dns.FLAG_TC, questions=[q("node-a._leither._tcp.local", SRV_T)]))
    m.handle_packet(tc, PEER)
    assert sent == [] and m._pending == [m.srv]  # even a unique answer waits 400-500 ms
    more = dns.Record("node-a._leither._tcp.local", SRV_T, (0, 0, 4800, "node-a.local"), 120)
    m.handle_packet(dns.encode(dns.Message(0, answers=[more])), PEER)
    assert m._pending == []


def test_update_txt_without_change_sends_nothing():
    m, sent = make()
    m.update_txt({"pair": "0"})  # already the value: no task spawned, nothing sent
    assert sent == []


def test_unicast_replies_are_budgeted():
    m, sent = make()
    for i in range(50):
        m.handle_packet(query(q("node-a.local", dns.TYPE_A), msg_id=i), ("10.0.0.7", 40000 + i))
    assert len(sent) == 20  # _UNICAST_PER_S: the rest of the flood gets no reply


def test_goodbye_for_our_name_is_not_a_conflict():
    m, _ = make(mdns.PROBING)
    bye = dns.Record("node-a.local", dns.TYPE_A, "10.0.0.3", 0, flush=True)
    m.handle_packet(dns.encode(dns.Message(dns.FLAG_QR, answers=[bye])), PEER)
    assert not m._conflict
