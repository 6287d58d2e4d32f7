//! The resolvers IPv6 routers advertise (RDNSS, RFC 8106). The kernel
//! passes router advertisements' options it does not use itself up as
//! `RTM_NEWNDUSEROPT` on the multicast group `RTNLGRP_ND_USEROPT`, with no
//! dump to ask for: only a listener sees them. netlink-packet-route does
//! not decode these messages, so this is a socket of its own.
use std::{
    io,
    net::Ipv6Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use tokio::io::unix::AsyncFd;

const RTNLGRP_ND_USEROPT: u32 = 20;
const RTM_NEWNDUSEROPT: u16 = 68;
const ND_OPT_RDNSS: u8 = 25;
/// `struct nlmsghdr` and `struct nduseroptmsg`.
const NLMSG_HDR: usize = 16;
const USEROPT_HDR: usize = 16;

/// One RDNSS option: the resolvers a router on `ifindex` advertises, valid
/// for `lifetime` seconds (0: no longer use them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rdnss {
    pub ifindex: u32,
    pub lifetime: u32,
    pub servers: Vec<Ipv6Addr>,
}

pub struct RdnssListener {
    fd: AsyncFd<OwnedFd>,
    buf: Vec<u8>,
}

impl RdnssListener {
    /// Joins the group in the calling thread's network namespace.
    pub fn new() -> io::Result<Self> {
        // SAFETY: socket(2); the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor we own from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an all-zero sockaddr_nl is valid.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups = 1 << (RTNLGRP_ND_USEROPT - 1);
        // SAFETY: bind(2) with a sockaddr_nl of its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            // SAFETY: an owned descriptor, neither replaced nor closed while registered.
            fd: unsafe { AsyncFd::register(fd)? },
            buf: vec![0; 16384],
        })
    }

    /// The next batch of RDNSS options (an overrun loses some: routers
    /// repeat them).
    pub async fn next(&mut self) -> io::Result<Vec<Rdnss>> {
        loop {
            let mut found = Vec::new();
            crate::kernel::drain(&self.fd, &mut self.buf, |read| found.extend(parse(read))).await?;
            if !found.is_empty() {
                return Ok(found);
            }
        }
    }
}

/// The RDNSS options in a buffer of netlink messages.
pub fn parse(mut buf: &[u8]) -> Vec<Rdnss> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDR {
        let len = u32::from_ne_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(buf[4..6].try_into().expect("2 bytes"));
        if len < NLMSG_HDR || len > buf.len() {
            break;
        }
        if kind == RTM_NEWNDUSEROPT {
            out.extend(useropt(&buf[NLMSG_HDR..len]));
        }
        // Messages are 4-byte aligned.
        let step = (len + 3) & !3;
        buf = buf.get(step..).unwrap_or_default();
    }
    out
}

/// One `nduseroptmsg`: family, pad, options length, ifindex, ICMPv6 type
/// and code, padding; then the options.
fn useropt(msg: &[u8]) -> Vec<Rdnss> {
    if msg.len() < USEROPT_HDR || msg[0] != libc::AF_INET6 as u8 {
        return Vec::new();
    }
    let opts_len = usize::from(u16::from_ne_bytes([msg[2], msg[3]]));
    let ifindex = u32::from_ne_bytes(msg[4..8].try_into().expect("4 bytes"));
    let Some(mut opts) = msg.get(USEROPT_HDR..USEROPT_HDR + opts_len) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // ND options: type, length in units of 8 bytes, body.
    while opts.len() >= 8 {
        let len = usize::from(opts[1]) * 8;
        if len == 0 || len > opts.len() {
            break;
        }
        let opt = &opts[..len];
        if opt[0] == ND_OPT_RDNSS && len >= 24 {
            out.push(Rdnss {
                ifindex,
                lifetime: u32::from_be_bytes(opt[4..8].try_into().expect("4 bytes")),
                servers: opt[8..]
                    .chunks_exact(16)
                    .map(|c| Ipv6Addr::from(<[u8; 16]>::try_from(c).expect("16 bytes")))
                    .collect(),
            });
        }
        opts = &opts[len..];
    }
    out
}

#[cfg(test)]
#[path = "rdnss_tests.rs"]
mod tests;
