//! srcsel changes only what it was asked to: the packaged hooks report every
//! interface's lease, and a report of an interface nothing named changes no
//! rule or route; an uplink's `from` rule never bypasses the host's own
//! specific routes (a second router on eth0's LAN, reached by a static route
//! in the main table). Judged by what that router's server saw. Needs root
//! (`cargo xtask test`).
use std::fs;

use srcsel_lab::{ETH0_ADDR, Lab, SITE, ok, out, stderr};

fn lab() -> Lab {
    let mut lab = Lab::new(env!("CARGO_BIN_EXE_srcsel"));
    lab.add_lan_router();
    lab
}

/// What the packaged hook does for eth0's lease (dhcpcd's variables).
fn report_eth0(lab: &Lab) {
    ok(lab
        .srcsel(["lease"])
        .env("interface", "eth0")
        .env("reason", "BOUND")
        .env("new_ip_address", ETH0_ADDR)
        .env("new_routers", "10.1.0.1")
        .env("new_domain_name_servers", "10.1.0.1"));
}

/// The site behind the second router, reached unassigned: from eth0's
/// address, bound or not.
fn assert_site_reached_from_eth0(lab: &Lab, when: &str) {
    assert_eq!(
        lab.site_saw(&[], &[]).as_deref(),
        Some(ETH0_ADDR),
        "{when}: unassigned"
    );
    assert_eq!(
        lab.site_saw(&[], &["--interface", ETH0_ADDR]).as_deref(),
        Some(ETH0_ADDR),
        "{when}: unassigned, bound to eth0's address"
    );
}

/// `srcsel down` leaves `ip rule` and every table as they were before.
fn down_restores(lab: &Lab, rules: &str, routes: &str) {
    ok(&mut lab.srcsel(["down"]));
    assert_eq!(lab.rules(), rules, "down left rules");
    assert_eq!(lab.routes(), routes, "down left routes");
}

#[test]
fn a_report_of_an_unnamed_interface_is_recorded_and_changes_nothing() {
    let mut lab = lab();
    let (rules, routes) = (lab.rules(), lab.routes());
    assert_site_reached_from_eth0(&lab, "before srcsel");

    // Without a daemon: recorded, nothing else.
    report_eth0(&lab);
    assert_eq!(lab.rules(), rules, "a report added rules");
    assert_eq!(lab.routes(), routes, "a report added routes");
    assert_site_reached_from_eth0(&lab, "after eth0's report");

    // With one: the same, and status knows it.
    let config = lab.dir.join("srcsel.toml");
    fs::write(&config, "").unwrap();
    lab.start_daemon(&["--config", &config.display().to_string()]);
    report_eth0(&lab);
    assert_eq!(lab.rules(), rules, "a report to the daemon added rules");
    assert_eq!(lab.routes(), routes, "a report to the daemon added routes");
    let status = ok(&mut lab.srcsel(["status", "--json"]));
    let json: serde_json::Value = serde_json::from_str(&status).unwrap();
    let known = &json["known"][0];
    assert_eq!(known["interface"], "eth0", "{status}");
    assert_eq!(known["gateway"], "10.1.0.1", "{status}");
    assert!(json["uplinks"].as_array().unwrap().is_empty(), "{status}");
    lab.stop("daemon");

    // Named now (a run): the recorded report serves it, and its DNS.
    let o = out(&mut lab.srcsel(["run", "--via", "eth0", "--", "true"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("knows no DNS"), "{}", stderr(&o));
    let status = ok(&mut lab.srcsel(["status", "--json"]));
    let json: serde_json::Value = serde_json::from_str(&status).unwrap();
    let eth0 = &json["uplinks"][0];
    assert_eq!(eth0["name"], "eth0", "{status}");
    assert_eq!(eth0["dns"][0], "10.1.0.1", "{status}");
    assert_eq!(eth0["dns_source"], "dhcp", "{status}");

    down_restores(&lab, &rules, &routes);
}

#[test]
fn main_tables_specific_routes_win_for_managed_uplinks_and_assigned_programs() {
    let lab = lab();
    let (rules, routes) = (lab.rules(), lab.routes());
    // Both uplinks managed (runs named them), eth0's lease reported too.
    report_eth0(&lab);
    for via in ["eth0", "usb0"] {
        ok(&mut lab.srcsel(["run", "--via", via, "--", "true"]));
    }
    assert!(lab.rules().contains("proto 201"), "{}", lab.rules());
    let route = lab.client_out(&format!("ip route get {SITE} from {ETH0_ADDR}"));
    assert!(route.contains("via 10.1.0.254"), "{route}");
    assert_site_reached_from_eth0(&lab, "eth0 and usb0 managed");
    // An assigned program reaches the LAN's site the LAN way, in both modes.
    let srcsel = lab.srcsel.display().to_string();
    for mode in [None, Some("--fallback")] {
        let mut run = vec![srcsel.as_str(), "run", "--via", "usb0"];
        run.extend(mode);
        run.push("--");
        assert_eq!(
            lab.site_saw(&run, &[]).as_deref(),
            Some(ETH0_ADDR),
            "a program assigned to usb0 ({mode:?})"
        );
    }
    down_restores(&lab, &rules, &routes);
}

#[test]
fn a_strict_run_without_a_known_resolver_says_lookups_will_be_refused() {
    let lab = lab();
    // The lab's dhcpcd runs no hook: srcsel heard no resolver for usb0.
    let o = out(&mut lab.srcsel(["run", "--via", "usb0", "--", "true"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(
        err.matches("usb0 knows no DNS resolver").count(),
        1,
        "{err}"
    );
    assert!(err.contains("dns = [...]"), "{err}");
    let o = out(&mut lab.srcsel(["run", "--via", "usb0", "--fallback", "--", "true"]));
    assert!(!stderr(&o).contains("knows no DNS"), "{}", stderr(&o));
    let status = ok(&mut lab.srcsel(["status"]));
    assert!(
        status.contains("none known: strict programs' name lookups are refused"),
        "{status}"
    );
}
