//! What srcsel has in force in this network namespace, per uplink, as
//! `srcsel status` shows it and the daemon answers it over its socket. The
//! JSON layout is documented in README.md and only grows (new fields)
//! within a `version`.
mod assigned;

use std::{net::Ipv6Addr, path::PathBuf};

use serde::{Deserialize, Serialize};
use srcsel_common::{Counters, UplinkRecord, UplinkState, flags, health_flags};

use crate::{
    config::Config,
    kernel::{
        bpf::{Namespace, namespace::name_of, pins},
        cgroup, mounts,
        netlink::{self, dump},
    },
    policy::{
        self, Rule, dns,
        health::{Health, ProbeResult},
        routing::{from_raw4, from_raw6},
        slot::in_range,
    },
};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Report {
    pub version: u32,
    pub netns_cookie: u64,
    /// Whether a `srcsel daemon` is listening in this namespace.
    pub daemon: bool,
    pub uplinks: Vec<UplinkReport>,
    /// The config's `[[assign]]` entries and what is in force for each
    /// (added within version 1).
    #[serde(default)]
    pub assigned: Vec<AssignedReport>,
    /// Interfaces whose leases the DHCP hooks reported but that nothing
    /// named: known, not managed (added within version 1).
    #[serde(default)]
    pub known: Vec<KnownReport>,
    /// How the daemon resets connections that cannot work any more:
    /// "SOCK_DESTROY", "pidfd_getfd" or "none"; null without a daemon
    /// (added within version 1).
    #[serde(default)]
    pub reset: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct KnownReport {
    pub interface: String,
    /// The last report's gateway (null: the lease ended) and DNS servers.
    pub gateway: Option<String>,
    pub dns: Vec<String>,
    /// How long ago it was reported, in seconds.
    pub age: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AssignedReport {
    /// "slice", "unit" or "cgroup", and its name as configured.
    pub kind: String,
    pub name: String,
    pub via: String,
    pub mode: String,
    /// Its cgroup's folder, once known (a unit's comes from systemd).
    pub cgroup: Option<String>,
    /// Whether the assignment's programs are attached to that cgroup now
    /// (by srcsel, or by systemd through the slice's drop-in).
    pub live: bool,
    /// The uplink its new connections of each family take now (for a
    /// list `via = ["usb0", "eth0"]`, the active one), or null (fields
    /// added within version 1).
    #[serde(default)]
    pub active: Option<String>,
    #[serde(default)]
    pub active6: Option<String>,
    /// The processes in it and in its descendants.
    pub pids: Vec<u32>,
    /// What the assignment's programs counted in this cgroup and below
    /// (added within version 1); null until they are first attached to it.
    #[serde(default)]
    pub counters: Option<CountersReport>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct UplinkReport {
    pub name: String,
    pub slot: u32,
    pub ifindex: u32,
    /// Whether an interface of that name exists now (a typo in the config,
    /// or a USB device unplugged, shows as false).
    pub present: bool,
    /// "up" (usable for IPv4: link up, address, gateway) or "down".
    pub state: String,
    pub address: Option<String>,
    pub gateway: Option<String>,
    /// The same for IPv6 (fields added within version 1).
    #[serde(default)]
    pub state6: String,
    #[serde(default)]
    pub address6: Option<String>,
    #[serde(default)]
    pub gateway6: Option<String>,
    /// The gateway last reported by a DHCP client hook (`srcsel lease`).
    pub hook_gateway: Option<String>,
    /// The resolvers its assigned programs' DNS goes to, per family, and
    /// where they come from: "config", "system" (the system's own, not
    /// redirected), "dhcp", "router advertisement"; null for none
    /// (fields added within version 1).
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub dns_source: Option<String>,
    #[serde(default)]
    pub dns6: Vec<String>,
    #[serde(default)]
    pub dns_source6: Option<String>,
    /// The DNS servers a DHCP client hook last reported.
    #[serde(default)]
    pub hook_dns: Vec<String>,
    pub table: u32,
    pub mark: String,
    /// The uplink new connections of each family take now: itself while
    /// usable, for a list its active member; null for none (fields added
    /// within version 1).
    #[serde(default)]
    pub active: Option<String>,
    #[serde(default)]
    pub active6: Option<String>,
    /// What its health checks found, per family (fields added within
    /// version 1): "up", "down", "unknown" (no verdict yet: used) or "off"
    /// (no target of the family, or no daemon); when it last changed
    /// (unix seconds) and why; and the last round's probes.
    #[serde(default)]
    pub health: Health,
    #[serde(default)]
    pub health6: Health,
    #[serde(default)]
    pub health_since: Option<u64>,
    #[serde(default)]
    pub health_reason: Option<String>,
    #[serde(default)]
    pub health_since6: Option<u64>,
    #[serde(default)]
    pub health_reason6: Option<String>,
    #[serde(default)]
    pub probes: Vec<ProbeResult>,
    /// The rules in force, as `ip rule` would list them (srcsel's own only).
    pub rules: Vec<String>,
    pub assignments: Vec<Assignment>,
    pub counters: CountersReport,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Assignment {
    pub cgroup: String,
    /// "strict" or "fallback".
    pub mode: String,
    pub pids: Vec<u32>,
    /// The uplink its new connections of each family take now (a list's
    /// active member), or null (fields added within version 1).
    #[serde(default)]
    pub active: Option<String>,
    #[serde(default)]
    pub active6: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CountersReport {
    pub connections: u64,
    pub datagrams: u64,
    pub refused: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
}

impl From<Counters> for CountersReport {
    fn from(c: Counters) -> Self {
        Self {
            connections: c.connections,
            datagrams: c.datagrams,
            refused: c.refused,
            bytes_out: c.bytes_out,
            bytes_in: c.bytes_in,
        }
    }
}

impl std::fmt::Display for CountersReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} connections, {} datagrams, {} refused, {} bytes out, {} bytes in",
            self.connections, self.datagrams, self.refused, self.bytes_out, self.bytes_in
        )
    }
}

/// Where a namespace's state is: the daemon keeps it; the CLI finds it.
pub struct Places {
    pub cookie: u64,
    pub bpffs: Option<PathBuf>,
    pub cg_root: Option<PathBuf>,
}

impl Places {
    /// This process's namespace, its bpffs and cgroup2 as mountinfo says.
    pub fn here() -> anyhow::Result<Self> {
        Ok(Self {
            cookie: pins::netns_cookie()?,
            bpffs: pins::find_bpffs()?,
            cg_root: mounts::find("cgroup2")?,
        })
    }
}

/// Reads what is in force; `daemon`: whether the daemon is the one asking
/// (on its own netlink connection).
pub async fn collect(
    daemon: bool,
    config: &Config,
    at: &Places,
    handle: &rtnetlink::Handle,
) -> anyhow::Result<Report> {
    let cookie = at.cookie;
    let mut report = Report {
        version: 1,
        netns_cookie: cookie,
        daemon,
        uplinks: Vec::new(),
        assigned: Vec::new(),
        known: Vec::new(),
        reset: None,
    };
    if let Some(root) = &at.cg_root {
        let ns_dir = at.bpffs.as_ref().map(|b| pins::ns_dir(b, cookie));
        report.assigned = assigned::assigned(config, root, ns_dir.as_deref());
    }
    let Some(bpffs) = &at.bpffs else {
        return Ok(report);
    };
    // Of the kernel's routing, srcsel's rules alone, before the namespace's
    // lock (never held across an await); a link's presence is one ioctl.
    // Status is asked by scripts, often: no dump of every table's routes.
    let rules = dump::our_rules(handle).await?;
    let now = dump::boottime_secs();
    let Some(ns) = Namespace::open_existing(bpffs, cookie)? else {
        return Ok(report);
    };
    let runs = at
        .cg_root
        .as_ref()
        .map(|root| {
            let dirs = cgroup::all_runs_dirs(root, cookie);
            dirs.iter()
                .flat_map(|d| cgroup::runs(d))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let records = ns.records()?;
    let managed: Vec<String> = records.iter().map(|(_, r)| name_of(r)).collect();
    for (interface, rep) in ns.reported()? {
        if !managed.contains(&interface) {
            report.known.push(KnownReport {
                interface,
                gateway: rep.gateway.map(|g| g.to_string()),
                dns: rep.dns.iter().map(ToString::to_string).collect(),
                age: now.saturating_sub(rep.at),
            });
        }
    }
    let counters = ns.counters()?;
    for (id, r) in records {
        let u = uplink(&ns, id, &r, &rules, &runs, counters.of(id)?)?;
        report.uplinks.push(u);
    }
    for a in &mut report.assigned {
        if let Some(u) = report.uplinks.iter().find(|u| u.name == a.via) {
            (a.active, a.active6) = (u.active.clone(), u.active6.clone());
        }
    }
    Ok(report)
}

const RECORDED: &str = "the daemon's last verdict (no daemon probes it now)";

/// A family's verdict as the slot registry keeps it: down, or not probed.
fn recorded(r: &UplinkRecord, bit: u32) -> Health {
    if r.health & bit != 0 {
        Health::Down
    } else {
        Health::Off
    }
}

/// The uplink a slot's new connections of each family take now.
fn active(
    ns: &Namespace,
    name: &str,
    r: &UplinkRecord,
    s: &UplinkState,
) -> anyhow::Result<(Option<String>, Option<String>)> {
    use srcsel_common::health_flags::{ACTIVE_MASK, ACTIVE4_SHIFT, ACTIVE6_SHIFT};
    let member = |usable: bool, shift: u32| -> anyhow::Result<Option<String>> {
        if !usable {
            return Ok(None);
        }
        if !policy::failover::is_list(name) {
            return Ok(Some(name.to_owned()));
        }
        Ok(match (r.health >> shift) & ACTIVE_MASK {
            0 => None,
            id => Some(name_of(&ns.record(id)?)),
        })
    };
    Ok((
        member(s.usable4(), ACTIVE4_SHIFT)?,
        member(s.usable6(), ACTIVE6_SHIFT)?,
    ))
}

/// One uplink of the registry: its live state, what the maps say of it,
/// its rules as the dump shows them, the runs of it.
fn uplink(
    ns: &Namespace,
    id: u32,
    r: &UplinkRecord,
    rules: &[Rule],
    runs: &[cgroup::Run],
    counters: Counters,
) -> anyhow::Result<UplinkReport> {
    let name = name_of(r);
    let s = ns.state(id)?;
    let d = dns::in_use(&ns.dns(id)?);
    let (active, active6) = active(ns, &name, r, &s)?;
    let assignments = runs
        .iter()
        .filter_map(|run| {
            let a = run.assignment.as_ref()?;
            (a.via == name).then(|| Assignment {
                cgroup: run.path.display().to_string(),
                mode: a.mode.to_string(),
                pids: run.pids.clone(),
                active: active.clone(),
                active6: active6.clone(),
            })
        })
        .collect();
    Ok(UplinkReport {
        slot: id,
        ifindex: s.ifindex,
        present: netlink::link_exists(&name),
        state: up_or_down(s.usable4()),
        address: from_raw4(s.addr4)
            .filter(|_| s.is(flags::HAS_ADDR4))
            .map(|a| a.to_string()),
        gateway: from_raw4(r.gateway4).map(|a| a.to_string()),
        state6: up_or_down(s.usable6()),
        address6: from_raw6(s.addr6)
            .filter(|_| s.is(flags::HAS_ADDR6))
            .map(|a| a.to_string()),
        gateway6: Some(Ipv6Addr::from(r.gateway6))
            .filter(|a| !a.is_unspecified())
            .map(|a| a.to_string()),
        hook_gateway: from_raw4(r.hook_gateway4).map(|a| a.to_string()),
        dns: d.v4.iter().map(ToString::to_string).collect(),
        dns_source: d.source4.map(|s| s.as_str().to_owned()),
        dns6: d.v6.iter().map(ToString::to_string).collect(),
        dns_source6: d.source6.map(|s| s.as_str().to_owned()),
        hook_dns: d.hook4.iter().map(ToString::to_string).collect(),
        table: r.table,
        mark: format!("{:#x}", srcsel_common::mark_for(id)),
        active,
        active6,
        // The daemon puts its own in; without one, what it last found
        // (which steering still follows).
        health: recorded(r, health_flags::DOWN4),
        health6: recorded(r, health_flags::DOWN6),
        health_since: None,
        health_reason: (recorded(r, health_flags::DOWN4) == Health::Down).then(|| RECORDED.into()),
        health_since6: None,
        health_reason6: (recorded(r, health_flags::DOWN6) == Health::Down).then(|| RECORDED.into()),
        probes: Vec::new(),
        rules: rules
            .iter()
            .filter(|r| in_range(id, r.priority))
            .map(ToString::to_string)
            .collect(),
        assignments,
        counters: counters.into(),
        name,
    })
}

fn up_or_down(up: bool) -> String {
    if up { "up" } else { "down" }.into()
}
