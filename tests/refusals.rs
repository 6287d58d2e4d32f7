//! Refusals: bad input of every kind is refused with a message that names
//! the thing and the fix, exit status 125, and changes nothing: `ip rule`,
//! `ip route show table all` and the pins stay as they were. Needs root
//! (`cargo xtask test`).
use std::{
    fs,
    process::{Command, Output},
};

use srcsel_lab::{Lab, ok, out, quoted, stderr};

fn lab() -> Lab {
    Lab::new(env!("CARGO_BIN_EXE_srcsel"))
}

/// Asserts that srcsel refused (125) with each of `expect` in its message.
fn refused(o: &Output, expect: &[&str]) {
    assert_eq!(o.status.code(), Some(125), "{}", stderr(o));
    for e in expect {
        assert!(stderr(o).contains(e), "expected {e:?} in: {}", stderr(o));
    }
}

#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    let lab = lab();
    ok(lab.client("ip").args([
        "link", "add", "wwan0", "type", "veth", "peer", "name", "wwan0p",
    ]));
    ok(lab.client("ip").args(["link", "set", "wwan0", "up"]));
    ok(lab.client("ip").args(["link", "set", "wwan0p", "up"]));
    let (rules, routes) = (lab.rules(), lab.routes());
    let marker = lab.dir.join("ran");
    let touch = ["--", "touch", &marker.display().to_string()];
    let refused = |o: Output, expect: &[&str]| {
        refused(&o, expect);
        assert!(!marker.exists(), "the command ran");
    };

    refused(
        out(lab.srcsel(["run", "--via", "nope0"]).args(touch)),
        &["no interface named nope0"],
    );
    // Lists: each name checked, none twice, none missing.
    refused(
        out(lab.srcsel(["run", "--via", "usb0,nope0"]).args(touch)),
        &["no interface named nope0"],
    );
    refused(
        out(lab.srcsel(["run", "--via", "usb0,usb0"]).args(touch)),
        &["names usb0 twice"],
    );
    refused(
        out(lab.srcsel(["run", "--via", "usb0,"]).args(touch)),
        &["is empty"],
    );
    refused(
        out(lab.srcsel(["run", "--via", "wwan0"]).args(touch)),
        &["wwan0 has no IPv4 or IPv6 address — is its DHCP client running?"],
    );
    ok(lab
        .client("ip")
        .args(["addr", "add", "10.200.0.2/24", "dev", "wwan0"]));
    let routes_with_wwan0 = lab.routes();
    refused(
        out(lab.srcsel(["run", "--via", "wwan0"]).args(touch)),
        &["no gateway known for wwan0"],
    );
    refused(
        out(lab
            .client("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(&lab.srcsel)
            .args(["run", "--via", "usb0"])
            .args(touch)),
        &[
            "needs the srcsel daemon",
            "sudo srcsel daemon",
            "or run srcsel as root",
        ],
    );
    // `ip netns exec` remounts /sys: no cgroup2 there.
    refused(
        out(Command::new("ip")
            .args(["netns", "exec", &lab.ns("client")])
            .arg(&lab.srcsel)
            .args(["run", "--via", "usb0"])
            .args(touch)),
        &["no cgroup2 mount", "nsenter --net="],
    );
    // A mount namespace without the host's bpffs (a sandboxed DHCP client,
    // a private /sys), where one could be mounted: srcsel mounts no private
    // instance, for runs nor for lease reports.
    let cg = lab.dir.join("cgroup2");
    fs::create_dir_all(&cg).unwrap();
    for cmd in [
        format!("run --via usb0 -- touch {}", marker.display()),
        "lease".into(),
    ] {
        let script = format!(
            "umount -l /sys/fs/bpf 2>/dev/null; umount -l /sys/fs/cgroup/unified 2>/dev/null; umount -l /sys/fs/cgroup 2>/dev/null; \
             mount -t tmpfs tmpfs /sys/fs && mount -t cgroup2 none {cg} && \
             interface=usb0 reason=BOUND new_ip_address=10.99.0.9 new_routers=10.99.0.1 exec {srcsel} {cmd}",
            cg = cg.display(),
            srcsel = quoted(&lab.srcsel),
        );
        refused(
            out(lab.client("unshare").args([
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
            ])),
            &["no bpffs is visible", "private one", "nsenter --net="],
        );
    }

    assert_eq!(lab.rules(), rules);
    assert_eq!(lab.routes(), routes_with_wwan0);
    assert_ne!(routes, routes_with_wwan0);
    assert!(!lab.pin_dir().exists(), "pins were created");
}

#[test]
fn bad_names_options_and_hook_values_are_refused_by_name() {
    let lab = lab();
    let (rules, routes) = (lab.rules(), lab.routes());
    let marker = lab.dir.join("ran");
    let touch = ["--", "touch", &marker.display().to_string()];
    for (args, expect) in [
        (
            vec!["run", "--via", "lo"],
            "lo is the loopback interface, not an uplink",
        ),
        (
            vec!["run", "--via", "a-name-of-20-chars-x"],
            "is longer than 15 characters",
        ),
        (
            vec!["run", "--via", "usb0", "--fallbak"],
            "unexpected argument '--fallbak'",
        ),
        (
            vec!["run", "--via"],
            "a value is required for '--via <IFACE[,IFACE...]>'",
        ),
        (vec!["bogus"], "unrecognized subcommand 'bogus'"),
    ] {
        refused(&out(lab.srcsel(&args).args(touch)), &[expect]);
        assert!(!marker.exists(), "{args:?} ran the command");
    }
    // DHCP hooks: the variables name what is wrong.
    let hook = |vars: &[(&str, &str)]| {
        let mut cmd = lab.srcsel(["lease"]);
        cmd.env_remove("interface").env_remove("reason");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        out(&mut cmd)
    };
    for iface in ["", "../../etc", &"x".repeat(500)] {
        let o = hook(&[("interface", iface), ("reason", "BOUND")]);
        refused(&o, &["is not an interface name"]);
        assert!(stderr(&o).len() < 300, "{}", stderr(&o));
    }
    refused(
        &hook(&[
            ("interface", "usb0"),
            ("reason", "BOUND"),
            ("new_routers", "999.1.1.1"),
        ]),
        &["new_routers=\"999.1.1.1\" is not a list of IPv4 addresses"],
    );
    assert_eq!(lab.rules(), rules);
    assert_eq!(lab.routes(), routes);
    assert!(!lab.pin_dir().exists(), "pins were created");
}
