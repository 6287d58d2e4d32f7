//! The daemon's health checks: one task per uplink with `[uplink.health]`
//! runs its rounds ([`rounds`]) and sends each to the loop, which keeps the
//! verdicts ([`Tracker`]) and runs a pass when one changes. No task runs
//! for an uplink without targets, so a daemon without health config has no
//! timer at all.
mod rounds;

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use srcsel_common::STRICT_BIT;
use tokio::{sync::mpsc, task::AbortHandle};
use tracing::info;

use crate::{
    config::Config,
    policy::{
        Family, UplinkPlan,
        health::{Down, Health, HealthConfig, ProbeResult, Tracker},
    },
    status::UplinkReport,
};

/// One round of one uplink: what each family's probes found. A family
/// the uplink has no address of is not probed (no verdict from it).
pub struct Round {
    pub uplink: String,
    /// The task's: a round a replaced task sent is not counted.
    generation: u64,
    pub results: Vec<(Family, Vec<ProbeResult>)>,
}

/// Where an uplink's probes leave from, as the last pass planned it.
#[derive(Clone, Debug, Default)]
struct Origin {
    ifname: String,
    mark: u32,
    addr4: Option<IpAddr>,
    addr6: Option<IpAddr>,
    dns4: Vec<IpAddr>,
    dns6: Vec<IpAddr>,
}

struct Checked {
    config: HealthConfig,
    generation: u64,
    v4: Tracker,
    v6: Tracker,
    task: AbortHandle,
}

/// Every uplink's health: its config, verdicts and probing task.
pub struct Checks {
    checked: Mutex<BTreeMap<String, Checked>>,
    /// Where each uplink's probes leave from; shared with the tasks.
    origins: Arc<Mutex<BTreeMap<String, Origin>>>,
    rounds: mpsc::UnboundedSender<Round>,
    generations: std::sync::atomic::AtomicU64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Checks {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Round>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let checks = Self {
            checked: Mutex::default(),
            origins: Arc::default(),
            rounds: tx,
            generations: Default::default(),
        };
        (checks, rx)
    }

    /// Starts (or keeps) a task per uplink with health checks in `config`
    /// and stops the others. An uplink whose checks did not change keeps
    /// its verdicts; one whose checks are new starts from `recorded` (the
    /// slot registry's verdicts, of a daemon before this one): a family
    /// found dead stays so until it answers `up_after` rounds.
    pub fn follow(&self, config: &Config, recorded: &BTreeMap<String, Down>) {
        let mut checked = lock(&self.checked);
        let wanted: BTreeMap<&str, &HealthConfig> = config
            .uplinks
            .iter()
            .filter_map(|u| Some((u.name(), u.health()?)))
            .collect();
        checked.retain(|name, c| {
            let keep = wanted.get(name.as_str()) == Some(&&c.config);
            if !keep {
                c.task.abort();
            }
            keep
        });
        for (name, cfg) in wanted {
            if checked.contains_key(name) {
                continue;
            }
            let (at, down) = (now(), recorded.get(name).copied().unwrap_or_default());
            let tracker = |f: Family| {
                let t = Tracker::new(cfg.targets_of(f).count(), at);
                if down.of(f) { t.still_down() } else { t }
            };
            let generation = 1 + self
                .generations
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let task = tokio::spawn(rounds::rounds(
                name.to_owned(),
                generation,
                cfg.clone(),
                self.origins.clone(),
                self.rounds.clone(),
            ));
            let c = Checked {
                config: cfg.clone(),
                generation,
                v4: tracker(Family::V4),
                v6: tracker(Family::V6),
                task: task.abort_handle(),
            };
            checked.insert(name.to_owned(), c);
        }
    }

    /// Where probes leave from, after a pass over every managed uplink.
    pub fn planned(&self, plans: &[UplinkPlan]) {
        let mut origins = lock(&self.origins);
        origins.clear();
        for p in plans.iter().filter(|p| p.active.is_none()) {
            let u = &p.uplink;
            let addr = |carries: bool, a: Option<IpAddr>| a.filter(|_| carries);
            let origin = Origin {
                ifname: u.name.clone(),
                mark: p.slot.mark() | STRICT_BIT,
                addr4: addr(u.carries4(), u.addr.map(|a| a.addr().into())),
                addr6: addr(u.carries6(), u.addr6.map(|a| a.addr().into())),
                dns4: p.dns.v4.iter().map(|a| (*a).into()).collect(),
                dns6: p.dns.v6.iter().map(|a| (*a).into()).collect(),
            };
            origins.insert(u.name.clone(), origin);
        }
    }

    /// Takes a round; whether a verdict changed (each change is logged).
    pub fn take(&self, round: Round) -> bool {
        let mut checked = lock(&self.checked);
        let Some(c) = checked.get_mut(&round.uplink) else {
            return false; // its checks were removed meanwhile
        };
        if c.generation != round.generation {
            return false; // sent by the task its checks replaced
        }
        let mut changed = false;
        for (family, probes) in round.results {
            let t = match family {
                Family::V4 => &mut c.v4,
                Family::V6 => &mut c.v6,
            };
            if let Some(h) = t.round(probes, &c.config, now()) {
                let fam = if family == Family::V4 { "IPv4" } else { "IPv6" };
                info!("{}: {fam} health {h}: {}", round.uplink, t.reason);
                changed = true;
            }
        }
        changed
    }

    /// The families found dead, by uplink: what the daemon's passes steer by.
    pub fn down(&self) -> BTreeMap<String, Down> {
        lock(&self.checked)
            .iter()
            .map(|(name, c)| {
                let down = Down {
                    v4: c.v4.health == Health::Down,
                    v6: c.v6.health == Health::Down,
                };
                (name.clone(), down)
            })
            .collect()
    }

    /// Adds the verdicts and last probes to a status report.
    pub fn report(&self, uplinks: &mut [UplinkReport]) {
        let checked = lock(&self.checked);
        for u in uplinks {
            let Some(c) = checked.get(&u.name) else {
                continue;
            };
            u.health = c.v4.health;
            u.health6 = c.v6.health;
            (u.health_since, u.health_reason) = (Some(c.v4.since), Some(c.v4.reason.clone()));
            (u.health_since6, u.health_reason6) = (Some(c.v6.since), Some(c.v6.reason.clone()));
            u.probes = c.v4.probes.iter().chain(&c.v6.probes).cloned().collect();
        }
    }
}
