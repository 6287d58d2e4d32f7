//! `[[assign]]`: slices, units and cgroups bound to an uplink from boot on.
//!
//! ```toml
//! [[assign]]
//! slice = "hotspot.slice"   # or unit = "backup.service", or cgroup = "lab/app"
//! via = "usb0"             # or ["usb0", "eth0"]: the first that can carry
//!                           # each family now (failover)
//! mode = "strict"           # or "fallback"; default strict
//! ```
use std::collections::HashMap;

use serde::Deserialize;

use super::check_via;
use crate::policy::{
    Assignment, Mode,
    target::{Assigned, Target},
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AssignConfig {
    slice: Option<String>,
    unit: Option<String>,
    cgroup: Option<String>,
    via: Via,
    #[serde(default = "strict")]
    mode: Mode,
}

/// One uplink, or an ordered list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Via {
    One(String),
    List(Vec<String>),
}

impl Via {
    /// As `--via` writes it: names joined with commas.
    fn label(&self) -> String {
        match self {
            Via::One(s) => s.clone(),
            Via::List(l) => l.join(","),
        }
    }
}

fn strict() -> Mode {
    Mode::Strict
}

/// The entries as assignments; the error is the entry's index and why.
pub(super) fn check(entries: &[AssignConfig]) -> Result<Vec<Assigned>, (usize, String)> {
    let mut seen: HashMap<Target, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let named: Vec<(&str, &String)> = [
            ("slice", &e.slice),
            ("unit", &e.unit),
            ("cgroup", &e.cgroup),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.as_ref()?)))
        .collect();
        let [(kind, name)] = named[..] else {
            return Err((
                i,
                "an [[assign]] entry names one slice, unit or cgroup".into(),
            ));
        };
        let target = Target::new(kind, name).map_err(|why| (i, why))?;
        let via = e.via.label();
        check_via(&via).map_err(|why| (i, format!("[[assign]] via: {why}")))?;
        if let Some(first) = seen.insert(target.clone(), i) {
            return Err((
                i,
                format!(
                    "{target} is already assigned by [[assign]] number {}",
                    first + 1
                ),
            ));
        }
        out.push(Assigned {
            target,
            assignment: Assignment { via, mode: e.mode },
        });
    }
    Ok(out)
}
