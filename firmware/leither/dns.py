# DNS message codec for mDNS (RFC 1035 wire format with the RFC 6762 bits): bytes in, records
# out, and back. No sockets, no clocks: leither.mdns drives it. Every input is hostile: names,
# compression pointers, counts and lengths are bounded, and every malformed packet ends in one
# DecodeError that the caller drops.
"""Parse and build DNS messages (the subset mDNS / DNS-SD uses)."""

import struct

from .compat import const
from .errors import DecodeError

TYPE_A = const(1)
TYPE_PTR = const(12)
TYPE_TXT = const(16)
TYPE_AAAA = const(28)
TYPE_SRV = const(33)
TYPE_NSEC = const(47)
TYPE_ANY = const(255)
CLASS_IN = const(1)
CLASS_ANY = const(255)

FLAG_QR = const(0x8000)  # response (RFC 1035 §4.1.1)
FLAG_AA = const(0x0400)  # authoritative: set on every mDNS response (RFC 6762 §18.4)
FLAG_TC = const(0x0200)  # truncated: more known answers follow (RFC 6762 §7.2)

# The top bit of a question's class asks for a unicast reply (QU, RFC 6762 §5.4); the top bit
# of a record's class is cache-flush (RFC 6762 §10.2).
_TOP_BIT = const(0x8000)
_CLASS_MASK = const(0x7FFF)

MAX_MESSAGE = const(9000)  # bytes: the largest mDNS message (RFC 6762 §17)
_MAX_NAME = const(255)  # bytes on the wire, RFC 1035 §2.3.4
_MAX_LABEL = const(63)  # bytes, RFC 1035 §2.3.4
MAX_ENTRIES = const(64)  # questions + records in one message: a full 9000-byte packet of
# tiny records, with headroom; each decoded entry costs ~100 B of heap on the board.
_MAX_TXT_STRINGS = const(32)  # strings in one TXT record we keep (ours has 7)
_MAX_NSEC_TYPES = const(32)  # types listed by one NSEC record we keep
# Decoded names of one message, in bytes of text: compression lets a 1500-byte packet name 64
# entries with 255-byte names each (~33 KB of strings on a ~110 KB heap); real mDNS traffic
# expands a full packet to ~5 KB.
MAX_NAME_TEXT = const(8192)


class Question:
    """One question: name, type, class, and whether the asker wants a unicast reply (QU)."""

    def __init__(self, name, qtype, qclass=CLASS_IN, unicast=False):
        self.name = name
        self.qtype = qtype
        self.qclass = qclass
        self.unicast = unicast

    def __repr__(self):
        qu = ", QU" if self.unicast else ""
        return f"Question({self.name!r}, {self.qtype}{qu})"


class Record:
    """One resource record. rdata by type:

    A: "a.b.c.d"; AAAA: 16 bytes; PTR: name; SRV: (priority, weight, port, target);
    TXT: tuple of bytes strings; NSEC: (next name, tuple of types); any other type: bytes.
    """

    def __init__(self, name, rtype, rdata, ttl=120, rclass=CLASS_IN, flush=False):
        self.name = name
        self.rtype = rtype
        self.rdata = rdata
        self.ttl = ttl
        self.rclass = rclass
        self.flush = flush

    def same_data(self, other):
        """Same name (case-insensitive), type, class and rdata; TTL and flush ignored."""
        if (self.rtype != other.rtype or self.rclass != other.rclass
                or not name_eq(self.name, other.name)):
            return False
        if self.rtype == TYPE_PTR:
            return name_eq(self.rdata, other.rdata)
        if self.rtype == TYPE_SRV:
            return (self.rdata[:3] == other.rdata[:3]
                    and name_eq(self.rdata[3], other.rdata[3]))
        return self.rdata == other.rdata

    def __repr__(self):
        flush = ", flush" if self.flush else ""
        return f"Record({self.name!r}, {self.rtype}, {self.rdata!r}, ttl={self.ttl}{flush})"


class Message:
    """A DNS message: header fields and the four sections as lists."""

    def __init__(self, flags=0, msg_id=0, questions=None, answers=None, authorities=None,
                 additionals=None):
        self.id = msg_id
        self.flags = flags
        self.questions = questions if questions is not None else []
        self.answers = answers if answers is not None else []
        self.authorities = authorities if authorities is not None else []
        self.additionals = additionals if additionals is not None else []

    @property
    def is_response(self):
        return bool(self.flags & FLAG_QR)


def name_eq(a, b):
    """DNS names compare case-insensitively (ASCII, RFC 1035 §2.3.3)."""
    return a == b or (len(a) == len(b) and a.lower() == b.lower())


def split_name(name):
    """Labels of a dotted name; backslash escapes a dot or a backslash inside a label."""
    labels = []
    cur = []
    i = 0
    n = len(name)
    while i < n:
        ch = name[i]
        if ch == "\\" and i + 1 < n:
            cur.append(name[i + 1])
            i += 2
            continue
        if ch == ".":
            labels.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    if cur:
        labels.append("".join(cur))
    return labels


def escape_label(label):
    """A label as it appears inside a dotted name (dots and backslashes escaped)."""
    if "." in label or "\\" in label:
        return label.replace("\\", "\\\\").replace(".", "\\.")
    return label


# ---- decoding ----------------------------------------------------------------------------


def _name(data, pos, end, budget=None):
    """Read a possibly compressed name at pos; return (name, offset after it).

    budget: a one-item list of name text still allowed for this message, charged here.

    Loop safety: every pointer must go strictly below the lowest offset read so far for this
    name, so the walk can only move backwards between jumps and always ends.
    """
    labels = []
    lowest = pos
    after = -1
    wire_len = 1
    while True:
        if pos >= end:
            raise DecodeError("dns: name runs past the end")
        length = data[pos]
        if length >= 0xC0:
            if pos + 1 >= end:
                raise DecodeError("dns: truncated pointer")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target >= lowest:
                raise DecodeError("dns: forward or looping pointer")
            if after < 0:
                after = pos + 2
            lowest = target
            pos = target
            continue
        if length > _MAX_LABEL:
            raise DecodeError("dns: bad label type")
        if length == 0:
            if after < 0:
                after = pos + 1
            break
        wire_len += length + 1
        if wire_len > _MAX_NAME or pos + 1 + length > end:
            raise DecodeError("dns: name too long or truncated")
        try:
            label = bytes(data[pos + 1:pos + 1 + length]).decode()
        except UnicodeError:
            raise DecodeError("dns: label is not UTF-8") from None
        labels.append(escape_label(label))
        pos += 1 + length
    if budget is not None:
        budget[0] -= wire_len
        if budget[0] < 0:
            raise DecodeError("dns: names expand past %d bytes" % MAX_NAME_TEXT)
    return ".".join(labels), after


def _rdata(data, rtype, pos, end, budget=None):
    size = end - pos
    if rtype == TYPE_A:
        if size != 4:
            raise DecodeError("dns: A rdata size")
        return f"{data[pos]}.{data[pos + 1]}.{data[pos + 2]}.{data[pos + 3]}"
    if rtype == TYPE_PTR:
        name, after = _name(data, pos, end, budget)
        if after != end:
            raise DecodeError("dns: PTR rdata size")
        return name
    if rtype == TYPE_SRV:
        if size < 7:
            raise DecodeError("dns: SRV rdata size")
        priority, weight, port = struct.unpack_from(">HHH", data, pos)
        target, after = _name(data, pos + 6, end, budget)
        if after != end:
            raise DecodeError("dns: SRV rdata size")
        return (priority, weight, port, target)
    if rtype == TYPE_TXT:
        strings = []
        while pos < end:
            length = data[pos]
            if pos + 1 + length > end:
                raise DecodeError("dns: TXT string past rdata")
            if len(strings) < _MAX_TXT_STRINGS:
                strings.append(bytes(data[pos + 1:pos + 1 + length]))
            pos += 1 + length
        # An empty rdata means one empty string (RFC 6763 §6.1): the form we write back.
        return tuple(strings) if strings else (b"",)
    if rtype == TYPE_NSEC:
        next_name, pos = _name(data, pos, end, budget)
        types = []
        while pos < end:
            if pos + 2 > end:
                raise DecodeError("dns: NSEC bitmap header")
            window = data[pos]
            length = data[pos + 1]
            if length < 1 or length > 32 or pos + 2 + length > end:
                raise DecodeError("dns: NSEC bitmap size")
            for i in range(length):
                byte = data[pos + 2 + i]
                for bit in range(8):
                    if byte & (0x80 >> bit) and len(types) < _MAX_NSEC_TYPES:
                        types.append(window * 256 + i * 8 + bit)
            pos += 2 + length
        return (next_name, tuple(types))
    return bytes(data[pos:end])


def decode(data):
    """Parse one DNS message; raise DecodeError on anything malformed or over a bound."""
    end = len(data)
    if end > MAX_MESSAGE:
        raise DecodeError("dns: message too large")
    if end < 12:
        raise DecodeError("dns: short header")
    msg_id, flags, qdcount, ancount, nscount, arcount = struct.unpack_from(">HHHHHH", data, 0)
    if qdcount + ancount + nscount + arcount > MAX_ENTRIES:
        raise DecodeError("dns: too many entries")
    msg = Message(flags, msg_id)
    pos = 12
    budget = [MAX_NAME_TEXT]
    for _ in range(qdcount):
        name, pos = _name(data, pos, end, budget)
        if pos + 4 > end:
            raise DecodeError("dns: truncated question")
        qtype, qclass = struct.unpack_from(">HH", data, pos)
        pos += 4
        msg.questions.append(Question(name, qtype, qclass & _CLASS_MASK,
                                      bool(qclass & _TOP_BIT)))
    for section, count in ((msg.answers, ancount), (msg.authorities, nscount),
                           (msg.additionals, arcount)):
        for _ in range(count):
            name, pos = _name(data, pos, end, budget)
            if pos + 10 > end:
                raise DecodeError("dns: truncated record")
            rtype, rclass, ttl, rdlength = struct.unpack_from(">HHIH", data, pos)
            pos += 10
            if pos + rdlength > end:
                raise DecodeError("dns: rdata past the end")
            rdata = _rdata(data, rtype, pos, pos + rdlength, budget)
            pos += rdlength
            section.append(Record(name, rtype, rdata, ttl, rclass & _CLASS_MASK,
                                  bool(rclass & _TOP_BIT)))
    return msg


# ---- encoding ----------------------------------------------------------------------------


class _Writer:
    """Appends to one bytearray; remembers name suffixes for compression (RFC 1035 §4.1.4)."""

    def __init__(self, compress=True):
        self.buf = bytearray()
        self.names = {} if compress else None

    def name(self, name):
        labels = split_name(name)
        wire_len = 1
        for i in range(len(labels)):
            if self.names is not None:
                key = ".".join([escape_label(x) for x in labels[i:]]).lower()
                offset = self.names.get(key)
                if offset is not None:
                    self.buf += struct.pack(">H", 0xC000 | offset)
                    return
                if len(self.buf) < 0x3FFF:
                    self.names[key] = len(self.buf)
            raw = labels[i].encode()
            wire_len += len(raw) + 1
            if not raw or len(raw) > _MAX_LABEL or wire_len > _MAX_NAME:
                raise ValueError(f"dns: bad name {name!r}")
            self.buf.append(len(raw))
            self.buf += raw
        self.buf.append(0)

    def rdata(self, record):
        rtype = record.rtype
        data = record.rdata
        if rtype == TYPE_A:
            parts = data.split(".")
            if len(parts) != 4:
                raise ValueError(f"dns: bad IPv4 address {data!r}")
            for part in parts:
                self.buf.append(int(part))
        elif rtype == TYPE_PTR:
            self.name(data)
        elif rtype == TYPE_SRV:
            self.buf += struct.pack(">HHH", data[0], data[1], data[2])
            # RFC 2782 forbids compressing the SRV target; mDNS allows it (RFC 6762 §18.14)
            # but plain DNS tools may not, so never compress it.
            saved = self.names
            self.names = None
            self.name(data[3])
            self.names = saved
        elif rtype == TYPE_TXT:
            if not data:
                self.buf.append(0)  # an empty TXT holds one empty string (RFC 6763 §6.1)
            for item in data:
                if len(item) > 255:
                    raise ValueError("dns: TXT string over 255 bytes")
                self.buf.append(len(item))
                self.buf += item
        elif rtype == TYPE_NSEC:
            saved = self.names
            self.names = None  # RFC 6762 §18.14: no compression inside NSEC's next name
            self.name(data[0])
            self.names = saved
            types = sorted(t for t in data[1] if t < 256)  # window 0 only: all we announce
            if types:
                bitmap = bytearray(types[-1] // 8 + 1)
                for t in types:
                    bitmap[t // 8] |= 0x80 >> (t % 8)
                self.buf.append(0)
                self.buf.append(len(bitmap))
                self.buf += bitmap
        else:
            self.buf += data

    def record(self, record):
        self.name(record.name)
        rclass = record.rclass | (_TOP_BIT if record.flush else 0)
        self.buf += struct.pack(">HHI", record.rtype, rclass, record.ttl)
        at = len(self.buf)
        self.buf += b"\x00\x00"
        self.rdata(record)
        struct.pack_into(">H", self.buf, at, len(self.buf) - at - 2)


def encode(msg):
    """Build the wire form of a Message (names compressed)."""
    w = _Writer()
    w.buf += struct.pack(">HHHHHH", msg.id, msg.flags, len(msg.questions), len(msg.answers),
                         len(msg.authorities), len(msg.additionals))
    for q in msg.questions:
        w.name(q.name)
        w.buf += struct.pack(">HH", q.qtype, q.qclass | (_TOP_BIT if q.unicast else 0))
    for section in (msg.answers, msg.authorities, msg.additionals):
        for record in section:
            w.record(record)
    if len(w.buf) > MAX_MESSAGE:
        raise ValueError("dns: message too large")
    return bytes(w.buf)


def rdata_bytes(record):
    """The uncompressed rdata, as probing tie-breaks compare it (RFC 6762 §8.2)."""
    w = _Writer(compress=False)
    w.rdata(record)
    return bytes(w.buf)


# ---- TXT key/value pairs (RFC 6763 §6) ---------------------------------------------------


def txt_encode(items):
    """A dict of str -> str/bytes/None as TXT strings "key=value" (None: a bare key)."""
    out = []
    for key in sorted(items):
        value = items[key]
        raw = key.encode()
        if value is not None:
            raw += b"=" + (value if isinstance(value, (bytes, bytearray)) else
                           str(value).encode())
        out.append(raw)
    return tuple(out)


def txt_decode(strings):
    """TXT strings as a dict; keys lower-cased, the first of repeated keys wins (§6.4).

    Values are str when they are UTF-8, else bytes; a bare key maps to None.
    """
    out = {}
    for raw in strings:
        if not raw or raw[0] == 0x3D:  # empty, or a missing key: ignored (§6.4)
            continue
        eq = raw.find(b"=")
        key_raw = raw if eq < 0 else raw[:eq]
        try:
            key = key_raw.decode().lower()
        except UnicodeError:
            continue
        if key in out:
            continue
        if eq < 0:
            out[key] = None
            continue
        value = raw[eq + 1:]
        try:
            out[key] = value.decode()
        except UnicodeError:
            out[key] = bytes(value)
    return out
