//! Failover: how long from the hotspot's upstream cut (silent: link and
//! lease stay) to the first new connection through eth0, against the
//! detection time configured; and what an ordered list costs a connect.
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use srcsel_lab::{ETH0_ADDR, Lab, SERVER, wait_until};

use super::{ROUNDS, median, seconds};

const CUTS: usize = 20;
/// A closed port of the lab's server: each connect is answered by a reset,
/// so the loop measures the path both ways and no server process.
pub(super) const CLOSED: &str = "198.51.100.10:9";
pub(super) const REFUSED: u32 = 5_000;

/// interval × down_after + timeout: the longest a verdict may take.
const DETECTION: Duration = Duration::from_millis(2500);

pub fn run(srcsel: &std::path::Path, me: &std::path::Path) -> anyhow::Result<()> {
    let mut lab = Lab::new(srcsel);
    let health = srcsel_lab::usb0_health(&[srcsel_lab::CHECK], "");
    lab.start_daemon_with_config(&health, &[]);
    wait_until("usb0's health to be up", Duration::from_secs(10), || {
        lab.uplink_status("usb0")["health"] == "up"
    });
    list_cost(&lab, me)?;
    cuts(&mut lab)
}

/// connect+refused through usb0 in `--via usb0,eth0` against `--via usb0`.
fn list_cost(lab: &Lab, me: &std::path::Path) -> anyhow::Result<()> {
    let (mut one, mut list) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        for (via, into) in [("usb0", &mut one), ("usb0,eth0", &mut list)] {
            let mut c = lab.srcsel(["run", "--via", via, "--"]);
            c.arg(me)
                .args(["refused-loop", &REFUSED.to_string(), CLOSED]);
            into.push(seconds(&mut c)?);
        }
    }
    let (o, l) = (median(&mut one), median(&mut list));
    println!("TCP connect+reset through usb0, {REFUSED} per round, median of {ROUNDS} rounds:");
    println!(
        "  --via usb0          {:>8.0} conn/s",
        f64::from(REFUSED) / o
    );
    println!(
        "  --via usb0,eth0     {:>8.0} conn/s",
        f64::from(REFUSED) / l
    );
    println!("  ratio (time)        {:>8.3}x   (goal <= 1.01x)", l / o);
    Ok(())
}

/// CUTS silent cuts while a run through `usb0,eth0` connects every 50 ms.
fn cuts(lab: &mut Lab) -> anyhow::Result<()> {
    let script = lab.dir.join("every50ms.py");
    std::fs::write(
        &script,
        format!(
            "import socket, time\nwhile True:\n    try:\n        s = socket.create_connection((\"{SERVER}\", 8080), timeout=0.2)\n        print(time.time(), s.getsockname()[0], flush=True)\n        s.close()\n    except OSError:\n        pass\n    time.sleep(0.05)\n"
        ),
    )?;
    let mut run = lab.srcsel(["run", "--via", "usb0,eth0", "--", "python3"]);
    lab.spawn("every50ms", run.arg(&script));
    let usb0 = lab.usb0_addr();
    let (mut over, mut back) = (Vec::new(), Vec::new());
    for _ in 0..CUTS {
        wait_for(lab, &usb0, now())?;
        let t = now();
        lab.cut_hotspot_upstream();
        over.push(wait_for(lab, ETH0_ADDR, t)? - t);
        let t = now();
        lab.restore_hotspot_upstream();
        back.push(wait_for(lab, &usb0, t)? - t);
    }
    lab.stop("every50ms");
    let own = own_part(&lab.log("daemon"));
    println!(
        "failover of a run --via usb0,eth0 over {CUTS} silent upstream cuts (a round every 1 s, down after 2, timeout 500 ms):"
    );
    println!(
        "  to eth0             median {:>6.2} s, worst {:>6.2} s   (detection bound {:.2} s + the 50 ms loop)",
        median(&mut over),
        worst(&over),
        DETECTION.as_secs_f64()
    );
    println!(
        "  back to usb0        median {:>6.2} s, worst {:>6.2} s   (up after 2 rounds)",
        median(&mut back),
        worst(&back)
    );
    println!(
        "  srcsel's own part   median {:>6.2} ms, worst {:>6.2} ms   (the pass after a verdict; goal < 100 ms)",
        median(&mut own.clone()),
        worst(&own)
    );
    Ok(())
}

fn worst(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// When the loop first connected from `addr` after `since` (unix seconds).
fn wait_for(lab: &Lab, addr: &str, since: f64) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let found = lab.log("every50ms").lines().find_map(|l| {
            let (t, a) = l.split_once(' ')?;
            let t: f64 = t.parse().ok()?;
            (t > since && a == addr).then_some(t)
        });
        if let Some(t) = found {
            return Ok(t);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!("no connection from {addr} within 15 s")
}

/// The daemon's passes after a health verdict, in ms (its debug lines).
fn own_part(log: &str) -> Vec<f64> {
    log.lines()
        .filter_map(|l| debug_ms(l.split_once("reconciled (health verdict) in ")?.1))
        .collect()
}

/// A debug-printed duration (`8.59ms`, `950.1µs`, `1.2s`) in ms.
fn debug_ms(s: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("µs") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("ns") {
        (n, 1e-6)
    } else {
        (s.strip_suffix('s')?, 1e3)
    };
    Some(num.parse::<f64>().ok()? * scale)
}

/// (inside the lab) connect to `target`, a closed port, `count` times.
pub fn refused_loop(
    count: u32,
    target: SocketAddr,
    bind: Option<std::net::IpAddr>,
) -> anyhow::Result<()> {
    use socket2::{Domain, Socket, Type};
    let t = Instant::now();
    for _ in 0..count {
        let s = Socket::new(Domain::for_address(target), Type::STREAM, None)?;
        if let Some(addr) = bind {
            s.bind(&SocketAddr::new(addr, 0).into())?;
        }
        match s.connect(&target.into()) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            other => {
                other.with_context(|| format!("{target} should refuse"))?;
                anyhow::bail!("{target} accepted: it should be closed");
            }
        }
    }
    println!("{}", t.elapsed().as_secs_f64());
    Ok(())
}
