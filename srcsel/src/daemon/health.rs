//! The daemon's health checks: one task per uplink with `[uplink.health]`
//! runs its rounds (probes through the uplink itself) and sends each round
//! to the loop, which keeps the verdicts ([`Tracker`]) and runs a pass when
//! one changes. No task runs for an uplink without targets, so a daemon
//! without health config has no timer at all.
use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use srcsel_common::STRICT_BIT;
use tokio::{sync::mpsc, task::AbortHandle};
use tracing::info;

use crate::{
    config::Config,
    health::probe::{self, Source},
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
    v4: Tracker,
    v6: Tracker,
    task: AbortHandle,
}

/// Every uplink's health: its config, verdicts and probing task.
pub struct Checks {
    checked: Mutex<BTreeMap<String, Checked>>,
    /// Where each uplink's probes leave from; shared with the tasks.
    from: std::sync::Arc<Mutex<BTreeMap<String, Origin>>>,
    rounds: mpsc::UnboundedSender<Round>,
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
            from: Default::default(),
            rounds: tx,
        };
        (checks, rx)
    }

    /// Starts (or keeps) a task per uplink with health checks in `config`
    /// and stops the others. An uplink whose checks did not change keeps
    /// its verdicts.
    pub fn follow(&self, config: &Config) {
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
            let at = now();
            let count = |f| cfg.targets_of(f).count();
            let task = tokio::spawn(rounds(
                name.to_owned(),
                cfg.clone(),
                self.from.clone(),
                self.rounds.clone(),
            ));
            checked.insert(
                name.to_owned(),
                Checked {
                    config: cfg.clone(),
                    v4: Tracker::new(count(Family::V4), at),
                    v6: Tracker::new(count(Family::V6), at),
                    task: task.abort_handle(),
                },
            );
        }
    }

    /// Where probes leave from, after a pass.
    pub fn planned(&self, plans: &[UplinkPlan]) {
        let mut from = lock(&self.from);
        for p in plans {
            let u = &p.uplink;
            from.insert(
                u.name.clone(),
                Origin {
                    ifname: u.name.clone(),
                    mark: p.slot.mark() | STRICT_BIT,
                    addr4: u
                        .carries4()
                        .then(|| u.addr.map(|a| a.addr().into()))
                        .flatten(),
                    addr6: u
                        .carries6()
                        .then(|| u.addr6.map(|a| a.addr().into()))
                        .flatten(),
                    dns4: p.dns.v4.iter().map(|a| (*a).into()).collect(),
                    dns6: p.dns.v6.iter().map(|a| (*a).into()).collect(),
                },
            );
        }
    }

    /// Takes a round; whether a verdict changed (each change is logged).
    pub fn take(&self, round: Round) -> bool {
        let mut checked = lock(&self.checked);
        let Some(c) = checked.get_mut(&round.uplink) else {
            return false; // its checks were removed meanwhile
        };
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

/// An uplink's rounds, for as long as its checks stay the same: the first
/// soon after the start, then every interval, give or take a tenth.
async fn rounds(
    name: String,
    cfg: HealthConfig,
    from: std::sync::Arc<Mutex<BTreeMap<String, Origin>>>,
    tx: mpsc::UnboundedSender<Round>,
) {
    let mut wait = jitter(Duration::from_millis(200));
    loop {
        tokio::time::sleep(wait).await;
        wait = cfg.interval + jitter(cfg.interval / 10);
        let Some(f) = lock(&from).get(&name).cloned() else {
            continue; // no pass planned it yet
        };
        let mut results = Vec::new();
        for (family, addr, dns) in [
            (Family::V4, f.addr4, &f.dns4),
            (Family::V6, f.addr6, &f.dns6),
        ] {
            let Some(addr) = addr else { continue };
            if cfg.targets_of(family).next().is_none() {
                continue;
            }
            let src = Source {
                ifname: Some(f.ifname.clone()),
                addr: Some(addr),
                mark: Some(f.mark),
            };
            results.push((family, round(&cfg, family, &src, dns).await));
        }
        if !results.is_empty()
            && tx
                .send(Round {
                    uplink: name.clone(),
                    results,
                })
                .is_err()
        {
            return; // the daemon is stopping
        }
    }
}

/// One family's round: its targets in order, up to the first answer (a
/// metered hotspot pays for no probe it does not need).
async fn round(
    cfg: &HealthConfig,
    family: Family,
    src: &Source,
    dns: &[IpAddr],
) -> Vec<ProbeResult> {
    let mut results = Vec::new();
    for target in cfg.targets_of(family) {
        let o = probe::probe(target, family, src, dns, cfg.timeout).await;
        let ok = o.ok;
        results.push(ProbeResult {
            target: target.to_string(),
            ok,
            rtt_ms: ok.then_some(o.rtt.as_secs_f64() * 1000.0),
            error: o.error,
            captive: o.captive,
        });
        if ok {
            break;
        }
    }
    results
}

/// Up to `max`, at random: rounds of several uplinks drift apart.
fn jitter(max: Duration) -> Duration {
    max.mul_f64(fastrand::f64())
}
