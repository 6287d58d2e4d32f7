//! rtnetlink messages to and from policy's plain types. Decoding is
//! faithful: anything srcsel cannot express is skipped, never guessed.
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::{
    AddressFamily,
    address::{AddressAttribute, AddressMessage},
    link::{LinkAttribute, LinkFlags, LinkMessage},
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType},
    rule::{RuleAction, RuleAttribute, RuleMessage},
};
use rtnetlink::RouteMessageBuilder;

use crate::policy::{
    Action, Family, PROTO, Route, Rule,
    routing::RouteKind,
    snapshot::{Address, Link, Observed},
};

pub fn link(m: &LinkMessage) -> Option<Link> {
    let name = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })?;
    let f = m.header.flags;
    Some(Link {
        index: m.header.index,
        name,
        up: f.contains(LinkFlags::Up) && f.contains(LinkFlags::Running),
        loopback: f.contains(LinkFlags::Loopback),
    })
}

pub fn address(m: &AddressMessage) -> Option<Address> {
    // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer's on
    // point-to-point links); IPv6 sends only IFA_ADDRESS.
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let ip = local.or_else(|| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip @ IpAddr::V6(_)) => Some(*ip),
            _ => None,
        })
    })?;
    // IFA_FLAGS carries all 32 bits; the header only the low 8.
    let flags = m
        .attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Flags(f) => Some(f.bits()),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.flags.bits()));
    Some(Address {
        index: m.header.index,
        net: IpNet::new(ip, m.header.prefix_len).ok()?,
        flags,
        scope: u8::from(m.header.scope),
    })
}

fn ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn proto_number(p: RouteProtocol) -> u8 {
    u8::from(p)
}

/// The table a route is in (RTA_TABLE for tables above 255).
pub fn route_table(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(m.header.table.into())
}

/// A unicast or unreachable route of either family; other kinds are not
/// srcsel's concern.
pub fn route(m: &RouteMessage) -> Option<Observed<Route>> {
    let kind = match m.header.kind {
        RouteType::Unicast => RouteKind::Unicast,
        RouteType::Unreachable => RouteKind::Unreachable,
        _ => return None,
    };
    let unspecified = match m.header.address_family {
        AddressFamily::Inet => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let (mut dst, mut gateway, mut oif, mut prefsrc, mut metric) = (unspecified, None, 0, None, 0);
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = ip(d)?,
            RouteAttribute::Gateway(g) => gateway = ip(g),
            RouteAttribute::PrefSource(s) => prefsrc = ip(s),
            RouteAttribute::Oif(i) => oif = *i,
            RouteAttribute::Priority(p) => metric = *p,
            _ => {}
        }
    }
    // IPv6 reports its reject routes on lo; they have no device.
    if kind == RouteKind::Unreachable {
        oif = 0;
    }
    Some(Observed {
        spec: Route {
            table: route_table(m),
            dst: IpNet::new(dst, m.header.destination_prefix_length).ok()?,
            gateway,
            oif,
            prefsrc,
            metric,
            kind,
        },
        proto: proto_number(m.header.protocol),
    })
}

/// The message that adds `r` with srcsel's protocol.
pub fn route_message(r: &Route) -> RouteMessage {
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(r.dst.addr(), r.dst.prefix_len())
        .expect("an IpNet is a valid prefix")
        .table_id(r.table)
        .protocol(RouteProtocol::Other(PROTO));
    if r.metric != 0 {
        b = b.priority(r.metric);
    }
    if r.kind == RouteKind::Unreachable {
        return b.kind(RouteType::Unreachable).build();
    }
    b = b.output_interface(r.oif);
    b = match r.gateway {
        Some(gw) => b.gateway(gw).expect("gateway of the route's family"),
        None => b.scope(RouteScope::Link),
    };
    if let Some(src) = r.prefsrc {
        b = b.pref_source(src).expect("source of the route's family");
    }
    b.build()
}

/// A rule srcsel can express (lookup or unreachable), of either family.
pub fn rule(m: &RuleMessage) -> Option<Observed<Rule>> {
    let family = match m.header.family {
        AddressFamily::Inet => Family::V4,
        AddressFamily::Inet6 => Family::V6,
        _ => return None,
    };
    let mut table = u32::from(m.header.table);
    let (mut priority, mut mark, mut mask, mut from, mut suppress, mut proto) =
        (0, None, None, None, None, 0);
    let mut local_only = false;
    for a in &m.attributes {
        match a {
            RuleAttribute::Priority(p) => priority = *p,
            RuleAttribute::FwMark(v) => mark = Some(*v),
            RuleAttribute::FwMask(v) => mask = Some(*v),
            RuleAttribute::Table(t) => table = *t,
            // Every dump carries it; u32::MAX (-1) means "not set".
            RuleAttribute::SuppressPrefixLen(s) if *s != u32::MAX => suppress = Some(*s),
            RuleAttribute::Source(a) => from = IpNet::new(*a, m.header.src_len).ok(),
            RuleAttribute::Protocol(p) => proto = proto_number(*p),
            RuleAttribute::Iifname(n) if n == "lo" => local_only = true,
            // Selectors srcsel never writes: not a rule it can express.
            RuleAttribute::Iifname(_) | RuleAttribute::Oifname(_) => return None,
            _ => {}
        }
    }
    let action = match m.header.action {
        RuleAction::ToTable => Action::Lookup(table),
        RuleAction::Unreachable => Action::Unreachable,
        _ => return None,
    };
    Some(Observed {
        spec: Rule {
            family,
            priority,
            // The kernel leaves FRA_FWMARK out when the mark is 0 (`fwmark
            // 0/0x3f000000`), and FRA_FWMASK out when it is all ones.
            fwmark: match (mark, mask) {
                (None, None) => None,
                (m, mask) => Some((m.unwrap_or(0), mask.unwrap_or(u32::MAX))),
            },
            from,
            local_only,
            suppress_prefixlen: suppress,
            action,
        },
        proto,
    })
}

/// Fills a rule request's message so that it adds `r` with srcsel's protocol.
pub fn fill_rule(msg: &mut RuleMessage, r: &Rule) {
    msg.header.family = match r.family {
        Family::V4 => AddressFamily::Inet,
        Family::V6 => AddressFamily::Inet6,
    };
    if let Some(from) = r.from {
        msg.header.src_len = from.prefix_len();
        msg.attributes.push(RuleAttribute::Source(from.addr()));
    }
    match r.action {
        Action::Lookup(t) => {
            msg.header.action = RuleAction::ToTable;
            msg.header.table = u8::try_from(t).unwrap_or(0);
            msg.attributes.push(RuleAttribute::Table(t));
        }
        Action::Unreachable => {
            msg.header.action = RuleAction::Unreachable;
            msg.header.table = 0;
        }
    }
    if let Some((mark, mask)) = r.fwmark {
        msg.attributes.push(RuleAttribute::FwMark(mark));
        msg.attributes.push(RuleAttribute::FwMask(mask));
    }
    if let Some(s) = r.suppress_prefixlen {
        msg.attributes.push(RuleAttribute::SuppressPrefixLen(s));
    }
    if r.local_only {
        msg.attributes.push(RuleAttribute::Iifname("lo".into()));
    }
    msg.attributes
        .push(RuleAttribute::Protocol(RouteProtocol::Other(PROTO)));
}

/// Whether a dumped rule carries srcsel's protocol.
pub fn is_our_rule(m: &RuleMessage) -> bool {
    m.attributes
        .contains(&RuleAttribute::Protocol(RouteProtocol::Other(PROTO)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_round_trip_through_their_message() {
        for (dst, gw, src, kind) in [
            (
                "0.0.0.0/0",
                Some("10.99.0.1"),
                Some("10.99.0.57"),
                RouteKind::Unicast,
            ),
            ("10.99.0.0/24", None, Some("10.99.0.57"), RouteKind::Unicast),
            ("::/0", Some("fe80::1"), None, RouteKind::Unicast),
            ("::/0", None, None, RouteKind::Unreachable),
        ] {
            let oif = if kind == RouteKind::Unicast { 3 } else { 0 };
            let r = Route {
                prefsrc: src.map(|s| s.parse().unwrap()),
                kind,
                ..Route::unicast(
                    0x5301,
                    dst.parse().unwrap(),
                    gw.map(|g| g.parse().unwrap()),
                    oif,
                )
            };
            let back = route(&route_message(&r)).unwrap();
            assert_eq!(back.spec, r);
            assert!(back.is_ours());
        }
    }

    #[test]
    fn an_unset_suppress_prefixlength_decodes_as_none() {
        // As the kernel dumps a rule without one (6.1 and 6.18 alike).
        let mut m = RuleMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.action = RuleAction::ToTable;
        m.attributes.push(RuleAttribute::Table(0x5301));
        m.attributes
            .push(RuleAttribute::SuppressPrefixLen(u32::MAX));
        assert_eq!(rule(&m).unwrap().spec.suppress_prefixlen, None);
    }

    #[test]
    fn a_zero_mark_with_a_mask_decodes_as_dumped() {
        // `fwmark 0/0x3f000000` as the kernel dumps it: no FRA_FWMARK.
        let mut m = RuleMessage::default();
        m.header.family = AddressFamily::Inet6;
        m.header.action = RuleAction::ToTable;
        m.attributes.push(RuleAttribute::Table(0x5300));
        m.attributes.push(RuleAttribute::FwMask(0x3f00_0000));
        assert_eq!(rule(&m).unwrap().spec.fwmark, Some((0, 0x3f00_0000)));
    }

    #[test]
    fn rules_round_trip_through_their_message() {
        let r = Rule {
            family: Family::V4,
            priority: 5312,
            fwmark: Some((0x0100_0000, 0x3f00_0000)),
            from: Some("10.99.0.57/32".parse().unwrap()),
            local_only: true,
            suppress_prefixlen: Some(0),
            action: Action::Lookup(0x5301),
        };
        let mut m = RuleMessage::default();
        m.attributes.push(RuleAttribute::Priority(r.priority));
        fill_rule(&mut m, &r);
        let back = rule(&m).unwrap();
        assert_eq!(back.spec, r);
        assert!(back.is_ours() && is_our_rule(&m));
    }
}
