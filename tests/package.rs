//! The package on a Debian 12 guest with systemd as PID 1, amd64 or arm64
//! (the VMs of `cargo xtask test`, which build the package of the guest's
//! architecture from the debug binary first), as a Raspberry Pi OS user
//! meets it: `apt install ./srcsel_*.deb`, its service enabled and running, `man srcsel`, completions; a slice
//! assigned to usb0 while NetworkManager manages usb0 (its lease and a
//! renumbering reach srcsel through the packaged dispatcher script and
//! rtnetlink), then dhcpcd with the packaged hook and `nogateway`; and
//! `apt purge` leaving `ip rule` and `ip route show table all` exactly as
//! before. The guest's own namespace is the lab's client here: the VM is
//! this test's machine, and NetworkManager manages only that namespace.
//! Judged by what the lab's server saw.
use std::{fs, os::unix::fs::PermissionsExt as _, path::Path, process::Command, time::Duration};

use srcsel_lab::{ETH0_ADDR, Lab, ok, out, stderr, unique, url, wait_until};

/// The Debian architecture this test binary was built for (the VM's own).
#[cfg(target_arch = "aarch64")]
macro_rules! deb_arch {
    () => {
        "arm64"
    };
}
#[cfg(not(target_arch = "aarch64"))]
macro_rules! deb_arch {
    () => {
        "amd64"
    };
}

const DEB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../target/dist/test/srcsel_",
    env!("CARGO_PKG_VERSION"),
    "_",
    deb_arch!(),
    ".deb"
);
const SLICE: &str = "hotspot.slice";
const NM_CONF: &str = "/etc/NetworkManager/conf.d/90-srcsel-test.conf";
const NM_HOOK: &str = "/usr/lib/NetworkManager/dispatcher.d/90-srcsel";
const NETWORKD_CONF: &str = "/run/systemd/network/50-srcsel-test.network";
/// NetworkManager takes usb0 alone, and makes no profiles of its own.
const NM_CONF_TEXT: &str =
    "[main]\nno-auto-default=*\n[keyfile]\nunmanaged-devices=except:interface-name:usb0\n";

fn sh(line: &str) -> String {
    ok(Command::new("sh").args(["-c", line]))
}

/// Exit status and output of a command line that may fail.
fn try_sh(line: &str) -> (bool, String) {
    let o = out(Command::new("sh").args(["-c", line]));
    (
        o.status.success(),
        format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o)),
    )
}

/// Routing as `ip` shows it, both families, every table.
fn routing() -> String {
    sh("ip rule; ip -6 rule; ip route show table all; ip -6 route show table all")
}

/// Purges the package and stops NetworkManager, also when the test failed.
/// (The lab, dropped after it, removes usb0 and eth0.)
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = out(Command::new("apt-get").args(["purge", "-y", "-q", "srcsel"]));
        let _ = out(Command::new("nmcli").args(["connection", "delete", "hotspot"]));
        let _ = out(Command::new("systemctl").args(["stop", "NetworkManager.service"]));
        let _ = fs::remove_file(NM_CONF);
        let _ = fs::remove_file(NETWORKD_CONF);
        let _ = out(Command::new("systemctl").args([
            "stop",
            "systemd-networkd.service",
            "systemd-networkd.socket",
        ]));
    }
}

#[test]
fn installs_steers_a_slice_under_network_manager_and_dhcpcd_and_purges_to_the_state_before() {
    assert!(
        fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd"),
        "this suite needs systemd as PID 1: `cargo xtask test` runs it in the VM"
    );
    assert!(
        Path::new(DEB).is_file(),
        "{DEB}: `cargo xtask test` builds it"
    );
    let mut lab = Lab::with_client_here("/usr/bin/srcsel");
    let _cleanup = Cleanup;
    let before = routing();

    install();
    // The README's quick start, before usb0 has any lease: strict fails at once.
    sh(&format!("srcsel assign --slice {SLICE} --via usb0"));
    assert_eq!(curl_in_slice(&lab), None, "strict, usb0 never leased");
    network_manager(&mut lab);
    networkd(&mut lab);
    dhcpcd_nogateway(&mut lab);

    lab.stop("dhcpcd-usb0");
    let o = out(Command::new("apt-get").args(["purge", "-y", "-q", "srcsel"]));
    assert!(o.status.success(), "apt-get purge: {}", stderr(&o));
    assert_eq!(routing(), before, "routing after purge");
    assert!(!Path::new("/etc/srcsel").exists());
    assert!(
        !Path::new(&format!(
            "/etc/systemd/system.control/{SLICE}.d/50-srcsel.conf"
        ))
        .exists(),
        "the slice's drop-in is left"
    );
    assert_eq!(
        try_sh("systemctl is-active srcsel.service").1.trim(),
        "inactive"
    );
    assert!(
        !sh("ls /sys/fs/bpf/srcsel 2>/dev/null || true").contains("net-"),
        "pins left"
    );
}

/// `apt install ./srcsel_*_amd64.deb`, and what it put where.
fn install() {
    let o = out(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends", DEB])
        .env("DEBIAN_FRONTEND", "noninteractive"));
    assert!(o.status.success(), "apt-get install {DEB}: {}", stderr(&o));
    assert_eq!(
        try_sh("systemctl is-enabled srcsel.service").1.trim(),
        "enabled"
    );
    assert_eq!(
        try_sh("systemctl is-active srcsel.service").1.trim(),
        "active"
    );
    assert!(sh("getent group srcsel").starts_with("srcsel:"));
    assert!(sh("srcsel --version").starts_with("srcsel "));
    let man = sh("MANPAGER=cat MANWIDTH=80 man srcsel 2>&1");
    assert!(man.contains("srcsel-assign(1)"), "man srcsel:\n{man}");
    assert!(sh("MANPAGER=cat man srcsel-assign 2>&1").contains("--slice"));
    // What bash completes after `srcsel as` and `srcsel assign --s`.
    let complete = |words: &str| {
        sh(&format!(
            "bash -c '. /usr/share/bash-completion/completions/srcsel; COMP_WORDS=({words}); \
             COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); _srcsel srcsel \"${{COMP_WORDS[-1]}}\" \
             \"${{COMP_WORDS[-2]}}\"; echo \"${{COMPREPLY[@]}}\"'"
        ))
    };
    assert_eq!(complete("srcsel as").trim(), "assign");
    assert_eq!(complete("srcsel assign --sl").trim(), "--slice");
    for f in [
        "/usr/share/zsh/vendor-completions/_srcsel",
        "/usr/share/fish/vendor_completions.d/srcsel.fish",
        "/usr/lib/dhcpcd/dhcpcd-hooks/90-srcsel",
        "/etc/dhcp/dhclient-exit-hooks.d/srcsel",
    ] {
        assert!(Path::new(f).is_file(), "{f}");
    }
    let nm = fs::metadata(NM_HOOK).unwrap();
    assert_eq!(
        nm.permissions().mode() & 0o111,
        0o111,
        "the dispatcher script runs"
    );
    let config = fs::read_to_string("/etc/srcsel/srcsel.toml").unwrap();
    assert!(
        config.lines().all(|l| l.is_empty() || l.starts_with('#')),
        "the packaged config sets nothing:\n{config}"
    );
}

/// curl started by systemd in the hotspot slice: the source the server saw,
/// or None when curl failed.
fn curl_in_slice(lab: &Lab) -> Option<String> {
    let t = unique("pk");
    let (done, _) = try_sh(&format!(
        "systemd-run --wait --pipe --quiet --slice={SLICE} curl -sf -m5 {}",
        url(&t)
    ));
    if done {
        return Some(lab.source_of(&t));
    }
    lab.assert_unseen(&t);
    None
}

/// curl in this test's own cgroup, which no assignment covers.
fn curl_unassigned(lab: &Lab) -> String {
    let t = unique("pk");
    sh(&format!("curl -sf -m5 {}", url(&t)));
    lab.source_of(&t)
}

/// Waits until srcsel's table for usb0 routes through `gateway`, under the
/// names the package's iproute2 files give.
fn wait_for_gateway(gateway: &str) {
    wait_until(
        &format!("srcsel's route via {gateway}"),
        Duration::from_secs(30),
        || {
            // The table exists only once it has a route: until then `ip` fails.
            sh("ip rule").contains("lookup srcsel-1 proto srcsel")
                && try_sh("ip route show table srcsel-1")
                    .1
                    .contains(&format!("default via {gateway} "))
        },
    );
}

/// The daemon's journal has `line` (what `srcsel lease` from a hook made it say).
fn wait_for_journal(line: &str) {
    wait_until(
        &format!("the journal to show {line:?}"),
        Duration::from_secs(30),
        || try_sh(&format!("journalctl -q -u srcsel.service -g '{line}'")).0,
    );
}

/// usb0 under NetworkManager as on Raspberry Pi OS (a hotspot's metric):
/// the slice leaves through it, follows a renumbering, and fails at once
/// while usb0 has no lease.
fn network_manager(lab: &mut Lab) {
    fs::write(NM_CONF, NM_CONF_TEXT).unwrap();
    sh("systemctl start NetworkManager.service");
    let state = || try_sh("nmcli -g GENERAL.STATE device show usb0").1;
    wait_until(
        "NetworkManager to see usb0",
        Duration::from_secs(60),
        || !state().contains("Error"),
    );
    // A veth is unmanaged by default (NetworkManager's udev rules); a USB
    // hotspot (rndis_host, cdc_ether) is not.
    sh("nmcli device set usb0 managed yes");
    wait_until(
        "NetworkManager to manage usb0",
        Duration::from_secs(30),
        || state().contains("disconnected"),
    );
    sh(
        "nmcli connection add save no type ethernet ifname usb0 con-name hotspot \
        ipv4.method auto ipv4.route-metric 3000 ipv6.method disabled",
    );
    // First as on a host without srcsel's dispatcher script: the lease's
    // resolver is asked of NetworkManager over D-Bus.
    sh(&format!("chmod -x {NM_HOOK}"));
    sh("nmcli --wait 60 connection up hotspot");
    lab.wait_for_lease();
    wait_for_gateway("10.99.0.1");
    wait_for_dns("10.99.0.1", "NetworkManager");
    sh(&format!("chmod +x {NM_HOOK}"));

    assert_eq!(
        curl_in_slice(lab),
        Some(lab.usb0_addr()),
        "the slice, NetworkManager's lease"
    );
    assert_eq!(curl_unassigned(lab), ETH0_ADDR, "unassigned");

    lab.renumber_hotspot_with("NetworkManager", "10.98.0", |_| {
        try_sh("nmcli -g GENERAL.STATE device show usb0")
            .1
            .contains("unavailable")
    });
    wait_for_gateway("10.98.0.1");
    wait_for_journal("lease hook: usb0 gateway 10.98.0.1");
    // The lease's resolver too, from the dispatcher's DHCP4_DOMAIN_NAME_SERVERS.
    wait_for_dns("10.98.0.1", "dhcp");
    assert_eq!(
        curl_in_slice(lab),
        Some(lab.usb0_addr()),
        "the slice after renumbering"
    );

    sh("nmcli --wait 30 connection down hotspot");
    assert_eq!(curl_in_slice(lab), None, "strict, usb0 without a lease");
    assert_eq!(curl_unassigned(lab), ETH0_ADDR, "unassigned, usb0 down");
    sh("nmcli connection delete hotspot && systemctl stop NetworkManager.service");
    // usb0's IPv6 as before NetworkManager took it (`ipv6.method disabled`
    // leaves it switched off), so the routing compared after purge is srcsel's alone.
    sh("ip link set usb0 addrgenmode none && sysctl -qw net.ipv6.conf.usb0.disable_ipv6=0");
    fs::remove_file(NM_CONF).unwrap();
}

/// Waits until srcsel's status gives usb0 the resolver `dns`, from `source`.
fn wait_for_dns(dns: &str, source: &str) {
    wait_until(
        &format!("usb0's resolver {dns} ({source})"),
        Duration::from_secs(30),
        || {
            let v: serde_json::Value = serde_json::from_str(&sh("srcsel status --json")).unwrap();
            v["uplinks"][0]["dns"] == serde_json::json!([dns])
                && v["uplinks"][0]["dns_source"] == source
        },
    );
}

/// usb0 under systemd-networkd, which runs no hooks: its resolver comes
/// from networkd's state file.
fn networkd(lab: &mut Lab) {
    fs::create_dir_all("/run/systemd/network").unwrap();
    fs::write(
        NETWORKD_CONF,
        "[Match]\nName=usb0\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n\
         [DHCPv4]\nRouteMetric=3000\n",
    )
    .unwrap();
    sh("systemctl start systemd-networkd.service");
    lab.wait_for_lease();
    wait_for_gateway("10.98.0.1");
    wait_for_dns("10.98.0.1", "systemd-networkd");
    assert_eq!(
        curl_in_slice(lab),
        Some(lab.usb0_addr()),
        "the slice, networkd's lease"
    );
    sh("systemctl stop systemd-networkd.service systemd-networkd.socket");
    fs::remove_file(NETWORKD_CONF).unwrap();
    sh("ip addr flush dev usb0 && ip route flush dev usb0");
}

/// usb0 under dhcpcd with the packaged hook and `nogateway` (no default
/// route anywhere but srcsel's table, which only the hook can fill).
fn dhcpcd_nogateway(lab: &mut Lab) {
    lab.start_dhcpcd_on(
        "usb0",
        "metric 3000\nnogateway",
        "/usr/lib/dhcpcd/dhcpcd-run-hooks",
    );
    wait_until("usb0's lease from dhcpcd", Duration::from_secs(30), || {
        lab.addr_of("usb0").is_some()
    });
    wait_for_gateway("10.98.0.1");
    assert!(
        !sh("ip route show default").contains("usb0"),
        "nogateway: dhcpcd added a default route"
    );
    assert_eq!(
        curl_in_slice(lab),
        Some(lab.usb0_addr()),
        "the slice, dhcpcd's lease"
    );
    assert_eq!(curl_unassigned(lab), ETH0_ADDR, "unassigned");
}
