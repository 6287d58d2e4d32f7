//! Where a run's command goes, moved in while it waits before exec: a new
//! run cgroup of srcsel's, or, under systemd, a transient scope that
//! systemd makes. Either is removed again when the move fails.
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::{
    kernel::{
        cgroup::{self, RunCgroup},
        peer::Child,
    },
    systemd,
};

/// `child` in a new run cgroup in `group`.
pub fn into_cgroup(
    child: Child,
    group: &Path,
    owner: u32,
    cg_root: &Path,
) -> anyhow::Result<PathBuf> {
    let cg = RunCgroup::create(group, owner)?;
    let path = cg.path().to_owned();
    let moved = cg
        .procs()
        .map_err(anyhow::Error::new)
        .and_then(|procs| Ok(child.move_into(&procs, cg_root)?));
    if let Err(e) = moved {
        let _ = cg.remove();
        return Err(e.context(format!("run cgroup {}", path.display())));
    }
    Ok(path)
}

/// `child` in scope `srcsel-run-<owner>.scope` in `group` (a slice),
/// described as `what` in `systemctl status`.
pub async fn into_scope(
    child: Child,
    group: &Path,
    owner: u32,
    what: &str,
    cg_root: &Path,
) -> anyhow::Result<PathBuf> {
    let scope = cgroup::scope_name(owner);
    let slice = group
        .file_name()
        .and_then(|n| n.to_str())
        .context("a run group's name")?;
    let path = group.join(&scope);
    systemd::scope::start(&scope, slice, child.pid(), what)
        .await
        .with_context(|| format!("starting scope {scope} in {slice}"))?;
    // Judged by the kernel, not by systemd's word: the command only goes on
    // in the cgroup srcsel attaches. Nothing is killed on failure: a process
    // that took a dead child's number goes back where it was (`confirm`).
    if !child.placed_in(cg_root, &path) {
        let pid = child.pid();
        child
            .confirm(cg_root)
            .map_err(|e| anyhow::Error::new(e).context(format!("scope {scope}")))?;
        anyhow::bail!(
            "systemd put process {pid} elsewhere than {} (is srcsel in another pid namespace, \
             or systemd's cgroup root not the cgroup2 mount's?)",
            path.display()
        );
    }
    child
        .confirm(cg_root)
        .with_context(|| format!("scope {scope}"))?;
    Ok(path)
}
