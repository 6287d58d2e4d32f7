//! `srcsel daemon` kept in force: restarts and crashes, rules put back,
//! configs refused, status. Needs root (`cargo xtask test`).
use std::{fs, time::Duration};

use srcsel_lab::{Lab, Runner, SERVER, ok, out, stderr, unique, wait_until};

const CONVERGE: Duration = Duration::from_secs(10);

fn lab() -> Lab {
    Lab::new(env!("CARGO_BIN_EXE_srcsel"))
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
    // IPv4: main, eth0's address's answers, table, from (main, then
    // table), strict; IPv6 (no address in this lab): main, table, strict.
    assert_eq!(u["rules"].as_array().unwrap().len(), 9, "{u}");
    assert_eq!(u["state6"], "down");
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
