//! `srcsel run --via IFACE -- CMD`: CMD and all it starts leave through IFACE.
use std::ffi::OsString;

use anyhow::Context as _;
use tracing::warn;

use crate::{
    cgroup::{self, RunCgroup},
    ebpf::{self, ProgramSet},
    privileges, routing, supervise,
    uplink::{self, Uplink},
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
    for (path, err) in cgroup::remove_stale(&cg_root) {
        warn!("could not remove stale cgroup {}: {err}", path.display());
    }
    let cg = RunCgroup::create(&cg_root)?;
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
    let handle = crate::netlink()?;
    let routes = routing::all_routes4(&handle).await?;
    let up = uplink::observe(&handle, via, &routes).await?;
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
    let mut ns = ebpf::Namespace::open(&bpffs, ebpf::netns_cookie()?)?;
    let id = ns.slot(&up.name)?;
    publish(&mut ns, id, &up, &handle, &routes).await?;
    Ok(ns.ensure_programs(&up.name, id, strict)?)
}

async fn publish(
    ns: &mut ebpf::Namespace,
    id: u32,
    up: &Uplink,
    handle: &rtnetlink::Handle,
    routes: &[netlink_packet_route::route::RouteMessage],
) -> anyhow::Result<()> {
    ns.publish(id, &up.name, up.index, up.addr.map(|a| a.addr), up.usable())?;
    routing::apply(handle, id, up).await?;
    ns.sync_exempt(&routing::exempt_prefixes(routes))?;
    Ok(())
}
