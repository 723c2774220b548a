# The socket-level differences between CPython, the MicroPython unix port and lwIP boards, for
# the mDNS socket (UDP 224.0.0.251:5353). leither.mdns is handed a socket from here and only
# calls recvfrom/sendto/local_ipv4 below, so the engine itself is the same everywhere.
#
# Three flavours:
#   * CPython: the socket module has every constant; addresses are (ip, port) tuples.
#   * MicroPython unix port: recvfrom returns the raw struct sockaddr_in bytes and sendto wants
#     them; the module lacks IPPROTO_IP / IP_MULTICAST_* (Linux values: 0, IF=32, TTL=33,
#     LOOP=34; IP_ADD_MEMBERSHIP=35 takes struct ip_mreq = group(4) + interface(4)).
#   * MicroPython on lwIP (ESP32, rp2, ...): (ip, port) tuples; lwIP numbers the options
#     differently (IP_ADD_MEMBERSHIP=3, IP_MULTICAST_TTL=5, IP_MULTICAST_IF=6): taken from the
#     socket module where it has them, else these numbers.
#
# ESP32 and its built-in mDNS responder. Stock MicroPython for ESP32 builds with
# MICROPY_HW_ENABLE_MDNS_QUERIES=1 and MICROPY_HW_ENABLE_MDNS_RESPONDER=1: when the station
# gets an address it calls ESP-IDF's mdns_init(), whose lwIP PCB binds UDP 5353 WITHOUT
# SOF_REUSEADDR (components/mdns, mdns_networking_lwip.c). lwIP then refuses a second bind to
# 5353 even with SO_REUSEADDR on our side: bind raises OSError EADDRINUSE (112 on lwIP), and
# MicroPython has no call to stop that responder. How Leither handles it:
#   1. Our ESP32 firmware build sets both options to 0 (boards/esp32 build flags:
#      `-DMICROPY_HW_ENABLE_MDNS_QUERIES=0 -DMICROPY_HW_ENABLE_MDNS_RESPONDER=0`), so 5353 is
#      free and this module's socket is the node's only mDNS endpoint.
#   2. On stock firmware open_mdns_socket() raises PortBusyError instead of a bare errno. The
#      runtime then (a) sets network.hostname(name) BEFORE WLAN.connect() so the built-in
#      responder still answers `<name>.local` A queries, (b) opens open_query_socket(): an
#      ephemeral-port socket that still browses through RFC 6762 §6.7 one-shot ("legacy
#      unicast") queries, answered by unicast, and (c) relies on the host's fleet inventory
#      (last known address) for discovery, since the `_leither._tcp` service is not
#      advertised in that mode.
"""mDNS socket setup and address handling for each interpreter/port."""

import sys

try:
    import socket
except ImportError:  # very old MicroPython builds
    import usocket as socket

from ..errors import LeitherError

MDNS_GROUP = "224.0.0.251"  # RFC 6762 §3
MDNS_PORT = 5353

_IS_MP = sys.implementation.name == "micropython"
# MicroPython's unix port speaks raw struct sockaddr; other MicroPython ports use lwIP tuples.
RAW_SOCKADDR = _IS_MP and sys.platform == "linux"
_IS_LWIP = _IS_MP and not RAW_SOCKADDR

_IPPROTO_IP = getattr(socket, "IPPROTO_IP", 0)
if _IS_LWIP:
    _ADD_MEMBERSHIP = getattr(socket, "IP_ADD_MEMBERSHIP", 3)
    _MULTICAST_TTL = getattr(socket, "IP_MULTICAST_TTL", 5)
    _MULTICAST_IF = getattr(socket, "IP_MULTICAST_IF", 6)
    _MULTICAST_LOOP = None  # lwIP loops multicast back only with LWIP_MULTICAST_TX_OPTIONS
else:  # Linux numbers (CPython has them all; MicroPython unix has only IP_ADD_MEMBERSHIP)
    _ADD_MEMBERSHIP = getattr(socket, "IP_ADD_MEMBERSHIP", 35)
    _MULTICAST_TTL = getattr(socket, "IP_MULTICAST_TTL", 33)
    _MULTICAST_IF = getattr(socket, "IP_MULTICAST_IF", 32)
    _MULTICAST_LOOP = getattr(socket, "IP_MULTICAST_LOOP", 34)
_SOL_SOCKET = getattr(socket, "SOL_SOCKET", 1)
_SO_REUSEADDR = getattr(socket, "SO_REUSEADDR", 2)
_SO_REUSEPORT_LINUX = 15  # lets Avahi / python-zeroconf share 5353 on one Linux host
_EADDRINUSE = (98, 112)  # Linux, lwIP


class PortBusyError(LeitherError):
    """UDP 5353 is held by another responder (ESP32's built-in one): see the module header."""


def _aton(ip):
    parts = ip.split(".")
    if len(parts) != 4:
        raise ValueError("not an IPv4 address: " + ip)
    return bytes([int(p) for p in parts])


# struct sockaddr_in starts with sin_family in host byte order: take those two bytes from
# what the unix port's own getaddrinfo builds, so the layout is right on any CPU.
_FAMILY = (bytes(socket.getaddrinfo("127.0.0.1", 1)[0][-1][:2]) if RAW_SOCKADDR else b"")


def sockaddr(ip, port):
    """The address form this port's sendto() takes."""
    if RAW_SOCKADDR:
        # struct sockaddr_in: family, port (network order), address, 8 bytes of padding.
        return _FAMILY + bytes([port >> 8, port & 0xFF]) + _aton(ip) + bytes(8)
    return (ip, port)


def parse_addr(addr):
    """recvfrom()'s address as (ip, port) on every port."""
    if isinstance(addr, (bytes, bytearray)):
        if len(addr) < 8:
            return ("0.0.0.0", 0)
        return (f"{addr[4]}.{addr[5]}.{addr[6]}.{addr[7]}", (addr[2] << 8) | addr[3])
    return (addr[0], addr[1])


def _set(sock, level, option, value):
    try:
        sock.setsockopt(level, option, value)
        return True
    except (OSError, TypeError, ValueError):
        return False


def open_mdns_socket(iface_ip=None, port=MDNS_PORT):
    """A non-blocking UDP socket bound to the mDNS port and joined to 224.0.0.251.

    iface_ip picks the interface (joins and sends there); None lets the routing table
    choose (set a 224.0.0.0/4 route in network namespaces). Raises PortBusyError when another
    responder owns the port without sharing it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        _set(sock, _SOL_SOCKET, _SO_REUSEADDR, 1)
        if not _IS_LWIP:
            _set(sock, _SOL_SOCKET, getattr(socket, "SO_REUSEPORT", _SO_REUSEPORT_LINUX), 1)
        try:
            sock.bind(sockaddr("0.0.0.0", port) if RAW_SOCKADDR else ("0.0.0.0", port))
        except OSError as err:
            if (err.args[0] if err.args else 0) in _EADDRINUSE:
                raise PortBusyError(f"UDP {port} is in use by another mDNS responder (on ESP32: "
                                    "the built-in one; see leither.port.net)") from err
            raise
        iface = _aton(iface_ip) if iface_ip else bytes(4)
        if not _set(sock, _IPPROTO_IP, _ADD_MEMBERSHIP, _aton(MDNS_GROUP) + iface):
            raise OSError(f"cannot join {MDNS_GROUP} (no multicast route?)")
        # RFC 6762 §11: mDNS packets go out with IP TTL 255 (receivers may check it).
        _set(sock, _IPPROTO_IP, _MULTICAST_TTL, 255)
        if iface_ip and not _IS_LWIP:
            _set(sock, _IPPROTO_IP, _MULTICAST_IF, iface)
        if _MULTICAST_LOOP is not None:
            # Keep loopback on: two responders on one host must hear each other to detect
            # a name conflict; our own packets coming back are recognised and ignored.
            _set(sock, _IPPROTO_IP, _MULTICAST_LOOP, 1)
        sock.setblocking(False)
    except Exception:
        sock.close()
        raise
    return sock


def open_query_socket():
    """An ephemeral-port UDP socket for one-shot queries (RFC 6762 §6.7), no group join."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(sockaddr("0.0.0.0", 0) if RAW_SOCKADDR else ("0.0.0.0", 0))
    _set(sock, _IPPROTO_IP, _MULTICAST_TTL, 255)
    sock.setblocking(False)
    return sock


def sendto(sock, data, ip, port):
    """Send one datagram; False (never an exception) when the stack refuses it."""
    try:
        sock.sendto(data, sockaddr(ip, port))
        return True
    except OSError:
        # EAGAIN / ENOBUFS / ENETUNREACH: a lost datagram, which mDNS already tolerates.
        return False


if _IS_MP:
    import asyncio

    def _readable(sock):
        # A generator awaited as a coroutine: parks this task on asyncio's poll set.
        yield asyncio.core._io_queue.queue_read(sock)

    async def recvfrom(sock, size):
        """Wait for one datagram: (bytes, (ip, port))."""
        while True:
            await _readable(sock)
            try:
                data, addr = sock.recvfrom(size)
            except OSError as err:
                if err.args and err.args[0] == 11:  # EAGAIN: woken without data
                    continue
                raise
            return data, parse_addr(addr)

else:  # CPython
    from .posix import recvfrom  # noqa: F401 - this module's API on every port


def set_builtin_hostname(name):
    """On ports whose firmware runs its own mDNS responder (stock ESP32 builds), give it the
    node name, so `<name>.local` resolves even when our responder cannot bind 5353. Call it
    before WLAN.connect(). Returns False where the port has no such call (unix, CPython)."""
    if not _IS_LWIP:
        return False
    try:
        import network

        network.hostname(name)  # MicroPython >= 1.20
        return True
    except (ImportError, AttributeError, ValueError, OSError):
        return False


def local_ipv4():
    """This host's IPv4 addresses other than loopback, best first (may be empty)."""
    if not _IS_LWIP:
        from .posix import local_ipv4

        return local_ipv4()
    try:
        import network

        ip = network.WLAN(network.STA_IF).ifconfig()[0]
        return [ip] if ip and ip != "0.0.0.0" else []
    except (ImportError, OSError, AttributeError):
        return []


# ---- TCP stream sockets (RPC sessions) ----------------------------------------------------

_IPPROTO_TCP = 6  # Linux and lwIP agree
_TCP_NODELAY = 1  # Linux and lwIP agree
_SO_LINGER = getattr(socket, "SO_LINGER", 0x80 if _IS_LWIP else 13)


def stream_socket(writer):
    """The socket under an asyncio stream (MicroPython's Stream keeps it as .s)."""
    sock = getattr(writer, "s", None)
    if sock is None:
        try:
            sock = writer.get_extra_info("socket")
        except (AttributeError, OSError):
            sock = None
    return sock


def no_delay(writer):
    """Send small frames at once (TCP_NODELAY): with Nagle's algorithm a lock-step call waits
    out the peer's delayed ACK (~40 ms). Best effort: a port without it just goes slower."""
    try:
        stream_socket(writer).setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
    except (AttributeError, OSError, TypeError, ValueError):
        pass


def reset_on_close(writer):
    """Make the coming close() abortive (SO_LINGER 0: RST, unsent data dropped). For a session
    given up on a dead link: otherwise the kernel keeps retransmitting its queued requests
    once the link is back, and they reach the peer after the new session resent them."""
    try:
        import struct

        stream_socket(writer).setsockopt(_SOL_SOCKET, _SO_LINGER, struct.pack("ii", 1, 0))
    except (AttributeError, OSError, TypeError, ValueError):
        pass
