//! The drop-in `srcsel assign` gives an assigned slice or unit when systemd
//! is PID 1. systemd itself then attaches srcsel's pinned programs
//! (`BPFProgram=`) each time it makes the unit's cgroup — before the unit's
//! first process, at boot, across restarts — and they live as long as the
//! cgroup. The unit starts after srcsel (`After=`), and not at all while the
//! programs are not pinned (`AssertPathExists=`): it never starts unsteered.
//! The pins are reached through `<bpffs>/srcsel/host`, which the daemon
//! points at the host namespace's pin folder (its cookie differs per boot).
use std::{
    fs, io,
    path::{Path, PathBuf},
    process::Command,
};

use srcsel_common::programs;

use crate::{
    kernel::bpf::pins,
    policy::{Assignment, target::Target},
};

/// `systemctl set-property --runtime`'s persistent sibling: API-managed drop-ins.
const CONTROL_DIR: &str = "/etc/systemd/system.control";
const FILE: &str = "50-srcsel.conf";

/// The unit whose drop-in it is, and the section its settings go in.
fn unit_of(t: &Target) -> Option<(&str, &'static str)> {
    let name = match t {
        Target::Slice(n) | Target::Unit(n) => n.as_str(),
        Target::Cgroup(_) => return None,
    };
    let section = match name.rsplit_once('.')?.1 {
        "slice" => "Slice",
        "service" => "Service",
        "scope" => "Scope",
        "socket" => "Socket",
        "mount" => "Mount",
        "swap" => "Swap",
        _ => return None,
    };
    Some((name, section))
}

/// The drop-in's text for `a` on a unit with settings section `section`.
pub fn text(section: &str, bpffs: &Path, a: &Assignment) -> String {
    let set = bpffs
        .join(pins::HOST_ALIAS)
        .join(pins::pin_name(&a.via))
        .join(a.mode.as_str());
    let mut out = format!(
        "# Written by `srcsel assign` ({a}); `srcsel unassign` removes it.\n\
         [Unit]\nWants=srcsel.service\nAfter=srcsel.service\n\
         AssertPathExists={}\n\n[{section}]\n",
        set.join(programs::ALL[0].name).display()
    );
    for p in programs::ALL {
        out.push_str(&format!(
            "BPFProgram={}:{}\n",
            p.hook.systemd_name(),
            set.join(p.name).display()
        ));
    }
    out
}

fn path_of(unit: &str) -> PathBuf {
    Path::new(CONTROL_DIR).join(format!("{unit}.d")).join(FILE)
}

/// Writes (or replaces) the drop-in and has systemd read it; nothing
/// without systemd or for a plain cgroup.
pub fn write(t: &Target, a: &Assignment) -> io::Result<()> {
    let Some((unit, section)) = unit_of(t).filter(|_| super::booted()) else {
        return Ok(());
    };
    let path = path_of(unit);
    fs::create_dir_all(path.parent().expect("a folder"))?;
    replace(&path, &text(section, &bpffs(), a))?;
    reload()
}

/// Brings an existing drop-in up to date with this srcsel's programs
/// (written by an older one, with fewer); whether it changed. The daemon
/// does this at start, so units started after an upgrade get every program.
pub fn refresh(t: &Target, a: &Assignment) -> io::Result<bool> {
    let Some((unit, section)) = unit_of(t).filter(|_| super::booted()) else {
        return Ok(false);
    };
    let path = path_of(unit);
    let want = text(section, &bpffs(), a);
    match fs::read_to_string(&path) {
        Ok(have) if have != want => {
            replace(&path, &want)?;
            reload()?;
            Ok(true)
        }
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn bpffs() -> PathBuf {
    pins::find_bpffs()
        .ok()
        .flatten()
        .unwrap_or_else(|| PathBuf::from("/sys/fs/bpf"))
}

/// Writes `path` whole or not at all.
fn replace(path: &Path, text: &str) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)
}

/// Removes the drop-in, if any, and has systemd forget it.
pub fn remove(t: &Target) -> io::Result<()> {
    let Some((unit, _)) = unit_of(t).filter(|_| super::booted()) else {
        return Ok(());
    };
    let path = path_of(unit);
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    let _ = fs::remove_dir(path.parent().expect("a folder"));
    reload()
}

fn reload() -> io::Result<()> {
    let status = Command::new("systemctl").arg("daemon-reload").status()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "systemctl daemon-reload: {status}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Mode;

    #[test]
    fn the_dropin_orders_asserts_and_names_every_program() {
        let a = Assignment {
            via: "usb0".into(),
            mode: Mode::Strict,
        };
        let t = text("Slice", Path::new("/sys/fs/bpf"), &a);
        assert!(t.contains("After=srcsel.service\n"));
        assert!(t.contains("AssertPathExists=/sys/fs/bpf/srcsel/host/usb0/strict/sock_create\n"));
        assert!(t.contains(
            "\n[Slice]\nBPFProgram=sock_create:/sys/fs/bpf/srcsel/host/usb0/strict/sock_create\n"
        ));
        assert!(t.contains("BPFProgram=egress:/sys/fs/bpf/srcsel/host/usb0/strict/count_egress\n"));
        assert_eq!(t.matches("BPFProgram=").count(), programs::ALL.len());
        assert_eq!(
            unit_of(&Target::Unit("a@b.service".into())),
            Some(("a@b.service", "Service"))
        );
        assert_eq!(unit_of(&Target::Cgroup("a".into())), None);
    }
}
