//! `isolate = true`: an uplink kept for assigned programs. Unassigned
//! traffic of either family never leaves through it, even when it is the
//! family's only route (then it fails at once, and dual-stack programs use
//! the other family); assigned traffic still does; rules of other tools
//! (wg-quick's pair) keep precedence; turning it off and `srcsel down`
//! restore the dumps exactly. Needs root; run with `cargo xtask test`.
use std::{
    fs,
    time::{Duration, Instant},
};

use srcsel_lab::{ETH0_ADDR, Lab, USB0_NET6, V6, ok, out, unique, url, url6, wait_until};

/// The routes of every table, without the lifetimes router advertisements
/// count down.
fn routes(lab: &Lab) -> String {
    lab.routes()
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let mut keep = Vec::new();
            let mut i = 0;
            while i < w.len() {
                if w[i] == "expires" {
                    i += 2;
                    continue;
                }
                keep.push(w[i]);
                i += 1;
            }
            keep.join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn curl(lab: &Lab, args: &[&str]) -> std::process::Output {
    out(lab.client("curl").args(["-sS", "-m", "5"]).args(args))
}

/// Fails at once (no route), and the server never hears of it.
fn assert_refused_at_once(lab: &Lab, args: &[&str], token: &str, what: &str) {
    let start = Instant::now();
    let o = curl(lab, args);
    assert!(
        !o.status.success(),
        "{what} succeeded: {}",
        lab.client_out("ip -6 rule; ip -6 route show table all; ip -6 route get 2001:db8:ffff::10")
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{what} took {:?}",
        start.elapsed()
    );
    lab.assert_unseen(token);
}

fn start_daemon(lab: &mut Lab, config: &str) {
    let path = lab.dir.join("srcsel.toml");
    fs::write(&path, config).unwrap();
    lab.start_daemon(&["--config", &path.display().to_string()]);
}

#[test]
fn an_isolated_uplink_carries_only_assigned_traffic_of_both_families() {
    let mut lab = Lab::new(env!("CARGO_BIN_EXE_srcsel"));
    lab.enable_ipv6(V6::HotspotOnly);
    let (rules_before, routes_before) = (lab.rules(), routes(&lab));
    // The seed's worry: the hotspot is the only IPv6 gateway.
    let t = unique("drift");
    ok(lab.client("curl").args(["-sf", &url6(&t)]));
    assert!(lab.source_of(&t).starts_with(USB0_NET6));

    start_daemon(&mut lab, "[[uplink]]\nname = \"usb0\"\nisolate = true\n");
    wait_until("the isolation rules", Duration::from_secs(10), || {
        lab.client_out("ip -6 rule").contains("32765:")
    });
    let t = unique("iso6");
    assert_refused_at_once(&lab, &[&url6(&t)], &t, "unassigned curl -6");
    let t = unique("iso4");
    ok(lab.client("curl").args(["-sf", &url(&t)]));
    assert_eq!(lab.source_of(&t), ETH0_ADDR, "unassigned IPv4 keeps eth0");
    let usb0_6 = lab.addr6_of("usb0").unwrap();
    for (target, source) in [
        (url6(&unique("a6")), usb0_6.clone()),
        (url(&unique("a4")), lab.usb0_addr()),
    ] {
        ok(&mut lab.srcsel(["run", "--via", "usb0", "--", "curl", "-sf", &target]));
        assert_eq!(
            lab.source_of(target.rsplit('/').next().unwrap()),
            source,
            "assigned {target}"
        );
    }

    // Without the home line's default route, unassigned IPv4 has none either.
    ok(lab
        .client("ip")
        .args(["route", "del", "default", "via", "10.1.0.1"]));
    wait_until(
        "the isolation table to lose eth0's copy",
        Duration::from_secs(10),
        || {
            !lab.client_out("ip route show table 21248")
                .contains("10.1.0.1")
        },
    );
    let t = unique("noeth0");
    assert_refused_at_once(
        &lab,
        &[&url(&t)],
        &t,
        "unassigned curl with only usb0's default",
    );

    // wg-quick's pair, added after srcsel's rules, still comes first.
    for rule in [
        "not fwmark 51820 table 51820",
        "table main suppress_prefixlength 0",
    ] {
        ok(lab
            .client("sh")
            .args(["-c", &format!("ip rule add {rule}")]));
    }
    ok(lab.client("sh").args([
        "-c",
        "ip route add default via 10.1.0.1 dev eth0 table 51820",
    ]));
    let t = unique("wg");
    ok(lab.client("curl").args(["-sf", &url(&t)]));
    assert_eq!(lab.source_of(&t), ETH0_ADDR, "through the wg-style table");
    ok(lab.client("sh").args([
        "-c",
        "ip rule del not fwmark 51820 table 51820; ip rule del table main suppress_prefixlength 0; \
         ip route flush table 51820; ip route add default via 10.1.0.1 metric 100",
    ]));
    wait_until(
        "the isolation table to copy eth0's default again",
        Duration::from_secs(10),
        || {
            lab.client_out("ip route show table 21248")
                .contains("10.1.0.1")
        },
    );
    let t = unique("back");
    ok(lab.client("curl").args(["-sf", &url(&t)]));
    assert_eq!(lab.source_of(&t), ETH0_ADDR);

    // Off again: the rules go, unassigned IPv6 drifts back onto usb0.
    lab.stop("daemon");
    start_daemon(&mut lab, "[[uplink]]\nname = \"usb0\"\n");
    wait_until("the isolation rules to go", Duration::from_secs(10), || {
        !lab.client_out("ip -6 rule").contains("32765:")
    });
    assert!(
        !lab.client_out("ip route show table all")
            .contains("table 21248")
    );
    let t = unique("off");
    ok(lab.client("curl").args(["-sf", &url6(&t)]));
    assert!(lab.source_of(&t).starts_with(USB0_NET6));

    lab.stop("daemon");
    let log = fs::read_to_string(lab.log_path("daemon")).unwrap();
    assert!(!log.contains("WARN"), "a pass failed:\n{log}");
    ok(&mut lab.srcsel(["down"]));
    assert_eq!(lab.rules(), rules_before);
    assert_eq!(routes(&lab), routes_before);
}
