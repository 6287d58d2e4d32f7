//! `srcsel assign` under a real systemd (PID 1): run by `cargo xtask test`
//! inside the qemu VM (Debian 12, its stock 6.1 kernel). srcsel's daemon
//! and the test's units run in the lab's client namespace
//! (`NetworkNamespacePath=`); systemd attaches srcsel's programs through
//! the drop-in. Judged by what the server saw.
use std::{fs, path::PathBuf, process::Command, time::Duration};

use srcsel_lab::{ETH0_ADDR, Lab, SERVER, ok, out, stderr, unique, url, wait_until};

struct Setup {
    lab: Lab,
    config: PathBuf,
    netns: String,
    slice: String,
}

fn setup() -> Setup {
    assert!(
        fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd"),
        "this suite needs systemd as PID 1: `cargo xtask test` runs it in the VM"
    );
    let lab = Lab::new(env!("CARGO_BIN_EXE_srcsel"));
    let config = lab.dir.join("srcsel.toml");
    fs::write(&config, "[[uplink]]\nname = \"usb0\"\n").unwrap();
    let netns = format!("/run/netns/{}", lab.ns("client"));
    let slice = format!("{}.slice", unique("hs"));
    let s = Setup {
        lab,
        config,
        netns,
        slice,
    };
    s.install_daemon_unit();
    ok(Command::new("systemctl").args(["start", "srcsel.service"]));
    s
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = out(Command::new("systemctl").args(["stop", "srcsel.service", &self.slice]));
        let _ = out(self
            .lab
            .srcsel(["unassign", "--slice", &self.slice, "--config"])
            .arg(&self.config));
        let _ = fs::remove_file(DAEMON_UNIT);
        let _ = fs::remove_dir_all(UNIT_BIN_DIR);
        let _ = out(Command::new("systemctl").arg("daemon-reload"));
    }
}

/// A runtime unit file, not a transient unit: the drop-ins' `Wants=` keep
/// srcsel.service loaded, and only a unit with a file can be started again.
const DAEMON_UNIT: &str = "/run/systemd/system/srcsel.service";

/// Where the unit's binary is copied: the shipped unit's `ProtectHome=yes`
/// hides a checkout under /root or /home from the service, as it would an
/// installed binary's own folder if it lived there. (Not /usr/bin, where the
/// package suite installs its own.)
const UNIT_BIN_DIR: &str = "/usr/local/lib/srcsel-test";

impl Setup {
    /// `srcsel ARGS --config <the test's config>`, which must succeed.
    fn srcsel_ok(&self, args: &[&str]) {
        let o = out(self.lab.srcsel(args).arg("--config").arg(&self.config));
        assert!(o.status.success(), "srcsel {args:?}: {}", stderr(&o));
    }

    /// The shipped unit, hardening included, with the lab's binary (copied
    /// to [`UNIT_BIN_DIR`]), config and namespace.
    fn install_daemon_unit(&self) {
        let bin = PathBuf::from(UNIT_BIN_DIR).join("srcsel");
        fs::create_dir_all(UNIT_BIN_DIR).unwrap();
        fs::copy(&self.lab.srcsel, &bin).unwrap();
        let shipped = include_str!("../contrib/srcsel.service");
        let mut unit = String::new();
        for line in shipped.lines() {
            if line.starts_with("ExecStart=") {
                unit += &format!(
                    "ExecStart={} daemon --config {}\nNetworkNamespacePath={}\n",
                    bin.display(),
                    self.config.display(),
                    self.netns
                );
            } else if line.starts_with("Environment=SRCSEL_LOG") {
                unit += "Environment=SRCSEL_LOG=debug\n";
            } else {
                unit += line;
                unit.push('\n');
            }
        }
        fs::write(DAEMON_UNIT, unit).unwrap();
        ok(Command::new("systemctl").arg("daemon-reload"));
    }

    /// `systemd-run --slice=SLICE` in the client namespace: curl's source as the server saw it.
    fn curl_in_slice(&self, extra: &[&str]) -> String {
        let t = unique("sd");
        let o = out(Command::new("systemd-run")
            .args(["--wait", "--pipe", "--quiet"])
            .arg(format!("--slice={}", self.slice))
            .arg(format!("--property=NetworkNamespacePath={}", self.netns))
            .args(extra)
            .args(["curl", "-sf", "-m5", &url(&t)]));
        assert!(o.status.success(), "curl in {}: {}", self.slice, stderr(&o));
        self.lab.source_of(&t)
    }
}

#[test]
fn an_assigned_slice_steers_what_systemd_starts_in_it() {
    let s = setup();
    let usb0 = s.lab.usb0_addr();
    s.srcsel_ok(&["assign", "--slice", &s.slice, "--via", "usb0"]);
    let dropin = format!("/etc/systemd/system.control/{}.d/50-srcsel.conf", s.slice);
    assert!(
        fs::read_to_string(&dropin)
            .unwrap()
            .contains("BPFProgram=connect4:")
    );
    assert_eq!(s.curl_in_slice(&[]), usb0, "systemd-run --slice");
    // A unit that keeps the slice (and so its counters) while the others run.
    ok(Command::new("systemd-run").args([
        "--quiet",
        &format!("--slice={}", s.slice),
        "sleep",
        "600",
    ]));
    assert_eq!(s.curl_in_slice(&[]), usb0, "a second unit");
    // Beside systemd's own cgroup programs on the same unit (IPAddressDeny=).
    assert_eq!(
        s.curl_in_slice(&["--property=IPAddressDeny=192.0.2.1"]),
        usb0,
        "a unit denying another address"
    );
    let t = unique("deny");
    let o = out(Command::new("systemd-run")
        .args(["--wait", "--pipe", "--quiet"])
        .arg(format!("--slice={}", s.slice))
        .arg(format!("--property=NetworkNamespacePath={}", s.netns))
        .arg(format!("--property=IPAddressDeny={SERVER}"))
        .args(["curl", "-sf", "-m5", &url(&t)]));
    assert!(
        !o.status.success(),
        "IPAddressDeny= of the server still holds"
    );
    assert!(s.lab.seen(&t).is_empty());
    // Live and counted through the programs systemd attached: every connect
    // (the one IPAddressDeny= dropped was bound by srcsel first).
    let o = out(s
        .lab
        .srcsel(["status", "--json", "--config"])
        .arg(&s.config));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["assigned"][0]["live"], true, "{v}");
    let c = &v["assigned"][0]["counters"];
    assert_eq!(c["connections"], 4, "{v}");
    assert!(
        c["bytes_out"].as_u64() > Some(0) && c["bytes_in"].as_u64() > Some(0),
        "{v}"
    );
    // Unassigned: the drop-in goes; a new unit in the slice uses the primary.
    ok(Command::new("systemctl").args(["stop", &s.slice]));
    s.srcsel_ok(&["unassign", "--slice", &s.slice]);
    assert!(!std::path::Path::new(&dropin).exists());
    assert_eq!(s.curl_in_slice(&[]), ETH0_ADDR, "after unassign");
    assert_eq!(s.lab.foreign_sources("r1").0, 0);
    // The daemon's lines reach the journal with their level as priority.
    let journal = ok(Command::new("journalctl").args([
        "-u",
        "srcsel.service",
        "-o",
        "json",
        "--no-pager",
        "-n",
        "2000",
    ]));
    let entries: Vec<serde_json::Value> = journal
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let priority_of = |start: &str| {
        let e = entries
            .iter()
            .rev()
            .find(|e| e["MESSAGE"].as_str().is_some_and(|m| m.starts_with(start)));
        e.unwrap_or_else(|| panic!("no journal entry starting {start:?}"))["PRIORITY"].clone()
    };
    assert_eq!(priority_of("watching links"), "6", "info");
    assert_eq!(priority_of("reconciled ("), "7", "debug");
    // A message of several lines (aya's feature probe) keeps its priority on each.
    assert_eq!(priority_of("    bpf_name:"), "7", "a continuation line");
}

#[test]
fn an_assigned_unit_is_steered_across_restarts_and_after_down_and_a_new_daemon() {
    let mut s = setup();
    let usb0 = s.lab.usb0_addr();
    let unit = format!("{}.service", unique("app"));
    s.srcsel_ok(&["assign", "--unit", &unit, "--via", "usb0"]);
    for i in 0..3 {
        let t = unique("unit");
        ok(Command::new("systemd-run")
            .arg(format!("--unit={unit}"))
            .args(["--wait", "--quiet"])
            .arg(format!("--property=NetworkNamespacePath={}", s.netns))
            .args(["curl", "-sf", "-m5", &url(&t)]));
        assert_eq!(s.lab.source_of(&t), usb0, "start {i} of {unit}");
    }
    // down with the daemon stopped, then a new daemon: still steered after a renumbering.
    s.srcsel_ok(&["assign", "--slice", &s.slice, "--via", "usb0"]);
    ok(Command::new("systemd-run")
        .arg(format!("--slice={}", s.slice))
        .arg(format!("--property=NetworkNamespacePath={}", s.netns))
        .args(["sleep", "600"]));
    ok(Command::new("systemctl").args(["stop", "srcsel.service"]));
    s.srcsel_ok(&["down"]);
    ok(Command::new("systemctl").args(["start", "srcsel.service"]));
    s.lab.renumber_hotspot("10.99.7");
    let usb0 = s.lab.usb0_addr();
    wait_until("the new lease in force", Duration::from_secs(20), || {
        s.lab.client_out("ip rule").contains(&usb0)
    });
    assert_eq!(
        s.curl_in_slice(&[]),
        usb0,
        "the slice after down, a new daemon and a renumbering"
    );
    assert_eq!(s.lab.foreign_sources("r1").0, 0);
}

#[test]
fn a_unit_that_connects_at_boot_waits_for_srcsel_and_never_uses_the_primary() {
    let s = setup();
    let usb0 = s.lab.usb0_addr();
    s.srcsel_ok(&["assign", "--slice", &s.slice, "--via", "usb0"]);
    // As after a reboot: no daemon, no pins, no rules (`down` with a config
    // that assigns nothing removes them all); the real config still assigns.
    ok(Command::new("systemctl").args(["stop", &s.slice, "srcsel.service"]));
    let empty = s.lab.dir.join("empty.toml");
    fs::write(&empty, "").unwrap();
    let o = out(s.lab.srcsel(["down", "--config"]).arg(&empty));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!std::path::Path::new("/sys/fs/bpf/srcsel/host").exists());
    // A unit of the slice that connects the moment it starts: starting it
    // starts srcsel first (the slice's drop-in), and waits for READY=1.
    let app = format!("{}.service", unique("boot"));
    let t = unique("boot");
    let unit_file = format!("/run/systemd/system/{app}");
    fs::write(
        &unit_file,
        format!(
            "[Service]\nType=oneshot\nSlice={}\nNetworkNamespacePath={}\nExecStart=curl -sf -m5 {}\n",
            s.slice,
            s.netns,
            url(&t)
        ),
    )
    .unwrap();
    ok(Command::new("systemctl").arg("daemon-reload"));
    let started = out(Command::new("systemctl").args(["start", &app]));
    let _ = fs::remove_file(&unit_file);
    assert!(
        started.status.success(),
        "the unit at boot: {}",
        stderr(&started)
    );
    assert_eq!(s.lab.source_of(&t), usb0, "the unit's first connection");
    assert!(
        out(Command::new("systemctl").args(["is-active", "srcsel.service"]))
            .status
            .success()
    );
    assert_eq!(s.lab.foreign_sources("r1").0, 0);
}

/// `systemctl show -p PROP --value UNIT`.
fn unit_prop(unit: &str, prop: &str) -> String {
    out(Command::new("systemctl").args(["show", "-p", prop, "--value", unit]))
        .stdout
        .iter()
        .map(|b| *b as char)
        .collect::<String>()
        .trim()
        .to_owned()
}

fn active(unit: &str) -> bool {
    unit_prop(unit, "ActiveState") == "active"
}

#[test]
fn a_run_is_a_scope_in_srcsels_slice() {
    let s = setup();
    let t = unique("scope");
    let mut run = s
        .lab
        .run_via_usb0(&format!("sleep 2; curl -sf -m5 -o /dev/null {}", url(&t)))
        .spawn()
        .unwrap();
    let scope = format!("srcsel-run-{}.scope", run.id());
    wait_until("the run's scope", Duration::from_secs(60), || {
        active(&scope)
    });
    let slice = format!("srcsel-net{}-usb0:strict.slice", s.lab.netns_cookie());
    assert_eq!(unit_prop(&scope, "Slice"), slice);
    let cgls = out(Command::new("systemd-cgls").args(["--no-pager", "-u", "srcsel.slice"]));
    assert!(
        String::from_utf8_lossy(&cgls.stdout).contains(&scope),
        "systemd-cgls: {}",
        String::from_utf8_lossy(&cgls.stdout)
    );
    assert!(run.wait().unwrap().success());
    assert_eq!(
        s.lab.source_of(&t),
        s.lab.usb0_addr(),
        "the scope's command"
    );
    wait_until("the scope gone", Duration::from_secs(20), || {
        !active(&scope)
    });
}

#[test]
fn systemctl_kill_of_a_unit_running_srcsel_run_leaves_its_command_steered() {
    let s = setup();
    let t = unique("killed");
    let unit = format!("{}.service", unique("wrap"));
    ok(Command::new("systemd-run")
        .arg(format!("--unit={unit}"))
        .arg("--collect")
        .arg(format!("--property=NetworkNamespacePath={}", s.netns))
        .arg(&s.lab.srcsel)
        .args(["run", "--via", "usb0", "--", "sh", "-c"])
        .arg(format!("sleep 4; curl -sf -m5 {}", url(&t))));
    let pid = unit_prop(&unit, "MainPID");
    // Until the command runs: killed at its gate, before exec, it never starts.
    let procs = s.lab.run_cgroup(pid.parse().unwrap()).join("cgroup.procs");
    wait_until("the command in its scope", Duration::from_secs(60), || {
        let pids = fs::read_to_string(&procs).unwrap_or_default();
        pids.lines().any(|p| {
            fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() != "srcsel")
        })
    });
    ok(Command::new("systemctl").args(["kill", "-s", "KILL", &unit]));
    wait_until("the command's request", Duration::from_secs(30), || {
        !s.lab.seen(&t).is_empty()
    });
    assert_eq!(
        s.lab.source_of(&t),
        s.lab.usb0_addr(),
        "after systemctl kill"
    );
    assert_eq!(s.lab.foreign_sources("r1").0, 0);
}
