//! Resetting the TCP connections that leave through an uplink that went
//! away (its address, or an assignment's failover), so that programs see an
//! error at once, as on Android, instead of hanging on a dead path.
//!
//! Connections are found with sock_diag by their mark (srcsel's slot bits)
//! and local address, then reset by SOCK_DESTROY or, where the kernel lacks
//! it, by shutting down a duplicate of the owner's descriptor.
mod diag;
mod pidfd;
mod probe;

use std::{collections::HashSet, fmt, io, net::IpAddr};

use diag::{Diag, DiagSock};

/// How this kernel lets srcsel reset another process's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// sock_diag's SOCK_DESTROY (CONFIG_INET_DIAG_DESTROY, CAP_NET_ADMIN):
    /// the owner's calls fail with ECONNABORTED, the peer gets a reset.
    SockDestroy,
    /// pidfd_getfd(2) and shutdown(2) (Linux 5.6, CAP_SYS_PTRACE over other
    /// users' processes): the owner reads EOF, the peer gets a FIN.
    PidfdGetfd,
    Unavailable,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::SockDestroy => "SOCK_DESTROY",
            Method::PidfdGetfd => "pidfd_getfd",
            Method::Unavailable => "none",
        })
    }
}

/// Which connections: TCP of either family (v4-mapped included) past
/// LISTEN and not yet closed, and connected UDP, whose mark has
/// `mark & mask == value`, and, if given, whose local address is `local`;
/// but none whose peer is in `spare` (a LAN the address still reaches).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    pub value: u32,
    pub mask: u32,
    pub local: Option<IpAddr>,
    pub spare: Vec<ipnet::IpNet>,
}

impl Selector {
    fn matches(&self, s: &DiagSock) -> bool {
        // The kernel reports marks only to a dumper with CAP_NET_ADMIN;
        // without one nothing tells whose a connection is, so none is.
        let Some(mark) = s.mark else { return false };
        // Shut both ways: reset already, or closed by its program.
        let open = s.shutdown & 3 != 3;
        let local = s.local().ip().to_canonical();
        let remote = s.remote().ip().to_canonical();
        open && mark & self.mask == self.value
            && self.local.is_none_or(|l| l.to_canonical() == local)
            && !self.spare.iter().any(|n| n.contains(&remote))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error(
        "no way to reset connections here: neither SOCK_DESTROY nor pidfd_getfd worked at start (see that log line)"
    )]
    Unavailable,
    #[error("opening a NETLINK_SOCK_DIAG socket (the service must allow AF_NETLINK)")]
    Open(#[source] io::Error),
    #[error("listing TCP sockets over sock_diag")]
    Dump(#[source] io::Error),
    #[error("SOCK_DESTROY of the connection {local} -> {remote}{}", hint(.source))]
    Destroy {
        local: std::net::SocketAddr,
        remote: std::net::SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("pidfd_getfd(2) is missing (Linux older than 5.6, or a seccomp filter refuses it)")]
    NoPidfdGetfd(#[source] io::Error),
    #[error("reading /proc to find the owners of connections")]
    Proc(#[source] io::Error),
}

fn hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => " (needs CAP_NET_ADMIN)",
        Some(libc::EOPNOTSUPP) => " (this kernel lacks CONFIG_INET_DIAG_DESTROY)",
        _ => "",
    }
}

/// Tries each method on a loopback connection of srcsel's own in the current
/// network namespace: SOCK_DESTROY (unless `without_destroy`), then
/// pidfd_getfd. Never fails: the reasons say why a method was passed over
/// (and what the chosen one cannot do), for a log line at start.
pub fn detect(without_destroy: bool) -> (Method, Vec<String>) {
    let mut why = Vec::new();
    let mut methods = vec![Method::SockDestroy, Method::PidfdGetfd];
    if without_destroy {
        methods.remove(0);
        why.push(format!("{}: skipped on request", Method::SockDestroy));
    }
    for m in methods {
        match probe::try_method(m) {
            Ok(()) => {
                if m == Method::PidfdGetfd && !probe::has_cap(probe::CAP_SYS_PTRACE) {
                    why.push(format!(
                        "{m}: without CAP_SYS_PTRACE, only processes of srcsel's own user"
                    ));
                }
                return (m, why);
            }
            Err(e) => why.push(format!("{m}: {e}")),
        }
    }
    (Method::Unavailable, why)
}

/// Resets every connection of the current network namespace that any of
/// `sels` matches (one dump for all); returns how many. One that cannot be
/// reset is skipped with a warning; an error means the method does not
/// work here at all.
pub fn reset(method: Method, sels: &[Selector]) -> Result<usize, ResetError> {
    if method == Method::Unavailable {
        return Err(ResetError::Unavailable);
    }
    let mut diag = Diag::open().map_err(ResetError::Open)?;
    let socks = matching(&mut diag, |s| sels.iter().any(|sel| sel.matches(s)))?;
    reset_socks(method, &mut diag, &socks)
}

/// The connected TCP and UDP sockets of both families that `pick` chooses.
/// A connected UDP socket is reset too: its next send or receive fails
/// (ECONNABORTED), as a TCP connection's does.
fn matching(
    diag: &mut Diag,
    pick: impl Fn(&DiagSock) -> bool,
) -> Result<Vec<DiagSock>, ResetError> {
    let mut out = Vec::new();
    for protocol in [libc::IPPROTO_TCP, libc::IPPROTO_UDP] {
        for family in [libc::AF_INET, libc::AF_INET6] {
            match diag.dump(family as u8, protocol as u8) {
                Ok(socks) => out.extend(socks.into_iter().filter(&pick)),
                // IPv6 disabled (ipv6.disable=1), or no udp_diag in this
                // kernel: no such sockets to reset.
                Err(e)
                    if e.raw_os_error() == Some(libc::ENOENT)
                        && (family == libc::AF_INET6 || protocol == libc::IPPROTO_UDP) => {}
                Err(e) => return Err(ResetError::Dump(e)),
            }
        }
    }
    Ok(out)
}

fn reset_socks(method: Method, diag: &mut Diag, socks: &[DiagSock]) -> Result<usize, ResetError> {
    match method {
        Method::Unavailable => Err(ResetError::Unavailable),
        Method::SockDestroy => {
            let mut done = 0;
            for s in socks {
                let (local, remote) = (s.local(), s.remote());
                match diag.destroy(s).map_err(|e| (e.raw_os_error(), e)) {
                    Ok(()) => done += 1,
                    // Closed since the dump (ENOENT), or its 4-tuple now
                    // another socket's (ESTALE: the cookie differs).
                    Err((Some(libc::ENOENT | libc::ESTALE), _)) => {}
                    Err((Some(libc::EPERM | libc::EACCES | libc::EOPNOTSUPP), source)) => {
                        return Err(ResetError::Destroy {
                            local,
                            remote,
                            source,
                        });
                    }
                    Err((_, e)) => {
                        tracing::warn!("SOCK_DESTROY of the connection {local} -> {remote}: {e}")
                    }
                }
            }
            Ok(done)
        }
        Method::PidfdGetfd => {
            // Inode 0: no descriptor left (the program closed it), so no owner.
            let inodes: HashSet<u64> = socks
                .iter()
                .filter(|s| s.inode != 0)
                .map(|s| s.inode.into())
                .collect();
            pidfd::shut_down(&inodes).map_err(|e| match e.raw_os_error() {
                Some(libc::ENOSYS) => ResetError::NoPidfdGetfd(e),
                _ => ResetError::Proc(e),
            })
        }
    }
}

#[cfg(test)]
mod tests;
