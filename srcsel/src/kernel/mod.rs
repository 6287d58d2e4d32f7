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
