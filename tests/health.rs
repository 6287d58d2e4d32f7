//! Health checks on the lab: the hotspot's upstream cut silently (link and
//! lease stay), judged by what the server and the routers saw; and assigned
//! connections reset when they cannot work any more. Needs root.
use std::{
    fs,
    time::{Duration, Instant},
};

use srcsel_lab::{CHECK, ETH0_ADDR, Lab, SERVER, ok, out, unique, url, usb0_health, wait_until};

fn lab() -> Lab {
    Lab::new(env!("CARGO_BIN_EXE_srcsel"))
}

/// usb0's checks: the server's HTTP check and an echo.
fn config() -> String {
    usb0_health(&[CHECK, "icmp://198.51.100.10"], "")
}

fn wait_for_health(lab: &Lab, want: &str, within: Duration) -> Duration {
    let t = Instant::now();
    wait_until(&format!("usb0's health to be {want}"), within, || {
        lab.uplink_status("usb0")["health"] == want
    });
    t.elapsed()
}

#[test]
fn a_silent_upstream_cut_is_found_and_steering_follows_it() {
    let mut lab = lab();
    lab.start_daemon_with_config(&config(), &[]);
    wait_for_health(&lab, "up", Duration::from_secs(10));
    let usb0 = lab.usb0_addr();
    let hold = lab.hold_script();
    let mut assigned = lab.srcsel(["run", "--via", "usb0", "--", "python3"]);
    lab.spawn("assigned", assigned.arg(&hold).arg(SERVER));
    let mut by_hand = lab.client("python3");
    lab.spawn("by-hand", by_hand.arg(&hold).args([SERVER, &usb0]));
    lab.wait_held("assigned");
    lab.wait_held("by-hand");

    lab.cut_hotspot_upstream();
    // interval × down_after + timeout, a second of slack, and the polls.
    let took = wait_for_health(&lab, "down", Duration::from_secs(5));
    eprintln!("down {took:?} after the cut");
    let s = lab.uplink_status("usb0");
    let reason = s["health_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("rounds without an answer"), "{s}");
    assert_eq!(s["state"], "down", "{s}");
    // The assigned connection is reset; the one bound by hand is not.
    wait_until(
        "the assigned connection to be reset",
        Duration::from_secs(1),
        || lab.hold_ended("assigned"),
    );
    assert!(
        lab.log("assigned").contains("error 103"),
        "ECONNABORTED: {}",
        lab.log("assigned")
    );
    assert!(!lab.hold_ended("by-hand"), "{}", lab.log("by-hand"));

    // Strict: refused at once. Fallback: normal routing, through eth0.
    let t = unique("strict");
    let started = Instant::now();
    let o = out(&mut lab.run_via_usb0(&format!("curl -sS --max-time 5 {}", url(&t))));
    let refused_in = started.elapsed();
    assert!(
        !o.status.success() && refused_in < Duration::from_millis(500),
        "{o:?} in {refused_in:?}"
    );
    lab.assert_unseen(&t);
    let t = unique("fallback");
    ok(&mut lab.srcsel([
        "run",
        "--via",
        "usb0",
        "--fallback",
        "--",
        "curl",
        "-sS",
        "--max-time",
        "5",
        &url(&t),
    ]));
    assert_eq!(lab.source_of(&t), ETH0_ADDR);

    // A daemon killed and started again keeps the verdict: no traffic goes
    // back to the dead uplink until it answers.
    lab.signal("daemon", libc::SIGKILL);
    lab.start_daemon_with_config(&config(), &[]);
    let s = lab.uplink_status("usb0");
    assert_eq!(
        (&s["health"], &s["state"]),
        (&"down".into(), &"down".into()),
        "{s}"
    );
    let t = unique("restarted");
    let o = out(&mut lab.run_via_usb0(&format!("curl -sS --max-time 5 {}", url(&t))));
    assert!(!o.status.success(), "{o:?}");

    lab.restore_hotspot_upstream();
    let took = wait_for_health(&lab, "up", Duration::from_secs(5));
    eprintln!("up {took:?} after the upstream returned");
    let t = unique("back");
    ok(&mut lab.run_via_usb0(&format!("curl -sS --max-time 5 {}", url(&t))));
    assert_eq!(lab.source_of(&t), usb0);

    // The probes left through usb0 only, also while it was down.
    let probes = lab.seen("generate_204");
    assert!(
        !probes.is_empty() && probes.iter().all(|(_, peer)| *peer == usb0),
        "{probes:?}"
    );
    assert_eq!(lab.foreign_sources("r1"), (0, 0));
    assert_eq!(lab.foreign_sources("r2"), (0, 0));
    let text = ok(&mut lab.srcsel(["status"]));
    assert!(text.contains("health: IPv4 up"), "{text}");
}

/// A renumbering resets the assigned connections of the old address, with
/// SOCK_DESTROY and (as on Raspberry Pi OS kernels) with pidfd_getfd.
fn reset_on_renumbering(env: &[(&str, &str)], method: &str, ends_with: &str) {
    let mut lab = lab();
    lab.start_daemon_with_config("[[uplink]]\nname = \"usb0\"\n", env);
    let status = ok(&mut lab.srcsel(["status", "--json"]));
    assert!(
        status.contains(&format!("\"reset\": \"{method}\"")),
        "{status}"
    );
    let hold = lab.hold_script();
    let mut assigned = lab.srcsel(["run", "--via", "usb0", "--", "python3"]);
    lab.spawn("assigned", assigned.arg(&hold).arg(SERVER));
    let mut udp = lab.srcsel(["run", "--via", "usb0", "--", "python3"]);
    lab.spawn("udp", udp.arg(&hold).arg(format!("udp:{SERVER}")));
    lab.wait_held("assigned");
    lab.wait_held("udp");
    lab.renumber_hotspot("10.98.0");
    let new = lab.usb0_addr();
    let followed = Instant::now();
    wait_until(
        "the daemon to follow the new lease",
        Duration::from_secs(10),
        || lab.owned().contains(&format!("from {new} lookup")),
    );
    wait_until(
        "the assigned connection to be reset",
        Duration::from_secs(2),
        || lab.hold_ended("assigned"),
    );
    eprintln!(
        "reset {:?} after the new lease was in force",
        followed.elapsed()
    );
    assert!(
        lab.log("assigned").contains(ends_with),
        "{}",
        lab.log("assigned")
    );
    // A connected UDP socket of the old address: its waiting read fails too.
    wait_until(
        "the connected UDP socket to be reset",
        Duration::from_secs(1),
        || lab.hold_ended("udp"),
    );
    assert!(lab.log("udp").contains(ends_with), "{}", lab.log("udp"));

    // The lease ends (dhcpcd releases it as it stops): the new address goes.
    let mut again = lab.srcsel(["run", "--via", "usb0", "--", "python3"]);
    lab.spawn("again", again.arg(&hold).arg(SERVER));
    lab.wait_held("again");
    assert!(lab.log("again").contains(&new), "{}", lab.log("again"));
    lab.stop("dhcpcd-usb0");
    wait_until(
        "the connection of the ended lease to be reset",
        Duration::from_secs(2),
        || lab.hold_ended("again"),
    );
    assert!(lab.log("again").contains(ends_with), "{}", lab.log("again"));
}

/// Wakeups of the daemon's threads alive over `secs` seconds.
fn wakeups_over(lab: &Lab, secs: u64) -> u64 {
    let pid = lab.pid("daemon").expect("the daemon runs");
    let before = srcsel_lab::switches(pid);
    std::thread::sleep(Duration::from_secs(secs));
    srcsel_lab::wakeups(&before, &srcsel_lab::switches(pid))
}

#[test]
fn without_health_checks_the_idle_daemon_never_wakes_and_with_them_only_for_rounds() {
    let mut lab = lab();
    // Resolvers configured: no DHCP client is asked (whose retries are
    // timers of their own, for seconds after a start).
    let usb0 = "[[uplink]]\nname = \"usb0\"\ndns = [\"10.99.0.1\"]\n";
    lab.start_daemon_with_config(usb0, &[]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(wakeups_over(&lab, 3), 0, "no timer without health checks");
    lab.stop("daemon");
    // One round a second, one target: its probe, the loop's verdict
    // bookkeeping; a few wakeups per round, never a busy loop.
    let config = usb0_health(&[CHECK], "dns = [\"10.99.0.1\"]\n");
    lab.start_daemon_with_config(&config, &[]);
    std::thread::sleep(Duration::from_secs(1));
    let n = wakeups_over(&lab, 5);
    eprintln!("{n} wakeups in 5 s of 1 s rounds");
    assert!((1..=40).contains(&n), "{n} wakeups in 5 rounds");
}

#[test]
fn a_renumbering_resets_assigned_connections_with_sock_destroy() {
    reset_on_renumbering(&[], "SOCK_DESTROY", "error 103");
}

#[test]
fn without_sock_destroy_the_socket_is_taken_and_shut_down() {
    // shutdown(2) ends the program's read: EOF.
    reset_on_renumbering(&[("SRCSEL_RESET", "pidfd")], "pidfd_getfd", "eof");
}

#[test]
fn bad_health_config_is_refused_by_name_and_changes_nothing() {
    let lab = lab();
    let before = (lab.rules(), lab.routes());
    for (bad, says) in [
        ("targets = [\"ftp://198.51.100.10\"]", "ftp"),
        ("targets = [\"tcp://example.com:443\"]", "example.com"),
        (
            "targets = [\"icmp://198.51.100.10\"]\ninterval = \"0s\"",
            "interval",
        ),
        (
            "targets = [\"icmp://198.51.100.10\"]\ndown_after = 0",
            "down_after",
        ),
    ] {
        let path = lab.dir.join("bad.toml");
        fs::write(
            &path,
            format!("[[uplink]]\nname = \"usb0\"\n[uplink.health]\n{bad}\n"),
        )
        .unwrap();
        let o = out(&mut lab.srcsel(["daemon", "--config", &path.display().to_string()]));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{bad}");
        assert!(
            err.contains("bad.toml:") && err.contains(says),
            "{bad}: {err}"
        );
    }
    assert_eq!((lab.rules(), lab.routes()), before);
}
