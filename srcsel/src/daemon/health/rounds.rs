//! One uplink's probing task: rounds on a fixed schedule (a slow probe does
//! not delay the next round), both families at once, and within a family
//! its targets in order, up to the first answer (a metered hotspot pays for
//! no probe it does not need).
use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{StreamExt as _, stream::FuturesUnordered};
use tokio::{sync::mpsc, time::MissedTickBehavior};

use super::{Origin, Round, lock};
use crate::{
    health::{
        probe::{self, Source},
        target::Target,
    },
    policy::{
        Family,
        health::{HealthConfig, ProbeResult},
    },
};

/// An uplink's rounds, for as long as its checks stay the same: the first
/// soon after the start, then every interval (plus a jitter of up to a
/// tenth, fixed per task, which keeps several uplinks' rounds apart).
pub async fn rounds(
    name: String,
    generation: u64,
    cfg: HealthConfig,
    origins: Arc<Mutex<BTreeMap<String, Origin>>>,
    tx: mpsc::UnboundedSender<Round>,
) {
    let first = tokio::time::Instant::now() + jitter(Duration::from_millis(200));
    let mut ticks = tokio::time::interval_at(first, cfg.interval + jitter(cfg.interval / 10));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(o) = lock(&origins).get(&name).cloned() else {
            continue; // no pass planned it yet
        };
        let src = |addr| Source {
            ifname: Some(o.ifname.clone()),
            addr,
            mark: Some(o.mark),
        };
        let (s4, s6) = (src(o.addr4), src(o.addr6));
        let (v4, v6) = tokio::join!(
            family_round(&cfg, Family::V4, &s4, &o.dns4),
            family_round(&cfg, Family::V6, &s6, &o.dns6),
        );
        let results: Vec<_> = [(Family::V4, v4), (Family::V6, v6)]
            .into_iter()
            .filter_map(|(f, r)| Some((f, r?)))
            .collect();
        if results.is_empty() {
            continue;
        }
        let round = Round {
            uplink: name.clone(),
            generation,
            results,
        };
        if tx.send(round).is_err() {
            return; // the daemon is stopping
        }
    }
}

/// One family's round; None when nothing could be probed (no address of
/// the family, or only `dns:///` targets and no resolver of it). Targets go
/// in order: the next starts when one fails, or when a share of the
/// timeout has passed without an answer, so that a round of n targets
/// ends within about twice the timeout however many time out.
async fn family_round(
    cfg: &HealthConfig,
    family: Family,
    src: &Source,
    dns: &[IpAddr],
) -> Option<Vec<ProbeResult>> {
    src.addr?;
    let targets: Vec<&Target> = cfg
        .targets_of(family)
        .filter(|t| !matches!(t, Target::Dns { resolver: None, .. }) || !dns.is_empty())
        .collect();
    if targets.is_empty() {
        return None;
    }
    let share = cfg.timeout / u32::try_from(targets.len()).unwrap_or(u32::MAX);
    let mut running = FuturesUnordered::new();
    let mut results = Vec::new();
    let mut next = 0;
    loop {
        if running.is_empty() {
            let Some(t) = targets.get(next) else { break };
            running.push(result(t, family, src, dns, cfg.timeout));
            next += 1;
        }
        let more = next < targets.len();
        tokio::select! {
            Some(r) = running.next() => {
                let ok = r.ok;
                results.push(r);
                if ok {
                    break; // the others, if any, are dropped: cancelled
                }
            }
            () = tokio::time::sleep(share), if more => {
                running.push(result(targets[next], family, src, dns, cfg.timeout));
                next += 1;
            }
        }
    }
    Some(results)
}

async fn result(
    target: &Target,
    family: Family,
    src: &Source,
    dns: &[IpAddr],
    timeout: Duration,
) -> ProbeResult {
    let o = probe::probe(target, family, src, dns, timeout).await;
    ProbeResult {
        target: target.to_string(),
        ok: o.ok,
        rtt_ms: o.ok.then_some(o.rtt.as_secs_f64() * 1000.0),
        error: o.error,
        captive: o.captive,
    }
}

/// Up to `max`, at random.
fn jitter(max: Duration) -> Duration {
    max.mul_f64(fastrand::f64())
}
