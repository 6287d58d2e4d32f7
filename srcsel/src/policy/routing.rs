//! The table and rules an uplink needs, the LAN prefixes its programs leave
//! alone, and the difference between what is and what should be.
use std::{
    collections::BTreeSet,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use srcsel_common::{MARK_MASK, STRICT_BIT, UPLINK_MASK};

use super::{
    Snapshot, Uplink,
    slot::{MAIN_TABLE, Slot, priorities},
};

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
    /// Mark and mask.
    pub fwmark: Option<(u32, u32)>,
    pub from: Option<IpNet>,
    /// `iif lo`: only packets this host originates.
    pub local_only: bool,
    pub suppress_prefixlen: Option<u32>,
    pub action: Action,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteKind {
    Unicast,
    /// Lookups that end here fail (ENETUNREACH); no device, no gateway.
    Unreachable,
}

/// One route, as far as srcsel writes and compares it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    pub table: u32,
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub oif: u32,
    pub prefsrc: Option<IpAddr>,
    /// As the kernel reports it: IPv4 routes default to 0, IPv6 ones to 1024.
    pub metric: u32,
    pub kind: RouteKind,
}

/// The metric the kernel gives an IPv6 route added without one.
pub const METRIC6: u32 = 1024;

impl Route {
    /// A unicast route with the kernel's default metric for its family.
    pub fn unicast(table: u32, dst: IpNet, gateway: Option<IpAddr>, oif: u32) -> Self {
        let metric = match dst {
            IpNet::V4(_) => 0,
            IpNet::V6(_) => METRIC6,
        };
        Self {
            table,
            dst,
            gateway,
            oif,
            prefsrc: None,
            metric,
            kind: RouteKind::Unicast,
        }
    }
}

/// The rules uplink `slot` needs, the same for each family (priorities
/// ascending):
/// - its marked sockets keep LAN and link routes of the main table (only the
///   default route is suppressed there);
/// - then they use the uplink's table, unless its health checks found the
///   family dead: then fallback sockets take normal routing, as when the
///   table has no default route (the table stays, for the probes, which
///   bind the uplink's address);
/// - on an isolated uplink ([`super::isolate`]), unassigned IPv6 sockets
///   with its address are refused: when no route fits, IPv6 source
///   selection hands them the only global address, the uplink's, and looks
///   again. (Not for IPv4: there rp_filter's reverse lookup of the uplink's
///   replies looks the same, and IPv4 picks no source without a route.)
/// - programs that bind to the uplink's address use the table too (the
///   classic rule; it also lets replies on the uplink pass rp_filter), but,
///   as for marked sockets, only for its default route: the main table's
///   specific routes (a static route via a second LAN router, a VPN's
///   prefixes) come first, so a source address never bypasses them;
/// - strict sockets that found no route in the table stop here, instead of
///   falling through to the main table.
///
/// The main-table rules and the programs' exempt trie ([`exempt_prefixes`])
/// read the same set: the main table's routes longer than /0.
pub fn desired_rules(slot: Slot, up: &Uplink, isolated: bool) -> Vec<Rule> {
    let p = priorities(slot.id).start;
    let mark = (slot.mark(), MARK_MASK & !STRICT_BIT);
    let strict = (slot.mark() | STRICT_BIT, MARK_MASK);
    let rule = |family, priority, fwmark, action| Rule {
        family,
        priority,
        fwmark,
        from: None,
        local_only: false,
        suppress_prefixlen: None,
        action,
    };
    let own = [
        (
            Family::V4,
            up.addr.map(|a| IpNet::V4(Ipv4Net::from(a.addr()))),
        ),
        (
            Family::V6,
            up.addr6.map(|a| IpNet::V6(Ipv6Net::from(a.addr()))),
        ),
    ];
    let mut rules = Vec::new();
    for (family, from) in own {
        rules.push(Rule {
            suppress_prefixlen: Some(0),
            ..rule(family, p, Some(mark), Action::Lookup(MAIN_TABLE))
        });
        if !up.health_down.of(family) {
            rules.push(rule(family, p + 1, Some(mark), Action::Lookup(slot.table)));
        }
        if from.is_some() && isolated && family == Family::V6 {
            rules.push(Rule {
                from,
                local_only: true,
                ..rule(family, p + 2, Some((0, UPLINK_MASK)), Action::Unreachable)
            });
        }
        if from.is_some() {
            rules.push(Rule {
                from,
                suppress_prefixlen: Some(0),
                ..rule(family, p + 3, None, Action::Lookup(MAIN_TABLE))
            });
            rules.push(Rule {
                from,
                ..rule(family, p + 4, None, Action::Lookup(slot.table))
            });
        }
        rules.push(rule(family, p + 5, Some(strict), Action::Unreachable));
    }
    rules
}

/// Answers leave the way the question came: a marked socket's packet from
/// one of `others` (the host's addresses on other links, with the table
/// that routes from each: another uplink's, else main) is a service's
/// answer to a request that came to that address; it takes that table,
/// before the slot's rules would take it into this uplink's (or stop a
/// strict one). The programs give a socket such a source only for such an
/// answer.
pub fn answer_rules(slot: Slot, others: &[(IpNet, u32)]) -> Vec<Rule> {
    let p = priorities(slot.id).start;
    let mark = (slot.mark(), MARK_MASK & !STRICT_BIT);
    others
        .iter()
        .map(|(a, table)| Rule {
            family: match a {
                IpNet::V4(_) => Family::V4,
                IpNet::V6(_) => Family::V6,
            },
            priority: p,
            fwmark: Some(mark),
            from: Some(*a),
            local_only: false,
            suppress_prefixlen: None,
            action: Action::Lookup(*table),
        })
        .collect()
}

/// The host's global addresses on links other than `links` (as host
/// prefixes), each with the table answers from it take: `table_of` the
/// link's index (an uplink's), else main. For [`answer_rules`].
pub fn addresses_beside(
    snap: &Snapshot,
    links: &[u32],
    table_of: impl Fn(u32) -> Option<u32>,
) -> Vec<(IpNet, u32)> {
    let mut all: Vec<(IpNet, u32)> = snap
        .addresses
        .iter()
        .filter(|a| a.scope == 0 && !links.contains(&a.index))
        .map(|a| {
            let host = match a.net {
                IpNet::V4(n) => IpNet::V4(Ipv4Net::from(n.addr())),
                IpNet::V6(n) => IpNet::V6(Ipv6Net::from(n.addr())),
            };
            (host, table_of(a.index).unwrap_or(MAIN_TABLE))
        })
        .collect();
    all.sort();
    all.dedup();
    all
}

/// The routes of the uplink's table while it is up, for each family it has
/// an address of: the link's connected route and, with a gateway, the
/// default route, both with the uplink's address as source. A down link has
/// none (the kernel refuses routes over it and flushes them itself).
pub fn desired_routes(table: u32, up: &Uplink) -> Vec<Route> {
    if !up.up {
        return Vec::new();
    }
    let v4 = up.addr.map(|a| {
        let gw = up
            .gateway
            .map(|g| (IpNet::V4(Ipv4Net::default()), IpAddr::V4(g)));
        (IpNet::V4(a.trunc()), IpAddr::V4(a.addr()), gw)
    });
    let v6 = up.addr6.map(|a| {
        let gw = up
            .gateway6
            .map(|g| (IpNet::V6(Ipv6Net::default()), IpAddr::V6(g)));
        (IpNet::V6(a.trunc()), IpAddr::V6(a.addr()), gw)
    });
    let mut routes = Vec::new();
    for (subnet, src, default) in v4.into_iter().chain(v6) {
        routes.push(Route {
            prefsrc: Some(src),
            ..Route::unicast(table, subnet, None, up.index)
        });
        if let Some((dst, gw)) = default {
            routes.push(Route {
                prefsrc: Some(src),
                ..Route::unicast(table, dst, Some(gw), up.index)
            });
        }
    }
    routes
}

/// Destinations that the main table keeps on a local link or LAN: its
/// non-default routes. The `suppress_prefixlength 0` rule sends marked
/// sockets there through the main table, so the programs must not bind them
/// to the uplink's address either.
pub fn exempt_prefixes(snap: &Snapshot) -> BTreeSet<IpNet> {
    snap.routes
        .iter()
        .filter(|r| r.spec.table == MAIN_TABLE && r.spec.dst.prefix_len() > 0)
        .map(|r| r.spec.dst)
        .collect()
}

/// What to remove and what to add so that the kernel's objects become the desired ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changes<T> {
    pub remove: Vec<T>,
    pub add: Vec<T>,
}

impl<T> Default for Changes<T> {
    fn default() -> Self {
        Self {
            remove: Vec::new(),
            add: Vec::new(),
        }
    }
}

impl<T> Changes<T> {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }
}

/// What changes make `current` into `desired`, make-before-break: an added
/// route with the same table, destination and metric replaces the old one
/// in one step (`ip route replace`), so that one is not also removed.
pub fn route_changes(current: &[Route], desired: &[Route]) -> Changes<Route> {
    let mut c = diff(current, desired);
    let add = c.add.clone();
    c.remove.retain(|old| {
        !add.iter()
            .any(|new| new.table == old.table && new.dst == old.dst && new.metric == old.metric)
    });
    c
}

pub fn diff<T: PartialEq + Clone>(current: &[T], desired: &[T]) -> Changes<T> {
    let missing = |from: &[T], of: &[T]| -> Vec<T> {
        from.iter().filter(|x| !of.contains(x)).cloned().collect()
    };
    Changes {
        remove: missing(current, desired),
        add: missing(desired, current),
    }
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "routing table {table} already holds routes that srcsel did not add (for example {example}); \
     srcsel needs that table for {uplink} — remove those routes or free the table"
)]
pub struct ForeignTable {
    pub table: u32,
    pub uplink: String,
    pub example: String,
}

/// Refuses a table that holds routes srcsel did not add: it is someone else's.
pub fn check_table_free(snap: &Snapshot, table: u32, uplink: &str) -> Result<(), ForeignTable> {
    match snap
        .routes
        .iter()
        .find(|r| r.spec.table == table && !r.is_ours())
    {
        Some(r) => Err(ForeignTable {
            table,
            uplink: uplink.to_owned(),
            example: r.spec.to_string(),
        }),
        None => Ok(()),
    }
}

/// An IPv4 address as the programs store it (network byte order, 0 for none).
pub fn raw4(addr: Option<Ipv4Addr>) -> u32 {
    addr.map_or(0, |a| u32::from_ne_bytes(a.octets()))
}

/// The inverse of [`raw4`].
pub fn from_raw4(raw: u32) -> Option<Ipv4Addr> {
    (raw != 0).then(|| Ipv4Addr::from(raw.to_ne_bytes()))
}

/// An IPv6 address as the programs store it (four words in network byte
/// order, all zero for none).
pub fn raw6(addr: Option<Ipv6Addr>) -> [u32; 4] {
    let b = addr.map_or([0; 16], |a| a.octets());
    std::array::from_fn(|i| {
        u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
    })
}

/// The inverse of [`raw6`].
pub fn from_raw6(raw: [u32; 4]) -> Option<Ipv6Addr> {
    (raw != [0; 4]).then(|| Ipv6Addr::from(octets6(raw)))
}

/// The bytes of an address stored as [`raw6`] words.
pub fn octets6(raw: [u32; 4]) -> [u8; 16] {
    let mut b = [0u8; 16];
    for (i, w) in raw.iter().enumerate() {
        b[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
    }
    b
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == RouteKind::Unreachable {
            write!(f, "unreachable ")?;
        }
        write!(f, "{} table {} oif {}", self.dst, self.table, self.oif)?;
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}", self.priority, self.family)?;
        if let Some((m, mask)) = self.fwmark {
            write!(f, " fwmark {m:#x}/{mask:#x}")?;
        }
        if let Some(from) = self.from {
            write!(f, " from {from}")?;
        }
        if self.local_only {
            write!(f, " iif lo")?;
        }
        match self.action {
            Action::Lookup(t) => write!(f, " lookup {t}"),
            Action::Unreachable => write!(f, " unreachable"),
        }
    }
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;
