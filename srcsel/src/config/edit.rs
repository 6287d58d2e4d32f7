//! `srcsel assign` and `unassign` edit the config's `[[assign]]` entries in
//! place: the user's comments, order and layout stay; the file is replaced
//! atomically (a reader sees the old or the new file, never half of one),
//! with its owner and mode; concurrent editors take turns on a lock.
use std::{
    fs, io,
    io::Write as _,
    os::{fd::AsRawFd as _, unix::fs::PermissionsExt as _},
    path::{Path, PathBuf},
};

use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, value};

use super::{Config, ConfigError};
use crate::policy::{Assignment, target::Target};

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{path}: `assign` is not written as [[assign]] tables; edit it by hand")]
    Shape { path: String },
    #[error("{target} is not assigned in {path}{listed}")]
    NotAssigned {
        target: Target,
        path: String,
        listed: String,
    },
    #[error("writing {path}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// What an edit did.
#[derive(Debug, PartialEq, Eq)]
pub enum Edit {
    /// The file already said so: nothing was written.
    Unchanged,
    /// The entry was added, or replaced one for the same target (its old assignment).
    Written { replaced: Option<Assignment> },
}

/// Records `target` → `assignment` (or removes `target` when `None`) in
/// the config at `path`, creating it (and its folder) if needed.
pub fn set(
    path: &Path,
    target: &Target,
    assignment: Option<&Assignment>,
) -> Result<Edit, EditError> {
    let shown = path.display().to_string();
    let werr = |source| EditError::Write {
        path: shown.clone(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(werr)?;
    let _lock = lock(dir).map_err(werr)?;
    let old = match fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(ConfigError::Read {
                path: shown,
                source,
            }
            .into());
        }
    };
    let text = old.as_deref().unwrap_or("");
    // A file that does not parse is the user's to mend; its error says where.
    let current = Config::parse(text, &shown)?;
    let before = current
        .assigned
        .iter()
        .find(|a| &a.target == target)
        .map(|a| a.assignment.clone());
    if before.as_ref() == assignment {
        if assignment.is_none() {
            let listed: Vec<String> = current
                .assigned
                .iter()
                .map(|a| a.target.to_string())
                .collect();
            return Err(EditError::NotAssigned {
                target: target.clone(),
                path: shown,
                listed: if listed.is_empty() {
                    " (it assigns nothing)".into()
                } else {
                    format!(" (it assigns: {})", listed.join(", "))
                },
            });
        }
        return Ok(Edit::Unchanged);
    }
    let new = edited(text, target, assignment).ok_or(EditError::Shape {
        path: shown.clone(),
    })?;
    // What is written must read back as a config (and as this edit).
    Config::parse(&new, &shown)?;
    replace(path, &new, old.is_some()).map_err(werr)?;
    Ok(Edit::Written { replaced: before })
}

/// The text with `target`'s entry replaced in place, appended, or removed.
/// None when `assign` is not an array of tables.
fn edited(text: &str, target: &Target, assignment: Option<&Assignment>) -> Option<String> {
    let mut doc: DocumentMut = text.parse().ok()?;
    let entry = assignment.map(|a| {
        let mut t = Table::new();
        t[target.kind()] = value(target.name());
        t["via"] = if crate::policy::failover::is_list(&a.via) {
            value(crate::policy::failover::members(&a.via).collect::<toml_edit::Array>())
        } else {
            value(&a.via)
        };
        t["mode"] = value(a.mode.as_str());
        t
    });
    let list: &mut ArrayOfTables = doc
        .entry("assign")
        .or_insert(Item::ArrayOfTables(ArrayOfTables::new()))
        .as_array_of_tables_mut()?;
    let at = list
        .iter()
        .position(|t| t.get(target.kind()).and_then(Item::as_str) == Some(target.name()));
    match (at, entry) {
        (Some(i), Some(new)) => {
            // Keep the entry's comments and place; set its values.
            let t = list.get_mut(i)?;
            for key in ["via", "mode"] {
                t[key] = new[key].clone();
            }
        }
        (Some(i), None) => {
            list.remove(i);
        }
        (None, Some(new)) => list.push(new),
        (None, None) => {}
    }
    if list.is_empty() {
        doc.remove("assign");
    }
    Some(doc.to_string())
}

/// flock on the config's folder: held while one editor reads and replaces.
fn lock(dir: &Path) -> io::Result<fs::File> {
    let f = fs::File::open(dir)?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(f)
}

/// Writes a sibling temporary file, syncs it, gives it the old file's
/// owner and mode (0644 for a new one) and renames it over `path`.
fn replace(path: &Path, text: &str, existed: bool) -> io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp: PathBuf = path.with_file_name(format!(".{name}.srcsel-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        if existed {
            let meta = fs::metadata(path)?;
            f.set_permissions(meta.permissions())?;
            std::os::unix::fs::fchown(
                &f,
                Some(std::os::unix::fs::MetadataExt::uid(&meta)),
                Some(std::os::unix::fs::MetadataExt::gid(&meta)),
            )?;
        } else {
            f.set_permissions(fs::Permissions::from_mode(0o644))?;
        }
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename itself survives a crash once the folder is synced.
        fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Mode;

    fn usb0(mode: Mode) -> Assignment {
        Assignment {
            via: "usb0".into(),
            mode,
        }
    }

    #[test]
    fn edits_keep_comments_and_layout() {
        let text = "# my uplinks\n[[uplink]]\nname = \"usb0\"   # hotspot\n\n# backups go out the hotspot\n[[assign]]\nslice = \"backup.slice\"\nvia = \"eth0\"\nmode = \"strict\"\n";
        let slice = Target::Slice("backup.slice".into());
        let out = edited(text, &slice, Some(&usb0(Mode::Fallback))).unwrap();
        assert!(
            out.contains("# my uplinks")
                && out.contains("# hotspot")
                && out.contains("# backups go out the hotspot"),
            "{out}"
        );
        let c = Config::parse(&out, "x").unwrap();
        assert_eq!(c.assigned.len(), 1);
        assert_eq!(c.assigned[0].assignment, usb0(Mode::Fallback));

        let cg = Target::Cgroup("lab/app".into());
        let out = edited(&out, &cg, Some(&usb0(Mode::Strict))).unwrap();
        let c = Config::parse(&out, "x").unwrap();
        assert_eq!(c.assigned.len(), 2);
        assert_eq!(c.assigned[1].target, cg);

        let out = edited(&out, &slice, None).unwrap();
        let out = edited(&out, &cg, None).unwrap();
        assert!(!out.contains("assign"), "{out}");
        assert!(
            out.starts_with("# my uplinks\n[[uplink]]\nname = \"usb0\"   # hotspot\n"),
            "{out}"
        );
        assert_eq!(edited("assign = 3\n", &cg, None), None);
    }

    #[test]
    fn set_writes_atomically_and_says_what_it_did() {
        let dir = std::env::temp_dir().join(format!("srcsel-edit-{}", std::process::id()));
        let path = dir.join("etc/srcsel.toml");
        let slice = Target::Slice("hotspot.slice".into());
        let strict = usb0(Mode::Strict);
        assert_eq!(
            set(&path, &slice, Some(&strict)).unwrap(),
            Edit::Written { replaced: None }
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(set(&path, &slice, Some(&strict)).unwrap(), Edit::Unchanged);
        assert_eq!(
            set(&path, &slice, Some(&usb0(Mode::Fallback))).unwrap(),
            Edit::Written {
                replaced: Some(strict)
            }
        );
        let e = set(&path, &Target::Unit("a.service".into()), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unit a.service is not assigned") && e.contains("slice hotspot.slice"),
            "{e}"
        );
        set(&path, &slice, None).unwrap();
        fs::write(&path, "[[assign]]\nslice = 7\n").unwrap();
        let e = set(&path, &slice, Some(&usb0(Mode::Strict)))
            .unwrap_err()
            .to_string();
        assert!(e.contains(":2:"), "{e}");
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "[[assign]]\nslice = 7\n"
        );
        let leftovers = fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
        fs::remove_dir_all(&dir).unwrap();
    }
}
