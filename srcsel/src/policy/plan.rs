//! One pass's decisions as data: from the config, one kernel snapshot and the
//! slot registry, what each managed uplink's slot, live state, routes and
//! rules should be, and what must change to get there.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use ipnet::IpNet;
use srcsel_common::{MAX_EXEMPT4, MAX_EXEMPT6, MAX_UPLINKS, mark_for};

use super::dns::DnsConfig;
use super::{
    Route, Rule, Snapshot, Uplink, dns,
    gateway::{self, GatewaySource},
    isolate,
    routing::{self, Changes, ForeignTable},
    slot::{Slot, in_range, table_for},
    snapshot::Reported,
};
use crate::config::{Config, UplinkConfig};

/// What the slot registry holds for one slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotRecord {
    pub name: String,
    /// The routing table it uses.
    pub table: u32,
    /// The gateway a DHCP client hook last reported.
    pub hook_gateway: Option<Ipv4Addr>,
    /// The resolvers it learned (hook, RDNSS).
    pub dns: dns::Learned,
}

/// The slot registry as one pass reads it: taken slots by id.
pub type Registry = BTreeMap<u32, SlotRecord>;

/// The slot `name` holds in `reg`, if any.
pub fn slot_held_by(reg: &Registry, name: &str) -> Option<u32> {
    reg.iter().find(|(_, r)| r.name == name).map(|(id, _)| *id)
}

/// A lease reported by a DHCP client hook (`srcsel lease`): its gateway
/// (None: the lease ended) and DNS servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookReport {
    pub interface: String,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
}

impl HookReport {
    /// Whether a pass has anything to do with this report: only when
    /// something named the interface (the config, or a run or assignment,
    /// which gave it a slot). The hooks report every interface's lease
    /// (eth0's, wlan0's): a report is recorded, never an order to manage.
    pub fn concerns(&self, config: &Config, reg: &Registry) -> bool {
        slot_held_by(reg, &self.interface).is_some()
            || config.managed().any(|m| m == self.interface)
    }

    /// As recorded at `at`.
    pub fn reported(&self, at: u64) -> Reported {
        Reported {
            gateway: self.gateway,
            dns: self.dns.clone(),
            at,
        }
    }
}

/// Which uplinks a pass covers.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// Those in the config and every one with a slot (the daemon).
    Managed,
    /// One uplink (`srcsel run`, `srcsel lease` without a daemon).
    One(&'a str),
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("all {max} uplink slots of this network namespace are taken; `srcsel down` frees them", max = MAX_UPLINKS - 1)]
    NoSlot,
    #[error("{name} uses mark {:#x} but the config asks for {:#x}; run `srcsel down` to renumber", mark_for(*id), mark_for(*wanted))]
    SlotMoved { name: String, id: u32, wanted: u32 },
    #[error("the config gives {name} mark {:#x}, which another uplink already holds; run `srcsel down` to renumber", mark_for(*wanted))]
    SlotTaken { name: String, wanted: u32 },
    #[error(
        "the config gives {name} table {table}, which srcsel uses for slot {slot}; \
         choose a table outside {}–{} (or leave `table` out)",
        table_for(0), table_for(MAX_UPLINKS - 1)
    )]
    AutomaticTable { name: String, table: u32, slot: u32 },
    #[error(
        "the config gives {name} table {table}, which uplink {other} already uses; `srcsel down` frees it"
    )]
    TableTaken {
        name: String,
        table: u32,
        other: String,
    },
    #[error(transparent)]
    ForeignTable(#[from] ForeignTable),
    #[error(
        "the main table holds {count} non-default {family} routes; srcsel keeps at most {max} of them \
         on the LAN for assigned programs — aggregate them into fewer prefixes"
    )]
    TooManyLanRoutes {
        family: &'static str,
        count: usize,
        max: u32,
    },
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

/// What must change for uplinks kept for assigned programs ([`isolate`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Isolation {
    pub routes: Changes<Route>,
    pub rules: Changes<Rule>,
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
        plan.isolation = isolation(config, snap);
    }
    let mut taken: BTreeSet<u32> = reg.keys().copied().collect();
    for name in names {
        match plan_uplink(config.uplink(&name), snap, reg, &mut taken, &name) {
            Ok(p) => plan.uplinks.push(p),
            Err(e) => plan.failed.push((name, e)),
        }
    }
    plan
}

fn plan_uplink(
    cfg: Option<&UplinkConfig>,
    snap: &Snapshot,
    reg: &Registry,
    taken: &mut BTreeSet<u32>,
    name: &str,
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
        routes: routing::route_changes(&routes, &routing::desired_routes(table, &uplink)),
        rules: routing::diff(
            &rules,
            &routing::desired_rules(slot, &uplink, cfg.is_some_and(|c| c.isolate)),
        ),
        uplink,
        gateway_source,
        slot,
        claim,
        hook_gateway,
        dns,
    })
}

/// The uplinks a plan for `scope` covers.
fn planned(config: &Config, reg: &Registry, scope: Scope<'_>) -> BTreeSet<String> {
    match scope {
        Scope::Managed => config
            .managed()
            .map(str::to_owned)
            .chain(reg.values().map(|r| r.name.clone()))
            .collect(),
        Scope::One(name) => BTreeSet::from([name.to_owned()]),
    }
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
        .filter(|name| {
            let learns = config
                .uplink(name)
                .is_none_or(|c| c.dns() == DnsConfig::Learned);
            learns && !hooked(name)
        })
        .collect()
}

/// The isolation plan: in force while any configured uplink has
/// `isolate = true`, and undone when none has.
fn isolation(config: &Config, snap: &Snapshot) -> Isolation {
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
        .filter(|r| r.is_ours() && r.spec.table == isolate::TABLE)
        .map(|r| r.spec.clone())
        .collect();
    let rules: Vec<Rule> = snap
        .our_rules()
        .filter(|r| isolate::is_isolation_rule(r))
        .cloned()
        .collect();
    Isolation {
        routes: routing::route_changes(&routes, &isolate::desired_routes(snap, &isolated, active)),
        rules: routing::diff(&rules, &isolate::desired_rules(active)),
    }
}

/// A configured table must not be another slot's automatic table, nor one
/// that another uplink uses.
fn check_configured_table(
    reg: &Registry,
    name: &str,
    id: u32,
    table: u32,
) -> Result<u32, PlanError> {
    // Slot 0's table is the isolation table.
    let auto = table_for(0)..table_for(MAX_UPLINKS);
    if auto.contains(&table) && table != table_for(id) {
        return Err(PlanError::AutomaticTable {
            name: name.to_owned(),
            table,
            slot: table - table_for(0),
        });
    }
    match reg
        .iter()
        .find(|(other, r)| **other != id && r.table == table)
    {
        Some((_, r)) => Err(PlanError::TableTaken {
            name: name.to_owned(),
            table,
            other: r.name.clone(),
        }),
        None => Ok(table),
    }
}

/// The slot `name` holds, or the one it should claim: the config's (from its
/// mark) or the first free one.
fn choose_slot(
    reg: &Registry,
    taken: &BTreeSet<u32>,
    name: &str,
    wanted: Option<u32>,
) -> Result<(u32, bool), PlanError> {
    if let Some(id) = slot_held_by(reg, name) {
        return match wanted {
            Some(w) if w != id => Err(PlanError::SlotMoved {
                name: name.to_owned(),
                id,
                wanted: w,
            }),
            _ => Ok((id, false)),
        };
    }
    let mut candidates = wanted.map_or(1..MAX_UPLINKS, |w| w..w + 1);
    match candidates.find(|id| !taken.contains(id)) {
        Some(id) => Ok((id, true)),
        None => Err(match wanted {
            Some(w) => PlanError::SlotTaken {
                name: name.to_owned(),
                wanted: w,
            },
            None => PlanError::NoSlot,
        }),
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
