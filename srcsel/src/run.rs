//! `srcsel run --via IFACE -- CMD`: CMD and all it starts leave through IFACE.
use std::{ffi::OsString, path::Path};

use anyhow::Context as _;
use tracing::warn;

use crate::{
    cgroup::{self, RunCgroup},
    config::{self, Config},
    ebpf::{self, ProgramSet},
    privileges, reconcile, routing, supervise, uplink,
};

pub struct RunArgs {
    pub via: String,
    pub fallback: bool,
    pub command: Vec<OsString>,
}

/// Returns the command's exit status.
pub fn run(args: &RunArgs) -> anyhow::Result<u8> {
    privileges::require()?;
    let cg_root = cgroup::cgroup2_mount()?;
    let set = crate::block_on(prepare(&args.via, !args.fallback))?;
    let label = format!(
        "{} {}",
        args.via,
        if args.fallback { "fallback" } else { "strict" }
    );
    for (path, err) in cgroup::remove_stale(&cg_root).1 {
        warn!("could not remove stale cgroup {}: {err}", path.display());
    }
    let cg = RunCgroup::create(&cg_root, &label)?;
    let status = attach_and_run(&cg, &set, &args.command);
    let removed = cg.remove();
    supervise::reap_all();
    let status = status?;
    removed?;
    Ok(status)
}

fn attach_and_run(cg: &RunCgroup, set: &ProgramSet, command: &[OsString]) -> anyhow::Result<u8> {
    let _attached = set
        .attach(cg)
        .with_context(|| format!("attaching to cgroup {}", cg.path().display()))?;
    supervise::run_in(cg, command)
}

/// Checks the uplink, then brings its pins, table, rules and live state up to
/// date. Nothing is changed unless every check passes.
pub async fn prepare(via: &str, strict: bool) -> anyhow::Result<ProgramSet> {
    let config = Config::load(Path::new(config::DEFAULT_PATH), false)?;
    let handle = crate::netlink()?;
    let routes = routing::all_routes4(&handle).await?;
    // Read-only until every check has passed.
    let mut up = uplink::observe(&handle, via, &routes).await?;
    let cfg = config.uplink(&up.name);
    let cookie = ebpf::netns_cookie()?;
    let hook = ebpf::peek_hook_gateway(cookie, &up.name)?;
    reconcile::choose_gateway(&mut up, hook, cfg);
    uplink::check_ready(&up)?;
    if !up.usable() {
        let what = if strict {
            "its connections fail until it is back"
        } else {
            "it uses normal routing until it is back"
        };
        warn!("{} is down or has no gateway: {what}", up.name);
    }
    let bpffs = ebpf::bpffs()?;
    let mut ns = ebpf::Namespace::open(&bpffs, cookie)?;
    let name = up.name.clone();
    let resolved = reconcile::resolve(&mut ns, up, cfg, &routes)?;
    reconcile::commit(&handle, &mut ns, &resolved, &routes).await?;
    ns.sync_exempt(&routing::exempt_prefixes(&routes))?;
    Ok(ns.ensure_programs(&name, resolved.slot.id, strict)?)
}
