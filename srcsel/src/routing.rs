//! Per-uplink routing policy: the table and rules an uplink needs (pure), and
//! the thin rtnetlink adapter that makes the kernel match them.
//!
//! Everything srcsel adds carries [`PROTO`]; only such objects are ever
//! changed or removed.
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt as _;
use netlink_packet_route::{
    AddressFamily,
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType},
    rule::{RuleAction, RuleAttribute, RuleMessage},
};
use rtnetlink::{Handle, IpVersion, RouteMessageBuilder};
use srcsel_common::{MARK_MASK, STRICT_BIT, mark_for};

use crate::uplink::{Ipv4Net, Uplink};

/// srcsel's routing protocol number (`ip rule/route ... proto 201`).
pub const PROTO: u8 = 201;
/// Uplink `id` owns tables and rule priorities derived from these bases.
pub const TABLE_BASE: u32 = 0x5300;
pub const PRIORITY_BASE: u32 = 5300;
const PRIORITIES_PER_UPLINK: u32 = 10;

/// The default routing table of uplink `id`.
pub const fn table_for(id: u32) -> u32 {
    TABLE_BASE + id
}

/// Where an uplink's routing lives: its slot (mark, rule priorities) and table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub id: u32,
    pub table: u32,
}

fn priorities(id: u32) -> std::ops::Range<u32> {
    let base = PRIORITY_BASE + id * PRIORITIES_PER_UPLINK;
    base..base + PRIORITIES_PER_UPLINK
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Lookup(u32),
    Unreachable,
}

/// One `ip rule`, as far as srcsel writes and compares it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub family: Family,
    pub priority: u32,
    pub fwmark: Option<(u32, u32)>,
    pub from: Option<Ipv4Net>,
    pub suppress_prefixlen: Option<u32>,
    pub action: Action,
}

/// One route in an uplink's table.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    pub table: u32,
    pub dst: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub oif: u32,
    pub prefsrc: Option<Ipv4Addr>,
}

const MAIN_TABLE: u32 = 254;

/// The rules uplink `id` needs (priorities ascending):
/// - its marked sockets keep LAN and link routes of the main table (only the
///   default route is suppressed there);
/// - then they use the uplink's table;
/// - programs that bind to the uplink's address use the table too (the
///   classic rule; it also lets replies on the uplink pass rp_filter);
/// - strict sockets that found no route in the table stop here, for IPv4 and
///   IPv6 alike, instead of falling through to the main table.
pub fn desired_rules(Slot { id, table }: Slot, up: &Uplink) -> Vec<Rule> {
    let p = priorities(id).start;
    let mark = (mark_for(id), MARK_MASK & !STRICT_BIT);
    let strict = (mark_for(id) | STRICT_BIT, MARK_MASK);
    let rule = |family, priority, fwmark, action| Rule {
        family,
        priority,
        fwmark,
        from: None,
        suppress_prefixlen: None,
        action,
    };
    let mut rules = vec![
        Rule {
            suppress_prefixlen: Some(0),
            ..rule(Family::V4, p, Some(mark), Action::Lookup(MAIN_TABLE))
        },
        rule(Family::V4, p + 1, Some(mark), Action::Lookup(table)),
    ];
    if let Some(addr) = up.addr {
        rules.push(Rule {
            from: Some(Ipv4Net::host(addr.addr)),
            ..rule(Family::V4, p + 2, None, Action::Lookup(table))
        });
    }
    rules.push(rule(Family::V4, p + 3, Some(strict), Action::Unreachable));
    rules.push(rule(Family::V6, p + 3, Some(strict), Action::Unreachable));
    rules
}

/// The routes of uplink `id`'s table while it is up: the link's connected
/// route and, with a gateway, the default route. A down link has none (the
/// kernel refuses routes over it and flushes them itself).
pub fn desired_routes(table: u32, up: &Uplink) -> Vec<Route> {
    let mut routes = Vec::new();
    let (true, Some(addr)) = (up.up, up.addr) else {
        return routes;
    };
    routes.push(Route {
        table,
        dst: addr.network(),
        gateway: None,
        oif: up.index,
        prefsrc: Some(addr.addr),
    });
    if let Some(gw) = up.gateway {
        routes.push(Route {
            table,
            dst: Ipv4Net::DEFAULT,
            gateway: Some(gw),
            oif: up.index,
            prefsrc: Some(addr.addr),
        });
    }
    routes
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} table {} oif {}", self.dst, self.table, self.oif)?;
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {:?}", self.priority, self.family)?;
        if let Some((m, mask)) = self.fwmark {
            write!(f, " fwmark {m:#x}/{mask:#x}")?;
        }
        if let Some(from) = self.from {
            write!(f, " from {from}")?;
        }
        match self.action {
            Action::Lookup(t) => write!(f, " lookup {t}"),
            Action::Unreachable => write!(f, " unreachable"),
        }
    }
}

/// Destinations that the main table keeps on a local link or LAN: its
/// non-default unicast routes. The `suppress_prefixlength 0` rule sends marked
/// sockets there through the main table, so the programs must not bind them
/// to the uplink's address either.
pub fn exempt_prefixes(routes: &[RouteMessage]) -> std::collections::BTreeSet<Ipv4Net> {
    routes
        .iter()
        .filter(|m| route_table(m) == MAIN_TABLE && m.header.destination_prefix_length > 0)
        .filter_map(parse_route)
        .map(|r| r.dst)
        .collect()
}

/// What to remove and what to add so that `current` becomes `desired`.
pub fn diff<T: PartialEq + Clone>(current: &[T], desired: &[T]) -> (Vec<T>, Vec<T>) {
    let remove = current
        .iter()
        .filter(|c| !desired.contains(c))
        .cloned()
        .collect();
    let add = desired
        .iter()
        .filter(|d| !current.contains(d))
        .cloned()
        .collect();
    (remove, add)
}

/// Whether a rule at this priority belongs to uplink `id`.
pub fn in_range(id: u32, priority: u32) -> bool {
    priorities(id).contains(&priority)
}

#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("netlink: {what}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error(
        "routing table {table} already holds routes that srcsel did not add (for example {example}); \
         srcsel needs that table for {uplink} — remove those routes or free the table"
    )]
    ForeignTable {
        table: u32,
        uplink: String,
        example: String,
    },
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> RoutingError {
    let what = what.into();
    move |source| RoutingError::Netlink { what, source }
}

/// Refuses a table that holds routes srcsel did not add: it is someone else's.
pub fn check_table_free(
    table: u32,
    uplink: &str,
    routes: &[RouteMessage],
) -> Result<(), RoutingError> {
    let foreign = routes
        .iter()
        .filter(|m| route_table(m) == table && m.header.protocol != RouteProtocol::Other(PROTO))
        .find_map(parse_route);
    match foreign {
        Some(r) => Err(RoutingError::ForeignTable {
            table,
            uplink: uplink.to_owned(),
            example: r.to_string(),
        }),
        None => Ok(()),
    }
}

/// Makes the kernel's table and rules for an uplink equal to the desired ones.
/// `routes` is this pass's dump of every IPv4 table ([`all_routes4`]); the
/// table must already have passed [`check_table_free`].
pub async fn apply(
    handle: &Handle,
    slot: Slot,
    up: &Uplink,
    routes: &[RouteMessage],
) -> Result<(), RoutingError> {
    let Slot { id, table } = slot;
    let current: Vec<(Route, &RouteMessage)> = routes
        .iter()
        .filter(|m| route_table(m) == table)
        .filter_map(|m| Some((parse_route(m)?, m)))
        .collect();
    let current_specs: Vec<Route> = current.iter().map(|(r, _)| r.clone()).collect();
    let (remove, add) = diff(&current_specs, &desired_routes(table, up));
    for (spec, msg) in &current {
        if remove.contains(spec) {
            handle
                .route()
                .del((*msg).clone())
                .execute()
                .await
                .map_err(nl(format!("deleting route {spec}")))?;
        }
    }
    // Connected route first: the default route's gateway must be reachable.
    for spec in &add {
        handle
            .route()
            .add(route_message(spec))
            .replace()
            .execute()
            .await
            .map_err(nl(format!("adding route {spec} for {}", up.name)))?;
    }

    let owned = owned_rules(handle).await?;
    let current: Vec<&(Rule, RuleMessage)> = owned
        .iter()
        .filter(|(r, _)| in_range(id, r.priority))
        .collect();
    let current_specs: Vec<Rule> = current.iter().map(|(r, _)| r.clone()).collect();
    let (remove, add) = diff(&current_specs, &desired_rules(slot, up));
    for (spec, msg) in current {
        if remove.contains(spec) {
            handle
                .rule()
                .del(msg.clone())
                .execute()
                .await
                .map_err(nl(format!("deleting rule {spec}")))?;
        }
    }
    for spec in &add {
        add_rule(handle, spec).await?;
    }
    Ok(())
}

/// Removes every rule and route that carries srcsel's protocol number.
pub async fn remove_all(handle: &Handle) -> Result<usize, RoutingError> {
    let mut removed = 0;
    for (spec, msg) in owned_rules(handle).await? {
        handle
            .rule()
            .del(msg)
            .execute()
            .await
            .map_err(nl(format!("deleting rule {spec}")))?;
        removed += 1;
    }
    for version in [IpVersion::V4, IpVersion::V6] {
        for msg in dump_routes(handle, version).await? {
            if msg.header.protocol == RouteProtocol::Other(PROTO) {
                handle
                    .route()
                    .del(msg)
                    .execute()
                    .await
                    .map_err(nl("deleting a route of srcsel"))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

async fn dump_routes(
    handle: &Handle,
    version: IpVersion,
) -> Result<Vec<RouteMessage>, RoutingError> {
    let query = match version {
        IpVersion::V4 => RouteMessageBuilder::<Ipv4Addr>::new().build(),
        IpVersion::V6 => RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
    };
    handle
        .route()
        .get(query)
        .execute()
        .try_collect()
        .await
        .map_err(nl("dumping routes"))
}

/// All IPv4 routes of every table.
pub async fn all_routes4(handle: &Handle) -> Result<Vec<RouteMessage>, RoutingError> {
    dump_routes(handle, IpVersion::V4).await
}

pub fn route_table(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| {
            if let RouteAttribute::Table(t) = a {
                Some(*t)
            } else {
                None
            }
        })
        .unwrap_or(m.header.table.into())
}

fn route_message(r: &Route) -> RouteMessage {
    let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(r.dst.addr, r.dst.len)
        .output_interface(r.oif)
        .table_id(r.table)
        .protocol(RouteProtocol::Other(PROTO));
    if let Some(gw) = r.gateway {
        b = b.gateway(gw);
    } else {
        b = b.scope(RouteScope::Link);
    }
    if let Some(src) = r.prefsrc {
        b = b.pref_source(src);
    }
    b.build()
}

fn parse_route(m: &RouteMessage) -> Option<Route> {
    let mut r = Route {
        table: route_table(m),
        dst: Ipv4Net {
            addr: Ipv4Addr::UNSPECIFIED,
            len: m.header.destination_prefix_length,
        },
        gateway: None,
        oif: 0,
        prefsrc: None,
    };
    if m.header.kind != RouteType::Unicast {
        return None;
    }
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(RouteAddress::Inet(d)) => r.dst.addr = *d,
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => r.gateway = Some(*g),
            RouteAttribute::PrefSource(RouteAddress::Inet(s)) => r.prefsrc = Some(*s),
            RouteAttribute::Oif(i) => r.oif = *i,
            _ => {}
        }
    }
    Some(r)
}

/// srcsel's rules in force, parsed.
pub async fn owned_rule_specs(handle: &Handle) -> Result<Vec<Rule>, RoutingError> {
    Ok(owned_rules(handle)
        .await?
        .into_iter()
        .map(|(r, _)| r)
        .collect())
}

async fn owned_rules(handle: &Handle) -> Result<Vec<(Rule, RuleMessage)>, RoutingError> {
    let mut owned = Vec::new();
    for version in [IpVersion::V4, IpVersion::V6] {
        let msgs: Vec<RuleMessage> = handle
            .rule()
            .get(version)
            .execute()
            .try_collect()
            .await
            .map_err(nl("dumping rules"))?;
        owned.extend(
            msgs.into_iter()
                .filter(is_owned_rule)
                .filter_map(|m| Some((parse_rule(&m)?, m))),
        );
    }
    Ok(owned)
}

fn is_owned_rule(m: &RuleMessage) -> bool {
    m.attributes
        .contains(&RuleAttribute::Protocol(RouteProtocol::Other(PROTO)))
}

fn parse_rule(m: &RuleMessage) -> Option<Rule> {
    let family = match m.header.family {
        AddressFamily::Inet => Family::V4,
        AddressFamily::Inet6 => Family::V6,
        _ => return None,
    };
    let mut table = u32::from(m.header.table);
    let (mut priority, mut mark, mut mask, mut from, mut suppress) =
        (0, None, u32::MAX, None, None);
    for a in &m.attributes {
        match a {
            RuleAttribute::Priority(p) => priority = *p,
            RuleAttribute::FwMark(v) => mark = Some(*v),
            RuleAttribute::FwMask(v) => mask = *v,
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::SuppressPrefixLen(s) => suppress = Some(*s),
            RuleAttribute::Source(IpAddr::V4(a)) => {
                from = Some(Ipv4Net {
                    addr: *a,
                    len: m.header.src_len,
                })
            }
            _ => {}
        }
    }
    let action = match m.header.action {
        RuleAction::ToTable => Action::Lookup(table),
        RuleAction::Unreachable => Action::Unreachable,
        _ => return None,
    };
    Some(Rule {
        family,
        priority,
        fwmark: mark.map(|m| (m, mask)),
        from,
        suppress_prefixlen: suppress,
        action,
    })
}

async fn add_rule(handle: &Handle, r: &Rule) -> Result<(), RoutingError> {
    let mut req = handle.rule().add().priority(r.priority);
    let msg = req.message_mut();
    msg.header.family = match r.family {
        Family::V4 => AddressFamily::Inet,
        Family::V6 => AddressFamily::Inet6,
    };
    if let Some(from) = r.from {
        msg.header.src_len = from.len;
        msg.attributes
            .push(RuleAttribute::Source(IpAddr::V4(from.addr)));
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
    msg.attributes
        .push(RuleAttribute::Protocol(RouteProtocol::Other(PROTO)));
    req.execute().await.map_err(nl(format!("adding rule {r}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usb0(addr: Option<&str>, gw: Option<&str>, up: bool) -> Uplink {
        Uplink {
            name: "usb0".into(),
            index: 7,
            up,
            addr: addr.map(|a| a.parse().unwrap()),
            gateway: gw.map(|g| g.parse().unwrap()),
        }
    }

    fn slot(id: u32) -> Slot {
        Slot {
            id,
            table: table_for(id),
        }
    }

    #[test]
    fn up_uplink_gets_connected_and_default_route() {
        let routes = desired_routes(
            table_for(2),
            &usb0(Some("10.99.0.57/24"), Some("10.99.0.1"), true),
        );
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].dst, "10.99.0.0/24".parse().unwrap());
        assert_eq!(routes[0].gateway, None);
        assert_eq!(routes[1].dst, Ipv4Net::DEFAULT);
        assert_eq!(routes[1].gateway, Some("10.99.0.1".parse().unwrap()));
        assert!(routes.iter().all(|r| r.table == table_for(2) && r.oif == 7));
    }

    #[test]
    fn down_uplink_keeps_no_routes() {
        assert!(
            desired_routes(9, &usb0(Some("10.99.0.57/24"), Some("10.99.0.1"), false)).is_empty()
        );
        let no_gateway = desired_routes(9, &usb0(Some("10.99.0.57/24"), None, true));
        assert_eq!(no_gateway.len(), 1);
        assert!(desired_routes(9, &usb0(None, None, true)).is_empty());
    }

    #[test]
    fn rules_stay_in_the_uplinks_priority_range() {
        let rules = desired_rules(
            slot(3),
            &usb0(Some("10.99.0.57/24"), Some("10.99.0.1"), true),
        );
        assert!(rules.iter().all(|r| in_range(3, r.priority)
            && !in_range(2, r.priority)
            && !in_range(4, r.priority)));
        let from: Vec<_> = rules.iter().filter_map(|r| r.from).collect();
        assert_eq!(from, vec!["10.99.0.57/32".parse().unwrap()]);
        // The strict catch-all comes after the table lookup, for both families.
        let unreachable: Vec<_> = rules
            .iter()
            .filter(|r| r.action == Action::Unreachable)
            .collect();
        assert_eq!(unreachable.len(), 2);
        let lookup = rules
            .iter()
            .find(|r| r.action == Action::Lookup(table_for(3)))
            .unwrap();
        assert!(unreachable.iter().all(|u| u.priority > lookup.priority));
    }

    #[test]
    fn strict_rule_matches_only_strict_sockets_and_lookups_match_both() {
        let rules = desired_rules(slot(1), &usb0(None, None, false));
        let (m, mask) = rules
            .iter()
            .find(|r| r.action == Action::Unreachable)
            .unwrap()
            .fwmark
            .unwrap();
        let (lm, lmask) = rules[1].fwmark.unwrap();
        let strict_sock = mark_for(1) | STRICT_BIT;
        let fallback_sock = mark_for(1);
        assert_eq!(strict_sock & mask, m);
        assert_ne!(fallback_sock & mask, m);
        assert_eq!(strict_sock & lmask, lm);
        assert_eq!(fallback_sock & lmask, lm);
        // Without an address there is no classic `from` rule.
        assert!(rules.iter().all(|r| r.from.is_none()));
    }

    #[test]
    fn diff_keeps_what_matches() {
        let old = desired_rules(
            slot(1),
            &usb0(Some("10.99.0.57/24"), Some("10.99.0.1"), true),
        );
        let new = desired_rules(
            slot(1),
            &usb0(Some("10.77.0.9/24"), Some("10.77.0.1"), true),
        );
        let (remove, add) = diff(&old, &new);
        assert_eq!(remove.len(), 1);
        assert_eq!(add.len(), 1);
        assert_eq!(add[0].from, Some("10.77.0.9/32".parse().unwrap()));
        assert_eq!(diff(&new, &new), (vec![], vec![]));
    }
}
