//! One probe through one uplink: a socket pinned to the uplink (mark,
//! interface, source address), one question, one answer, all bounded by a
//! timeout. Every failure, setup included, is an `Outcome` that says what
//! failed; nothing here panics or returns early without one.
mod dns;
mod http;
mod icmp;

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

use super::target::{Target, family_of, format_duration};
use crate::policy::Family;

/// Where a probe leaves from: the uplink's interface, its address of the
/// probe's family, and the socket mark that selects the uplink's routing
/// table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Source {
    pub ifname: Option<String>,
    pub addr: Option<IpAddr>,
    pub mark: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    /// From just before the connect or send to the answer; on failure, how
    /// long the probe took to fail.
    pub rtt: Duration,
    pub error: Option<String>,
    /// An HTTP probe met something other than its 204: likely a portal.
    pub captive: bool,
}

/// Why a probe failed before the timeout cut it short.
#[derive(Debug)]
struct Failure {
    error: String,
    captive: bool,
}

impl From<String> for Failure {
    fn from(error: String) -> Self {
        Failure {
            error,
            captive: false,
        }
    }
}

impl From<&str> for Failure {
    fn from(error: &str) -> Self {
        error.to_string().into()
    }
}

/// The round trip, or why there was none.
type Probed = Result<Duration, Failure>;

/// Probes `target` over `family` through the uplink `src` describes.
/// `resolvers` are the uplink's own, for `dns:///NAME`.
pub async fn probe(
    target: &Target,
    family: Family,
    src: &Source,
    resolvers: &[IpAddr],
    timeout: Duration,
) -> Outcome {
    let start = Instant::now();
    let failed = |error: String, captive| Outcome {
        ok: false,
        rtt: start.elapsed(),
        error: Some(error),
        captive,
    };
    match tokio::time::timeout(timeout, run(target, family, src, resolvers)).await {
        Ok(Ok(rtt)) => Outcome {
            ok: true,
            rtt,
            error: None,
            captive: false,
        },
        Ok(Err(failure)) => failed(failure.error, failure.captive),
        Err(_) => failed(
            format!("no answer within {}", format_duration(timeout)),
            false,
        ),
    }
}

async fn run(target: &Target, family: Family, src: &Source, resolvers: &[IpAddr]) -> Probed {
    if !target.families().contains(&family) {
        let error = format!("{target} cannot be probed over {}", family_name(family));
        return Err(error.into());
    }
    match target {
        Target::Icmp(ip) => icmp::probe(*ip, src).await,
        Target::Tcp(addr) => {
            let (_, start) = connect(*addr, src).await?;
            Ok(start.elapsed())
        }
        Target::Dns { resolver, name } => {
            let server = match resolver {
                Some(server) => *server,
                None => SocketAddr::new(own_resolver(family, src, resolvers)?, 53),
            };
            dns::probe(server, name, family, src).await
        }
        Target::Http { addr, path } => http::probe(&target.to_string(), *addr, path, src).await,
    }
}

fn own_resolver(family: Family, src: &Source, resolvers: &[IpAddr]) -> Result<IpAddr, Failure> {
    let found = resolvers
        .iter()
        .copied()
        .find(|ip| family_of(*ip) == family);
    found.ok_or_else(|| {
        let whose = match &src.ifname {
            Some(ifname) => format!(" of {ifname}'s"),
            None => String::new(),
        };
        format!("no resolver{whose} for {} known", family_name(family)).into()
    })
}

fn family_name(family: Family) -> &'static str {
    match family {
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    }
}

impl Source {
    /// " on usb0", for errors.
    fn on(&self) -> String {
        self.ifname
            .as_ref()
            .map(|ifname| format!(" on {ifname}"))
            .unwrap_or_default()
    }

    /// Pins `socket` to the uplink and makes it nonblocking for tokio.
    fn pin(&self, socket: &Socket) -> Result<(), Failure> {
        if let Some(mark) = self.mark {
            socket
                .set_mark(mark)
                .map_err(|e| format!("cannot set socket mark {mark:#x}{}: {e}", self.on()))?;
        }
        if let Some(ifname) = &self.ifname {
            socket
                .bind_device(Some(ifname.as_bytes()))
                .map_err(|e| format!("cannot bind to interface {ifname}: {e}"))?;
        }
        if let Some(addr) = self.addr {
            socket
                .bind(&SocketAddr::new(addr, 0).into())
                .map_err(|e| format!("cannot bind to {addr}{}: {e}", self.on()))?;
        }
        socket
            .set_nonblocking(true)
            .map_err(|e| format!("cannot make a socket nonblocking: {e}").into())
    }

    /// A pinned socket; socket2's `Socket::new` sets CLOEXEC.
    fn open(&self, peer: SocketAddr, ty: Type, protocol: Protocol) -> Result<Socket, Failure> {
        let socket = Socket::new(Domain::for_address(peer), ty, Some(protocol))
            .map_err(|e| format!("cannot open a socket{}: {e}", self.on()))?;
        self.pin(&socket)?;
        Ok(socket)
    }
}

/// tokio drives any datagram socket (UDP, ICMP ping and raw) this way:
/// `sendto` and `recvfrom` are the same calls.
fn datagram(socket: Socket) -> Result<UdpSocket, Failure> {
    UdpSocket::from_std(socket.into())
        .map_err(|e| format!("cannot register a socket with tokio: {e}").into())
}

/// A connected stream, and when the connect began (after socket setup).
async fn connect(addr: SocketAddr, src: &Source) -> Result<(TcpStream, Instant), Failure> {
    let socket = src.open(addr, Type::STREAM, Protocol::TCP)?;
    let socket = TcpSocket::from_std_stream(socket.into());
    let start = Instant::now();
    match socket.connect(addr).await {
        Ok(stream) => Ok((stream, start)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(format!("refused: {addr} is reachable but its service is closed").into())
        }
        Err(e) => Err(format!("cannot connect to {addr}: {e}").into()),
    }
}

#[cfg(test)]
mod tests;
