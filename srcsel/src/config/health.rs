//! `[uplink.health]`: what to probe through an uplink, and how often.
use std::{ops::Range, time::Duration};

use serde::Deserialize;
use toml::Spanned;

use crate::{
    health::target::{Target, format_duration, parse_duration},
    policy::health::HealthConfig,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthToml {
    targets: Spanned<Vec<Spanned<String>>>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    down_after: Option<Spanned<u32>>,
    up_after: Option<Spanned<u32>>,
}

/// Where in the file a mistake is, and what it is.
type Bad = (Range<usize>, String);

/// The checked settings, or the first mistake.
pub fn check(h: &HealthToml) -> Result<HealthConfig, Bad> {
    if h.targets.get_ref().is_empty() {
        return Err((
            h.targets.span(),
            "`targets = []` probes nothing: name at least one target \
             (icmp://ADDRESS, tcp://ADDRESS:PORT, dns://RESOLVER/NAME, http://ADDRESS/PATH), \
             or remove [uplink.health]"
                .into(),
        ));
    }
    let mut targets = Vec::new();
    for t in h.targets.get_ref() {
        let target: Target = t
            .get_ref()
            .parse()
            .map_err(|e| (t.span(), format!("{e}")))?;
        targets.push(target);
    }
    let cfg = HealthConfig {
        targets,
        interval: duration(&h.interval, "interval", HealthConfig::INTERVAL)?,
        timeout: duration(&h.timeout, "timeout", HealthConfig::TIMEOUT)?,
        down_after: count(&h.down_after, "down_after", HealthConfig::DOWN_AFTER)?,
        up_after: count(&h.up_after, "up_after", HealthConfig::UP_AFTER)?,
    };
    if cfg.timeout > cfg.interval {
        let span = h.timeout.as_ref().map_or(h.targets.span(), Spanned::span);
        return Err((
            span,
            format!(
                "timeout ({}) is longer than interval ({}): a round would still wait \
                 for one probe when the next is due; make timeout shorter",
                format_duration(cfg.timeout),
                format_duration(cfg.interval)
            ),
        ));
    }
    Ok(cfg)
}

fn duration(v: &Option<Spanned<String>>, key: &str, default: Duration) -> Result<Duration, Bad> {
    let Some(v) = v else { return Ok(default) };
    match parse_duration(v.get_ref()) {
        Ok(d) if d.is_zero() => Err((v.span(), format!("{key} must be longer than 0"))),
        Ok(d) => Ok(d),
        Err(why) => Err((v.span(), format!("{key}: {why}"))),
    }
}

fn count(v: &Option<Spanned<u32>>, key: &str, default: u32) -> Result<u32, Bad> {
    match v {
        Some(n) if *n.get_ref() == 0 => Err((
            n.span(),
            format!("{key} = 0 would decide without a round: use 1 or more"),
        )),
        Some(n) => Ok(*n.get_ref()),
        None => Ok(default),
    }
}
