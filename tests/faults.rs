//! Faults and races: a killed `srcsel run`, idle passes, runs and daemon
//! restarts racing a strict sender, `down` with something still relying on
//! the rules, a colliding table, wildcard-bound sockets. Judged by what the
//! lab's server and routers saw, never by srcsel's word. Needs root
//! (`cargo xtask test`).
use std::{
    fs,
    os::unix::process::ExitStatusExt as _,
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::Duration,
};

use srcsel_lab::{
    ETH0_ADDR, Lab, SERVER, TCP_PORT, UDP_PORT, ok, out, stderr, unique, url, wait_until,
};

const SETTLE: Duration = Duration::from_millis(300);

fn lab() -> Lab {
    Lab::new(env!("CARGO_BIN_EXE_srcsel"))
}

/// Makes r1 drop (and count) what arrives on its lan from a non-eth0 source:
/// a usb0-sourced packet that left through eth0 then never reaches the
/// server, so "the server saw usb0's address" means it went through r2.
/// r1's address is pinned in the client's neighbour table: r1 ignores ARP
/// requests sent from usb0's address, which would stop a leak uncounted.
fn strict_r1(lab: &Lab) {
    let r1 = lab.ns("r1");
    ok(Command::new("ip").args([
        "netns",
        "exec",
        &r1,
        "sysctl",
        "-qw",
        "net.ipv4.conf.all.rp_filter=1",
        "net.ipv4.conf.lan.rp_filter=1",
    ]));
    let link = ok(Command::new("ip").args(["-n", &r1, "-o", "link", "show", "lan"]));
    let words: Vec<&str> = link.split_whitespace().collect();
    let mac = words[words.iter().position(|w| *w == "link/ether").expect("mac") + 1];
    ok(lab
        .client("ip")
        .args(["neigh", "replace", "10.1.0.1", "lladdr", mac])
        .args(["dev", "eth0", "nud", "permanent"]));
}

fn rp_drops(lab: &Lab) -> u64 {
    lab.netstat("r1", "TcpExt", "IPReversePathFilter")
}

/// Waits at most `secs` for `child` to end.
fn exit_within(child: &mut Child, secs: u64) -> ExitStatus {
    let mut status = None;
    wait_until("the process to end", Duration::from_secs(secs), || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    status.expect("ended")
}

fn populated(lab: &Lab, pid: u32) -> bool {
    fs::read_to_string(lab.run_cgroup(pid).join("cgroup.events"))
        .is_ok_and(|e| e.lines().any(|l| l == "populated 1"))
}

fn dumps(lab: &Lab) -> (String, String) {
    (lab.rules(), lab.routes())
}

#[test]
fn kill_9_of_srcsel_run_leaves_its_command_steered_and_the_next_run_reaps_it() {
    let lab = lab();
    strict_r1(&lab);
    let usb0 = lab.usb0_addr();
    let d = lab.dir.display().to_string();
    let (t1, t2) = (unique("orphan1-"), unique("orphan2-"));
    // Each wait gives up after ~30 s, so a lost go-file cannot hang the suite.
    let wait = |f: &str| {
        format!("i=0; while [ ! -e {d}/{f} ] && [ $i -lt 1500 ]; do sleep 0.02; i=$((i+1)); done")
    };
    let script = format!(
        "{}; curl -sf -m5 {} >/dev/null; {}; curl -sf -m5 {} >/dev/null; touch {d}/done",
        wait("go1"),
        url(&t1),
        wait("go2"),
        url(&t2)
    );
    let mut run = lab
        .run_via_usb0(&script)
        .stdout(Stdio::null())
        .spawn()
        .expect("srcsel run");
    // nsenter execs srcsel: the child's pid is srcsel's, which names the run.
    let pid = run.id();
    wait_until(
        "the command in its run cgroup",
        Duration::from_secs(10),
        || populated(&lab, pid),
    );
    // The assignment group's attachment (`cg-<inode>:usb0:strict`), which the run relies on.
    let links = fs::read_dir(lab.pin_dir().join("links"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(":usb0:strict"))
        .expect("the group's links");
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "srcsel");
    assert!(links.is_dir(), "{} not pinned", links.display());

    // SAFETY: SIGKILL to our own child.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert_eq!(run.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert!(links.is_dir(), "the links died with srcsel run");
    assert!(populated(&lab, pid), "the command died with srcsel run");

    // The orphan still relies on the rules: down must not pull them away.
    let before = dumps(&lab);
    let o = out(&mut lab.srcsel(["down"]));
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("run-{pid}")), "{}", stderr(&o));
    assert_eq!(dumps(&lab), before, "a refused down changed the dumps");

    fs::write(lab.dir.join("go1"), "").unwrap();
    assert_eq!(lab.source_of(&t1), usb0, "orphan's first connection");
    fs::write(lab.dir.join("go2"), "").unwrap();
    assert_eq!(lab.source_of(&t2), usb0, "orphan's second connection");
    wait_until("the orphan to finish", Duration::from_secs(10), || {
        lab.dir.join("done").exists() && !populated(&lab, pid)
    });

    let cg = lab.run_cgroup(pid);
    ok(&mut lab.srcsel(["run", "--via", "usb0", "--", "true"]));
    assert!(!cg.exists(), "{} was not reaped", cg.display());
    assert!(lab.run_cgroups().is_empty(), "{:?}", lab.run_cgroups());
    let left: Vec<_> = fs::read_dir(lab.pin_dir().join("links"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 1, "links left: {left:?}");
    assert!(left[0].ends_with(":usb0:strict"), "links left: {left:?}");
}

#[test]
fn a_pass_with_nothing_to_change_writes_nothing() {
    let mut lab = lab();
    ok(&mut lab.srcsel(["run", "--via", "usb0", "--", "true"]));
    let mut monitor = lab.client("ip");
    monitor.args(["monitor", "rule", "route"]);
    lab.spawn("monitor", &mut monitor);
    thread::sleep(SETTLE);

    for _ in 0..5 {
        ok(&mut lab.srcsel(["run", "--via", "usb0", "--", "true"]));
    }
    for _ in 0..2 {
        lab.start_daemon(&[]);
        lab.stop("daemon");
    }
    thread::sleep(SETTLE);
    // A control rule proves the monitor was listening and its output flushed.
    let control = ["priority", "32111", "fwmark", "0x5eed", "lookup", "main"];
    ok(lab.client("ip").args(["rule", "add"]).args(control));
    ok(lab.client("ip").args(["rule", "del"]).args(control));
    wait_until(
        "the monitor to report the control rule",
        Duration::from_secs(5),
        || lab.log("monitor").matches("0x5eed").count() >= 2,
    );
    lab.stop("monitor");
    let log = lab.log("monitor");
    let written: Vec<&str> = log.lines().filter(|l| !l.contains("0x5eed")).collect();
    assert!(written.is_empty(), "idle passes wrote: {written:#?}");
}

/// A strict UDP sender: at least 300 datagrams (`PREFIX-N`), one every 10 ms,
/// until STOP exists (at most 3000); half from one long-lived socket (a route
/// lookup per datagram), half from fresh sockets (programs run anew).
/// Prints `attempted failed`.
const SENDER: &str = r#"
import os, socket, sys, time
prefix, stop, server, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
keep = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n = failed = 0
while n < 3000 and (n < 300 or not os.path.exists(stop)):
    s = keep if n % 2 else socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(f"{prefix}-{n}\n".encode(), (server, port))
    except OSError:
        failed += 1
    if s is not keep:
        s.close()
    n += 1
    time.sleep(0.01)
print(n, failed)
"#;

#[test]
fn concurrent_runs_while_a_strict_sender_counts_leave_nothing_through_eth0() {
    let mut lab = lab();
    strict_r1(&lab);
    let usb0 = lab.usb0_addr();

    // Control, before any srcsel: a usb0-sourced datagram routed out of eth0
    // is dropped and counted at r1, so the counter does see such leaks.
    let leak = unique("leak");
    let drops = rp_drops(&lab);
    let send = format!(
        "import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('{usb0}',0)); \
         s.sendto(b'{leak}', ('{SERVER}',{UDP_PORT}))"
    );
    ok(lab.client("python3").args(["-c", &send]));
    wait_until("r1 to count the leak", Duration::from_secs(5), || {
        rp_drops(&lab) > drops
    });
    lab.assert_unseen(&leak);
    let drops = rp_drops(&lab);

    let (prefix, stop) = (unique("tok"), lab.dir.join("stop-sender"));
    let mut sender = lab
        .srcsel([
            "run", "--via", "usb0", "--", "python3", "-c", SENDER, &prefix,
        ])
        .arg(&stop)
        .args([SERVER, &UDP_PORT.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("sender");
    wait_until(
        "the sender's first datagram",
        Duration::from_secs(10),
        || !lab.seen(&format!("{prefix}-0")).is_empty(),
    );

    let runs: Vec<Child> = (0..30)
        .map(|_| {
            lab.srcsel(["run", "--via", "usb0", "--", "true"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("srcsel run")
        })
        .collect();
    for _ in 0..3 {
        lab.start_daemon(&[]);
        lab.stop("daemon");
    }
    for run in runs {
        let o = run.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "a concurrent run failed: {}",
            stderr(&o)
        );
    }
    fs::write(&stop, "").unwrap();
    assert!(exit_within(&mut sender, 40).success(), "the sender failed");
    let mut report = String::new();
    std::io::Read::read_to_string(&mut sender.stdout.take().unwrap(), &mut report).unwrap();
    let mut words = report
        .split_whitespace()
        .map(|w| w.parse::<usize>().unwrap());
    let (attempted, failed) = (words.next().unwrap(), words.next().unwrap());
    thread::sleep(SETTLE);

    let log = fs::read_to_string(lab.server_log()).unwrap();
    let ours = format!("udp {prefix}-");
    let peers: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with(&ours))
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    let elsewhere: Vec<&str> = peers.iter().copied().filter(|p| *p != usb0).collect();
    assert!(
        elsewhere.is_empty(),
        "datagrams not from usb0 {usb0} (eth0 is {ETH0_ADDR}): {elsewhere:?}"
    );
    assert_eq!(
        rp_drops(&lab),
        drops,
        "r1 dropped usb0-sourced packets from eth0"
    );
    assert!(
        peers.len() * 10 >= attempted * 9,
        "only {} of {attempted} datagrams arrived ({failed} sends failed)",
        peers.len()
    );
}

#[test]
fn down_refuses_with_a_daemon_or_active_runs_and_force_ends_runs() {
    let mut lab = lab();
    let pristine = dumps(&lab);
    let cfg = lab.dir.join("srcsel.toml");
    fs::write(&cfg, "[[uplink]]\nname = \"usb0\"\n").unwrap();
    lab.start_daemon(&["--config", cfg.to_str().unwrap()]);
    let daemon = lab.pid("daemon").expect("daemon pid");
    let held = dumps(&lab);
    assert_ne!(held, pristine, "the daemon set up nothing");
    let o = out(&mut lab.srcsel(["down"]));
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("pid {daemon}")),
        "{}",
        stderr(&o)
    );
    assert_eq!(dumps(&lab), held, "a refused down changed the dumps");
    lab.stop("daemon");

    let mut run = lab
        .srcsel(["run", "--via", "usb0", "--", "sleep", "30"])
        .spawn()
        .expect("srcsel run");
    let pid = run.id();
    wait_until("sleep in its run cgroup", Duration::from_secs(10), || {
        populated(&lab, pid)
    });
    let o = out(&mut lab.srcsel(["down"]));
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("run-{pid}")), "{}", stderr(&o));

    let o = out(&mut lab.srcsel(["down", "--force"]));
    assert!(o.status.success(), "down --force: {}", stderr(&o));
    assert_eq!(exit_within(&mut run, 5).code(), Some(128 + 9), "srcsel run");
    assert_eq!(dumps(&lab), pristine);
    assert!(!lab.pin_dir().exists(), "{} left", lab.pin_dir().display());
}

#[test]
fn a_configured_table_of_another_slot_is_refused_and_changes_nothing() {
    let lab = lab();
    let cfg = lab.dir.join("srcsel.toml");
    // 21250 = 0x5302: slot 2's automatic table; usb0 is (or becomes) slot 1.
    fs::write(&cfg, "[[uplink]]\nname = \"usb0\"\ntable = 21250\n").unwrap();
    let refused = |when: &str| {
        let before = (lab.rules(), lab.routes(), lab.pin_dir().exists());
        // timeout(1) as a safeguard: a daemon that starts instead exits 124.
        let o = out(lab
            .client("timeout")
            .arg("20")
            .arg(&lab.srcsel)
            .args(["daemon", "--config"])
            .arg(&cfg));
        assert_eq!(o.status.code(), Some(125), "{when}: {}", stderr(&o));
        assert!(stderr(&o).contains("21250"), "{when}: {}", stderr(&o));
        let after = (lab.rules(), lab.routes(), lab.pin_dir().exists());
        assert_eq!(after, before, "{when}: the refusal changed something");
    };
    refused("before any srcsel");
    ok(&mut lab.srcsel(["run", "--via", "usb0", "--", "true"]));
    assert!(
        lab.routes().contains("table 21249"),
        "usb0 is not slot 1: {}",
        lab.routes()
    );
    refused("with usb0 set up by a run");
}

#[test]
fn sockets_bound_to_the_wildcard_first_leave_through_usb0() {
    let lab = lab();
    strict_r1(&lab);
    let usb0 = lab.usb0_addr();
    let cases = [
        (
            "TCP",
            "STREAM",
            "s.connect(D); s.sendall(T + b'\\n')",
            TCP_PORT,
        ),
        (
            "connected UDP",
            "DGRAM",
            "s.connect(D); s.send(T)",
            UDP_PORT,
        ),
        ("unconnected UDP", "DGRAM", "s.sendto(T, D)", UDP_PORT),
    ];
    let mut wrong = Vec::new();
    for (name, kind, send, port) in cases {
        let t = unique("wild");
        // Waits for the server's reply: the exchange completed both ways.
        let script = format!(
            "import socket, sys; D = (sys.argv[1], int(sys.argv[2])); T = sys.argv[3].encode(); \
             s = socket.socket(socket.AF_INET, socket.SOCK_{kind}); s.settimeout(5); \
             s.bind(('0.0.0.0', 0)); {send}; s.recv(99)"
        );
        let run = [
            "run", "--via", "usb0", "--", "python3", "-c", &script, SERVER,
        ];
        let o = out(lab.srcsel(run).args([&port.to_string(), &t]));
        let seen = lab.seen(&t);
        if !o.status.success() || seen.is_empty() || seen.iter().any(|(_, p)| *p != usb0) {
            let err = stderr(&o);
            wrong.push(format!("{name}: {}, {err}, server saw {seen:?}", o.status));
        }
    }
    assert!(wrong.is_empty(), "not from usb0 {usb0}: {wrong:#?}");
}
