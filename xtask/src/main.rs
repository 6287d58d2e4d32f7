//! Developer tasks: `cargo xtask setup | build-ebpf | check | test | demo | dist | bench | vm`.
mod bench;
mod demo;
mod dist;
mod imports;
mod mechanism;
mod setup;
mod vm;

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "srcsel's developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (idempotent): Debian packages for
    /// the lab, nightly rust-src, and bpf-linker built against nightly's libLLVM.
    Setup,
    /// Build srcsel with its eBPF object, as `cargo build -p srcsel` does (srcsel/build.rs runs
    /// aya-build: nightly, bpfel-unknown-none, bpf-linker), and show where the object is.
    BuildEbpf,
    /// The fast tier, without root or the eBPF toolchain: `cargo fmt --check`, no import
    /// circle between srcsel's files, clippy (`-D warnings`, every target) and the unit
    /// tests. `.ci/run` runs it first.
    Check,
    /// Unit tests, then the root-only integration suite on the namespace lab, then the
    /// suites that need systemd as PID 1 (and kernel 6.1) in the qemu VM.
    Test {
        /// Skip the VM suites (said at the end, so a run without them is never mistaken
        /// for a full one).
        #[arg(long)]
        no_vm: bool,
        /// Extra arguments for the integration suite's test binary (a name filter, --nocapture, ...)
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Raise the lab and show which address the server sees with and without srcsel.
    Demo,
    /// Build the Debian packages for amd64 and arm64 into target/dist/ (man pages,
    /// completions, config, unit, hooks and iproute2 names included), and check the
    /// arm64 binary under qemu-user.
    Dist,
    /// Measure srcsel's overhead against a baseline taken in the same run.
    Bench {
        /// Only the failover part (health checks, lists), about 3 minutes.
        #[arg(long)]
        failover_only: bool,
        /// Only what starting a command and `srcsel status` cost with a daemon, about a minute.
        #[arg(long, conflicts_with = "failover_only")]
        start_only: bool,
        /// Only srcsel and its peers per connection (nftables, bound_dev_if, bind), about 2 minutes.
        #[arg(long, conflicts_with_all = ["failover_only", "start_only"])]
        peers_only: bool,
    },
    /// Run CMD as root in a Debian 12 VM (stock 6.1 kernel, systemd as PID 1); without
    /// CMD, a smoke check.
    ///
    /// qemu with TCG boots the image with this workspace shared (9p) at its own path, so
    /// test binaries built on the host run unchanged:
    /// `cargo xtask vm -- target/debug/deps/run-HASH --test-threads=1`. The smoke check
    /// shows the kernel, systemd's state, cgroup2, bpffs and D-Bus. The first use installs
    /// qemu (bookworm-backports) and builds the image (cached in /var/cache/srcsel/vm).
    /// The job's output, the guest's /tmp and journal are left in target/vm/.
    Vm {
        /// The guest's architecture: arm64 is a Raspberry Pi's (qemu's `virt` board, a
        /// Cortex-A72, Debian's arm64 6.1 kernel), its image built under qemu-user.
        #[arg(long, value_enum, default_value_t = vm::Arch::Amd64)]
        arch: vm::Arch,
        /// Instead of CMD: build these of the guest's suites and run them as `cargo xtask
        /// test` does (amd64: systemd, run, daemon, package; arm64: package and the core
        /// cases of run, daemon, ipv6, dns_redirect, health). Repeatable; CMD then goes to
        /// each test binary.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(vm::SUITES))]
        suite: Vec<String>,
        /// Every suite of the guest (as `cargo xtask test` runs them).
        #[arg(long, conflicts_with = "suite")]
        all_suites: bool,
        /// Seconds the VM may take, boot included, before it is killed.
        #[arg(long, default_value_t = vm::DEFAULT_TIMEOUT.as_secs())]
        timeout: u64,
        /// The command to run in the guest (after `--`), from the workspace root.
        #[arg(last = true)]
        cmd: Vec<String>,
    },
    /// (used by bench) connect+close to a loopback listener N times, print the seconds taken.
    #[command(hide = true)]
    ConnectLoop {
        count: u32,
        /// Over IPv6 (::1) instead of IPv4.
        #[arg(long)]
        v6: bool,
    },
    /// (used by bench) connect N times to a closed port, print the seconds taken.
    #[command(hide = true)]
    RefusedLoop {
        count: u32,
        target: std::net::SocketAddr,
        /// Bind each socket to this address first.
        #[arg(long)]
        bind: Option<std::net::IpAddr>,
    },
    /// (used by bench) send N 100-byte datagrams to TARGET, print the CPU seconds taken.
    #[command(hide = true)]
    UdpLoop {
        count: u32,
        target: std::net::SocketAddr,
        /// Bind the socket to this address first.
        #[arg(long)]
        bind: Option<std::net::IpAddr>,
    },
    /// (used by bench) ask a resolver for the lab's name N times, print the seconds taken.
    #[command(hide = true)]
    DnsLoop {
        count: u32,
        server: std::net::Ipv4Addr,
    },
    /// (used by bench, inside the lab) change usb0's address N times, print convergence times.
    #[command(hide = true)]
    ConvergeProbe { count: u32 },
    /// (used by bench) the bare mechanism of a run: cgroup, one program, `true` in it.
    #[command(hide = true)]
    MechanismRun { pin: PathBuf, parent: PathBuf },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::all(),
        Task::BuildEbpf => build_ebpf(),
        Task::Check => check(),
        Task::Test { no_vm, args } => test(no_vm, &args),
        Task::Demo => demo::run(),
        Task::Dist => dist::dist(),
        Task::Bench {
            failover_only,
            start_only,
            peers_only,
        } => bench::run(bench::Only {
            failover: failover_only,
            start: start_only,
            peers: peers_only,
        }),
        Task::Vm {
            arch,
            suite,
            all_suites,
            timeout,
            cmd,
        } if all_suites || !suite.is_empty() => {
            let suites: Vec<&str> = suite.iter().map(String::as_str).collect();
            vm::test_suites(arch.guest(), &suites, &cmd, Duration::from_secs(timeout))
        }
        Task::Vm {
            arch, timeout, cmd, ..
        } => vm::command(arch.guest(), &cmd, Duration::from_secs(timeout)),
        Task::ConnectLoop { count, v6 } => bench::connect_loop(count, v6),
        Task::RefusedLoop {
            count,
            target,
            bind,
        } => bench::refused_loop(count, target, bind),
        Task::UdpLoop {
            count,
            target,
            bind,
        } => bench::udp_loop(count, target, bind),
        Task::ConvergeProbe { count } => bench::converge_probe(count),
        Task::DnsLoop { count, server } => bench::dns_loop(count, server),
        Task::MechanismRun { pin, parent } => mechanism::run(&pin, &parent),
    }
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned()
}

pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// The same aya-build step a plain `cargo build -p srcsel` runs (srcsel/build.rs;
/// no second recipe to drift from it), then where it left the object: srcsel's
/// OUT_DIR, as cargo reports it even when the build was already fresh.
fn build_ebpf() -> anyhow::Result<()> {
    setup::toolchain()?;
    let o = cargo()
        .args([
            "build",
            "-p",
            "srcsel",
            "--message-format=json-render-diagnostics",
        ])
        .env_remove("AYA_BUILD_SKIP")
        .stderr(Stdio::inherit())
        .output()
        .context("starting cargo build")?;
    if !o.status.success() {
        bail!("cargo build -p srcsel failed: {}", o.status);
    }
    let object = ebpf_object(&cargo_messages(&o.stdout))?;
    let size = std::fs::metadata(&object)
        .with_context(|| format!("{}", object.display()))?
        .len();
    if size == 0 {
        bail!(
            "{} is the empty stub: the eBPF toolchain is missing (see the build warning)",
            object.display()
        );
    }
    println!(
        "eBPF object: {} ({size} bytes), embedded in target/debug/srcsel",
        object.display()
    );
    Ok(())
}

/// The JSON messages of a `cargo … --message-format=json…` run.
pub fn cargo_messages(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Where srcsel's build script left the eBPF object (its OUT_DIR), as cargo
/// reports it even when the build was already fresh.
pub fn ebpf_object(messages: &[serde_json::Value]) -> anyhow::Result<PathBuf> {
    messages
        .iter()
        .filter(|m| m["reason"] == "build-script-executed")
        .filter_map(|m| Some(PathBuf::from(m["out_dir"].as_str()?).join("srcsel")))
        .find(|object| object.is_file())
        .context("cargo reported no build script output holding the eBPF object")
}

/// Builds srcsel with its eBPF object and returns the binary's path.
pub fn build_srcsel(release: bool) -> anyhow::Result<PathBuf> {
    setup::toolchain()?;
    let mut c = cargo();
    c.args(["build", "-p", "srcsel"])
        .env_remove("AYA_BUILD_SKIP");
    if release {
        c.arg("--release");
    }
    run(&mut c)?;
    Ok(root()
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("srcsel"))
}

pub fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "{what} needs root: it builds network namespaces and attaches eBPF programs (try sudo -E cargo xtask ...)"
        );
    }
    Ok(())
}

/// What fails in seconds, before anything needs root, a lab or a VM. The
/// eBPF object is a stub here (AYA_BUILD_SKIP): nothing is loaded.
fn check() -> anyhow::Result<()> {
    run(cargo().args(["fmt", "--all", "--check"]))
        .context("formatting differs: `cargo fmt --all` fixes it")?;
    imports::check(&root().join("srcsel/src"))?;
    run(cargo()
        .args(["clippy", "--all-targets", "--features"])
        .arg("srcsel/vm-tests")
        .args(["--", "-D", "warnings"])
        .env("AYA_BUILD_SKIP", "1"))?;
    run(cargo().arg("test").env("AYA_BUILD_SKIP", "1"))
}

fn test(no_vm: bool, args: &[String]) -> anyhow::Result<()> {
    require_root("the integration suite")?;
    setup::all()?;
    // Default members: every crate but the eBPF one, which only builds for BPF.
    run(cargo().arg("test").env_remove("AYA_BUILD_SKIP"))?;
    // The same unit tests built for arm64 (a Raspberry Pi), run under qemu-user.
    dist::test_arm64()?;
    // Labs are independent (unique namespace names), so they run in parallel.
    run(cargo()
        .args([
            "test",
            "-p",
            "srcsel",
            "--features",
            "lab-tests",
            "--test",
            "run",
            "--test",
            "daemon",
            "--test",
            "daemon_admin",
            "--test",
            "faults",
            "--test",
            "refusals",
            "--test",
            "ownership",
            "--test",
            "access",
            "--test",
            "ipv6",
            "--test",
            "escapes",
            "--test",
            "isolate",
            "--test",
            "assign",
            "--test",
            "dns",
            "--test",
            "dns_redirect",
            "--test",
            "health",
            "--test",
            "failover",
            "--test",
            "replies",
            "--",
        ])
        .args(args))?;
    if no_vm {
        eprintln!(
            "xtask: the VM suites (amd64 and arm64, systemd as PID 1, kernel 6.1) were NOT run (--no-vm)"
        );
        return Ok(());
    }
    for arch in [vm::Arch::Amd64, vm::Arch::Arm64] {
        vm::test_suites(arch.guest(), &[], args, vm::DEFAULT_TIMEOUT)?;
    }
    Ok(())
}
