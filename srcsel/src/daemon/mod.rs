//! `srcsel daemon`: keeps every managed uplink's table, rules and live eBPF
//! state equal to what the kernel and the config say. Event-driven: a pass
//! runs on rtnetlink multicast messages (an overrun is a message too) and on
//! requests on its control socket (lease reports, runs); it never polls.
mod conn;
mod runs;
mod server;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use futures::{FutureExt as _, StreamExt as _};
use rtnetlink::Handle;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{debug, info, warn};

use crate::{
    assign,
    config::Config,
    dhcp_clients::Asker,
    kernel::{
        bpf::{Namespace, pins},
        cgroup::{self, CgroupError},
        netlink::{
            Dump, dump, events,
            rdnss::{Rdnss, RdnssListener},
        },
        resolv::{self, ResolvWatch},
    },
    policy::{
        Mode, Scope, Uplink,
        plan::{self, HookReport},
        uplink::UplinkError,
    },
    reconcile,
};

/// What every connection task shares with the event loop.
pub struct Daemon {
    handle: Handle,
    /// Replaced whole on a reload (SIGHUP, `srcsel assign`).
    config: RwLock<Arc<Config>>,
    config_path: PathBuf,
    units: assign::UnitCgroups,
    bpffs: PathBuf,
    cookie: u64,
    cg_root: Result<PathBuf, CgroupError>,
    /// The daemon's own uid: its peers with it are as privileged as root.
    uid: u32,
    /// One pass at a time: the event loop's, a lease's, a new run's; with
    /// what the host's DHCP clients said, kept across passes.
    passes: tokio::sync::Mutex<Asker>,
    conns: Arc<server::Conns>,
    /// When the first resolver routers advertised expires (CLOCK_BOOTTIME
    /// s), as the last pass planned: a pass then drops it.
    rdnss_expiry: std::sync::Mutex<Option<u64>>,
    /// When a pass should ask a DHCP client again about an uplink it knew
    /// no resolvers of ([`Asker::next_try`]).
    ask_again: std::sync::Mutex<Option<Instant>>,
}

/// How long a stopping daemon waits for runs being set up.
const DRAIN: Duration = Duration::from_secs(10);

pub async fn run(config: Config, config_path: PathBuf) -> anyhow::Result<()> {
    let (handle, mut events) = events::subscribe()?;
    let cookie = pins::netns_cookie()?;
    // Every configured uplink must be plannable before anything changes.
    let dump = Dump::read(&handle).await?;
    let registry = Namespace::peek_registry(cookie)?;
    let check = plan::plan(&config, &dump.snapshot, &registry, Scope::Managed);
    check.check()?;
    if let Some((name, e)) = check
        .failed
        .iter()
        .find(|(name, _)| config.uplink(name).is_some())
    {
        return Err(e.clone()).with_context(|| config.locate(name));
    }
    for u in &config.uplinks {
        let name = u.name.get_ref();
        if let Err(e @ (UplinkError::NotFound(_) | UplinkError::Loopback(_))) =
            Uplink::observe(&dump.snapshot, name)
        {
            warn!(
                "uplink {name} in the config: {e}; it stays down until such an interface appears"
            );
        }
    }
    let server = server::Server::listen(cookie)?;
    server::raise_fd_limit();
    let d = Arc::new(Daemon {
        handle,
        config: RwLock::new(Arc::new(config)),
        config_path,
        units: assign::UnitCgroups::default(),
        bpffs: pins::bpffs()?,
        cookie,
        cg_root: cgroup::cgroup2_mount(),
        // SAFETY: plain getter.
        uid: unsafe { libc::geteuid() },
        passes: tokio::sync::Mutex::new(Asker::default()),
        conns: server.conns.clone(),
        rdnss_expiry: std::sync::Mutex::new(None),
        ask_again: std::sync::Mutex::new(None),
    });
    d.reap();
    if crate::systemd::started_by_systemd() {
        // The drop-ins of assigned units name our pins through the alias.
        let _ = Namespace::open(&d.bpffs, cookie)?;
        if let Err(e) = pins::alias_host(&d.bpffs, cookie) {
            warn!(
                "pointing {} at this namespace's pins: {e}; units with srcsel's drop-in will \
                 not start (their programs cannot be found) until it is",
                pins::HOST_ALIAS
            );
        }
    }
    d.reconcile("start", None).await;
    d.ensure_configured_programs()?;
    for a in &d.config().assigned {
        match crate::systemd::dropin::refresh(&a.target, &a.assignment) {
            Ok(true) => info!("{}: its drop-in now names every program", a.target),
            Ok(false) => {}
            Err(e) => warn!("{}: refreshing its drop-in: {e}", a.target),
        }
    }
    let (mut term, mut int, mut hup) = (
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
        signal(SignalKind::hangup())?,
    );
    // Assigned cgroups are attached: units ordered after srcsel may start.
    crate::systemd::notify("READY=1");
    info!("watching links, addresses, routes and rules");
    let mut resolv = watch_resolv_conf();
    let mut rdnss = RdnssListener::new().context("listening for router advertisements' RDNSS")?;
    loop {
        let expiry = d.until_rdnss_expiry();
        let ask_again = *d.ask_again.lock().unwrap_or_else(|e| e.into_inner());
        tokio::select! {
            found = rdnss.next() => {
                d.learn_rdnss(found.context("reading RDNSS")?).await;
            }
            () = sleep_or_never(expiry) => {
                d.reconcile("an advertised resolver expired", None).await;
            }
            () = sleep_or_never(ask_again.map(|t| t.saturating_duration_since(Instant::now()))) => {
                d.reconcile("asking a DHCP client for resolvers again", None).await;
            }
            r = changed(&mut resolv) => {
                if let Err(e) = r {
                    warn!("watching {}: {e}", resolv::RESOLV_CONF);
                }
                // Watched anew: the file may have been replaced.
                resolv = watch_resolv_conf();
                d.reconcile("resolv.conf changed", None).await;
            }
            ev = events.next() => {
                ev.context("the netlink event stream ended")?;
                // Coalesce a burst (a lease change is several messages) into one pass.
                while let Some(Some(_)) = events.next().now_or_never() {}
                d.reconcile("netlink event", None).await;
            }
            conn = server.accept() => match conn {
                Ok(stream) => {
                    tokio::spawn(conn::serve(d.clone(), stream));
                }
                Err(e) => {
                    // Out of file descriptors: give clients time to leave.
                    warn!("control socket: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = hup.recv() => {
                if let Err(e) = d.reload().await {
                    warn!("{e}");
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    crate::systemd::notify("STOPPING=1");
    // Runs being set up get their cgroup (running ones keep theirs); then
    // the socket goes, still under the lock.
    d.conns.drained(DRAIN).await;
    drop(server);
    // Rules, routes and pins stay: traffic keeps flowing; `srcsel down` removes them.
    info!("stopping; uplink state stays in force");
    Ok(())
}

impl Daemon {
    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the config again and applies it; a config that does not parse
    /// leaves the one in force. Returns the problems of the pass.
    pub async fn reload(&self) -> Result<Vec<String>, String> {
        let shown = self.config_path.display();
        let config = Config::load(&self.config_path, false)
            .map_err(|e| format!("reload: {e}; the config in force stays"))?;
        info!(
            "reloading {shown}: {} uplinks, {} assignments",
            config.uplinks.len(),
            config.assigned.len()
        );
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        self.units.clear();
        let problems = self.reconcile("config reload", None).await;
        // Under the passes' lock: a pass started meanwhile holds the flock.
        let _pass = self.passes.lock().await;
        self.ensure_configured_programs()
            .map_err(|e| format!("reload: {e:#}"))?;
        Ok(problems)
    }

    /// Both modes' programs of every configured uplink, so that runs and
    /// assignments find them pinned.
    fn ensure_configured_programs(&self) -> anyhow::Result<()> {
        let ns = Namespace::open(&self.bpffs, self.cookie)?;
        let registry = ns.registry()?;
        for u in &self.config().uplinks {
            let name = u.name.get_ref();
            let Some(id) = plan::slot_of(&registry, name) else {
                continue;
            };
            for mode in Mode::ALL {
                ns.ensure_programs(name, id, mode)?;
            }
        }
        Ok(())
    }

    /// Removes what dead runs and gone namespaces left: at start, and after
    /// each run the daemon ends (a command whose caller was killed ends
    /// without any event).
    pub(super) fn reap(&self) {
        if let Ok(root) = &self.cg_root {
            for problem in crate::cleanup::leftovers(root, &self.bpffs, self.cookie) {
                warn!("{problem}");
            }
        }
    }

    /// Records what routers advertised, under the passes' lock (the
    /// namespace's flock); a pass then makes new resolvers the uplink's.
    async fn learn_rdnss(&self, found: Vec<Rdnss>) {
        let changed = {
            let _pass = self.passes.lock().await;
            let now = dump::boottime_secs();
            Namespace::open(&self.bpffs, self.cookie).and_then(|mut ns| {
                found.iter().try_fold(false, |any, r| {
                    debug!(
                        "RDNSS on interface {}: {:?} for {} s",
                        r.ifindex, r.servers, r.lifetime
                    );
                    Ok(ns.learn_rdnss(r.ifindex, &r.servers, r.lifetime, now)? || any)
                })
            })
        };
        match changed {
            Ok(true) => {
                self.reconcile("router advertisement", None).await;
            }
            Ok(false) => {}
            Err(e) => warn!("recording advertised resolvers: {e}"),
        }
    }

    /// How long until the first advertised resolver expires; at least a
    /// second, so an uplink that cannot be brought up to date is not
    /// retried in a busy loop.
    fn until_rdnss_expiry(&self) -> Option<Duration> {
        let expiry = (*self.rdnss_expiry.lock().unwrap_or_else(|e| e.into_inner()))?;
        let left = expiry.saturating_sub(dump::boottime_secs());
        Some(Duration::from_secs(left.max(1)))
    }

    /// One full pass over every managed uplink, then the assignments;
    /// failures are logged (per uplink, per assignment) and returned.
    async fn reconcile(&self, why: &str, hook: Option<&HookReport>) -> Vec<String> {
        let mut asker = self.passes.lock().await;
        let t = Instant::now();
        let config = self.config();
        let result = async {
            let mut ns = Namespace::open(&self.bpffs, self.cookie)?;
            let passed = reconcile::pass(
                &self.handle,
                &mut ns,
                &config,
                Scope::Managed,
                hook,
                &mut asker,
            )
            .await?;
            *self.rdnss_expiry.lock().unwrap_or_else(|e| e.into_inner()) = passed.rdnss_expiry;
            *self.ask_again.lock().unwrap_or_else(|e| e.into_inner()) = asker.next_try();
            let failed = passed.failed;
            let mut problems: Vec<String> = failed
                .iter()
                .map(|(name, e)| format!("{}: {e:#}", config.locate(name)))
                .collect();
            if let Ok(root) = &self.cg_root {
                problems.extend(assign::apply(&ns, &config, root, self.cookie, &self.units));
            }
            anyhow::Ok(problems)
        };
        let problems = result
            .await
            .unwrap_or_else(|e| vec![format!("reconcile ({why}): {e:#}")]);
        for p in &problems {
            warn!("{p}");
        }
        debug!("reconciled ({why}) in {:?}", t.elapsed());
        problems
    }
}

/// Sleeps for `d`, or forever without one.
async fn sleep_or_never(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// A watch on resolv.conf; without one (no inotify instance left) the
/// system's resolvers are still read at every pass.
fn watch_resolv_conf() -> Option<ResolvWatch> {
    ResolvWatch::new(Path::new(resolv::RESOLV_CONF))
        .inspect_err(|e| warn!("not watching {}: {e}", resolv::RESOLV_CONF))
        .ok()
}

async fn changed(w: &mut Option<ResolvWatch>) -> std::io::Result<()> {
    match w {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}
