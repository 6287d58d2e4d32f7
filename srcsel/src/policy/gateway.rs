//! Where an uplink's gateway comes from: a default route via the link (the
//! DHCP client's, in any table) beats the one a DHCP hook reported, which
//! beats the config's; the last two only when on the uplink's subnet.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Snapshot, Uplink};

/// Where the gateway came from, for logs and status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewaySource {
    Route,
    Hook,
    Config,
    None,
}

/// The gateway of a default route via `index` in any table (dhcpcd's
/// `metric 3000` route in main, a NetworkManager table, ...), not counting
/// srcsel's own routes, which only copy it.
pub fn from_routes(snap: &Snapshot, index: u32) -> Option<Ipv4Addr> {
    defaults_via(snap, index).find_map(|gw| match gw {
        IpAddr::V4(gw) => Some(gw),
        IpAddr::V6(_) => None,
    })
}

/// The same for IPv6: the router a router advertisement (or the admin)
/// installed a default route through, usually by its link-local address.
pub fn from_routes6(snap: &Snapshot, index: u32) -> Option<Ipv6Addr> {
    defaults_via(snap, index).find_map(|gw| match gw {
        IpAddr::V6(gw) => Some(gw),
        IpAddr::V4(_) => None,
    })
}

fn defaults_via(snap: &Snapshot, index: u32) -> impl Iterator<Item = IpAddr> + '_ {
    snap.routes
        .iter()
        .filter(move |r| !r.is_ours() && r.spec.dst.prefix_len() == 0 && r.spec.oif == index)
        .filter_map(|r| r.spec.gateway)
}

/// Fills in the IPv6 gateway from the config when no default route names one.
pub fn choose6(up: &mut Uplink, config: Option<Ipv6Addr>) {
    if up.gateway6.is_none() {
        up.gateway6 = config.filter(|g| up.on_link6(*g));
    }
}

/// Fills in the gateway when no default route names one.
pub fn choose(up: &mut Uplink, hook: Option<Ipv4Addr>, config: Option<Ipv4Addr>) -> GatewaySource {
    if up.gateway.is_some() {
        return GatewaySource::Route;
    }
    let (gw, source) = match (
        hook.filter(|g| up.on_link(*g)),
        config.filter(|g| up.on_link(*g)),
    ) {
        (Some(gw), _) => (Some(gw), GatewaySource::Hook),
        (None, Some(gw)) => (Some(gw), GatewaySource::Config),
        (None, None) => (None, GatewaySource::None),
    };
    up.gateway = gw;
    source
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{
        PROTO, Route,
        snapshot::{Observed, Snapshot},
    };

    fn up(addr: &str, gw: Option<&str>) -> Uplink {
        Uplink {
            index: 4,
            up: true,
            addr: Some(addr.parse().unwrap()),
            gateway: gw.map(|g| g.parse().unwrap()),
            ..Uplink::absent("eth0v0")
        }
    }

    #[test]
    fn route_beats_hook_beats_config_and_off_link_gateways_are_ignored() {
        let cfg = Some("203.0.113.254".parse().unwrap());
        let hook = Some("203.0.113.1".parse().unwrap());
        let mut u = up("203.0.113.7/24", Some("203.0.113.9"));
        assert_eq!(choose(&mut u, hook, cfg), GatewaySource::Route);
        let mut u = up("203.0.113.7/24", None);
        assert_eq!(choose(&mut u, hook, cfg), GatewaySource::Hook);
        assert_eq!(u.gateway, hook);
        let mut u = up("203.0.113.7/24", None);
        assert_eq!(
            choose(&mut u, Some("10.0.0.1".parse().unwrap()), cfg),
            GatewaySource::Config
        );
        let mut u = up("198.51.100.7/24", None);
        assert_eq!(choose(&mut u, hook, cfg), GatewaySource::None);
        assert_eq!(u.gateway, None);
    }

    fn default_route(oif: u32, gw: &str, proto: u8) -> Observed<Route> {
        Observed {
            spec: Route {
                table: 254,
                dst: "0.0.0.0/0".parse().unwrap(),
                gateway: Some(gw.parse().unwrap()),
                oif,
                prefsrc: None,
                metric: 0,
                kind: crate::policy::routing::RouteKind::Unicast,
            },
            proto,
        }
    }

    #[test]
    fn gateway_comes_from_a_default_route_via_the_link_but_not_ours() {
        let s = Snapshot {
            routes: vec![
                default_route(2, "10.1.0.1", 16),
                default_route(3, "10.99.0.254", PROTO),
                default_route(3, "10.99.0.1", 16),
            ],
            ..Snapshot::default()
        };
        assert_eq!(from_routes(&s, 3), Some("10.99.0.1".parse().unwrap()));
        assert_eq!(from_routes(&s, 4), None);
        assert_eq!(from_routes6(&s, 3), None);
        let mut ra = default_route(3, "fe80::1", 9);
        ra.spec.dst = "::/0".parse().unwrap();
        let s = Snapshot {
            routes: vec![ra],
            ..s
        };
        assert_eq!(from_routes6(&s, 3), Some("fe80::1".parse().unwrap()));
        assert_eq!(from_routes(&s, 3), None);
    }
}
