//! sock_diag over a raw NETLINK_SOCK_DIAG socket: a dump of connected TCP
//! and UDP sockets with their marks, and SOCK_DESTROY of one of them. Messages are built and read
//! as bytes laid out like the kernel's structs (linux/inet_diag.h), so that
//! the layout is tested without a kernel.
use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
const INET_DIAG_SHUTDOWN: u16 = 8;
const INET_DIAG_MARK: u16 = 15;
/// The nesting and byte-order flags an attribute type may carry.
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLMSG_HDRLEN: usize = 16;
/// `struct inet_diag_req_v2`.
const REQ_LEN: usize = 56;
/// `struct inet_diag_sockid`.
pub const SOCKID_LEN: usize = 48;
/// `struct inet_diag_msg`.
const MSG_LEN: usize = 72;

/// Connected full sockets: every TCP state but LISTEN, TIME_WAIT and CLOSE
/// (no connection left), NEW_SYN_RECV (a request, not a full socket: no
/// mark) and BOUND_INACTIVE (bound, never connected).
pub const STATES: u32 = 1 << 1 // ESTABLISHED
    | 1 << 2 // SYN_SENT
    | 1 << 3 // SYN_RECV (fast open)
    | 1 << 4 // FIN_WAIT1
    | 1 << 5 // FIN_WAIT2
    | 1 << 8 // CLOSE_WAIT
    | 1 << 9 // LAST_ACK
    | 1 << 11; // CLOSING

/// Connected UDP sockets: UDP's "established".
pub const UDP_STATES: u32 = 1 << 1;

/// One socket of a dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiagSock {
    pub family: u8,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`: which dump it came from.
    pub protocol: u8,
    /// `inet_diag_sockid` as the kernel sent it (ports, addresses, interface,
    /// cookie): SOCK_DESTROY gets it back unchanged.
    pub id: [u8; SOCKID_LEN],
    /// 0 for a socket no descriptor refers to any more.
    pub inode: u32,
    /// `INET_DIAG_MARK`, which the kernel adds only for a dumper with CAP_NET_ADMIN.
    pub mark: Option<u32>,
    /// `INET_DIAG_SHUTDOWN`: `SHUT_RD` 1, `SHUT_WR` 2.
    pub shutdown: u8,
}

impl DiagSock {
    pub fn local(&self) -> SocketAddr {
        self.addr(0, 4)
    }

    pub fn remote(&self) -> SocketAddr {
        self.addr(2, 20)
    }

    /// Ports are big-endian; an IPv4 address is the first 4 of 16 bytes.
    fn addr(&self, port_at: usize, addr_at: usize) -> SocketAddr {
        let port = u16::from_be_bytes([self.id[port_at], self.id[port_at + 1]]);
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&self.id[addr_at..addr_at + 16]);
        let ip = if i32::from(self.family) == libc::AF_INET {
            IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(bytes))
        };
        SocketAddr::new(ip, port)
    }
}

/// An `nlmsghdr` followed by an `inet_diag_req_v2`, in host byte order.
fn request(kind: u16, flags: i32, seq: u32, sock: (u8, u8), states: u32, id: &[u8]) -> Vec<u8> {
    let (family, protocol) = sock;
    let len = NLMSG_HDRLEN + REQ_LEN;
    let mut m = Vec::with_capacity(len);
    m.extend((len as u32).to_ne_bytes());
    m.extend(kind.to_ne_bytes());
    m.extend(((libc::NLM_F_REQUEST | flags) as u16).to_ne_bytes());
    m.extend(seq.to_ne_bytes());
    m.extend(0u32.to_ne_bytes()); // port id: the kernel's
    // family, protocol, extensions (none: the mark comes without asking), pad
    m.extend([family, protocol, 0, 0]);
    m.extend(states.to_ne_bytes());
    m.extend(id);
    m
}

pub fn dump_request(seq: u32, family: u8, protocol: u8) -> Vec<u8> {
    // A zero sockid matches every port and address.
    let any = [0; SOCKID_LEN];
    let states = if i32::from(protocol) == libc::IPPROTO_UDP {
        UDP_STATES
    } else {
        STATES
    };
    let flags = libc::NLM_F_DUMP;
    request(
        SOCK_DIAG_BY_FAMILY,
        flags,
        seq,
        (family, protocol),
        states,
        &any,
    )
}

pub fn destroy_request(seq: u32, sock: &DiagSock) -> Vec<u8> {
    let what = (sock.family, sock.protocol);
    request(SOCK_DESTROY, libc::NLM_F_ACK, seq, what, 0, &sock.id)
}

/// What one message of a reply says.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Sock(DiagSock),
    /// The end of a dump, or an `NLMSG_ERROR`: 0 or a negative errno.
    Done(i32),
    Other,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The messages of one datagram with their sequence numbers.
pub fn replies(buf: &[u8]) -> io::Result<Vec<(u32, Reply)>> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed sock_diag reply");
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= NLMSG_HDRLEN {
        let len = u32_at(rest, 0).ok_or_else(bad)? as usize;
        let kind = u16_at(rest, 4).ok_or_else(bad)?;
        let seq = u32_at(rest, 8).ok_or_else(bad)?;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(bad());
        }
        let payload = &rest[NLMSG_HDRLEN..len];
        let reply = match i32::from(kind) {
            libc::NLMSG_DONE | libc::NLMSG_ERROR => {
                Reply::Done(u32_at(payload, 0).unwrap_or(0) as i32)
            }
            _ if kind == SOCK_DIAG_BY_FAMILY => Reply::Sock(sock(payload).ok_or_else(bad)?),
            _ => Reply::Other,
        };
        out.push((seq, reply));
        rest = &rest[align4(len).min(rest.len())..];
    }
    Ok(out)
}

/// An `inet_diag_msg` and its attributes.
fn sock(b: &[u8]) -> Option<DiagSock> {
    let mut s = DiagSock {
        family: *b.first()?,
        protocol: libc::IPPROTO_TCP as u8,
        id: b.get(4..4 + SOCKID_LEN)?.try_into().ok()?,
        inode: u32_at(b, 68)?,
        mark: None,
        shutdown: 0,
    };
    let mut attrs = b.get(MSG_LEN..)?;
    while attrs.len() >= 4 {
        let len = usize::from(u16_at(attrs, 0)?);
        if len < 4 || len > attrs.len() {
            break;
        }
        match u16_at(attrs, 2)? & NLA_TYPE_MASK {
            INET_DIAG_MARK => s.mark = u32_at(attrs, 4),
            INET_DIAG_SHUTDOWN => s.shutdown = *attrs.get(4)?,
            _ => {}
        }
        attrs = &attrs[align4(len).min(attrs.len())..];
    }
    Some(s)
}

/// A NETLINK_SOCK_DIAG socket of the current network namespace.
pub struct Diag {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Diag {
    pub fn open() -> io::Result<Self> {
        // SAFETY: socket(2) with constant arguments.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self {
            fd,
            seq: 0,
            buf: vec![0; 32 << 10],
        })
    }

    /// Every connected socket of `family` (AF_INET or AF_INET6) and
    /// `protocol` (IPPROTO_TCP or IPPROTO_UDP).
    pub fn dump(&mut self, family: u8, protocol: u8) -> io::Result<Vec<DiagSock>> {
        let mut socks = Vec::new();
        let req = |seq| dump_request(seq, family, protocol);
        self.exchange(req, |s| socks.push(DiagSock { protocol, ..s }))?;
        Ok(socks)
    }

    /// SOCK_DESTROY: the socket's owner sees ECONNABORTED, its peer a reset.
    pub fn destroy(&mut self, sock: &DiagSock) -> io::Result<()> {
        self.exchange(|seq| destroy_request(seq, sock), |_| {})
    }

    /// Sends one request and reads its replies up to the closing status.
    fn exchange(
        &mut self,
        req: impl FnOnce(u32) -> Vec<u8>,
        mut each: impl FnMut(DiagSock),
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let msg = req(self.seq);
        // SAFETY: send(2) from a buffer of that length; an unbound netlink
        // socket sends to the kernel.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            let n = self.recv()?;
            // Replies to an earlier request that was given up on are skipped.
            for (seq, reply) in replies(&self.buf[..n])? {
                match reply {
                    _ if seq != self.seq => {}
                    Reply::Sock(s) => each(s),
                    Reply::Done(0) => return Ok(()),
                    Reply::Done(e) => return Err(io::Error::from_raw_os_error(e.saturating_neg())),
                    Reply::Other => {}
                }
            }
        }
    }

    /// One datagram, however large: its size is peeked first.
    fn recv(&mut self) -> io::Result<usize> {
        loop {
            let fd = self.fd.as_raw_fd();
            let (ptr, cap) = (self.buf.as_mut_ptr().cast(), self.buf.len());
            // SAFETY: recv(2) into our buffer of `cap` bytes.
            let n = unsafe { libc::recv(fd, ptr, cap, libc::MSG_PEEK | libc::MSG_TRUNC) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n as usize > cap {
                self.buf.resize(n as usize, 0);
                continue;
            }
            // SAFETY: as above; the datagram fits.
            let n = unsafe { libc::recv(fd, ptr, cap, 0) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
#[path = "diag_tests.rs"]
pub mod tests;
