//! The DHCP hooks' reports, kept for every interface in the pinned map
//! `SRCSEL_LEASES`: a report of an interface nobody named is recorded here
//! and nowhere else, until a run, an assignment or the config names it.
use std::collections::BTreeMap;

use srcsel_common::{LeaseReport, MAX_RESOLVERS, maps};

use super::{
    BpfError, Namespace,
    namespace::{name_key, name_of_key},
};
use crate::policy::{
    plan::HookReport,
    routing::{from_raw4, raw4},
    snapshot::Reported,
};

impl Namespace {
    /// Records a hook's report `r` at `at` (CLOCK_BOOTTIME s); a write
    /// only when it differs from the one recorded.
    pub fn record_lease(&mut self, r: &HookReport, at: u64) -> Result<(), BpfError> {
        let key = name_key(&r.interface);
        let value = to_value(&r.reported(at));
        let same = |old: &LeaseReport| old.gateway4 == value.gateway4 && old.dns4 == value.dns4;
        if self.leases.get(&key, 0).is_ok_and(|old| same(&old)) {
            return Ok(());
        }
        if self.leases.insert(key, value, 0).is_ok() {
            return Ok(());
        }
        // Full: the oldest report makes room.
        let oldest = self
            .leases
            .iter()
            .filter_map(Result::ok)
            .min_by_key(|(_, v)| v.at)
            .map(|(k, _)| k);
        if let Some(k) = oldest {
            let _ = self.leases.remove(&k);
        }
        self.leases
            .insert(key, value, 0)
            .map_err(|source| self.map_err(maps::LEASES, source))
    }

    /// Every report recorded, by interface name.
    pub fn reported(&self) -> Result<BTreeMap<String, Reported>, BpfError> {
        let mut all = BTreeMap::new();
        for entry in self.leases.iter() {
            let (key, v) = entry.map_err(|source| self.map_err(maps::LEASES, source))?;
            let reported = Reported {
                gateway: from_raw4(v.gateway4),
                dns: v.dns4.iter().filter_map(|a| from_raw4(*a)).collect(),
                at: v.at,
            };
            all.insert(name_of_key(&key), reported);
        }
        Ok(all)
    }
}

fn to_value(r: &Reported) -> LeaseReport {
    let mut dns4 = [0; MAX_RESOLVERS];
    for (slot, a) in dns4.iter_mut().zip(&r.dns) {
        *slot = raw4(Some(*a));
    }
    LeaseReport {
        gateway4: raw4(r.gateway),
        dns4,
        at: r.at,
    }
}
