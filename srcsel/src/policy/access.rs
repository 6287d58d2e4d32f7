//! Who may ask the daemon for what. Root (and the daemon's own user) may do
//! everything; `srcsel run` as oneself and `srcsel status` are for the users
//! and groups the config's `[[allow]]` entries name, by default the members
//! of group `srcsel`, on every uplink in both modes.
use std::fmt::Write as _;

use super::Mode;

pub const DEFAULT_GROUP: &str = "srcsel";

/// A user or group, by name or number, as the config names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Who {
    User(String),
    Group(String),
}

/// One `[[allow]]` entry: `who` may run commands via `via` (every uplink
/// when `None`) in `modes` (both when `None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allow {
    pub who: Who,
    pub via: Option<Vec<String>>,
    pub modes: Option<Vec<Mode>>,
}

impl Allow {
    pub fn default_rules() -> Vec<Allow> {
        vec![Allow {
            who: Who::Group(DEFAULT_GROUP.into()),
            via: None,
            modes: None,
        }]
    }

    /// Whether it allows `via` (every uplink of a list) in `mode`.
    fn allows(&self, via: &str, mode: Mode) -> bool {
        self.via
            .as_ref()
            .is_none_or(|v| super::failover::members(via).all(|m| v.iter().any(|x| x == m)))
            && self.modes.as_ref().is_none_or(|m| m.contains(&mode))
    }
}

/// The asking process, from its socket's credentials.
#[derive(Clone, Debug)]
pub struct Caller {
    pub uid: u32,
    /// Primary and supplementary groups.
    pub gids: Vec<u32>,
    pub name: String,
}

/// An entry with its user or group looked up (`None`: no such name here).
pub struct Resolved<'a> {
    pub allow: &'a Allow,
    pub id: Option<u32>,
}

impl Resolved<'_> {
    fn names(&self, c: &Caller) -> bool {
        match (&self.allow.who, self.id) {
            (Who::User(_), Some(uid)) => c.uid == uid,
            (Who::Group(_), Some(gid)) => c.gids.contains(&gid),
            (_, None) => false,
        }
    }
}

/// Root and the daemon's own user.
pub fn privileged(uid: u32, daemon_uid: u32) -> bool {
    uid == 0 || uid == daemon_uid
}

pub fn may_read_status(rules: &[Resolved], c: &Caller) -> bool {
    rules.iter().any(|r| r.names(c))
}

/// Whether `c` may run a command via `via` in `mode`; the refusal names the
/// group or entry that would allow it, and how to get there.
pub fn check_run(
    rules: &[Resolved],
    c: &Caller,
    via: &str,
    mode: Mode,
    config: &str,
) -> Result<(), String> {
    let mine: Vec<&Resolved> = rules.iter().filter(|r| r.names(c)).collect();
    if mine.iter().any(|r| r.allow.allows(via, mode)) {
        return Ok(());
    }
    if !mine.is_empty() {
        let what: Vec<String> = mine.iter().map(|r| scope(r.allow)).collect();
        return Err(format!(
            "{} may not use {via} in {mode} mode: the [[allow]] entries of {config} that \
             name them allow {}",
            c.name,
            what.join("; ")
        ));
    }
    Err(refusal(rules, c, "srcsel run", config))
}

/// Why `c`, whom no entry names, may not use `what`, and how they could.
pub fn refusal(rules: &[Resolved], c: &Caller, what: &str, config: &str) -> String {
    let user = &c.name;
    let mut msg = format!(
        "{user} may not use {what}: it is for root and for {}",
        rules
            .iter()
            .map(|r| who(r.allow))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for r in rules {
        match (&r.allow.who, r.id) {
            (Who::Group(g), None) => {
                let _ = write!(
                    msg,
                    "; group {g} does not exist (create it: `sudo addgroup --system {g}`)"
                );
            }
            (Who::Group(g), Some(_)) => {
                let _ = write!(
                    msg,
                    "; add {user} to group {g} (`sudo adduser {user} {g}`, then log in again)"
                );
            }
            (Who::User(_), _) => {}
        }
    }
    let _ = write!(
        msg,
        "; who may is set by [[allow]] entries (user or group) in {config}"
    );
    msg
}

fn who(a: &Allow) -> String {
    match &a.who {
        Who::User(u) => format!("user {u}"),
        Who::Group(g) => format!("members of group {g}"),
    }
}

fn scope(a: &Allow) -> String {
    let via = a
        .via
        .as_ref()
        .map_or("every uplink".into(), |v| v.join(", "));
    let modes = a.modes.as_ref().map_or("both modes".into(), |m| {
        m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
    });
    format!("{via} ({modes})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice(gids: &[u32]) -> Caller {
        Caller {
            uid: 1000,
            gids: gids.to_vec(),
            name: "alice".into(),
        }
    }

    #[test]
    fn the_default_group_may_use_everything() {
        let rules = Allow::default_rules();
        let r = [Resolved {
            allow: &rules[0],
            id: Some(990),
        }];
        let member = alice(&[1000, 990]);
        assert!(check_run(&r, &member, "usb0", Mode::Fallback, "x").is_ok());
        assert!(may_read_status(&r, &member));
        let other = alice(&[1000]);
        assert!(!may_read_status(&r, &other));
        let e = check_run(&r, &other, "usb0", Mode::Strict, "/etc/srcsel/srcsel.toml").unwrap_err();
        assert!(e.contains("members of group srcsel"), "{e}");
        assert!(e.contains("sudo adduser alice srcsel"), "{e}");
        assert!(
            e.contains("[[allow]]") && e.contains("/etc/srcsel/srcsel.toml"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_group_says_how_to_create_it() {
        let rules = Allow::default_rules();
        let r = [Resolved {
            allow: &rules[0],
            id: None,
        }];
        let e = check_run(&r, &alice(&[1000]), "usb0", Mode::Strict, "x").unwrap_err();
        assert!(e.contains("addgroup --system srcsel"), "{e}");
    }

    #[test]
    fn entries_limit_uplinks_and_modes() {
        let rules = [
            Allow {
                who: Who::User("alice".into()),
                via: Some(vec!["usb0".into()]),
                modes: Some(vec![Mode::Strict]),
            },
            Allow {
                who: Who::Group("ops".into()),
                via: None,
                modes: None,
            },
        ];
        let r = [
            Resolved {
                allow: &rules[0],
                id: Some(1000),
            },
            Resolved {
                allow: &rules[1],
                id: Some(50),
            },
        ];
        let a = alice(&[1000]);
        assert!(check_run(&r, &a, "usb0", Mode::Strict, "x").is_ok());
        let e = check_run(&r, &a, "usb0", Mode::Fallback, "x").unwrap_err();
        assert!(
            e.contains("usb0 in fallback mode") && e.contains("usb0 (strict)"),
            "{e}"
        );
        assert!(check_run(&r, &a, "wwan0", Mode::Strict, "x").is_err());
        assert!(check_run(&r, &alice(&[50]), "wwan0", Mode::Fallback, "x").is_ok());
        assert!(privileged(0, 0) && privileged(7, 7) && !privileged(1000, 0));
    }
}
