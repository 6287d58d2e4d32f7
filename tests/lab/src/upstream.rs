//! The hotspot's upstream cut while its link and lease stay, as a modem
//! without signal: r2 drops everything towards the internet silently (a
//! blackhole route sends no ICMP error), so only timeouts tell.
use crate::{Lab, cmd::ip};

impl Lab {
    pub fn cut_hotspot_upstream(&self) {
        let r2 = self.ns("r2");
        ip(&format!("-n {r2} route replace blackhole default"));
        self.cut_hotspot_upstream6();
    }

    /// Only its IPv6: a carrier whose IPv6 fails while IPv4 works.
    pub fn cut_hotspot_upstream6(&self) {
        let r2 = self.ns("r2");
        ip(&format!("-n {r2} -6 route replace blackhole default"));
    }

    pub fn restore_hotspot_upstream(&self) {
        let r2 = self.ns("r2");
        ip(&format!("-n {r2} route replace default via 172.16.2.1"));
        ip(&format!(
            "-n {r2} -6 route replace default via 2001:db8:f2::1"
        ));
    }
}
