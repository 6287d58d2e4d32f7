//! Ordered uplinks (`--via usb0,eth0`, `via = ["usb0", "eth0"]`) on the lab:
//! the hotspot's upstream cut silently, its health checks find it, and new
//! connections move to eth0 and back, per family; judged by the addresses
//! the server saw and the routers' foreign-source counters. Needs root.
use std::{fs, time::Duration};

use srcsel_lab::{
    CHECK, CHECK6, CgroupTree, ETH0_ADDR, ETH0_NET6, HOME_ANSWER, HOME_DNS, HOTSPOT_ANSWER, Lab,
    NAME, SERVER, USB0_NET6, V6, cgroup2_root, ok, out, unique, url, url6, usb0_health, wait_until,
};

fn lab() -> Lab {
    Lab::new(env!("CARGO_BIN_EXE_srcsel"))
}

/// usb0 probed through itself, both families, a round a second.
fn health(extra: &str) -> String {
    usb0_health(&[CHECK, CHECK6], extra)
}

const VERDICT: Duration = Duration::from_secs(5);

fn wait_health(lab: &Lab, key: &str, want: &str) {
    wait_until(&format!("usb0's {key} to be {want}"), VERDICT, || {
        lab.uplink_status("usb0")[key] == want
    });
}

/// The addresses a loop of connections (one every 200 ms) saw itself
/// come from, in order ("fail" for one that failed).
fn loop_sources(lab: &Lab, role: &str) -> Vec<String> {
    lab.log(role)
        .lines()
        .map(str::trim)
        .filter(|l| *l == "fail" || l.parse::<std::net::IpAddr>().is_ok())
        .map(str::to_owned)
        .collect()
}

/// Whether `seen` goes through the phases in order (failures between them
/// allowed), and holds nothing else.
fn in_phases(seen: &[String], phases: &[&str]) -> bool {
    let mut at = 0;
    for s in seen.iter().filter(|s| *s != "fail") {
        while at < phases.len() && phases[at] != s {
            at += 1;
        }
        if at == phases.len() {
            return false;
        }
    }
    at == phases.len() - 1
}

#[test]
fn a_run_through_a_list_fails_over_to_eth0_and_back_while_it_runs() {
    let mut lab = lab();
    lab.start_daemon_with_config(&health(""), &[]);
    wait_health(&lab, "health", "up");
    let usb0 = lab.usb0_addr();
    let script = format!(
        "while :; do curl -s --max-time 1 {} || echo fail; sleep 0.2; done",
        url("loop")
    );
    let mut run = lab.srcsel(["run", "--via", "usb0,eth0", "--", "sh", "-c", &script]);
    lab.spawn("loop", &mut run);
    // A held connection on usb0, to be reset when the list leaves it.
    let hold = lab.hold_script();
    let mut held = lab.srcsel(["run", "--via", "usb0,eth0", "--", "python3"]);
    lab.spawn("held-usb0", held.arg(&hold).arg(SERVER));
    lab.wait_held("held-usb0");
    assert!(
        lab.log("held-usb0").contains(&usb0),
        "{}",
        lab.log("held-usb0")
    );
    wait_until("the loop to reach the server", VERDICT, || {
        loop_sources(&lab, "loop").contains(&usb0)
    });
    let list = lab.uplink_status("usb0,eth0");
    assert_eq!(
        (&list["active"], &list["active6"]),
        (&"usb0".into(), &serde_json::Value::Null)
    );

    lab.cut_hotspot_upstream();
    wait_health(&lab, "health", "down");
    wait_until(
        "the loop to leave through eth0",
        Duration::from_secs(2),
        || {
            loop_sources(&lab, "loop")
                .last()
                .is_some_and(|s| s == ETH0_ADDR)
        },
    );
    wait_until(
        "the held connection to be reset",
        Duration::from_secs(1),
        || lab.hold_ended("held-usb0"),
    );
    assert_eq!(lab.uplink_status("usb0,eth0")["active"], "eth0");
    assert!(
        lab.log("daemon")
            .contains("usb0,eth0: IPv4 now through eth0 (was usb0)")
    );
    // One held on eth0 now: the failback must leave it alone.
    let mut held = lab.srcsel(["run", "--via", "usb0,eth0", "--", "python3"]);
    lab.spawn("held-eth0", held.arg(&hold).arg(SERVER));
    lab.wait_held("held-eth0");
    assert!(
        lab.log("held-eth0").contains(ETH0_ADDR),
        "{}",
        lab.log("held-eth0")
    );

    lab.restore_hotspot_upstream();
    wait_health(&lab, "health", "up");
    wait_until(
        "the loop to leave through usb0 again",
        Duration::from_secs(2),
        || {
            loop_sources(&lab, "loop")
                .last()
                .is_some_and(|s| *s == usb0)
        },
    );
    lab.stop("loop");
    let seen = loop_sources(&lab, "loop");
    assert!(in_phases(&seen, &[&usb0, ETH0_ADDR, &usb0]), "{seen:?}");
    assert!(!lab.hold_ended("held-eth0"), "{}", lab.log("held-eth0"));
    assert_eq!(lab.foreign_sources("r1"), (0, 0));
    assert_eq!(lab.foreign_sources("r2"), (0, 0));
    // No connection of the loop reached the server from another address.
    let peers: Vec<_> = lab.seen("loop").into_iter().map(|(_, p)| p).collect();
    assert!(
        peers.iter().all(|p| *p == usb0 || p == ETH0_ADDR),
        "{peers:?}"
    );
}

#[test]
fn an_assigned_cgroup_lists_ipv6_fails_over_while_its_ipv4_stays() {
    let mut lab = lab();
    lab.enable_ipv6(V6::Both);
    let name = unique("fo");
    let tree = CgroupTree(cgroup2_root().join(&name));
    fs::create_dir_all(&tree.0).unwrap();
    let config = format!(
        "{}\n[[assign]]\ncgroup = \"{name}\"\nvia = [\"usb0\", \"eth0\"]\nmode = \"strict\"\n",
        health("")
    );
    lab.start_daemon_with_config(&config, &[]);
    wait_health(&lab, "health6", "up");
    let procs = tree.0.join("cgroup.procs");
    let curl_in = |opts: &str, url: String| {
        let t = format!(
            "echo $$ > {} && exec curl -sf --max-time 2 {opts} {url}",
            procs.display()
        );
        ok(lab.client("sh").args(["-c", &t])).trim().to_owned()
    };
    assert!(curl_in("-6", url6("v6")).starts_with(USB0_NET6));

    lab.cut_hotspot_upstream6();
    wait_health(&lab, "health6", "down");
    assert_eq!(lab.uplink_status("usb0")["health"], "up");
    wait_until("IPv6 to fail over", Duration::from_secs(1), || {
        curl_in("-6", url6(&unique("v6"))).starts_with(ETH0_NET6)
    });
    assert_eq!(curl_in("-4", url("v4")), lab.usb0_addr());
    let json: serde_json::Value =
        serde_json::from_str(&ok(&mut lab.srcsel(["status", "--json"]))).unwrap();
    let a = &json["assigned"][0];
    assert_eq!(
        (&a["via"], &a["active"], &a["active6"]),
        (&"usb0,eth0".into(), &"usb0".into(), &"eth0".into()),
        "{a}"
    );
    assert_eq!(lab.foreign_sources("r1"), (0, 0));
    assert_eq!(lab.foreign_sources("r2"), (0, 0));
}

#[test]
fn with_no_member_left_a_strict_list_refuses_and_a_fallback_one_routes_normally() {
    let mut lab = lab();
    // eth0's checks always fail (its target refuses): the list has usb0 only.
    let config = format!(
        "{}\n[[uplink]]\nname = \"eth0\"\n[uplink.health]\n\
         targets = [\"tcp://{SERVER}:1\"]\ninterval = \"1s\"\ntimeout = \"500ms\"\ndown_after = 2\n",
        health("")
    );
    lab.start_daemon_with_config(&config, &[]);
    wait_until("eth0's health to be down", VERDICT, || {
        lab.uplink_status("eth0")["health"] == "down"
    });
    lab.cut_hotspot_upstream();
    wait_health(&lab, "health", "down");
    assert_eq!(
        lab.uplink_status("usb0,eth0")["active"],
        serde_json::Value::Null
    );
    let t = unique("strict");
    let script = format!("curl -sS --max-time 3 {}", url(&t));
    let o = out(&mut lab.srcsel(["run", "--via", "usb0,eth0", "--", "sh", "-c", &script]));
    assert!(!o.status.success(), "{o:?}");
    lab.assert_unseen(&t);
    let t = unique("fallback");
    let script = format!("curl -sS --max-time 3 {}", url(&t));
    ok(&mut lab.srcsel([
        "run",
        "--via",
        "usb0,eth0",
        "--fallback",
        "--",
        "sh",
        "-c",
        &script,
    ]));
    assert_eq!(lab.source_of(&t), ETH0_ADDR);
}

/// A UDP datagram from a socket the program never bound (the kernel gives
/// it a port first): the server echoes the address it came from.
const DATAGRAM: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(b"dgram", (sys.argv[1], 9999))
print(s.recvfrom(100)[0].decode().strip())
"#;

#[test]
fn a_lists_datagrams_and_name_lookups_follow_its_active_uplink() {
    let mut lab = lab();
    lab.start_resolvers();
    lab.set_resolv_conf(&format!("nameserver {HOME_DNS}\n"));
    let usb0_health = health("dns = [\"10.99.0.1\"]\n");
    let config = format!("{usb0_health}\n[[uplink]]\nname = \"eth0\"\ndns = [\"{HOME_DNS}\"]\n");
    lab.start_daemon_with_config(&config, &[]);
    wait_health(&lab, "health", "up");
    let via_list = |program: &str, args: &[&str]| {
        let mut c = lab.srcsel(["run", "--via", "usb0,eth0", "--", program]);
        ok(c.args(args))
    };
    let lookup = || via_list("busybox", &["nslookup", "-type=a", NAME]);
    let datagram = || {
        via_list("python3", &["-c", DATAGRAM, SERVER])
            .trim()
            .to_owned()
    };
    assert!(lookup().contains(HOTSPOT_ANSWER), "{}", lookup());
    assert_eq!(datagram(), lab.usb0_addr());

    lab.cut_hotspot_upstream();
    wait_health(&lab, "health", "down");
    let answer = lookup();
    assert!(
        answer.contains(HOME_ANSWER),
        "the home resolver's answer: {answer}"
    );
    assert_eq!(datagram(), ETH0_ADDR);
    assert_eq!(lab.foreign_sources("r1"), (0, 0));
    assert_eq!(lab.foreign_sources("r2"), (0, 0));
}
