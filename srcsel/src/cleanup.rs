//! Removing what srcsel left behind when a process of its own could not:
//! runs whose `srcsel run` died, links of cgroups that are gone, and the
//! pins, cgroups and runtime files of network namespaces that no longer
//! exist. Used by `srcsel run`, `srcsel down` and the daemon.
use std::path::Path;

use crate::{api, kernel};

/// Removes what is left behind: this namespace's dead runs (cgroups whose
/// `srcsel run` died and whose command has ended, pinned links of cgroups
/// that are gone), and the pins and empty run cgroups of network namespaces
/// that no longer exist. Returns what could not be removed, for a warning.
pub fn leftovers(cg_root: &Path, bpffs: &Path, cookie: u64) -> Vec<String> {
    let failed = kernel::cgroup::all_runs_dirs(cg_root, cookie)
        .iter()
        .flat_map(|dir| kernel::cgroup::remove_dead_runs(dir).1)
        .collect::<Vec<_>>();
    let mut problems: Vec<String> = failed
        .into_iter()
        .map(|(path, e)| format!("could not remove cgroup {}: {e}", path.display()))
        .collect();
    let ns_dir = kernel::bpf::pins::ns_dir(bpffs, cookie);
    // Entries of the older naming were named after groups of the plain layout.
    let legacy = kernel::cgroup::plain_runs_dir(cg_root, cookie);
    let gone = |name: &str| !legacy.join(name).exists();
    if let Err(e) = kernel::bpf::attachments::remove_orphans(&ns_dir, gone) {
        problems.push(format!(
            "could not remove pinned links in {}: {e}",
            ns_dir.display()
        ));
    }
    match kernel::bpf::pins::remove_gone_namespaces(bpffs, cookie) {
        Ok(removed) => {
            for dir in removed {
                tracing::info!("removed {}: its network namespace is gone", dir.display());
                if let Some(name) = dir.file_name() {
                    kernel::cgroup::remove_empty(&cg_root.join(kernel::cgroup::SUBTREE).join(name));
                    if let Some(cookie) = name.to_str().and_then(|n| n.strip_prefix("net-")) {
                        let slice = format!("srcsel-net{cookie}.slice");
                        kernel::cgroup::remove_empty(
                            &cg_root.join(kernel::cgroup::SLICE).join(slice),
                        );
                    }
                    let cookie = name
                        .to_str()
                        .and_then(|n| n.strip_prefix("net-")?.parse().ok());
                    if let Some(cookie) = cookie {
                        api::remove_runtime_files(cookie);
                    }
                }
            }
        }
        Err(e) => problems.push(format!("could not remove pins of gone namespaces: {e}")),
    }
    problems
}
