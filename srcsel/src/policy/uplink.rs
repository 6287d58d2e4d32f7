//! An uplink as one snapshot shows it: its link, its address and gateway of
//! each family, and whether a command can be steered through it now.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use srcsel_common::UplinkState;

use super::{
    Snapshot, gateway,
    health::Down,
    routing::{from_raw4, from_raw6},
    snapshot::{Address, addr_flags},
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uplink {
    pub name: String,
    /// 0 when the interface does not exist (a USB device unplugged).
    pub index: u32,
    /// Administratively up with carrier: packets can leave.
    pub up: bool,
    pub addr: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    /// A global IPv6 address new connections may use (see [`source6`]).
    pub addr6: Option<Ipv6Net>,
    /// The IPv6 gateway, usually the router's link-local address.
    pub gateway6: Option<Ipv6Addr>,
    /// Families its health checks found dead (link and lease may be fine).
    pub health_down: Down,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UplinkError {
    #[error("{0}")]
    BadName(String),
    #[error("no interface named {0} in this network namespace (see `ip link`)")]
    NotFound(String),
    #[error(
        "{0} is the loopback interface, not an uplink: name the interface that leads to the internet (see `ip route`)"
    )]
    Loopback(String),
    #[error("{0} has no IPv4 or IPv6 address — is its DHCP client running?")]
    NoAddress(String),
    #[error(
        "no gateway known for {0}: no default route via {0} in any table — \
         let its DHCP client install one (dhcpcd: `metric 3000`, not `nogateway`)"
    )]
    NoGateway(String),
}

impl Uplink {
    /// An uplink whose interface does not exist: down, not an error.
    pub fn absent(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            index: 0,
            up: false,
            addr: None,
            gateway: None,
            addr6: None,
            gateway6: None,
            health_down: Down::default(),
        }
    }

    /// The link `name` in `snap`: its first IPv4 address and the gateway of a
    /// default route via it (from the DHCP client, in any table).
    pub fn observe(snap: &Snapshot, name: &str) -> Result<Self, UplinkError> {
        check_ifname(name).map_err(UplinkError::BadName)?;
        let link = snap
            .link(name)
            .ok_or_else(|| UplinkError::NotFound(name.to_owned()))?;
        if link.loopback {
            return Err(UplinkError::Loopback(name.to_owned()));
        }
        let addr = snap.addresses.iter().find_map(|a| match a.net {
            IpNet::V4(n) if a.index == link.index => Some(n),
            _ => None,
        });
        let own: Vec<&Address> = snap
            .addresses
            .iter()
            .filter(|a| a.index == link.index)
            .collect();
        Ok(Self {
            name: link.name.clone(),
            index: link.index,
            up: link.up,
            addr,
            gateway: gateway::from_routes(snap, link.index),
            addr6: source6(&own),
            gateway6: gateway::from_routes6(snap, link.index),
            health_down: Down::default(),
        })
    }

    /// Like [`Uplink::observe`], but a missing interface is an uplink that is down.
    pub fn observe_or_absent(snap: &Snapshot, name: &str) -> Self {
        Self::observe(snap, name).unwrap_or_else(|_| Self::absent(name))
    }

    /// Whether its link could carry IPv4 now: up, with address and gateway.
    pub fn carries4(&self) -> bool {
        self.up && self.addr.is_some() && self.gateway.is_some()
    }

    /// The same for IPv6.
    pub fn carries6(&self) -> bool {
        self.up && self.addr6.is_some() && self.gateway6.is_some()
    }

    /// Whether new IPv4 connections can use it now: it carries IPv4 and
    /// its health checks did not find IPv4 dead.
    pub fn usable4(&self) -> bool {
        self.carries4() && !self.health_down.v4
    }

    /// The same for IPv6.
    pub fn usable6(&self) -> bool {
        self.carries6() && !self.health_down.v6
    }

    /// Whether `gw` is on the uplink's subnet (a gateway must be on-link).
    pub fn on_link(&self, gw: Ipv4Addr) -> bool {
        self.addr.is_some_and(|a| a.contains(&gw))
    }

    /// The same for IPv6: a link-local gateway always is.
    pub fn on_link6(&self, gw: Ipv6Addr) -> bool {
        gw.is_unicast_link_local() || self.addr6.is_some_and(|a| a.contains(&gw))
    }

    /// Checks that a command can be steered through it now, or says why not.
    /// A link that is down is fine: strict sockets fail until it returns.
    pub fn check_ready(&self) -> Result<(), UplinkError> {
        if !self.up || self.carries4() || self.carries6() {
            return Ok(());
        }
        if self.addr.is_none() && self.addr6.is_none() {
            return Err(UplinkError::NoAddress(self.name.clone()));
        }
        Err(UplinkError::NoGateway(self.name.clone()))
    }
}

/// Whether `name` can name a Linux network interface (the kernel's
/// `dev_valid_name`): 1 to 15 bytes, not `.` or `..`, no `/`, `:` or white
/// space. The error says why not.
pub fn check_ifname(name: &str) -> Result<(), String> {
    let why = if name.is_empty() {
        "is empty"
    } else if name.len() > 15 {
        "is longer than 15 characters"
    } else if name == "." || name == ".." || name.contains(['/', ':']) {
        "contains `/` or `:` or is `.` or `..`"
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "contains white space"
    } else {
        return Ok(());
    };
    let shown: String = name.chars().take(40).collect();
    Err(format!(
        "{shown:?} is not an interface name: it {why} (see `ip link` for this host's interfaces)"
    ))
}

/// The addresses whose connections cannot work any more after the live
/// state went from `old` to `new`: those of each family the uplink carried
/// and no longer carries from that address (renumbered, lease or link
/// gone, health down); each with whether the uplink still has it.
pub fn lost_addresses(old: &UplinkState, new: &UplinkState) -> Vec<(IpAddr, bool)> {
    use srcsel_common::flags::{HAS_ADDR4, HAS_ADDR6};
    let mut lost = Vec::new();
    if old.usable4() && !(new.usable4() && new.addr4 == old.addr4) {
        let kept = new.is(HAS_ADDR4) && new.addr4 == old.addr4;
        lost.extend(from_raw4(old.addr4).map(|a| (IpAddr::V4(a), kept)));
    }
    if old.usable6() && !(new.usable6() && new.addr6 == old.addr6) {
        let kept = new.is(HAS_ADDR6) && new.addr6 == old.addr6;
        lost.extend(from_raw6(old.addr6).map(|a| (IpAddr::V6(a), kept)));
    }
    lost
}

/// The IPv6 source new connections get: a global address that can be bound
/// (DAD done) and is still preferred. Stable addresses (SLAAC, DHCPv6,
/// static) come before temporary privacy addresses, which the kernel
/// replaces every day or so; among equals the kernel's first, its newest.
pub fn source6(addresses: &[&Address]) -> Option<Ipv6Net> {
    let unusable = addr_flags::TENTATIVE | addr_flags::DADFAILED | addr_flags::DEPRECATED;
    let mut candidates = addresses.iter().filter_map(|a| match a.net {
        IpNet::V6(n) if a.scope == 0 && a.flags & unusable == 0 => Some((n, a.flags)),
        _ => None,
    });
    let stable = candidates
        .clone()
        .find(|(_, f)| f & addr_flags::TEMPORARY == 0);
    stable.or_else(|| candidates.next()).map(|(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::snapshot::{Address, Link};

    fn snap() -> Snapshot {
        let mut s = Snapshot::default();
        s.links.push(Link {
            index: 3,
            name: "usb0".into(),
            up: true,
            loopback: false,
        });
        s.links.push(Link {
            index: 1,
            name: "lo".into(),
            up: true,
            loopback: true,
        });
        for net in ["fe80::1/64", "10.99.0.57/24", "10.99.0.58/24"] {
            s.addresses.push(Address {
                index: 3,
                net: net.parse().unwrap(),
                flags: 0,
                scope: if net.starts_with("fe80") { 253 } else { 0 },
            });
        }
        s
    }

    #[test]
    fn observes_the_first_ipv4_address_and_absent_links() {
        let u = Uplink::observe(&snap(), "usb0").unwrap();
        assert_eq!(u.addr, Some("10.99.0.57/24".parse().unwrap()));
        assert!(u.on_link("10.99.0.1".parse().unwrap()));
        assert!(!u.on_link("10.98.0.1".parse().unwrap()));
        assert_eq!(
            Uplink::observe(&snap(), "usb1"),
            Err(UplinkError::NotFound("usb1".into()))
        );
        assert_eq!(
            Uplink::observe_or_absent(&snap(), "usb1"),
            Uplink::absent("usb1")
        );
    }

    #[test]
    fn connections_are_lost_with_the_address_or_the_familys_use() {
        use srcsel_common::flags::*;
        let state = |addr4: [u8; 4], flags: u32| UplinkState {
            addr4: u32::from_ne_bytes(addr4),
            flags,
            ..UplinkState::default()
        };
        let up = state([10, 99, 0, 5], UP4 | HAS_ADDR4);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(lost_addresses(&up, &up).is_empty());
        // Renumbered, down (link, lease or health: the address stays),
        // address gone.
        let renumbered = state([10, 99, 0, 6], UP4 | HAS_ADDR4);
        assert_eq!(lost_addresses(&up, &renumbered), [(ip("10.99.0.5"), false)]);
        assert_eq!(
            lost_addresses(&up, &state([10, 99, 0, 5], HAS_ADDR4)),
            [(ip("10.99.0.5"), true)]
        );
        assert_eq!(
            lost_addresses(&up, &UplinkState::default()),
            [(ip("10.99.0.5"), false)]
        );
        // Coming up loses nothing; nor does a family that was not in use.
        assert!(lost_addresses(&UplinkState::default(), &up).is_empty());
        assert!(lost_addresses(&state([10, 99, 0, 5], HAS_ADDR4), &renumbered).is_empty());
    }

    #[test]
    fn readiness_explains_what_is_missing() {
        let mut u = Uplink::absent("usb0");
        (u.index, u.up) = (3, true);
        let err = u.check_ready().unwrap_err().to_string();
        assert!(err.contains("usb0 has no IPv4 or IPv6 address"), "{err}");
        u.addr = Some("10.99.0.5/24".parse().unwrap());
        assert!(
            u.check_ready()
                .unwrap_err()
                .to_string()
                .contains("no gateway known for usb0")
        );
        u.addr6 = Some("2001:db8:99::5/64".parse().unwrap());
        u.gateway6 = Some("fe80::1".parse().unwrap());
        assert!(u.check_ready().is_ok() && u.usable6() && !u.usable4());
        u.up = false;
        assert!(u.check_ready().is_ok());
    }

    fn v6(net: &str, flags: u32) -> Address {
        Address {
            index: 3,
            net: net.parse().unwrap(),
            flags,
            scope: if net.starts_with("fe80") { 253 } else { 0 },
        }
    }

    #[test]
    fn the_ipv6_source_is_global_preferred_bindable_and_stable_first() {
        use addr_flags::*;
        let all = [
            v6("fe80::5/64", 0),
            v6("2001:db8:98::5/64", DEPRECATED),
            v6("2001:db8:99::7/64", TENTATIVE),
            v6("2001:db8:99::8/64", TEMPORARY),
            v6("2001:db8:99::5/64", 0),
            v6("2001:db8:99::6/64", 0),
        ];
        let refs: Vec<&Address> = all.iter().collect();
        assert_eq!(source6(&refs), Some("2001:db8:99::5/64".parse().unwrap()));
        // Only a privacy address: it is used.
        assert_eq!(
            source6(&refs[..4]),
            Some("2001:db8:99::8/64".parse().unwrap())
        );
        // Only link-local, deprecated or tentative ones: none.
        assert_eq!(source6(&refs[..3]), None);
    }
}
