//! `[[allow]]`: who may `srcsel run` as themselves and read status.
use serde::Deserialize;

use super::check_ifname;
use crate::policy::{
    Mode,
    access::{Allow, Who},
};

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
pub(super) struct AllowConfig {
    user: Option<NameOrId>,
    group: Option<NameOrId>,
    via: Option<Vec<String>>,
    modes: Option<Vec<Mode>>,
}

/// Each `[[allow]]` names exactly one user or group, real interface names
/// and at least one mode. The error is the entry's index and why.
pub(super) fn check(allow: &[AllowConfig]) -> Result<(), (usize, String)> {
    for (i, a) in allow.iter().enumerate() {
        let bad = |why: String| Err((i, why));
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

/// The entries as rules; group `srcsel` on everything when there are none.
pub(super) fn rules(allow: &[AllowConfig]) -> Vec<Allow> {
    if allow.is_empty() {
        return Allow::default_rules();
    }
    allow
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
