//! Each uplink's resolvers as srcsel learns them (issue: DNS follows the
//! uplink): from the hotspot's DHCP leases through the lease hook, kept
//! current across a renumbering and the lease's end, replaced by the
//! config's `dns`, or the system's kept with `system_dns`. Needs root
//! (`cargo xtask test`).
use std::{fs, path::Path, time::Duration};

use srcsel_lab::{Lab, ok, wait_until};

const CONVERGE: Duration = Duration::from_secs(10);

/// usb0's DNS fields in `srcsel status --json`: (dns, dns_source, dns6, dns_source6, hook_dns).
fn usb0_dns(lab: &Lab) -> (Vec<String>, String, Vec<String>, String, Vec<String>) {
    let v: serde_json::Value =
        serde_json::from_str(&ok(&mut lab.srcsel(["status", "--json"]))).unwrap();
    let u = v["uplinks"]
        .as_array()
        .and_then(|a| a.iter().find(|u| u["name"] == "usb0"))
        .cloned()
        .unwrap_or_default();
    let list = |k: &str| -> Vec<String> {
        u[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let text = |k: &str| u[k].as_str().unwrap_or("null").to_owned();
    (
        list("dns"),
        text("dns_source"),
        list("dns6"),
        text("dns_source6"),
        list("hook_dns"),
    )
}

/// Writes the daemon's config and has it read it again.
fn reconfigure(lab: &Lab, config: &Path, text: &str) {
    fs::write(config, text).unwrap();
    lab.reload_daemon();
}

#[test]
fn resolvers_follow_the_hotspots_leases_and_the_config() {
    let mut lab = Lab::new(env!("CARGO_BIN_EXE_srcsel"));
    let hook = lab.srcsel_hook();
    let config = lab.dir.join("srcsel.toml");
    fs::write(&config, "[[uplink]]\nname = \"usb0\"\n").unwrap();
    lab.start_daemon(&["--config", &config.display().to_string()]);
    let learned = |lab: &Lab, router: &str| {
        let want = (
            vec![router.to_owned()],
            "dhcp".to_owned(),
            vec![],
            "null".to_owned(),
            vec![router.to_owned()],
        );
        wait_until(&format!("{router} as usb0's resolver"), CONVERGE, || {
            usb0_dns(lab) == want
        });
    };

    // The lease dnsmasq gives (the router as resolver), through dhcpcd's hook.
    lab.start_dhcpcd_on("usb0", "metric 3000", &hook);
    learned(&lab, "10.99.0.1");
    lab.renumber_hotspot("10.98.0");
    learned(&lab, "10.98.0.1");

    // The config's resolvers win, for both families; the lease's are kept.
    reconfigure(
        &lab,
        &config,
        "[[uplink]]\nname = \"usb0\"\ndns = [\"192.0.2.53\", \"2001:db8::53\"]\n",
    );
    let d = usb0_dns(&lab);
    assert_eq!(
        d,
        (
            vec!["192.0.2.53".into()],
            "config".into(),
            vec!["2001:db8::53".into()],
            "config".into(),
            vec!["10.98.0.1".into()]
        )
    );
    let text = ok(&mut lab.srcsel(["status"]));
    assert!(
        text.contains("DNS: 192.0.2.53 (config), 2001:db8::53 (config)"),
        "{text}"
    );

    reconfigure(
        &lab,
        &config,
        "[[uplink]]\nname = \"usb0\"\nsystem_dns = true\n",
    );
    let (dns, source, ..) = usb0_dns(&lab);
    assert_eq!((dns, source.as_str()), (vec![], "system"));
    assert!(ok(&mut lab.srcsel(["status"])).contains("DNS: the system's resolvers"));

    // Back to the lease's; then the lease ends (dhcpcd stops and releases it).
    reconfigure(&lab, &config, "[[uplink]]\nname = \"usb0\"\n");
    learned(&lab, "10.98.0.1");
    lab.stop("dhcpcd-usb0");
    wait_until("usb0 to have no resolver", CONVERGE, || {
        usb0_dns(&lab) == (vec![], "null".into(), vec![], "null".into(), vec![])
    });
    assert!(ok(&mut lab.srcsel(["status"])).contains("DNS: none known"));
}
