//! Answers leave the way the question came: a TCP or UDP service in an
//! assigned cgroup, reached from the internet on usb0's address, answers
//! through usb0; reached on eth0's, through eth0 — strict or fallback, IPv4 or
//! IPv6, assigned to usb0 or to eth0, whichever uplink holds the lower
//! slot. Both routers drop what comes from the other uplink's addresses
//! (as ISPs do), so an answer sent the wrong way never arrives, and their
//! counters show it. Needs root.
use std::time::Duration;

use srcsel_lab::{CgroupTree, ETH0_ADDR, Lab, V6, cgroup2_root, unique, wait_until};

const PORT: &str = "7100";

/// Dual-stack services on port 7100: over TCP it tells each peer the
/// address it was reached on, and the uplink bits of the accepted socket's
/// mark as the kernel reports them (none: it answers as the host does);
/// over UDP it answers "ok" with sendto.
const SERVICE: &str = r#"
import socket, threading
def udp():
    u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    u.bind(("::", 7100))
    while True:
        _, peer = u.recvfrom(100)
        u.sendto(b"ok", peer)
threading.Thread(target=udp, daemon=True).start()
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 7100))
s.listen(16)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    uplink = c.getsockopt(socket.SOL_SOCKET, 36) & 0x3f000000  # SO_MARK
    c.sendall(f"{c.getsockname()[0].removeprefix('::ffff:')} {uplink:#x}\n".encode())
    c.close()
"#;

/// A client on the internet's side asks the UDP service at `addr`: "ok" if
/// the answer came back from that address (a connected UDP socket takes
/// nothing else), or "".
fn ask_udp(lab: &Lab, addr: &str) -> String {
    let family = if addr.contains(':') {
        "AF_INET6"
    } else {
        "AF_INET"
    };
    let code = format!(
        "import socket\nc = socket.socket(socket.{family}, socket.SOCK_DGRAM)\nc.settimeout(2)\n\
         c.connect(('{addr}', {PORT}))\ntry:\n    c.send(b'q')\n    print(c.recv(100).decode())\n\
         except OSError:\n    print('')\n"
    );
    lab.output_in("inet", &["python3", "-c", &code])
        .trim()
        .to_owned()
}

/// A client on the internet's side: what the service says (the address it
/// was reached on, its connection's uplink bits), or "" when no answer came.
fn reach(lab: &Lab, addr: &str) -> String {
    let code = format!(
        "import socket\ntry:\n    c = socket.create_connection(('{addr}', {PORT}), timeout=2)\n    print(c.recv(100).decode().strip())\nexcept OSError:\n    print('')\n"
    );
    lab.output_in("inet", &["python3", "-c", &code])
        .trim()
        .to_owned()
}

/// The uplinks' slots: usb0's lower, or eth0's.
fn config(usb0_first: bool) -> String {
    let (usb0, eth0) = if usb0_first { (1, 2) } else { (2, 1) };
    format!(
        "[[uplink]]\nname = \"usb0\"\nmark = 0x0{usb0}000000\n\n\
         [[uplink]]\nname = \"eth0\"\nmark = 0x0{eth0}000000\n"
    )
}

#[test]
fn services_answer_through_the_link_they_were_reached_on() {
    for usb0_first in [true, false] {
        let mut lab = Lab::new(env!("CARGO_BIN_EXE_srcsel"));
        lab.enable_ipv6(V6::Both);
        // An assigned cgroup too (strict, usb0), as a slice's service is.
        let name = unique("svc");
        let tree = CgroupTree(cgroup2_root().join(&name));
        std::fs::create_dir_all(&tree.0).unwrap();
        let assign = format!("\n[[assign]]\ncgroup = \"{name}\"\nvia = \"usb0\"\n");
        lab.start_daemon_with_config(&(config(usb0_first) + &assign), &[]);
        let usb0 = lab.usb0_addr();
        let (usb0_6, eth0_6) = (
            lab.addr6_of("usb0").expect("usb0's IPv6"),
            lab.addr6_of("eth0").expect("eth0's IPv6"),
        );
        let procs = tree.0.join("cgroup.procs");
        let joined = format!("echo $$ > {} && exec python3 -c \"$0\"", procs.display());
        for (via, mode) in [
            ("usb0", Some("")),
            ("usb0", Some("--fallback")),
            ("eth0", Some("")),
            ("usb0,eth0", Some("")),
            ("assigned", None),
            ("unassigned", None),
        ] {
            let role = format!("service-{via}{}", mode.unwrap_or(""));
            let mut cmd = match (via, mode) {
                (_, Some(mode)) => {
                    let mut run = lab.srcsel(["run", "--via", via]);
                    run.args((!mode.is_empty()).then_some(mode));
                    run.args(["--", "python3", "-c", SERVICE]);
                    run
                }
                ("assigned", None) => {
                    let mut sh = lab.client("sh");
                    sh.args(["-c", &joined, SERVICE]);
                    sh
                }
                _ => {
                    let mut py = lab.client("python3");
                    py.args(["-c", SERVICE]);
                    py
                }
            };
            lab.spawn(&role, &mut cmd);
            wait_until(
                &format!("{role} to listen"),
                Duration::from_secs(10),
                || lab.log(&role).contains("listening"),
            );
            for addr in [usb0.as_str(), ETH0_ADDR, &usb0_6, &eth0_6] {
                let case = format!("{role}, usb0's slot first: {usb0_first}, reached on {addr}");
                assert_eq!(reach(&lab, addr), format!("{addr} 0x0"), "TCP {case}");
                // Unassigned, a UDP socket on the wildcard answers from
                // the address routing picks (Linux's way, without
                // IP_PKTINFO), and srcsel leaves it so.
                if via != "unassigned" {
                    assert_eq!(ask_udp(&lab, addr), "ok", "UDP {case}");
                }
            }
            lab.stop(&role);
        }
        assert_eq!(
            lab.foreign_sources("r1"),
            (0, 0),
            "usb0 first: {usb0_first}"
        );
        assert_eq!(
            lab.foreign_sources("r2"),
            (0, 0),
            "usb0 first: {usb0_first}"
        );
    }
}

/// A UDP service socket writes first to the lab server's echo (which
/// answers with the address it saw), twice: what it begins is steered.
const BEGINS: &str = r#"
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("0.0.0.0", 7102))
u.settimeout(3)
for _ in range(2):
    u.sendto(b"begun", (sys.argv[1], 9999))
    print(u.recvfrom(100)[0].decode().strip(), flush=True)
"#;

#[test]
fn a_strict_program_still_begins_every_conversation_through_its_uplink() {
    let mut lab = Lab::new(env!("CARGO_BIN_EXE_srcsel"));
    lab.start_daemon_with_config(&config(true), &[]);
    // It listens (its mark comes off the listener), then connects out from
    // another socket: that one is still steered.
    let t = srcsel_lab::unique("after-listen");
    let script = format!(
        "import socket, subprocess\nl = socket.socket()\nl.bind(('0.0.0.0', 7101))\nl.listen()\n\
         subprocess.run(['curl', '-sS', '--max-time', '5', '{}'], check=True)\n",
        srcsel_lab::url(&t)
    );
    srcsel_lab::ok(&mut lab.srcsel(["run", "--via", "usb0", "--", "python3", "-c", &script]));
    assert_eq!(lab.source_of(&t), lab.usb0_addr());
    // A UDP service's own conversation: steered, its peer's answers too.
    let said = srcsel_lab::ok(&mut lab.srcsel([
        "run",
        "--via",
        "usb0",
        "--",
        "python3",
        "-c",
        BEGINS,
        srcsel_lab::SERVER,
    ]));
    let usb0 = lab.usb0_addr();
    assert_eq!(
        said.lines().collect::<Vec<_>>(),
        [usb0.as_str(), usb0.as_str()]
    );
    assert_eq!(lab.foreign_sources("r1"), (0, 0));
}
