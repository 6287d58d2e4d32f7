//! One reconcile pass, the same for the daemon, `srcsel lease` and `srcsel
//! run`: read one kernel snapshot and the slot registry, plan (pure), apply.
//! Applying writes only what the plan says differs.
use rtnetlink::Handle;
use tracing::info;

use crate::{
    config::Config,
    kernel::{
        bpf::Namespace,
        netlink::{Dump, apply},
    },
    policy::{
        Plan, Scope, UplinkPlan,
        plan::{self, HookReport},
    },
};

/// Uplinks a pass could not bring up to date, and why.
pub type Failures = Vec<(String, anyhow::Error)>;

/// Reads, plans and applies for `scope`.
pub async fn pass(
    handle: &Handle,
    ns: &mut Namespace,
    config: &Config,
    scope: Scope<'_>,
    hook: Option<&HookReport>,
) -> anyhow::Result<Failures> {
    let dump = Dump::read(handle).await?;
    let plan = plan::plan(config, &dump.snapshot, &ns.registry()?, scope, hook);
    apply(handle, &dump, ns, &plan).await
}

/// Applies `plan`, made from `dump`: each uplink on its own (one failing
/// leaves the others in force), then the exempt prefixes.
pub async fn apply(
    handle: &Handle,
    dump: &Dump,
    ns: &mut Namespace,
    plan: &Plan,
) -> anyhow::Result<Failures> {
    let mut failed: Failures = plan
        .failed
        .iter()
        .map(|(name, e)| (name.clone(), anyhow::Error::new(e.clone())))
        .collect();
    for u in &plan.uplinks {
        if let Err(e) = apply_uplink(handle, dump, ns, u).await {
            failed.push((u.uplink.name.clone(), e));
        }
    }
    ns.sync_exempt(&plan.exempt4)?;
    Ok(failed)
}

async fn apply_uplink(
    handle: &Handle,
    dump: &Dump,
    ns: &mut Namespace,
    p: &UplinkPlan,
) -> anyhow::Result<()> {
    if p.claim {
        ns.claim(p.slot, &p.uplink.name)?;
    }
    if ns.publish(p)? {
        let u = &p.uplink;
        let addr = u.addr.map_or("no address".into(), |a| a.to_string());
        let gw = u.gateway.map_or("no gateway".into(), |g| {
            format!("gateway {g} ({:?})", p.gateway_source)
        });
        let state = if u.usable() { "up" } else { "down" };
        info!("{}: {state} (ifindex {}), {addr}, {gw}", u.name, u.index);
    }
    if !p.routes.is_empty() {
        apply::routes(handle, dump, &p.uplink.name, &p.routes).await?;
    }
    if !p.rules.is_empty() {
        apply::rules(handle, dump, &p.rules).await?;
    }
    Ok(())
}
