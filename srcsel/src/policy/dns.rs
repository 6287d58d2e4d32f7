//! Each uplink's DNS resolvers: what the config, a DHCP client hook and the
//! router advertisements (RDNSS) give, which of them is in use, and the
//! map value that carries both to the programs and to the next pass.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use srcsel_common::{MAX_RESOLVERS, Resolvers, dns_flags};

use super::routing::{from_raw4, from_raw6, raw4, raw6};

/// Where an uplink's resolvers of one family come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsSource {
    /// `dns = [...]` in the uplink's config entry.
    Config,
    /// `system_dns = true`: the system's resolvers, not redirected.
    System,
    /// The last lease a DHCP client hook reported (`srcsel lease`).
    Dhcp,
    /// RDNSS options of the uplink's router advertisements.
    RouterAdvertisement,
    /// Asked of the host's DHCP client, without a hook: dhcpcd (its control
    /// socket), NetworkManager (D-Bus), systemd-networkd (its state files).
    Dhcpcd,
    NetworkManager,
    Networkd,
}

impl DnsSource {
    const ALL: [Self; 7] = [
        Self::Config,
        Self::System,
        Self::Dhcp,
        Self::RouterAdvertisement,
        Self::Dhcpcd,
        Self::NetworkManager,
        Self::Networkd,
    ];

    /// Its code in the map value's flags (0: none).
    fn code(source: Option<Self>) -> u32 {
        source.map_or(0, |s| s as u32 + 1)
    }

    fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s as u32 + 1 == code)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::System => "system",
            Self::Dhcp => "dhcp",
            Self::RouterAdvertisement => "router advertisement",
            Self::Dhcpcd => "dhcpcd",
            Self::NetworkManager => "NetworkManager",
            Self::Networkd => "systemd-networkd",
        }
    }
}

/// Which resolvers an uplink's programs use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DnsConfig {
    /// Those its DHCP leases and router advertisements give.
    #[default]
    Learned,
    /// Those the config names (`dns = [...]`).
    Servers(Vec<IpAddr>),
    /// The system's own (`system_dns = true`).
    System,
}

/// One uplink's resolvers, as a pass decides them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dns {
    /// In use, per family (at most [`MAX_RESOLVERS`] each, first ones first).
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
    pub source4: Option<DnsSource>,
    pub source6: Option<DnsSource>,
    /// What a hook last reported; kept for the next pass.
    pub hook4: Vec<Ipv4Addr>,
    /// RDNSS still valid, with when each expires (CLOCK_BOOTTIME seconds).
    pub ra6: Vec<(Ipv6Addr, u64)>,
}

/// The learned resolvers a slot keeps between passes (read back from the
/// map), and what the host's DHCP client said this pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Learned {
    pub hook4: Vec<Ipv4Addr>,
    pub ra6: Vec<(Ipv6Addr, u64)>,
    /// Asked of the DHCP client: never kept, asked again when needed.
    pub asked: Option<Asked>,
}

/// The resolvers a DHCP client on the host knows for an uplink, asked of it
/// when no hook reported any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked {
    pub source: DnsSource,
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
}

impl Asked {
    /// From a client's list, in its order: only resolvers the programs can
    /// send to; None when none is left.
    pub fn new(source: DnsSource, all: impl IntoIterator<Item = IpAddr>) -> Option<Self> {
        let all: Vec<IpAddr> = all.into_iter().filter(|a| can_resolve(*a)).collect();
        let a = Self {
            source,
            v4: first(all.iter().filter_map(v4_of)),
            v6: first(all.iter().filter_map(v6_of)),
        };
        (!a.v4.is_empty() || !a.v6.is_empty()).then_some(a)
    }
}

/// The resolvers in use for an uplink with config `cfg`, learned `learned`,
/// at `now`: the config's list wins over anything learned, for both
/// families; `system_dns` keeps the system's. A hook's report and RDNSS
/// come before what the DHCP client was asked. Expired RDNSS is dropped.
pub fn choose(cfg: &DnsConfig, learned: &Learned, now: u64) -> Dns {
    let ra6: Vec<(Ipv6Addr, u64)> = learned
        .ra6
        .iter()
        .filter(|(_, until)| *until > now)
        .copied()
        .collect();
    let mut dns = Dns {
        hook4: first(learned.hook4.iter().copied()),
        ra6: first(ra6.iter().copied()),
        ..Dns::default()
    };
    match cfg {
        DnsConfig::System => {
            dns.source4 = Some(DnsSource::System);
            dns.source6 = Some(DnsSource::System);
        }
        DnsConfig::Servers(list) => {
            dns.v4 = first(list.iter().filter_map(v4_of));
            dns.v6 = first(list.iter().filter_map(v6_of));
            dns.source4 = (!dns.v4.is_empty()).then_some(DnsSource::Config);
            dns.source6 = (!dns.v6.is_empty()).then_some(DnsSource::Config);
        }
        DnsConfig::Learned => {
            dns.v4.clone_from(&dns.hook4);
            dns.v6 = dns.ra6.iter().map(|(a, _)| *a).collect();
            dns.source4 = (!dns.v4.is_empty()).then_some(DnsSource::Dhcp);
            dns.source6 = (!dns.v6.is_empty()).then_some(DnsSource::RouterAdvertisement);
            if let Some(a) = &learned.asked {
                if dns.v4.is_empty() && !a.v4.is_empty() {
                    (dns.v4, dns.source4) = (a.v4.clone(), Some(a.source));
                }
                if dns.v6.is_empty() && !a.v6.is_empty() {
                    (dns.v6, dns.source6) = (a.v6.clone(), Some(a.source));
                }
            }
        }
    }
    dns
}

fn first<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for item in items {
        if out.len() < MAX_RESOLVERS && !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn v4_of(a: &IpAddr) -> Option<Ipv4Addr> {
    match a {
        IpAddr::V4(a) => Some(*a),
        IpAddr::V6(_) => None,
    }
}

fn v6_of(a: &IpAddr) -> Option<Ipv6Addr> {
    match a {
        IpAddr::V6(a) => Some(*a),
        IpAddr::V4(_) => None,
    }
}

/// Whether queries can be sent to `a` as an uplink's resolver: not a
/// loopback (that is the host's own stub), unspecified, broadcast or
/// multicast address, which a misconfigured DHCP server may hand out, nor
/// an IPv6 link-local one, which needs a scope the programs cannot give a
/// redirected query.
pub fn can_resolve(a: IpAddr) -> bool {
    let broadcast = matches!(a, IpAddr::V4(a) if a.is_broadcast());
    let link_local = matches!(a, IpAddr::V6(a) if a.is_unicast_link_local());
    !(a.is_loopback() || a.is_unspecified() || a.is_multicast() || broadcast || link_local)
}

/// The `nameserver`s of a resolv.conf: the system's resolvers, whose
/// queries are redirected (a scoped IPv6 one, `fe80::1%eth0`, by its address).
pub fn parse_resolv_conf(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then_some(())?;
            let word = words.next()?;
            word.split_once('%').map_or(word, |(a, _)| a).parse().ok()
        })
        .collect()
}

/// The map value of slot 0: the system's resolvers (as the C library,
/// the first [`MAX_RESOLVERS`] of each family).
pub fn system_value(list: &[IpAddr]) -> Resolvers {
    to_value(&Dns {
        v4: first(list.iter().filter_map(v4_of)),
        v6: first(list.iter().filter_map(v6_of)),
        ..Dns::default()
    })
}

/// The map value for `dns`.
pub fn to_value(dns: &Dns) -> Resolvers {
    let mut r = Resolvers::default();
    for (slot, a) in r.v4.iter_mut().zip(&dns.v4) {
        *slot = raw4(Some(*a));
    }
    for (slot, a) in r.v6.iter_mut().zip(&dns.v6) {
        *slot = raw6(Some(*a));
    }
    for (slot, a) in r.hook4.iter_mut().zip(&dns.hook4) {
        *slot = raw4(Some(*a));
    }
    set_ra6(&mut r, &dns.ra6);
    if dns.source4 == Some(DnsSource::System) {
        r.flags |= dns_flags::SYSTEM;
    }
    r.flags |= DnsSource::code(dns.source4) << dns_flags::SOURCE4_SHIFT;
    r.flags |= DnsSource::code(dns.source6) << dns_flags::SOURCE6_SHIFT;
    r
}

/// Puts `ra6` (RDNSS with expiry) into a map value, in place of what it had.
pub fn set_ra6(r: &mut Resolvers, ra6: &[(Ipv6Addr, u64)]) {
    r.ra6 = Default::default();
    r.ra6_until = Default::default();
    for (i, (a, until)) in ra6.iter().enumerate().take(MAX_RESOLVERS) {
        r.ra6[i] = raw6(Some(*a));
        r.ra6_until[i] = *until;
    }
}

/// The RDNSS known for an uplink once a router advertises `servers` for
/// `lifetime` seconds at `now` (RFC 8106): each gets its new expiry (0:
/// withdrawn), the others keep theirs until it passes; the newest first.
pub fn merge_rdnss(
    known: &[(Ipv6Addr, u64)],
    servers: &[Ipv6Addr],
    lifetime: u32,
    now: u64,
) -> Vec<(Ipv6Addr, u64)> {
    let until = now + u64::from(lifetime);
    let fresh = servers
        .iter()
        .filter(|a| lifetime > 0 && can_resolve((**a).into()))
        .map(|a| (*a, until));
    let kept = known
        .iter()
        .filter(|(a, until)| *until > now && !servers.contains(a))
        .copied();
    let mut out: Vec<(Ipv6Addr, u64)> = Vec::new();
    for (a, until) in fresh.chain(kept) {
        if out.len() < MAX_RESOLVERS && out.iter().all(|(b, _)| *b != a) {
            out.push((a, until));
        }
    }
    out
}

/// What a slot's map value says was learned.
pub fn learned_of(r: &Resolvers) -> Learned {
    Learned {
        asked: None,
        hook4: r.hook4.iter().filter_map(|a| from_raw4(*a)).collect(),
        ra6: r
            .ra6
            .iter()
            .zip(r.ra6_until)
            .filter_map(|(a, until)| Some((from_raw6(*a)?, until)))
            .collect(),
    }
}

/// The resolvers in use per the map value, and where they come from (for
/// `srcsel status`; what was learned is in [`learned_of`]).
pub fn in_use(r: &Resolvers) -> Dns {
    let source = |shift: u32| DnsSource::from_code((r.flags >> shift) & 0xff);
    let learned = learned_of(r);
    Dns {
        v4: r.v4.iter().filter_map(|a| from_raw4(*a)).collect(),
        v6: r.v6.iter().filter_map(|a| from_raw6(*a)).collect(),
        source4: source(dns_flags::SOURCE4_SHIFT),
        source6: source(dns_flags::SOURCE6_SHIFT),
        hook4: learned.hook4,
        ra6: learned.ra6,
    }
}

/// Whether a map value gives the programs a resolver to send queries to
/// (or leaves them to the system's): without one, strict refuses them.
pub fn knows_resolvers(r: &Resolvers) -> bool {
    r.flags & dns_flags::SYSTEM != 0
        || r.v4 != [0; MAX_RESOLVERS]
        || r.v6 != [[0; 4]; MAX_RESOLVERS]
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
