//! The config's assignments as `srcsel status` reports them.
use std::path::Path;

use super::AssignedReport;
use crate::{
    assign,
    config::Config,
    kernel::{
        bpf::{SetCounters, attachments, programs},
        cgroup,
    },
    policy,
};

/// Each configured assignment: its cgroup, whether its programs are on it
/// (as the kernel says), its processes and counters.
pub(super) fn assigned(
    config: &Config,
    cg_root: &Path,
    ns_dir: Option<&Path>,
) -> Vec<AssignedReport> {
    // One storage lookup per program set, however many cgroups share it.
    let mut sets: Vec<(&policy::Assignment, Option<SetCounters>)> = Vec::new();
    config
        .assigned
        .iter()
        .map(|a| {
            let cgroup = assign::cgroup_of(cg_root, a).ok();
            let ino = cgroup
                .as_deref()
                .and_then(|p| attachments::cgroup_ino(p).ok());
            let set = &a.assignment;
            AssignedReport {
                kind: a.target.kind().into(),
                name: a.target.name().into(),
                via: set.via.clone(),
                mode: set.mode.to_string(),
                // From its uplink's report, once read.
                active: None,
                active6: None,
                live: ns_dir
                    .zip(cgroup.as_deref())
                    .is_some_and(|(d, cg)| programs::attached_to(d, set, cg)),
                pids: cgroup
                    .as_deref()
                    .map(cgroup::pids_below)
                    .unwrap_or_default(),
                counters: ns_dir.zip(ino).and_then(|(d, ino)| {
                    let i = sets.iter().position(|(s, _)| *s == set).unwrap_or_else(|| {
                        sets.push((set, SetCounters::open(d, set)));
                        sets.len() - 1
                    });
                    Some(sets[i].1.as_ref()?.of(ino)?.into())
                }),
                cgroup: cgroup.map(|p| p.display().to_string()),
            }
        })
        .collect()
}
