//! `srcsel daemon` following leases on the real kernel, with real dnsmasq and
//! dhcpcd: renumbering, link flaps, re-plugs, two uplinks, `nogateway` with
//! the lease hook, restarts and crashes. Needs root (`cargo xtask test`).
use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use srcsel_lab::{ETH0_ADDR, Lab, SERVER, TCP_PORT, ip, ok, out, stderr, unique, url, wait_until};

const CONVERGE: Duration = Duration::from_secs(10);

fn lab() -> Lab {
    Lab::new(env!("CARGO_BIN_EXE_srcsel"))
}

/// A process started once under `srcsel run --via IFACE` that makes a new
/// connection whenever asked: it shows what happens to processes that were
/// already running when the lease changed.
struct Runner {
    child: Child,
    dir: PathBuf,
    n: u32,
}

impl Runner {
    fn start(lab: &Lab, via: &str) -> Self {
        let dir = lab.dir.join(unique("runner"));
        fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let script = format!(
            "i=0; while :; do while [ ! -e {d}/go$i ]; do [ -e {d}/quit ] && exit 0; sleep 0.01; done; \
             curl -s -m 5 http://{SERVER}:{TCP_PORT}/$(cat {d}/go$i) >/dev/null; echo $? > {d}/rc$i.tmp; \
             mv {d}/rc$i.tmp {d}/rc$i; i=$((i+1)); done"
        );
        let child = lab
            .srcsel(["run", "--via", via, "--", "sh", "-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Self { child, dir, n: 0 }
    }

    /// Makes one connection carrying `token`; returns curl's exit code.
    fn connect(&mut self, token: &str) -> i32 {
        fs::write(self.dir.join(format!("go{}", self.n)), token).unwrap();
        let rc = self.dir.join(format!("rc{}", self.n));
        wait_until("the runner's curl", Duration::from_secs(15), || rc.exists());
        self.n += 1;
        fs::read_to_string(rc).unwrap().trim().parse().unwrap()
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = fs::write(self.dir.join("quit"), "");
        let _ = self.child.wait();
    }
}

/// srcsel's rules and the routes of its tables (proto 201), as text.
fn owned(lab: &Lab) -> String {
    lab.client_out("ip rule | grep 'proto 201'; ip route show table all | grep 'proto 201'")
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
        let o = owned(&lab);
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
        owned(&lab)
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
        !owned(&lab).contains("default via")
    });
    let t = unique("down");
    assert_ne!(runner.connect(&t), 0, "strict: the connection must fail");
    lab.assert_unseen(&t);

    ok(lab.client("ip").args(["link", "set", "usb0", "up"]));
    wait_until(
        "usb0's lease and srcsel's default route",
        Duration::from_secs(30),
        || owned(&lab).contains("default via 10.99.0.1 dev usb0"),
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
        !owned(&lab).contains("dev usb0")
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
        || owned(&lab).contains("default via 10.99.0.1 dev usb0"),
    );
    let t = unique("replugged");
    assert_eq!(runner.connect(&t), 0);
    assert_eq!(lab.source_of(&t), lab.usb0_addr());
}

/// One `srcsel run --via IFACE -- curl` carrying `token`.
fn curl_via(lab: &Lab, iface: &str, token: &str) {
    ok(&mut lab.srcsel(["run", "--via", iface, "--", "curl", "-sf", &url(token)]));
}

/// A macvlan on eth0 with an address of its own, as a server with extra
/// public addresses has.
fn add_macvlan(lab: &Lab, addr: Option<&str>) {
    let c = lab.ns("client");
    ip(&format!(
        "-n {c} link add eth0v0 link eth0 type macvlan mode bridge"
    ));
    ip(&format!("-n {c} link set eth0v0 up"));
    if let Some(a) = addr {
        ip(&format!("-n {c} addr add {a}/24 dev eth0v0"));
        ip(&format!(
            "-n {c} route add default via 10.1.0.1 dev eth0v0 metric 4000"
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
        "[[uplink]]\nname = \"usb0\"\n\n[[uplink]]\nname = \"eth0v0\"\ntable = 300\n",
    )
    .unwrap();
    lab.start_daemon(&["--config", &config.display().to_string()]);
    wait_until("both uplinks set up", CONVERGE, || {
        let o = owned(&lab);
        o.contains("table 300") && o.contains("default via 10.99.0.1 dev usb0")
    });
    let mut via_usb0 = Runner::start(&lab, "usb0");
    let mut via_v0 = Runner::start(&lab, "eth0v0");
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
    let hook = lab.dir.join("dhcpcd-hook");
    fs::write(
        &hook,
        format!("#!/bin/sh\nexec {} lease \"$@\"\n", lab.srcsel.display()),
    )
    .unwrap();
    ok(Command::new("chmod").arg("+x").arg(&hook));
    let config = lab.dir.join("srcsel.toml");
    fs::write(&config, "[[uplink]]\nname = \"eth0v0\"\n").unwrap();
    lab.start_daemon(&["--config", &config.display().to_string()]);
    lab.start_dhcpcd_on("eth0v0", "nogateway", &hook.display().to_string());
    wait_until("eth0v0's lease", Duration::from_secs(30), || {
        lab.addr_of("eth0v0").is_some()
    });
    let addr = lab.addr_of("eth0v0").unwrap();
    assert!(
        !lab.client_out("ip route show table all")
            .contains("default via 10.1.0.1 dev eth0v0 proto dhcp")
    );
    wait_until("the hook's gateway in srcsel's table", CONVERGE, || {
        owned(&lab).contains("default via 10.1.0.1 dev eth0v0")
    });
    assert!(
        lab.log("daemon")
            .contains("lease hook: eth0v0 gateway 10.1.0.1"),
        "{}",
        lab.log("daemon")
    );
    let t = unique("hook");
    curl_via(&lab, "eth0v0", &t);
    assert_eq!(lab.source_of(&t), addr);

    // Without a daemon, the hook applies the lease itself.
    lab.stop("daemon");
    ok(&mut lab.srcsel(["down"]));
    assert!(!owned(&lab).contains("eth0v0"));
    lab.start_dhcpcd_on("eth0v0", "nogateway", &hook.display().to_string());
    wait_until(
        "the hook to set eth0v0 up without a daemon",
        Duration::from_secs(30),
        || owned(&lab).contains("default via 10.1.0.1 dev eth0v0"),
    );
    let t = unique("nodaemon");
    curl_via(&lab, "eth0v0", &t);
    assert_eq!(lab.source_of(&t), lab.addr_of("eth0v0").unwrap());
}

#[test]
fn restart_adopts_without_flapping_and_kill_9_keeps_traffic_flowing() {
    let mut lab = lab();
    let pristine = (lab.rules(), lab.routes());
    lab.start_daemon(&[]);
    let mut runner = Runner::start(&lab, "usb0");
    let t = unique("first");
    assert_eq!(runner.connect(&t), 0);

    let before = (lab.rules(), lab.routes());
    lab.stop("daemon");
    lab.start_daemon(&[]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        (lab.rules(), lab.routes()),
        before,
        "a restart changed the dumps"
    );
    let restarted = lab.log("daemon");
    let second = &restarted[restarted.rfind("watching links").unwrap()..];
    assert!(
        !second.contains("usb0: up"),
        "the restarted daemon re-published usb0: {second}"
    );

    lab.signal("daemon", libc::SIGKILL);
    let t = unique("afterkill");
    assert_eq!(runner.connect(&t), 0);
    assert_eq!(lab.source_of(&t), lab.usb0_addr());
    drop(runner);
    ok(&mut lab.srcsel(["down"]));
    assert_eq!((lab.rules(), lab.routes()), pristine);
}

#[test]
fn a_deleted_rule_comes_back_and_a_foreign_rule_is_left_alone() {
    let mut lab = lab();
    lab.start_daemon(&[]);
    ok(&mut lab.srcsel(["run", "--via", "usb0", "--", "true"]));
    let rules = lab.client_out("ip rule | grep 'proto 201'");
    let prio: u32 = rules
        .lines()
        .next()
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let lookup = format!("{}:", prio + 1);
    ok(lab
        .client("ip")
        .args(["rule", "del", "priority", &(prio + 1).to_string()]));
    wait_until("the deleted rule to come back", CONVERGE, || {
        lab.rules().contains(&lookup)
    });

    let foreign = format!("{}:\tfrom all fwmark 0x99 lookup main", prio + 5);
    ok(lab.client("ip").args([
        "rule",
        "add",
        "priority",
        &(prio + 5).to_string(),
        "fwmark",
        "0x99",
        "lookup",
        "main",
    ]));
    ok(lab
        .client("ip")
        .args(["rule", "del", "priority", &(prio + 1).to_string()]));
    wait_until("the deleted rule to come back", CONVERGE, || {
        lab.rules().contains(&lookup)
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        lab.rules().contains(&foreign),
        "the foreign rule was touched: {}",
        lab.rules()
    );
}

#[test]
fn bad_config_is_refused_with_its_line_and_changes_nothing() {
    let lab = lab();
    ok(lab.client("ip").args([
        "route",
        "add",
        "192.0.2.0/24",
        "dev",
        "eth0",
        "table",
        "300",
    ]));
    let before = (lab.rules(), lab.routes());
    let refused = |text: Option<&str>, expect: &str| {
        let path = lab.dir.join(unique("cfg"));
        if let Some(t) = text {
            fs::write(&path, t).unwrap();
        }
        let o = out(lab.srcsel(["daemon", "--config"]).arg(&path));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(125), "{err}");
        assert!(err.contains(expect), "expected {expect:?} in {err}");
        assert!(
            err.contains(&path.display().to_string()) || text.is_some(),
            "{err}"
        );
    };
    refused(
        Some("[[uplink]]\nname = \"usb0\"\nmetric = 3000\n"),
        ":3: unknown field `metric`",
    );
    refused(
        Some("[[uplink]]\nname = \"a\"\ntable = 7\n[[uplink]]\nname = \"b\"\ntable = 7\n"),
        ":6: table 7 is already used by uplink a",
    );
    refused(
        Some(
            "[[uplink]]\nname = \"a\"\nmark = 0x1000000\n[[uplink]]\nname = \"b\"\nmark = 0x1000000\n",
        ),
        ":6: mark 0x1000000",
    );
    refused(
        Some("[[uplink]]\nname = \"usb0\"\ntable = 300\n"),
        "routing table 300 already holds routes that srcsel did not add",
    );
    refused(None, "cannot read");
    assert_eq!((lab.rules(), lab.routes()), before);
    assert!(!lab.pin_dir().exists(), "pins were created");
}

#[test]
fn status_reports_uplinks_rules_assignments_and_counters() {
    let mut lab = lab();
    lab.start_daemon(&[]);
    let mut runner = Runner::start(&lab, "usb0");
    for i in 0..3 {
        assert_eq!(runner.connect(&unique(&format!("st{i}"))), 0);
    }
    let udp = format!(
        "python3 -c 'import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(3); \
         s.sendto(b\"{}\",(\"{SERVER}\",9999)); s.recv(99)'",
        unique("stu")
    );
    ok(&mut lab.run_via_usb0(&udp));

    let v: serde_json::Value =
        serde_json::from_str(&ok(&mut lab.srcsel(["status", "--json"]))).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["daemon"], true);
    let u = &v["uplinks"][0];
    assert_eq!(u["name"], "usb0");
    assert_eq!(u["state"], "up");
    assert_eq!(u["address"], lab.usb0_addr());
    assert_eq!(u["gateway"], "10.99.0.1");
    assert_eq!(u["mark"], "0x1000000");
    assert_eq!(u["rules"].as_array().unwrap().len(), 5, "{u}");
    let runs = u["assignments"].as_array().unwrap();
    assert!(
        runs.iter()
            .any(|a| a["mode"] == "strict" && !a["pids"].as_array().unwrap().is_empty()),
        "{u}"
    );
    let c = &u["counters"];
    assert!(c["connections"].as_u64().unwrap() >= 3, "{c}");
    assert!(c["datagrams"].as_u64().unwrap() >= 1, "{c}");
    assert!(
        c["bytes_out"].as_u64().unwrap() > 0 && c["bytes_in"].as_u64().unwrap() > 0,
        "{c}"
    );

    let human = ok(&mut lab.srcsel(["status"]));
    assert!(
        human.contains("daemon: running")
            && human.contains(&format!("usb0: up {}", lab.usb0_addr())),
        "{human}"
    );
}
