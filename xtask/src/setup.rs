//! `cargo xtask setup`: idempotent installation of what a fresh machine lacks.
use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::run;

/// Debian packages the lab and its clients use. The `-base` packages carry the
/// dnsmasq and dhcpcd binaries without their services, so nothing starts on
/// the host's own interfaces.
pub const PACKAGES: &[&str] = &[
    "iproute2",
    "util-linux",
    "procps",
    "dnsmasq-base",
    "dhcpcd-base",
    "curl",
    "wget",
    "busybox-static",
    "socat",
    "netcat-openbsd",
    "iputils-ping",
    "nftables",
    "python3",
    "gcc",
    // Go's own resolver, as Go programs use it (the DNS suites).
    "golang-go",
    "libc6-dev",
];

const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn all() -> anyhow::Result<()> {
    packages()?;
    toolchain()
}

/// The eBPF toolchain: nightly's rust-src and a bpf-linker that uses nightly's LLVM.
pub fn toolchain() -> anyhow::Result<()> {
    rust_src()?;
    bpf_linker()
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn packages() -> anyhow::Result<()> {
    install_missing(PACKAGES)
}

/// `apt-get install` of those of `packages` that are not installed.
fn install_missing(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("setup: installing {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// What building and testing for arm64 needs: the cross gcc and libc (the
/// linker and the libraries it links against), qemu-user to run the result,
/// and Rust's aarch64 standard library.
pub fn cross() -> anyhow::Result<()> {
    install_missing(&[
        "gcc-aarch64-linux-gnu",
        "libc6-dev-arm64-cross",
        "qemu-user-static",
    ])?;
    let targets = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if !targets.lines().any(|t| t == "aarch64-unknown-linux-gnu") {
        run(Command::new("rustup").args(["target", "add", "aarch64-unknown-linux-gnu"]))?;
    }
    Ok(())
}

/// Where qemu-system-* comes from when no apt source offers bookworm-backports yet.
const BACKPORTS_LIST: &str = "/etc/apt/sources.list.d/srcsel-backports.list";

/// What the VM harness needs on the host: `qemu` (qemu-system-x86 or
/// qemu-system-arm) from bookworm-backports (bookworm's 7.2 conflicts with a
/// backported qemu-utils 10, which our hosts already have), debootstrap and
/// mkfs.ext4 (`-d`) from bookworm.
pub fn vm(qemu: &str) -> anyhow::Result<()> {
    let have_qemu = installed(qemu);
    let missing: Vec<&str> = ["debootstrap", "e2fsprogs"]
        .into_iter()
        .filter(|p| !installed(p))
        .collect();
    if have_qemu && missing.is_empty() {
        return Ok(());
    }
    let t = std::time::Instant::now();
    if !have_qemu {
        let policy = output(Command::new("apt-cache").arg("policy"))?;
        if !policy.contains("bookworm-backports") {
            println!("setup: adding bookworm-backports ({BACKPORTS_LIST})");
            fs::write(
                BACKPORTS_LIST,
                "deb http://deb.debian.org/debian bookworm-backports main\n",
            )
            .with_context(|| format!("writing {BACKPORTS_LIST}"))?;
        }
    }
    run(Command::new("apt-get").args(["update", "-q"]))?;
    let install = |args: &[&str]| {
        println!("setup: installing {}", args.join(" "));
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    if !missing.is_empty() {
        install(&missing)?;
    }
    if !have_qemu {
        install(&["-t", "bookworm-backports", qemu])?;
    }
    println!(
        "setup: VM host packages ready in {:.0}s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

const BINFMT: &str = "/proc/sys/fs/binfmt_misc";
const BINFMT_AARCH64: &str = "/usr/lib/binfmt.d/qemu-aarch64.conf";

/// debootstrap of an arm64 root runs its programs (dpkg, maintainer scripts)
/// under qemu-user: the kernel hands arm64 executables to it through
/// binfmt_misc. On a systemd host, systemd-binfmt registers qemu-user-static's
/// entry at boot; without one (this machine), it is registered here the same
/// way, from the package's own binfmt.d file. Its `F` flag opens the
/// interpreter now, so it also works inside the chroot.
pub fn binfmt_arm64() -> anyhow::Result<()> {
    cross()?;
    let dir = Path::new(BINFMT);
    if !dir.join("register").exists() {
        run(Command::new("mount").args(["-t", "binfmt_misc", "binfmt_misc", BINFMT]))
            .context("mounting binfmt_misc (the arm64 image is built under qemu-user)")?;
    }
    let entry = dir.join("qemu-aarch64");
    let state = fs::read_to_string(&entry).unwrap_or_default();
    if state.starts_with("enabled") {
        // Without F the kernel looks for the interpreter inside the chroot.
        let fixed = state
            .lines()
            .any(|l| l.strip_prefix("flags: ").is_some_and(|f| f.contains('F')));
        if !fixed {
            bail!(
                "{} is registered without the F flag, so it cannot run programs in the arm64 \
                 image's chroot; register qemu-user-static's entry ({BINFMT_AARCH64}) instead",
                entry.display()
            );
        }
        return Ok(());
    }
    if entry.exists() {
        // Registered but disabled: by someone, on purpose; not ours to change.
        bail!(
            "{} is disabled; enable it (`echo 1 > {}`) to build the arm64 VM image",
            entry.display(),
            entry.display()
        );
    }
    let conf = fs::read_to_string(BINFMT_AARCH64)
        .with_context(|| format!("reading {BINFMT_AARCH64} (from qemu-user-static)"))?;
    let line = conf
        .lines()
        .find(|l| l.starts_with(":qemu-aarch64:"))
        .with_context(|| format!("{BINFMT_AARCH64} has no :qemu-aarch64: entry"))?;
    println!("setup: registering qemu-aarch64 with binfmt_misc ({BINFMT_AARCH64})");
    fs::write(dir.join("register"), line)
        .with_context(|| format!("registering {BINFMT_AARCH64} in {BINFMT}/register"))
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let o = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !o.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn nightly_sysroot() -> anyhow::Result<PathBuf> {
    let s = output(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))
        .context("the nightly toolchain is needed for eBPF (rustup toolchain install nightly)")?;
    Ok(PathBuf::from(s.trim()))
}

fn rust_src() -> anyhow::Result<()> {
    if nightly_sysroot()?
        .join("lib/rustlib/src/rust/library/core")
        .exists()
    {
        return Ok(());
    }
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

/// nightly's libLLVM (`libLLVM.so.22.1-rust-1.97.0-nightly`) and its major version.
fn nightly_llvm() -> anyhow::Result<(PathBuf, String)> {
    let lib = nightly_sysroot()?.join("lib");
    let so = fs::read_dir(&lib)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .with_context(|| format!("no libLLVM.so.* in {}", lib.display()))?;
    let name = so.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let major = name
        .trim_start_matches("libLLVM.so.")
        .split('.')
        .next()
        .unwrap_or_default()
        .to_owned();
    Ok((so, major))
}

/// Whether the bpf-linker on PATH runs and links the libLLVM `soname`.
fn bpf_linker_matches(soname: &str) -> bool {
    let Ok(path) = output(Command::new("sh").args(["-c", "command -v bpf-linker"])) else {
        return false;
    };
    let runs = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let needed = output(Command::new("readelf").args(["-d", path.trim()])).unwrap_or_default();
    runs && needed.contains(soname)
}

/// Builds bpf-linker against nightly's own libLLVM (there is no system LLVM):
/// LLVM_PREFIX is a durable folder whose lib/ links to the toolchain's library.
fn bpf_linker() -> anyhow::Result<()> {
    let (so, major) = nightly_llvm()?;
    let soname = so
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    if bpf_linker_matches(&soname) {
        return Ok(());
    }
    let prefix = llvm_prefix(&major);
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    for link in [lib.join("libLLVM.so"), lib.join(&soname)] {
        relink(&so, &link)?;
    }
    println!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against {} (LLVM {major})",
        so.display()
    );
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--locked",
            "--force",
            "--version",
            BPF_LINKER_VERSION,
        ])
        .args([
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        .env("LLVM_PREFIX", &prefix))?;
    if !bpf_linker_matches(&soname) {
        bail!("bpf-linker was built but does not run with {soname}; is ~/.cargo/bin on PATH?");
    }
    Ok(())
}

/// Where the LLVM links live: outside /tmp, since bpf-linker's RUNPATH points there.
fn llvm_prefix(major: &str) -> PathBuf {
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("/var/lib"));
    data.join("srcsel").join(format!("llvm-{major}"))
}

fn relink(target: &Path, link: &Path) -> anyhow::Result<()> {
    if fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(());
    }
    let _ = fs::remove_file(link);
    symlink(target, link)
        .with_context(|| format!("linking {} to {}", link.display(), target.display()))
}
