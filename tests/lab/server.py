"""The lab's "internet" server: answers TCP (HTTP or a plain line), UDP and
ICMP echo, and logs every peer as `<proto> <token> <peer address>`.

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
    if http:
        body = f"HTTP/1.0 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
    try:
        conn.sendall(body.encode())
    finally:
        conn.close()


def tcp(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[3], port))
    s.listen(128)
    while True:
        conn, peer = s.accept()
        threading.Thread(target=serve_tcp, args=(conn, peer), daemon=True).start()


def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # Bound to the service address so replies come from it (connected UDP
    # clients drop datagrams from any other source).
    s.bind((sys.argv[3], port))
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


for target, args in ((tcp, (8080,)), (udp, (9999,)), (icmp, ())):
    threading.Thread(target=target, args=args, daemon=True).start()
open(sys.argv[2], "w").close()  # ready
threading.Event().wait()
