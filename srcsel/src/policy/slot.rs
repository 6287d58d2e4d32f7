//! An uplink's slot (1..64) and what derives from it: mark, routing table,
//! rule priorities. Also the protocol number that marks srcsel's objects.
use std::ops::Range;

use srcsel_common::mark_for;

/// srcsel's routing protocol number (`ip rule/route ... proto 201`): every
/// rule and route srcsel adds carries it, and only those are ever changed.
pub const PROTO: u8 = 201;
/// Uplink `id` owns tables and rule priorities derived from these bases.
pub const TABLE_BASE: u32 = 0x5300;
pub const PRIORITY_BASE: u32 = 5300;
const PRIORITIES_PER_UPLINK: u32 = 10;

/// The main routing table.
pub const MAIN_TABLE: u32 = 254;

/// The default routing table of uplink `id`.
pub const fn table_for(id: u32) -> u32 {
    TABLE_BASE + id
}

/// Where an uplink's routing lives: its slot (mark, rule priorities) and table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub id: u32,
    pub table: u32,
}

impl Slot {
    /// The socket mark of this slot (without the strict bit).
    pub const fn mark(self) -> u32 {
        mark_for(self.id)
    }
}

/// The rule priorities uplink `id` owns.
pub fn priorities(id: u32) -> Range<u32> {
    let base = PRIORITY_BASE + id * PRIORITIES_PER_UPLINK;
    base..base + PRIORITIES_PER_UPLINK
}

/// Whether a rule at this priority belongs to uplink `id`.
pub fn in_range(id: u32, priority: u32) -> bool {
    priorities(id).contains(&priority)
}
