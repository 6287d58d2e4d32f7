//! A second router on eth0's LAN (a site-to-site VPN router, the way to a
//! second subnet), reached only through a static route in the client's main
//! table: the host's own routing that srcsel must never bypass.
use std::{process::Command, time::Duration};

use crate::{Lab, TCP_PORT, cmd::ip, inspect::wait_until};

/// The second router's address on eth0's LAN.
pub const LAN_ROUTER: &str = "10.1.0.254";
/// The prefix behind it, and the address its server listens on.
pub const SITE_NET: &str = "203.0.113.0/24";
pub const SITE: &str = "203.0.113.7";

impl Lab {
    /// Bridges r1's side of eth0 with a new router `r3` (LAN_ROUTER), which
    /// serves SITE with the lab's server, and routes SITE_NET via r3 in the
    /// client's main table. r1 does not know SITE_NET: a packet that takes
    /// the default route instead never arrives.
    pub fn add_lan_router(&mut self) {
        let (c, r1, r3) = (self.ns("client"), self.ns("r1"), self.ns("r3"));
        ip(&format!("netns add {r3}"));
        ip(&format!("-n {r3} link set lo up"));
        ip(&format!("-n {r1} link add br0 type bridge"));
        ip(&format!("-n {r1} addr del 10.1.0.1/24 dev lan"));
        ip(&format!("-n {r1} link set lan master br0"));
        ip(&format!("-n {r1} addr add 10.1.0.1/24 dev br0"));
        ip(&format!("-n {r1} link set br0 up"));
        ip(&format!(
            "-n {r1} link add lan3 type veth peer name lan netns {r3}"
        ));
        ip(&format!("-n {r1} link set lan3 master br0"));
        ip(&format!("-n {r1} link set lan3 up"));
        ip(&format!("-n {r3} addr add {LAN_ROUTER}/24 dev lan"));
        ip(&format!("-n {r3} link set lan up"));
        ip(&format!("-n {r3} addr add {SITE}/32 dev lo"));
        ip(&format!(
            "-n {c} route add {SITE_NET} via {LAN_ROUTER} dev eth0"
        ));
        let script = self.dir.join("server.py");
        let ready = self.dir.join("site.ready");
        let log = self.dir.join("site.log");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &r3, "python3"])
            .args([&script, &log, &ready])
            .args([SITE, "::1"]);
        self.spawn("site-server", &mut cmd);
        wait_until(
            "the site's server to listen",
            Duration::from_secs(10),
            || ready.exists(),
        );
    }

    /// `curl` to the site's server in the client namespace (`extra` before
    /// the URL): the source address the second router's server saw, or
    /// None when nothing arrived.
    pub fn site_saw(&self, prefix: &[&str], extra: &[&str]) -> Option<String> {
        let url = format!("http://{SITE}:{TCP_PORT}/site");
        let o = self
            .client(prefix.first().copied().unwrap_or("env"))
            .args(prefix.iter().skip(1))
            .args(["curl", "-sf", "-m3"])
            .args(extra)
            .arg(&url)
            .output()
            .expect("curl");
        let seen = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        (o.status.success() && !seen.is_empty()).then_some(seen)
    }
}
