//! No way around a strict assignment, IPv4 and IPv6: binding a socket to
//! another device or to another uplink's address, or clearing srcsel's mark
//! bits, is refused at once (EPERM) and nothing leaves; in fallback mode
//! the program's own choice is left to it, never paired with the uplink's
//! address. Judged by the server and by the routers' counters of packets
//! with the other uplink's source. Needs root; run with `cargo xtask test`.
use std::{process::Command, time::Instant};

use srcsel_lab::{
    ETH0_ADDR, Lab, SERVER, SERVER6, TCP_PORT, UDP_PORT, V6, ok, out, stderr, unique, url, url6,
};

/// probe.py ARGS under `srcsel run --via usb0 [MODE]`: (succeeded, what it said).
fn probe(lab: &Lab, mode: &[&str], args: &[&str]) -> (bool, String) {
    let p = lab.probe();
    let mut c = lab.srcsel(["run", "--via", "usb0"]);
    c.args(mode)
        .args(["--", "python3", p.to_str().unwrap()])
        .args(args);
    let o = out(&mut c);
    let said = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    (o.status.success(), format!("{said} {}", stderr(&o)))
}

fn curl_via(lab: &Lab, mode: &[&str], args: &[&str]) -> Command {
    let mut c = lab.srcsel(["run", "--via", "usb0"]);
    c.args(mode)
        .args(["--", "curl", "-sS", "-m", "10"])
        .args(args);
    c
}

fn assert_no_foreign_sources(lab: &Lab) {
    assert_eq!(
        lab.foreign_sources("r1"),
        (0, 0),
        "hotspot-sourced packets at the home router"
    );
    assert_eq!(
        lab.foreign_sources("r2"),
        (0, 0),
        "home-sourced packets at the hotspot's router"
    );
}

#[test]
fn strict_refuses_every_way_around_the_uplink_at_once() {
    let mut lab = Lab::new(env!("CARGO_BIN_EXE_srcsel"));
    lab.enable_ipv6(V6::Both);
    let eth0_6 = lab.addr6_of("eth0").unwrap();
    let (tcp, udp) = (TCP_PORT.to_string(), UDP_PORT.to_string());

    // curl --interface: its connect from eth0's device (or, where
    // SO_BINDTODEVICE is refused, eth0's address) is refused; it fails at
    // once instead of hanging.
    for (target, family) in [(url(&unique("if4")), "-4"), (url6(&unique("if6")), "-6")] {
        let start = Instant::now();
        let o = out(&mut curl_via(
            &lab,
            &[],
            &[family, "--interface", "eth0", &target],
        ));
        assert!(
            !o.status.success(),
            "curl {family} --interface eth0 succeeded"
        );
        assert!(
            start.elapsed().as_secs_f64() < 3.0,
            "curl {family} --interface eth0 hung"
        );
        lab.assert_unseen(target.rsplit('/').next().unwrap());
    }
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "SO_BINDTODEVICE eth0",
            vec!["--device".into(), "eth0".into()],
            "EPERM at SO_BINDTODEVICE",
        ),
        (
            "SO_MARK 0",
            vec!["--mark".into(), "0".into()],
            "EPERM at SO_MARK",
        ),
        (
            "bind to eth0's IPv4 address",
            vec!["--bind".into(), ETH0_ADDR.into()],
            "EPERM at connect",
        ),
    ];
    for (what, opts, expected) in &cases {
        for kind in ["tcp", "udp"] {
            let t = unique("esc");
            let port = if kind == "tcp" { &tcp } else { &udp };
            let mut args = vec![kind, SERVER, port, &t];
            args.extend(opts.iter().map(String::as_str));
            let (ok_, said) = probe(&lab, &[], &args);
            // A TCP socket's device is checked when it connects: until then
            // it may still listen (and answer through that device).
            let expected = match (kind, *what) {
                ("tcp", "SO_BINDTODEVICE eth0") => "EPERM at connect",
                _ => expected,
            };
            assert!(!ok_ && said.contains(expected), "{what} ({kind}): {said}");
            lab.assert_unseen(&t);
        }
    }
    for kind in ["tcp", "udp", "sendto"] {
        let t = unique("esc6");
        let port = if kind == "tcp" { &tcp } else { &udp };
        let (ok_, said) = probe(&lab, &[], &[kind, SERVER6, port, &t, "--bind", &eth0_6]);
        let step = if kind == "sendto" { "send" } else { "connect" };
        assert!(
            !ok_ && said.contains(&format!("EPERM at {step}")),
            "bind to eth0's IPv6 address ({kind}): {said}"
        );
        lab.assert_unseen(&t);
    }
    // What stays allowed: the uplink's own device and address, and marks
    // that leave srcsel's bits alone.
    let usb0 = lab.usb0_addr();
    for opts in [
        ["--device", "usb0"],
        ["--bind", usb0.as_str()],
        ["--mark", "0x41000001"],
    ] {
        let t = unique("own");
        let mut args = vec!["tcp", SERVER, &tcp, &t];
        args.extend(opts);
        let (ok_, said) = probe(&lab, &[], &args);
        assert!(ok_, "{opts:?}: {said}");
        assert_eq!(lab.source_of(&t), usb0, "{opts:?}");
    }
    assert_no_foreign_sources(&lab);
}

#[test]
fn fallback_leaves_a_programs_own_binding_to_it() {
    let mut lab = Lab::new(env!("CARGO_BIN_EXE_srcsel"));
    lab.enable_ipv6(V6::Both);
    let eth0_6 = lab.addr6_of("eth0").unwrap();
    let fb = ["--fallback"];
    let t = unique("fbif");
    ok(&mut curl_via(&lab, &fb, &["--interface", "eth0", &url(&t)]));
    assert_eq!(
        lab.source_of(&t),
        ETH0_ADDR,
        "curl --interface eth0 in fallback mode"
    );
    let t = unique("fbif6");
    ok(&mut curl_via(
        &lab,
        &fb,
        &["-6", "--interface", "eth0", &url6(&t)],
    ));
    assert_eq!(
        lab.source_of(&t),
        eth0_6,
        "curl -6 --interface eth0 in fallback mode"
    );
    let tcp = TCP_PORT.to_string();
    let t = unique("fbbind");
    let (ok_, said) = probe(&lab, &fb, &["tcp", SERVER, &tcp, &t, "--bind", ETH0_ADDR]);
    assert!(ok_, "{said}");
    assert_eq!(lab.source_of(&t), ETH0_ADDR);
    // Unbound sockets still go through usb0.
    let t = unique("fbplain");
    ok(&mut curl_via(&lab, &fb, &[&url(&t)]));
    assert_eq!(lab.source_of(&t), lab.usb0_addr());
    assert_no_foreign_sources(&lab);
}

/// An MPTCP socket: the kernel makes its TCP subflows itself, without the
/// hook that marks sockets, so none would be steered: refused (EPERM) at
/// creation, in both modes; the program's TCP still leaves through usb0.
#[test]
fn mptcp_sockets_are_refused_and_nothing_leaves_through_eth0() {
    let mut lab = Lab::new(env!("CARGO_BIN_EXE_srcsel"));
    lab.start_daemon(&[]);
    let usb0 = lab.usb0_addr();
    for mode in [&[][..], &["--fallback"][..]] {
        let t = unique("mptcp");
        let code = format!(
            "import socket, errno\ntry:\n    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)\n\
             except PermissionError:\n    print('refused')\nelse:\n    s.settimeout(3)\n    \
             s.connect(('{SERVER}', {TCP_PORT}))\n    s.send(b'{t}\\n')\n    print('made')\n"
        );
        let mut c = lab.srcsel(["run", "--via", "usb0"]);
        let said = ok(c.args(mode).args(["--", "python3", "-c", &code]));
        assert_eq!(said.trim(), "refused", "{mode:?}");
        lab.assert_unseen(&t);
        // Plain TCP falls in place, steered.
        let t = unique("tcp");
        ok(&mut curl_via(&lab, mode, &[&url(&t)]));
        assert_eq!(lab.source_of(&t), usb0, "{mode:?}");
    }
    assert_eq!(lab.foreign_sources("r1"), (0, 0));
}

/// Packets to TCP port 5999 that `router` received ([`count_probes`]).
fn probes_at(lab: &Lab, router: &str) -> u64 {
    let listed = lab.output_in(router, &["nft", "list", "table", "inet", "probes"]);
    listed
        .split("packets ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("the probes counter")
}

/// An nft counter in `router`'s namespace of packets to TCP port 5999.
fn count_probes(lab: &Lab, router: &str) {
    lab.output_in(
        router,
        &[
            "nft",
            "add table inet probes; \
             add chain inet probes seen { type filter hook prerouting priority 0; }; \
             add rule inet probes seen tcp dport 5999 counter",
        ],
    );
}

/// What never passes the connect hook is marked when it is made, as before
/// TCP streams waited for their connect: a raw socket of protocol TCP
/// (CAP_NET_RAW) sends through usb0 in both modes. A strict listener keeps
/// srcsel's bits: clearing them (then `connect(AF_UNSPEC)` and a connect)
/// would take it around the uplink.
#[test]
fn sockets_that_connect_no_stream_are_steered_and_listeners_keep_the_bits() {
    let mut lab = Lab::new(env!("CARGO_BIN_EXE_srcsel"));
    lab.start_daemon(&[]);
    for router in ["r1", "r2"] {
        count_probes(&lab, router);
    }
    // A bare SYN to port 5999 (the kernel adds the IP header).
    let raw = format!(
        "import socket, struct\ns = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)\n\
         s.sendto(struct.pack('!HHIIBBHHH', 40000, 5999, 1, 0, 5 << 4, 2, 1024, 0, 0), ('{SERVER}', 0))\n"
    );
    for mode in [&[][..], &["--fallback"][..]] {
        let mut c = lab.srcsel(["run", "--via", "usb0"]);
        ok(c.args(mode).args(["--", "python3", "-c", &raw]));
    }
    srcsel_lab::wait_until(
        "both raw packets at usb0's router",
        std::time::Duration::from_secs(5),
        || probes_at(&lab, "r2") >= 2,
    );
    assert_eq!(
        probes_at(&lab, "r1"),
        0,
        "a raw TCP packet left through eth0"
    );

    let listener = "import socket\ns = socket.socket()\ns.bind(('0.0.0.0', 0))\ns.listen()\n\
                    try:\n    s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, 0)\n    print('cleared')\n\
                    except PermissionError:\n    print('refused')\n";
    let said = ok(&mut lab.srcsel(["run", "--via", "usb0", "--", "python3", "-c", listener]));
    assert_eq!(said.trim(), "refused");
    assert_no_foreign_sources(&lab);
}
