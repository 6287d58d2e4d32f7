//! Uplinks kept for assigned programs (`isolate = true`): unassigned
//! traffic, of both families, never takes their default routes, even when
//! one is the only route of its family (that family is then unreachable for
//! unassigned programs, which use the other).
//!
//! Nothing of anyone else is deleted or changed. Just before the main table
//! (32766), for sockets without an uplink mark:
//! - 32764: the main table without its default routes (the LAN, links, and
//!   more specific routes stay as they are, like wg-quick's rule of the same
//!   place and shape);
//! - 32765: srcsel's isolation table: a copy of each default route of the
//!   main table that does not leave through an isolated uplink, then an
//!   unreachable default that ends the lookup.
//!
//! Rules other tools put before these (wg-quick's `not fwmark … lookup`, at
//! 32765 or lower) still come first; `srcsel down` removes all of it.
use std::collections::BTreeSet;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use srcsel_common::UPLINK_MASK;

use super::{
    Action, Family, Route, Rule, Snapshot,
    routing::{self, Changes, RouteKind},
    slot::{MAIN_TABLE, TABLE_BASE},
};
use crate::config::{Config, UplinkConfig};

/// The isolation table: slot 0's, which no uplink uses.
pub const TABLE: u32 = TABLE_BASE;
/// Where the rules sit: just before the main table's 32766.
pub const PRIORITIES: [u32; 2] = [32764, 32765];

/// Whether a rule of srcsel's is one of the isolation rules.
pub fn is_isolation_rule(r: &Rule) -> bool {
    PRIORITIES.contains(&r.priority)
}

/// The isolation rules, both families; none while no uplink is isolated.
pub fn desired_rules(active: bool) -> Vec<Rule> {
    if !active {
        return Vec::new();
    }
    let unassigned = Some((0, UPLINK_MASK));
    [Family::V4, Family::V6]
        .into_iter()
        .flat_map(|family| {
            [
                Rule {
                    family,
                    priority: PRIORITIES[0],
                    fwmark: unassigned,
                    from: None,
                    local_only: false,
                    suppress_prefixlen: Some(0),
                    action: Action::Lookup(MAIN_TABLE),
                },
                Rule {
                    family,
                    priority: PRIORITIES[1],
                    fwmark: unassigned,
                    from: None,
                    local_only: false,
                    suppress_prefixlen: None,
                    action: Action::Lookup(TABLE),
                },
            ]
        })
        .collect()
}

/// The isolation table's routes: copies of the main table's default routes
/// through links other than `isolated` (by ifindex, metric kept), and an
/// unreachable default per family at the last metric.
pub fn desired_routes(snap: &Snapshot, isolated: &BTreeSet<u32>, active: bool) -> Vec<Route> {
    if !active {
        return Vec::new();
    }
    let mut routes: Vec<Route> = snap
        .routes
        .iter()
        .filter(|r| !r.is_ours() && r.spec.table == MAIN_TABLE && r.spec.dst.prefix_len() == 0)
        // A multipath route (no single oif) cannot be copied: left out, it fails closed.
        .filter(|r| r.spec.kind == RouteKind::Unicast && r.spec.oif != 0)
        .filter(|r| !isolated.contains(&r.spec.oif))
        .map(|r| Route {
            table: TABLE,
            ..r.spec.clone()
        })
        .collect();
    for dst in [IpNet::V4(Ipv4Net::default()), IpNet::V6(Ipv6Net::default())] {
        routes.push(Route {
            metric: u32::MAX,
            kind: RouteKind::Unreachable,
            ..Route::unicast(TABLE, dst, None, 0)
        });
    }
    routes
}

/// What must change for uplinks kept for assigned programs (this module).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Isolation {
    pub routes: Changes<Route>,
    pub rules: Changes<Rule>,
}

/// The isolation plan: in force while any configured uplink has
/// `isolate = true`, and undone when none has.
pub fn plan(config: &Config, snap: &Snapshot) -> Isolation {
    let names: BTreeSet<&str> = config
        .uplinks
        .iter()
        .filter(|u| u.isolate)
        .map(UplinkConfig::name)
        .collect();
    let active = !names.is_empty();
    let isolated = snap
        .links
        .iter()
        .filter(|l| names.contains(l.name.as_str()))
        .map(|l| l.index)
        .collect();
    let routes: Vec<Route> = snap
        .routes
        .iter()
        .filter(|r| r.is_ours() && r.spec.table == TABLE)
        .map(|r| r.spec.clone())
        .collect();
    let rules: Vec<Rule> = snap
        .our_rules()
        .filter(|r| is_isolation_rule(r))
        .cloned()
        .collect();
    Isolation {
        routes: routing::route_changes(&routes, &desired_routes(snap, &isolated, active)),
        rules: routing::diff(&rules, &desired_rules(active)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::snapshot::Observed;

    fn default(oif: u32, gw: &str, metric: u32) -> Observed<Route> {
        Observed {
            spec: Route {
                metric,
                ..Route::unicast(
                    MAIN_TABLE,
                    "::/0".parse().unwrap(),
                    Some(gw.parse().unwrap()),
                    oif,
                )
            },
            proto: 9,
        }
    }

    #[test]
    fn copies_the_defaults_of_other_links_and_ends_unreachable() {
        let mut s = Snapshot::default();
        s.routes.push(default(2, "fe80::1", 1024));
        s.routes.push(default(3, "fe80::2", 3000));
        let mut v4 = default(2, "10.1.0.1", 100);
        v4.spec.dst = "0.0.0.0/0".parse().unwrap();
        s.routes.push(v4);
        let routes = desired_routes(&s, &BTreeSet::from([3]), true);
        let copies: Vec<_> = routes
            .iter()
            .filter(|r| r.kind == RouteKind::Unicast)
            .map(|r| (r.oif, r.metric, r.table))
            .collect();
        assert_eq!(copies, vec![(2, 1024, TABLE), (2, 100, TABLE)]);
        let ends = routes.iter().filter(|r| r.kind == RouteKind::Unreachable);
        let v4: Vec<bool> = ends.map(|r| matches!(r.dst, IpNet::V4(_))).collect();
        assert_eq!(v4, [true, false]);
        assert!(desired_routes(&s, &BTreeSet::from([3]), false).is_empty());
    }

    #[test]
    fn rules_match_only_unassigned_sockets_before_the_main_table() {
        let rules = desired_rules(true);
        assert_eq!(rules.len(), 4);
        assert!(rules.iter().all(|r| r.fwmark == Some((0, UPLINK_MASK))
            && is_isolation_rule(r)
            && r.priority < 32766));
        assert!(desired_rules(false).is_empty());
    }
}
