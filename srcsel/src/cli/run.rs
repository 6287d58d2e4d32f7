//! `srcsel run --via IFACE -- CMD`: CMD and all it starts leave through IFACE.
use std::{
    ffi::OsString,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use tracing::warn;

use crate::{
    config::{self, Config},
    kernel::{
        self,
        bpf::{Namespace, ProgramSet, pins, programs::Attached},
        cgroup::{self, RunCgroup},
        netlink::{self, Dump},
        privileges,
    },
    policy::{Assignment, Mode, Scope, Uplink, plan},
    reconcile, supervise,
};

/// Returns the command's exit status.
pub fn run(via: &str, fallback: bool, command: &[OsString]) -> anyhow::Result<u8> {
    privileges::require()?;
    let cg_root = cgroup::cgroup2_mount()?;
    let mode = if fallback {
        Mode::Fallback
    } else {
        Mode::Strict
    };
    let cookie = pins::netns_cookie()?;
    let (set, bpffs) = kernel::block_on(prepare(via, mode, cookie))?;
    for problem in kernel::reap(&cg_root, &bpffs, cookie) {
        warn!("{problem}");
    }
    let assignment = Assignment {
        via: via.to_owned(),
        mode,
    };
    let cg = RunCgroup::create(&cgroup::runs_dir(&cg_root, cookie), &assignment)?;
    let ran = attach_and_run(&cg, &set, command);
    // Leftovers are killed while still steered; the links go after.
    let removed = cg.remove();
    supervise::reap_all();
    let (attached, status) = ran?;
    removed?;
    attached
        .release()
        .context("removing the run's pinned links")?;
    Ok(status)
}

fn attach_and_run(
    cg: &RunCgroup,
    set: &ProgramSet,
    command: &[OsString],
) -> anyhow::Result<(Attached, u8)> {
    let name = cgroup::run_name(std::process::id());
    let attached = set
        .attach(cg, &name)
        .with_context(|| format!("attaching to cgroup {}", cg.path().display()))?;
    let status = supervise::run_in(cg, command)?;
    Ok((attached, status))
}

/// Checks the uplink, then brings its pins, table, rules and live state up to
/// date. Nothing is changed unless every check passes. Returns the program
/// set and the bpffs it is pinned in.
async fn prepare(via: &str, mode: Mode, cookie: u64) -> anyhow::Result<(ProgramSet, PathBuf)> {
    let config = Config::load(Path::new(config::DEFAULT_PATH), false)?;
    let handle = netlink::connect()?;
    let dump = Dump::read(&handle).await?;
    Uplink::observe(&dump.snapshot, via)?;
    // Planned from what is there now, without creating anything: the checks.
    let registry = Namespace::peek_registry(cookie)?;
    let scope = Scope::One(via);
    let plan = plan::plan(&config, &dump.snapshot, &registry, scope, None);
    plan.check()?;
    if let Some((_, e)) = plan.failed.first() {
        return Err(e.clone().into());
    }
    let up = &plan.uplink(via).expect("planned").uplink;
    up.check_ready()?;
    if !up.usable() {
        let what = match mode {
            Mode::Strict => "its connections fail until it is back",
            Mode::Fallback => "it uses normal routing until it is back",
        };
        warn!("{} is down or has no gateway: {what}", up.name);
    }
    // The pass proper, under the namespace's lock, from a fresh snapshot:
    // concurrent runs may have set the uplink up since the checks.
    let bpffs = pins::bpffs()?;
    let mut ns = Namespace::open(&bpffs, cookie)?;
    let failed = reconcile::pass(&handle, &mut ns, &config, scope, None).await?;
    if let Some((name, e)) = failed.into_iter().next() {
        return Err(e.context(name));
    }
    let id = plan::slot_of(&ns.registry()?, via)
        .with_context(|| format!("{via} has no slot after its pass"))?;
    Ok((ns.ensure_programs(via, id, mode)?, bpffs))
}
