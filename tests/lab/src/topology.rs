//! The namespaces, veths, addresses, routes and sysctls of the lab, and their
//! teardown. Everything is created inside the lab's own namespaces, so the
//! host's network is never touched, and everything goes on drop.
use std::{
    fs,
    process::{Command, Stdio},
    thread,
};

use crate::{Lab, SERVER, SERVER6, cmd::ip, cmd::sh};

/// The lab's namespaces by role (r3 only when a test adds it).
const ROLES: [&str; 5] = ["client", "r1", "r2", "inet", "r3"];

impl Lab {
    /// The name of the lab's namespace for `role` (client, r1, r2, inet).
    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.name)
    }

    pub(crate) fn build_topology(&mut self) {
        let (c, r1, r2, i) = (
            self.ns("client"),
            self.ns("r1"),
            self.ns("r2"),
            self.ns("inet"),
        );
        if self.client_here {
            // A name for this namespace, so every `-n client` below means it.
            ip(&format!("netns attach {c} {}", std::process::id()));
        }
        for n in [&c, &r1, &r2, &i] {
            if *n != c || !self.client_here {
                ip(&format!("netns add {n}"));
            }
            ip(&format!("-n {n} link set lo up"));
        }
        // veth pairs are created inside the namespaces: nothing touches the host's.
        ip(&format!(
            "-n {c} link add eth0 type veth peer name lan netns {r1}"
        ));
        ip(&format!(
            "-n {c} link add usb0 type veth peer name lan netns {r2}"
        ));
        if self.client_here {
            // No link-local addresses: they would come and go while a test
            // compares this namespace's routes before and after.
            for dev in ["eth0", "usb0"] {
                ip(&format!("-n {c} link set {dev} addrgenmode none"));
            }
        }
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
        // IPv6 on the routers and the internet; the client gets its own by
        // router advertisements only when a test asks (`enable_ipv6`).
        for (n, dev, addr) in [
            (&r1, "lan", "2001:db8:1::1/64"),
            (&r2, "lan", "2001:db8:99::1/64"),
            (&r1, "wan", "2001:db8:f1::2/64"),
            (&r2, "wan", "2001:db8:f2::2/64"),
            (&i, "isp1", "2001:db8:f1::1/64"),
            (&i, "isp2", "2001:db8:f2::1/64"),
        ] {
            ip(&format!("-n {n} -6 addr add {addr} dev {dev} nodad"));
        }
        ip(&format!("-n {i} -6 addr add {SERVER6}/128 dev lo"));
        ip(&format!(
            "-n {i} -6 route add 2001:db8::/44 via 2001:db8:f1::2"
        ));
        ip(&format!(
            "-n {i} -6 route add 2001:db8:90::/44 via 2001:db8:f2::2"
        ));
        ip(&format!("-n {r1} -6 route add default via 2001:db8:f1::1"));
        ip(&format!("-n {r2} -6 route add default via 2001:db8:f2::1"));
        ip(&format!("-n {i} addr add {SERVER}/32 dev lo"));
        ip(&format!("-n {i} route add 10.1.0.0/16 via 172.16.1.2"));
        ip(&format!("-n {i} route add 10.64.0.0/10 via 172.16.2.2"));
        ip(&format!("-n {r1} route add default via 172.16.1.1"));
        ip(&format!("-n {r2} route add default via 172.16.2.1"));
        ip(&format!("-n {c} route add default via 10.1.0.1 metric 100"));
        for n in [&r1, &r2] {
            sysctl(n, "net.ipv4.ip_forward", "1");
            sysctl(n, "net.ipv6.conf.all.forwarding", "1");
        }
        self.watch_sources();
        for dev in ["all", "default", "eth0", "usb0"] {
            sysctl(&c, &format!("net.ipv4.conf.{dev}.rp_filter"), "1");
        }
    }

    /// Kills whatever still runs in the lab's namespaces (it would keep them
    /// alive) and deletes them.
    fn delete_namespaces(&self) {
        if self.client_here {
            // The links go (and their routes with them); the namespace stays.
            for dev in ["eth0", "usb0"] {
                let _ = Command::new("ip").args(["link", "del", dev]).status();
            }
        }
        for role in ROLES {
            // r3 only when a test added it.
            if !std::path::Path::new("/run/netns")
                .join(self.ns(role))
                .exists()
            {
                continue;
            }
            let here = role == "client" && self.client_here;
            let pids = Command::new("ip")
                .args(["netns", "pids", &self.ns(role)])
                .output()
                .ok()
                .filter(|_| !here);
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
            // For the client here this only removes its name.
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(role)])
                .status();
        }
    }
}

pub(crate) fn sysctl(ns: &str, key: &str, value: &str) {
    sh(Command::new("ip").args([
        "netns",
        "exec",
        ns,
        "sysctl",
        "-qw",
        &format!("{key}={value}"),
    ]));
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The daemon first (it would put rules back), then the rest (a
        // stopping dhcpcd still runs its hook), then srcsel's own state: rules
        // die with the namespace, pins do not.
        self.stop("daemon");
        self.stop_all();
        let _ = self
            .srcsel(["down", "--force"])
            .stderr(Stdio::null())
            .status();
        self.delete_namespaces();
        // /run/dhcpcd stays (empty, where Debian's dhcpcd makes it anyway):
        // removing it would take other labs' private tmpfs mounted there
        // with it (Linux lets rmdir detach another namespace's mount point),
        // and their dhcpcd's control sockets would vanish.
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("lab logs kept in {}", self.dir.display());
        }
    }
}
