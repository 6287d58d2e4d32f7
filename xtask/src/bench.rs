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

use crate::lab::Lab;

const CONNECTS: u32 = 20_000;
const ROUNDS: usize = 5;
const RUNS: usize = 40;

pub fn run() -> anyhow::Result<()> {
    crate::require_root("the benchmark")?;
    crate::setup::all()?;
    let srcsel = crate::build_srcsel(true)?;
    let me = std::env::current_exe()?;
    let lab = Lab::new(&srcsel);

    // 1. Per-connection cost of the programs: loopback connect+close from an
    // assigned cgroup (every socket passes sock_create and connect4) vs not.
    let (mut plain, mut assigned) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        plain.push(seconds(
            lab.client(&me)
                .args(["connect-loop", &CONNECTS.to_string()]),
        )?);
        assigned.push(seconds(
            lab.srcsel(["run", "--via", "usb0", "--"])
                .arg(&me)
                .args(["connect-loop", &CONNECTS.to_string()]),
        )?);
    }
    let (p, a) = (median(&mut plain), median(&mut assigned));
    println!("loopback TCP connect+close, {CONNECTS} per round, median of {ROUNDS} rounds:");
    println!(
        "  unassigned cgroup   {:>8.0} conn/s",
        f64::from(CONNECTS) / p
    );
    println!(
        "  assigned to usb0    {:>8.0} conn/s",
        f64::from(CONNECTS) / a
    );
    println!("  ratio (time)        {:>8.3}x   (goal <= 1.05x)", a / p);

    // 2. What `srcsel run` adds to starting a command.
    let (mut bare, mut wrapped) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        bare.push(wall(&mut lab.client("true"))?);
        wrapped.push(wall(
            &mut lab.srcsel(["run", "--via", "usb0", "--", "true"]),
        )?);
    }
    let (b, w) = (median(&mut bare), median(&mut wrapped));
    println!("starting `true` in the client namespace, median of {RUNS}:");
    println!("  plain               {:>8.2} ms", b * 1e3);
    println!("  srcsel run --via    {:>8.2} ms", w * 1e3);
    println!(
        "  added               {:>8.2} ms   (goal < 5 ms)",
        (w - b) * 1e3
    );
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
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
pub fn connect_loop(count: u32) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    let t = Instant::now();
    for _ in 0..count {
        let s = TcpStream::connect(addr)?;
        reset_on_close(&s)?;
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
