//! A namespace's pinned maps, opened under its lock: the slot registry
//! (which uplink holds which slot, and what only userspace keeps about it).
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use aya::maps::{Array, HashMap, LpmTrie, Map, MapData, MapInfo};
use srcsel_common::{
    LeaseReport, MAX_UPLINKS, Resolvers, UplinkRecord, UplinkState, health_flags, maps,
};

use super::{BpfError, OBJECT, io_err, loader, pins};
use crate::policy::{
    dns,
    health::Down,
    plan::{Registry, SlotRecord},
    routing::from_raw4,
    snapshot::Reported,
};

/// srcsel's pinned state in one network namespace, locked for the caller.
pub struct Namespace {
    pub(super) dir: PathBuf,
    pub(super) cookie: u64,
    pub(super) uplinks: Array<MapData, UplinkState>,
    pub(super) records: Array<MapData, UplinkRecord>,
    pub(super) exempt: LpmTrie<MapData, [u8; 4], [u32; 2]>,
    pub(super) exempt6: LpmTrie<MapData, [u8; 16], [u32; 5]>,
    pub(super) dns: Array<MapData, Resolvers>,
    pub(super) leases: HashMap<MapData, [u8; 16], LeaseReport>,
    _lock: fs::File,
}

impl Namespace {
    /// Opens (creating if needed) the namespace's folder and maps, and takes
    /// its lock so concurrent srcsel processes do not race on slots and pins.
    pub fn open(bpffs: &Path, cookie: u64) -> Result<Self, BpfError> {
        if OBJECT.is_empty() {
            return Err(BpfError::NoObject);
        }
        let dir = pins::ns_dir(bpffs, cookie);
        fs::create_dir_all(dir.join("maps")).map_err(io_err(&dir))?;
        let lock = fs::File::open(&dir).map_err(io_err(&dir))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io_err(&dir)(e.into()))?;
        let maps_dir = dir.join("maps");
        check_layout(&maps_dir)?;
        if !maps_pinned(&maps_dir) {
            // Parsing the object creates and pins its by-name maps.
            loader(&maps_dir).load(OBJECT)?;
            pins::mark_namespace(&dir)?;
        }
        Ok(Self {
            uplinks: open_map(&maps_dir.join(maps::UPLINKS), Map::Array)?,
            records: open_map(&maps_dir.join(maps::REGISTRY), Map::Array)?,
            exempt: open_map(&maps_dir.join(maps::EXEMPT4), Map::LpmTrie)?,
            exempt6: open_map(&maps_dir.join(maps::EXEMPT6), Map::LpmTrie)?,
            dns: open_map(&maps_dir.join(maps::DNS), Map::Array)?,
            leases: open_map(&maps_dir.join(maps::LEASES), Map::HashMap)?,
            dir,
            cookie,
            _lock: lock,
        })
    }

    /// Opens the namespace's state only if srcsel set it up (read-only use:
    /// refusing bad input must not create pins). One set up by an older
    /// srcsel gets the maps added since pinned by [`Self::open`].
    pub fn open_existing(bpffs: &Path, cookie: u64) -> Result<Option<Self>, BpfError> {
        let maps_dir = pins::ns_dir(bpffs, cookie).join("maps");
        if !maps_dir.join(maps::UPLINKS).exists() {
            return Ok(None);
        }
        Self::open(bpffs, cookie).map(Some)
    }

    /// The registry of the namespace `cookie` without creating anything
    /// (empty when srcsel has no state there).
    pub fn peek_registry(cookie: u64) -> Result<Registry, BpfError> {
        let Some(bpffs) = pins::find_bpffs()? else {
            return Ok(Registry::new());
        };
        match Self::open_existing(&bpffs, cookie)? {
            Some(ns) => ns.registry(),
            None => Ok(Registry::new()),
        }
    }

    /// The reports recorded in the namespace `cookie`, without creating
    /// anything (none when srcsel has no state there).
    pub fn peek_reported(cookie: u64) -> Result<BTreeMap<String, Reported>, BpfError> {
        let Some(bpffs) = pins::find_bpffs()? else {
            return Ok(BTreeMap::new());
        };
        match Self::open_existing(&bpffs, cookie)? {
            Some(ns) => ns.reported(),
            None => Ok(BTreeMap::new()),
        }
    }

    /// The namespace's pin folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every taken slot, as policy reads it.
    pub fn registry(&self) -> Result<Registry, BpfError> {
        Ok(self
            .records()?
            .into_iter()
            .map(|(id, r)| {
                let dns = self
                    .dns(id)
                    .map(|d| dns::learned_of(&d))
                    .unwrap_or_default();
                let rec = SlotRecord {
                    name: name_of(&r),
                    table: r.table,
                    hook_gateway: from_raw4(r.hook_gateway4),
                    dns,
                    health_down: Down {
                        v4: r.health & health_flags::DOWN4 != 0,
                        v6: r.health & health_flags::DOWN6 != 0,
                    },
                };
                (id, rec)
            })
            .collect())
    }

    /// Every taken slot's record, by slot: one batch, or one lookup per
    /// slot where the kernel has no batches.
    pub fn records(&self) -> Result<Vec<(u32, UplinkRecord)>, BpfError> {
        let all = match super::syscall::array_values(&self.records) {
            Ok(all) if all.len() == MAX_UPLINKS as usize => all,
            _ => (0..MAX_UPLINKS)
                .map(|id| self.record(id))
                .collect::<Result<_, _>>()?,
        };
        Ok((1..MAX_UPLINKS)
            .zip(all.into_iter().skip(1))
            .filter(|(_, r)| r.name[0] != 0)
            .collect())
    }

    pub fn record(&self, id: u32) -> Result<UplinkRecord, BpfError> {
        self.records
            .get(&id, 0)
            .map_err(|source| self.map_err(maps::REGISTRY, source))
    }

    /// Slot `id`'s resolvers (all zero when free).
    pub fn dns(&self, id: u32) -> Result<Resolvers, BpfError> {
        self.dns
            .get(&id, 0)
            .map_err(|source| self.map_err(maps::DNS, source))
    }

    pub(super) fn write_record(&mut self, id: u32, r: UplinkRecord) -> Result<(), BpfError> {
        self.records
            .set(id, r, 0)
            .map_err(|source| self.map_err(maps::REGISTRY, source))
    }

    pub(super) fn map_err(&self, name: &str, source: aya::maps::MapError) -> BpfError {
        BpfError::Map {
            path: self.dir.join("maps").join(name),
            source,
        }
    }
}

/// Refuses pins made by a srcsel with another map layout: programs loaded
/// against them would be refused by the verifier, or misread the values.
/// The old programs keep steering what they are attached to until `srcsel
/// down` (of either version) removes them.
fn check_layout(maps_dir: &Path) -> Result<(), BpfError> {
    let layout = || BpfError::Layout {
        dir: maps_dir.parent().unwrap_or(maps_dir).to_owned(),
    };
    if !maps_dir.join(maps::UPLINKS).exists() {
        return Ok(());
    }
    if !maps_dir.join(maps::EXEMPT6).exists() {
        return Err(layout());
    }
    // Maps added later (SRCSEL_DNS) may be missing: open pins them.
    for (name, want) in [
        (maps::UPLINKS, size_of::<UplinkState>()),
        (maps::DNS, size_of::<Resolvers>()),
    ] {
        let path = maps_dir.join(name);
        if !path.exists() {
            continue;
        }
        let info = MapInfo::from_pin(&path).map_err(|source| BpfError::Map {
            path: path.clone(),
            source,
        })?;
        if info.value_size() as usize != want {
            return Err(layout());
        }
    }
    Ok(())
}

fn maps_pinned(maps_dir: &Path) -> bool {
    pins::holds_all(maps_dir, maps::ALL.iter().copied())
}

pub(super) fn open_map<T: TryFrom<Map, Error = aya::maps::MapError>>(
    path: &Path,
    kind: fn(MapData) -> Map,
) -> Result<T, BpfError> {
    let err = |source| BpfError::Map {
        path: path.to_owned(),
        source,
    };
    T::try_from(kind(MapData::from_pin(path).map_err(err)?)).map_err(err)
}

pub(super) fn name_key(name: &str) -> [u8; 16] {
    let mut key = [0u8; 16];
    let n = name.len().min(15);
    key[..n].copy_from_slice(&name.as_bytes()[..n]);
    key
}

/// A record's interface name.
pub fn name_of(r: &UplinkRecord) -> String {
    name_of_key(&r.name)
}

/// The inverse of [`name_key`].
pub(super) fn name_of_key(key: &[u8; 16]) -> String {
    String::from_utf8_lossy(key)
        .trim_end_matches('\0')
        .to_owned()
}
