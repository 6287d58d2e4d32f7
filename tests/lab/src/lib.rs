//! The lab: a multi-homed client in network namespaces, built with iproute2
//! (never with srcsel's own netlink code), torn down on drop even when a test
//! panics.
//!
//! ```text
//!   client ── eth0 10.1.0.2/24 ─── lan r1 wan 172.16.1.2 ─── isp1 ┐
//!     │                                                           inet: 198.51.100.10
//!     └── usb0 (DHCP from dnsmasq) ── lan r2 wan 172.16.2.2 ─── isp2 ┘   2001:db8:ffff::10
//!                                                                        (server.py)
//! ```
//! IPv6 (on request, `enable_ipv6`): router advertisements from dnsmasq give
//! the client 2001:db8:1::/64 on eth0 and 2001:db8:99::/64 on usb0 by SLAAC.
//! Each router counts and drops what arrives from its LAN with the other
//! uplink's source (as an ISP filtering spoofed sources does): a packet that
//! leaked through the wrong uplink shows there even though it never reaches
//! the server.
//! The client runs dhcpcd on usb0 as our users do (`metric 3000`), with
//! rp_filter=1. The routers do not NAT, so the server sees which uplink a
//! connection left through by its source address.
//!
//! A crate of its own so that both integration suites and xtask's demo and
//! bench share one copy; it needs root only when a lab is raised, not to build.
mod cgroups;
mod cmd;
mod dhcp;
mod health;
mod inspect;
mod ipv6;
mod lan_router;
mod procs;
mod resolvers;
mod runner;
mod server;
mod topology;
mod upstream;

use std::{
    ffi::OsStr,
    fs,
    path::PathBuf,
    process::{Child, Command},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

pub use cgroups::CgroupTree;
pub use cmd::{ip, ok, out, quoted, sh, stderr};
pub use health::{CHECK, CHECK6, usb0_health};
pub use inspect::{cgroup2_root, mount_point, netstat_value, switches, wait_until, wakeups};
pub use ipv6::{ETH0_NET6, USB0_NET6, V6};
pub use lan_router::{LAN_ROUTER, SITE, SITE_NET};
pub use resolvers::{
    HOME_ANSWER, HOME_DNS, HOTSPOT_ANSWER, NAME, PUBLIC_ANSWER, PUBLIC_DNS, Query, STUB_DNS,
};
pub use runner::Runner;
pub use server::{url, url6};

pub const SERVER: &str = "198.51.100.10";
pub const SERVER6: &str = "2001:db8:ffff::10";
pub const TCP_PORT: u16 = 8080;
pub const UDP_PORT: u16 = 9999;
/// The server holds connections to this port open until the client closes.
pub const HOLD_PORT: u16 = 7000;
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
    /// The client is the namespace the test runs in, not one of the lab's own.
    client_here: bool,
    /// The client's own /etc/resolv.conf ([`Lab::set_resolv_conf`]).
    resolv_conf: Option<PathBuf>,
}

impl Lab {
    /// Builds the lab and waits until usb0 has its DHCP lease. `srcsel` is
    /// the binary under test, unless `SRCSEL_LAB_BINARY` names another (the
    /// arm64 VM runs the core cases with the installed package's).
    pub fn new(srcsel: impl Into<PathBuf>) -> Self {
        let srcsel =
            std::env::var_os("SRCSEL_LAB_BINARY").map_or_else(|| srcsel.into(), PathBuf::from);
        let mut lab = Self::raise(srcsel, false);
        lab.start_dhcpcd();
        lab.wait_for_lease();
        lab
    }

    /// The lab with the namespace this test runs in as the client: its eth0
    /// and usb0 are made here, and go on drop. Only for a machine that is
    /// itself a test (the VM), for what manages links of the root namespace
    /// alone (NetworkManager, an installed srcsel.service). No DHCP client is
    /// started on usb0: the test starts the one it is about.
    pub fn with_client_here(srcsel: impl Into<PathBuf>) -> Self {
        // The lab deletes them when it goes: never links it did not make.
        for dev in ["eth0", "usb0"] {
            let path = std::path::Path::new("/sys/class/net").join(dev);
            assert!(
                !path.exists(),
                "{dev} exists here already: not a machine for this lab"
            );
        }
        Self::raise(srcsel.into(), true)
    }

    fn raise(srcsel: PathBuf, client_here: bool) -> Self {
        let name = unique("ss");
        let dir = std::env::temp_dir().join(format!("srcsel-lab-{name}"));
        fs::create_dir_all(&dir).expect("lab dir");
        let mut lab = Lab {
            name,
            dir,
            srcsel,
            procs: Vec::new(),
            daemon_starts: 0,
            client_here,
            resolv_conf: None,
        };
        lab.build_topology();
        lab.start_server();
        lab.start_dnsmasq("10.99.0", "10.99.0.1");
        lab
    }

    /// A command run in the client's network namespace. nsenter keeps the
    /// host's mounts (cgroup2, bpffs), which `ip netns exec` would hide;
    /// only the client's own resolv.conf, if it has one, is mounted over
    /// the host's, in a mount namespace of the command's own.
    pub fn client(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.ns("client")));
        if let Some(conf) = &self.resolv_conf {
            cmd.args(["unshare", "--mount", "--propagation=private", "sh", "-c"])
                .arg(r#"mount --bind "$0" /etc/resolv.conf && exec "$@""#)
                .arg(conf);
        }
        cmd.arg(program);
        cmd
    }

    /// `program` in the client namespace as an unprivileged user: `uid`
    /// (its own gid too) with supplementary `groups`, no capabilities.
    pub fn as_user(&self, uid: u32, groups: &[u32], program: impl AsRef<OsStr>) -> Command {
        let mut cmd = self.client("setpriv");
        cmd.args([format!("--reuid={uid}"), format!("--regid={uid}")]);
        if groups.is_empty() {
            cmd.arg("--clear-groups");
        } else {
            let list: Vec<String> = groups.iter().map(u32::to_string).collect();
            cmd.arg(format!("--groups={}", list.join(",")));
        }
        cmd.args(["--inh-caps=-all", "--"]).arg(program);
        cmd
    }

    /// `srcsel ARGS` in the client namespace.
    pub fn srcsel<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.client(&self.srcsel);
        cmd.args(args);
        cmd
    }

    /// `srcsel run --via usb0 -- sh -c SCRIPT`.
    pub fn run_via_usb0(&self, script: &str) -> Command {
        self.srcsel(["run", "--via", "usb0", "--", "sh", "-c", script])
    }

    /// Starts `srcsel daemon ARGS` in the client namespace and waits until it
    /// watches netlink (counting starts, so a restart waits for its own line).
    pub fn start_daemon(&mut self, args: &[&str]) {
        self.start_daemon_with_env(&[], args);
    }

    /// The daemon with `config` as its config file (in the lab's folder).
    pub fn start_daemon_with_config(&mut self, config: &str, env: &[(&str, &str)]) {
        let path = self.dir.join("srcsel.toml");
        fs::write(&path, config).expect("the lab's config");
        self.start_daemon_with_env(env, &["--config", &path.display().to_string()]);
    }

    /// The same with environment variables set.
    pub fn start_daemon_with_env(&mut self, env: &[(&str, &str)], args: &[&str]) {
        let mut cmd = self.srcsel(["daemon"]);
        cmd.envs(env.iter().copied());
        self.launch_daemon(cmd.args(args));
    }

    /// The same in the mount namespace of the lab's process `role` (where
    /// a DHCP client's private /run/dhcpcd is).
    pub fn start_daemon_in_mounts_of(&mut self, role: &str, args: &[&str]) {
        let pid = self
            .pid(role)
            .unwrap_or_else(|| panic!("{role} does not run"));
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.ns("client")))
            .arg(format!("--mount=/proc/{pid}/ns/mnt"))
            .arg(&self.srcsel)
            .arg("daemon");
        self.launch_daemon(cmd.args(args));
    }

    /// At debug level, unless the caller chose one (the bench runs it at
    /// the packaged service's level).
    fn launch_daemon(&mut self, cmd: &mut Command) {
        if !cmd.get_envs().any(|(k, _)| k == "SRCSEL_LOG") {
            cmd.env("SRCSEL_LOG", "debug");
        }
        self.spawn("daemon", cmd);
        let log = self.log_path("daemon");
        wait_until(
            "the daemon to watch netlink",
            // Generous: under TCG (the VM) each program load takes seconds.
            Duration::from_secs(60),
            || {
                fs::read_to_string(&log)
                    .is_ok_and(|l| l.matches("watching links").count() > self.daemon_starts)
            },
        );
        self.daemon_starts += 1;
    }

    /// Has the daemon read its config again (SIGHUP, as `systemctl
    /// reload`) and waits until it has.
    pub fn reload_daemon(&self) {
        let before = self.log("daemon").matches("reloading").count();
        let pid = self.pid("daemon").expect("the daemon runs") as i32;
        // SAFETY: kill(2) on the lab's own daemon.
        unsafe { libc::kill(pid, libc::SIGHUP) };
        wait_until("the daemon to reload", Duration::from_secs(10), || {
            self.log("daemon").matches("reloading").count() > before
        });
    }
}
