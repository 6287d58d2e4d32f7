use super::*;
use ipnet::IpNet;

use crate::policy::{
    PROTO,
    routing::RouteKind,
    snapshot::{Address, Link, Observed},
};

fn lab() -> Snapshot {
    let mut s = Snapshot::default();
    for (index, name, addr, gw) in [
        (2, "eth0", "10.1.0.2/24", "10.1.0.1"),
        (3, "usb0", "10.99.0.57/24", "10.99.0.1"),
    ] {
        s.links.push(Link {
            index,
            name: name.into(),
            up: true,
            loopback: false,
        });
        s.addresses.push(Address {
            index,
            net: addr.parse().unwrap(),
            flags: 0,
            scope: 0,
        });
        s.routes.push(Observed {
            spec: Route {
                table: 254,
                dst: "0.0.0.0/0".parse().unwrap(),
                gateway: Some(gw.parse().unwrap()),
                oif: index,
                prefsrc: None,
                metric: 0,
                kind: RouteKind::Unicast,
            },
            proto: 16,
        });
        let net: ipnet::Ipv4Net = addr.parse().unwrap();
        s.routes.push(Observed {
            spec: Route {
                table: 254,
                dst: net.trunc().into(),
                gateway: None,
                oif: index,
                prefsrc: None,
                metric: 0,
                kind: RouteKind::Unicast,
            },
            proto: 2,
        });
    }
    s
}

fn config(text: &str) -> Config {
    Config::parse(text, "t").unwrap()
}

/// The kernel as it is once `p` has been applied.
fn applied(mut s: Snapshot, p: &UplinkPlan) -> Snapshot {
    s.routes.extend(p.routes.add.iter().map(|r| Observed {
        spec: r.clone(),
        proto: PROTO,
    }));
    s.rules.extend(p.rules.add.iter().map(|r| Observed {
        spec: r.clone(),
        proto: PROTO,
    }));
    s
}

#[test]
fn a_new_uplink_claims_a_free_slot_and_a_second_pass_changes_nothing() {
    let snap = lab();
    let mut reg = Registry::new();
    reg.insert(
        1,
        SlotRecord {
            name: "wwan0".into(),
            table: table_for(1),
            hook_gateway: None,
            dns: Default::default(),
            health_down: Default::default(),
        },
    );
    let p = plan(&Config::default(), &snap, &reg, Scope::One("usb0"));
    let u = p.uplink("usb0").unwrap();
    assert_eq!((u.slot.id, u.claim), (2, true));
    assert_eq!(u.gateway_source, GatewaySource::Route);
    assert_eq!(u.routes.add.len(), 2);
    // IPv4: main, table, from (main, then table), strict, and eth0's
    // address's answers to normal routing; IPv6 (no address yet): main,
    // table, strict.
    assert_eq!(u.rules.add.len(), 9);
    let answers: Vec<_> = u
        .rules
        .add
        .iter()
        .filter(|r| r.from.is_some() && r.fwmark.is_some())
        .collect();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].from, Some("10.1.0.2/32".parse().unwrap()));
    assert_eq!(answers[0].action, crate::policy::Action::Lookup(254));
    assert_eq!(p.exempt.len(), 2);

    let snap = applied(snap, u);
    reg.insert(
        2,
        SlotRecord {
            name: "usb0".into(),
            table: table_for(2),
            hook_gateway: None,
            dns: Default::default(),
            health_down: Default::default(),
        },
    );
    let again = plan(&Config::default(), &snap, &reg, Scope::Managed);
    let u = again.uplink("usb0").unwrap();
    assert!(!u.claim && u.routes.is_empty() && u.rules.is_empty());
    // wwan0 has a slot but no interface: down, nothing to route.
    let w = again.uplink("wwan0").unwrap();
    assert!(!w.uplink.up && w.routes.add.is_empty());
}

#[test]
fn uplinks_claimed_in_one_pass_get_different_slots() {
    let p = plan(
        &config("[[uplink]]\nname = \"usb0\"\n[[uplink]]\nname = \"eth0\"\n"),
        &lab(),
        &Registry::new(),
        Scope::Managed,
    );
    let ids: BTreeSet<u32> = p.uplinks.iter().map(|u| u.slot.id).collect();
    assert_eq!(ids.len(), 2);
}

#[test]
fn configured_marks_and_tables_are_used_and_conflicts_refused() {
    let cfg = config("[[uplink]]\nname = \"usb0\"\nmark = 0x05000000\ntable = 300\n");
    let p = plan(&cfg, &lab(), &Registry::new(), Scope::Managed);
    assert_eq!(p.uplinks[0].slot, Slot { id: 5, table: 300 });

    let mut reg = Registry::new();
    reg.insert(
        2,
        SlotRecord {
            name: "usb0".into(),
            table: table_for(2),
            hook_gateway: None,
            dns: Default::default(),
            health_down: Default::default(),
        },
    );
    let p = plan(&cfg, &lab(), &reg, Scope::Managed);
    assert!(matches!(p.failed[..], [(_, PlanError::SlotMoved { .. })]));
}

#[test]
fn a_foreign_table_is_refused_and_claims_nothing() {
    let mut snap = lab();
    snap.routes.push(Observed {
        spec: Route {
            table: table_for(1),
            dst: "192.0.2.0/24".parse().unwrap(),
            gateway: None,
            oif: 2,
            prefsrc: None,
            metric: 0,
            kind: RouteKind::Unicast,
        },
        proto: 3,
    });
    let p = plan(
        &Config::default(),
        &snap,
        &Registry::new(),
        Scope::One("usb0"),
    );
    assert!(p.uplinks.is_empty());
    assert!(matches!(p.failed[..], [(_, PlanError::ForeignTable(_))]));
}

#[test]
fn a_report_is_data_until_something_names_its_interface() {
    let mut snap = lab();
    snap.routes
        .retain(|r| r.spec.oif != 3 || r.spec.dst.prefix_len() > 0);
    let hook = HookReport {
        interface: "usb0".into(),
        gateway: Some("10.99.0.1".parse().unwrap()),
        dns: vec!["10.99.0.1".parse().unwrap()],
    };
    // Reported, not named: nothing is planned for it, nothing claimed.
    let none = Config::default();
    snap.reported.insert("usb0".into(), hook.reported(7));
    let p = plan(&none, &snap, &Registry::new(), Scope::Managed);
    assert!(p.uplinks.is_empty() && p.failed.is_empty(), "{p:?}");
    assert!(!hook.concerns(&none, &Registry::new()));
    // Named later (a run, here), the recorded report serves it.
    let p = plan(&none, &snap, &Registry::new(), Scope::One("usb0"));
    let u = p.uplink("usb0").unwrap();
    assert!(u.claim && u.uplink.usable4());
    assert_eq!(u.gateway_source, GatewaySource::Hook);
    assert_eq!(u.hook_gateway, hook.gateway);
    assert_eq!(
        (u.dns.v4.clone(), u.dns.hook4.clone()),
        (hook.dns.clone(), hook.dns.clone())
    );
    // Named by the config: the daemon's pass takes it up.
    let cfg = config("[[uplink]]\nname = \"usb0\"\n");
    let p = plan(&cfg, &snap, &Registry::new(), Scope::Managed);
    assert_eq!(p.uplink("usb0").unwrap().hook_gateway, hook.gateway);
}

#[test]
fn an_ended_lease_of_an_unknown_interface_changes_nothing() {
    let ended = |name: &str| HookReport {
        interface: name.into(),
        gateway: None,
        dns: vec![],
    };
    let cfg = config("[[uplink]]\nname = \"usb1\"\n");
    let mut snap = lab();
    snap.reported
        .insert("eth0".into(), ended("eth0").reported(7));
    let p = plan(&cfg, &snap, &Registry::new(), Scope::Managed);
    assert!(p.uplink("eth0").is_none(), "{p:?}");
    assert!(!ended("eth0").concerns(&cfg, &Registry::new()));
    // One srcsel is configured to keep: its lease ended.
    assert!(ended("usb1").concerns(&cfg, &Registry::new()));
}

#[test]
fn the_hooks_resolvers_last_until_the_next_report_and_the_config_wins() {
    let mut reg = Registry::new();
    let learned = crate::policy::dns::Learned {
        hook4: vec!["10.99.0.1".parse().unwrap()],
        ..Default::default()
    };
    reg.insert(
        1,
        SlotRecord {
            name: "usb0".into(),
            table: table_for(1),
            hook_gateway: None,
            dns: learned.clone(),
            health_down: Default::default(),
        },
    );
    let p = plan(&Config::default(), &lab(), &reg, Scope::One("usb0"));
    assert_eq!(
        p.uplink("usb0").unwrap().dns.v4,
        learned.hook4,
        "kept from the registry"
    );
    let ended = HookReport {
        interface: "usb0".into(),
        gateway: None,
        dns: Vec::new(),
    };
    let mut snap = lab();
    snap.reported.insert("usb0".into(), ended.reported(7));
    let p = plan(&Config::default(), &snap, &reg, Scope::One("usb0"));
    assert!(
        p.uplink("usb0").unwrap().dns.v4.is_empty(),
        "the lease ended"
    );
    let cfg = config("[[uplink]]\nname = \"usb0\"\ndns = [\"192.0.2.53\"]\n");
    let u = plan(&cfg, &lab(), &reg, Scope::One("usb0"))
        .uplinks
        .remove(0);
    assert_eq!(
        u.dns.v4,
        ["192.0.2.53".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert_eq!(u.dns.hook4, learned.hook4);
}

#[test]
fn the_hook_gateway_serves_a_link_without_a_default_route() {
    let mut snap = lab();
    snap.routes
        .retain(|r| r.spec.oif != 3 || r.spec.dst.prefix_len() > 0);
    let mut reg = Registry::new();
    reg.insert(
        1,
        SlotRecord {
            name: "usb0".into(),
            table: table_for(1),
            hook_gateway: Some("10.99.0.1".parse().unwrap()),
            dns: Default::default(),
            health_down: Default::default(),
        },
    );
    let p = plan(&Config::default(), &snap, &reg, Scope::One("usb0"));
    let u = p.uplink("usb0").unwrap();
    assert_eq!(u.gateway_source, GatewaySource::Hook);
    assert!(u.uplink.usable4());
}

#[test]
fn tables_cannot_collide_with_automatic_or_used_ones() {
    // Slot 1's automatic table, given to an uplink that gets another slot.
    let cfg = config(&format!(
        "[[uplink]]\nname = \"usb0\"\ntable = {}\n",
        table_for(2)
    ));
    let p = plan(&cfg, &lab(), &Registry::new(), Scope::Managed);
    assert!(matches!(
        p.failed[..],
        [(_, PlanError::AutomaticTable { slot: 2, .. })]
    ));
    // With the mark of that slot, it is its own table.
    let cfg = config(&format!(
        "[[uplink]]\nname = \"usb0\"\nmark = 0x02000000\ntable = {}\n",
        table_for(2)
    ));
    assert!(
        plan(&cfg, &lab(), &Registry::new(), Scope::Managed)
            .failed
            .is_empty()
    );
    // A table another registered uplink uses.
    let mut reg = Registry::new();
    reg.insert(
        1,
        SlotRecord {
            name: "eth0v0".into(),
            table: 300,
            hook_gateway: None,
            dns: Default::default(),
            health_down: Default::default(),
        },
    );
    let cfg = config("[[uplink]]\nname = \"usb0\"\ntable = 300\n");
    let p = plan(&cfg, &lab(), &reg, Scope::One("usb0"));
    assert!(matches!(p.failed[..], [(_, PlanError::TableTaken { .. })]));
}

#[test]
fn too_many_lan_routes_refuse_the_whole_plan() {
    let mut p = plan(
        &Config::default(),
        &lab(),
        &Registry::new(),
        Scope::One("usb0"),
    );
    assert!(p.check().is_ok());
    p.exempt = (0..=MAX_EXEMPT4)
        .map(|i| {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 + (i << 8));
            IpNet::V4(ipnet::Ipv4Net::new(a, 24).unwrap())
        })
        .collect();
    let err = p.check().unwrap_err();
    assert!(
        matches!(err, PlanError::TooManyLanRoutes { family: "IPv4", .. }),
        "{err}"
    );
}

#[test]
fn isolation_is_planned_by_the_daemon_only_and_a_second_pass_changes_nothing() {
    let cfg = config("[[uplink]]\nname = \"usb0\"\nisolate = true\n");
    let snap = lab();
    let one = plan(&cfg, &snap, &Registry::new(), Scope::One("usb0"));
    assert!(one.isolation.rules.is_empty() && one.isolation.routes.is_empty());
    let p = plan(&cfg, &snap, &Registry::new(), Scope::Managed);
    assert_eq!(p.isolation.rules.add.len(), 4);
    // eth0's default copied, usb0's not; an unreachable default per family.
    let copies: Vec<u32> = p.isolation.routes.add.iter().map(|r| r.oif).collect();
    assert_eq!(copies, vec![2, 0, 0]);
    let mut s = snap.clone();
    let ours = |r: &Route| Observed {
        spec: r.clone(),
        proto: PROTO,
    };
    s.routes.extend(p.isolation.routes.add.iter().map(ours));
    s.rules
        .extend(p.isolation.rules.add.iter().map(|r| Observed {
            spec: r.clone(),
            proto: PROTO,
        }));
    let again = plan(&cfg, &s, &Registry::new(), Scope::Managed);
    assert!(again.isolation.rules.is_empty() && again.isolation.routes.is_empty());
    // Off again: everything of it goes.
    let off = plan(
        &config("[[uplink]]\nname = \"usb0\"\n"),
        &s,
        &Registry::new(),
        Scope::Managed,
    );
    assert_eq!(
        (
            off.isolation.rules.remove.len(),
            off.isolation.routes.remove.len()
        ),
        (4, 3)
    );
}
