//! IPv6 in the lab: router advertisements from dnsmasq (SLAAC), renumbering
//! the hotspot's prefix as a mobile network does, and the routers' counters
//! of packets that arrived with the other uplink's source.
use std::{fs, process::Command, time::Duration};

use crate::{Lab, cmd::ip, inspect::wait_until};

/// The client's IPv6 networks by uplink.
pub const ETH0_NET6: &str = "2001:db8:1:";
pub const USB0_NET6: &str = "2001:db8:99:";

/// Which uplinks get IPv6 router advertisements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum V6 {
    /// Both; the home router's is preferred (router preference high).
    Both,
    /// Only the hotspot: the case where all of a host's IPv6 drifts onto it.
    HotspotOnly,
    /// Only the home line: the hotspot has no IPv6.
    PrimaryOnly,
}

/// What each router counts and drops, by family: sources of the other uplink.
const WATCH: &str = "table inet lab {
  chain watch {
    type filter hook forward priority 0;
    iifname \"lan\" ip saddr OTHER4 counter drop
    iifname \"lan\" ip6 saddr OTHER6 counter drop
  }
}";

impl Lab {
    /// Installs the routers' counters (at lab creation).
    pub(crate) fn watch_sources(&self) {
        for (role, other4, other6) in [
            ("r1", "10.64.0.0/10", "2001:db8:90::/44"),
            ("r2", "10.1.0.0/16", "2001:db8::/44"),
        ] {
            let rules = WATCH.replace("OTHER4", other4).replace("OTHER6", other6);
            let file = self.dir.join(format!("nft-{role}"));
            fs::write(&file, rules).expect("nft rules");
            crate::ok(
                Command::new("ip")
                    .args(["netns", "exec", &self.ns(role), "nft", "-f"])
                    .arg(&file),
            );
        }
    }

    /// Packets router `role` dropped because they came with the other
    /// uplink's source: (IPv4, IPv6).
    pub fn foreign_sources(&self, role: &str) -> (u64, u64) {
        let text = self.output_in(role, &["nft", "list", "chain", "inet", "lab", "watch"]);
        let counts: Vec<u64> = text
            .lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let i = w.iter().position(|x| *x == "packets")?;
                w.get(i + 1)?.parse().ok()
            })
            .collect();
        (counts[0], counts[1])
    }

    /// Starts router advertisements and waits until the client has a usable
    /// global address and a default route on each uplink that gets them.
    pub fn enable_ipv6(&mut self, which: V6) {
        let (eth0, usb0) = match which {
            V6::Both => (true, true),
            V6::HotspotOnly => (false, true),
            V6::PrimaryOnly => (true, false),
        };
        if eth0 {
            self.start_ra("r1", "high");
        }
        if usb0 {
            self.start_ra("r2", "low");
        }
        if eth0 {
            self.wait_for_slaac("eth0", ETH0_NET6);
        }
        if usb0 {
            self.wait_for_slaac("usb0", USB0_NET6);
        }
    }

    /// dnsmasq as an advertising router for the prefix on `role`'s lan.
    fn start_ra(&mut self, role: &str, preference: &str) {
        let ns = self.ns(role);
        let router = if role == "r1" {
            "2001:db8:1::1"
        } else {
            "2001:db8:99::1"
        };
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns, "dnsmasq", "--keep-in-foreground"])
            .args(["--conf-file=/dev/null", "--port=0", "--interface=lan"])
            .args([
                "--bind-dynamic",
                "--enable-ra",
                "--log-facility=-",
                "--pid-file=",
            ])
            .arg("--dhcp-range=::,constructor:lan,ra-only,64,1h")
            .arg(format!("--ra-param=lan,{preference},10"))
            // The router as resolver (RDNSS), as a phone's hotspot offers itself.
            .arg(format!("--dhcp-option=option6:dns-server,[{router}]"));
        self.spawn(&format!("ra-{role}"), &mut cmd);
    }

    fn wait_for_slaac(&self, iface: &str, net: &str) {
        wait_until(
            &format!("{iface}'s SLAAC address in {net}:/64 and IPv6 default route"),
            Duration::from_secs(30),
            || {
                self.addr6_of(iface).is_some_and(|a| a.starts_with(net))
                    && self
                        .client_out(&format!("ip -6 route show default dev {iface}"))
                        .contains("via fe80")
            },
        );
    }

    /// The first global IPv6 address of a client interface that new
    /// connections may use (DAD done, not deprecated).
    pub fn addr6_of(&self, iface: &str) -> Option<String> {
        let out = self.client_out(&format!(
            "ip -6 -o addr show dev {iface} scope global -tentative -deprecated"
        ));
        let word = out
            .split_whitespace()
            .skip_while(|w| *w != "inet6")
            .nth(1)?;
        Some(word.split('/').next()?.to_owned())
    }

    /// Renumbers the hotspot's IPv6 prefix as a mobile network does: the
    /// router's address moves to `net`:/64; its dnsmasq advertises the new
    /// prefix and deprecates the old one (constructor mode). Waits until the
    /// client's usable address is in `net`.
    pub fn renumber_hotspot6(&mut self, net: &str) {
        let r2 = self.ns("r2");
        ip(&format!("-n {r2} -6 addr add {net}:1/64 dev lan nodad"));
        ip(&format!("-n {r2} -6 addr del 2001:db8:99::1/64 dev lan"));
        wait_until(
            &format!("usb0's address in {net}:/64, the old one deprecated"),
            Duration::from_secs(60),
            || self.addr6_of("usb0").is_some_and(|a| a.starts_with(net)),
        );
    }
}
