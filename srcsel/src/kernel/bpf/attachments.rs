//! Attachments: a program set bound to a cgroup through bpf_links pinned in
//! `<ns>/links/cg-<inode>:<uplink>:<mode>/`, beside a symlink `cgroup` to the
//! cgroup's folder. They outlive every srcsel process and last as long as
//! their cgroup (the reaper removes the pins of cgroups that are gone) or
//! until unassigned. The inode in the name keeps links left from a removed
//! cgroup from passing for a new cgroup of the same path.
use std::{
    fs, io,
    os::{fd::AsFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
};

use srcsel_common::programs;

use super::{
    BpfError, io_err, pins,
    programs::{ProgramSet, all_pinned, attach_one, attached_to, attachments},
};
use crate::policy::Assignment;

const PREFIX: &str = "cg-";
/// An attachment being made beside the one it replaces.
const STAGED: &str = "new-";
const CGROUP_LINK: &str = "cgroup";

/// One cgroup's attachment, as its pins record it.
#[derive(Debug)]
pub struct Attachment {
    pub dir: PathBuf,
    pub ino: u64,
    pub assignment: Assignment,
    /// The cgroup's folder (absent in pins older than this record).
    pub cgroup: Option<PathBuf>,
}

impl Attachment {
    /// Whether its cgroup is gone: no folder at the path, or a new one.
    pub fn gone(&self) -> bool {
        self.cgroup
            .as_deref()
            .is_none_or(|p| cgroup_ino(p).ok() != Some(self.ino))
    }

    /// Whether its cgroup is inside `dir` (a namespace's runs folder).
    pub fn under(&self, dir: &Path) -> bool {
        self.cgroup.as_deref().is_some_and(|c| c.starts_with(dir))
    }
}

fn entry_name(ino: u64, a: &Assignment) -> String {
    format!("{PREFIX}{ino}:{}:{}", pins::pin_name(&a.via), a.mode)
}

/// `cg-<ino>:<uplink>:<mode>`: `:` is in no interface name (a dot in one
/// is a `:` here).
fn parse(name: &str) -> Option<(u64, Assignment)> {
    let (ino, rest) = name.strip_prefix(PREFIX)?.split_once(':')?;
    let (via, mode) = rest.rsplit_once(':')?;
    Some((
        ino.parse().ok()?,
        Assignment {
            via: pins::uplink_of_pin(via),
            mode: mode.parse().ok()?,
        },
    ))
}

pub fn cgroup_ino(path: &Path) -> io::Result<u64> {
    Ok(fs::metadata(path)?.ino())
}

impl ProgramSet {
    /// Attaches the set to `cgroup` unless it already is; true when it
    /// attached now. Other attachments of the cgroup stay (the caller
    /// removes them once this one is in place: make before break). An
    /// attachment of an older set (fewer programs, or programs since
    /// reloaded, as after an upgrade) is replaced the same way: the new
    /// links are made beside it, and only then is it removed.
    /// For a cgroup systemd attaches the set to itself (a drop-in's
    /// `BPFProgram=`): srcsel's own links only until systemd's are there,
    /// never both (the set would run twice, counting everything twice).
    /// Returns whether srcsel's links were made or removed.
    pub fn ensure_attached_beside_systemd(&self, cgroup: &Path) -> Result<bool, BpfError> {
        let ino = cgroup_ino(cgroup).map_err(io_err(cgroup))?;
        let own = pins::links_dir(&self.ns_dir).join(entry_name(ino, &self.assignment));
        let ours = own.join(CGROUP_LINK).exists();
        match attachments(&self.ns_dir, &self.assignment, cgroup) {
            // systemd's and ours: ours go, systemd's stay in force.
            n if n >= 2 && ours => {
                pins::remove_tree(&own).map_err(io_err(&own))?;
                Ok(true)
            }
            // systemd's alone.
            n if n >= 1 && !ours => Ok(false),
            _ => self.ensure_attached(cgroup),
        }
    }

    pub fn ensure_attached(&self, cgroup: &Path) -> Result<bool, BpfError> {
        let ino = cgroup_ino(cgroup).map_err(io_err(cgroup))?;
        let links = pins::links_dir(&self.ns_dir);
        let name = entry_name(ino, &self.assignment);
        let dir = links.join(&name);
        // Not a name `list` reads. (bpffs refuses names with a dot.)
        let staged = links.join(format!("{STAGED}{name}"));
        finish_swap(&staged, &dir)?;
        let complete = dir.join(CGROUP_LINK).exists() && all_pinned(&dir);
        if complete && attached_to(&self.ns_dir, &self.assignment, cgroup) {
            return Ok(false);
        }
        let cg = fs::File::open(cgroup).map_err(io_err(cgroup))?;
        let _ = pins::remove_tree(&staged);
        fs::create_dir_all(&staged).map_err(io_err(&staged))?;
        let pin_all = || {
            for p in programs::ALL {
                attach_one(&p, &self.dir.join(p.name), cg.as_fd(), &staged.join(p.name))?;
            }
            // Written last: its presence says the set is complete.
            let link = staged.join(CGROUP_LINK);
            std::os::unix::fs::symlink(cgroup, &link).map_err(io_err(&link))
        };
        pin_all().inspect_err(|_| {
            // Links made so far detach with their pins.
            let _ = pins::remove_tree(&staged);
        })?;
        // The old links detach only now, with the new ones in force.
        if dir.exists() {
            pins::remove_tree(&dir).map_err(io_err(&dir))?;
        }
        fs::rename(&staged, &dir).map_err(io_err(&dir))?;
        Ok(true)
    }
}

/// Completes a replacement a crash interrupted after the old links went:
/// the staged ones, then the only links of their cgroup, take the name.
fn finish_swap(staged: &Path, dir: &Path) -> Result<(), BpfError> {
    if staged.join(CGROUP_LINK).exists() && !dir.exists() {
        fs::rename(staged, dir).map_err(io_err(dir))?;
    }
    Ok(())
}

/// Whether a complete staged attachment's cgroup is gone.
fn staged_gone(dir: &Path, name: &str) -> bool {
    let Some((ino, assignment)) = parse(&name[STAGED.len()..]) else {
        return false;
    };
    let Ok(cgroup) = fs::read_link(dir.join(CGROUP_LINK)) else {
        return false;
    };
    Attachment {
        dir: dir.to_owned(),
        ino,
        assignment,
        cgroup: Some(cgroup),
    }
    .gone()
}

/// The namespace's attachments.
pub fn list(ns_dir: &Path) -> Vec<Attachment> {
    let Ok(entries) = fs::read_dir(pins::links_dir(ns_dir)) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let (ino, assignment) = parse(e.file_name().to_str()?)?;
            let dir = e.path();
            Some(Attachment {
                cgroup: fs::read_link(dir.join(CGROUP_LINK)).ok(),
                dir,
                ino,
                assignment,
            })
        })
        .collect()
}

/// Removes the attachments whose cgroup is gone, and entries of an older
/// naming that `legacy_gone` says are; the links folder once it is empty.
pub fn remove_orphans(ns_dir: &Path, legacy_gone: impl Fn(&str) -> bool) -> io::Result<usize> {
    let dir = pins::links_dir(ns_dir);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(0);
    };
    let ours: Vec<Attachment> = list(ns_dir);
    let mut removed = 0;
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let gone = match ours.iter().find(|a| a.dir == e.path()) {
            Some(a) => a.gone(),
            // Being made, or left by a crash: `ensure_attached` owns it
            // while its cgroup lives (complete ones only: one still being
            // made has no `cgroup` link yet).
            None if name.starts_with(STAGED) => staged_gone(&e.path(), name),
            None => legacy_gone(name),
        };
        if gone {
            pins::remove_tree(&e.path())?;
            removed += 1;
        }
    }
    let _ = fs::remove_dir(&dir);
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Mode;

    #[test]
    fn entry_names_carry_inode_and_assignment() {
        let a = Assignment {
            via: "eth0.5".into(),
            mode: Mode::Fallback,
        };
        let name = entry_name(4242, &a);
        assert_eq!(name, "cg-4242:eth0:5:fallback", "bpffs refuses dots");
        assert_eq!(parse(&name), Some((4242, a)));
        assert_eq!(parse("usb0:strict"), None);
        assert_eq!(parse("cg-x:usb0:strict"), None);
        assert_eq!(parse("cg-1:usb0:loose"), None);
    }
}
