//! The lab: a multi-homed client in network namespaces, built with iproute2
//! (never with srcsel's own netlink code), torn down on drop even when a test
//! panics.
//!
//! ```text
//!   client ── eth0 10.1.0.2/24 ─── lan r1 wan 172.16.1.2 ─── isp1 ┐
//!     │                                                           inet: 198.51.100.10
//!     └── usb0 (DHCP from dnsmasq) ── lan r2 wan 172.16.2.2 ─── isp2 ┘   (server.py)
//! ```
//! The client runs dhcpcd on usb0 as our users do (`metric 3000`), with
//! rp_filter=1. The routers do not NAT, so the server sees which uplink a
//! connection left through by its source address.
#![allow(dead_code)]

use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

pub const SERVER: &str = "198.51.100.10";
pub const TCP_PORT: u16 = 8080;
pub const UDP_PORT: u16 = 9999;
pub const ETH0_ADDR: &str = "10.1.0.2";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A unique, short name part for this process and call.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

pub struct Lab {
    pub name: String,
    pub dir: PathBuf,
    pub srcsel: PathBuf,
    /// Background processes by role ("server", "dnsmasq-r2", "dhcpcd-usb0", "daemon", ...).
    procs: Vec<(String, Child)>,
    daemon_starts: usize,
}

pub fn sh(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn ip(args: &str) {
    sh(Command::new("ip").args(args.split_whitespace()));
}

impl Lab {
    /// Builds the lab and waits until usb0 has its DHCP lease.
    pub fn new(srcsel: impl Into<PathBuf>) -> Self {
        let name = unique("ss");
        let dir = std::env::temp_dir().join(format!("srcsel-lab-{name}"));
        fs::create_dir_all(&dir).expect("lab dir");
        let mut lab = Lab {
            name,
            dir,
            srcsel: srcsel.into(),
            procs: Vec::new(),
            daemon_starts: 0,
        };
        lab.build();
        lab
    }

    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.name)
    }

    fn build(&mut self) {
        let (c, r1, r2, i) = (
            self.ns("client"),
            self.ns("r1"),
            self.ns("r2"),
            self.ns("inet"),
        );
        for n in [&c, &r1, &r2, &i] {
            ip(&format!("netns add {n}"));
            ip(&format!("-n {n} link set lo up"));
        }
        // veth pairs are created inside the namespaces: nothing touches the host's.
        ip(&format!(
            "-n {c} link add eth0 type veth peer name lan netns {r1}"
        ));
        ip(&format!(
            "-n {c} link add usb0 type veth peer name lan netns {r2}"
        ));
        ip(&format!(
            "-n {r1} link add wan type veth peer name isp1 netns {i}"
        ));
        ip(&format!(
            "-n {r2} link add wan type veth peer name isp2 netns {i}"
        ));
        for (n, dev, addr) in [
            (&c, "eth0", "10.1.0.2/24"),
            (&r1, "lan", "10.1.0.1/24"),
            (&r2, "lan", "10.99.0.1/24"),
            (&r1, "wan", "172.16.1.2/30"),
            (&r2, "wan", "172.16.2.2/30"),
            (&i, "isp1", "172.16.1.1/30"),
            (&i, "isp2", "172.16.2.1/30"),
        ] {
            ip(&format!("-n {n} addr add {addr} dev {dev}"));
            ip(&format!("-n {n} link set {dev} up"));
        }
        ip(&format!("-n {c} link set usb0 up"));
        ip(&format!("-n {i} addr add {SERVER}/32 dev lo"));
        ip(&format!("-n {i} route add 10.1.0.0/16 via 172.16.1.2"));
        ip(&format!("-n {i} route add 10.64.0.0/10 via 172.16.2.2"));
        ip(&format!("-n {r1} route add default via 172.16.1.1"));
        ip(&format!("-n {r2} route add default via 172.16.2.1"));
        ip(&format!("-n {c} route add default via 10.1.0.1 metric 100"));
        for n in [&r1, &r2] {
            self.sysctl(n, "net.ipv4.ip_forward", "1");
        }
        for dev in ["all", "default", "eth0", "usb0"] {
            self.sysctl(&c, &format!("net.ipv4.conf.{dev}.rp_filter"), "1");
        }
        self.start_server();
        self.start_dnsmasq("10.99.0", "10.99.0.1");
        self.start_dhcpcd();
        self.wait_for_lease();
    }

    fn sysctl(&self, ns: &str, key: &str, value: &str) {
        sh(Command::new("ip").args([
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            &format!("{key}={value}"),
        ]));
    }

    /// Starts a background process under `role`; its output goes to `<role>.log`.
    pub fn spawn(&mut self, role: &str, cmd: &mut Command) {
        self.stop(role);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(role))
            .expect("log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        self.procs.push((role.to_owned(), child));
    }

    pub fn log_path(&self, role: &str) -> PathBuf {
        self.dir.join(format!("{role}.log"))
    }

    pub fn log(&self, role: &str) -> String {
        fs::read_to_string(self.log_path(role)).unwrap_or_default()
    }

    pub fn pid(&self, role: &str) -> Option<u32> {
        self.procs
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, c)| c.id())
    }

    /// Sends `signal` to the process of `role` and waits for it to end.
    pub fn signal(&mut self, role: &str, signal: i32) -> Option<std::process::ExitStatus> {
        let i = self.procs.iter().position(|(r, _)| r == role)?;
        let (_, mut child) = self.procs.remove(i);
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        child.wait().ok()
    }

    /// Stops (SIGTERM) the process of `role`, if any.
    pub fn stop(&mut self, role: &str) {
        self.signal(role, libc::SIGTERM);
    }

    /// Starts `srcsel daemon ARGS` in the client namespace.
    pub fn start_daemon(&mut self, args: &[&str]) {
        let mut cmd = self.srcsel(["daemon"]);
        cmd.args(args).env("SRCSEL_LOG", "debug");
        self.spawn("daemon", &mut cmd);
        let log = self.log_path("daemon");
        wait_until(
            "the daemon to watch netlink",
            Duration::from_secs(10),
            || {
                fs::read_to_string(&log)
                    .is_ok_and(|l| l.matches("watching links").count() > self.daemon_starts)
            },
        );
        self.daemon_starts += 1;
    }

    fn start_server(&mut self) {
        let script = self.dir.join("server.py");
        fs::write(&script, include_str!("server.py")).expect("server.py");
        let ready = self.dir.join("server.ready");
        let ns = self.ns("inet");
        let log = self.server_log();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns, "python3"])
            .args([&script, &log, &ready])
            .arg(SERVER);
        self.spawn("server", &mut cmd);
        wait_until("the lab server to listen", Duration::from_secs(10), || {
            ready.exists()
        });
    }

    pub fn server_log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// (Re)starts the hotspot's DHCP server for `prefix`.0/24 with `router`.
    pub fn start_dnsmasq(&mut self, prefix: &str, router: &str) {
        self.start_dnsmasq_in("r2", prefix, router);
    }

    /// (Re)starts a DHCP server on router `role`'s lan for `prefix`.0/24.
    /// Authoritative, so a client rebooting with an old lease gets a NAK at once.
    pub fn start_dnsmasq_in(&mut self, role: &str, prefix: &str, router: &str) {
        let ns = self.ns(role);
        let leases = self.dir.join(format!("dnsmasq-{role}.leases"));
        let _ = fs::remove_file(&leases);
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &ns,
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--port=0",
        ])
        .args([
            "--interface=lan",
            "--bind-dynamic",
            "--dhcp-authoritative",
            "--log-dhcp",
            "--log-facility=-",
        ])
        .arg(format!(
            "--dhcp-range={prefix}.100,{prefix}.150,255.255.255.0,10m"
        ))
        .arg(format!("--dhcp-option=option:router,{router}"))
        .arg(format!("--dhcp-leasefile={}", leases.display()))
        .arg("--pid-file=");
        self.spawn(&format!("dnsmasq-{role}"), &mut cmd);
    }

    /// Renumbers the hotspot as a rebooted phone would: new subnet and
    /// gateway, and a carrier bounce that makes the client's dhcpcd rebind.
    pub fn renumber_hotspot(&mut self, prefix: &str) {
        let (r2, router) = (self.ns("r2"), format!("{prefix}.1"));
        ip(&format!("-n {r2} addr flush dev lan"));
        ip(&format!("-n {r2} addr add {router}/24 dev lan"));
        self.start_dnsmasq(prefix, &router);
        ip(&format!("-n {r2} link set lan down"));
        ip(&format!("-n {r2} link set lan up"));
        wait_until("usb0's new lease", Duration::from_secs(30), || {
            self.usb0_addr_now().is_some_and(|a| a.starts_with(prefix))
                && self
                    .client_out("ip -4 route show dev usb0")
                    .contains(&format!("default via {router}"))
        });
    }

    /// dhcpcd as our users run it, in a private mount namespace so that
    /// parallel labs do not share /run/dhcpcd or /var/lib/dhcpcd, and with
    /// no hooks, so it never touches the host's resolv.conf or hostname.
    fn start_dhcpcd(&mut self) {
        self.start_dhcpcd_on("usb0", "metric 3000", "/bin/true");
    }

    /// (Re)starts dhcpcd for `iface` with extra config lines and a hook script.
    pub fn start_dhcpcd_on(&mut self, iface: &str, extra: &str, hook: &str) {
        let conf = self.dir.join(format!("dhcpcd-{iface}.conf"));
        let text = format!(
            "interface {iface}\n{extra}\nipv4only\nnoipv6rs\nnoarp\nnohook resolv.conf hostname\n"
        );
        fs::write(&conf, text).expect("dhcpcd.conf");
        let script = format!(
            "mount -t tmpfs tmpfs /run && mkdir -p /run/dhcpcd && mount -t tmpfs tmpfs /var/lib/dhcpcd && \
             exec dhcpcd -f {} -c {hook} -B -4 {iface}",
            conf.display()
        );
        let netns = format!("--net=/run/netns/{}", self.ns("client"));
        let mut cmd = Command::new("nsenter");
        cmd.args([
            &netns,
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ]);
        self.spawn(&format!("dhcpcd-{iface}"), &mut cmd);
    }

    fn wait_for_lease(&self) {
        wait_until(
            "usb0's DHCP lease and default route",
            Duration::from_secs(30),
            || {
                self.usb0_addr_now().is_some()
                    && self
                        .client_out("ip -4 route show dev usb0")
                        .contains("default via")
            },
        );
    }

    fn usb0_addr_now(&self) -> Option<String> {
        self.addr_of("usb0")
    }

    /// The first IPv4 address of a client interface.
    pub fn addr_of(&self, iface: &str) -> Option<String> {
        let out = self.client_out(&format!("ip -4 -o addr show dev {iface}"));
        let word = out.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
        Some(word.split('/').next()?.to_owned())
    }

    /// usb0's current DHCP address.
    pub fn usb0_addr(&self) -> String {
        self.usb0_addr_now().expect("usb0 has an address")
    }

    /// A command run in the client's network namespace. nsenter keeps the
    /// host's mounts (cgroup2, bpffs), which `ip netns exec` would hide.
    pub fn client(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.ns("client")))
            .arg(program);
        cmd
    }

    /// `srcsel ARGS` in the client namespace.
    pub fn srcsel<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = self.client(&self.srcsel);
        cmd.args(args);
        cmd
    }

    /// `srcsel run --via usb0 -- sh -c SCRIPT`.
    pub fn run_via_usb0(&self, script: &str) -> Command {
        self.srcsel(["run", "--via", "usb0", "--", "sh", "-c", script])
    }

    /// The output of a shell command line run in the client namespace.
    pub fn client_out(&self, line: &str) -> String {
        let out = self
            .client("sh")
            .args(["-c", line])
            .output()
            .expect("nsenter");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every peer the server logged for `token` (protocol, address).
    pub fn seen(&self, token: &str) -> Vec<(String, String)> {
        let log = fs::read_to_string(self.server_log()).unwrap_or_default();
        log.lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let (proto, tok, peer) = (w.next()?, w.next()?, w.next()?);
                (tok == token || (proto == "icmp" && tok.contains(token)))
                    .then(|| (proto.to_owned(), peer.to_owned()))
            })
            .collect()
    }

    /// The one address the server saw `token` from, waiting briefly for the log.
    pub fn source_of(&self, token: &str) -> String {
        wait_until(
            &format!("the server to log {token}"),
            Duration::from_secs(5),
            || !self.seen(token).is_empty(),
        );
        let seen = self.seen(token);
        let peers: std::collections::BTreeSet<_> = seen.iter().map(|(_, p)| p.clone()).collect();
        assert_eq!(
            peers.len(),
            1,
            "{token} came from more than one address: {seen:?}"
        );
        peers.into_iter().next().expect("one")
    }

    /// Asserts that nothing with `token` reached the server, through any uplink.
    pub fn assert_unseen(&self, token: &str) {
        thread::sleep(Duration::from_millis(300));
        assert!(
            self.seen(token).is_empty(),
            "{token} reached the server: {:?}",
            self.seen(token)
        );
    }

    pub fn rules(&self) -> String {
        self.client_out("ip rule; ip -6 rule")
    }

    pub fn routes(&self) -> String {
        self.client_out("ip route show table all; ip -6 route show table all")
    }

    /// The client namespace's cookie, which names srcsel's pin folder.
    pub fn netns_cookie(&self) -> u64 {
        let out = self.client_out(
            "python3 -c 'import socket; s=socket.socket(); print(int.from_bytes(s.getsockopt(socket.SOL_SOCKET, 71, 8), \"little\"))'",
        );
        out.trim().parse().expect("netns cookie")
    }

    /// srcsel's pin folder for the client namespace, wherever bpffs is.
    pub fn pin_dir(&self) -> PathBuf {
        let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let bpffs = mount_point(&info, "bpf").unwrap_or_else(|| PathBuf::from("/sys/fs/bpf"));
        bpffs
            .join("srcsel")
            .join(format!("net-{}", self.netns_cookie()))
    }
}

/// The mount point of the first filesystem of type `fstype`.
pub fn mount_point(mountinfo: &str, fstype: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let point = left.split(' ').nth(4)?;
        (right.split(' ').next()? == fstype).then(|| PathBuf::from(point))
    })
}

pub fn cgroup2_root() -> PathBuf {
    mount_point(
        &fs::read_to_string("/proc/self/mountinfo").expect("mountinfo"),
        "cgroup2",
    )
    .expect("a cgroup2 mount")
}

pub fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The daemon first (it would put rules back), then the rest (a
        // stopping dhcpcd still runs its hook), then srcsel's own state: rules
        // die with the namespace, pins do not.
        self.stop("daemon");
        for (_, c) in &mut self.procs {
            // SAFETY: SIGTERM to our own child: dhcpcd stops its helpers itself.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        for (_, c) in &mut self.procs {
            let _ = c.wait();
        }
        let _ = self.srcsel(["down"]).stderr(Stdio::null()).status();
        for role in ["client", "r1", "r2", "inet"] {
            // Whatever still runs in a namespace would keep it alive.
            let pids = Command::new("ip")
                .args(["netns", "pids", &self.ns(role)])
                .output();
            for pid in pids.iter().flat_map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .into_owned()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            }) {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    // SAFETY: kill(2) on a pid inside the lab's own namespace.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(role)])
                .status();
        }
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("lab logs kept in {}", self.dir.display());
        }
    }
}
