//! The amd64 package on a Debian 12 guest with systemd as PID 1 (the VM of
//! `cargo xtask test`, which builds the package from the debug binary
//! first): installed, its files where Debian looks, its service enabled
//! and running, and purged again, leaving `ip rule` and `ip route show
//! table all` exactly as they were. The installed daemon manages the VM's
//! own namespace here, on a veth pair the test makes: the VM is this test's
//! machine.
use std::{fs, os::unix::fs::PermissionsExt as _, path::Path, process::Command, time::Duration};

use srcsel_lab::{ok, out, stderr, wait_until};

const DEB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../target/dist/test/srcsel_",
    env!("CARGO_PKG_VERSION"),
    "_amd64.deb"
);
const LINK: &str = "pkgtest0";

fn sh(line: &str) -> String {
    ok(Command::new("sh").args(["-c", line]))
}

/// Routing as `ip` shows it, both families, every table.
fn routing() -> String {
    sh("ip rule; ip -6 rule; ip route show table all; ip -6 route show table all")
}

/// Purges the package and removes the link, also when the test failed.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = out(Command::new("dpkg").args(["--purge", "srcsel"]));
        let _ = out(Command::new("ip").args(["link", "del", LINK]));
    }
}

#[test]
fn installs_enables_names_its_tables_and_purges_to_the_state_before() {
    assert!(
        fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd"),
        "this suite needs systemd as PID 1: `cargo xtask test` runs it in the VM"
    );
    assert!(
        Path::new(DEB).is_file(),
        "{DEB}: `cargo xtask test` builds it"
    );
    let _cleanup = Cleanup;
    sh(&format!(
        "ip link add {LINK} type veth peer name {LINK}p && ip addr add 10.77.0.2/24 dev {LINK} \
         && ip link set {LINK} addrgenmode none && ip link set {LINK}p addrgenmode none \
         && ip link set {LINK} up && ip link set {LINK}p up"
    ));
    // (No IPv6 link-local addresses: they would appear while the test runs.)
    let before = routing();

    let o = out(Command::new("dpkg").args(["-i", DEB]));
    assert!(o.status.success(), "dpkg -i: {}", stderr(&o));
    let state = |verb: &str| sh(&format!("systemctl {verb} srcsel.service || true"));
    assert_eq!(state("is-enabled").trim(), "enabled");
    assert_eq!(state("is-active").trim(), "active");
    assert!(sh("getent group srcsel").starts_with("srcsel:"));
    assert!(sh("srcsel --version").starts_with("srcsel "));
    for f in [
        "/usr/share/man/man1/srcsel.1.gz",
        "/usr/share/man/man1/srcsel-assign.1.gz",
        "/usr/share/bash-completion/completions/srcsel",
        "/usr/share/zsh/vendor-completions/_srcsel",
        "/usr/share/fish/vendor_completions.d/srcsel.fish",
        "/usr/lib/dhcpcd/dhcpcd-hooks/90-srcsel",
        "/etc/dhcp/dhclient-exit-hooks.d/srcsel",
    ] {
        assert!(Path::new(f).is_file(), "{f}");
    }
    let nm = fs::metadata("/usr/lib/NetworkManager/dispatcher.d/90-srcsel").unwrap();
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

    // An uplink for the installed daemon: rules named by the package's iproute2 files.
    fs::write(
        "/etc/srcsel/srcsel.toml",
        format!("[[uplink]]\nname = \"{LINK}\"\ngateway = \"10.77.0.1\"\n"),
    )
    .unwrap();
    sh("systemctl reload srcsel.service");
    wait_until("srcsel's rules", Duration::from_secs(30), || {
        sh("ip rule").contains("lookup srcsel-1 proto srcsel")
    });
    assert!(sh("ip route show table srcsel-1").contains("default via 10.77.0.1"));

    let o = out(Command::new("dpkg").args(["--purge", "srcsel"]));
    assert!(o.status.success(), "dpkg --purge: {}", stderr(&o));
    assert_eq!(routing(), before, "routing after purge");
    assert!(!Path::new("/etc/srcsel").exists());
    assert_eq!(state("is-active").trim(), "inactive");
    assert!(
        !sh("ls /sys/fs/bpf/srcsel 2>/dev/null || true").contains("net-"),
        "pins left"
    );
}
