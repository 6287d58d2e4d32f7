//! What the kernel says about an uplink right now: its link, IPv4 address
//! and gateway. Read-only: observing never changes anything.
use std::{fmt, net::Ipv4Addr, str::FromStr};

use futures::TryStreamExt as _;
use netlink_packet_route::{
    address::AddressAttribute,
    link::{LinkAttribute, LinkFlags},
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol},
};
use rtnetlink::Handle;

use crate::routing;

/// An IPv4 address with a prefix length (`10.99.0.57/24`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Ipv4Net {
    pub const DEFAULT: Self = Self {
        addr: Ipv4Addr::UNSPECIFIED,
        len: 0,
    };

    pub const fn host(addr: Ipv4Addr) -> Self {
        Self { addr, len: 32 }
    }

    fn mask(self) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0)
    }

    /// The network this address is in (`10.99.0.0/24`).
    pub fn network(self) -> Self {
        Self {
            addr: Ipv4Addr::from(u32::from(self.addr) & self.mask()),
            len: self.len,
        }
    }

    pub fn contains(self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == u32::from(self.addr) & self.mask()
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv4Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = s.split_once('/').unwrap_or((s, "32"));
        let addr = a.parse().map_err(|e| format!("{s}: {e}"))?;
        let len = l
            .parse()
            .ok()
            .filter(|l| *l <= 32)
            .ok_or_else(|| format!("{s}: bad prefix length"))?;
        Ok(Self { addr, len })
    }
}

/// An uplink as observed in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uplink {
    pub name: String,
    pub index: u32,
    /// Administratively up with carrier: packets can leave.
    pub up: bool,
    pub addr: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
}

impl Uplink {
    /// An uplink whose interface does not exist (a USB device unplugged).
    pub fn absent(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            index: 0,
            up: false,
            addr: None,
            gateway: None,
        }
    }

    /// Whether new connections can use it now.
    pub fn usable(&self) -> bool {
        self.up && self.addr.is_some() && self.gateway.is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("no interface named {0} in this network namespace (see `ip link`)")]
    NotFound(String),
    #[error("{0} has no IPv4 address — is its DHCP client running?")]
    NoAddress(String),
    #[error(
        "no gateway known for {0}: no default route via {0} in any table — \
         let its DHCP client install one (dhcpcd: `metric 3000`, not `nogateway`)"
    )]
    NoGateway(String),
    #[error("netlink: reading {what}")]
    Netlink {
        what: &'static str,
        #[source]
        source: rtnetlink::Error,
    },
}

/// Reads the link, its first IPv4 address, and a default route via it.
/// `routes` is a dump of every IPv4 table ([`routing::all_routes4`]).
pub async fn observe(
    handle: &Handle,
    name: &str,
    routes: &[RouteMessage],
) -> Result<Uplink, UplinkError> {
    let links: Vec<_> = match handle
        .link()
        .get()
        .match_name(name.to_owned())
        .execute()
        .try_collect()
        .await
    {
        Ok(links) => links,
        // The kernel answers ENODEV for an unknown name.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => vec![],
        Err(source) => {
            return Err(UplinkError::Netlink {
                what: "links",
                source,
            });
        }
    };
    let link = links
        .into_iter()
        .next()
        .ok_or_else(|| UplinkError::NotFound(name.to_owned()))?;
    let index = link.header.index;
    let flags = link.header.flags;
    let name = link
        .attributes
        .iter()
        .find_map(|a| {
            if let LinkAttribute::IfName(n) = a {
                Some(n.clone())
            } else {
                None
            }
        })
        .unwrap_or_else(|| name.to_owned());
    let up = flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::Running);

    let addrs: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(|source| UplinkError::Netlink {
            what: "addresses",
            source,
        })?;
    let addr = addrs.iter().find_map(|m| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(std::net::IpAddr::V4(v4)) => Some(Ipv4Net {
                addr: *v4,
                len: m.header.prefix_len,
            }),
            _ => None,
        })
    });

    let gateway = gateway_from(routes, index);
    Ok(Uplink {
        name,
        index,
        up,
        addr,
        gateway,
    })
}

/// The gateway of a default route via `index` in any table (dhcpcd's
/// `metric 3000` route in main, a NetworkManager table, ...), not counting
/// srcsel's own routes, which only copy it.
pub fn gateway_from(routes: &[RouteMessage], index: u32) -> Option<Ipv4Addr> {
    routes
        .iter()
        .filter(|m| {
            m.header.destination_prefix_length == 0
                && m.header.protocol != RouteProtocol::Other(routing::PROTO)
        })
        .filter(|m| m.attributes.contains(&RouteAttribute::Oif(index)))
        .find_map(|m| {
            m.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(gw)) => Some(*gw),
                _ => None,
            })
        })
}

/// Like [`observe`], but an interface that does not exist (a USB device
/// unplugged) is an uplink that is down, not an error.
pub async fn observe_or_absent(
    handle: &Handle,
    name: &str,
    routes: &[RouteMessage],
) -> Result<Uplink, UplinkError> {
    match observe(handle, name, routes).await {
        Err(UplinkError::NotFound(_)) => Ok(Uplink::absent(name)),
        other => other,
    }
}

/// Checks that a command can be steered through `up` now, or explains why not.
/// A link that is down is fine: strict sockets fail until it returns.
pub fn check_ready(up: &Uplink) -> Result<(), UplinkError> {
    if !up.up {
        return Ok(());
    }
    if up.addr.is_none() {
        return Err(UplinkError::NoAddress(up.name.clone()));
    }
    if up.gateway.is_none() {
        return Err(UplinkError::NoGateway(up.name.clone()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::route::RouteMessage;

    #[test]
    fn network_masks_host_bits() {
        let n: Ipv4Net = "10.99.0.57/24".parse().unwrap();
        assert_eq!(n.network().to_string(), "10.99.0.0/24");
        assert_eq!(Ipv4Net::DEFAULT.network(), Ipv4Net::DEFAULT);
        assert_eq!("1.2.3.4".parse::<Ipv4Net>().unwrap().len, 32);
        assert!("1.2.3.4/33".parse::<Ipv4Net>().is_err());
    }

    fn default_route(oif: u32, gw: &str, proto: RouteProtocol) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.protocol = proto;
        m.attributes.push(RouteAttribute::Oif(oif));
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(
                gw.parse().unwrap(),
            )));
        m
    }

    #[test]
    fn gateway_comes_from_a_default_route_via_the_link_but_not_ours() {
        let routes = vec![
            default_route(2, "10.1.0.1", RouteProtocol::Dhcp),
            default_route(3, "10.99.0.254", RouteProtocol::Other(routing::PROTO)),
            default_route(3, "10.99.0.1", RouteProtocol::Dhcp),
        ];
        assert_eq!(gateway_from(&routes, 3), Some("10.99.0.1".parse().unwrap()));
        assert_eq!(gateway_from(&routes, 4), None);
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
        let err = check_ready(&u).unwrap_err().to_string();
        assert!(err.contains("usb0 has no IPv4 address"), "{err}");
        u.addr = Some("10.99.0.5/24".parse().unwrap());
        assert!(
            check_ready(&u)
                .unwrap_err()
                .to_string()
                .contains("no gateway known for usb0")
        );
        u.up = false;
        assert!(check_ready(&u).is_ok());
    }
}
