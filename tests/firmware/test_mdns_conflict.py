# RFC 6762 §9: a responder that has announced and then hears its own name with other data
# (TTL > 0) must go back to probing, and when the other host defends the name, rename and
# announce the new name. Driven through handle_packet with the engine's own probe loop running
# (no sockets: what it sends is decoded and inspected).
import sys

# The engine's and the codec's bytecode sit in the unix port's heap beside this module's.
MP_HEAP = "112K"

if ".frozen" not in sys.path:
    sys.path.append(".frozen")  # MicroPython: asyncio is frozen into the unix port

import asyncio  # noqa: E402

from leither import dns, mdns, mdnsresp  # noqa: E402

OTHER = ("10.0.0.9", 5353)
DEADLINE_MS = 20000  # probes are 250 ms apart; a loaded machine may stretch them a lot


def _ms():
    try:
        import time

        return time.ticks_ms()
    except AttributeError:
        import time

        return int(time.monotonic() * 1000)


def make():
    m = mdnsresp.MDNS("node-a", 4800, {"id": "abc"}, ["10.0.0.2"], sock=object(),
                  log=lambda line: None)
    sent = []
    m._send = lambda data, ip, port: sent.append(dns.decode(data)) or True
    return m, sent


def response(*records):
    return dns.encode(dns.Message(dns.FLAG_QR | dns.FLAG_AA, answers=list(records)))


def other_host_a(ttl=120):
    return dns.Record("node-a.local", dns.TYPE_A, "10.0.0.77", ttl, flush=True)


async def _wait(cond):
    start = _ms()
    while not cond():
        if _ms() - start > DEADLINE_MS:
            return False
        await asyncio.sleep(0.01)
    return True


def test_conflict_after_announcing_probes_again_and_renames():
    async def run():
        m, sent = make()
        m.state = mdns.ANNOUNCED
        m.announced.set()
        # Our own records coming back, and a goodbye for the name: neither is a conflict.
        m.handle_packet(response(*m.records()), OTHER)
        m.handle_packet(response(other_host_a(ttl=0)), OTHER)
        assert m.state == mdns.ANNOUNCED and m.name == "node-a"
        # Another host now claims node-a.local with its own address.
        m.handle_packet(response(other_host_a()), OTHER)
        assert m.state == mdns.PROBING, "a conflict after announcing was ignored"
        assert not m.announced.is_set()
        # Our probe goes out for the name; the other host defends it, as a responder does.
        assert await _wait(lambda: any(msg.authorities for msg in sent))
        probe = [msg for msg in sent if msg.authorities][0]
        assert [q.name for q in probe.questions] == ["node-a._leither._tcp.local",
                                                     "node-a.local"]
        m.handle_packet(response(other_host_a()), OTHER)
        assert await _wait(lambda: m.announced.is_set()), "never announced again"
        assert m.name == "node-a-2" and m.state == mdns.ANNOUNCED
        names = [r.name for msg in sent for r in msg.answers]
        assert "node-a-2.local" in names and "node-a-2._leither._tcp.local" in names
        m.close()

    asyncio.run(run())


def test_conflicting_srv_for_our_instance_restarts_probing():
    async def run():
        m, _ = make()
        m.state = mdns.ANNOUNCED
        theirs = dns.Record("node-a._leither._tcp.local", dns.TYPE_SRV,
                            (0, 0, 9999, "elsewhere.local"), 120, flush=True)
        m.handle_packet(response(theirs), OTHER)
        assert m.state == mdns.PROBING
        m.close()

    asyncio.run(run())


def test_other_types_and_names_are_not_conflicts():
    m, _ = make()
    m.state = mdns.ANNOUNCED
    # Same name, a type we do not announce (AAAA): not inconsistent with anything of ours.
    m.handle_packet(response(dns.Record("node-a.local", dns.TYPE_AAAA, bytes(16), 120)), OTHER)
    m.handle_packet(response(dns.Record("node-b.local", dns.TYPE_A, "10.0.0.3", 120)), OTHER)
    assert m.state == mdns.ANNOUNCED and m.name == "node-a"
