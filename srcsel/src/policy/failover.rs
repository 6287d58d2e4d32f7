//! Ordered uplinks (`--via usb0,eth0`): a list holds a slot of its own,
//! whose mark its sockets carry, and whose live state is, per family, that
//! of the first member that can carry the family now. The programs read it
//! as any uplink's, so a failover is one map write: nothing is attached
//! again. The list's rules route its sockets by source address into the
//! member's table (the programs bind them to the active member's address),
//! and stop strict ones that match none.
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use srcsel_common::{MARK_MASK, STRICT_BIT};

use super::{
    Action, Family, Rule, Uplink, UplinkPlan, dns,
    slot::{MAIN_TABLE, Slot, priorities},
};

/// The most uplinks a list may name: one rule priority each, between the
/// list's main-table rule and its active member's and strict rules.
pub const MAX_MEMBERS: usize = 7;

/// The uplinks `via` names, in order (one for a single uplink).
pub fn members(via: &str) -> impl Iterator<Item = &str> {
    via.split(',')
}

/// Whether `via` names more than one uplink.
pub fn is_list(via: &str) -> bool {
    via.contains(',')
}

/// Why `via` is not a usable list of interface names, if it is not.
pub fn check(via: &str) -> Result<(), String> {
    let names: Vec<&str> = members(via).collect();
    if names.len() > MAX_MEMBERS {
        return Err(format!(
            "{via:?} names {} uplinks; at most {MAX_MEMBERS}",
            names.len()
        ));
    }
    for (i, n) in names.iter().enumerate() {
        super::uplink::check_ifname(n)?;
        if names[..i].contains(n) {
            return Err(format!("{via:?} names {n} twice"));
        }
    }
    // The slot registry keeps a name in 15 bytes, as the kernel does.
    if via.len() > 15 {
        return Err(format!(
            "{via:?} is longer than 15 characters, the most srcsel can record for a list; \
             use shorter interface names (udev rules, or systemd .link files)"
        ));
    }
    Ok(())
}

/// A list's active members per family: name and slot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chosen {
    pub v4: Option<(String, u32)>,
    pub v6: Option<(String, u32)>,
}

/// What a list's slot should hold: per family, the first member that can
/// carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Active {
    pub chosen: Chosen,
    /// The list's live state, as one synthetic uplink named after the list.
    pub uplink: Uplink,
    /// The device its programs compare `SO_BINDTODEVICE` with: the IPv4
    /// member's, else the IPv6 one's.
    pub device: Option<String>,
    pub dns: dns::Dns,
}

/// The list `label` as its members' plans (in its order) make it.
pub fn active(label: &str, members: &[&UplinkPlan]) -> Active {
    let first = |usable: fn(&Uplink) -> bool| members.iter().find(|m| usable(&m.uplink)).copied();
    let (m4, m6) = (first(Uplink::usable4), first(Uplink::usable6));
    let mut u = Uplink::absent(label);
    if let Some(m) = m4 {
        (u.addr, u.gateway) = (m.uplink.addr, m.uplink.gateway);
    }
    if let Some(m) = m6 {
        (u.addr6, u.gateway6) = (m.uplink.addr6, m.uplink.gateway6);
    }
    let device = m4.or(m6);
    u.up = device.is_some();
    u.index = device.map_or(0, |m| m.uplink.index);
    let mut d = dns::Dns::default();
    if let Some(m) = m4 {
        (d.v4, d.source4) = (m.dns.v4.clone(), m.dns.source4);
    }
    if let Some(m) = m6 {
        (d.v6, d.source6) = (m.dns.v6.clone(), m.dns.source6);
    }
    let named = |m: &UplinkPlan| (m.uplink.name.clone(), m.slot.id);
    Active {
        chosen: Chosen {
            v4: m4.map(named),
            v6: m6.map(named),
        },
        uplink: u,
        device: device.map(|m| m.uplink.name.clone()),
        dns: d,
    }
}

/// The list's rules, the same for each family (priorities ascending):
/// its sockets keep the main table's LAN routes (as any uplink's); then one
/// rule per member with an address: from that address, into the member's
/// table (a connection bound there before a failover or failback stays on
/// its member); then sockets without a source (a datagram of a socket with
/// only a port, autobound by UDP, or bound to the wildcard) go to the
/// active member's table, when the family has one; then strict sockets stop.
pub fn desired_rules(
    slot: Slot,
    members: &[(Slot, &Uplink)],
    active: [Option<Slot>; 2],
) -> Vec<Rule> {
    let p = priorities(slot.id).start;
    let mark = (slot.mark(), MARK_MASK & !STRICT_BIT);
    let strict = (slot.mark() | STRICT_BIT, MARK_MASK);
    let rule = |family, priority, fwmark, from, action| Rule {
        family,
        priority,
        fwmark: Some(fwmark),
        from,
        local_only: false,
        suppress_prefixlen: None,
        action,
    };
    let mut rules = Vec::new();
    for family in [Family::V4, Family::V6] {
        rules.push(Rule {
            suppress_prefixlen: Some(0),
            ..rule(family, p, mark, None, Action::Lookup(MAIN_TABLE))
        });
        for (i, (s, u)) in members.iter().enumerate() {
            let addr: Option<IpAddr> = match family {
                Family::V4 => u.addr.map(|a| a.addr().into()),
                Family::V6 => u.addr6.map(|a| a.addr().into()),
            };
            let from = addr.map(|a| match a {
                IpAddr::V4(a) => IpNet::V4(Ipv4Net::from(a)),
                IpAddr::V6(a) => IpNet::V6(Ipv6Net::from(a)),
            });
            if from.is_some() {
                let prio = p + 1 + i as u32;
                rules.push(rule(family, prio, mark, from, Action::Lookup(s.table)));
            }
        }
        let last = priorities(slot.id).end - 1;
        let active = match family {
            Family::V4 => active[0],
            Family::V6 => active[1],
        };
        if let Some(a) = active {
            rules.push(rule(family, last - 1, mark, None, Action::Lookup(a.table)));
        }
        rules.push(rule(family, last, strict, None, Action::Unreachable));
    }
    rules
}

#[cfg(test)]
#[path = "failover_tests.rs"]
mod tests;
