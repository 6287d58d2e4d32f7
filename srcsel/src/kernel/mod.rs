//! Thin adapters between policy and the kernel: rtnetlink, eBPF (bpffs,
//! maps, programs), cgroupfs, mounts and capabilities.
pub mod bpf;
pub mod cgroup;
pub mod mounts;
pub mod netlink;
pub mod privileges;

/// Runs netlink work on a single-threaded runtime, then returns to plain
/// threads (a run's command is supervised with blocking calls and a signalfd).
pub fn block_on<T>(f: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// Removes what is left of this namespace's dead runs: cgroups whose `srcsel
/// run` died and whose command has ended, and the pinned links of cgroups
/// that are gone. Returns what could not be removed, for a warning.
pub fn reap_runs(cg_root: &std::path::Path, cookie: u64) -> Vec<String> {
    let runs_dir = cgroup::runs_dir(cg_root, cookie);
    let (_, failed) = cgroup::reap(&runs_dir);
    let mut problems: Vec<String> = failed
        .into_iter()
        .map(|(path, e)| format!("could not remove cgroup {}: {e}", path.display()))
        .collect();
    if let Ok(Some(bpffs)) = bpf::pins::find_bpffs() {
        let ns_dir = bpf::pins::ns_dir(&bpffs, cookie);
        let gone = |name: &str| !runs_dir.join(name).exists();
        if let Err(e) = bpf::pins::reap_links(&ns_dir, gone) {
            problems.push(format!(
                "could not remove pinned links in {}: {e}",
                ns_dir.display()
            ));
        }
    }
    problems
}
