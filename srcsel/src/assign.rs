//! The config's assignments, applied: each assigned cgroup gets its
//! uplink's program set attached through pinned links, so everything that
//! runs in it (and in cgroups made inside it later) is steered, whatever
//! srcsel process is running or not. A missing cgroup is created first, so
//! what starts in it later inherits the programs from its first process
//! on. A cgroup no longer assigned loses srcsel's links. A pass with
//! nothing to change writes nothing; a changed assignment is attached
//! before the old one is detached.
use std::{
    collections::{HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
    sync::Mutex,
};

use anyhow::Context as _;
use tracing::info;

use crate::{
    config::Config,
    kernel::{
        bpf::{
            Namespace,
            attachments::{self, cgroup_ino},
            pins,
        },
        cgroup,
    },
    policy::{plan, target::Assigned, target::Target},
};

/// An assignment's cgroup, absolute, or why it has none yet.
pub fn cgroup_of(cg_root: &Path, a: &Assigned) -> Result<PathBuf, String> {
    match a.target.path() {
        Some(rel) => Ok(cg_root.join(rel)),
        None => crate::systemd::unit_cgroup(cg_root, a.target.name()),
    }
}

/// Units' cgroups as systemd placed them, asked once per config (a unit's
/// path follows from its `Slice=`, which only a reload changes), so that a
/// pass spawns no `systemctl` per event.
#[derive(Default)]
pub struct UnitCgroups(Mutex<HashMap<String, PathBuf>>);

impl UnitCgroups {
    fn cgroup_of(&self, cg_root: &Path, a: &Assigned) -> Result<PathBuf, String> {
        let Target::Unit(name) = &a.target else {
            return cgroup_of(cg_root, a);
        };
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = known.get(name) {
            return Ok(p.clone());
        }
        let p = cgroup_of(cg_root, a)?;
        known.insert(name.clone(), p.clone());
        Ok(p)
    }

    /// Forgets them: the config (and with it a unit's slice) may have changed.
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Attaches every assignment of `config`, then detaches what is no longer
/// assigned — a cgroup's old assignment after its new one is in place, and
/// cgroups unassigned (runs' groups are not assignments). Returns what
/// could not be done, for the log.
pub fn apply(
    ns: &Namespace,
    config: &Config,
    cg_root: &Path,
    cookie: u64,
    units: &UnitCgroups,
) -> Vec<String> {
    let registry = match ns.registry() {
        Ok(r) => r,
        Err(e) => return vec![format!("assignments: {e}")],
    };
    let before = attachments::list(ns.dir());
    let mut problems = Vec::new();
    let mut kept = HashSet::new();
    for a in &config.assigned {
        match attach(ns, &registry, cg_root, a, units) {
            Ok(ino) => kept.extend(ino.map(|i| (i, &a.assignment))),
            Err(e) => problems.push(format!("{} via {}: {e:#}", a.target, a.assignment.via)),
        }
    }
    let runs = cgroup::all_runs_dirs(cg_root, cookie);
    for old in before {
        if runs.iter().any(|r| old.under(r)) || kept.contains(&(old.ino, &old.assignment)) {
            continue;
        }
        match pins::remove_tree(&old.dir) {
            Ok(()) => info!(
                "{}: {} detached",
                old.cgroup
                    .as_deref()
                    .unwrap_or(Path::new("(a gone cgroup)"))
                    .display(),
                old.assignment
            ),
            Err(e) => problems.push(format!("detaching {}: {e}", old.dir.display())),
        }
    }
    problems
}

/// One assignment: its cgroup (made when missing, unless systemd makes
/// it), attached; returns the cgroup's inode when it exists.
fn attach(
    ns: &Namespace,
    registry: &plan::Registry,
    cg_root: &Path,
    a: &Assigned,
    units: &UnitCgroups,
) -> anyhow::Result<Option<u64>> {
    let via = &a.assignment.via;
    let id = plan::slot_held_by(registry, via).with_context(|| {
        format!(
            "uplink {via} has no slot yet (see the daemon's log for why it could not be set up)"
        )
    })?;
    // Pinned first: a systemd drop-in names these pins.
    let set = ns.ensure_programs(via, id, a.assignment.mode)?;
    let path = units.cgroup_of(cg_root, a).map_err(anyhow::Error::msg)?;
    if !path.exists() {
        if systemd_makes(&a.target) {
            // systemd creates it with the unit, and its drop-in attaches.
            return Ok(None);
        }
        fs::create_dir_all(&path).with_context(|| {
            let hint = if crate::systemd::booted() {
                " (systemd makes the cgroups of slices and units: assign one with --slice or \
                 --unit instead)"
            } else {
                ""
            };
            format!("creating cgroup {}{hint}", path.display())
        })?;
        info!("created cgroup {} for {}", path.display(), a.target);
    }
    if systemd_makes(&a.target) {
        if set.ensure_attached_beside_systemd(&path)? {
            info!(
                "{}: {} on {}: srcsel's links only while systemd's are missing",
                a.target,
                a.assignment,
                path.display()
            );
        }
    } else if set.ensure_attached(&path)? {
        info!(
            "{}: {} attached to {}",
            a.target,
            a.assignment,
            path.display()
        );
    }
    Ok(Some(
        cgroup_ino(&path).with_context(|| format!("{}", path.display()))?,
    ))
}

/// Slices and units belong to systemd when it runs: it makes their cgroups
/// (and attaches the programs its drop-in names when it does).
fn systemd_makes(t: &Target) -> bool {
    !matches!(t, Target::Cgroup(_)) && crate::systemd::booted()
}
