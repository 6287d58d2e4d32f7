//! `srcsel daemon` following leases on the real kernel, with real dnsmasq and
//! dhcpcd: renumbering, link flaps, re-plugs, two uplinks, `nogateway` with
//! the lease hook, restarts and crashes. Needs root (`cargo xtask test`).
use std::{fs, time::Duration};

use srcsel_lab::{ETH0_ADDR, Lab, Runner, ip, ok, unique, url, wait_until};

const CONVERGE: Duration = Duration::from_secs(10);

fn lab() -> Lab {
    Lab::new(env!("CARGO_BIN_EXE_srcsel"))
}

fn ifindex(lab: &Lab, iface: &str) -> String {
    lab.client_out(&format!("ip -o link show {iface}"))
        .split(':')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn renumbering_reaches_processes_already_running_and_leaves_no_stale_rule() {
    let mut lab = lab();
    lab.start_daemon(&[]);
    let old = lab.usb0_addr();
    let mut runner = Runner::start(&lab, "usb0");
    let t = unique("before");
    assert_eq!(runner.connect(&t), 0);
    assert_eq!(lab.source_of(&t), old);

    lab.renumber_hotspot("10.98.0");
    let new = lab.usb0_addr();
    wait_until("the daemon to follow the new lease", CONVERGE, || {
        let o = lab.owned();
        o.contains(&format!("from {new} lookup"))
            && o.contains("default via 10.98.0.1")
            && !o.contains("10.99.0.")
    });
    let t = unique("after");
    assert_eq!(runner.connect(&t), 0);
    assert_eq!(
        lab.source_of(&t),
        new,
        "a process started before the renumbering"
    );
    assert!(
        !lab.rules().contains(&old) && !lab.routes().contains("10.99.0."),
        "stale: {}",
        lab.owned()
    );
}

#[test]
fn link_down_up_and_replug_with_a_new_ifindex_are_followed() {
    let mut lab = lab();
    lab.start_daemon(&[]);
    let mut runner = Runner::start(&lab, "usb0");
    let t = unique("up");
    assert_eq!(runner.connect(&t), 0);
    assert_eq!(lab.source_of(&t), lab.usb0_addr());

    ok(lab.client("ip").args(["link", "set", "usb0", "down"]));
    wait_until("the daemon to mark usb0 down", CONVERGE, || {
        !lab.owned().contains("default via")
    });
    let t = unique("down");
    assert_ne!(runner.connect(&t), 0, "strict: the connection must fail");
    lab.assert_unseen(&t);

    ok(lab.client("ip").args(["link", "set", "usb0", "up"]));
    wait_until(
        "usb0's lease and srcsel's default route",
        Duration::from_secs(30),
        || lab.owned().contains("default via 10.99.0.1 dev usb0"),
    );
    let t = unique("back");
    assert_eq!(runner.connect(&t), 0);
    assert_eq!(lab.source_of(&t), lab.usb0_addr());

    // Unplug and plug back in: the interface comes back with a new ifindex.
    let before = ifindex(&lab, "usb0");
    lab.stop("dhcpcd-usb0");
    let (c, r2) = (lab.ns("client"), lab.ns("r2"));
    ip(&format!("-n {c} link del usb0"));
    wait_until("the daemon to drop usb0's routes", CONVERGE, || {
        !lab.owned().contains("dev usb0")
    });
    ip(&format!(
        "-n {c} link add usb0 type veth peer name lan netns {r2}"
    ));
    ip(&format!("-n {r2} addr add 10.99.0.1/24 dev lan"));
    ip(&format!("-n {r2} link set lan up"));
    ip(&format!("-n {c} link set usb0 up"));
    lab.start_dhcpcd_on("usb0", "metric 3000", "/bin/true");
    let after = ifindex(&lab, "usb0");
    assert_ne!(before, after);
    wait_until(
        "the daemon to follow the re-plugged usb0",
        Duration::from_secs(30),
        || lab.owned().contains("default via 10.99.0.1 dev usb0"),
    );
    let t = unique("replugged");
    assert_eq!(runner.connect(&t), 0);
    assert_eq!(lab.source_of(&t), lab.usb0_addr());
}

/// A macvlan on eth0 with an address of its own, as a server with extra
/// public addresses has.
fn add_macvlan(lab: &Lab, addr: Option<&str>) {
    let c = lab.ns("client");
    ip(&format!(
        "-n {c} link add eth0.100 link eth0 type macvlan mode bridge"
    ));
    ip(&format!("-n {c} link set eth0.100 up"));
    if let Some(a) = addr {
        ip(&format!("-n {c} addr add {a}/24 dev eth0.100"));
        ip(&format!(
            "-n {c} route add default via 10.1.0.1 dev eth0.100 metric 4000"
        ));
    }
}

#[test]
fn two_uplinks_at_once_each_run_leaves_through_its_own() {
    let mut lab = lab();
    add_macvlan(&lab, Some("10.1.0.200"));
    let config = lab.dir.join("srcsel.toml");
    fs::write(
        &config,
        "[[uplink]]\nname = \"usb0\"\n\n[[uplink]]\nname = \"eth0.100\"\ntable = 300\n",
    )
    .unwrap();
    lab.start_daemon(&["--config", &config.display().to_string()]);
    wait_until("both uplinks set up", CONVERGE, || {
        let o = lab.owned();
        o.contains("table 300") && o.contains("default via 10.99.0.1 dev usb0")
    });
    let mut via_usb0 = Runner::start(&lab, "usb0");
    let mut via_v0 = Runner::start(&lab, "eth0.100");
    for round in 0..3 {
        let (a, b) = (
            unique(&format!("usb{round}")),
            unique(&format!("v0{round}")),
        );
        assert_eq!(via_usb0.connect(&a), 0);
        assert_eq!(via_v0.connect(&b), 0);
        assert_eq!(lab.source_of(&a), lab.usb0_addr());
        assert_eq!(lab.source_of(&b), "10.1.0.200");
    }
    let plain = unique("plain");
    ok(lab.client("curl").args(["-sf", &url(&plain)]));
    assert_eq!(lab.source_of(&plain), ETH0_ADDR);
}

#[test]
fn nogateway_macvlan_gets_its_gateway_from_the_lease_hook() {
    let mut lab = lab();
    lab.start_dnsmasq_in("r1", "10.1.0", "10.1.0.1");
    add_macvlan(&lab, None);
    let hook = lab.srcsel_hook();
    let config = lab.dir.join("srcsel.toml");
    fs::write(&config, "[[uplink]]\nname = \"eth0.100\"\n").unwrap();
    lab.start_daemon(&["--config", &config.display().to_string()]);
    lab.start_dhcpcd_on("eth0.100", "nogateway", &hook);
    wait_until("eth0.100's lease", Duration::from_secs(30), || {
        lab.addr_of("eth0.100").is_some()
    });
    let addr = lab.addr_of("eth0.100").unwrap();
    assert!(
        !lab.client_out("ip route show table all")
            .contains("default via 10.1.0.1 dev eth0.100 proto dhcp")
    );
    wait_until("the hook's gateway in srcsel's table", CONVERGE, || {
        lab.owned().contains("default via 10.1.0.1 dev eth0.100")
    });
    assert!(
        lab.log("daemon")
            .contains("lease hook: eth0.100 gateway 10.1.0.1"),
        "{}",
        lab.log("daemon")
    );
    let t = unique("hook");
    lab.curl_via("eth0.100", &t);
    assert_eq!(lab.source_of(&t), addr);

    // Without a daemon (and the hook reading no config that names it), the
    // hook records the lease and changes nothing; a run that names eth0.100
    // then uses the recorded gateway.
    lab.stop("daemon");
    ok(&mut lab.srcsel(["down"]));
    assert!(!lab.owned().contains("eth0.100"));
    lab.start_dhcpcd_on("eth0.100", "nogateway", &hook);
    wait_until(
        "the hook to record eth0.100's lease without a daemon",
        Duration::from_secs(30),
        || {
            let status = ok(&mut lab.srcsel(["status", "--json"]));
            let json: serde_json::Value = serde_json::from_str(&status).unwrap();
            json["known"].as_array().is_some_and(|known| {
                known
                    .iter()
                    .any(|k| k["interface"] == "eth0.100" && k["gateway"] == "10.1.0.1")
            })
        },
    );
    assert!(!lab.owned().contains("eth0.100"), "{}", lab.owned());
    let t = unique("nodaemon");
    lab.curl_via("eth0.100", &t);
    assert_eq!(lab.source_of(&t), lab.addr_of("eth0.100").unwrap());
}
