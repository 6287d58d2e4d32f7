//! DNS follows the uplink (the data path): an assigned program's queries to
//! the system's resolvers are answered by its uplink's resolver, reached
//! through the uplink, whichever resolver library asks (glibc's getent,
//! curl and python, busybox's own, Go's own, a raw client over UDP and
//! TCP); queries to other resolvers and unassigned programs are left alone.
//! Judged by what the resolvers logged and answered. Needs root.
use std::{fs, process::Command, time::Instant};

use srcsel_lab::{
    HOME_ANSWER, HOME_DNS, HOTSPOT_ANSWER, Lab, NAME, PUBLIC_ANSWER, PUBLIC_DNS, STUB_DNS, V6, ok,
    out, stderr, wait_until,
};

/// The home router's IPv6 address on eth0's network.
const HOME_DNS6: &str = "2001:db8:1::1";

const CONVERGE: std::time::Duration = std::time::Duration::from_secs(10);

/// Asks for `host`'s IPv4 address as a raw DNS client does, over UDP with
/// sendto/recvfrom (the answer must come from the server asked), the same
/// from an AF_INET6 socket to the v4-mapped address, and over TCP, from the
/// first resolver in resolv.conf; prints `udp ADDR`, `udp6 ADDR`, `tcp ADDR`.
const RAW_CLIENT: &str = r#"
import socket, struct, sys
host = sys.argv[1]
server = next(l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver"))
q = struct.pack(">HHHHHH", 0x5353, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in host.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
def answer(m):
    assert m[:2] == q[:2], "wrong id"
    return socket.inet_ntoa(m[-4:])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(5)
u.sendto(q, (server, 53))
m, frm = u.recvfrom(512)
assert frm == (server, 53), f"answer from {frm}, asked {server}"
print("udp", answer(m))
# The same from an AF_INET6 socket to the v4-mapped address (Java's way).
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u6.settimeout(5)
mapped = "::ffff:" + server
u6.sendto(q, (mapped, 53))
m, frm = u6.recvfrom(512)
assert frm[:2] == (mapped, 53), f"answer from {frm}, asked {mapped}"
print("udp6", answer(m))
t = socket.create_connection((server, 53), timeout=5)
t.sendall(struct.pack(">H", len(q)) + q)
n = struct.unpack(">H", t.recv(2))[0]
m = b""
while len(m) < n:
    m += t.recv(n - len(m))
print("tcp", answer(m))
"#;

/// Go's own resolver (a static binary: no libc), over UDP and over TCP.
const GO_CLIENT: &str = r#"
package main

import (
	"context"
	"fmt"
	"net"
	"os"
)

func main() {
	for _, network := range []string{"udp", "tcp"} {
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}
		addrs, err := r.LookupHost(context.Background(), os.Args[1])
		if err != nil {
			fmt.Println(network, err)
			os.Exit(1)
		}
		fmt.Println(network, addrs[0])
	}
}
"#;

/// The lab with the resolvers, the hotspot's lease handed to a daemon that
/// keeps usb0 (its resolver learned from the lease), and resolv.conf
/// pointing at `system`.
fn lab(system: &str) -> Lab {
    let mut lab = with_daemon(Lab::new(env!("CARGO_BIN_EXE_srcsel")), system);
    let hook = lab.srcsel_hook();
    lab.start_dhcpcd_on("usb0", "metric 3000", &hook);
    wait_until("usb0's resolver from the lease", CONVERGE, || {
        ok(&mut lab.srcsel(["status"])).contains("DNS: 10.99.0.1 (dhcp)")
    });
    lab
}

/// `lab` with the resolvers, resolv.conf pointing at `system`, and a daemon
/// that keeps usb0.
fn with_daemon(mut lab: Lab, system: &str) -> Lab {
    lab.start_resolvers();
    lab.set_resolv_conf(&format!("nameserver {system}\n"));
    let config = lab.dir.join("srcsel.toml");
    fs::write(&config, "[[uplink]]\nname = \"usb0\"\n").unwrap();
    lab.start_daemon(&["--config", &config.display().to_string()]);
    lab
}

/// `script` run by `sh` through usb0 (strict); its stdout, asserting success.
fn via_usb0(lab: &Lab, script: &str) -> String {
    ok(&mut lab.run_via_usb0(script))
}

/// Queries for `name` each resolver logged.
fn asked(lab: &Lab, role: &str, name: &str) -> Vec<String> {
    lab.queries(role)
        .into_iter()
        .filter(|q| q.name == name)
        .map(|q| q.from)
        .collect()
}

/// The Go client, built static with the pure-Go resolver.
fn go_client(lab: &Lab) -> String {
    let src = lab.dir.join("goresolve.go");
    let bin = lab.dir.join("goresolve");
    fs::write(&src, GO_CLIENT).unwrap();
    let o = out(Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", lab.dir.join("gocache"))
        .env("GO111MODULE", "off")
        .env("HOME", &lab.dir));
    assert!(o.status.success(), "go build: {}", stderr(&o));
    bin.display().to_string()
}

#[test]
fn every_resolver_library_is_answered_by_the_hotspots_resolver_through_usb0() {
    let mut lab = lab(HOME_DNS);
    let raw = lab.dir.join("rawdns.py");
    fs::write(&raw, RAW_CLIENT).unwrap();
    let go = go_client(&lab);
    let usb0 = lab.usb0_addr();
    let clients = [
        (
            "getent (glibc)",
            format!("getent ahostsv4 {NAME} | head -1"),
        ),
        (
            "curl",
            format!("curl -sS --max-time 5 http://{NAME}:8080/curl-dns"),
        ),
        (
            "python getaddrinfo",
            format!(
                "python3 -c \"import socket; print(socket.getaddrinfo('{NAME}', 80, socket.AF_INET)[0][4][0])\""
            ),
        ),
        (
            "busybox nslookup",
            format!("busybox nslookup -type=a {NAME}"),
        ),
        (
            "raw UDP and TCP",
            format!("python3 {} {NAME}", raw.display()),
        ),
        ("Go's resolver", format!("{go} {NAME}")),
    ];
    for (what, script) in &clients {
        let before = asked(&lab, "r2", NAME).len();
        let o = via_usb0(&lab, script);
        if *what == "curl" {
            // The server says which source reached it.
            assert!(o.contains(&usb0), "{what}: {o}");
            assert_eq!(lab.source_of("curl-dns"), usb0, "{what}");
        } else {
            // One answer per line the client prints (the raw client three
            // ways, Go's resolver over UDP and TCP).
            let lines = o.lines().filter(|l| !l.trim().is_empty()).count();
            let per_line = !what.starts_with("busybox");
            assert!(o.contains(HOTSPOT_ANSWER), "{what}: {o}");
            assert!(
                !per_line || o.matches(HOTSPOT_ANSWER).count() == lines,
                "{what}: {o}"
            );
            assert!(!o.contains(HOME_ANSWER), "{what}: {o}");
        }
        let from = asked(&lab, "r2", NAME);
        assert!(
            from.len() > before,
            "{what}: the hotspot's resolver was not asked"
        );
        assert!(
            from.iter().all(|a| *a == usb0),
            "{what}: asked from {from:?}"
        );
    }
    assert_eq!(
        asked(&lab, "r1", NAME),
        Vec::<String>::new(),
        "leaked to the home router"
    );
    assert_eq!(
        lab.foreign_sources("r1"),
        (0, 0),
        "hotspot-sourced packets at the home router"
    );

    // Unassigned programs keep the system's resolver.
    let o = lab.client_out(&format!("getent ahostsv4 {NAME}"));
    assert!(o.contains(HOME_ANSWER), "{o}");
    assert_eq!(asked(&lab, "r1", NAME), ["10.1.0.2"]);

    // The redirect is the kernel's: a killed daemon takes nothing with it.
    lab.signal("daemon", libc::SIGKILL);
    let o = via_usb0(&lab, &format!("getent ahostsv4 {NAME} | head -1"));
    assert!(
        o.contains(HOTSPOT_ANSWER),
        "after kill -9 of the daemon: {o}"
    );

    // A resolver the program chose itself is left alone (and reached via usb0).
    let o = via_usb0(
        &lab,
        &format!("busybox nslookup -type=a {NAME} {PUBLIC_DNS}"),
    );
    assert!(o.contains(PUBLIC_ANSWER), "{o}");
    assert_eq!(asked(&lab, "inet", NAME), [usb0]);
}

#[test]
fn a_local_stub_and_a_public_resolver_are_replaced_as_well() {
    let mut lab = lab(STUB_DNS);
    let usb0 = lab.usb0_addr();
    let o = via_usb0(&lab, &format!("getent ahostsv4 {NAME} | head -1"));
    assert!(o.contains(HOTSPOT_ANSWER), "{o}");
    assert_eq!(
        asked(&lab, "client", NAME),
        Vec::<String>::new(),
        "the stub was asked"
    );
    // Unassigned, the stub forwards to the home router over eth0.
    let o = lab.client_out(&format!("getent ahostsv4 {NAME}"));
    assert!(o.contains(HOME_ANSWER), "{o}");
    assert_eq!(asked(&lab, "r1", NAME), ["10.1.0.2"]);

    // resolv.conf rewritten (as NetworkManager does): the daemon follows.
    let passes = |lab: &Lab| lab.log("daemon").matches("(resolv.conf changed)").count();
    let before = passes(&lab);
    lab.set_resolv_conf(&format!("nameserver {PUBLIC_DNS}\n"));
    wait_until("the daemon to read resolv.conf again", CONVERGE, || {
        passes(&lab) > before
    });
    let o = via_usb0(&lab, &format!("getent ahostsv4 {NAME} | head -1"));
    assert!(o.contains(HOTSPOT_ANSWER), "{o}");
    assert_eq!(asked(&lab, "inet", NAME), Vec::<String>::new());
    assert!(asked(&lab, "r2", NAME).iter().all(|a| *a == usb0));
    let o = lab.client_out(&format!("getent ahostsv4 {NAME}"));
    assert!(o.contains(PUBLIC_ANSWER), "{o}");

    // A resolver on a LAN is the system's too, listed or not: asking it
    // would carry the name to the network normal routing reaches it by.
    let home = asked(&lab, "r1", NAME).len();
    let o = via_usb0(&lab, &format!("busybox nslookup -type=a {NAME} {HOME_DNS}"));
    assert!(o.contains(HOTSPOT_ANSWER), "{o}");
    assert_eq!(
        asked(&lab, "r1", NAME).len(),
        home,
        "the home router was asked"
    );
}

/// Strict: `getent` fails at once (glibc would wait 5 s per try for an
/// answer that never comes) and no resolver is asked; fallback: the
/// system's resolver answers.
fn refused_at_once_and_fallback_asks_the_system(lab: &Lab, why: &str) {
    let (r1, r2) = (lab.queries("r1").len(), lab.queries("r2").len());
    let started = Instant::now();
    let o = out(&mut lab.run_via_usb0(&format!("getent ahostsv4 {NAME}")));
    let took = started.elapsed();
    assert!(took.as_secs() < 4, "{why}: took {took:?}");
    assert!(
        !o.status.success(),
        "{why}: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(
        (lab.queries("r1").len(), lab.queries("r2").len()),
        (r1, r2),
        "{why}"
    );
    let fallback = [
        "run",
        "--via",
        "usb0",
        "--fallback",
        "--",
        "getent",
        "ahostsv4",
        NAME,
    ];
    let o = ok(&mut lab.srcsel(fallback));
    assert!(o.contains(HOME_ANSWER), "{why}, fallback: {o}");
}

#[test]
fn strict_refuses_at_once_without_a_resolver_and_a_renumbering_is_followed() {
    // usb0 carries traffic, but nothing reported its resolver (its dhcpcd
    // runs without srcsel's hook).
    let mut lab = with_daemon(Lab::new(env!("CARGO_BIN_EXE_srcsel")), HOME_DNS);
    let usb0 = lab.usb0_addr();
    via_usb0(
        &lab,
        &format!("curl -sS --max-time 5 {}", srcsel_lab::url("up-no-dns")),
    );
    assert_eq!(lab.source_of("up-no-dns"), usb0);
    assert!(ok(&mut lab.srcsel(["status"])).contains("DNS: none known"));
    refused_at_once_and_fallback_asks_the_system(&lab, "usb0 up, no resolver known");

    // The hook reports the lease's resolver; the hotspot renumbers, with a new one.
    let hook = lab.srcsel_hook();
    lab.start_dhcpcd_on("usb0", "metric 3000", &hook);
    wait_until("usb0's resolver from the lease", CONVERGE, || {
        ok(&mut lab.srcsel(["status"])).contains("DNS: 10.99.0.1 (dhcp)")
    });
    lab.renumber_hotspot("10.98.0");
    wait_until("usb0's new resolver", CONVERGE, || {
        ok(&mut lab.srcsel(["status"])).contains("DNS: 10.98.0.1 (dhcp)")
    });
    let usb0 = lab.usb0_addr();
    let o = via_usb0(&lab, &format!("getent ahostsv4 {NAME} | head -1"));
    assert!(o.contains(HOTSPOT_ANSWER), "{o}");
    assert_eq!(asked(&lab, "r2", NAME).last(), Some(&usb0));

    // The lease ends: usb0 is down and knows no resolver.
    lab.stop("dhcpcd-usb0");
    wait_until("usb0 to have no resolver", CONVERGE, || {
        ok(&mut lab.srcsel(["status"])).contains("DNS: none known")
    });
    refused_at_once_and_fallback_asks_the_system(&lab, "the lease ended");
}

#[test]
fn ipv6_resolvers_come_from_router_advertisements() {
    let mut lab = Lab::new(env!("CARGO_BIN_EXE_srcsel"));
    lab.enable_ipv6(V6::Both);
    // The home router's IPv6 address as the system's resolver.
    let lab = with_daemon(lab, HOME_DNS6);
    let status = |lab: &Lab| -> serde_json::Value {
        serde_json::from_str(&ok(&mut lab.srcsel(["status", "--json"]))).unwrap()
    };
    let usb0_dns6 = |lab: &Lab| {
        let v = status(lab);
        let u = v["uplinks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == "usb0")
            .cloned();
        u.map(|u| (u["dns6"].clone(), u["dns_source6"].clone()))
    };
    // Routers advertise every 10 s here: the daemon hears the next one.
    wait_until("usb0's RDNSS", std::time::Duration::from_secs(30), || {
        usb0_dns6(&lab)
            == Some((
                serde_json::json!(["2001:db8:99::1"]),
                serde_json::json!("router advertisement"),
            ))
    });
    let usb0 = lab.addr6_of("usb0").expect("usb0's IPv6 address");
    // An A query over IPv6: the name's answer says which resolver gave it.
    let o = via_usb0(&lab, &format!("getent ahostsv4 {NAME} | head -1"));
    assert!(o.contains(HOTSPOT_ANSWER), "{o}");
    assert_eq!(asked(&lab, "r2", NAME), [usb0]);
    assert_eq!(asked(&lab, "r1", NAME), Vec::<String>::new());
    let o = lab.client_out(&format!("getent ahostsv4 {NAME}"));
    assert!(o.contains(HOME_ANSWER), "{o}");
    assert_eq!(asked(&lab, "r1", NAME), [lab.addr6_of("eth0").unwrap()]);
}

#[test]
fn without_a_hook_the_resolvers_are_asked_of_dhcpcd() {
    // dhcpcd runs no hook here: nothing reports usb0's lease to srcsel.
    let mut lab = Lab::new(env!("CARGO_BIN_EXE_srcsel"));
    lab.start_resolvers();
    lab.set_resolv_conf(&format!("nameserver {HOME_DNS}\n"));
    let config = lab.dir.join("srcsel.toml");
    fs::write(&config, "[[uplink]]\nname = \"usb0\"\n").unwrap();
    // Where dhcpcd's control socket is (the lab gives it a private /run/dhcpcd).
    lab.start_daemon_in_mounts_of("dhcpcd-usb0", &["--config", &config.display().to_string()]);
    wait_until("usb0's resolver asked of dhcpcd", CONVERGE, || {
        ok(&mut lab.srcsel(["status"])).contains("DNS: 10.99.0.1 (dhcpcd)")
    });
    let o = out(&mut lab.run_via_usb0(&format!("getent ahostsv4 {NAME} | head -1")));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("knows no DNS"), "{}", stderr(&o));
    let answer = String::from_utf8_lossy(&o.stdout);
    assert!(answer.contains(HOTSPOT_ANSWER), "{answer}");
    assert_eq!(asked(&lab, "r2", NAME), [lab.usb0_addr()]);
    assert_eq!(
        asked(&lab, "r1", NAME),
        Vec::<String>::new(),
        "leaked to the home router"
    );
}
