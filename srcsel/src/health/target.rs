//! Health-check targets written as URLs (`icmp://`, `tcp://`, `dns://`,
//! `http://`), and the durations health settings are written in.
//!
//! Targets name IP addresses, never host names: a probe must not depend on
//! the DNS it may be testing, nor on which uplink resolved the name.
use std::{
    fmt,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    str::FromStr,
    time::Duration,
};

use crate::policy::Family;

/// What one probe asks of an uplink.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// An ICMP echo request.
    Icmp(IpAddr),
    /// A TCP connect.
    Tcp(SocketAddr),
    /// A query for `name`: A when testing IPv4, AAAA when testing IPv6.
    /// No resolver: ask the uplink's own resolvers.
    Dns {
        resolver: Option<SocketAddr>,
        name: String,
    },
    /// `GET path`: only 204 counts as up, so captive portals show.
    Http { addr: SocketAddr, path: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("health check target {text:?}: {problem}")]
pub struct TargetError {
    pub text: String,
    pub problem: Problem,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Problem {
    #[error(
        "unknown scheme; expected icmp://ADDRESS, tcp://ADDRESS:PORT, dns://[RESOLVER]/NAME \
         or http://ADDRESS[:PORT]/PATH"
    )]
    Scheme,
    #[error("https is not supported: use http://…/generate_204 or tcp://HOST:443")]
    Https,
    #[error("query strings and fragments ('?', '#') are not supported")]
    QueryOrFragment,
    #[error("no address; expected e.g. 192.0.2.1 or [2001:db8::1]")]
    MissingAddress,
    #[error(
        "{0:?} is a host name; targets take IP addresses (IPv6 in brackets) so probes need no DNS"
    )]
    HostName(String),
    #[error("{0:?} is not an IP address; expected e.g. 192.0.2.1 or [2001:db8::1]")]
    Address(String),
    #[error("IPv6 addresses go in brackets, e.g. tcp://[2001:db8::1]:443")]
    Unbracketed,
    #[error("no port; expected tcp://ADDRESS:PORT, e.g. tcp://192.0.2.1:443")]
    MissingPort,
    #[error("{0:?} is not a port; expected a number from 1 to 65535")]
    Port(String),
    #[error("icmp takes no port; expected icmp://ADDRESS")]
    UnexpectedPort,
    #[error("{rest:?} follows the address; expected {expected}")]
    Trailing {
        rest: String,
        expected: &'static str,
    },
    #[error("no name to query; expected dns://RESOLVER/NAME or dns:///NAME")]
    MissingName,
    #[error("DNS name {name:?} {why}")]
    Name { name: String, why: &'static str },
    #[error("the path {0:?} holds spaces or control characters; percent-encode them")]
    Path(String),
}

impl Target {
    /// The families this target tests: its address's, or both for
    /// `dns:///NAME` (A via the uplink's IPv4 resolvers, AAAA via IPv6 ones).
    pub fn families(&self) -> &'static [Family] {
        let ip = match self {
            Target::Icmp(ip) => *ip,
            Target::Tcp(addr) | Target::Http { addr, .. } => addr.ip(),
            Target::Dns {
                resolver: Some(addr),
                ..
            } => addr.ip(),
            Target::Dns { resolver: None, .. } => return &[Family::V4, Family::V6],
        };
        match family_of(ip) {
            Family::V4 => &[Family::V4],
            Family::V6 => &[Family::V6],
        }
    }
}

pub fn family_of(ip: IpAddr) -> Family {
    match ip {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(text: &str) -> Result<Self, TargetError> {
        parse(text).map_err(|problem| TargetError {
            text: text.to_string(),
            problem,
        })
    }
}

fn parse(text: &str) -> Result<Target, Problem> {
    if text.contains(['?', '#']) {
        return Err(Problem::QueryOrFragment);
    }
    let (scheme, rest) = text.split_once("://").ok_or(Problem::Scheme)?;
    match scheme.to_ascii_lowercase().as_str() {
        "icmp" => {
            let expected = "icmp://ADDRESS";
            match host_port(no_path(rest, expected)?, expected)? {
                (ip, None) => Ok(Target::Icmp(ip)),
                (_, Some(_)) => Err(Problem::UnexpectedPort),
            }
        }
        "tcp" => {
            let expected = "tcp://ADDRESS:PORT";
            match host_port(no_path(rest, expected)?, expected)? {
                (ip, Some(port)) => Ok(Target::Tcp(SocketAddr::new(ip, port))),
                (_, None) => Err(Problem::MissingPort),
            }
        }
        "http" => parse_http(rest),
        "dns" => parse_dns(rest),
        "https" => Err(Problem::Https),
        _ => Err(Problem::Scheme),
    }
}

fn no_path<'a>(rest: &'a str, expected: &'static str) -> Result<&'a str, Problem> {
    match rest.find('/') {
        Some(at) => Err(Problem::Trailing {
            rest: rest[at..].to_string(),
            expected,
        }),
        None => Ok(rest),
    }
}

fn parse_http(rest: &str) -> Result<Target, Problem> {
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    let (ip, port) = host_port(authority, "http://ADDRESS[:PORT]/PATH")?;
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Problem::Path(path.to_string()));
    }
    Ok(Target::Http {
        addr: SocketAddr::new(ip, port.unwrap_or(80)),
        path: path.to_string(),
    })
}

fn parse_dns(rest: &str) -> Result<Target, Problem> {
    let (authority, name) = rest.split_once('/').ok_or(Problem::MissingName)?;
    let resolver = match authority {
        "" => None,
        _ => {
            let (ip, port) = host_port(authority, "dns://RESOLVER/NAME")?;
            Some(SocketAddr::new(ip, port.unwrap_or(53)))
        }
    };
    check_name(name)?;
    Ok(Target::Dns {
        resolver,
        name: name.to_string(),
    })
}

fn check_name(name: &str) -> Result<(), Problem> {
    let bad = |why| {
        Err(Problem::Name {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return Err(Problem::MissingName);
    }
    if name.len() > 253 {
        return bad("is longer than 253 characters");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !name.chars().all(allowed) {
        return bad("may hold only letters, digits, '-', '_' and '.'");
    }
    // One trailing dot names the root; any other empty label is a typo.
    let labels = name.strip_suffix('.').unwrap_or(name).split('.');
    for label in labels {
        if label.is_empty() {
            return bad("has an empty label");
        }
        if label.len() > 63 {
            return bad("has a label longer than 63 characters");
        }
    }
    Ok(())
}

/// `ADDRESS[:PORT]`, IPv6 in brackets.
fn host_port(authority: &str, expected: &'static str) -> Result<(IpAddr, Option<u16>), Problem> {
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (v6, after) = inner
            .split_once(']')
            .ok_or_else(|| Problem::Address(authority.to_string()))?;
        let ip = v6
            .parse::<Ipv6Addr>()
            .map_err(|_| Problem::Address(format!("[{v6}]")))?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| Problem::Trailing {
                rest: after.to_string(),
                expected,
            })?),
        };
        (IpAddr::V6(ip), port)
    } else {
        if authority.matches(':').count() > 1 {
            return Err(Problem::Unbracketed);
        }
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        (ipv4(host)?, port)
    };
    Ok((host, port.map(parse_port).transpose()?))
}

fn ipv4(host: &str) -> Result<IpAddr, Problem> {
    if host.is_empty() {
        return Err(Problem::MissingAddress);
    }
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return Ok(IpAddr::V4(ip));
    }
    let name_like = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if name_like && host.chars().any(|c| c.is_ascii_alphabetic()) {
        return Err(Problem::HostName(host.to_string()));
    }
    Err(Problem::Address(host.to_string()))
}

fn parse_port(port: &str) -> Result<u16, Problem> {
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(Problem::Port(port.to_string())),
        Ok(port) => Ok(port),
    }
}

/// An address as a URL's host: IPv6 in brackets.
fn host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// `HOST` or `HOST:PORT` when the port is not the scheme's default.
pub(crate) fn url_authority(addr: SocketAddr, default_port: u16) -> String {
    match addr.port() {
        port if port == default_port => host(addr.ip()),
        port => format!("{}:{port}", host(addr.ip())),
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Icmp(ip) => write!(f, "icmp://{}", host(*ip)),
            Target::Tcp(addr) => write!(f, "tcp://{}:{}", host(addr.ip()), addr.port()),
            Target::Dns { resolver, name } => {
                let resolver = resolver.map(|r| url_authority(r, 53)).unwrap_or_default();
                write!(f, "dns://{resolver}/{name}")
            }
            Target::Http { addr, path } => write!(f, "http://{}{path}", url_authority(*addr, 80)),
        }
    }
}

const MS: u128 = 1_000_000;
const S: u128 = 1_000 * MS;
const M: u128 = 60 * S;
const H: u128 = 60 * M;

/// `500ms`, `5s`, `1.5s`, `2m`, `1h`. Zero is allowed here; callers refuse
/// it where it means nothing.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    // "ms" first: "5ms" also ends in "s".
    let (number, unit) = [("ms", MS), ("h", H), ("m", M), ("s", S)]
        .into_iter()
        .find_map(|(suffix, unit)| Some((s.strip_suffix(suffix)?, unit)))
        .ok_or_else(|| {
            format!("{s:?} needs a unit: ms, s, m or h (e.g. 500ms, 5s, 1.5s, 2m, 1h)")
        })?;
    let not_duration = || format!("{s:?} is not a duration; expected e.g. 500ms, 5s, 1.5s, 2m, 1h");
    let (whole, fraction) = number.split_once('.').unwrap_or((number, "0"));
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) || fraction.len() > 9 {
        return Err(not_duration());
    }
    let too_long = || format!("{s:?} is too long a duration");
    let whole: u128 = whole.parse().map_err(|_| too_long())?;
    let scale = 10u128.pow(fraction.len() as u32);
    let fraction: u128 = fraction.parse().map_err(|_| not_duration())?;
    let ns = whole
        .checked_mul(unit)
        .and_then(|n| n.checked_add(fraction * unit / scale))
        .ok_or_else(too_long)?;
    let secs = u64::try_from(ns / S).map_err(|_| too_long())?;
    Ok(Duration::new(secs, (ns % S) as u32))
}

/// The shortest text `parse_duration` reads back as `d`: 500ms, 2s, 1.5s, 2m.
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_string();
    }
    let whole = [("h", H), ("m", M), ("s", S)];
    if let Some((suffix, unit)) = whole.into_iter().find(|(_, unit)| ns.is_multiple_of(*unit)) {
        return format!("{}{suffix}", ns / unit);
    }
    let (suffix, unit, width) = if ns >= S { ("s", S, 9) } else { ("ms", MS, 6) };
    if ns.is_multiple_of(unit) {
        return format!("{}{suffix}", ns / unit);
    }
    let fraction = format!("{:0width$}", ns % unit);
    format!("{}.{}{suffix}", ns / unit, fraction.trim_end_matches('0'))
}

#[cfg(test)]
#[path = "target_tests.rs"]
mod tests;
