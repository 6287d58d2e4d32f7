//! Why an uplink (or the whole plan) cannot be set up: each message names
//! the uplink and what to do.
use srcsel_common::{MAX_UPLINKS, mark_for};

use super::{routing::ForeignTable, slot::table_for};

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
    #[error("{0}")]
    BadList(String),
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
