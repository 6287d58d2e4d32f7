//! `srcsel down [--force]`: removes what srcsel added in this network
//! namespace, never while something would put it back or still relies on it.
//! Cgroups the config assigns keep their programs (and the maps and program
//! sets those use), marked down: strict ones fail rather than leave another
//! way until srcsel runs again; `srcsel unassign` releases them.
use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::{
    api::client,
    config::Config,
    kernel::{
        self,
        bpf::{Namespace, attachments, pins},
        cgroup, netlink, privileges,
    },
};

pub fn down(force: bool, config: &Path) -> anyhow::Result<()> {
    privileges::require()?;
    if let Some(pid) = client::daemon_pid() {
        bail!(
            "a srcsel daemon (pid {pid}) runs in this network namespace and would set everything up \
             again: stop it first (`systemctl stop srcsel`, or `kill {pid}`), then run `srcsel down` again"
        );
    }
    let config = Config::load(config, false)?;
    let cookie = pins::netns_cookie()?;
    let cg_root = cgroup::cgroup2_mount().ok();
    let runs_dirs = cg_root
        .as_ref()
        .map(|r| cgroup::all_runs_dirs(r, cookie))
        .unwrap_or_default();
    let runs: Vec<_> = runs_dirs.iter().flat_map(|d| cgroup::runs(d)).collect();
    let active = active(&runs);
    if !active.is_empty() && !force {
        bail!(
            "{} srcsel run(s) still active in this network namespace: {}; end them, or run \
             `srcsel down --force` to stop them first",
            active.len(),
            active.join(", ")
        );
    }
    end_runs(&runs, &runs_dirs)?;
    let removed = kernel::block_on(async {
        let handle = netlink::connect()?;
        anyhow::Ok(netlink::apply::remove_all(&handle).await?)
    })?;
    // Without a bpffs there are no pins to remove; do not mount one for that.
    let bpffs = pins::find_bpffs()?;
    let pins_said = match &bpffs {
        Some(bpffs) => remove_pins(bpffs, cookie, &config, &runs_dirs)?,
        None => "no pins (no bpffs)".to_owned(),
    };
    if let (Some(root), Some(bpffs)) = (&cg_root, &bpffs) {
        for problem in crate::cleanup::leftovers(root, bpffs, cookie) {
            tracing::warn!("{problem}");
        }
    }
    eprintln!(
        "srcsel: removed {removed} rules and routes, {pins_said}, {} run cgroups ({} active)",
        runs.len(),
        active.len()
    );
    Ok(())
}

/// The runs that still have processes, as a person reads them.
fn active(runs: &[cgroup::Run]) -> Vec<String> {
    runs.iter()
        .filter(|r| !r.pids.is_empty())
        .map(|r| {
            let what = r.assignment.as_ref().map_or("?".into(), |a| a.to_string());
            format!("{} ({what}, pids {:?})", r.path.display(), r.pids)
        })
        .collect()
}

/// Runs end first, while still steered: nothing of theirs leaves another
/// way. Then their groups go.
fn end_runs(runs: &[cgroup::Run], runs_dirs: &[PathBuf]) -> anyhow::Result<()> {
    for run in runs {
        cgroup::remove(&run.path)?;
    }
    for dir in runs_dirs {
        if cgroup::runs_are_scopes(dir) {
            stop_slice(dir);
        }
        cgroup::remove_empty(dir);
    }
    Ok(())
}

/// Removes the namespace's pins, and says what it removed. Assigned cgroups
/// keep their programs: srcsel's own links and what systemd attached
/// through a drop-in (held by systemd, not pinned as links): replacing
/// those under systemd would leave a set that reads maps nobody updates.
/// Runs' groups lose theirs.
fn remove_pins(
    bpffs: &Path,
    cookie: u64,
    config: &Config,
    runs_dirs: &[PathBuf],
) -> anyhow::Result<String> {
    let ns_dir = pins::ns_dir(bpffs, cookie);
    if config.assigned.is_empty() || !ns_dir.exists() {
        let said = if pins::remove_namespace(bpffs, cookie)? {
            "this namespace's pinned programs, links and maps"
        } else {
            "no pins (none here)"
        };
        crate::api::remove_runtime_files(cookie);
        return Ok(said.to_owned());
    }
    for a in attachments::list(&ns_dir) {
        if runs_dirs.iter().any(|r| a.under(r)) {
            pins::remove_tree(&a.dir)?;
        }
    }
    Namespace::open(bpffs, cookie)?.mark_down()?;
    let list: Vec<String> = config
        .assigned
        .iter()
        .map(|a| format!("{} ({})", a.target, a.assignment))
        .collect();
    Ok(format!(
        "not the programs of {} assignment(s): {}; they are marked down (strict ones \
         refuse connections) until srcsel runs again; `srcsel unassign` them, then \
         `srcsel down`, to remove those too",
        list.len(),
        list.join(", ")
    ))
}

/// Under systemd the runs' slices are its units: stopped through it, so
/// that it removes their cgroups and forgets them.
fn stop_slice(runs_dir: &Path) {
    let Some(name) = runs_dir.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    if let Err(e) = kernel::block_on(async { Ok(crate::systemd::scope::stop(name).await?) }) {
        tracing::warn!("stopping {name}: {e}; its empty cgroups are removed instead");
    }
}
