//! One pass's decisions as data: from the config, one kernel snapshot and the
//! slot registry, what each managed uplink's slot, live state, routes and
//! rules should be, and what must change to get there.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use ipnet::IpNet;
use srcsel_common::{MAX_EXEMPT4, MAX_EXEMPT6};

use super::dns::DnsConfig;
pub use super::hook_report::HookReport;
pub use super::plan_error::PlanError;
pub use super::registry::{Registry, SlotRecord, slot_held_by};
use super::registry::{check_configured_table, choose_slot, tables_of};
use super::{
    Route, Rule, Snapshot, Uplink, dns,
    failover::{self, Chosen},
    gateway::{self, GatewaySource},
    isolate::{self, Isolation},
    routing::{self, Changes},
    slot::{Slot, in_range, table_for},
};
use crate::config::{Config, UplinkConfig};

/// Which uplinks a pass covers.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// Those in the config and every one with a slot (the daemon).
    Managed,
    /// One uplink (`srcsel run`, `srcsel lease` without a daemon).
    One(&'a str),
}

/// One uplink's part of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UplinkPlan {
    /// As observed, with the gateway chosen.
    pub uplink: Uplink,
    pub gateway_source: GatewaySource,
    pub slot: Slot,
    /// The slot is new: publishing the uplink records it in the registry.
    pub claim: bool,
    pub hook_gateway: Option<Ipv4Addr>,
    pub dns: dns::Dns,
    pub routes: Changes<Route>,
    pub rules: Changes<Rule>,
    /// The device its programs know it by, when not its name (a list's
    /// active member).
    pub device: Option<String>,
    /// For a list: its active members ([`failover`]).
    pub active: Option<Chosen>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub uplinks: Vec<UplinkPlan>,
    /// Uplinks that cannot be set up, and why; nothing is planned for them.
    pub failed: Vec<(String, PlanError)>,
    /// What the exempt-destination tries should hold, both families.
    pub exempt: BTreeSet<IpNet>,
    /// The isolation rules and table (only the daemon's passes change them).
    pub isolation: Isolation,
    /// The system's resolvers, as the programs read them (slot 0 of SRCSEL_DNS).
    pub system_dns: srcsel_common::Resolvers,
}

impl Plan {
    /// What keeps the whole plan from being applied (nothing is written then).
    pub fn check(&self) -> Result<(), PlanError> {
        let v4 = self
            .exempt
            .iter()
            .filter(|n| matches!(n, IpNet::V4(_)))
            .count();
        let v6 = self.exempt.len() - v4;
        for (family, count, max) in [("IPv4", v4, MAX_EXEMPT4), ("IPv6", v6, MAX_EXEMPT6)] {
            if count > max as usize {
                return Err(PlanError::TooManyLanRoutes { family, count, max });
            }
        }
        Ok(())
    }

    pub fn uplink(&self, name: &str) -> Option<&UplinkPlan> {
        self.uplinks.iter().find(|u| u.uplink.name == name)
    }

    /// When the first resolver a router advertised to a planned uplink
    /// expires (CLOCK_BOOTTIME s): a pass then drops it.
    pub fn rdnss_expiry(&self) -> Option<u64> {
        self.uplinks
            .iter()
            .flat_map(|u| u.dns.ra6.iter().map(|(_, until)| *until))
            .min()
    }
}

/// The plan for `scope`. The hooks' reports are in the snapshot: they serve
/// the uplinks planned, and bring none under management.
pub fn plan(config: &Config, snap: &Snapshot, reg: &Registry, scope: Scope<'_>) -> Plan {
    let names = planned(config, reg, scope);
    let mut plan = Plan {
        exempt: routing::exempt_prefixes(snap),
        system_dns: dns::system_value(&snap.system_dns),
        ..Plan::default()
    };
    if let Scope::Managed = scope {
        plan.isolation = isolate::plan(config, snap);
    }
    let mut taken: BTreeSet<u32> = reg.keys().copied().collect();
    // Lists after the uplinks they name: their state is their members'.
    let (lists, uplinks): (Vec<String>, Vec<String>) =
        names.into_iter().partition(|n| failover::is_list(n));
    let tables = tables_of(config, reg, uplinks.iter());
    for name in uplinks {
        match plan_uplink(config.uplink(&name), snap, reg, &mut taken, &name, &tables) {
            Ok(p) => plan.uplinks.push(p),
            Err(e) => plan.failed.push((name, e)),
        }
    }
    for label in lists {
        match plan_list(snap, reg, &mut taken, &label, &plan.uplinks, &tables) {
            Ok(p) => plan.uplinks.push(p),
            Err(e) => plan.failed.push((label, e)),
        }
    }
    plan
}

/// A list's plan ([`failover`]): a slot of its own, the state of its
/// active members, and rules into their tables. Members that could not be
/// planned count as absent.
fn plan_list(
    snap: &Snapshot,
    reg: &Registry,
    taken: &mut BTreeSet<u32>,
    label: &str,
    planned: &[UplinkPlan],
    tables: &BTreeMap<String, u32>,
) -> Result<UplinkPlan, PlanError> {
    failover::check(label).map_err(PlanError::BadList)?;
    let members: Vec<&UplinkPlan> = failover::members(label)
        .filter_map(|m| planned.iter().find(|p| p.uplink.name == m))
        .collect();
    let (id, claim) = choose_slot(reg, taken, label, None)?;
    if claim {
        taken.insert(id);
    }
    let slot = Slot {
        id,
        table: table_for(id),
    };
    let active = failover::active(label, &members);
    let by_slot: Vec<(Slot, &Uplink)> = members.iter().map(|m| (m.slot, &m.uplink)).collect();
    let table_of = |c: &Option<(String, u32)>| {
        let id = c.as_ref()?.1;
        members.iter().find(|m| m.slot.id == id).map(|m| m.slot)
    };
    let active_tables = [table_of(&active.chosen.v4), table_of(&active.chosen.v6)];
    let rules: Vec<Rule> = snap
        .our_rules()
        .filter(|r| in_range(id, r.priority))
        .cloned()
        .collect();
    let routes: Vec<Route> = snap
        .routes
        .iter()
        .filter(|r| r.spec.table == slot.table && r.is_ours())
        .map(|r| r.spec.clone())
        .collect();
    Ok(UplinkPlan {
        uplink: active.uplink,
        gateway_source: GatewaySource::None,
        slot,
        claim,
        hook_gateway: None,
        dns: active.dns,
        routes: routing::route_changes(&routes, &[]),
        rules: routing::diff(&rules, &{
            let links: Vec<u32> = members.iter().map(|m| m.uplink.index).collect();
            let desired = failover::desired_rules(slot, &by_slot, active_tables);
            with_answers(desired, slot, snap, tables, &links)
        }),
        device: active.device,
        active: Some(active.chosen),
    })
}

fn plan_uplink(
    cfg: Option<&UplinkConfig>,
    snap: &Snapshot,
    reg: &Registry,
    taken: &mut BTreeSet<u32>,
    name: &str,
    tables: &BTreeMap<String, u32>,
) -> Result<UplinkPlan, PlanError> {
    let (id, claim) = choose_slot(reg, taken, name, cfg.and_then(UplinkConfig::slot))?;
    let table = match cfg.and_then(UplinkConfig::table) {
        Some(t) => check_configured_table(reg, name, id, t)?,
        None => table_for(id),
    };
    routing::check_table_free(snap, table, name)?;
    let slot = Slot { id, table };
    // The recorded report (of any interface, named or not), else what the
    // slot kept (a srcsel older than the record).
    let mut learned = reg.get(&id).map(|r| r.dns.clone()).unwrap_or_default();
    let hook_gateway = match snap.reported.get(name) {
        Some(r) => {
            learned.hook4.clone_from(&r.dns);
            r.gateway
        }
        None => reg.get(&id).and_then(|r| r.hook_gateway),
    };
    learned.asked = snap.asked.get(name).cloned();
    let dns_config = cfg.map(UplinkConfig::dns).unwrap_or_default();
    let dns = dns::choose(&dns_config, &learned, snap.now);
    let mut uplink = Uplink::observe_or_absent(snap, name);
    uplink.health_down = match &snap.health {
        Some(h) => h.get(name).copied().unwrap_or_default(),
        None => reg.get(&id).map(|r| r.health_down).unwrap_or_default(),
    };
    let gateway_source = gateway::choose(&mut uplink, hook_gateway, cfg.and_then(|c| c.gateway));
    gateway::choose6(&mut uplink, cfg.and_then(|c| c.gateway6));
    let routes: Vec<Route> = snap
        .routes
        .iter()
        .filter(|r| r.spec.table == table)
        .map(|r| r.spec.clone())
        .collect();
    let rules: Vec<Rule> = snap
        .our_rules()
        .filter(|r| in_range(id, r.priority))
        .cloned()
        .collect();
    if claim {
        taken.insert(id);
    }
    Ok(UplinkPlan {
        device: None,
        active: None,
        routes: routing::route_changes(&routes, &routing::desired_routes(table, &uplink)),
        rules: routing::diff(&rules, &{
            let desired = routing::desired_rules(slot, &uplink, cfg.is_some_and(|c| c.isolate));
            with_answers(desired, slot, snap, tables, &[uplink.index])
        }),
        uplink,
        gateway_source,
        slot,
        claim,
        hook_gateway,
        dns,
    })
}

/// `rules` and the slot's answer rules ([`routing::answer_rules`]) for the
/// addresses beside its `links`: each to its uplink's table, if srcsel
/// keeps one on that link, else main.
fn with_answers(
    mut rules: Vec<Rule>,
    slot: Slot,
    snap: &Snapshot,
    tables: &BTreeMap<String, u32>,
    links: &[u32],
) -> Vec<Rule> {
    let table_of = |index| {
        let link = snap.links.iter().find(|l| l.index == index)?;
        tables.get(&link.name).copied()
    };
    let others = routing::addresses_beside(snap, links, table_of);
    rules.extend(routing::answer_rules(slot, &others));
    rules
}

/// The uplinks and lists a plan for `scope` covers: a list brings its
/// members.
fn planned(config: &Config, reg: &Registry, scope: Scope<'_>) -> BTreeSet<String> {
    let named: Vec<&str> = match scope {
        Scope::Managed => config
            .managed()
            .chain(reg.values().map(|r| r.name.as_str()))
            .collect(),
        Scope::One(name) => vec![name],
    };
    named
        .into_iter()
        .flat_map(|n| failover::members(n).chain(failover::is_list(n).then_some(n)))
        .map(str::to_owned)
        .collect()
}

/// The uplinks of `scope` whose resolvers are to be asked of the host's
/// DHCP client: those that learn theirs (no `dns`, no `system_dns`) and
/// of which no hook reported any.
pub fn to_ask(config: &Config, snap: &Snapshot, reg: &Registry, scope: Scope<'_>) -> Vec<String> {
    let hooked = |name: &str| match snap.reported.get(name) {
        Some(r) => !r.dns.is_empty(),
        None => slot_held_by(reg, name).is_some_and(|id| !reg[&id].dns.hook4.is_empty()),
    };
    planned(config, reg, scope)
        .into_iter()
        .filter(|name| !failover::is_list(name))
        .filter(|name| {
            let learns = config
                .uplink(name)
                .is_none_or(|c| c.dns() == DnsConfig::Learned);
            learns && !hooked(name)
        })
        .collect()
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
