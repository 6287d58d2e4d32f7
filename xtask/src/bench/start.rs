//! What starting a command costs: `srcsel run` without and with a daemon
//! against the bare cgroup mechanism, back to back and on a quiet host, and
//! `srcsel status` and the binary's own start.
use std::{thread, time::Duration};

use srcsel_lab::Lab;

use super::{RUNS, median, peers, release_xtask, usb0_programs, wall};

/// A uid the bench's daemon config allows, for runs as a user.
pub const MEMBER: u32 = 4242;

/// The bare mechanism a run is measured against: a cgroup, one program,
/// `true` in it (srcsel's usb0 `sock_create`, pinned by a first run).
struct Mechanism {
    me: std::path::PathBuf,
    pin: std::path::PathBuf,
    parent: srcsel_lab::CgroupTree,
}

impl Mechanism {
    fn new(lab: &Lab) -> anyhow::Result<Self> {
        Ok(Self {
            me: release_xtask()?,
            pin: usb0_programs(lab)?.join("sock_create"),
            parent: peers::cgroup("mechanism")?,
        })
    }

    fn run(&self, lab: &Lab) -> anyhow::Result<f64> {
        wall(
            lab.client(&self.me)
                .arg("mechanism-run")
                .arg(&self.pin)
                .arg(&self.parent.0),
        )
    }
}

fn print_mechanism(plain: f64, mech: f64) {
    println!("  plain               {:>8.2} ms", plain * 1e3);
    println!(
        "  bare mechanism      {:>8.2} ms   (mkdir cgroup, attach one program, join, exec)",
        mech * 1e3
    );
}

/// `srcsel run` without a daemon (root sets the uplink up, makes the cgroup
/// and attaches, all in the command) against the bare mechanism, with the
/// daemon's `config`.
pub fn run_cost_alone(lab: &Lab, config: &std::path::Path) -> anyhow::Result<()> {
    let alone = || {
        let mut c = lab.srcsel(["run", "--via", "usb0", "--config"]);
        c.arg(config).args(["--", "true"]);
        c
    };
    crate::run(&mut alone())?;
    let mechanism = Mechanism::new(lab)?;
    let mut m = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..RUNS {
        m[0].push(wall(&mut lab.client("true"))?);
        m[1].push(mechanism.run(lab)?);
        m[2].push(wall(&mut alone())?);
    }
    let [plain, mech, alone] = m.map(|mut v| median(&mut v));
    println!("starting `true` without a daemon, median of {RUNS}:");
    print_mechanism(plain, mech);
    print_root(alone, mech, Some(1.5));
    Ok(())
}

/// `srcsel run` through the daemon (root, and a user the config allows)
/// against the bare mechanism: back to back, then one at a time.
pub fn run_cost_with_daemon(lab: &Lab) -> anyhow::Result<()> {
    let mechanism = Mechanism::new(lab)?;
    let warm = starts(lab, &mechanism, RUNS, Duration::ZERO)?;
    println!("starting `true` with a daemon running, median of {RUNS}:");
    print_starts(&warm, Some(0.5));
    let quiet = starts(lab, &mechanism, QUIET_RUNS, QUIET)?;
    println!(
        "starting `true` on a quiet host (each {} ms after the last start), median of {QUIET_RUNS}:",
        QUIET.as_millis()
    );
    print_starts(&quiet, None);
    status_cost(lab, warm[0])
}

/// One start at a time, as a person or a script starts commands: moving a
/// process into a cgroup (the mechanism's join, the daemon's move) waits
/// for an RCU grace period when no move has come lately (cgroup2 without
/// `favordynmods`, as systemd mounts it); back to back, moves share one.
const QUIET: Duration = Duration::from_millis(50);
const QUIET_RUNS: usize = 30;

/// Medians of `rounds` starts of `true` each way, `gap` before each:
/// plain, the mechanism, `srcsel run` as root, plain as the user, and
/// `srcsel run` as the user.
fn starts(
    lab: &Lab,
    mechanism: &Mechanism,
    rounds: usize,
    gap: Duration,
) -> anyhow::Result<[f64; 5]> {
    let srcsel = lab.srcsel.clone();
    let run = ["run", "--via", "usb0", "--", "true"];
    let mut m = [Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..rounds {
        let mut timed = |i: usize, f: &mut dyn FnMut() -> anyhow::Result<f64>| {
            thread::sleep(gap);
            m[i].push(f()?);
            anyhow::Ok(())
        };
        timed(0, &mut || wall(&mut lab.client("true")))?;
        timed(1, &mut || mechanism.run(lab))?;
        timed(2, &mut || wall(&mut lab.srcsel(run)))?;
        timed(3, &mut || wall(&mut lab.as_user(MEMBER, &[], "true")))?;
        timed(4, &mut || wall(lab.as_user(MEMBER, &[], &srcsel).args(run)))?;
    }
    Ok(m.map(|mut v| median(&mut v)))
}

/// The lines of [`starts`]' medians; `goal`: ms over the mechanism.
fn print_starts(&[plain, mech, root, user_plain, user]: &[f64; 5], goal: Option<f64>) {
    print_mechanism(plain, mech);
    print_root(root, mech, goal);
    let user_net = user - (user_plain - plain);
    println!(
        "  srcsel run (user)   {:>8.2} ms   ratio {:.2}x, {:+.2} ms (setpriv's own {:.2} ms taken out)",
        user_net * 1e3,
        user_net / mech,
        (user_net - mech) * 1e3,
        (user_plain - plain) * 1e3
    );
}

/// A root `srcsel run` against the mechanism; `goal`: ms over it.
fn print_root(root: f64, mech: f64, goal: Option<f64>) {
    let goal = goal.map(|g| format!(" (goal <= +{g})")).unwrap_or_default();
    println!(
        "  srcsel run (root)   {:>8.2} ms   ratio {:.2}x, {:+.2} ms over the mechanism{goal}",
        root * 1e3,
        root / mech,
        (root - mech) * 1e3
    );
}

/// `srcsel status` with three uplinks in the registry (usb0, eth0 and the
/// list of both, each given a slot by a run), and the binary's own start.
fn status_cost(lab: &Lab, plain: f64) -> anyhow::Result<()> {
    for via in ["eth0", "usb0,eth0"] {
        crate::run(&mut lab.srcsel(["run", "--via", via, "--", "true"]))?;
    }
    let (mut status, mut version) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        status.push(wall(&mut lab.srcsel(["status"]))?);
        version.push(wall(&mut lab.srcsel(["--version"]))?);
    }
    let (status, version) = (median(&mut status), median(&mut version));
    // Each started as `true` is (nsenter into the lab): the difference is srcsel's.
    println!("srcsel's own commands with a daemon running, over `true`, median of {RUNS}:");
    println!(
        "  status (3 uplinks)  {:>8.2} ms   (goal <= 1 ms)",
        (status - plain) * 1e3
    );
    println!(
        "  --version           {:>8.2} ms   (goal <= 0.3 ms)",
        (version - plain) * 1e3
    );
    Ok(())
}
