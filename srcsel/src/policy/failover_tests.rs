use super::*;
use crate::policy::{
    gateway::GatewaySource,
    routing::Changes,
    slot::{Slot, table_for},
};

fn member(name: &str, id: u32, v4: Option<&str>, v6: Option<&str>) -> UplinkPlan {
    let mut u = Uplink::absent(name);
    (u.index, u.up) = (id + 10, true);
    if let Some(a) = v4 {
        u.addr = Some(format!("{a}/24").parse().unwrap());
        u.gateway = Some(
            format!("{}1", &a[..a.rfind('.').unwrap() + 1])
                .parse()
                .unwrap(),
        );
    }
    if let Some(a) = v6 {
        u.addr6 = Some(format!("{a}/64").parse().unwrap());
        u.gateway6 = Some("fe80::1".parse().unwrap());
    }
    let dns = dns::Dns {
        v4: vec![format!("192.0.2.{id}").parse().unwrap()],
        ..Default::default()
    };
    UplinkPlan {
        uplink: u,
        gateway_source: GatewaySource::Route,
        slot: Slot {
            id,
            table: table_for(id),
        },
        claim: false,
        hook_gateway: None,
        dns,
        routes: Changes::default(),
        rules: Changes::default(),
        device: None,
        active: None,
    }
}

#[test]
fn lists_are_checked_names_in_order() {
    assert_eq!(members("usb0,eth0").collect::<Vec<_>>(), ["usb0", "eth0"]);
    assert!(is_list("usb0,eth0") && !is_list("usb0"));
    assert!(check("usb0,eth0").is_ok());
    assert!(check("usb0,usb0").unwrap_err().contains("twice"));
    assert!(check("usb0,").unwrap_err().contains("empty"));
    assert!(check("wlan0,usb0,eth0x").unwrap_err().contains("15"));
    assert!(check("a,b,c,d,e,f,g,h").unwrap_err().contains("at most 7"));
}

#[test]
fn each_family_takes_the_first_member_that_carries_it() {
    let usb0 = member("usb0", 1, Some("10.99.0.5"), None);
    let eth0 = member("eth0", 2, Some("10.1.0.2"), Some("2001:db8:1::2"));
    let a = active("usb0,eth0", &[&usb0, &eth0]);
    let name = |c: &Option<(String, u32)>| c.as_ref().map(|(n, _)| n.clone());
    assert_eq!(name(&a.chosen.v4).as_deref(), Some("usb0"));
    assert_eq!(a.chosen.v6, Some(("eth0".into(), 2)));
    assert_eq!(a.uplink.addr, usb0.uplink.addr);
    assert_eq!(a.uplink.addr6, eth0.uplink.addr6);
    assert!(a.uplink.usable4() && a.uplink.usable6());
    assert_eq!((a.device.as_deref(), a.uplink.index), (Some("usb0"), 11));
    assert_eq!(a.dns.v4, usb0.dns.v4);

    // usb0's IPv4 found dead: IPv4 fails over, the list's name stays.
    let mut sick = usb0.clone();
    sick.uplink.health_down.v4 = true;
    let a = active("usb0,eth0", &[&sick, &eth0]);
    assert_eq!(name(&a.chosen.v4).as_deref(), Some("eth0"));
    assert_eq!(a.uplink.addr, eth0.uplink.addr);
    assert_eq!(a.uplink.name, "usb0,eth0");

    // None can: the list carries nothing (strict refuses, fallback routes normally).
    let mut down = eth0.clone();
    down.uplink.up = false;
    let a = active("usb0,eth0", &[&sick, &down]);
    assert_eq!(a.chosen, Chosen::default());
    assert!(!a.uplink.usable4() && !a.uplink.usable6());
}

#[test]
fn list_rules_route_by_the_members_addresses_and_stop_strict_sockets_last() {
    let usb0 = member("usb0", 1, Some("10.99.0.5"), None);
    let eth0 = member("eth0", 2, Some("10.1.0.2"), None);
    let list = Slot {
        id: 3,
        table: table_for(3),
    };
    let members = [(usb0.slot, &usb0.uplink), (eth0.slot, &eth0.uplink)];
    let rules = desired_rules(list, &members, [Some(eth0.slot), None]);
    let v4: Vec<&Rule> = rules.iter().filter(|r| r.family == Family::V4).collect();
    assert_eq!(v4.len(), 5);
    assert_eq!(v4[0].suppress_prefixlen, Some(0));
    assert_eq!(v4[1].action, Action::Lookup(table_for(1)));
    assert_eq!(v4[1].from, Some("10.99.0.5/32".parse().unwrap()));
    assert_eq!(v4[2].action, Action::Lookup(table_for(2)));
    // Sockets without a source: the active member's table, after the
    // members' own (a connection bound to usb0 stays on usb0).
    assert_eq!(
        (v4[3].from, v4[3].action),
        (None, Action::Lookup(table_for(2)))
    );
    assert_eq!(v4[4].action, Action::Unreachable);
    assert!(v4.windows(2).all(|w| w[0].priority < w[1].priority));
    assert!(rules.iter().all(|r| priorities(3).contains(&r.priority)));
    // No member has IPv6, none is active: main and strict only.
    assert_eq!(rules.len() - v4.len(), 2);
}
