//! `srcsel down`: removes what srcsel added in this network namespace.
use tracing::warn;

use crate::{cgroup, ebpf, mounts, privileges, routing};

pub fn down() -> anyhow::Result<()> {
    privileges::require()?;
    let removed = crate::block_on(async {
        let handle = crate::netlink()?;
        anyhow::Ok(routing::remove_all(&handle).await?)
    })?;
    // Without a bpffs there are no pins to remove; do not mount one for that.
    let pins = match mounts::find("bpf")? {
        Some(bpffs) => ebpf::remove_namespace(&bpffs, ebpf::netns_cookie()?)?,
        None => false,
    };
    let mut cgroups = 0;
    if let Ok(root) = cgroup::cgroup2_mount() {
        let (stale, failed) = cgroup::remove_stale(&root);
        cgroups = stale;
        for (path, err) in failed {
            warn!("could not remove cgroup {}: {err}", path.display());
        }
        let _ = std::fs::remove_dir(root.join(cgroup::SUBTREE));
    }
    eprintln!(
        "srcsel: removed {removed} rules and routes, {} and {cgroups} stale cgroups",
        if pins {
            "this namespace's pinned programs and maps"
        } else {
            "no pins (none here)"
        }
    );
    Ok(())
}
