//! What an assignment names — a systemd slice, a systemd unit, or a cgroup
//! by path — and where that is in the cgroup2 tree. Slices nest by name
//! (`a-b.slice` lives in `a.slice/a-b.slice`), so their paths follow from
//! the name alone; a unit's depends on its `Slice=`, which systemd knows.
use std::{fmt, path::PathBuf};

use super::Assignment;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Slice(String),
    Unit(String),
    Cgroup(String),
}

/// A target bound to an uplink and mode, as `[[assign]]` records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assigned {
    pub target: Target,
    pub assignment: Assignment,
}

/// Where srcsel's own run cgroups live (without systemd, and with it):
/// never assignable.
const OWN: &str = "srcsel";
pub const OWN_SLICE: &str = "srcsel.slice";

impl Target {
    /// The config key and option name: `slice`, `unit` or `cgroup`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Slice(_) => "slice",
            Target::Unit(_) => "unit",
            Target::Cgroup(_) => "cgroup",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Target::Slice(n) | Target::Unit(n) | Target::Cgroup(n) => n,
        }
    }

    /// A target as written (`--cgroup /a/b` is `a/b`), or why it is none.
    pub fn new(kind: &str, name: &str) -> Result<Self, String> {
        let t = match kind {
            "slice" => Target::Slice(name.to_owned()),
            "unit" => Target::Unit(name.to_owned()),
            "cgroup" => Target::Cgroup(name.trim_start_matches('/').to_owned()),
            _ => return Err(format!("{kind:?} is not slice, unit or cgroup")),
        };
        t.check()?;
        Ok(t)
    }

    fn check(&self) -> Result<(), String> {
        match self {
            Target::Slice(n) => slice_path(n).map(drop),
            Target::Unit(n) => check_unit(n),
            Target::Cgroup(p) => check_cgroup(p),
        }
    }

    /// Its cgroup, relative to the cgroup2 mount, when the name alone says.
    pub fn path(&self) -> Option<PathBuf> {
        match self {
            Target::Slice(n) => slice_path(n).ok(),
            Target::Unit(n) if n.ends_with(".slice") => slice_path(n).ok(),
            Target::Unit(_) => None,
            Target::Cgroup(p) => Some(PathBuf::from(p)),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.name())
    }
}

/// The path of slice `name`: each `-` opens a level, as systemd nests them.
pub fn slice_path(name: &str) -> Result<PathBuf, String> {
    let bad = |why: &str| Err(format!("{name:?} is not a slice name: {why}"));
    let Some(stem) = name.strip_suffix(".slice") else {
        return bad("it does not end in .slice (for example hotspot.slice)");
    };
    if stem == "-" {
        return bad("-.slice is the root, every process on the host; assign a slice below it");
    }
    check_unit(name)?;
    if name.contains('@') {
        return bad("slices have no @ instances");
    }
    if stem.is_empty() || stem.starts_with('-') || stem.ends_with('-') || stem.contains("--") {
        return bad("an empty level between dashes");
    }
    let mut path = PathBuf::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    if path.starts_with(OWN_SLICE) {
        return bad("srcsel.slice holds srcsel's own runs");
    }
    Ok(path)
}

/// systemd's unit name rules: `name.type`, letters, digits and `:_.\-@`,
/// at most 255 bytes; a template (`x@.service`) is not a unit.
fn check_unit(name: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{name:?} is not a unit name: {why}"));
    const TYPES: [&str; 6] = ["service", "scope", "slice", "socket", "mount", "swap"];
    if name.len() > 255 {
        return bad("it is longer than 255 bytes");
    }
    let Some((stem, kind)) = name.rsplit_once('.') else {
        return bad("it has no type (for example app.service)");
    };
    if !TYPES.contains(&kind) {
        return bad("only services, scopes, slices, sockets, mounts and swaps have cgroups");
    }
    if stem.is_empty() || stem.ends_with('@') {
        return bad("a template or an empty name is not a unit");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || ":_.\\-@".contains(c);
    if !stem.chars().all(allowed) {
        return bad("only letters, digits and : _ . \\ - @ are allowed");
    }
    Ok(())
}

/// A cgroup below the root (never the root: that is every process), with
/// plain folder names, outside srcsel's own subtree.
fn check_cgroup(path: &str) -> Result<(), String> {
    let bad = |why: &str| {
        let shown: String = path.chars().take(80).collect();
        Err(format!("{shown:?} is not an assignable cgroup: {why}"))
    };
    if path.is_empty() {
        return bad("the root cgroup holds every process on the host; name one below it");
    }
    if path.len() > 1024 {
        return bad("it is longer than 1024 bytes");
    }
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return bad("an empty, . or .. component (give it relative to the cgroup2 mount)");
        }
        if part.starts_with("cgroup.") || part.len() > 255 || part.contains(['\n', '\0']) {
            return bad("a component is no cgroup name");
        }
    }
    let top = path.split('/').next().unwrap_or_default();
    if top == OWN || top == OWN_SLICE {
        return bad("srcsel/ and srcsel.slice/ hold srcsel's own runs");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_nest_by_their_dashes() {
        assert_eq!(
            slice_path("hotspot.slice").unwrap(),
            PathBuf::from("hotspot.slice")
        );
        assert_eq!(
            slice_path("a-b-c.slice").unwrap(),
            PathBuf::from("a.slice/a-b.slice/a-b-c.slice")
        );
        for bad in [
            "-.slice",
            "a--b.slice",
            "-a.slice",
            "a-.slice",
            "x.service",
            "a@b.slice",
            "a b.slice",
            "srcsel.slice",
            "srcsel-x.slice",
        ] {
            assert!(slice_path(bad).is_err(), "{bad}");
        }
        assert!(slice_path("-.slice").unwrap_err().contains("root"));
    }

    #[test]
    fn targets_are_checked_and_cgroups_are_relative() {
        assert_eq!(
            Target::new("cgroup", "/a/b").unwrap(),
            Target::Cgroup("a/b".into())
        );
        assert_eq!(
            Target::new("cgroup", "a/b").unwrap().path(),
            Some(PathBuf::from("a/b"))
        );
        for bad in [
            "",
            "/",
            "a//b",
            "a/../b",
            "srcsel/net-1",
            "a/cgroup.procs",
            "srcsel",
        ] {
            assert!(Target::new("cgroup", bad).is_err(), "{bad:?}");
        }
        assert!(Target::new("unit", "app.service").unwrap().path().is_none());
        assert_eq!(
            Target::new("unit", "x.slice").unwrap().path(),
            Some(PathBuf::from("x.slice"))
        );
        for bad in [
            "app",
            "app@.service",
            "a/b.service",
            "app.target",
            ".service",
        ] {
            assert!(Target::new("unit", bad).is_err(), "{bad}");
        }
        assert!(Target::new("unit", "getty@tty1.service").is_ok());
        assert!(Target::new("thing", "x").is_err());
        assert_eq!(Target::Slice("h.slice".into()).to_string(), "slice h.slice");
    }
}
