//! `cargo xtask bench`: srcsel's costs as ratios against a baseline measured
//! in the same run, on the lab (never the host's own namespace).
use std::{
    io,
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd,
    process::{Command, Stdio},
    thread,
    time::Instant,
};

use anyhow::{Context as _, bail};
use srcsel_lab::Lab;

mod assign;
mod dns;
mod failover;
mod peers;
mod start;
mod stats;

pub use dns::dns_loop;
pub use failover::refused_loop;
pub use peers::udp_loop;

const CONNECTS: u32 = 20_000;
const ROUNDS: usize = 5;
const RUNS: usize = 200;

/// Which one part alone (`cargo xtask bench --*-only`), if any.
pub struct Only {
    pub failover: bool,
    pub start: bool,
    pub peers: bool,
}

pub fn run(only: Only) -> anyhow::Result<()> {
    crate::require_root("the benchmark")?;
    // `cargo run` (so `cargo xtask`) sets it for its own libraries: every
    // program the bench starts would search it for each library it loads,
    // ~150 failed lookups, which no host pays.
    // SAFETY: no other thread runs yet.
    unsafe { std::env::remove_var("LD_LIBRARY_PATH") };
    crate::setup::all()?;
    let srcsel = crate::build_srcsel(true)?;
    let me = std::env::current_exe()?;
    if only.failover {
        return failover::run(&srcsel, &me);
    }
    if only.start {
        return daemon(true);
    }
    let lab = Lab::new(&srcsel);
    peers::run(&lab, &release_xtask()?)?;
    if only.peers {
        return Ok(());
    }

    drop(lab);
    dns::run(&srcsel, &me)?;
    daemon(false)?;
    failover::run(&srcsel, &me)
}

const CHANGES: u32 = 200;
const IDLE_SECS: u64 = 10;

/// The daemon: what a run and status cost with it, how fast it follows an
/// address change, and what it costs idle (`start_only`: the first two).
fn daemon(start_only: bool) -> anyhow::Result<()> {
    let srcsel = crate::build_srcsel(true)?;
    let me = std::env::current_exe()?;
    let mut lab = Lab::new(&srcsel);
    // The probe owns usb0's address from here on; dhcpcd would fight it
    // (and removes its lease when it stops).
    lab.stop("dhcpcd-usb0");
    let c = lab.ns("client");
    srcsel_lab::ip(&format!("-n {c} addr replace 10.99.0.200/24 dev usb0"));
    srcsel_lab::ip(&format!(
        "-n {c} route replace default via 10.99.0.1 dev usb0 metric 3000"
    ));
    let config = lab.dir.join("srcsel.toml");
    std::fs::write(
        &config,
        format!(
            "[[uplink]]\nname = \"usb0\"\ndns = [\"10.99.0.1\"]\n\n[[allow]]\nuser = {}\n",
            start::MEMBER
        ),
    )?;
    start::run_cost_alone(&lab, &config)?;
    // At the packaged service's log level: a debug line per request is not
    // what a host pays.
    lab.start_daemon_with_env(
        &[("SRCSEL_LOG", "info")],
        &["--config", &config.display().to_string()],
    );
    start::run_cost_with_daemon(&lab)?;
    if start_only {
        return Ok(());
    }
    assign::run(&lab, &config, &me)?;
    let o = lab
        .client(&me)
        .args(["converge-probe", &CHANGES.to_string()])
        .output()?;
    if !o.status.success() {
        bail!("converge-probe: {}", String::from_utf8_lossy(&o.stderr));
    }
    print!("{}", String::from_utf8_lossy(&o.stdout));

    let pid = lab.pid("daemon").context("daemon pid")?;
    let before = srcsel_lab::switches(pid);
    thread::sleep(std::time::Duration::from_secs(IDLE_SECS));
    let after = srcsel_lab::switches(pid);
    let rss = proc_field(pid, "VmRSS:")?;
    println!("idle daemon over {IDLE_SECS} s:");
    println!(
        "  wakeups             {:>8.2} /s   (goal 0 from polling)",
        srcsel_lab::wakeups(&before, &after) as f64 / IDLE_SECS as f64
    );
    println!(
        "  RSS                 {:>8.1} MB   (goal < 15 MB)",
        rss as f64 / 1024.0
    );
    Ok(())
}

fn proc_field(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .with_context(|| format!("{field} in /proc/{pid}/status"))
}

/// Inside the client namespace: moves usb0 between two addresses `count`
/// times (one `ip -batch` command pair each) and times until srcsel's
/// `from <new>` rule appears in `ip monitor rule`. srcsel writes the eBPF
/// state before the rules, so the rule's arrival bounds all three.
pub fn converge_probe(count: u32) -> anyhow::Result<()> {
    use std::{
        io::{BufRead as _, BufReader, Write as _},
        sync::mpsc,
        time::Duration,
    };
    let mut monitor = Command::new("ip")
        .args(["monitor", "rule"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let out = monitor.stdout.take().context("monitor stdout")?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut batch = Command::new("ip")
        .args(["-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let result = (|| {
        let mut stdin = batch.stdin.take().context("batch stdin")?;
        let shown = Command::new("ip")
            .args(["-4", "-o", "addr", "show", "dev", "usb0"])
            .output()?;
        let mut old = String::from_utf8_lossy(&shown.stdout)
            .split_whitespace()
            .nth(3)
            .map(str::to_owned);
        let mut times = Vec::new();
        for i in 0..count {
            let new = ["10.99.0.201", "10.99.0.202"][i as usize % 2];
            let t = Instant::now();
            if let Some(old) = &old {
                writeln!(stdin, "addr del {old} dev usb0")?;
            }
            writeln!(stdin, "addr add {new}/24 dev usb0")?;
            stdin.flush()?;
            let wanted = format!("from {new} lookup");
            loop {
                let line = rx.recv_timeout(Duration::from_secs(5)).with_context(|| {
                    // Tell a lost monitor message from a rule srcsel never added.
                    let rules = Command::new("ip").arg("rule").output();
                    let there = rules.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&wanted));
                    format!("no `{wanted}` event within 5 s after change {i} (the rule is there now: {there})")
                })?;
                if line.contains(&wanted) && !line.starts_with("Deleted") {
                    break;
                }
            }
            times.push(t.elapsed().as_secs_f64());
            old = Some(format!("{new}/24"));
        }
        anyhow::Ok(times)
    })();
    let _ = batch.kill();
    let _ = monitor.kill();
    let _ = (batch.wait(), monitor.wait());
    let mut times = result?;
    let p50 = percentile(&mut times, 0.50);
    let p99 = percentile(&mut times, 0.99);
    println!("convergence after an address change on usb0, {count} changes:");
    println!("  p50                 {:>8.2} ms", p50 * 1e3);
    println!(
        "  p99                 {:>8.2} ms   (goal < 50 ms)",
        p99 * 1e3
    );
    Ok(())
}

/// Where srcsel pinned the lab's usb0 strict program set.
fn usb0_programs(lab: &Lab) -> anyhow::Result<std::path::PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let bpffs = srcsel_lab::mount_point(&mountinfo, "bpf").context("no bpffs")?;
    Ok(bpffs
        .join("srcsel")
        .join(format!("net-{}", lab.netns_cookie()))
        .join("usb0/strict"))
}

/// This tool built optimised like the srcsel binary it is compared with:
/// what the loops and the bare mechanism run as.
fn release_xtask() -> anyhow::Result<std::path::PathBuf> {
    crate::run(crate::cargo().args(["build", "--release", "-p", "xtask"]))?;
    Ok(crate::root().join("target/release/xtask"))
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `program` started in the cgroup `cg`, in the lab's client namespace (the
/// shell joins it, then becomes the program).
fn in_cgroup(lab: &Lab, cg: &std::path::Path, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = lab.client("sh");
    c.arg("-c")
        .arg(r#"echo $$ >"$0/cgroup.procs" && exec "$@""#)
        .arg(cg)
        .arg(program);
    c
}

fn wall(cmd: &mut Command) -> anyhow::Result<f64> {
    let t = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("{cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?}: {status}");
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Runs a connect-loop command and reads the seconds it reports.
fn seconds(cmd: &mut Command) -> anyhow::Result<f64> {
    let o = cmd.output().with_context(|| format!("{cmd:?}"))?;
    if !o.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .context("connect-loop output")
}

/// Connects to a loopback listener `count` times; prints the seconds taken.
/// Connect and accept alternate on one thread, so the backlog never fills:
/// a full backlog drops SYNs into 1 s retransmits, which would swamp what
/// is measured.
pub fn connect_loop(count: u32, v6: bool) -> anyhow::Result<()> {
    let listener = TcpListener::bind(if v6 { "[::1]:0" } else { "127.0.0.1:0" })?;
    let addr = listener.local_addr()?;
    let t = Instant::now();
    for _ in 0..count {
        let client = TcpStream::connect(addr)?;
        let (server, _) = listener.accept()?;
        reset_on_close(&client)?;
        drop(client);
        drop(server);
    }
    println!("{}", t.elapsed().as_secs_f64());
    Ok(())
}

/// SO_LINGER 0: close sends RST, so no TIME_WAIT piles up across rounds.
fn reset_on_close(s: &TcpStream) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt with a correctly sized linger struct.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
