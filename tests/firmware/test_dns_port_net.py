# leither.port.net: the address forms of each interpreter, the local address table, and a
# real multicast socket where this machine has a multicast-capable interface.
from leither.port import net


def test_sockaddr_round_trip():
    for ip, port in (("10.1.2.3", 5353), ("224.0.0.251", 5353), ("192.168.0.255", 1)):
        assert net.parse_addr(net.sockaddr(ip, port)) == (ip, port)


def test_raw_sockaddr_layout():
    raw = net.sockaddr("10.1.2.3", 5353)
    if not net.RAW_SOCKADDR:
        assert raw == ("10.1.2.3", 5353)
        return
    assert len(raw) == 16 and raw[2:8] == bytes([0x14, 0xE9, 10, 1, 2, 3])
    assert net.parse_addr(b"\x02") == ("0.0.0.0", 0)  # short garbage does not raise


def test_local_ipv4_has_no_loopback():
    for ip in net.local_ipv4():
        parts = ip.split(".")
        assert len(parts) == 4 and parts[0] != "127"


def test_query_socket_sends_and_peer_sees_our_address():
    import socket

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock = net.open_query_socket()
    try:
        receiver.bind(net.sockaddr("127.0.0.1", 53999))
        receiver.settimeout(2)
        assert net.sendto(sock, b"hello-mdns", "127.0.0.1", 53999)
        data, addr = receiver.recvfrom(64)
        assert data == b"hello-mdns"
        ip, port = net.parse_addr(addr)
        assert ip == "127.0.0.1" and 0 < port < 65536
        # A send the stack refuses is reported, not raised.
        assert net.sendto(sock, b"x", "0.0.0.0", 0) in (True, False)
    finally:
        sock.close()
        receiver.close()


def test_mdns_socket_joins_group_on_any_free_port():
    try:
        sock = net.open_mdns_socket(port=0)
    except OSError as err:
        from testutil import skip

        skip(f"no multicast-capable interface here: {err}")
        return
    sock.close()


def test_builtin_hostname_is_a_no_op_off_lwip():
    # Neither CPython nor the unix port runs a built-in responder to rename.
    assert net.set_builtin_hostname("node-a") is False
