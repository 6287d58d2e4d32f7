//! Health verdicts per uplink and family, from probe rounds: pure, so the
//! thresholds are unit-tested without a network. A `down` family counts,
//! for steering, as one the uplink cannot carry (no address or gateway).
use std::{fmt, time::Duration};

use super::Family;
use crate::health::target::Target;

/// What `[uplink.health]` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthConfig {
    pub targets: Vec<Target>,
    /// Between rounds.
    pub interval: Duration,
    /// Per probe.
    pub timeout: Duration,
    /// Rounds in a row in which every target of the family failed.
    pub down_after: u32,
    /// Rounds in a row in which at least one target of the family answered.
    pub up_after: u32,
}

impl HealthConfig {
    pub const INTERVAL: Duration = Duration::from_secs(5);
    pub const TIMEOUT: Duration = Duration::from_secs(2);
    pub const DOWN_AFTER: u32 = 3;
    pub const UP_AFTER: u32 = 2;

    /// The targets that test `family`, in the order given.
    pub fn targets_of(&self, family: Family) -> impl Iterator<Item = &Target> {
        self.targets
            .iter()
            .filter(move |t| t.families().contains(&family))
    }
}

/// A family's health, as `srcsel status` shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Up,
    Down,
    /// Probing, no verdict yet: counts as up.
    Unknown,
    /// No target of this family: nothing is probed.
    #[default]
    Off,
}

impl Health {
    pub const fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
            Health::Unknown => "unknown",
            Health::Off => "off",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Families whose health is `down`: what steering reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Down {
    pub v4: bool,
    pub v6: bool,
}

impl Down {
    pub const fn of(self, family: Family) -> bool {
        match family {
            Family::V4 => self.v4,
            Family::V6 => self.v6,
        }
    }
}

/// One probe's result.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProbeResult {
    pub target: String,
    pub ok: bool,
    pub rtt_ms: Option<f64>,
    pub error: Option<String>,
    /// An HTTP target answered as a captive portal does.
    #[serde(skip)]
    pub captive: bool,
}

/// One family's verdict and the rounds that led to it.
#[derive(Clone, Debug, PartialEq)]
pub struct Tracker {
    pub health: Health,
    /// Unix seconds of the last change.
    pub since: u64,
    pub reason: String,
    failed_in_row: u32,
    answered_in_row: u32,
    /// The last round's probes.
    pub probes: Vec<ProbeResult>,
}

impl Tracker {
    /// A family with `targets` targets, from `now` on.
    pub fn new(targets: usize, now: u64) -> Self {
        let (health, reason) = if targets == 0 {
            (Health::Off, "no target of this family")
        } else {
            (Health::Unknown, "no verdict yet")
        };
        Self {
            health,
            since: now,
            reason: reason.into(),
            failed_in_row: 0,
            answered_in_row: 0,
            probes: Vec::new(),
        }
    }

    /// The same, for a family a daemon before this one found dead: it stays
    /// down until it answers `up_after` rounds (a restart must not send
    /// traffic back to a dead uplink).
    pub fn still_down(self) -> Self {
        if self.health == Health::Off {
            return self;
        }
        Self {
            health: Health::Down,
            reason: "found down before the daemon started; no answer since".into(),
            ..self
        }
    }

    /// Takes one round's probes (a round stops at the first answer); the
    /// new health if it changed.
    pub fn round(
        &mut self,
        probes: Vec<ProbeResult>,
        cfg: &HealthConfig,
        now: u64,
    ) -> Option<Health> {
        let answered = probes.iter().find(|p| p.ok).map(|p| p.target.clone());
        let captive = probes.iter().find(|p| p.captive).map(|p| p.target.clone());
        let tried = probes.len();
        self.probes = probes;
        let (health, reason, enough) = match answered {
            Some(target) => {
                self.answered_in_row += 1;
                self.failed_in_row = 0;
                let enough = self.answered_in_row >= cfg.up_after;
                (Health::Up, format!("answered by {target}"), enough)
            }
            None => {
                self.failed_in_row += 1;
                self.answered_in_row = 0;
                let reason = match captive {
                    Some(t) => format!("captive portal at {t}"),
                    None => format!(
                        "{} rounds without an answer from {tried} target{}",
                        self.failed_in_row,
                        if tried == 1 { "" } else { "s" }
                    ),
                };
                (Health::Down, reason, self.failed_in_row >= cfg.down_after)
            }
        };
        if !enough {
            return None;
        }
        if health == self.health {
            // The verdict stands; its reason follows the latest round.
            if health == Health::Down {
                self.reason = reason;
            }
            return None;
        }
        (self.health, self.since, self.reason) = (health, now, reason);
        Some(health)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> HealthConfig {
        HealthConfig {
            targets: vec!["icmp://198.51.100.10".parse().unwrap()],
            interval: HealthConfig::INTERVAL,
            timeout: HealthConfig::TIMEOUT,
            down_after: 3,
            up_after: 2,
        }
    }

    fn probe(ok: bool, captive: bool) -> Vec<ProbeResult> {
        vec![ProbeResult {
            target: "http://198.51.100.10/generate_204".into(),
            ok,
            rtt_ms: ok.then_some(1.0),
            error: (!ok).then(|| "no answer within 2s".into()),
            captive,
        }]
    }

    #[test]
    fn verdicts_need_rounds_in_a_row() {
        let (c, mut t) = (cfg(), Tracker::new(1, 100));
        assert_eq!(t.health, Health::Unknown);
        assert_eq!(t.round(probe(true, false), &c, 101), None);
        assert_eq!(t.round(probe(true, false), &c, 102), Some(Health::Up));
        assert_eq!(t.since, 102);
        // Two failures, an answer, three failures: down only then.
        for now in [103, 104] {
            assert_eq!(t.round(probe(false, false), &c, now), None);
        }
        assert_eq!(t.round(probe(true, false), &c, 105), None);
        for now in [106, 107] {
            assert_eq!(t.round(probe(false, false), &c, now), None);
        }
        assert_eq!(t.round(probe(false, false), &c, 108), Some(Health::Down));
        assert_eq!(t.reason, "3 rounds without an answer from 1 target");
        assert_eq!(t.round(probe(false, false), &c, 109), None);
        assert_eq!(t.reason, "4 rounds without an answer from 1 target");
        assert_eq!(t.since, 108);
        assert_eq!(t.round(probe(true, false), &c, 110), None);
        assert_eq!(t.round(probe(true, false), &c, 111), Some(Health::Up));
    }

    #[test]
    fn a_captive_portal_is_named_and_no_targets_is_off() {
        let (c, mut t) = (cfg(), Tracker::new(1, 0));
        for now in 1..3 {
            assert_eq!(t.round(probe(false, true), &c, now), None);
        }
        assert_eq!(t.round(probe(false, true), &c, 3), Some(Health::Down));
        assert_eq!(
            t.reason,
            "captive portal at http://198.51.100.10/generate_204"
        );
        assert_eq!(Tracker::new(0, 0).health, Health::Off);
    }

    #[test]
    fn a_recorded_down_stays_until_answered() {
        let (c, mut t) = (cfg(), Tracker::new(1, 0).still_down());
        assert_eq!(t.health, Health::Down);
        assert_eq!(t.round(probe(true, false), &c, 1), None);
        assert_eq!(t.round(probe(true, false), &c, 2), Some(Health::Up));
        assert_eq!(Tracker::new(0, 0).still_down().health, Health::Off);
    }
}
