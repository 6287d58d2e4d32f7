"""A client that does one thing to the lab's server and says how it went:
`ok <reply>`, or `refused <errno name> at <step>` (exit 1), within 5 s.

    probe.py tcp|udp|sendto HOST PORT TOKEN [--bind ADDR] [--device DEV]
             [--mark N] [--after-connect-device DEV]

HOST may be a name (getaddrinfo picks the family, as a dual-stack client
does) or `::ffff:a.b.c.d` (an AF_INET6 socket reaching IPv4)."""
import errno
import socket
import sys

kind, host, port, token = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
opts = dict(zip(sys.argv[5::2], sys.argv[6::2]))
step = "socket"
try:
    stype = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    if kind == "tcp" and not opts.get("--bind") and ":" not in host and not host[0].isdigit():
        step = "connect"
        s = socket.create_connection((host, port), timeout=5)
    else:
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, stype)
        s.settimeout(5)
        if "--device" in opts:
            step = "SO_BINDTODEVICE"
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, opts["--device"].encode())
        if "--mark" in opts:
            step = "SO_MARK"
            s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, int(opts["--mark"], 0))
        if "--bind" in opts:
            step = "bind"
            s.bind((opts["--bind"], 0))
        if kind != "sendto":
            step = "connect"
            s.connect((host, port))
    step = "send"
    if kind == "sendto":
        s.sendto(token.encode() + b"\n", (host, port))
    else:
        s.send(token.encode() + b"\n")
    step = "receive"
    print("ok", s.recv(200).decode().strip())
except OSError as e:
    name = errno.errorcode.get(e.errno, str(e)) if e.errno else type(e).__name__
    print("refused", name, "at", step)
    sys.exit(1)
