use super::*;
use crate::policy::slot::{in_range, table_for};
use srcsel_common::mark_for;

fn usb0(addr: Option<&str>, gw: Option<&str>, up: bool) -> Uplink {
    Uplink {
        name: "usb0".into(),
        index: 7,
        up,
        addr: addr.map(|a| a.parse().unwrap()),
        gateway: gw.map(|g| g.parse().unwrap()),
        ..Uplink::absent("usb0")
    }
}

fn rules_of(slot: Slot, up: &Uplink) -> Vec<Rule> {
    desired_rules(slot, up, false)
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
    assert_eq!(routes[0].dst, "10.99.0.0/24".parse::<IpNet>().unwrap());
    assert_eq!(routes[0].gateway, None);
    assert_eq!(routes[1].dst, "0.0.0.0/0".parse::<IpNet>().unwrap());
    assert_eq!(routes[1].gateway, Some("10.99.0.1".parse().unwrap()));
    assert!(routes.iter().all(|r| r.table == table_for(2) && r.oif == 7));
}

#[test]
fn down_uplink_keeps_no_routes() {
    assert!(desired_routes(9, &usb0(Some("10.99.0.57/24"), Some("10.99.0.1"), false)).is_empty());
    let no_gateway = desired_routes(9, &usb0(Some("10.99.0.57/24"), None, true));
    assert_eq!(no_gateway.len(), 1);
    assert!(desired_routes(9, &usb0(None, None, true)).is_empty());
}

#[test]
fn rules_stay_in_the_uplinks_priority_range() {
    let rules = rules_of(
        slot(3),
        &usb0(Some("10.99.0.57/24"), Some("10.99.0.1"), true),
    );
    assert!(
        rules.iter().all(|r| in_range(3, r.priority)
            && !in_range(2, r.priority)
            && !in_range(4, r.priority))
    );
    let from: Vec<&Rule> = rules.iter().filter(|r| r.from.is_some()).collect();
    let own: IpNet = "10.99.0.57/32".parse().unwrap();
    assert!(
        from.iter()
            .all(|r| r.from == Some(own) && r.fwmark.is_none())
    );
    // Sourced traffic: the main table's specific routes first, then only
    // the default route from the uplink's table.
    let actions: Vec<(Action, Option<u32>)> = from
        .iter()
        .map(|r| (r.action, r.suppress_prefixlen))
        .collect();
    assert_eq!(
        actions,
        [
            (Action::Lookup(MAIN_TABLE), Some(0)),
            (Action::Lookup(table_for(3)), None)
        ]
    );
    assert!(from[0].priority < from[1].priority);
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
    let rules = rules_of(slot(1), &usb0(None, None, false));
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
    let old = rules_of(
        slot(1),
        &usb0(Some("10.99.0.57/24"), Some("10.99.0.1"), true),
    );
    let new = rules_of(
        slot(1),
        &usb0(Some("10.77.0.9/24"), Some("10.77.0.1"), true),
    );
    let c = diff(&old, &new);
    // The two `from` rules of the old address go, the new address's come.
    assert_eq!(c.remove.len(), 2);
    assert_eq!(c.add.len(), 2);
    assert!(
        c.add
            .iter()
            .all(|r| r.from == Some("10.77.0.9/32".parse().unwrap()))
    );
    assert!(diff(&new, &new).is_empty());
}

#[test]
fn addresses_round_trip_through_the_map_encoding() {
    let a: Ipv4Addr = "10.99.0.57".parse().unwrap();
    assert_eq!(from_raw4(raw4(Some(a))), Some(a));
    assert_eq!(raw4(None), 0);
    assert_eq!(from_raw4(0), None);
}

#[test]
fn a_new_gateway_replaces_the_default_route_instead_of_removing_it() {
    let old = desired_routes(9, &usb0(Some("10.99.0.57/24"), Some("10.99.0.1"), true));
    let new = desired_routes(9, &usb0(Some("10.77.0.9/24"), Some("10.77.0.1"), true));
    let c = route_changes(&old, &new);
    assert_eq!(c.add, new);
    // Only the old connected route goes; the default route is replaced.
    assert_eq!(c.remove.len(), 1);
    assert_eq!(c.remove[0].dst, "10.99.0.0/24".parse::<IpNet>().unwrap());
}

#[test]
fn an_isolated_uplink_refuses_its_address_to_unassigned_local_sockets() {
    let mut up = usb0(Some("10.99.0.57/24"), Some("10.99.0.1"), true);
    up.addr6 = Some("2001:db8:99::5/64".parse().unwrap());
    let plain = desired_rules(slot(1), &up, false);
    let isolated = desired_rules(slot(1), &up, true);
    let guards: Vec<&Rule> = isolated.iter().filter(|r| !plain.contains(r)).collect();
    assert_eq!(guards.len(), 1, "IPv6 only: {isolated:?}");
    for g in guards {
        assert!(
            g.local_only && g.action == Action::Unreachable && g.fwmark == Some((0, 0x3f00_0000))
        );
        let from = plain
            .iter()
            .find(|r| r.from == g.from && r.action == Action::Lookup(table_for(1)))
            .expect("a from rule");
        assert!(
            g.priority < from.priority,
            "the guard comes before the from rule"
        );
    }
}

#[test]
fn a_family_found_dead_loses_only_its_mark_rule() {
    let mut up = usb0(Some("10.99.0.5/24"), Some("10.99.0.1"), true);
    let healthy = rules_of(slot(1), &up);
    up.health_down.v4 = true;
    let sick = rules_of(slot(1), &up);
    let table = |rules: &[Rule]| {
        rules
            .iter()
            .filter(|r| r.family == Family::V4 && r.action == Action::Lookup(table_for(1)))
            .map(|r| r.from.is_some())
            .collect::<Vec<_>>()
    };
    // The marked sockets' lookup goes; the `from` rule (the probes') stays,
    // as does the strict rule: strict sockets still stop in the slot.
    assert_eq!(table(&healthy), [false, true]);
    assert_eq!(table(&sick), [true]);
    assert!(sick.iter().any(|r| r.action == Action::Unreachable));
    // The table keeps its routes.
    assert_eq!(
        desired_routes(table_for(1), &up).len(),
        desired_routes(
            table_for(1),
            &usb0(Some("10.99.0.5/24"), Some("10.99.0.1"), true)
        )
        .len()
    );
}

#[test]
fn a_pending_tcp_socket_routes_as_unassigned() {
    // A listener's accepted connections keep PENDING: every mark rule of an
    // uplink, a list and the isolation treats them as it treats mark 0.
    let mut up = usb0(Some("10.99.0.57/24"), Some("10.99.0.1"), true);
    up.addr6 = Some("2001:db8:99::5/64".parse().unwrap());
    let members = [(slot(1), &up)];
    let rules = desired_rules(slot(1), &up, true)
        .into_iter()
        .chain(answer_rules(
            slot(1),
            &[("10.1.0.2/32".parse().unwrap(), 254)],
        ))
        .chain(crate::policy::failover::desired_rules(
            slot(2),
            &members,
            [Some(slot(1)), Some(slot(1))],
        ))
        .chain(crate::policy::isolate::desired_rules(true));
    let takes = |mark: u32, (m, mask): (u32, u32)| mark & mask == m;
    let mut marked = 0;
    for r in rules {
        let Some(fwmark) = r.fwmark else { continue };
        marked += 1;
        assert_eq!(
            takes(srcsel_common::PENDING, fwmark),
            takes(0, fwmark),
            "{r:?}"
        );
    }
    assert!(marked > 10);
}
