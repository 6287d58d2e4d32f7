//! The daemon's lease socket: abstract, so each network namespace has its
//! own, and its one-line wire format (`lease IFACE GATEWAY|-`).
use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::Ipv4Addr,
    os::{linux::net::SocketAddrExt as _, unix::net::SocketAddr},
};

use anyhow::Context as _;

use crate::policy::plan::HookReport;

const SOCKET: &str = "srcsel-daemon";

pub fn to_line(r: &HookReport) -> String {
    let gw = r.gateway.map_or("-".to_owned(), |g| g.to_string());
    format!("lease {} {gw}\n", r.interface)
}

pub fn from_line(line: &str) -> Option<HookReport> {
    let mut w = line.split_whitespace();
    if w.next()? != "lease" {
        return None;
    }
    let interface = w.next()?.to_owned();
    let gateway = match w.next()? {
        "-" => None,
        g => Some(g.parse::<Ipv4Addr>().ok()?),
    };
    Some(HookReport { interface, gateway })
}

fn address() -> std::io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(SOCKET)
}

/// The listening socket; fails while another daemon holds it.
pub fn listen() -> anyhow::Result<tokio::net::UnixListener> {
    let std = std::os::unix::net::UnixListener::bind_addr(&address()?).context(
        "binding the lease socket: is another srcsel daemon running in this network namespace?",
    )?;
    std.set_nonblocking(true)?;
    Ok(tokio::net::UnixListener::from_std(std)?)
}

/// Hands a report to the daemon; false when no daemon listens.
pub fn report(r: &HookReport) -> anyhow::Result<bool> {
    let Ok(mut s) = std::os::unix::net::UnixStream::connect_addr(&address()?) else {
        return Ok(false);
    };
    s.write_all(to_line(r).as_bytes())?;
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply)?;
    anyhow::ensure!(
        reply.trim() == "ok",
        "the daemon did not take the lease: {reply:?}"
    );
    Ok(true)
}

/// Whether a daemon listens in this namespace.
pub fn daemon_listening() -> bool {
    daemon_pid().is_some()
}

/// The pid of the process listening on the daemon's socket, if any.
pub fn daemon_pid() -> Option<u32> {
    let s = std::os::unix::net::UnixStream::connect_addr(&address().ok()?).ok()?;
    let empty = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let cred = crate::kernel::socket_option(&s, libc::SO_PEERCRED, empty).ok()?;
    Some(cred.pid as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let r = HookReport {
            interface: "eth0v0".into(),
            gateway: Some("203.0.113.1".parse().unwrap()),
        };
        assert_eq!(from_line(&to_line(&r)), Some(r));
        let ended = from_line("lease usb0 -").unwrap();
        assert_eq!((ended.interface.as_str(), ended.gateway), ("usb0", None));
        assert_eq!(from_line("bogus"), None);
    }
}
