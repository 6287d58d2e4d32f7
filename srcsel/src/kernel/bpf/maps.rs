//! Writing what the programs read (each uplink's live state, the exempt
//! prefixes) and reading what they count. A write happens only when the
//! value differs, so a pass with nothing to change writes nothing.
use std::collections::BTreeSet;

use aya::maps::{Map, MapData, PerCpuArray, lpm_trie::Key};
use ipnet::Ipv4Net;
use srcsel_common::{Counters, UplinkRecord, UplinkState, flags, maps};

use super::{
    BpfError,
    registry::{Namespace, name_key, open_map},
};
use crate::policy::{
    UplinkPlan,
    routing::{diff, raw4},
};

impl Namespace {
    /// Publishes an uplink's live state to the programs, and its record to
    /// userspace; whether the live state changed.
    pub fn publish(&mut self, p: &UplinkPlan) -> Result<bool, BpfError> {
        let up = &p.uplink;
        let mut f = 0;
        if up.usable() {
            f |= flags::UP;
        }
        if up.addr.is_some() {
            f |= flags::HAS_ADDR4;
        }
        let state = UplinkState {
            netns_cookie: self.cookie,
            mark: p.slot.mark(),
            ifindex: up.index,
            addr4: raw4(up.addr.map(|a| a.addr())),
            flags: f,
        };
        let record = UplinkRecord {
            name: name_key(&up.name),
            table: p.slot.table,
            gateway4: raw4(up.gateway),
            hook_gateway4: raw4(p.hook_gateway),
            _pad: 0,
        };
        if self.record(p.slot.id)? != record {
            self.write_record(p.slot.id, record)?;
        }
        if self.state(p.slot.id)? == state {
            return Ok(false);
        }
        self.uplinks
            .set(p.slot.id, state, 0)
            .map_err(|source| self.map_err(maps::UPLINKS, source))?;
        Ok(true)
    }

    /// The live state in slot `id` (all zero when free).
    pub fn state(&self, id: u32) -> Result<UplinkState, BpfError> {
        self.uplinks
            .get(&id, 0)
            .map_err(|source| self.map_err(maps::UPLINKS, source))
    }

    /// Makes the exempt-destination trie hold exactly `prefixes`.
    pub fn sync_exempt(&mut self, prefixes: &BTreeSet<Ipv4Net>) -> Result<(), BpfError> {
        let value = |n: &Ipv4Net| {
            [
                u32::from_ne_bytes(n.addr().octets()),
                u32::from(n.prefix_len()),
            ]
        };
        let current: Vec<[u32; 2]> = self
            .exempt
            .iter()
            .filter_map(Result::ok)
            .map(|(_, v)| v)
            .collect();
        let wanted: Vec<[u32; 2]> = prefixes.iter().map(value).collect();
        let changes = diff(&current, &wanted);
        let key = |v: &[u32; 2]| Key::new(v[1], v[0].to_ne_bytes());
        for v in &changes.remove {
            self.exempt
                .remove(&key(v))
                .map_err(|source| self.map_err(maps::EXEMPT4, source))?;
        }
        for v in &changes.add {
            self.exempt
                .insert(&key(v), v, 0)
                .map_err(|source| self.map_err(maps::EXEMPT4, source))?;
        }
        Ok(())
    }

    /// Slot `id`'s counters, summed over CPUs.
    pub fn counters(&self, id: u32) -> Result<Counters, BpfError> {
        let path = self.dir.join("maps").join(maps::COUNTERS);
        let map: PerCpuArray<MapData, Counters> = open_map(&path, Map::PerCpuArray)?;
        let per_cpu = map
            .get(&id, 0)
            .map_err(|source| BpfError::Map { path, source })?;
        Ok(per_cpu.iter().fold(Counters::default(), |mut t, c| {
            t.connections += c.connections;
            t.datagrams += c.datagrams;
            t.refused += c.refused;
            t.bytes_out += c.bytes_out;
            t.bytes_in += c.bytes_in;
            t
        }))
    }
}
