"""The lab's "internet" server: answers TCP (HTTP or a plain line), UDP and
ICMP echo, on IPv4 (argv[3]) and IPv6 (argv[4]), holds connections to port
7000 open until the client closes them, and logs every peer as
`<proto> <token> <peer address>`.

The token is the HTTP path, the first word of a plain TCP line or UDP
datagram, or the hex payload of an echo request (ping -p)."""
import socket
import sys
import threading

log = open(sys.argv[1], "a", buffering=1)
lock = threading.Lock()


def note(proto, token, peer):
    with lock:
        log.write(f"{proto} {token or '-'} {peer}\n")


def serve_tcp(conn, peer):
    conn.settimeout(5)
    data = b""
    try:
        while b"\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    words = data.split(b"\n", 1)[0].decode(errors="replace").split()
    http = len(words) >= 2 and words[0] == "GET"
    note("tcp", words[1].lstrip("/") if http else (words[0] if words else ""), peer[0])
    body = peer[0] + "\n"
    if http and words[1] == "/generate_204":  # a connectivity check
        body = "HTTP/1.0 204 No Content\r\nConnection: close\r\n\r\n"
    elif http:
        body = f"HTTP/1.0 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
    try:
        conn.sendall(body.encode())
    finally:
        conn.close()


def hold_one(conn, peer):
    # A long-lived connection: held open until the client goes.
    note("hold", "-", peer[0])
    try:
        while conn.recv(4096):
            pass
    except OSError:
        pass
    conn.close()


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def tcp(addr, port, handler=serve_tcp):
    s = socket.socket(family(addr), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(128)
    while True:
        conn, peer = s.accept()
        threading.Thread(target=handler, args=(conn, peer), daemon=True).start()


def udp(addr, port):
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    # Bound to the service address so replies come from it (connected UDP
    # clients drop datagrams from any other source).
    s.bind((addr, port))
    while True:
        data, peer = s.recvfrom(2048)
        words = data.decode(errors="replace").split()
        note("udp", words[0] if words else "", peer[0])
        s.sendto((peer[0] + "\n").encode(), peer)


def icmp():
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    while True:
        pkt, peer = s.recvfrom(4096)
        body = pkt[(pkt[0] & 15) * 4:]
        if body and body[0] == 8:  # echo request; the kernel answers it
            note("icmp", body[8:].hex(), peer[0])


def icmp6():
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    while True:
        body, peer = s.recvfrom(4096)
        if body and body[0] == 128:  # echo request; the kernel answers it
            note("icmp", body[8:].hex(), peer[0])


v4, v6 = sys.argv[3], sys.argv[4]
for target, args in ((tcp, (v4, 8080)), (udp, (v4, 9999)), (icmp, ()),
                     (tcp, (v6, 8080)), (udp, (v6, 9999)), (icmp6, ()),
                     (tcp, (v4, 7000, hold_one)), (tcp, (v6, 7000, hold_one))):
    threading.Thread(target=target, args=args, daemon=True).start()
open(sys.argv[2], "w").close()  # ready
threading.Event().wait()
