//! `srcsel daemon`: keeps every managed uplink's table, rules and live eBPF
//! state equal to what the kernel and the config say. Event-driven: a pass
//! runs on rtnetlink multicast messages (an overrun is a message too) and on
//! requests on its control socket (lease reports, runs); it never polls.
mod conn;
mod health;
mod reset;
mod runs;
mod server;
mod wake;

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use rtnetlink::Handle;
use tracing::{debug, info, warn};
use wake::{Wake, Wakes};

use crate::{
    assign,
    config::Config,
    dhcp_clients::Asker,
    kernel::{
        bpf::{Namespace, pins},
        cgroup::{self, CgroupError},
        netlink::{Dump, dump, events, rdnss::Rdnss},
        sock_reset,
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
    /// Told after every pass, so the loop's timers follow passes that ran
    /// in a connection's task (a lease report, a reload).
    timers_changed: tokio::sync::Notify,
    /// The uplinks' health checks and verdicts.
    health: health::Checks,
    /// How connections that cannot work any more are reset.
    reset: sock_reset::Method,
}

/// How long a stopping daemon waits for runs being set up.
const DRAIN: Duration = Duration::from_secs(10);

pub async fn run(config: Config, config_path: PathBuf) -> anyhow::Result<()> {
    let (handle, events) = events::subscribe()?;
    let cookie = pins::netns_cookie()?;
    check(&handle, cookie, &config).await?;
    let server = server::Server::listen(cookie)?;
    server::raise_fd_limit();
    let (checks, rounds) = health::Checks::new();
    let d = Arc::new(Daemon {
        health: checks,
        reset: reset::detect(),
        handle,
        config: RwLock::new(Arc::new(config)),
        config_path,
        units: assign::UnitCgroups::default(),
        bpffs: pins::bpffs()?,
        cookie,
        cg_root: cgroup::cgroup2_mount(),
        uid: rustix::process::geteuid().as_raw(),
        passes: tokio::sync::Mutex::new(Asker::default()),
        conns: server.conns.clone(),
        rdnss_expiry: std::sync::Mutex::new(None),
        ask_again: std::sync::Mutex::new(None),
        timers_changed: tokio::sync::Notify::new(),
    });
    d.start().await?;
    let mut wakes = Wakes::new(events, server, rounds)?;
    // Assigned cgroups are attached: units ordered after srcsel may start.
    crate::systemd::notify("READY=1");
    info!("watching links, addresses, routes and rules");
    loop {
        match wakes.next(&d).await? {
            Wake::Stop => break,
            wake => d.on(wake).await,
        }
    }
    crate::systemd::notify("STOPPING=1");
    wakes.close(&d, DRAIN).await;
    // Rules, routes and pins stay: traffic keeps flowing; `srcsel down` removes them.
    info!("stopping; uplink state stays in force");
    Ok(())
}

/// Every configured uplink must be plannable before anything changes; one
/// whose interface is missing is only a warning (it may appear).
async fn check(handle: &Handle, cookie: u64, config: &Config) -> anyhow::Result<()> {
    let dump = Dump::read(handle).await?;
    let registry = Namespace::peek_registry(cookie)?;
    let check = plan::plan(config, &dump.snapshot, &registry, Scope::Managed);
    check.check()?;
    if let Some((name, e)) = check
        .failed
        .iter()
        .find(|(name, _)| config.uplink(name).is_some())
    {
        return Err(e.clone()).with_context(|| config.locate(name));
    }
    for u in &config.uplinks {
        let name = u.name();
        if let Err(e @ (UplinkError::NotFound(_) | UplinkError::Loopback(_))) =
            Uplink::observe(&dump.snapshot, name)
        {
            warn!(
                "uplink {name} in the config: {e}; it stays down until such an interface appears"
            );
        }
    }
    Ok(())
}

impl Daemon {
    /// What comes before the first wake-up: leftovers removed, the host
    /// alias for drop-ins, a full pass, every configured program pinned and
    /// every drop-in up to date.
    async fn start(&self) -> anyhow::Result<()> {
        self.remove_leftovers();
        if crate::systemd::started_by_systemd() {
            // The drop-ins of assigned units name our pins through the alias.
            let _ = Namespace::open(&self.bpffs, self.cookie)?;
            if let Err(e) = pins::alias_host(&self.bpffs, self.cookie) {
                warn!(
                    "pointing {} at this namespace's pins: {e}; units with srcsel's drop-in will \
                     not start (their programs cannot be found) until it is",
                    pins::HOST_ALIAS
                );
            }
        }
        self.follow_health().await;
        self.reconcile("start", None).await;
        self.ensure_configured_programs()?;
        for a in &self.config().assigned {
            match crate::systemd::dropin::refresh(&a.target, &a.assignment) {
                Ok(true) => info!("{}: its drop-in now names every program", a.target),
                Ok(false) => {}
                Err(e) => warn!("{}: refreshing its drop-in: {e}", a.target),
            }
        }
        Ok(())
    }

    /// One wake-up of the loop, one step.
    async fn on(self: &Arc<Self>, wake: Wake) {
        let why = match wake {
            Wake::Netlink => "netlink event",
            Wake::ResolvConf => "resolv.conf changed",
            Wake::RdnssExpired => "an advertised resolver expired",
            Wake::AskAgain => "asking a DHCP client for resolvers again",
            Wake::Rdnss(found) => return self.learn_rdnss(found).await,
            Wake::Health(round) => {
                if !self.health.take(round) {
                    return;
                }
                "health verdict"
            }
            Wake::Conn(stream) => {
                tokio::spawn(conn::serve(self.clone(), stream));
                return;
            }
            Wake::Reload => {
                if let Err(e) = self.reload().await {
                    warn!("{e}");
                }
                return;
            }
            Wake::Stop => return,
        };
        self.reconcile(why, None).await;
    }

    /// Health checks as the config says, new ones from the verdicts the
    /// slot registry keeps (of this daemon, or of one before it).
    async fn follow_health(&self) {
        let _pass = self.passes.lock().await;
        let recorded = Namespace::open(&self.bpffs, self.cookie)
            .and_then(|ns| ns.registry())
            .map(|reg| reg.into_values().map(|r| (r.name, r.health_down)).collect())
            .unwrap_or_else(|e| {
                warn!("reading the recorded health verdicts: {e}");
                Default::default()
            });
        self.health.follow(&self.config(), &recorded);
    }

    /// When a pass should ask a DHCP client again ([`Asker::next_try`]).
    fn ask_again(&self) -> Option<Instant> {
        *self.ask_again.lock().unwrap_or_else(|e| e.into_inner())
    }

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
        self.follow_health().await;
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
            let Some(id) = plan::slot_held_by(&registry, name) else {
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
    pub(super) fn remove_leftovers(&self) {
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
                Some(self.health.down()),
            )
            .await?;
            *self.rdnss_expiry.lock().unwrap_or_else(|e| e.into_inner()) = passed.rdnss_expiry;
            self.health.planned(&passed.planned);
            self.reset_lost(&passed.lost, &passed.exempt);
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
        // Whatever the pass's outcome, and from whichever task it ran: the
        // loop's timers are set anew.
        *self.ask_again.lock().unwrap_or_else(|e| e.into_inner()) = asker.next_try();
        self.timers_changed.notify_one();
        for p in &problems {
            warn!("{p}");
        }
        debug!("reconciled ({why}) in {:?}", t.elapsed());
        problems
    }
}
