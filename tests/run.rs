//! `srcsel run` end to end on the real kernel: the lab's server reports which
//! address each client's traffic came from. Needs root; run with
//! `cargo xtask test`.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use srcsel_lab::{
    ETH0_ADDR, Lab, SERVER, TCP_PORT, UDP_PORT, ip, ok, out, quoted, stderr, unique, url,
    wait_until,
};

fn lab() -> Lab {
    Lab::new(env!("CARGO_BIN_EXE_srcsel"))
}

/// Client command lines, each sending `{t}` to the server by its own means.
const CLIENTS: &[(&str, &str)] = &[
    ("curl", "curl -sf {url}"),
    ("wget", "wget -t1 -qO- {url}"),
    ("busybox wget (static)", "busybox wget -qO- {url}"),
    (
        "python3 TCP",
        "python3 -c 'import socket,sys; s=socket.create_connection((\"{server}\",{tcp})); s.sendall(b\"{t}\\n\"); print(s.recv(99).decode())'",
    ),
    (
        "python3 UDP sendto",
        "python3 -c 'import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(3); s.sendto(b\"{t}\",(\"{server}\",{udp})); print(s.recv(99).decode())'",
    ),
    (
        "python3 UDP connected",
        "python3 -c 'import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(3); s.connect((\"{server}\",{udp})); s.send(b\"{t}\"); print(s.recv(99).decode())'",
    ),
    ("socat UDP", "echo {t} | socat -t2 - UDP:{server}:{udp}"),
    ("nc UDP", "echo {t} | nc -u -w1 {server} {udp}"),
];

fn line(template: &str, token: &str) -> String {
    template
        .replace("{url}", &url(token))
        .replace("{server}", SERVER)
        .replace("{tcp}", &TCP_PORT.to_string())
        .replace("{udp}", &UDP_PORT.to_string())
        .replace("{t}", token)
}

#[test]
fn every_client_leaves_through_usb0_under_srcsel_and_through_eth0_without() {
    let lab = lab();
    let usb0 = lab.usb0_addr();
    for (name, template) in CLIENTS {
        let steered = unique("via");
        ok(&mut lab.run_via_usb0(&line(template, &steered)));
        assert_eq!(
            lab.source_of(&steered),
            usb0,
            "{name} under srcsel run --via usb0"
        );

        let plain = unique("plain");
        ok(lab.client("sh").args(["-c", &line(template, &plain)]));
        assert_eq!(lab.source_of(&plain), ETH0_ADDR, "{name} without srcsel");
    }
}

#[test]
fn grandchildren_ping_and_a_client_without_libc_are_steered() {
    let lab = lab();
    let usb0 = lab.usb0_addr();

    let t = unique("gc");
    let nested = format!("sh -c '(curl -sf {}) & wait'", url(&t));
    ok(&mut lab.run_via_usb0(&nested));
    assert_eq!(lab.source_of(&t), usb0, "grandchild of a shell");

    let raw = lab.dir.join("rawclient");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/lab/rawclient.c");
    ok(Command::new("gcc")
        .args(["-nostdlib", "-static", "-O2", "-fno-stack-protector", "-o"])
        .arg(&raw)
        .arg(&src));
    let t = unique("raw");
    let reply = ok(lab.srcsel(["run", "--via", "usb0", "--"]).arg(&raw).arg(&t));
    assert_eq!(lab.source_of(&t), usb0, "static client without libc");
    assert_eq!(reply.trim(), usb0);
    let t = unique("rawplain");
    ok(lab.client(&raw).arg(&t));
    assert_eq!(lab.source_of(&t), ETH0_ADDR);

    // ping's payload pattern is the token (hex).
    let hex = format!("{:08x}", std::process::id() ^ 0x5eed);
    ok(&mut lab.srcsel([
        "run", "--via", "usb0", "--", "ping", "-c1", "-W2", "-p", &hex, SERVER,
    ]));
    assert_eq!(lab.source_of(&hex), usb0, "ping");
}

#[test]
fn processes_outside_the_run_are_untouched_while_it_runs() {
    let lab = lab();
    let usb0 = lab.usb0_addr();
    let stop = lab.dir.join("stop");
    let inside = unique("inside");
    let script = format!(
        "while [ ! -e {} ]; do sleep 0.02; done; curl -sf {}",
        stop.display(),
        url(&inside)
    );
    let mut run = lab
        .run_via_usb0(&script)
        .stdout(Stdio::null())
        .spawn()
        .expect("srcsel run");
    let cg = lab.run_cgroup(run.id());
    wait_until("the run's cgroup", Duration::from_secs(60), || {
        cg.join("cgroup.procs").exists()
    });

    for (name, template) in CLIENTS {
        let t = unique("outside");
        ok(lab.client("sh").args(["-c", &line(template, &t)]));
        assert_eq!(
            lab.source_of(&t),
            ETH0_ADDR,
            "{name} outside the running srcsel run"
        );
    }
    fs::write(&stop, "").unwrap();
    assert!(run.wait().unwrap().success());
    assert_eq!(lab.source_of(&inside), usb0);
    assert!(!cg.exists(), "{} was left behind", cg.display());
}

#[test]
fn strict_mode_fails_at_once_and_nothing_leaks_through_eth0() {
    let lab = lab();
    ok(lab.client("ip").args(["link", "set", "usb0", "down"]));
    for (name, template) in CLIENTS {
        let t = unique("strict");
        let o = out(&mut lab.run_via_usb0(&format!("timeout 10 {}", line(template, &t))));
        // socat and nc report no error for a refused UDP send; the server log decides.
        if !name.contains("socat") && !name.contains("nc ") {
            assert!(!o.status.success(), "{name} succeeded with usb0 down");
            assert_ne!(
                o.status.code(),
                Some(124),
                "{name} hung instead of failing at once"
            );
        }
        lab.assert_unseen(&t);
    }
    let o = out(&mut lab.srcsel([
        "run", "--via", "usb0", "--", "ping", "-c1", "-W1", "-p", "5eedface", SERVER,
    ]));
    assert!(!o.status.success(), "ping succeeded with usb0 down");
    lab.assert_unseen("5eedface");
}

#[test]
fn fallback_uses_normal_routing_while_usb0_is_down_and_usb0_when_up() {
    let lab = lab();
    let usb0 = lab.usb0_addr();
    let t = unique("fbup");
    let fallback_curl = |t: &str| {
        out(&mut lab.srcsel([
            "run",
            "--via",
            "usb0",
            "--fallback",
            "--",
            "curl",
            "-sf",
            &url(t),
        ]))
    };
    assert!(fallback_curl(&t).status.success());
    assert_eq!(lab.source_of(&t), usb0);

    ok(lab.client("ip").args(["link", "set", "usb0", "down"]));
    let t = unique("fbdown");
    let o = fallback_curl(&t);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("usb0 is down"),
        "no warning: {}",
        stderr(&o)
    );
    assert_eq!(lab.source_of(&t), ETH0_ADDR);
}

#[test]
fn exit_status_and_signals_pass_through() {
    let lab = lab();
    let code = |script: &str| out(&mut lab.run_via_usb0(script)).status.code();
    assert_eq!(code("exit 0"), Some(0));
    assert_eq!(code("exit 7"), Some(7));
    assert_eq!(code("kill -TERM $$"), Some(128 + 15));
    let o = out(&mut lab.srcsel(["run", "--via", "usb0", "--", "no-such-program-srcsel"]));
    assert_eq!(o.status.code(), Some(127));
    assert!(stderr(&o).contains("no-such-program-srcsel: command not found"));

    // A signal sent to srcsel reaches the command; the cgroup goes with it.
    let mut run = lab
        .srcsel(["run", "--via", "usb0", "--", "sleep", "30"])
        .spawn()
        .expect("srcsel run");
    let cg = lab.run_cgroup(run.id());
    wait_until(
        "sleep to enter the run's cgroup",
        Duration::from_secs(10),
        || fs::read_to_string(cg.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty()),
    );
    // SAFETY: SIGINT to our own child, as Ctrl-C or `kill -INT` would send.
    unsafe { libc::kill(run.id() as i32, libc::SIGINT) };
    assert_eq!(run.wait().unwrap().code(), Some(128 + 2));
    assert!(!cg.exists());
}

#[test]
fn runs_leave_nothing_behind_and_down_restores_the_dumps() {
    let lab = lab();
    let (rules, routes) = (lab.rules(), lab.routes());
    let pidfile = lab.dir.join("bg.pid");
    let o = out(lab.srcsel(["run", "--via", "usb0", "--"]).args([
        "sh",
        "-c",
        &format!(
            "sleep 300 & echo $! > {}; curl -sf {}",
            pidfile.display(),
            url(&unique("bg"))
        ),
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    ok(&mut lab.srcsel(["run", "--via", "usb0", "--fallback", "--", "true"]));

    let bg = fs::read_to_string(&pidfile).unwrap();
    assert!(
        !Path::new("/proc").join(bg.trim()).exists(),
        "the background sleep outlived its run"
    );
    let runs = lab.run_cgroups();
    assert!(runs.is_empty(), "run cgroups left: {runs:?}");
    // Between runs the uplink's programs, the maps and one attachment per
    // assignment group stay pinned: nothing per run.
    let pins = lab.pin_dir();
    let mut listed: Vec<String> = walk(&pins)
        .iter()
        .map(|p| p.strip_prefix(&pins).unwrap().display().to_string())
        // Attachments are named by their cgroup's inode: `links/cg-<ino>:usb0:strict`.
        .map(|p| match p.strip_prefix("links/cg-") {
            Some(rest) => format!("links/{}", rest.split_once(':').unwrap().1),
            None => p,
        })
        .collect();
    listed.sort();
    let programs = [
        "connect4",
        "connect6",
        "count_egress",
        "count_ingress",
        "post_bind4",
        "post_bind6",
        "recvmsg4",
        "recvmsg6",
        "sendmsg4",
        "sendmsg6",
        "setsockopt",
        "sock_create",
    ];
    let maps = [
        "COUNTERS",
        "DNS",
        "DNS_QUERIES",
        "EXEMPT4",
        "EXEMPT6",
        "LEASES",
        "PEERS",
        "REGISTRY",
        "SERVICES",
        "UPLINKS",
    ];
    let mut expected: Vec<String> = ["links/usb0:fallback", "links/usb0:strict"]
        .iter()
        .chain(&["usb0/fallback", "usb0/strict"])
        .flat_map(|dir| programs.iter().map(move |p| format!("{dir}/{p}")))
        .chain([
            "links/usb0:fallback/cgroup".into(),
            "links/usb0:strict/cgroup".into(),
        ])
        .chain(maps.iter().map(|m| format!("maps/SRCSEL_{m}")))
        .collect();
    expected.sort();
    assert_eq!(listed, expected);
    assert_ne!(lab.rules(), rules, "run set up no rules");

    let o = out(&mut lab.srcsel(["down"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lab.rules(), rules);
    assert_eq!(lab.routes(), routes);
    assert!(!pins.exists(), "{} left after down", pins.display());
    assert!(
        !lab.runs_dir().exists(),
        "{} left after down",
        lab.runs_dir().display()
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        // Not through symlinks: an attachment's `cgroup` points into cgroupfs.
        if e.file_type().unwrap().is_dir() {
            files.extend(walk(&p))
        } else {
            files.push(p)
        }
    }
    files
}

/// Makes namespace `ns`, where srcsel leaves pins (a lease hook without a
/// daemon records its report), and returns their folder.
fn pins_in_new_namespace(lab: &Lab, ns: &str) -> PathBuf {
    let script = format!(
        "ip link set lo up; python3 -c 'import socket; s=socket.socket(); \
         print(int.from_bytes(s.getsockopt(socket.SOL_SOCKET, 71, 8), \"little\"))'; \
         interface=usb0 reason=BOUND new_routers=10.0.0.1 exec {}  lease",
        quoted(&lab.srcsel)
    );
    ip(&format!("netns add {ns}"));
    let cookie = ok(Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .args(["sh", "-c", &script]));
    let pins = lab
        .pin_dir()
        .with_file_name(format!("net-{}", cookie.trim()));
    assert!(
        pins.join("maps").exists(),
        "{} was not created",
        pins.display()
    );
    pins
}

fn netns_inode(ns: &str) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    fs::metadata(format!("/run/netns/{ns}")).unwrap().ino()
}

#[test]
fn pins_of_a_namespace_deleted_without_down_are_removed_by_the_next_run() {
    let lab = lab();
    // A named namespace, alive until the pins are checked: another test's
    // srcsel may reap the pins of a namespace that is gone at any moment.
    let ns = unique("gone");
    let gone = pins_in_new_namespace(&lab, &ns);
    ip(&format!("netns del {ns}"));
    ok(&mut lab.srcsel(["run", "--via", "usb0", "--", "true"]));
    assert!(!gone.exists(), "{} outlived its namespace", gone.display());
    assert!(lab.pin_dir().exists(), "the live namespace's pins went too");
}

#[test]
fn pins_of_a_gone_namespace_go_when_a_new_one_has_its_inode() {
    let lab = lab();
    let ns = unique("dead");
    let gone = pins_in_new_namespace(&lab, &ns);
    let inode = netns_inode(&ns);
    // The kernel gives a new namespace the lowest free inode, often a dead
    // one's; waiting for that races every other test's namespaces, so the
    // marker is made to name a live namespace's inode, as reuse would
    // (before the namespace goes: another test's srcsel may judge the pins
    // any moment after).
    let heir = unique("heir");
    ip(&format!("netns add {heir}"));
    let reused = netns_inode(&heir);
    fs::remove_dir(gone.join(format!("netns-{inode}"))).unwrap();
    fs::create_dir(gone.join(format!("netns-{reused}"))).unwrap();
    ip(&format!("netns del {ns}"));
    ok(&mut lab.srcsel(["run", "--via", "usb0", "--", "true"]));
    let outlived = gone.exists();
    ip(&format!("netns del {heir}"));
    assert!(
        !outlived,
        "{} outlived its namespace: a live one has its inode {reused}",
        gone.display()
    );
    assert!(lab.pin_dir().exists(), "the live namespace's pins went too");
}

#[test]
fn thousands_of_lan_routes_and_a_hundred_concurrent_runs_keep_working() {
    let lab = lab();
    let usb0 = lab.usb0_addr();
    // 3000 LAN routes in the main table: more than the exempt trie once held.
    let batch = lab.dir.join("routes.batch");
    let lines: String = (0..3000)
        .map(|i| {
            format!(
                "route add 10.{}.{}.0/24 via 10.1.0.1 dev eth0\n",
                128 + i / 256,
                i % 256
            )
        })
        .collect();
    fs::write(&batch, lines).unwrap();
    ok(Command::new("ip")
        .args(["-n", &lab.ns("client"), "-batch"])
        .arg(&batch));
    let mut runs: Vec<_> = (0..100)
        .map(|i| {
            let t = format!("{}-{i}", unique("many"));
            let child = lab
                .srcsel([
                    "run",
                    "--via",
                    "usb0",
                    "--",
                    "curl",
                    "-sf",
                    "-m",
                    "20",
                    &url(&t),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("srcsel run");
            (t, child)
        })
        .collect();
    for (t, child) in runs.drain(..) {
        let o = child.wait_with_output().expect("wait");
        assert!(o.status.success(), "{t}: {}", stderr(&o));
        assert_eq!(lab.source_of(&t), usb0, "{t}");
    }
}

#[test]
fn loads_and_steers_without_the_kernels_btf() {
    // As on Raspberry Pi OS kernels: no /sys/kernel/btf/vmlinux (hidden here
    // by an empty tmpfs, in a mount namespace of this run's own). The lab is
    // new, so the run loads the programs itself.
    let lab = lab();
    let t = unique("nobtf");
    let script = format!(
        "mount -t tmpfs none /sys/kernel/btf && test ! -e /sys/kernel/btf/vmlinux \
         && exec {} run --via usb0 -- curl -sf {}",
        quoted(&lab.srcsel),
        url(&t)
    );
    let o = out(lab.client("unshare").args(["-m", "sh", "-c", &script]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lab.source_of(&t), lab.usb0_addr());
    assert!(
        Path::new("/sys/kernel/btf/vmlinux").exists(),
        "hidden only in there"
    );
}
