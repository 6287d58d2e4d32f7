//! `srcsel status [--json]`: the report ([`crate::status`]) from the
//! daemon or read here, as JSON or as text for a person.
use std::path::Path;

use crate::{
    api::{Reply, Request, client::Client},
    config::Config,
    kernel::{self, privileges},
    status::{Places, Report, UplinkReport, collect},
};

/// From the daemon when one runs (members of its group may ask), else
/// read here, which needs root.
pub fn status(json: bool, config: &Path) -> anyhow::Result<()> {
    let report = match Client::connect()? {
        Some(mut daemon) => match daemon.request(Request::Status)? {
            Reply::Status(report) => *report,
            other => {
                return Err(
                    crate::api::client::ClientError::Unexpected(format!("{other:?}")).into(),
                );
            }
        },
        None => {
            privileges::require().map_err(|e| {
                anyhow::anyhow!(
                    "{e}; or start the daemon (`sudo systemctl start srcsel`), which answers \
                     members of group srcsel"
                )
            })?;
            let config = Config::load(config, false)?;
            kernel::block_on(async {
                let handle = kernel::netlink::connect()?;
                collect(false, &config, &Places::here()?, &handle).await
            })?
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", human(&report));
    }
    Ok(())
}
/// `192.0.2.53 (dhcp), 2001:db8::53 (router advertisement)`, or why none.
fn dns_line(u: &UplinkReport) -> String {
    let family = |list: &[String], source: &Option<String>| match source.as_deref() {
        Some("system") => None,
        Some(src) => Some(format!("{} ({src})", list.join(" "))),
        None => None,
    };
    let parts: Vec<String> = [
        family(&u.dns, &u.dns_source),
        family(&u.dns6, &u.dns_source6),
    ]
    .into_iter()
    .flatten()
    .collect();
    if u.dns_source.as_deref() == Some("system") {
        "the system's resolvers (system_dns = true)".into()
    } else if parts.is_empty() {
        "none known: strict programs' name lookups are refused (`dns = [...]` in the config, \
         or the DHCP client's lease hook)"
            .into()
    } else {
        parts.join(", ")
    }
}

/// `IPv4 down since 12:00:03 UTC (3 rounds without an answer from 2
/// targets), IPv6 off; last: icmp://… 12.5 ms`, or None when nothing is probed.
fn health_line(u: &UplinkReport) -> Option<String> {
    use crate::policy::health::Health;
    if u.health == Health::Off && u.health6 == Health::Off {
        return None;
    }
    let family = |name: &str, h: Health, reason: &Option<String>| match (h, reason) {
        (Health::Off, _) | (_, None) => format!("{name} {h}"),
        (_, Some(why)) => format!("{name} {h} ({why})"),
    };
    let probes: Vec<String> = u
        .probes
        .iter()
        .map(|p| match (&p.rtt_ms, &p.error) {
            (Some(ms), _) => format!("{} {ms:.1} ms", p.target),
            (None, Some(e)) => format!("{} {e}", p.target),
            (None, None) => format!("{} failed", p.target),
        })
        .collect();
    let mut line = format!(
        "{}, {}",
        family("IPv4", u.health, &u.health_reason),
        family("IPv6", u.health6, &u.health_reason6)
    );
    if !probes.is_empty() {
        line += &format!("; last round: {}", probes.join(", "));
    }
    Some(line)
}

fn human(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let daemon = if r.daemon { "running" } else { "not running" };
    let _ = writeln!(out, "daemon: {daemon}");
    if let Some(m) = &r.reset {
        let _ = writeln!(
            out,
            "connections that cannot work any more are reset with: {m}"
        );
    }
    if r.uplinks.is_empty() {
        let _ = writeln!(
            out,
            "no uplinks set up in this network namespace (srcsel run --via IFACE, or the daemon's config)"
        );
    }
    for u in &r.uplinks {
        let addr = u.address.as_deref().unwrap_or("no address");
        let gw = u
            .gateway
            .as_deref()
            .map_or("no gateway".to_owned(), |g| format!("via {g}"));
        let _ = writeln!(
            out,
            "{}: {} {addr} {gw} (table {}, mark {})",
            u.name, u.state, u.table, u.mark
        );
        let addr6 = u.address6.as_deref().unwrap_or("no address");
        let gw6 = u
            .gateway6
            .as_deref()
            .map_or("no gateway".to_owned(), |g| format!("via {g}"));
        let _ = writeln!(out, "  IPv6: {} {addr6} {gw6}", u.state6);
        let _ = writeln!(out, "  DNS: {}", dns_line(u));
        if let Some(line) = health_line(u) {
            let _ = writeln!(out, "  health: {line}");
        }
        if !u.present {
            let _ = writeln!(
                out,
                "  no interface named {} here now (see `ip link`)",
                u.name
            );
        }
        for rule in &u.rules {
            let _ = writeln!(out, "  rule {rule}");
        }
        for a in &u.assignments {
            let _ = writeln!(out, "  {} {} pids {:?}", a.cgroup, a.mode, a.pids);
        }
        let _ = writeln!(out, "  {}", u.counters);
    }
    for k in &r.known {
        let gw = k.gateway.as_deref().unwrap_or("no lease");
        let _ = writeln!(
            out,
            "known, not managed: {} (gateway {gw}, DNS {:?}, reported {} s ago)",
            k.interface, k.dns, k.age
        );
    }
    for a in &r.assigned {
        let state = if a.live { "live" } else { "not attached" };
        let cg = a.cgroup.as_deref().unwrap_or("no cgroup yet");
        let _ = writeln!(
            out,
            "assigned {} {} → {} {} ({state}): {cg} pids {:?}",
            a.kind, a.name, a.via, a.mode, a.pids
        );
        if let Some(c) = &a.counters {
            let _ = writeln!(out, "  {c}");
        }
    }
    out
}
