//! The table and rules an uplink needs, the LAN prefixes its programs leave
//! alone, and the difference between what is and what should be.
use std::{
    collections::BTreeSet,
    fmt,
    net::{IpAddr, Ipv4Addr},
};

use ipnet::{IpNet, Ipv4Net};
use srcsel_common::{MARK_MASK, STRICT_BIT};

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
    pub suppress_prefixlen: Option<u32>,
    pub action: Action,
}

/// One unicast route.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    pub table: u32,
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub oif: u32,
    pub prefsrc: Option<IpAddr>,
}

/// The rules uplink `slot` needs (priorities ascending):
/// - its marked sockets keep LAN and link routes of the main table (only the
///   default route is suppressed there);
/// - then they use the uplink's table;
/// - programs that bind to the uplink's address use the table too (the
///   classic rule; it also lets replies on the uplink pass rp_filter);
/// - strict sockets that found no route in the table stop here, for IPv4 and
///   IPv6 alike, instead of falling through to the main table.
pub fn desired_rules(slot: Slot, up: &Uplink) -> Vec<Rule> {
    let p = priorities(slot.id).start;
    let mark = (slot.mark(), MARK_MASK & !STRICT_BIT);
    let strict = (slot.mark() | STRICT_BIT, MARK_MASK);
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
        rule(Family::V4, p + 1, Some(mark), Action::Lookup(slot.table)),
    ];
    if let Some(addr) = up.addr {
        rules.push(Rule {
            from: Some(IpNet::V4(Ipv4Net::from(addr.addr()))),
            ..rule(Family::V4, p + 2, None, Action::Lookup(slot.table))
        });
    }
    rules.push(rule(Family::V4, p + 3, Some(strict), Action::Unreachable));
    rules.push(rule(Family::V6, p + 3, Some(strict), Action::Unreachable));
    rules
}

/// The routes of the uplink's table while it is up: the link's connected
/// route and, with a gateway, the default route. A down link has none (the
/// kernel refuses routes over it and flushes them itself).
pub fn desired_routes(table: u32, up: &Uplink) -> Vec<Route> {
    let (true, Some(addr)) = (up.up, up.addr) else {
        return Vec::new();
    };
    let src = Some(IpAddr::V4(addr.addr()));
    let mut routes = vec![Route {
        table,
        dst: IpNet::V4(addr.trunc()),
        gateway: None,
        oif: up.index,
        prefsrc: src,
    }];
    if let Some(gw) = up.gateway {
        routes.push(Route {
            table,
            dst: IpNet::V4(Ipv4Net::default()),
            gateway: Some(IpAddr::V4(gw)),
            oif: up.index,
            prefsrc: src,
        });
    }
    routes
}

/// Destinations that the main table keeps on a local link or LAN: its
/// non-default IPv4 routes. The `suppress_prefixlength 0` rule sends marked
/// sockets there through the main table, so the programs must not bind them
/// to the uplink's address either.
pub fn exempt_prefixes(snap: &Snapshot) -> BTreeSet<Ipv4Net> {
    snap.routes
        .iter()
        .filter(|r| r.spec.table == MAIN_TABLE)
        .filter_map(|r| match r.spec.dst {
            IpNet::V4(n) if n.prefix_len() > 0 => Some(n),
            _ => None,
        })
        .collect()
}

/// What to remove and what to add so that the kernel's objects become the desired ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changes<T> {
    pub remove: Vec<T>,
    pub add: Vec<T>,
}

impl<T> Changes<T> {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }
}

/// What changes make `current` into `desired`, make-before-break: an added
/// route with the same table and destination replaces the old one in one
/// step (`ip route replace`), so that one is not also removed.
pub fn route_changes(current: &[Route], desired: &[Route]) -> Changes<Route> {
    let mut c = diff(current, desired);
    let add = c.add.clone();
    c.remove.retain(|old| {
        !add.iter()
            .any(|new| new.table == old.table && new.dst == old.dst)
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

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
        match self.action {
            Action::Lookup(t) => write!(f, " lookup {t}"),
            Action::Unreachable => write!(f, " unreachable"),
        }
    }
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;
