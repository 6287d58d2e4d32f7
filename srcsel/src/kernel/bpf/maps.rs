//! Writing what the programs read (each uplink's live state, the exempt
//! prefixes) and reading what they count. A write happens only when the
//! value differs, so a pass with nothing to change writes nothing.
use std::{
    collections::BTreeSet,
    net::Ipv6Addr,
    path::{Path, PathBuf},
};

use aya::{
    maps::{CgroupStorageKey, LpmTrie, Map, MapData, PerCpuArray, lpm_trie::Key},
    programs::ProgramInfo,
};
use ipnet::IpNet;
use srcsel_common::{
    Counters, Resolvers, UplinkRecord, UplinkState, flags, health_flags, maps, programs,
};

use super::{
    BpfError,
    namespace::{Namespace, name_key, open_map},
};
use crate::policy::{
    Assignment, UplinkPlan, dns,
    routing::{diff, octets6, raw4, raw6},
};

/// The bits whose condition holds.
fn bits(pairs: &[(bool, u32)]) -> u32 {
    pairs
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |f, (_, bit)| f | bit)
}

impl Namespace {
    /// Publishes an uplink's live state to the programs, and its record to
    /// userspace; the old and new live state if it changed.
    pub fn publish(
        &mut self,
        p: &UplinkPlan,
    ) -> Result<Option<(UplinkState, UplinkState)>, BpfError> {
        let up = &p.uplink;
        let f = bits(&[
            (up.usable4(), flags::UP4),
            (up.addr.is_some(), flags::HAS_ADDR4),
            (up.usable6(), flags::UP6),
            (up.addr6.is_some(), flags::HAS_ADDR6),
        ]);
        let state = UplinkState {
            netns_cookie: self.cookie,
            mark: p.slot.mark(),
            ifindex: up.index,
            addr4: raw4(up.addr.map(|a| a.addr())),
            flags: f,
            addr6: raw6(up.addr6.map(|a| a.addr())),
            ifname: name_key(p.device.as_deref().unwrap_or(&up.name)),
        };
        let chosen = p.active.clone().unwrap_or_default();
        let slot_of =
            |m: Option<(String, u32)>| m.map_or(0, |(_, id)| id & health_flags::ACTIVE_MASK);
        let record = UplinkRecord {
            name: name_key(&up.name),
            table: p.slot.table,
            gateway4: raw4(up.gateway),
            hook_gateway4: raw4(p.hook_gateway),
            health: bits(&[
                (up.health_down.v4, health_flags::DOWN4),
                (up.health_down.v6, health_flags::DOWN6),
            ]) | slot_of(chosen.v4) << health_flags::ACTIVE4_SHIFT
                | slot_of(chosen.v6) << health_flags::ACTIVE6_SHIFT,
            gateway6: up.gateway6.map_or([0; 16], |g| g.octets()),
        };
        if self.record(p.slot.id)? != record {
            self.write_record(p.slot.id, record)?;
        }
        let resolvers = dns::to_value(&p.dns);
        if self.dns(p.slot.id)? != resolvers {
            self.dns
                .set(p.slot.id, resolvers, 0)
                .map_err(|source| self.map_err(maps::DNS, source))?;
        }
        let old = self.state(p.slot.id)?;
        if old == state {
            return Ok(None);
        }
        self.uplinks
            .set(p.slot.id, state, 0)
            .map_err(|source| self.map_err(maps::UPLINKS, source))?;
        Ok(Some((old, state)))
    }

    /// Marks every uplink unusable, its slot and mark kept: strict sockets
    /// of cgroups that stay assigned fail, fallback ones use normal routing
    /// (`srcsel down` while assignments stay attached).
    pub fn mark_down(&mut self) -> Result<(), BpfError> {
        for (id, _) in self.records()? {
            let mut s = self.state(id)?;
            if s.flags != 0 {
                s.flags = 0;
                self.uplinks
                    .set(id, s, 0)
                    .map_err(|source| self.map_err(maps::UPLINKS, source))?;
            }
        }
        Ok(())
    }

    /// The live state in slot `id` (all zero when free).
    pub fn state(&self, id: u32) -> Result<UplinkState, BpfError> {
        self.uplinks
            .get(&id, 0)
            .map_err(|source| self.map_err(maps::UPLINKS, source))
    }

    /// Slot 0 of SRCSEL_DNS: the system's resolvers, whose queries the
    /// programs redirect.
    pub fn sync_system_dns(&mut self, system: Resolvers) -> Result<(), BpfError> {
        if self.dns(0)? != system {
            self.dns
                .set(0, system, 0)
                .map_err(|source| self.map_err(maps::DNS, source))?;
        }
        Ok(())
    }

    /// Records an RDNSS option from the router of interface `ifindex` in its
    /// uplink's slot (merged by lifetime, at `now`); whether the resolvers
    /// themselves changed, not only their lifetimes. An interface without a
    /// slot keeps nothing: its routers repeat their advertisements.
    pub fn learn_rdnss(
        &mut self,
        ifindex: u32,
        servers: &[Ipv6Addr],
        lifetime: u32,
        now: u64,
    ) -> Result<bool, BpfError> {
        let mut slot = None;
        for (id, r) in self.records()? {
            // A list's slot carries its active member's ifindex: not its own.
            if r.name.contains(&b',') {
                continue;
            }
            let s = self.state(id)?;
            if s.mark != 0 && s.ifindex == ifindex {
                slot = Some(id);
                break;
            }
        }
        let Some(id) = slot else { return Ok(false) };
        let mut r = self.dns(id)?;
        let before = dns::learned_of(&r).ra6;
        let after = dns::merge_rdnss(&before, servers, lifetime, now);
        if before == after {
            return Ok(false);
        }
        dns::set_ra6(&mut r, &after);
        self.dns
            .set(id, r, 0)
            .map_err(|source| self.map_err(maps::DNS, source))?;
        let addrs = |l: &[(Ipv6Addr, u64)]| l.iter().map(|(a, _)| *a).collect::<Vec<_>>();
        Ok(addrs(&before) != addrs(&after))
    }

    /// Makes the exempt-destination tries hold exactly `prefixes`.
    pub fn sync_exempt(&mut self, prefixes: &BTreeSet<IpNet>) -> Result<(), BpfError> {
        let (v4, v6): (Vec<IpNet>, Vec<IpNet>) =
            prefixes.iter().partition(|n| matches!(n, IpNet::V4(_)));
        let to_value4 = |n: &IpNet| -> [u32; 2] {
            let IpNet::V4(n) = n else { unreachable!() };
            [
                u32::from_ne_bytes(n.addr().octets()),
                u32::from(n.prefix_len()),
            ]
        };
        let to_value6 = |n: &IpNet| -> [u32; 5] {
            let IpNet::V6(n) = n else { unreachable!() };
            let w = raw6(Some(n.addr()));
            [w[0], w[1], w[2], w[3], u32::from(n.prefix_len())]
        };
        sync_trie(
            &mut self.exempt,
            &v4.iter().map(to_value4).collect::<Vec<_>>(),
            |v| Key::new(v[1], v[0].to_ne_bytes()),
        )
        .map_err(|source| self.map_err(maps::EXEMPT4, source))?;
        sync_trie(
            &mut self.exempt6,
            &v6.iter().map(to_value6).collect::<Vec<_>>(),
            |v| Key::new(v[4], octets6([v[0], v[1], v[2], v[3]])),
        )
        .map_err(|source| self.map_err(maps::EXEMPT6, source))
    }

    /// The slots' counters (opened once for every slot of a report).
    pub fn counters(&self) -> Result<UplinkCounters, BpfError> {
        let path = self.dir.join("maps").join(maps::COUNTERS);
        let map = open_map(&path, Map::PerCpuArray)?;
        Ok(UplinkCounters { map, path })
    }
}

/// Each slot's counters, as its programs count them.
pub struct UplinkCounters {
    map: PerCpuArray<MapData, Counters>,
    path: PathBuf,
}

impl UplinkCounters {
    /// Slot `id`'s, summed over CPUs.
    pub fn of(&self, id: u32) -> Result<Counters, BpfError> {
        let per_cpu = self.map.get(&id, 0).map_err(|source| BpfError::Map {
            path: self.path.clone(),
            source,
        })?;
        Ok(sum(per_cpu.iter()))
    }
}

/// A program set's counters per cgroup: its programs' cgroup storage, one
/// copy per cgroup and attach type, made when the set is attached there.
#[expect(
    deprecated,
    reason = "cgroup local storage: its successor (BPF_MAP_TYPE_CGRP_STORAGE) needs Linux 6.2"
)]
pub struct SetCounters(aya::maps::PerCpuCgroupStorage<MapData, Counters>);

#[expect(
    deprecated,
    reason = "cgroup local storage: its successor (BPF_MAP_TYPE_CGRP_STORAGE) needs Linux 6.2"
)]
impl SetCounters {
    /// The storage of the set of `a`, found through its pinned programs;
    /// None when the set is not pinned, or was loaded by a srcsel without
    /// per-cgroup counters.
    pub fn open(ns_dir: &Path, a: &Assignment) -> Option<Self> {
        // The map of the programs that count (sock_create only marks).
        let set = super::programs::set_dir(ns_dir, a);
        let found = programs::ALL.iter().find_map(|p| {
            let path = set.join(p.name);
            let ids = ProgramInfo::from_pin(&path)
                .and_then(|i| i.map_ids())
                .inspect_err(|e| tracing::debug!("{}: {e}", path.display()))
                .ok()??;
            ids.into_iter().find_map(|id| {
                let map = Map::from_map_data(MapData::from_id(id).ok()?).ok()?;
                aya::maps::PerCpuCgroupStorage::try_from(map).ok()
            })
        });
        if found.is_none() {
            tracing::debug!("no per-cgroup counters in {}", set.display());
        }
        found.map(Self)
    }

    /// What the set counted in cgroup `ino` (and below), over attach types
    /// and CPUs; None when it was never attached there.
    pub fn of(&self, ino: u64) -> Option<Counters> {
        programs::ALL
            .iter()
            .filter_map(|p| {
                let key = CgroupStorageKey::new(ino, p.hook.attach_type());
                let per_cpu = self.0.get(key, 0).ok()?;
                Some(sum(per_cpu.iter()))
            })
            .reduce(Counters::plus)
    }
}

/// Per-CPU copies added up.
fn sum<'a>(copies: impl Iterator<Item = &'a Counters>) -> Counters {
    copies.fold(Counters::default(), |t, c| t.plus(*c))
}

/// Makes a trie whose values repeat their keys hold exactly `wanted`.
fn sync_trie<K: aya::Pod, V: aya::Pod + PartialEq>(
    trie: &mut LpmTrie<MapData, K, V>,
    wanted: &[V],
    key: impl Fn(&V) -> Key<K>,
) -> Result<(), aya::maps::MapError> {
    let current: Vec<V> = trie.iter().filter_map(Result::ok).map(|(_, v)| v).collect();
    let changes = diff(&current, wanted);
    for v in &changes.remove {
        trie.remove(&key(v))?;
    }
    for v in &changes.add {
        trie.insert(&key(v), v, 0)?;
    }
    Ok(())
}
