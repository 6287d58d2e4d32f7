//! The slot registry as a pass reads it, and the choice of a slot (and
//! table) for an uplink: the config's, the one it holds, or the first free.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use srcsel_common::MAX_UPLINKS;

use super::{dns, health::Down, plan_error::PlanError, slot::table_for};
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
    /// The daemon's last health verdicts.
    pub health_down: Down,
}

/// The slot registry as one pass reads it: taken slots by id.
pub type Registry = BTreeMap<u32, SlotRecord>;

/// The slot `name` holds in `reg`, if any.
pub fn slot_held_by(reg: &Registry, name: &str) -> Option<u32> {
    reg.iter().find(|(_, r)| r.name == name).map(|(id, _)| *id)
}

/// The table each uplink will route from after this pass, by name: those
/// of the registry, and for `names` the one each holds or will claim (as
/// the pass will choose it). Answers from one uplink's address, sent by
/// another's sockets, take it.
pub(super) fn tables_of<'a>(
    config: &Config,
    reg: &Registry,
    names: impl Iterator<Item = &'a String>,
) -> BTreeMap<String, u32> {
    let mut taken: BTreeSet<u32> = reg.keys().copied().collect();
    let mut tables: BTreeMap<String, u32> =
        reg.values().map(|r| (r.name.clone(), r.table)).collect();
    for name in names {
        let cfg = config.uplink(name);
        let Ok((id, claim)) = choose_slot(reg, &taken, name, cfg.and_then(UplinkConfig::slot))
        else {
            continue;
        };
        if claim {
            taken.insert(id);
        }
        let table = cfg.and_then(UplinkConfig::table).unwrap_or(table_for(id));
        tables.insert(name.clone(), table);
    }
    tables
}

/// A configured table must not be another slot's automatic table, nor one
/// that another uplink uses.
pub(super) fn check_configured_table(
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
pub(super) fn choose_slot(
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
