//! `srcsel down [--force]`: removes what srcsel added in this network
//! namespace, never while something would put it back or still relies on it.
use anyhow::bail;

use crate::{
    api::client,
    kernel::{self, bpf::pins, cgroup, netlink, privileges},
};

pub fn down(force: bool) -> anyhow::Result<()> {
    privileges::require()?;
    if let Some(pid) = client::daemon_pid() {
        bail!(
            "a srcsel daemon (pid {pid}) runs in this network namespace and would set everything up \
             again: stop it first (`systemctl stop srcsel`, or `kill {pid}`), then run `srcsel down` again"
        );
    }
    let cookie = pins::netns_cookie()?;
    let cg_root = cgroup::cgroup2_mount().ok();
    let runs_dir = cg_root.as_ref().map(|r| cgroup::runs_dir(r, cookie));
    let runs = runs_dir.as_deref().map(cgroup::runs).unwrap_or_default();
    let active: Vec<String> = runs
        .iter()
        .filter(|r| !r.pids.is_empty())
        .map(|r| {
            let what = r.assignment.as_ref().map_or("?".into(), |a| a.to_string());
            format!("{} ({what}, pids {:?})", r.path.display(), r.pids)
        })
        .collect();
    if !active.is_empty() && !force {
        bail!(
            "{} srcsel run(s) still active in this network namespace: {}; end them, or run \
             `srcsel down --force` to stop them first",
            active.len(),
            active.join(", ")
        );
    }
    // Runs end first, while still steered: nothing of theirs leaves another way.
    for run in &runs {
        cgroup::remove(&run.path)?;
    }
    // Then the assignment groups (their links go with the pins below).
    if let Some(dir) = &runs_dir {
        cgroup::remove_empty(dir);
    }
    let removed = kernel::block_on(async {
        let handle = netlink::connect()?;
        anyhow::Ok(netlink::apply::remove_all(&handle).await?)
    })?;
    // Without a bpffs there are no pins to remove; do not mount one for that.
    let bpffs = pins::find_bpffs()?;
    let had_pins = match &bpffs {
        Some(bpffs) => pins::remove_namespace(bpffs, cookie)?,
        None => false,
    };
    crate::api::remove_runtime_files(cookie);
    if let (Some(root), Some(bpffs)) = (&cg_root, &bpffs) {
        for problem in kernel::reap(root, bpffs, cookie) {
            tracing::warn!("{problem}");
        }
    }
    eprintln!(
        "srcsel: removed {removed} rules and routes, {}, {} run cgroups ({} active)",
        if had_pins {
            "this namespace's pinned programs, links and maps"
        } else {
            "no pins (none here)"
        },
        runs.len(),
        active.len()
    );
    Ok(())
}
