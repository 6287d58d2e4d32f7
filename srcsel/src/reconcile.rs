//! One reconcile pass, the same for the daemon, `srcsel lease` and `srcsel
//! run`: read one kernel snapshot and the slot registry, plan (pure), apply.
//! Applying writes only what the plan says differs.
use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use rtnetlink::Handle;
use srcsel_common::UplinkRecord;
use tracing::{debug, info};

use crate::{
    config::Config,
    dhcp_clients::Asker,
    kernel::{
        bpf::{Namespace, namespace::name_of},
        cgroup,
        netlink::{Dump, apply},
        resolv,
    },
    policy::{
        Assignment, Mode, Plan, Scope, Uplink, UplinkPlan, failover,
        health::Down,
        isolate::Isolation,
        plan::{self, HookReport},
        uplink::lost_addresses,
    },
};

/// Uplinks a pass could not bring up to date, and why.
pub type Failures = Vec<(String, anyhow::Error)>;

/// What a pass leaves to its caller.
pub struct Passed {
    pub failed: Failures,
    /// When the first advertised resolver it kept expires ([`Plan::rdnss_expiry`]).
    pub rdnss_expiry: Option<u64>,
    /// Each uplink as planned (where the daemon's probes leave from).
    pub planned: Vec<UplinkPlan>,
    /// Addresses uplinks stopped carrying new connections from: assigned
    /// connections bound to them cannot work any more.
    pub lost: Vec<Lost>,
    /// The destinations normal routing keeps on a LAN ([`Plan::exempt`]).
    pub exempt: std::collections::BTreeSet<ipnet::IpNet>,
}

/// An uplink's address that its assigned sockets can no longer use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lost {
    pub uplink: String,
    /// The uplink's socket mark (without the strict bit).
    pub mark: u32,
    pub addr: std::net::IpAddr,
    /// The address is still the uplink's (its gateway or health went): its
    /// connections to the LAN still work.
    pub kept: bool,
}

/// Records a hook's report, if any (of any interface: a report changes
/// nothing until something names its interface), then reads (the kernel,
/// the system's resolvers, the reports, and what the host's DHCP client
/// knows of uplinks no hook told of), plans and applies for `scope`.
pub async fn pass(
    handle: &Handle,
    ns: &mut Namespace,
    config: &Config,
    scope: Scope<'_>,
    hook: Option<&HookReport>,
    asker: &mut Asker,
    health: Option<BTreeMap<String, Down>>,
) -> anyhow::Result<Passed> {
    let mut dump = Dump::read(handle).await?;
    let snap = &mut dump.snapshot;
    snap.system_dns = resolv::system_resolvers();
    snap.health = health;
    if let Some(h) = hook {
        ns.record_lease(h, snap.now)?;
    }
    snap.reported = ns.reported()?;
    let registry = ns.registry()?;
    let to_ask = plan::to_ask(config, snap, &registry, scope);
    asker.keep_only(&to_ask);
    for name in to_ask {
        if let Some(a) = asker.ask(&Uplink::observe_or_absent(snap, &name)).await {
            snap.asked.insert(name, a);
        }
    }
    let plan = plan::plan(config, &dump.snapshot, &registry, scope);
    let (failed, lost) = apply(handle, &dump, ns, &plan).await?;
    Ok(Passed {
        failed,
        lost,
        rdnss_expiry: plan.rdnss_expiry(),
        planned: plan.uplinks,
        exempt: plan.exempt,
    })
}

/// Sets `via` up for a run in `mode`: checks it, then runs its pass, loads
/// its programs and attaches them to the assignment's group under
/// `runs_dir`. Nothing is changed unless every check passes. Returns the
/// group and, while the uplink can't carry traffic, a warning that says
/// what that means in `mode` ([`SetUp`]).
pub async fn for_run(
    handle: &Handle,
    config: &Config,
    a: &Assignment,
    bpffs: &Path,
    cookie: u64,
    runs_dir: &Path,
) -> anyhow::Result<SetUp> {
    let via = a.via.as_str();
    crate::config::check_via(via).map_err(anyhow::Error::msg)?;
    let mut dump = Dump::read(handle).await?;
    for member in failover::members(via) {
        Uplink::observe(&dump.snapshot, member)?;
    }
    // Planned from what is there now, without creating anything: the checks.
    let registry = Namespace::peek_registry(cookie)?;
    dump.snapshot.reported = Namespace::peek_reported(cookie)?;
    let scope = Scope::One(via);
    let plan = plan::plan(config, &dump.snapshot, &registry, scope);
    plan.check()?;
    if let Some((_, e)) = plan.failed.first() {
        return Err(e.clone().into());
    }
    if !failover::is_list(via) {
        // A list may be down as a whole: its run is told (strict fails).
        plan.uplink(via).expect("planned").uplink.check_ready()?;
    }
    // The pass proper, under the namespace's lock, from a fresh snapshot:
    // concurrent runs may have set the uplink up since the checks.
    let mut ns = Namespace::open(bpffs, cookie)?;
    let mut asker = Asker::default();
    let passed = pass(handle, &mut ns, config, scope, None, &mut asker, None).await?;
    if let Some((name, e)) = passed.failed.into_iter().next() {
        return Err(e.context(name));
    }
    let id = plan::slot_held_by(&ns.registry()?, via)
        .with_context(|| format!("{via} has no slot after its pass"))?;
    Ok(SetUp {
        group: attach_group(&ns, id, a, runs_dir)?,
        warning: warnings(&ns, id, a, &config.path)?,
        lost: passed.lost,
        exempt: passed.exempt,
    })
}

/// A run's uplink set up ([`for_run`]).
pub struct SetUp {
    /// The assignment's group cgroup, attached.
    pub group: PathBuf,
    /// What the run is told ([`warnings`]).
    pub warning: Option<String>,
    /// What its pass found lost (a member of a new list renumbered before
    /// the daemon's own pass saw it): the daemon resets those connections.
    pub lost: Vec<Lost>,
    pub exempt: std::collections::BTreeSet<ipnet::IpNet>,
}

/// What a run or assignment of `a` is told at its start, as its uplink is
/// now: that it is down, and, in strict mode, that name lookups will be
/// refused while the uplink knows no resolver (not an error: the lease
/// hook or the config may bring one any moment).
pub fn warnings(
    ns: &Namespace,
    id: u32,
    a: &Assignment,
    config: &str,
) -> anyhow::Result<Option<String>> {
    let (via, mode) = (a.via.as_str(), a.mode);
    let state = ns.state(id)?;
    let mut said = Vec::new();
    if !(state.usable4() || state.usable6()) {
        said.push(down_warning(via, mode));
    }
    if mode == Mode::Strict && !crate::policy::dns::knows_resolvers(&ns.dns(id)?) {
        said.push(no_dns_warning(via, config));
    }
    Ok((!said.is_empty()).then(|| said.join("\n")))
}

/// Strict refuses a query its uplink cannot answer: said once, with the fix.
pub fn no_dns_warning(via: &str, config: &str) -> String {
    format!(
        "{via} knows no DNS resolver: name lookups of its strict programs are refused until it \
         does; give it `dns = [...]` in its [[uplink]] entry of {config}, or let its DHCP \
         client run srcsel's lease hook (see `man srcsel`, DNS)"
    )
}

/// The assignment's group, with the uplink's program set attached (both
/// made if missing); under the namespace's lock, so attached once.
pub fn attach_group(
    ns: &Namespace,
    id: u32,
    a: &Assignment,
    runs_dir: &Path,
) -> anyhow::Result<PathBuf> {
    let set = ns.ensure_programs(&a.via, id, a.mode)?;
    let group = cgroup::group_dir(runs_dir, a);
    if cgroup::runs_are_scopes(runs_dir) && !group.exists() {
        // A slice systemd makes with the run's scope; attached then, while
        // the command still waits ([`attach_again`]).
        return Ok(group);
    }
    let group = cgroup::ensure_group(runs_dir, a)?;
    set.ensure_attached(&group)
        .map(drop)
        .with_context(|| format!("attaching {a} to cgroup {}", group.display()))?;
    Ok(group)
}

/// The group attached, as it is now: after systemd made a run's scope (and
/// with it, maybe anew, the group's slice).
pub fn attach_again(
    bpffs: &Path,
    cookie: u64,
    a: &Assignment,
    runs_dir: &Path,
) -> anyhow::Result<PathBuf> {
    let ns = Namespace::open(bpffs, cookie)?;
    let id = plan::slot_held_by(&ns.registry()?, &a.via)
        .with_context(|| format!("{} has no slot (was srcsel down run meanwhile?)", a.via))?;
    attach_group(&ns, id, a, runs_dir)
}

/// What a run is told while its uplink can't carry traffic.
pub fn down_warning(via: &str, mode: Mode) -> String {
    let what = match mode {
        Mode::Strict => "its connections fail until it is back",
        Mode::Fallback => "it uses normal routing until it is back",
    };
    format!("{via} is down or has no gateway: {what}")
}

/// Applies `plan`, made from `dump`: each uplink on its own (one failing
/// leaves the others in force), then the exempt prefixes and the system's
/// resolvers. Returns the failures and the addresses lost.
pub async fn apply(
    handle: &Handle,
    dump: &Dump,
    ns: &mut Namespace,
    plan: &Plan,
) -> anyhow::Result<(Failures, Vec<Lost>)> {
    plan.check()?;
    let mut failed: Failures = plan
        .failed
        .iter()
        .map(|(name, e)| (name.clone(), anyhow::Error::new(e.clone())))
        .collect();
    let mut lost = Vec::new();
    for u in &plan.uplinks {
        let mut addrs = Vec::new();
        if let Err(e) = apply_uplink(handle, dump, ns, u, &mut addrs).await {
            failed.push((u.uplink.name.clone(), e));
        }
        lost.extend(addrs.into_iter().map(|(addr, kept)| Lost {
            uplink: u.uplink.name.clone(),
            mark: u.slot.mark(),
            addr,
            kept,
        }));
    }
    // What a member lost, the lists that name it lost too.
    let of_lists: Vec<Lost> = lost
        .iter()
        .flat_map(|l| {
            plan.uplinks
                .iter()
                .filter(|p| p.active.is_some())
                .filter(|p| failover::members(&p.uplink.name).any(|m| m == l.uplink))
                .map(|p| Lost {
                    uplink: p.uplink.name.clone(),
                    mark: p.slot.mark(),
                    ..l.clone()
                })
        })
        .collect();
    lost.extend(of_lists);
    ns.sync_exempt(&plan.exempt)?;
    ns.sync_system_dns(plan.system_dns)?;
    apply_isolation(handle, dump, &plan.isolation).await?;
    Ok((failed, lost))
}

/// The isolation table's routes before its rules, and the rules' removal
/// before the routes': unassigned traffic never meets an empty table.
async fn apply_isolation(handle: &Handle, dump: &Dump, i: &Isolation) -> anyhow::Result<()> {
    if i.routes.is_empty() && i.rules.is_empty() {
        return Ok(());
    }
    apply::add_routes(handle, "the isolation table", &i.routes.add).await?;
    apply::add_rules(handle, &i.rules.add).await?;
    apply::remove_rules(handle, dump, &i.rules.remove).await?;
    apply::remove_routes(handle, dump, &i.routes.remove).await?;
    info!(
        "isolation: {} routes and {} rules added, {} and {} removed",
        i.routes.add.len(),
        i.rules.add.len(),
        i.routes.remove.len(),
        i.rules.remove.len()
    );
    Ok(())
}

/// Applies one uplink's plan. What its connections lost is recorded in
/// `lost` as soon as the programs are told, even if a later step fails.
async fn apply_uplink(
    handle: &Handle,
    dump: &Dump,
    ns: &mut Namespace,
    p: &UplinkPlan,
    lost: &mut Vec<(IpAddr, bool)>,
) -> anyhow::Result<()> {
    // Make before break: the new routes and rules exist before the programs
    // are told the new address, and the old ones go only after that.
    apply::add_routes(handle, &p.uplink.name, &p.routes.add).await?;
    apply::add_rules(handle, &p.rules.add).await?;
    // Publishing records a new slot too; under the namespace's lock, so no
    // other srcsel can plan the same slot meanwhile.
    let before = ns.record(p.slot.id)?;
    let published = ns.publish(p)?;
    match &published {
        // A list loses nothing of its own: its members do (and a failback
        // must not end what works on the later member).
        Some((old, new)) if p.active.is_none() => lost.extend(lost_addresses(old, new)),
        Some(_) => {}
        None if p.routes.is_empty() && p.rules.is_empty() => {
            debug!("{}: nothing to change", p.uplink.name);
        }
        None => {}
    }
    if published.is_some() {
        log_published(p);
    }
    if p.active.is_some() {
        log_failover(ns, p, &before)?;
    }
    apply::remove_rules(handle, dump, &p.rules.remove).await?;
    apply::remove_routes(handle, dump, &p.routes.remove).await?;
    Ok(())
}

fn log_published(p: &UplinkPlan) {
    if p.claim {
        info!(
            "{}: slot {}, table {}",
            p.uplink.name, p.slot.id, p.slot.table
        );
    }
    let u = &p.uplink;
    let show = |a: Option<String>| a.unwrap_or_else(|| "none".into());
    let gw = u.gateway.map(|g| format!("{g} ({:?})", p.gateway_source));
    info!(
        "{}: IPv4 {} (address {}, gateway {}), IPv6 {} (address {}, gateway {}), ifindex {}",
        u.name,
        if u.usable4() { "up" } else { "down" },
        show(u.addr.map(|a| a.to_string())),
        show(gw),
        if u.usable6() { "up" } else { "down" },
        show(u.addr6.map(|a| a.to_string())),
        show(u.gateway6.map(|g| g.to_string())),
        u.index
    );
}

/// One line per family whose active member of list `p` changed.
fn log_failover(ns: &Namespace, p: &UplinkPlan, before: &UplinkRecord) -> anyhow::Result<()> {
    use srcsel_common::health_flags::{ACTIVE_MASK, ACTIVE4_SHIFT, ACTIVE6_SHIFT};
    let (Some(chosen), false) = (&p.active, before.name[0] == 0) else {
        return Ok(()); // not a list, or one just set up
    };
    for (family, shift, now) in [
        ("IPv4", ACTIVE4_SHIFT, &chosen.v4),
        ("IPv6", ACTIVE6_SHIFT, &chosen.v6),
    ] {
        let was = (before.health >> shift) & ACTIVE_MASK;
        if was == now.as_ref().map_or(0, |(_, id)| *id) {
            continue;
        }
        let was = match was {
            0 => "none".to_owned(),
            id => name_of(&ns.record(id)?),
        };
        match now {
            Some((name, _)) => info!("{}: {family} now through {name} (was {was})", p.uplink.name),
            None => info!(
                "{}: {family} through none of its uplinks (was {was}): strict connections \
                 fail, fallback ones use normal routing",
                p.uplink.name
            ),
        }
    }
    Ok(())
}
