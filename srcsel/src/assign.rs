//! The config's assignments, applied: each assigned cgroup gets its
//! uplink's program set attached through pinned links, so everything that
//! runs in it (and in cgroups made inside it later) is steered, whatever
//! srcsel process is running or not. A missing cgroup is created first, so
//! what starts in it later inherits the programs from its first process
//! on. A cgroup no longer assigned loses srcsel's links. A pass with
//! nothing to change writes nothing; a changed assignment is attached
//! before the old one is detached.
use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
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

/// Attaches every assignment of `config`; detaches cgroups no longer
/// assigned (runs' groups are not assignments). Returns what could not be
/// done, per assignment, for the log.
pub fn apply(ns: &Namespace, config: &Config, cg_root: &Path, cookie: u64) -> Vec<String> {
    let mut problems = Vec::new();
    let mut kept = BTreeSet::new();
    let registry = match ns.registry() {
        Ok(r) => r,
        Err(e) => return vec![format!("assignments: {e}")],
    };
    for a in &config.assigned {
        match attach(ns, &registry, cg_root, a) {
            Ok(ino) => {
                kept.extend(ino);
            }
            Err(e) => problems.push(format!("{} via {}: {e:#}", a.target, a.assignment.via)),
        }
    }
    let runs = cgroup::runs_dir(cg_root, cookie);
    for old in attachments::list(ns.dir()) {
        let ours = old.cgroup.as_deref().is_some_and(|p| p.starts_with(&runs));
        if ours || kept.contains(&old.ino) {
            continue;
        }
        match pins::remove_tree(&old.dir) {
            Ok(()) => info!(
                "unassigned {}: {} detached",
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
) -> anyhow::Result<Option<u64>> {
    let via = &a.assignment.via;
    let id = plan::slot_of(registry, via).with_context(|| {
        format!(
            "uplink {via} has no slot yet (see the daemon's log for why it could not be set up)"
        )
    })?;
    // Pinned first: a systemd drop-in names these pins.
    let set = ns.ensure_programs(via, id, a.assignment.mode)?;
    let path = cgroup_of(cg_root, a).map_err(anyhow::Error::msg)?;
    if !path.exists() {
        if systemd_makes(&a.target) {
            // systemd creates it with the unit, and its drop-in attaches.
            return Ok(None);
        }
        fs::create_dir_all(&path).with_context(|| format!("creating cgroup {}", path.display()))?;
        info!("created cgroup {} for {}", path.display(), a.target);
    }
    if set.ensure_attached(&path)? {
        info!(
            "{}: {} attached to {}",
            a.target,
            a.assignment,
            path.display()
        );
    }
    let ino = cgroup_ino(&path).with_context(|| format!("{}", path.display()))?;
    attachments::detach_others(ns.dir(), ino, Some(&a.assignment))
        .with_context(|| format!("detaching the old assignment of {}", path.display()))?;
    Ok(Some(ino))
}

/// Slices and units belong to systemd when it runs: it makes their cgroups
/// (and attaches the programs its drop-in names when it does).
fn systemd_makes(t: &Target) -> bool {
    !matches!(t, Target::Cgroup(_)) && crate::systemd::booted()
}
