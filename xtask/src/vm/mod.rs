//! A qemu VM harness: Debian 12 with systemd as PID 1 on Debian 12's stock 6.1
//! kernel, amd64 or arm64 (a Raspberry Pi's architecture), sharing this
//! workspace at its own path, so test binaries built on the host for the
//! guest's architecture run there unchanged
//! (`cargo xtask vm -- target/.../lab-... --test-threads=1`).
mod guest;
mod image;
mod qemu;
mod suites;

pub use guest::Arch;
use guest::Guest;
pub use suites::{NAMES as SUITES, test_suites};

use std::{fs, os::fd::AsRawFd as _, path::Path, time::Duration};

use anyhow::{Context as _, bail};

use crate::{require_root, root, setup};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(25 * 60);

/// What `cargo xtask vm` runs without a command: is the guest what we test on?
const SMOKE: &str = r#"set -x
uname -r
systemctl is-system-running --wait || systemctl --failed --no-pager
findmnt /sys/fs/cgroup
findmnt /sys/fs/bpf
ls /sys/fs/bpf
busctl --system list --no-pager | head
"#;

/// Installs what the host lacks, builds the image if it isn't cached, then boots
/// and runs `script` (a bash script body) as root in the guest, in the workspace.
/// The job first says what it runs on: the guest's machine and kernel.
pub fn run_in_guest(guest: &Guest, script: &str, timeout: Duration) -> anyhow::Result<()> {
    require_root("the VM harness")?;
    setup::vm(guest.qemu_package)?;
    let image = image::ensure(guest)?;
    let script = format!("echo \"guest: $(uname -m), kernel $(uname -r)\"\n{script}");
    qemu::run_job(guest, &image, &root(), &script, timeout)
}

/// `cargo xtask vm [-- CMD...]`: CMD in the guest, or the smoke check without one.
pub fn command(guest: &Guest, cmd: &[String], timeout: Duration) -> anyhow::Result<()> {
    if cmd.is_empty() {
        return run_in_guest(guest, SMOKE, timeout);
    }
    let line: Vec<String> = cmd.iter().map(|a| quote(a)).collect();
    run_in_guest(guest, &format!("exec {}\n", line.join(" ")), timeout)
}

/// An exclusive flock on `path`, held while the returned file lives; `busy` says who holds it.
fn lock(path: &Path, busy: &str) -> anyhow::Result<fs::File> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!("{busy} ({} is locked): wait for it", path.display());
    }
    Ok(file)
}

/// Single-quotes `s` for bash unless it is plainly safe.
fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quoting() {
        assert_eq!(quote("--test-threads=1"), "--test-threads=1");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }
}
