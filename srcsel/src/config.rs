//! `/etc/srcsel/srcsel.toml`: the uplinks srcsel manages and how.
//!
//! ```toml
//! [[uplink]]
//! name = "usb0"            # the interface
//! # table = 21249          # routing table (default 0x5300 + slot)
//! # mark = 0x02000000      # socket mark, one of 0x01000000..=0x3f000000 (default: a free slot)
//! # gateway = "192.0.2.1"  # for links whose DHCP client installs no default route
//! #                        # and runs no `srcsel lease` hook
//! ```
use std::{collections::HashMap, fs, io, net::Ipv4Addr, ops::Range, path::Path};

use serde::Deserialize;
use srcsel_common::{MAX_UPLINKS, UPLINK_MASK};
use toml::Spanned;

pub const DEFAULT_PATH: &str = "/etc/srcsel/srcsel.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, rename = "uplink")]
    pub uplinks: Vec<UplinkConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkConfig {
    pub name: Spanned<String>,
    pub table: Option<Spanned<u32>>,
    pub mark: Option<Spanned<u32>>,
    pub gateway: Option<Ipv4Addr>,
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
            Err(e) if e.kind() == io::ErrorKind::NotFound && !required => Ok(Self::default()),
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
        let config: Config =
            toml::from_str(text).map_err(|e| invalid(e.span(), e.message().to_owned()))?;
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
        assert!(Config::parse("", "x").unwrap().uplinks.is_empty());
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
