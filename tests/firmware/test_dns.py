# The DNS codec against packets python-zeroconf built, and against hostile packets: every bad
# input ends in DecodeError, never another exception, a hang or a huge allocation.
from leither import dns
from leither.errors import DecodeError

from testutil import raises, unhex

# A response python-zeroconf 0.13x encoded (PTR, SRV, TXT, A; names compressed).
ZC_RESPONSE = unhex(
    "000084000000000400000000085f6c656974686572045f746370056c6f63616c00000c0001000011940009"
    "066e6f64652d31c00cc02b0021800100000078000f0000000012c0066e6f64652d31c01ac02b0010800100"
    "00119400090469643d6103763d31c046000180010000007800040a000002")
# A PTR question with the QU bit, also from python-zeroconf.
ZC_QUERY = unhex("000000000001000000000000085f6c656974686572045f746370056c6f63616c00000c8001")


def test_decode_zeroconf_response():
    msg = dns.decode(ZC_RESPONSE)
    assert msg.is_response and msg.flags & dns.FLAG_AA
    ptr, srv, txt, a = msg.answers
    assert (ptr.name, ptr.rtype, ptr.rdata, ptr.ttl, ptr.flush) == (
        "_leither._tcp.local", dns.TYPE_PTR, "node-1._leither._tcp.local", 4500, False)
    assert srv.rdata == (0, 0, 4800, "node-1.local") and srv.flush and srv.ttl == 120
    assert txt.rdata == (b"id=a", b"v=1")
    assert dns.txt_decode(txt.rdata) == {"id": "a", "v": "1"}
    assert a.rdata == "10.0.0.2" and a.rtype == dns.TYPE_A


def test_decode_query_unicast_bit():
    msg = dns.decode(ZC_QUERY)
    assert not msg.is_response
    (q,) = msg.questions
    assert q.name == "_leither._tcp.local" and q.qtype == dns.TYPE_PTR
    assert q.unicast and q.qclass == dns.CLASS_IN


def test_round_trip_and_compression():
    msg = dns.decode(ZC_RESPONSE)
    wire = dns.encode(msg)
    again = dns.decode(wire)
    for a, b in zip(msg.answers, again.answers):
        assert a.same_data(b) and a.ttl == b.ttl and a.flush == b.flush
    # Shared suffixes are compressed: the same four records take well under 4 full names each.
    assert len(wire) < 200


def test_nsec_and_empty_txt_round_trip():
    records = [dns.Record("n.local", dns.TYPE_NSEC, ("n.local", (dns.TYPE_A,)), 120, flush=True),
               dns.Record("n._x._tcp.local", dns.TYPE_TXT, (), 4500)]
    msg = dns.decode(dns.encode(dns.Message(dns.FLAG_QR, answers=records)))
    nsec, txt = msg.answers
    assert nsec.rdata == ("n.local", (dns.TYPE_A,))
    assert txt.rdata == (b"",)


def test_case_insensitive_names():
    a = dns.Record("Node.LOCAL", dns.TYPE_A, "1.2.3.4")
    b = dns.Record("node.local", dns.TYPE_A, "1.2.3.4")
    assert a.same_data(b)
    assert not a.same_data(dns.Record("node.local", dns.TYPE_A, "1.2.3.5"))


def test_dotted_label_is_escaped():
    # One label "a.b" is not the two labels "a" and "b".
    wire = unhex("000084000000000100000000" "03612e62056c6f63616c00"
                 "000100010000007800040a000001")
    (rec,) = dns.decode(wire).answers
    assert rec.name == "a\\.b.local"
    assert dns.split_name(rec.name) == ["a.b", "local"]
    assert dns.decode(dns.encode(dns.Message(dns.FLAG_QR, answers=[rec]))).answers[0].name == \
        rec.name


def test_pointer_loops_rejected():
    header = unhex("000000000001000000000000")
    # A pointer to itself.
    raises(DecodeError, dns.decode, header + unhex("c00c00010001"))
    # A label then a pointer back to that label: a loop through a backward pointer.
    raises(DecodeError, dns.decode, header + unhex("0161c00c00010001"))
    # A forward pointer.
    raises(DecodeError, dns.decode, header + unhex("c01000010001" + "0161" + "00"))
    # A pointer past the end.
    raises(DecodeError, dns.decode, header + unhex("c0ff00010001"))


def test_truncations_rejected():
    for cut in range(len(ZC_RESPONSE)):
        raises(DecodeError, dns.decode, ZC_RESPONSE[:cut])


def test_bounds():
    # More entries than MAX_ENTRIES.
    raises(DecodeError, dns.decode, unhex("0000000000ff000000000000"))
    # A name over 255 bytes: five 63-byte labels.
    name = (b"\x3f" + b"a" * 63) * 5 + b"\x00"
    raises(DecodeError, dns.decode, unhex("000000000001000000000000") + name + b"\x00\x01\x00\x01")
    # An extended label type (0x40).
    raises(DecodeError, dns.decode, unhex("000000000001000000000000" "4000" "00010001"))
    # Too large a message.
    raises(DecodeError, dns.decode, bytes(dns.MAX_MESSAGE + 1))
    # A label that is not UTF-8.
    raises(DecodeError, dns.decode, unhex("000000000001000000000000" "01ff00" "00010001"))


def test_bad_rdata_rejected():
    head = unhex("000084000000000100000000" "0161" "00")
    # A record with 3 bytes of rdata.
    raises(DecodeError, dns.decode, head + unhex("0001000100000078" "0003" "0a0000"))
    # PTR rdata longer than its name.
    raises(DecodeError, dns.decode, head + unhex("000c000100000078" "0004" "01620000"))
    # SRV too short.
    raises(DecodeError, dns.decode, head + unhex("0021000100000078" "0004" "00000000"))
    # TXT string running past rdata.
    raises(DecodeError, dns.decode, head + unhex("0010000100000078" "0002" "0561"))
    # rdlength past the end.
    raises(DecodeError, dns.decode, head + unhex("0010000100000078" "00ff" "00"))


def test_unknown_type_kept_raw():
    wire = unhex("000084000000000100000000" "0161" "00" "00630001000000780002abcd")
    (rec,) = dns.decode(wire).answers
    assert rec.rtype == 99 and rec.rdata == b"\xab\xcd"


def test_txt_helpers():
    strings = dns.txt_encode({"id": "abc", "pair": "1", "flag": None, "raw": b"\xff"})
    assert strings == (b"flag", b"id=abc", b"pair=1", b"raw=\xff")
    back = dns.txt_decode(strings + (b"ID=second", b"=nokey", b""))
    assert back == {"flag": None, "id": "abc", "pair": "1", "raw": b"\xff"}


def test_encode_rejects_bad_names():
    raises(ValueError, dns.encode, dns.Message(questions=[dns.Question("a" * 64 + ".local", 1)]))
    raises(ValueError, dns.encode, dns.Message(questions=[dns.Question("a..local", 1)]))


def test_rdata_bytes_uncompressed():
    srv = dns.Record("x._s._tcp.local", dns.TYPE_SRV, (0, 0, 4800, "x.local"))
    assert dns.rdata_bytes(srv) == unhex("0000000012c0" "0178056c6f63616c00")
    assert dns.rdata_bytes(dns.Record("x.local", dns.TYPE_A, "10.0.0.2")) == unhex("0a000002")
