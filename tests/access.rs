//! The control socket against an unprivileged user: every request they may
//! not make is refused and changes nothing, none of their tricks stalls or
//! bloats the daemon, and members of the allowed group run commands as
//! themselves. Judged by rule and route dumps, the server's log and the
//! processes' own cgroups. Needs root (`cargo xtask test`).
use std::{fs, path::PathBuf, process::Output, thread, time::Duration};

use srcsel_lab::{Lab, ok, out, stderr, unique, wait_until};

/// Users that exist in no passwd file: the daemon knows them only by number.
const MEMBER: u32 = 4242;
const STRANGER: u32 = 4244;
const GROUP: u32 = 4243;
/// The system's, which any user may run (`python3` may be a root-only shim).
const PYTHON: &str = "/usr/bin/python3";

/// A client speaking the daemon's framing (4-byte length, JSON), for
/// requests the CLI would never send.
const HOSTILE: &str = r#"
import json, socket, struct, sys, time
path, action = sys.argv[1], sys.argv[2]
def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s
def send(s, obj):
    b = json.dumps(obj).encode()
    s.sendall(struct.pack('>I', len(b)) + b)
def recv(s):
    data = b''
    while True:
        try:
            c = s.recv(65536)
        except OSError:
            break
        if not c:
            break
        data += c
        if len(data) >= 4 and len(data) >= 4 + struct.unpack('>I', data[:4])[0]:
            break
    return json.loads(data[4:]) if len(data) > 4 else None
if action == 'send':
    s = conn(); send(s, json.loads(sys.argv[3])); print(json.dumps(recv(s)))
elif action == 'huge':
    s = conn(); s.sendall(struct.pack('>I', 100 << 20))
    try:
        for _ in range(100):
            s.sendall(b'x' * (1 << 20))
    except OSError:
        pass
    print(json.dumps(recv(s)))
elif action == 'partial':
    s = conn(); s.sendall(b'\x00\x00'); print(json.dumps(recv(s)))
elif action == 'hold':
    conns = []
    for _ in range(int(sys.argv[3])):
        try:
            conns.append(conn())
        except OSError:
            break
    print(len(conns), flush=True)
    time.sleep(float(sys.argv[4]))
"#;

fn lab_with(config: &str) -> Lab {
    let mut lab = Lab::new(env!("CARGO_BIN_EXE_srcsel"));
    let path = lab.dir.join("srcsel.toml");
    fs::write(&path, config).unwrap();
    fs::write(lab.dir.join("hostile.py"), HOSTILE).unwrap();
    lab.start_daemon(&["--config", path.to_str().unwrap()]);
    lab
}

fn socket(lab: &Lab) -> PathBuf {
    PathBuf::from(format!("/run/srcsel/net-{}.sock", lab.netns_cookie()))
}

/// Runs the hostile client as `uid`; returns its output.
fn hostile(lab: &Lab, uid: u32, args: &[&str]) -> String {
    let o = out(lab
        .as_user(uid, &[], PYTHON)
        .arg(lab.dir.join("hostile.py"))
        .arg(socket(lab))
        .args(args));
    assert!(o.status.success(), "hostile.py {args:?}: {}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn dumps(lab: &Lab) -> (String, String) {
    (lab.rules(), lab.routes())
}

fn rss_kb(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// `srcsel status` as root answers at once: the daemon is responsive.
fn responsive(lab: &Lab) {
    let o = out(&mut lab.srcsel(["status", "--json"]));
    assert!(o.status.success(), "status: {}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"daemon\": true"));
}

#[test]
fn an_unprivileged_user_can_neither_change_nor_stall_nor_bloat_the_daemon() {
    let mut lab = lab_with("[[uplink]]\nname = \"usb0\"\n");
    let before = dumps(&lab);
    let lease = |iface: &str, gw: &str| {
        format!(r#"{{"version":1,"body":{{"lease":{{"interface":"{iface}","gateway":{gw}}}}}}}"#)
    };
    let r = hostile(&lab, STRANGER, &["send", &lease("usb0", "\"10.99.0.77\"")]);
    assert!(r.contains("refused") && r.contains("only root"), "{r}");
    let r = hostile(&lab, STRANGER, &["send", &lease("usb0", "null")]);
    assert!(r.contains("refused"), "{r}");
    for i in 0..70 {
        let r = hostile(
            &lab,
            STRANGER,
            &["send", &lease(&format!("fake{i}"), "\"10.9.9.9\"")],
        );
        assert!(r.contains("refused"), "{r}");
    }
    let run = |via: &str, pid: u32| {
        format!(r#"{{"version":1,"body":{{"run":{{"via":"{via}","mode":"strict","pid":{pid}}}}}}}"#)
    };
    let r = hostile(&lab, STRANGER, &["send", &run("usb0", 1)]);
    assert!(r.contains("refused") && r.contains("group srcsel"), "{r}");
    let r = hostile(
        &lab,
        STRANGER,
        &["send", r#"{"version":9,"body":"anything"}"#],
    );
    assert!(r.contains("version 9"), "{r}");
    assert_eq!(dumps(&lab), before, "a refused request changed the dumps");

    // 100 MB announced and sent: refused from the length alone.
    let daemon = lab.pid("daemon").unwrap();
    let rss = rss_kb(daemon);
    let r = hostile(&lab, STRANGER, &["huge"]);
    assert!(r == "null\n" || r.contains("over the limit"), "{r}");
    assert!(rss_kb(daemon) < rss + 2048, "the daemon grew from {rss} kB");
    // Half a header: answered when the time is up; meanwhile root is served.
    let partial = lab
        .as_user(STRANGER, &[], PYTHON)
        .arg(lab.dir.join("hostile.py"))
        .arg(socket(&lab))
        .arg("partial")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(200));
    responsive(&lab);
    let partial = partial.wait_with_output().unwrap();
    let r = String::from_utf8_lossy(&partial.stdout).into_owned();
    assert!(r.contains("no complete request within"), "{r}");

    // Idle connections up to the per-user limit, held while the hotspot
    // renumbers: the daemon follows within a second and root is served.
    let mut holder = lab
        .as_user(STRANGER, &[], PYTHON)
        .arg(lab.dir.join("hostile.py"))
        .arg(socket(&lab))
        .args(["hold", "200", "60"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(500));
    responsive(&lab);
    // That user's own run is refused with the daemon's reason, whether its
    // request went out before the daemon closed the connection or not.
    for _ in 0..3 {
        let o = out(lab
            .as_user(STRANGER, &[], &lab.srcsel)
            .args(["run", "--via", "usb0", "--", "true"]));
        assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("connections to the daemon open"),
            "{}",
            stderr(&o)
        );
    }
    lab.renumber_hotspot("10.98.0");
    let new = lab.usb0_addr();
    wait_until(
        "the daemon to follow the renumbering",
        Duration::from_secs(1),
        || lab.owned().contains(&format!("from {new} lookup")),
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    let log = lab.log("daemon");
    let warnings = log.lines().filter(|l| l.contains("WARN")).count();
    assert!(warnings <= 12, "{warnings} warnings: {log}");
    assert!(!log.contains("malformed lease report"), "status made noise");
}

#[test]
fn the_socket_cannot_be_taken_before_the_daemon_starts() {
    let lab = Lab::new(env!("CARGO_BIN_EXE_srcsel"));
    let path = socket(&lab);
    let squat = format!(
        "import socket, os\nfor p in ['{p}', '/run/srcsel/x']:\n    s = socket.socket(socket.AF_UNIX)\n    \
         try:\n        s.bind(p); print('bound', p)\n    except OSError as e:\n        print('refused', e.errno)\n\
         s = socket.socket(socket.AF_UNIX); s.bind('\\0srcsel-daemon'); print('abstract')\n",
        p = path.display()
    );
    fs::create_dir_all("/run/srcsel").unwrap();
    let o = ok(lab.as_user(STRANGER, &[], PYTHON).args(["-c", &squat]));
    assert!(!o.contains("bound"), "{o}");
    assert_eq!(o.matches("refused 13").count(), 2, "{o}");
    // The old abstract name is held by the stranger: nothing depends on it.
    let mut lab = lab;
    lab.start_daemon(&[]);
    responsive(&lab);
    let o = out(lab.as_user(STRANGER, &[], &lab.srcsel).args(["status"]));
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("srcsel status") && stderr(&o).contains("group srcsel"));
}

fn member_run(lab: &Lab, uid: u32, args: &[&str]) -> Output {
    out(lab
        .as_user(uid, &[GROUP], &lab.srcsel)
        .args(["run", "--via", "usb0"])
        .args(args))
}

#[test]
fn a_member_runs_as_themselves_and_a_stranger_is_refused() {
    let lab = lab_with(&format!(
        "[[uplink]]\nname = \"usb0\"\n\n[[allow]]\ngroup = {GROUP}\nmodes = [\"strict\"]\n"
    ));
    let t = unique("member");
    let o = member_run(
        &lab,
        MEMBER,
        &[
            "--",
            "sh",
            "-c",
            &format!("id -u; curl -sf {}; exit 7", srcsel_lab::url(&t)),
        ],
    );
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(&format!("{MEMBER}\n")));
    assert_eq!(lab.source_of(&t), lab.usb0_addr());

    let o = member_run(&lab, MEMBER, &["--fallback", "--", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("usb0 in fallback mode"),
        "{}",
        stderr(&o)
    );
    let o = out(lab
        .as_user(STRANGER, &[], &lab.srcsel)
        .args(["run", "--via", "usb0", "--", "true"]));
    assert_eq!(o.status.code(), Some(125));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("group {GROUP}")) && e.contains("[[allow]]"),
        "{e}"
    );
    let o = out(lab
        .as_user(MEMBER, &[GROUP], &lab.srcsel)
        .args(["status", "--json"]));
    assert!(o.status.success(), "member status: {}", stderr(&o));
    assert!(lab.pin_dir().exists());
    assert!(lab.run_cgroups().is_empty(), "run cgroups left");
}

#[test]
fn a_member_cannot_make_the_daemon_move_another_process() {
    let lab = lab_with(&format!(
        "[[uplink]]\nname = \"usb0\"\n\n[[allow]]\ngroup = {GROUP}\n"
    ));
    let mut victim = lab
        .as_user(STRANGER, &[], "sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let mut own = lab
        .as_user(MEMBER, &[GROUP], "sleep")
        .arg("60")
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(300));
    let cgroup_of = |pid: u32| fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    // setpriv execs sleep: the child's pid is the sleep's.
    let targets = [
        victim.id(),
        own.id(),
        1,
        lab.pid("daemon").unwrap(),
        0,
        u32::MAX,
    ];
    let before: Vec<String> = targets[..4].iter().map(|p| cgroup_of(*p)).collect();
    for (i, pid) in targets.into_iter().enumerate() {
        let req = format!(
            r#"{{"version":1,"body":{{"run":{{"via":"usb0","mode":"strict","pid":{pid}}}}}}}"#
        );
        let o = out(lab
            .as_user(MEMBER, &[GROUP], PYTHON)
            .arg(lab.dir.join("hostile.py"))
            .arg(socket(&lab))
            .args(["send", &req]));
        let r = String::from_utf8_lossy(&o.stdout);
        assert!(r.contains("error"), "pid {pid}: {r}");
        if i < 4 {
            assert!(
                r.contains("refused") && r.contains("is not a child of"),
                "pid {pid}: {r}"
            );
        }
    }
    let after: Vec<String> = targets[..4].iter().map(|p| cgroup_of(*p)).collect();
    assert_eq!(before, after, "a process was moved");
    victim.kill().unwrap();
    own.kill().unwrap();
    let _ = (victim.wait(), own.wait());
}

#[test]
fn root_runs_as_another_user_with_their_groups_and_environment() {
    let mut lab = Lab::new(env!("CARGO_BIN_EXE_srcsel"));
    let show = "id -u; id -G; echo $HOME $USER $LOGNAME";
    let check = |lab: &Lab, how: &str| {
        let t = unique("nobody");
        let o = out(&mut lab.srcsel([
            "run",
            "--via",
            "usb0",
            "--user",
            "nobody",
            "--",
            "sh",
            "-c",
            &format!("{show}; curl -sf {}", srcsel_lab::url(&t)),
        ]));
        assert!(o.status.success(), "{how}: {}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            text.starts_with("65534\n65534\n/nonexistent nobody nobody"),
            "{how}: {text}"
        );
        assert_eq!(lab.source_of(&t), lab.usb0_addr(), "{how}");
        let o = ok(&mut lab.srcsel(["run", "--via", "usb0", "--", "id", "-u"]));
        assert_eq!(
            o.trim(),
            "0",
            "{how}: without --user the command runs as root"
        );
    };
    check(&lab, "without a daemon");
    lab.start_daemon(&[]);
    check(&lab, "through the daemon");
    let o = out(lab
        .as_user(MEMBER, &[], &lab.srcsel)
        .args(["run", "--via", "usb0", "--user", "root", "--", "true"]));
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("--user needs root"), "{}", stderr(&o));
}

/// Group `srcsel` for the length of a test, removed after if it made it.
struct SrcselGroup {
    gid: u32,
    made: bool,
}

impl SrcselGroup {
    fn ensure() -> Self {
        let lookup = || {
            let o = out(std::process::Command::new("getent").args(["group", "srcsel"]));
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.split(':').nth(2).and_then(|g| g.trim().parse().ok())
        };
        if let Some(gid) = lookup() {
            return Self { gid, made: false };
        }
        ok(std::process::Command::new("groupadd").args(["--system", "srcsel"]));
        Self {
            gid: lookup().expect("group srcsel after groupadd"),
            made: true,
        }
    }
}

impl Drop for SrcselGroup {
    fn drop(&mut self) {
        if self.made {
            let _ = std::process::Command::new("groupdel")
                .arg("srcsel")
                .status();
        }
    }
}

#[test]
fn without_a_config_group_srcsel_may_use_every_uplink_in_both_modes() {
    let group = SrcselGroup::ensure();
    let mut lab = Lab::new(env!("CARGO_BIN_EXE_srcsel"));
    lab.start_daemon(&[]);
    for mode in [&["--fallback"][..], &[]] {
        let t = unique("default");
        let o = out(lab
            .as_user(MEMBER, &[group.gid], &lab.srcsel)
            .args(["run", "--via", "usb0"])
            .args(mode)
            .args(["--", "curl", "-sf", &srcsel_lab::url(&t)]));
        assert!(o.status.success(), "{mode:?}: {}", stderr(&o));
        assert_eq!(lab.source_of(&t), lab.usb0_addr());
    }

    // A caller killed mid-run: its command runs on, steered, and the
    // daemon removes the cgroup after the next run once the command ended.
    let t = unique("orphan");
    let mut run = lab
        .as_user(MEMBER, &[group.gid], &lab.srcsel)
        .args(["run", "--via", "usb0", "--", "sh", "-c"])
        .arg(format!("sleep 1; curl -sf {}", srcsel_lab::url(&t)))
        .spawn()
        .unwrap();
    let cg = lab.run_cgroup(run.id());
    wait_until("the run's cgroup", Duration::from_secs(5), || cg.exists());
    run.kill().unwrap();
    run.wait().unwrap();
    wait_until("the orphan's curl", Duration::from_secs(10), || {
        !lab.seen(&t).is_empty()
    });
    assert_eq!(lab.source_of(&t), lab.usb0_addr());
    ok(lab
        .as_user(MEMBER, &[group.gid], &lab.srcsel)
        .args(["run", "--via", "usb0", "--", "true"]));
    wait_until("the orphan's cgroup reaped", Duration::from_secs(5), || {
        !cg.exists()
    });
}
