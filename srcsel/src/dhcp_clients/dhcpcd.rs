//! dhcpcd's control socket (`dhcpcd -U IFACE` without the binary): the
//! request is the command line, NUL-separated; the answer a count of blocks,
//! then each block's length and its `key=value` strings, NUL-separated (the
//! variables its hooks get). dhcpcd 9 listens per interface
//! (`IFACE[-4|-6].unpriv.sock`) or, as a manager of all, on `unpriv.sock`.
use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::UnixStream,
};

use tracing::debug;

use super::TIMEOUT;
use crate::policy::dns::{Asked, DnsSource};

const RUNDIR: &str = "/run/dhcpcd";
/// Where the manager keeps the leases of the interfaces it handles.
const DBDIR: &str = "/var/lib/dhcpcd";
/// More blocks or bytes than a lease dump has: a peer to stop reading from.
const MAX_BLOCKS: usize = 16;
const MAX_BLOCK: usize = 64 * 1024;

/// Some(answer) when a dhcpcd answers for `iface` with a lease of `addr`
/// (or with none of IPv4), None when none does.
pub async fn ask(iface: &str, addr: Option<Ipv4Addr>) -> Option<Option<Asked>> {
    for sock in sockets(Path::new(RUNDIR), Path::new(DBDIR), iface) {
        let stream = match UnixStream::connect(&sock).await {
            Ok(stream) => stream,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    debug!("{}: {e}", sock.display());
                }
                continue;
            }
        };
        let blocks = match tokio::time::timeout(TIMEOUT, dump(stream, iface)).await {
            Ok(Ok(blocks)) => blocks,
            Ok(Err(e)) => {
                debug!("{}: {e}", sock.display());
                return None;
            }
            Err(_) => {
                debug!("{}: no answer within {TIMEOUT:?}", sock.display());
                return None;
            }
        };
        debug!("{}: {} blocks", sock.display(), blocks.len());
        if blocks.is_empty() {
            // This one keeps nothing of the interface: maybe another does.
            continue;
        }
        return parse(&blocks, iface, addr);
    }
    None
}

/// The sockets to try. The manager's only when it keeps a lease of
/// `iface`: Debian's privsep manager stops answering every dump after one
/// about an interface it does not handle.
fn sockets(rundir: &Path, dbdir: &Path, iface: &str) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = ["", "-4", "-6"]
        .iter()
        .map(|per| rundir.join(format!("{iface}{per}.unpriv.sock")))
        .collect();
    let leases = ["lease", "lease6"].map(|ext| dbdir.join(format!("{iface}.{ext}")));
    if leases.iter().any(|l| l.exists()) {
        all.push(rundir.join("unpriv.sock"));
    }
    all
}

async fn dump(mut s: UnixStream, iface: &str) -> std::io::Result<Vec<Vec<u8>>> {
    s.write_all(format!("dhcpcd\0-U\0{iface}\0").as_bytes())
        .await?;
    let count = read_size(&mut s).await?.min(MAX_BLOCKS);
    let mut blocks = Vec::with_capacity(count);
    for _ in 0..count {
        let len = read_size(&mut s).await?;
        if len > MAX_BLOCK {
            return Err(std::io::Error::other("dhcpcd sent an oversized block"));
        }
        let mut block = vec![0; len];
        s.read_exact(&mut block).await?;
        blocks.push(block);
    }
    Ok(blocks)
}

/// A `size_t` in the host's byte order.
async fn read_size(s: &mut UnixStream) -> std::io::Result<usize> {
    let mut b = [0; size_of::<usize>()];
    s.read_exact(&mut b).await?;
    Ok(usize::from_ne_bytes(b))
}

/// The resolvers of `iface`'s blocks: DHCPv4's, DHCPv6's and the router
/// advertisements' (RDNSS). None when a lease is of another address than
/// `addr`: that dhcpcd keeps a link of that name elsewhere (another
/// network namespace).
fn parse(blocks: &[Vec<u8>], iface: &str, addr: Option<Ipv4Addr>) -> Option<Option<Asked>> {
    let mut servers: Vec<IpAddr> = Vec::new();
    for block in blocks {
        let vars: Vec<(&str, &str)> = block
            .split(|b| *b == 0)
            .filter_map(|kv| std::str::from_utf8(kv).ok()?.split_once('='))
            .map(|(k, v)| (k.strip_prefix("new_").unwrap_or(k), v))
            .collect();
        if vars.iter().any(|(k, v)| *k == "interface" && *v != iface) {
            continue;
        }
        let leased = vars.iter().find(|(k, _)| *k == "ip_address");
        if let Some((_, a)) = leased
            && a.parse::<Ipv4Addr>().ok() != addr
        {
            return None;
        }
        for (k, v) in vars {
            let rdnss = k.starts_with("nd") && k.contains("_rdnss") && k.ends_with("_servers");
            if k == "domain_name_servers" || k == "dhcp6_name_servers" || rdnss {
                servers.extend(
                    v.split_whitespace()
                        .filter_map(|a| a.parse::<IpAddr>().ok()),
                );
            }
        }
    }
    Some(Asked::new(DnsSource::Dhcpcd, servers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(vars: &[&str]) -> Vec<u8> {
        vars.iter().flat_map(|v| v.bytes().chain([0])).collect()
    }

    #[test]
    fn a_dump_gives_every_familys_resolvers_of_that_interface_only() {
        let blocks = [
            block(&[
                "reason=BOUND",
                "interface=usb0",
                "new_ip_address=10.99.0.57",
                "new_domain_name_servers=10.99.0.1 10.99.0.2",
            ]),
            block(&[
                "reason=ROUTERADVERT",
                "interface=usb0",
                "nd1_rdnss1_servers=2001:db8:99::53",
            ]),
            block(&[
                "reason=BOUND",
                "interface=eth0",
                "new_domain_name_servers=10.1.0.1",
            ]),
        ];
        let ours = "10.99.0.57".parse().ok();
        let a = parse(&blocks, "usb0", ours).unwrap().unwrap();
        assert_eq!(a.source, DnsSource::Dhcpcd);
        assert_eq!(
            a.v4,
            [
                "10.99.0.1".parse::<Ipv4Addr>().unwrap(),
                "10.99.0.2".parse().unwrap()
            ]
        );
        assert_eq!(
            a.v6,
            ["2001:db8:99::53".parse::<std::net::Ipv6Addr>().unwrap()]
        );
        let carrier = [block(&["reason=CARRIER", "interface=usb0"])];
        assert_eq!(parse(&carrier, "usb0", ours), Some(None));
        // Another namespace's usb0, leased another address: not ours.
        assert_eq!(parse(&blocks, "usb0", "10.99.0.58".parse().ok()), None);
    }

    #[test]
    fn the_managers_socket_only_for_an_interface_it_keeps_a_lease_of() {
        let dir = std::env::temp_dir().join(format!("srcsel-dhcpcd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socks = |iface| sockets(Path::new("/run/dhcpcd"), &dir, iface);
        assert_eq!(socks("usb0").len(), 3);
        std::fs::write(dir.join("usb0.lease"), b"").unwrap();
        assert_eq!(
            socks("usb0").last().unwrap(),
            Path::new("/run/dhcpcd/unpriv.sock")
        );
        assert_eq!(socks("eth0").len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
