//! Assigned cgroups: what connect+close costs in one of 1, 10 and 100
//! assigned cgroups against an unassigned sibling, and how soon a cgroup
//! assigned with `srcsel assign` (created by the daemon) is steered.
use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail};
use srcsel_lab::{Lab, cgroup2_root, unique, url, wait_until};

use super::{CONNECTS, ROUNDS, in_cgroup, median, seconds, wall};

const NEW: usize = 10;

/// Runs with the lab's daemon up, its config at `config`; leaves the config
/// and the cgroups as they were.
pub fn run(lab: &Lab, config: &Path, me: &Path) -> anyhow::Result<()> {
    let rel = format!("srcsel-bench-assign-{}", std::process::id());
    let root = cgroup2_root().join(&rel);
    fs::create_dir(&root)?;
    fs::create_dir(root.join("plain"))?;
    let before = fs::read_to_string(config)?;
    let result = measure(lab, config, me, &rel, &root, &before);
    fs::write(config, &before)?;
    reload(lab)?;
    // The daemon detaches what is no longer assigned; then the tree goes.
    wait_until("the bench's links gone", Duration::from_secs(20), || {
        links(lab)
            .iter()
            .all(|l| !l.contains(":usb0:strict") || !mine(&root, l))
    });
    remove_tree(&root);
    result
}

fn measure(
    lab: &Lab,
    config: &Path,
    me: &Path,
    rel: &str,
    root: &Path,
    before: &str,
) -> anyhow::Result<()> {
    println!(
        "loopback IPv4 TCP connect+close in one of N assigned cgroups vs an unassigned \
         sibling, {CONNECTS} per round, median of {ROUNDS}:"
    );
    for n in [1, 10, 100] {
        let mut text = before.to_owned();
        for i in 0..n {
            text += &format!("\n[[assign]]\ncgroup = \"{rel}/c{i}\"\nvia = \"usb0\"\n");
        }
        fs::write(config, text)?;
        reload(lab)?;
        let cgs: Vec<PathBuf> = (0..n).map(|i| root.join(format!("c{i}"))).collect();
        wait_until(
            &format!("{n} cgroups attached"),
            Duration::from_secs(60),
            || attached(lab, &cgs),
        );
        let (mut plain, mut assigned) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            plain.push(seconds(&mut connect_loop_in(lab, &root.join("plain"), me))?);
            assigned.push(seconds(&mut connect_loop_in(lab, &cgs[n - 1], me))?);
        }
        let (p, a) = (median(&mut plain), median(&mut assigned));
        println!(
            "  {n:>3} assigned        ratio (time) {:>6.3}x   (goal <= 1.05x)",
            a / p
        );
    }
    fs::write(config, before)?;
    reload(lab)?;

    // A cgroup that does not exist yet: `srcsel assign` returns once the
    // daemon has made and attached it; its first connection is then steered.
    let usb0 = lab.usb0_addr();
    let mut took = Vec::new();
    for k in 0..NEW {
        let cg = format!("{rel}/new{k}");
        let t = wall(
            lab.srcsel(["assign", "--cgroup", &cg, "--via", "usb0", "--config"])
                .arg(config)
                .stderr(std::process::Stdio::null()),
        )?;
        let token = unique("bench-new");
        let o = in_cgroup(lab, &cgroup2_root().join(&cg), "curl")
            .args(["-sf", "-m5", "-o", "/dev/null", &url(&token)])
            .output()?;
        if !o.status.success() || lab.source_of(&token) != usb0 {
            bail!("the first connection from new cgroup {cg} was not steered through usb0");
        }
        took.push(t);
    }
    println!(
        "a new cgroup: `srcsel assign --cgroup` until it exists, attached (its first \
         connection then leaves through usb0), median of {NEW}:"
    );
    println!("  assign to steered   {:>8.2} ms", median(&mut took) * 1e3);
    Ok(())
}

/// SIGHUP to the lab's daemon: it reads its config again.
fn reload(lab: &Lab) -> anyhow::Result<()> {
    let pid = lab.pid("daemon").context("the daemon's pid")?;
    // SAFETY: kill(2) on the lab's daemon.
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) } != 0 {
        bail!("SIGHUP to the daemon: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The names of the pinned link folders of the client namespace.
fn links(lab: &Lab) -> Vec<String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some(bpffs) = srcsel_lab::mount_point(&mountinfo, "bpf") else {
        return Vec::new();
    };
    let dir = bpffs
        .join("srcsel")
        .join(format!("net-{}", lab.netns_cookie()))
        .join("links");
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect()
}

/// Whether link folder `name` belongs to a cgroup under `root`.
fn mine(root: &Path, name: &str) -> bool {
    let inos: Vec<u64> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok().map(|m| m.ino()))
        .collect();
    inos.iter().any(|i| name.starts_with(&format!("cg-{i}:")))
}

fn attached(lab: &Lab, cgs: &[PathBuf]) -> bool {
    let links = links(lab);
    cgs.iter().all(|cg| {
        fs::metadata(cg).is_ok_and(|m| {
            links
                .iter()
                .any(|l| l.starts_with(&format!("cg-{}:usb0:strict", m.ino())))
        })
    })
}

fn connect_loop_in(lab: &Lab, cg: &Path, me: &Path) -> Command {
    let mut c = in_cgroup(lab, cg, me);
    c.args(["connect-loop", &CONNECTS.to_string()]);
    c
}

/// Removes a cgroup tree, deepest first (its processes have all ended).
fn remove_tree(dir: &Path) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path());
        }
    }
    let _ = fs::remove_dir(dir);
}
