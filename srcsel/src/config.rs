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
//!
//! [[allow]]                # who may `srcsel run` as themselves (and read status);
//! group = "srcsel"         # without any entry: group srcsel, every uplink, both modes
//! # user = "alice"         # a user instead of a group (names or numbers)
//! # via = ["usb0"]         # default: every uplink
//! # modes = ["strict"]     # default: strict and fallback
//! ```
use std::{
    collections::HashMap,
    fs, io,
    net::{Ipv4Addr, Ipv6Addr},
    ops::Range,
    path::Path,
};

use serde::Deserialize;

use crate::policy::{
    Mode,
    access::{Allow, Who},
};
use srcsel_common::{MAX_UPLINKS, UPLINK_MASK};
use toml::Spanned;

pub const DEFAULT_PATH: &str = "/etc/srcsel/srcsel.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, rename = "uplink")]
    pub uplinks: Vec<UplinkConfig>,
    #[serde(default, rename = "allow")]
    allow: Vec<AllowConfig>,
    /// Where it was read from, for messages.
    #[serde(skip)]
    pub path: String,
}

/// A user or group as the config names it: a name, or a number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum NameOrId {
    Id(u32),
    Name(String),
}

impl NameOrId {
    fn text(&self) -> String {
        match self {
            NameOrId::Id(n) => n.to_string(),
            NameOrId::Name(s) => s.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowConfig {
    user: Option<NameOrId>,
    group: Option<NameOrId>,
    via: Option<Vec<String>>,
    modes: Option<Vec<Mode>>,
    #[serde(skip)]
    line: usize,
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
}

impl UplinkConfig {
    /// The uplink slot its mark asks for.
    pub fn slot(&self) -> Option<u32> {
        self.mark.as_ref().map(|m| m.get_ref() >> 24)
    }
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
        check_allow(text, &mut config.allow).map_err(|(line, reason)| ConfigError::Invalid {
            path: path.to_owned(),
            line,
            reason,
        })?;
        let mut names = HashMap::new();
        let mut tables = HashMap::new();
        let mut marks = HashMap::new();
        for u in &config.uplinks {
            let name = u.name.get_ref();
            if let Err(why) = check_ifname(name) {
                return Err(invalid(Some(u.name.span()), why));
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

    /// Who may run commands as themselves, and where: the `[[allow]]`
    /// entries, or group `srcsel` on everything when there are none.
    pub fn allowed(&self) -> Vec<Allow> {
        if self.allow.is_empty() {
            return Allow::default_rules();
        }
        self.allow
            .iter()
            .map(|a| Allow {
                who: match (&a.user, &a.group) {
                    (Some(u), _) => Who::User(u.text()),
                    (None, g) => Who::Group(g.as_ref().map_or(String::new(), NameOrId::text)),
                },
                via: a.via.clone(),
                modes: a.modes.clone(),
            })
            .collect()
    }
}

/// Each `[[allow]]` names exactly one user or group, real interface names
/// and at least one mode. `toml` gives tables no spans: the line is that of
/// the n-th `[[allow]]` header.
fn check_allow(text: &str, allow: &mut [AllowConfig]) -> Result<(), (usize, String)> {
    let headers: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("[[allow]]"))
        .map(|(i, _)| i + 1)
        .collect();
    for (i, a) in allow.iter_mut().enumerate() {
        a.line = headers.get(i).copied().unwrap_or(1);
        let bad = |why: String| Err((a.line, why));
        if a.user.is_some() == a.group.is_some() {
            return bad("an [[allow]] entry names either a user or a group (one of them)".into());
        }
        for name in a.via.iter().flatten() {
            if let Err(why) = check_ifname(name) {
                return bad(format!("[[allow]] via: {why}"));
            }
        }
        if a.modes.as_ref().is_some_and(Vec::is_empty) || a.via.as_ref().is_some_and(Vec::is_empty)
        {
            return bad(
                "an empty via or modes list allows nothing: leave the key out for all".into(),
            );
        }
    }
    Ok(())
}

/// Whether `name` can name a Linux network interface (the kernel's
/// `dev_valid_name`): 1 to 15 bytes, not `.` or `..`, no `/`, `:` or white
/// space. The error says why not.
pub fn check_ifname(name: &str) -> Result<(), String> {
    let why = if name.is_empty() {
        "is empty"
    } else if name.len() > 15 {
        "is longer than 15 characters"
    } else if name == "." || name == ".." || name.contains(['/', ':']) {
        "contains `/` or `:` or is `.` or `..`"
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "contains white space"
    } else {
        return Ok(());
    };
    let shown: String = name.chars().take(40).collect();
    Err(format!(
        "{shown:?} is not an interface name: it {why} (see `ip link` for this host's interfaces)"
    ))
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse(text, "srcsel.toml").unwrap_err().to_string()
    }

    #[test]
    fn parses_uplinks_with_defaults() {
        let c = Config::parse(
            "[[uplink]]\nname = \"usb0\"\n\n[[uplink]]\nname = \"eth0v0\"\ntable = 300\nmark = 0x02000000\ngateway = \"192.0.2.1\"\n",
            "x",
        )
        .unwrap();
        assert_eq!(c.uplinks.len(), 2);
        assert!(c.uplink("usb0").unwrap().table.is_none());
        let m = c.uplink("eth0v0").unwrap();
        assert_eq!(m.slot(), Some(2));
        assert_eq!(*m.table.as_ref().unwrap().get_ref(), 300);
        assert_eq!(m.gateway, Some("192.0.2.1".parse().unwrap()));
        assert!(!m.isolate && m.gateway6.is_none());
        assert!(Config::parse("", "x").unwrap().uplinks.is_empty());
        let c = Config::parse(
            "[[uplink]]\nname = \"usb0\"\nisolate = true\ngateway6 = \"fe80::1\"\n",
            "x",
        )
        .unwrap();
        let u = c.uplink("usb0").unwrap();
        assert!(u.isolate);
        assert_eq!(u.gateway6, Some("fe80::1".parse().unwrap()));
        assert!(err("[[uplink]]\nname = \"a\"\nisolate = \"yes\"\n").starts_with("srcsel.toml:3:"));
    }

    #[test]
    fn allow_entries_default_to_group_srcsel_and_are_checked() {
        assert_eq!(
            Config::parse("", "x").unwrap().allowed(),
            Allow::default_rules()
        );
        let c = Config::parse(
            "[[uplink]]\nname = \"usb0\"\n[[allow]]\nuser = 4242\nvia = [\"usb0\"]\nmodes = [\"strict\"]\n[[allow]]\ngroup = \"ops\"\n",
            "x",
        )
        .unwrap();
        let a = c.allowed();
        assert_eq!(a[0].who, Who::User("4242".into()));
        assert_eq!(a[0].modes, Some(vec![Mode::Strict]));
        assert_eq!(a[1].who, Who::Group("ops".into()));
        assert_eq!(
            err("[[uplink]]\nname = \"usb0\"\n\n[[allow]]\nuser = \"a\"\ngroup = \"b\"\n"),
            "srcsel.toml:4: an [[allow]] entry names either a user or a group (one of them)"
        );
        assert!(err("[[allow]]\ngroup = \"g\"\nmodes = []\n").contains("allows nothing"));
        assert!(
            err("[[allow]]\ngroup = \"g\"\nmodes = [\"loose\"]\n").starts_with("srcsel.toml:3:")
        );
        assert!(
            err("[[allow]]\ngroup = \"g\"\nvia = [\"a/b\"]\n").contains("not an interface name")
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let e = err("[[uplink]]\nname = \"usb0\"\nmetric = 3000\n");
        assert!(e.starts_with("srcsel.toml:3:"), "{e}");
        assert!(e.contains("metric"), "{e}");
    }

    #[test]
    fn duplicates_are_refused_with_their_line() {
        let e = err("[[uplink]]\nname = \"usb0\"\n[[uplink]]\nname = \"usb0\"\n");
        assert_eq!(
            e,
            "srcsel.toml:4: uplink usb0 is already configured on line 2"
        );
        let e = err("[[uplink]]\nname = \"a\"\ntable = 7\n[[uplink]]\nname = \"b\"\ntable = 7\n");
        assert_eq!(e, "srcsel.toml:6: table 7 is already used by uplink a");
        let e = err(
            "[[uplink]]\nname = \"a\"\nmark = 0x1000000\n[[uplink]]\nname = \"b\"\nmark = 0x1000000\n",
        );
        assert!(
            e.starts_with("srcsel.toml:6: mark 0x1000000 is already used by uplink a"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(err("[[uplink]]\nname = \"a\"\ntable = 254\n").contains("reserved"));
        assert!(err("[[uplink]]\nname = \"a\"\nmark = 5\n").contains("not one of srcsel's marks"));
        assert!(
            err("[[uplink]]\nname = \"a\"\ngateway = \"nope\"\n").starts_with("srcsel.toml:3:")
        );
        assert!(
            err("[[uplink]]\nname = \"this-name-is-too-long\"\n").contains("not an interface name")
        );
    }

    #[test]
    fn interface_names_follow_the_kernels_rules() {
        for good in ["usb0", "eth0v0", "wwp0s20f0u6i12", "enx0a1b2c3d4e5f"] {
            assert_eq!(check_ifname(good), Ok(()));
        }
        for bad in [
            "",
            ".",
            "..",
            "../../etc",
            "a:b",
            "with space",
            "x".repeat(16).as_str(),
        ] {
            let e = check_ifname(bad).unwrap_err();
            assert!(e.contains("is not an interface name"), "{e}");
        }
        assert!(check_ifname(&"y".repeat(500)).unwrap_err().len() < 200);
    }

    #[test]
    fn the_shipped_example_parses() {
        let c = Config::parse(
            include_str!("../../contrib/srcsel.toml"),
            "contrib/srcsel.toml",
        )
        .unwrap();
        assert_eq!(c.uplinks.len(), 1);
    }
}
