//! `/etc/srcsel/srcsel.toml`: the uplinks srcsel manages and how.
//!
//! ```toml
//! [[uplink]]
//! name = "usb0"            # the interface
//! # table = 21249          # routing table (default 0x5300 + slot)
//! # mark = 0x02000000      # socket mark, one of 0x01000000..=0x3f000000 (default: a free slot)
//! # gateway = "192.0.2.1"  # for links whose DHCP client installs no default route
//! #                        # and runs no `srcsel lease` hook
//! # gateway6 = "fe80::1"   # the same for IPv6, when no router advertisement installs one
//! # isolate = true         # keep it for assigned programs: unassigned traffic never
//! #                        # takes its default routes, IPv4 or IPv6
//! # dns = ["192.0.2.53"]   # its resolvers, instead of those its leases and RAs give
//! # system_dns = true      # or: keep the system's resolvers for its programs
//! # [uplink.health]        # probe it; a family found dead is not used
//! # targets = ["icmp://198.51.100.10", "http://198.51.100.10/generate_204"]
//! # interval = "5s"        # between rounds; timeout = "2s" per probe
//! # down_after = 3         # failed rounds in a row; up_after = 2: answered ones
//!
//! [[allow]]                # who may `srcsel run` as themselves (and read status);
//! group = "srcsel"         # without any entry: group srcsel, every uplink, both modes
//! # user = "alice"         # a user instead of a group (names or numbers)
//! # via = ["usb0"]         # default: every uplink
//! # modes = ["strict"]     # default: strict and fallback
//!
//! [[assign]]               # `srcsel assign` writes these; the daemon applies them
//! slice = "hotspot.slice"  # or unit = "backup.service", or cgroup = "lab/app"
//! via = "usb0"
//! mode = "strict"          # default strict
//! ```
mod allow;
mod assign;
pub mod edit;
pub mod health;

use std::{
    collections::HashMap,
    fs, io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    ops::Range,
    path::Path,
};

use serde::Deserialize;

use crate::policy::{access::Allow, dns::DnsConfig, health::HealthConfig, target::Assigned};
use srcsel_common::{MAX_RESOLVERS, MAX_UPLINKS, UPLINK_MASK};
use toml::Spanned;

pub const DEFAULT_PATH: &str = "/etc/srcsel/srcsel.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, rename = "uplink")]
    pub uplinks: Vec<UplinkConfig>,
    #[serde(default, rename = "allow")]
    allow: Vec<allow::AllowConfig>,
    #[serde(default, rename = "assign")]
    assign: Vec<assign::AssignConfig>,
    /// The `[[assign]]` entries, checked.
    #[serde(skip)]
    pub assigned: Vec<Assigned>,
    /// Where it was read from, for messages.
    #[serde(skip)]
    pub path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkConfig {
    pub name: Spanned<String>,
    pub table: Option<Spanned<u32>>,
    pub mark: Option<Spanned<u32>>,
    pub gateway: Option<Ipv4Addr>,
    pub gateway6: Option<Ipv6Addr>,
    #[serde(default)]
    pub isolate: bool,
    /// Its resolvers, in place of those its leases and RAs give.
    pub dns: Option<Spanned<Vec<IpAddr>>>,
    /// Keep the system's resolvers for programs assigned to it.
    #[serde(default)]
    pub system_dns: bool,
    /// `[uplink.health]` as written; [`UplinkConfig::health`] is it checked.
    health: Option<health::HealthToml>,
    #[serde(skip)]
    checked_health: Option<HealthConfig>,
    /// The line of its `name`, for messages.
    #[serde(skip)]
    pub line: usize,
}

impl UplinkConfig {
    /// Its interface's name.
    pub fn name(&self) -> &str {
        self.name.get_ref()
    }

    /// The routing table it asks for.
    pub fn table(&self) -> Option<u32> {
        self.table.as_ref().map(|t| *t.get_ref())
    }

    /// The uplink slot its mark asks for.
    pub fn slot(&self) -> Option<u32> {
        self.mark.as_ref().map(|m| m.get_ref() >> 24)
    }

    /// Its health checks, if it has any.
    pub fn health(&self) -> Option<&HealthConfig> {
        self.checked_health.as_ref()
    }

    pub fn dns(&self) -> DnsConfig {
        match (&self.dns, self.system_dns) {
            (_, true) => DnsConfig::System,
            (Some(list), false) => DnsConfig::Servers(list.get_ref().clone()),
            (None, false) => DnsConfig::Learned,
        }
    }
}

/// Why `dns = [...]` cannot be used (`system_dns` decided by the caller).
fn check_dns(list: &[IpAddr], system_dns: bool) -> Result<(), String> {
    if system_dns {
        return Err("`dns` and `system_dns = true` contradict each other: keep one".into());
    }
    if list.is_empty() {
        return Err(
            "`dns = []` names no resolver: remove the line to use the ones the \
             uplink's DHCP and router advertisements give, or set `system_dns = true`"
                .into(),
        );
    }
    for a in list {
        if !crate::policy::dns::can_resolve(*a) {
            return Err(format!(
                "{a} is not a resolver the uplink can reach: name one on its network or beyond"
            ));
        }
    }
    let v4 = list.iter().filter(|a| a.is_ipv4()).count();
    if v4 > MAX_RESOLVERS || list.len() - v4 > MAX_RESOLVERS {
        return Err(format!(
            "at most {MAX_RESOLVERS} resolvers per family (as resolv.conf)"
        ));
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Invalid {
        path: String,
        line: usize,
        reason: String,
    },
}

impl Config {
    /// Reads `path`; a missing file is an empty config unless `required`.
    pub fn load(path: &Path, required: bool) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        match fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &shown),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !required => Ok(Self {
                path: shown,
                ..Self::default()
            }),
            Err(source) => Err(ConfigError::Read {
                path: shown,
                source,
            }),
        }
    }

    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let invalid = |span: Option<Range<usize>>, reason: String| ConfigError::Invalid {
            path: path.to_owned(),
            line: span.map_or(1, |s| line_of(text, s.start)),
            reason,
        };
        let mut config: Config =
            toml::from_str(text).map_err(|e| invalid(e.span(), e.message().to_owned()))?;
        config.path = path.to_owned();
        let entry = |header: &str, (i, reason): (usize, String)| ConfigError::Invalid {
            path: path.to_owned(),
            line: header_line(text, header, i),
            reason,
        };
        allow::check(&config.allow).map_err(|e| entry("[[allow]]", e))?;
        config.assigned = assign::check(&config.assign).map_err(|e| entry("[[assign]]", e))?;
        let mut names = HashMap::new();
        let mut tables = HashMap::new();
        let mut marks = HashMap::new();
        for u in &mut config.uplinks {
            u.line = line_of(text, u.name.span().start);
            if let Some(h) = &u.health {
                let checked = health::check(h).map_err(|(span, why)| invalid(Some(span), why))?;
                u.checked_health = Some(checked);
            }
        }
        for u in &config.uplinks {
            let name = u.name.get_ref();
            if let Err(why) = check_ifname(name) {
                return Err(invalid(Some(u.name.span()), why));
            }
            if name.contains(',') {
                return Err(invalid(
                    Some(u.name.span()),
                    format!(
                        "{name:?}: an [[uplink]] is one interface; an ordered list \
                         belongs in [[assign]] (via = [\"usb0\", \"eth0\"]) or `--via usb0,eth0`"
                    ),
                ));
            }
            if let Some(first) = names.insert(name.clone(), line_of(text, u.name.span().start)) {
                return Err(invalid(
                    Some(u.name.span()),
                    format!("uplink {name} is already configured on line {first}"),
                ));
            }
            if let Some(t) = &u.table {
                let table = *t.get_ref();
                if table == 0 || (253..=255).contains(&table) {
                    return Err(invalid(
                        Some(t.span()),
                        format!("table {table} is reserved (unspec, default, main, local)"),
                    ));
                }
                if let Some(other) = tables.insert(table, name.clone()) {
                    return Err(invalid(
                        Some(t.span()),
                        format!("table {table} is already used by uplink {other}"),
                    ));
                }
            }
            if let Some(d) = &u.dns {
                check_dns(d.get_ref(), u.system_dns).map_err(|why| invalid(Some(d.span()), why))?;
            }
            if let Some(m) = &u.mark {
                let mark = *m.get_ref();
                let slot = mark >> 24;
                if mark & !UPLINK_MASK != 0 || slot == 0 || slot >= MAX_UPLINKS {
                    return Err(invalid(
                        Some(m.span()),
                        format!(
                            "mark {mark:#x} is not one of srcsel's marks (0x01000000, 0x02000000, … 0x3f000000)"
                        ),
                    ));
                }
                if let Some(other) = marks.insert(mark, name.clone()) {
                    return Err(invalid(
                        Some(m.span()),
                        format!("mark {mark:#x} is already used by uplink {other}"),
                    ));
                }
            }
        }
        Ok(config)
    }

    pub fn uplink(&self, name: &str) -> Option<&UplinkConfig> {
        self.uplinks.iter().find(|u| u.name.get_ref() == name)
    }

    /// `file:line: uplink NAME` for a configured uplink's messages, else
    /// `NAME`: an error that comes from the config says where.
    pub fn locate(&self, name: &str) -> String {
        match self.uplink(name) {
            Some(u) => format!("{}:{}: uplink {name}", self.path, u.line),
            None => name.to_owned(),
        }
    }

    /// Who may run commands as themselves, and where: the `[[allow]]`
    /// entries, or group `srcsel` on everything when there are none.
    pub fn allowed(&self) -> Vec<Allow> {
        allow::rules(&self.allow)
    }

    /// The uplinks the daemon keeps: those configured and those assigned to.
    pub fn managed(&self) -> impl Iterator<Item = &str> {
        let assigned = self.assigned.iter().map(|a| a.assignment.via.as_str());
        self.uplinks
            .iter()
            .map(|u| u.name.get_ref().as_str())
            .chain(assigned)
    }
}

/// Whether `via` names an uplink, or an ordered list of them
/// (`usb0,eth0`); the error says why not.
pub fn check_via(via: &str) -> Result<(), String> {
    crate::policy::failover::check(via)
}

pub use crate::policy::uplink::check_ifname;

/// The line of the `i`-th `header` (`toml` gives tables no spans).
fn header_line(text: &str, header: &str, i: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with(header))
        .nth(i)
        .map_or(1, |(n, _)| n + 1)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests;
