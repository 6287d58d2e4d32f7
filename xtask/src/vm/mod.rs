//! A qemu VM harness: Debian 12 with systemd as PID 1 on Debian 12's stock 6.1
//! kernel, sharing this workspace at its own path, so test binaries built on the
//! host run in the guest unchanged (`cargo xtask vm -- target/.../lab-... --test-threads=1`).
mod image;
mod qemu;

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
pub fn run_in_guest(script: &str, timeout: Duration) -> anyhow::Result<()> {
    require_root("the VM harness")?;
    setup::vm()?;
    let image = image::ensure()?;
    qemu::run_job(&image, &root(), script, timeout)
}

/// The suites `cargo xtask test` runs in the guest: systemd as PID 1 (the
/// `systemd` and `package` suites), and the `run` and `daemon` suites on kernel 6.1.
pub const SUITES: [&str; 4] = ["systemd", "run", "daemon", "package"];

/// Tests the VM leaves to the host: what they prove does not depend on the
/// kernel's version, and under TCG they cost minutes (132 s of the run suite's 460).
const HOST_ONLY: &[(&str, &str)] = &[(
    "run",
    "thousands_of_lan_routes_and_a_hundred_concurrent_runs_keep_working",
)];

/// Builds `suites` and runs them, one after another, in one boot; `args`
/// go to each test binary. Fails, saying why, when the VM cannot start.
pub fn test_suites(suites: &[&str], args: &[String], timeout: Duration) -> anyhow::Result<()> {
    let mut cmd = crate::cargo();
    cmd.args(["test", "-p", "srcsel", "--features", "vm-tests", "--no-run"])
        .args(suites.iter().flat_map(|s| ["--test", s]))
        .arg("--message-format=json-render-diagnostics")
        .stdout(std::process::Stdio::piped());
    let out = cmd.output().context("building the VM suites")?;
    if !out.status.success() {
        bail!("building the VM suites failed: {}", out.status);
    }
    if suites.contains(&"package") {
        // It installs a package of the binary just built.
        crate::dist::test_package()?;
    }
    let mut script = String::from("failed=\n");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(exe), Some(name)) = (msg["executable"].as_str(), msg["target"]["name"].as_str())
        else {
            continue;
        };
        if !suites.contains(&name) {
            continue;
        }
        let skips = HOST_ONLY
            .iter()
            .filter(|(suite, _)| *suite == name)
            .flat_map(|(_, test)| ["--skip".to_owned(), (*test).to_owned()]);
        let call: Vec<String> = [exe.to_owned(), "--test-threads=1".into()]
            .into_iter()
            .chain(skips)
            .chain(args.iter().cloned())
            .map(|a| quote(&a))
            .collect();
        script += &format!(
            "echo \"== VM suite {name} (kernel $(uname -r), systemd as PID 1)\"\n{} || failed=\"$failed {name}\"\n",
            call.join(" ")
        );
    }
    script += "[ -z \"$failed\" ] || { echo \"VM suites failed:$failed\"; exit 1; }\n";
    run_in_guest(&script, timeout)
        .context("the VM suites (systemd as PID 1, kernel 6.1) did not pass or could not run")
}

/// `cargo xtask vm [-- CMD...]`: CMD in the guest, or the smoke check without one.
pub fn command(cmd: &[String], timeout: Duration) -> anyhow::Result<()> {
    if cmd.is_empty() {
        return run_in_guest(SMOKE, timeout);
    }
    let line: Vec<String> = cmd.iter().map(|a| quote(a)).collect();
    run_in_guest(&format!("exec {}\n", line.join(" ")), timeout)
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
