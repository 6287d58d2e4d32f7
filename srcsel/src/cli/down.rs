//! `srcsel down`: removes what srcsel added in this network namespace.
use tracing::warn;

use crate::kernel::{self, bpf::pins, cgroup, netlink, privileges};

pub fn down() -> anyhow::Result<()> {
    privileges::require()?;
    let removed = kernel::block_on(async {
        let handle = netlink::connect()?;
        anyhow::Ok(netlink::apply::remove_all(&handle).await?)
    })?;
    // Without a bpffs there are no pins to remove; do not mount one for that.
    let had_pins = match pins::find_bpffs()? {
        Some(bpffs) => pins::remove_namespace(&bpffs, pins::netns_cookie()?)?,
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
        if had_pins {
            "this namespace's pinned programs and maps"
        } else {
            "no pins (none here)"
        }
    );
    Ok(())
}
