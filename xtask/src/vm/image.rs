//! The guest image: Debian 12 built by debootstrap, booted with its own stock
//! 6.1 kernel and systemd as PID 1, cached under /var/cache/srcsel/vm/<key>/
//! (arm64's as arm64-<key>/, built under qemu-user).
use std::{
    fs,
    os::unix::fs::{PermissionsExt as _, symlink},
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::Context as _;

use super::guest::{Arch, Guest};
use crate::{run, setup};

/// What the guest has besides the lab's own packages (`setup::PACKAGES`, which
/// the guest always gets too, so the suites find there what they find on the host).
/// Changing either list gives a new cache key, so the next run rebuilds.
pub const GUEST_PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "udev",
    "kmod",
    // (Debian 12's stock 6.1 kernel for the guest's architecture comes first;)
    // its initrd is made in the root by initramfs-tools.
    "initramfs-tools",
    // regulatory.db: cfg80211 gets loaded during the suites and would print a
    // firmware error into the job's output on the console without it.
    "wireless-regdb",
    // The package suite: usb0 managed as on Raspberry Pi OS, and `man srcsel`.
    // (libpam-systemd: polkitd needs a logind, a virtual package debootstrap
    // does not resolve.)
    "network-manager",
    "libpam-systemd",
    "man-db",
];

/// Bump when the image's recipe changes in a way the hashed texts below don't show.
const FORMAT: u32 = 2;

const CACHE: &str = "/var/cache/srcsel/vm";
const MIRROR: &str = "http://deb.debian.org/debian";

/// Runs in the guest from srcsel-vm-job.service: mounts the host's workspace
/// at the host's own path (the test binaries have absolute paths compiled in),
/// runs target/vm/job.sh, leaves its status and log there, powers off.
const JOB_SCRIPT: &str = r#"#!/bin/bash
set -u
# The host's path, %XX-encoded (qemu.rs, cmdline_word): it may hold spaces.
ws=$(sed -n 's/.*srcsel\.ws=\([^ ]*\).*/\1/p' /proc/cmdline)
ws=$(printf '%b' "${ws//%/\\x}")
say() { echo "srcsel-vm: $*" >/dev/console; }
finish() { sync; systemctl poweroff --no-block || poweroff -f; exit 0; }
if [ -z "$ws" ]; then say "no srcsel.ws= on the kernel command line"; finish; fi
mkdir -p "$ws"
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 ws "$ws"; then
    say "cannot mount the 9p share 'ws' at $ws"; finish
fi
dir=$ws/target/vm
# The job starts once boot is over, as a user's command would.
state=$(systemctl is-system-running --wait)
say "job start (system $state)"
cd "$ws"
bash "$dir/job.sh" </dev/null 2>&1 | tee "$dir/job.log" >/dev/console
status=${PIPESTATUS[0]}
echo "$status" >"$dir/status.tmp" && mv "$dir/status.tmp" "$dir/status"
# What the guest keeps would vanish with it: the lab's logs in /tmp, the journal.
mkdir -p "$dir/guest/tmp"
journalctl -b --no-pager >"$dir/guest/journal.txt" 2>&1
# Not the workspace's 9p mount, which is under /tmp when the workspace is.
tar -C /tmp --one-file-system --warning=no-file-ignored -cf - . | tar -C "$dir/guest/tmp" -xf -
say "job end status=$status"
finish
"#;

/// Type=exec, not oneshot: multi-user.target is then reached while the job runs,
/// so `systemctl is-system-running --wait` (in the job and above) returns.
const JOB_UNIT: &str = "[Unit]
Description=srcsel VM job (the host's target/vm/job.sh)
After=basic.target

[Service]
Type=exec
ExecStart=/usr/local/sbin/srcsel-vm-job
Environment=HOME=/root
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
";

/// Units that only cost boot time under TCG, or that would write to the serial
/// console (a getty there would mix its prompt into the job's output), after
/// the console's own `serial-getty@<console>.service`.
const MASKED: &[&str] = &[
    "systemd-timesyncd.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "systemd-networkd-wait-online.service",
    "man-db.timer",
];

/// Enabled by their packages, but started only by the suite that tests with
/// them: NetworkManager would otherwise take the links other suites make.
/// (Not disabled: that would also drop the dispatcher's D-Bus alias.)
const NOT_AT_BOOT: &[&str] = &[
    "multi-user.target.wants/NetworkManager.service",
    "network-online.target.wants/NetworkManager-wait-online.service",
];

pub struct Image {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub disk: PathBuf,
}

pub fn packages(guest: &Guest) -> Vec<&'static str> {
    [guest.kernel_package]
        .iter()
        .chain(GUEST_PACKAGES)
        .chain(setup::PACKAGES)
        .copied()
        .collect()
}

fn masked(guest: &Guest) -> Vec<String> {
    let getty = format!("serial-getty@{}.service", guest.console);
    std::iter::once(getty)
        .chain(MASKED.iter().map(|u| (*u).to_owned()))
        .collect()
}

/// FNV-1a: a key that stays the same across Rust releases (DefaultHasher may not).
fn key(guest: &Guest) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let text = format!(
        "{FORMAT}\n{}\n{JOB_SCRIPT}{JOB_UNIT}{}{}{}",
        packages(guest).join(","),
        masked(guest).join(","),
        NOT_AT_BOOT.join(","),
        guest.initrd_modules
    );
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:012x}", h >> 16)
}

/// The cached image, built first if the key's folder does not exist.
pub fn ensure(guest: &Guest) -> anyhow::Result<Image> {
    let dir = Path::new(CACHE).join(guest.cache_name(&key(guest)));
    let image = Image {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        disk: dir.join("root.img"),
    };
    if dir.is_dir() {
        println!("vm: image {} (cached)", dir.display());
        return Ok(image);
    }
    fs::create_dir_all(CACHE).with_context(|| format!("creating {CACHE}"))?;
    let _lock = super::lock(
        &Path::new(CACHE).with_extension("lock"),
        "another VM image is being built",
    )?;
    let t = Instant::now();
    // A sibling that becomes `dir` only when complete: an interrupted build never looks done.
    let tmp = dir.with_extension("tmp");
    remove_tree(&tmp)?;
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    build(guest, &tmp).with_context(|| {
        format!(
            "building the VM image in {} (the next run starts it over)",
            tmp.display()
        )
    })?;
    fs::rename(&tmp, &dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    prune(guest, &dir);
    println!(
        "vm: image {} built in {:.0}s",
        dir.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(image)
}

fn build(guest: &Guest, dir: &Path) -> anyhow::Result<()> {
    let root = dir.join("root");
    let arch = guest.build.deb;
    if guest.arch == Arch::Arm64 {
        setup::binfmt_arm64()?;
    }
    println!("vm: debootstrap bookworm ({arch}) into {}", root.display());
    run(Command::new("debootstrap")
        .args([
            "--foreign",
            "--variant=minbase",
            "--arch",
            arch,
            "--include",
        ])
        .arg(packages(guest).join(","))
        .arg("bookworm")
        .arg(&root)
        .arg(MIRROR))?;
    // Before the second stage, whose kernel postinst makes the one initrd.
    initramfs_config(guest, &root)?;
    run(Command::new("chroot")
        .arg(&root)
        .args(["/debootstrap/debootstrap", "--second-stage"]))?;
    configure(guest, &root)?;
    let boot = root.join("boot");
    copy_newest(&boot, "vmlinuz-", &dir.join("vmlinuz"))?;
    copy_newest(&boot, "initrd.img-", &dir.join("initrd.img"))?;
    // No loop mount: mke2fs copies the tree itself. Sparse, so 4G costs what is used.
    run(Command::new("mkfs.ext4")
        .args(["-q", "-L", "srcselroot", "-d"])
        .arg(&root)
        .arg(dir.join("root.img"))
        .arg("4G"))?;
    // The tree is in root.img now; keeping it would only double the cache.
    remove_tree(&root)
}

/// The initrd holds the guest's few modules alone (MODULES=list): under
/// qemu-user, mkinitramfs takes seconds for them and many minutes for
/// Debian's default (`most`), and a small initrd boots faster under TCG.
/// (dpkg keeps these files: debootstrap configures with --force-confold.)
fn initramfs_config(guest: &Guest, root: &Path) -> anyhow::Result<()> {
    let dir = root.join("etc/initramfs-tools");
    fs::create_dir_all(dir.join("conf.d"))?;
    for (path, text) in [
        (dir.join("modules"), guest.initrd_modules),
        (dir.join("conf.d/srcsel-vm.conf"), "MODULES=list\n"),
    ] {
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn configure(guest: &Guest, root: &Path) -> anyhow::Result<()> {
    let write = |path: &str, text: &str| {
        let p = root.join(path.trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&p, text).with_context(|| format!("writing {}", p.display()))
    };
    write("/etc/hostname", "srcsel-vm\n")?;
    write(
        "/etc/hosts",
        "127.0.0.1 localhost\n127.0.1.1 srcsel-vm\n::1 localhost\n",
    )?;
    // Pass 0: every boot starts from a clean snapshot, fsck would only cost time.
    write("/etc/fstab", "/dev/vda / ext4 rw,errors=remount-ro 0 0\n")?;
    write("/usr/local/sbin/srcsel-vm-job", JOB_SCRIPT)?;
    fs::set_permissions(
        root.join("usr/local/sbin/srcsel-vm-job"),
        fs::Permissions::from_mode(0o755),
    )?;
    write("/etc/systemd/system/srcsel-vm-job.service", JOB_UNIT)?;
    let units = root.join("etc/systemd/system");
    let wants = units.join("multi-user.target.wants");
    fs::create_dir_all(&wants)?;
    symlink(
        "/etc/systemd/system/srcsel-vm-job.service",
        wants.join("srcsel-vm-job.service"),
    )?;
    for unit in masked(guest) {
        let link = units.join(&unit);
        let _ = fs::remove_file(&link);
        symlink("/dev/null", &link).with_context(|| format!("masking {unit}"))?;
    }
    for want in NOT_AT_BOOT {
        let link = units.join(want);
        fs::remove_file(&link).with_context(|| format!("removing {}", link.display()))?;
    }
    Ok(())
}

/// Copies the one file in `dir` named `prefix*` (the image has one kernel).
fn copy_newest(dir: &Path, prefix: &str, to: &Path) -> anyhow::Result<()> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    found.sort();
    let from = found
        .pop()
        .with_context(|| format!("no {prefix}* in {} after debootstrap", dir.display()))?;
    fs::copy(&from, to).with_context(|| format!("copying {}", from.display()))?;
    Ok(())
}

/// `rm -rf --one-file-system`, after unmounting what an interrupted build may
/// have left mounted inside (a chroot's /proc must never be recursed into).
fn remove_tree(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let prefix = format!("{}/", path.display());
    let mut inside: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    inside.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in inside {
        run(Command::new("umount").args(["-l", m]))?;
    }
    run(Command::new("rm")
        .args(["-rf", "--one-file-system"])
        .arg(path))
}

/// Removes the guest's images of other keys (an older recipe): 1.2G each,
/// never used again. The other architecture's image stays.
fn prune(guest: &Guest, keep: &Path) {
    let Ok(entries) = fs::read_dir(CACHE) else {
        return;
    };
    for old in entries.filter_map(Result::ok).map(|e| e.path()) {
        let theirs = old
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| guest.owns(n));
        if old != keep && old.is_dir() && theirs {
            println!("vm: removing the outdated image {}", old.display());
            if let Err(e) = remove_tree(&old) {
                eprintln!("vm: {e:#}");
            }
        }
    }
}
