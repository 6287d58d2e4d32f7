//! IPv6 end to end, judged by what the lab's server and routers saw: both
//! families through the uplink, strict and fallback per family, v4-mapped
//! sockets, a dual-stack name, a renumbered prefix followed by the daemon.
//! Needs root; run with `cargo xtask test`.
use std::{fs, process::Command, time::Instant};

use srcsel_lab::{
    ETH0_NET6, Lab, SERVER, SERVER6, TCP_PORT, UDP_PORT, USB0_NET6, V6, ok, out, stderr, unique,
    url, url6,
};

fn lab(v6: V6) -> Lab {
    let mut lab = Lab::new(env!("CARGO_BIN_EXE_srcsel"));
    lab.enable_ipv6(v6);
    lab
}

/// `srcsel run --via usb0 [MODE] -- CMD…`
fn via_usb0(lab: &Lab, mode: &[&str], cmd: &[&str]) -> Command {
    let mut c = lab.srcsel(["run", "--via", "usb0"]);
    c.args(mode).arg("--").args(cmd);
    c
}

/// probe.py ARGS under `srcsel run --via usb0 [MODE]`.
fn probe(lab: &Lab, mode: &[&str], args: &[&str]) -> (bool, String) {
    let p = lab.probe();
    let mut cmd = vec!["python3", p.to_str().unwrap()];
    cmd.extend(args);
    let o = out(&mut via_usb0(lab, mode, &cmd));
    let text = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    (o.status.success(), format!("{text} {}", stderr(&o)))
}

/// Routers' counters of foreign sources must not have moved.
fn assert_no_foreign_sources(lab: &Lab) {
    assert_eq!(
        lab.foreign_sources("r1"),
        (0, 0),
        "hotspot-sourced packets reached the home router"
    );
    assert_eq!(
        lab.foreign_sources("r2"),
        (0, 0),
        "home-sourced packets reached the hotspot"
    );
}

#[test]
fn ipv6_clients_leave_through_usb0_and_unassigned_ones_through_eth0() {
    let lab = lab(V6::Both);
    let usb0_6 = lab.addr6_of("usb0").unwrap();
    let (tcp, udp) = (TCP_PORT.to_string(), UDP_PORT.to_string());

    let t = unique("plain6");
    ok(lab.client("curl").args(["-sf", &url6(&t)]));
    assert!(
        lab.source_of(&t).starts_with(ETH0_NET6),
        "unassigned curl -6"
    );

    let t = unique("curl6");
    ok(&mut via_usb0(&lab, &[], &["curl", "-sf", &url6(&t)]));
    assert_eq!(lab.source_of(&t), usb0_6, "curl -6");
    for kind in ["tcp", "udp", "sendto"] {
        let t = unique(kind);
        let port = if kind == "tcp" { &tcp } else { &udp };
        let (ok_, said) = probe(&lab, &[], &[kind, SERVER6, port, &t]);
        assert!(ok_, "python {kind} over IPv6: {said}");
        assert_eq!(lab.source_of(&t), usb0_6, "python {kind} over IPv6");
    }
    let o = out(&mut via_usb0(
        &lab,
        &[],
        &["ping", "-6", "-c1", "-W3", "-p", "5eed6a6e", SERVER6],
    ));
    assert!(o.status.success(), "ping -6: {}", stderr(&o));
    assert_eq!(lab.source_of("5eed6a6e"), usb0_6, "ping -6");

    // An AF_INET6 socket reaching IPv4 (Java's default) takes the IPv4 path.
    let t = unique("mapped");
    let (ok_, said) = probe(&lab, &[], &["tcp", &format!("::ffff:{SERVER}"), &tcp, &t]);
    assert!(ok_, "v4-mapped: {said}");
    assert_eq!(lab.source_of(&t), lab.usb0_addr(), "v4-mapped");

    // A dual-stack name: IPv6 first, through usb0.
    let hosts = lab.dir.join("hosts");
    fs::write(&hosts, format!("{SERVER6} dual.test\n{SERVER} dual.test\n")).unwrap();
    let t = unique("dual");
    let p = lab.probe();
    let script = format!(
        "mount --bind {} /etc/hosts && python3 {} tcp dual.test {tcp} {t}",
        hosts.display(),
        p.display()
    );
    ok(&mut via_usb0(
        &lab,
        &[],
        &["unshare", "-m", "sh", "-c", &script],
    ));
    assert_eq!(lab.source_of(&t), usb0_6, "dual-stack name");

    let v: serde_json::Value =
        serde_json::from_str(&ok(&mut lab.srcsel(["status", "--json"]))).unwrap();
    let u = &v["uplinks"][0];
    assert_eq!(
        (u["state6"].as_str(), u["address6"].as_str()),
        (Some("up"), Some(usb0_6.as_str()))
    );
    assert!(u["gateway6"].as_str().unwrap().starts_with("fe80::"), "{u}");
    assert_no_foreign_sources(&lab);
}

#[test]
fn strict_refuses_a_family_the_uplink_lacks_at_once_and_fallback_uses_eth0() {
    let lab = lab(V6::PrimaryOnly);
    let t = unique("strict6");
    let start = Instant::now();
    let o = out(&mut via_usb0(
        &lab,
        &[],
        &["curl", "-sS", "-m", "10", &url6(&t)],
    ));
    let took = start.elapsed();
    assert!(
        !o.status.success(),
        "curl -6 succeeded through a usb0 without IPv6"
    );
    assert!(took.as_secs_f64() < 2.0, "curl -6 took {took:?} to fail");
    lab.assert_unseen(&t);

    // Happy eyeballs: a dual-stack name falls back to IPv4 at once, via usb0.
    let hosts = lab.dir.join("hosts");
    fs::write(&hosts, format!("{SERVER6} dual.test\n{SERVER} dual.test\n")).unwrap();
    let t = unique("dual4");
    let script = format!(
        "mount --bind {} /etc/hosts && curl -sf -m 10 http://dual.test:{TCP_PORT}/{t}",
        hosts.display()
    );
    let start = Instant::now();
    ok(&mut via_usb0(
        &lab,
        &[],
        &["unshare", "-m", "sh", "-c", &script],
    ));
    assert!(
        start.elapsed().as_secs_f64() < 3.0,
        "dual-stack curl was slow: {:?}",
        start.elapsed()
    );
    assert_eq!(lab.source_of(&t), lab.usb0_addr());

    let t = unique("fallback6");
    ok(&mut via_usb0(
        &lab,
        &["--fallback"],
        &["curl", "-sf", &url6(&t)],
    ));
    assert!(
        lab.source_of(&t).starts_with(ETH0_NET6),
        "fallback over IPv6 uses eth0"
    );
    // And IPv4 still goes through usb0 in fallback mode.
    let t = unique("fallback4");
    ok(&mut via_usb0(
        &lab,
        &["--fallback"],
        &["curl", "-sf", &url(&t)],
    ));
    assert_eq!(lab.source_of(&t), lab.usb0_addr());
    assert_no_foreign_sources(&lab);
}

#[test]
fn a_renumbered_ipv6_prefix_is_followed_by_the_daemon() {
    let mut lab = lab(V6::Both);
    lab.start_daemon(&["--config", "/dev/null"]);
    let t = unique("before");
    ok(&mut via_usb0(&lab, &[], &["curl", "-sf", &url6(&t)]));
    assert!(lab.source_of(&t).starts_with(USB0_NET6));

    lab.renumber_hotspot6("2001:db8:98:");
    let now = lab.addr6_of("usb0").unwrap();
    srcsel_lab::wait_until(
        "the daemon to publish usb0's new IPv6 address",
        std::time::Duration::from_secs(10),
        || ok(&mut lab.srcsel(["status", "--json"])).contains(&now),
    );
    let t = unique("after");
    ok(&mut via_usb0(&lab, &[], &["curl", "-sf", &url6(&t)]));
    assert_eq!(lab.source_of(&t), now, "after the renumbering");
    let rules = lab.client_out("ip -6 rule");
    assert!(rules.contains(&format!("from {now} lookup")), "{rules}");
    assert_no_foreign_sources(&lab);
}
