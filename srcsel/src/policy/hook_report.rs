//! A lease a DHCP client hook reported, as a pass takes it.
use std::net::Ipv4Addr;

use super::{
    registry::{Registry, slot_held_by},
    snapshot::Reported,
};
use crate::config::Config;

/// A lease reported by a DHCP client hook (`srcsel lease`): its gateway
/// (None: the lease ended) and DNS servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookReport {
    pub interface: String,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
}

impl HookReport {
    /// Whether a pass has anything to do with this report: only when
    /// something named the interface (the config, or a run or assignment,
    /// which gave it a slot). The hooks report every interface's lease
    /// (eth0's, wlan0's): a report is recorded, never an order to manage.
    pub fn concerns(&self, config: &Config, reg: &Registry) -> bool {
        slot_held_by(reg, &self.interface).is_some()
            || config.managed().any(|m| m == self.interface)
    }

    /// As recorded at `at`.
    pub fn reported(&self, at: u64) -> Reported {
        Reported {
            gateway: self.gateway,
            dns: self.dns.clone(),
            at,
        }
    }
}
