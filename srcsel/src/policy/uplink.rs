//! An uplink as one snapshot shows it: its link, IPv4 address and gateway,
//! and whether a command can be steered through it now.
use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};

use super::{Snapshot, gateway};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uplink {
    pub name: String,
    /// 0 when the interface does not exist (a USB device unplugged).
    pub index: u32,
    /// Administratively up with carrier: packets can leave.
    pub up: bool,
    pub addr: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
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
    #[error("{0} has no IPv4 address — is its DHCP client running?")]
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
        }
    }

    /// The link `name` in `snap`: its first IPv4 address and the gateway of a
    /// default route via it (from the DHCP client, in any table).
    pub fn observe(snap: &Snapshot, name: &str) -> Result<Self, UplinkError> {
        crate::config::check_ifname(name).map_err(UplinkError::BadName)?;
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
        Ok(Self {
            name: link.name.clone(),
            index: link.index,
            up: link.up,
            addr,
            gateway: gateway::from_routes(snap, link.index),
        })
    }

    /// Like [`Uplink::observe`], but a missing interface is an uplink that is down.
    pub fn observe_or_absent(snap: &Snapshot, name: &str) -> Self {
        Self::observe(snap, name).unwrap_or_else(|_| Self::absent(name))
    }

    /// Whether new connections can use it now.
    pub fn usable(&self) -> bool {
        self.up && self.addr.is_some() && self.gateway.is_some()
    }

    /// Whether `gw` is on the uplink's subnet (a gateway must be on-link).
    pub fn on_link(&self, gw: Ipv4Addr) -> bool {
        self.addr.is_some_and(|a| a.contains(&gw))
    }

    /// Checks that a command can be steered through it now, or says why not.
    /// A link that is down is fine: strict sockets fail until it returns.
    pub fn check_ready(&self) -> Result<(), UplinkError> {
        if !self.up {
            return Ok(());
        }
        if self.addr.is_none() {
            return Err(UplinkError::NoAddress(self.name.clone()));
        }
        if self.gateway.is_none() {
            return Err(UplinkError::NoGateway(self.name.clone()));
        }
        Ok(())
    }
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
    fn readiness_explains_what_is_missing() {
        let mut u = Uplink {
            name: "usb0".into(),
            index: 3,
            up: true,
            addr: None,
            gateway: None,
        };
        let err = u.check_ready().unwrap_err().to_string();
        assert!(err.contains("usb0 has no IPv4 address"), "{err}");
        u.addr = Some("10.99.0.5/24".parse().unwrap());
        assert!(
            u.check_ready()
                .unwrap_err()
                .to_string()
                .contains("no gateway known for usb0")
        );
        u.up = false;
        assert!(u.check_ready().is_ok());
    }
}
