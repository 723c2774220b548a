# mDNS within a board's heap: a hostile packet cannot make the codec build more than
# dns.MAX_NAME_TEXT of names, the browse cache is bounded in bytes as well as records, and the
# cache's heap is given back when the browse ends.
import sys

MP_HEAP = "112K"  # engine, codec and this module's bytecode share the unix port's heap

if ".frozen" not in sys.path:
    sys.path.append(".frozen")  # MicroPython: asyncio is frozen into the unix port

import asyncio  # noqa: E402
import struct  # noqa: E402

from leither import dns, mdns, mdnsresp  # noqa: E402
from leither.errors import DecodeError  # noqa: E402

PEER = ("10.0.0.9", 5353)


def make():
    m = mdnsresp.MDNS("node-a", 4800, {"id": "abc"}, ["10.0.0.2"], sock=object(),
                  log=lambda line: None)
    sent = []
    m._send = lambda data, ip, port: sent.append(dns.decode(data)) or True
    m.state = mdns.ANNOUNCED
    return m, sent


def long_name(tag):
    # Four 60-byte labels under .local: a 250-byte name, the most DNS allows.
    return ".".join([tag * 60, "b" * 60, "c" * 60, "d" * 60]) + ".local"


def amplifying_packet(entries):
    """One long name written once, then entries-1 PTR answers whose names and rdata are each a
    2-byte pointer to it: ~24 bytes on the wire per record, ~500 bytes of text decoded."""
    head = struct.pack(">HHHHHH", 0, dns.FLAG_QR, 0, entries, 0, 0)
    first = dns.encode(dns.Message(dns.FLAG_QR, answers=[
        dns.Record(long_name("a"), dns.TYPE_A, "10.0.0.1", 120)]))[12:]
    pointer = struct.pack(">H", 0xC000 | 12)
    record = pointer + struct.pack(">HHIH", dns.TYPE_PTR, dns.CLASS_IN, 120, 2) + pointer
    return head + first + record * (entries - 1)


def test_name_amplification_is_refused():
    packet = amplifying_packet(60)
    assert len(packet) < 1500  # one datagram the node does read
    try:
        dns.decode(packet)
    except DecodeError as err:
        assert "expand" in str(err)
    else:
        raise AssertionError("a packet expanding to ~30 KB of names was decoded")
    m, sent = make()
    m.handle_packet(packet, PEER)
    assert m.dropped == 1 and sent == []
    # A small amplification stays within the budget and decodes.
    assert len(dns.decode(amplifying_packet(8)).answers) == 8


def test_browse_cache_bounded_in_bytes():
    m, _ = make()
    m._browsing = 1
    for i in range(40):
        instance = "n%02d" % i + "x" * 58 + "." + "y" * 60 + "._leither._tcp.local"
        ptr = dns.Record("_leither._tcp.local", dns.TYPE_PTR, instance, 4500)
        m.handle_packet(dns.encode(dns.Message(dns.FLAG_QR, answers=[ptr])), PEER)
        assert m._cache_bytes <= mdns.CACHE_BYTES
    assert 0 < len(m._cache) < 40  # the byte budget, not the record count, bounded it
    assert m._cache[-1][0].rdata.startswith("n39")  # the oldest went first
    assert m._cache_bytes == sum(mdns._entry_bytes(r) for r, _ in m._cache)


def test_browse_gives_the_cache_back():
    async def run():
        m, sent = make()

        async def answer():
            # Answer the browse's PTR query as another node would.
            while not sent:
                await asyncio.sleep(0.01)
            inst = "node-b._leither._tcp.local"
            m.handle_packet(dns.encode(dns.Message(dns.FLAG_QR | dns.FLAG_AA, answers=[
                dns.Record("_leither._tcp.local", dns.TYPE_PTR, inst, 4500),
                dns.Record(inst, dns.TYPE_SRV, (0, 0, 4801, "node-b.local"), 120, flush=True),
                dns.Record(inst, dns.TYPE_TXT, (b"id=bbb",), 4500, flush=True),
                dns.Record("node-b.local", dns.TYPE_A, "10.0.0.5", 120, flush=True)])), PEER)

        task = asyncio.create_task(answer())
        found = await m.browse(timeout_ms=300)
        await task
        assert [n["id"] for n in found] == ["bbb"]
        assert m._cache == [] and m._cache_bytes == 0 and m._browsing == 0
        m.close()

    asyncio.run(run())


def test_receive_loop_outlives_memory_errors():
    from leither.port import net

    async def run():
        m, sent = make()
        query = dns.encode(dns.Message(0, questions=[
            dns.Question("node-a._leither._tcp.local", dns.TYPE_SRV)]))
        script = ["oom", "oom", query]

        async def recvfrom(sock, size):
            while not script:
                await asyncio.sleep(0.01)
            item = script.pop(0)
            if item == "oom":
                raise MemoryError("memory allocation failed, allocating 1500 bytes")
            return item, ("10.0.0.9", 5353)

        saved = net.recvfrom
        net.recvfrom = recvfrom
        try:
            task = asyncio.create_task(m._receive_loop())
            for _ in range(500):
                if sent:
                    break
                await asyncio.sleep(0.01)
            task.cancel()
        finally:
            net.recvfrom = saved
        assert m.out_of_memory == 2
        assert sent and sent[0].answers[0].rtype == dns.TYPE_SRV  # still answering

    asyncio.run(run())
