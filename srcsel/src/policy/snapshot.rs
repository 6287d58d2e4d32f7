//! The kernel state one pass works from, as plain data: links, addresses,
//! routes and rules, each dumped once per pass (`kernel::netlink::dump`),
//! and what srcsel's own maps recorded of leases.
use std::{collections::BTreeMap, net::Ipv4Addr};

use ipnet::IpNet;

use super::routing::{Route, Rule};

/// A network interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// Administratively up with carrier: packets can leave.
    pub up: bool,
    pub loopback: bool,
}

/// An address on a link, with its prefix length (`10.99.0.57/24`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    pub net: IpNet,
    /// `IFA_F_*` bits (see [`addr_flags`]).
    pub flags: u32,
    /// 0: global, 253: link, 254: host.
    pub scope: u8,
}

/// The `IFA_F_*` bits srcsel reads.
pub mod addr_flags {
    /// A privacy address (RFC 8981) that the kernel rotates.
    pub const TEMPORARY: u32 = 0x01;
    pub const DADFAILED: u32 = 0x08;
    /// Its preferred lifetime ran out: no new connections should use it.
    pub const DEPRECATED: u32 = 0x20;
    /// Duplicate address detection has not finished: it cannot be bound yet.
    pub const TENTATIVE: u32 = 0x40;
}

/// A kernel object as dumped, with the protocol that added it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed<T> {
    pub spec: T,
    pub proto: u8,
}

impl<T> Observed<T> {
    /// Whether srcsel added it.
    pub fn is_ours(&self) -> bool {
        self.proto == super::PROTO
    }
}

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub links: Vec<Link>,
    /// In the kernel's order (per link, the primary address first).
    pub addresses: Vec<Address>,
    /// Unicast routes of every table, both families.
    pub routes: Vec<Observed<Route>>,
    /// Rules of both families that srcsel can express (lookup, unreachable).
    pub rules: Vec<Observed<Rule>>,
    /// When it was taken (CLOCK_BOOTTIME, seconds): what learned state
    /// with a lifetime (RDNSS) is compared against.
    pub now: u64,
    /// The system's resolvers (resolv.conf's `nameserver`s, in order).
    pub system_dns: Vec<std::net::IpAddr>,
    /// The last lease DHCP client hooks reported, by interface name.
    pub reported: BTreeMap<String, Reported>,
    /// Resolvers the host's DHCP client knows, for uplinks no hook told
    /// srcsel any of ([`super::plan::to_ask`]), by interface name.
    pub asked: BTreeMap<String, super::dns::Asked>,
    /// The daemon's health verdicts by uplink name, when the daemon plans;
    /// other passes keep those the slot registry holds.
    pub health: Option<BTreeMap<String, super::health::Down>>,
}

/// A lease a DHCP client hook reported (`srcsel lease`), recorded whether
/// srcsel manages the interface or not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reported {
    /// None: the lease ended.
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// When (CLOCK_BOOTTIME, seconds).
    pub at: u64,
}

impl Snapshot {
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    /// srcsel's own rules.
    pub fn our_rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(|r| r.is_ours()).map(|r| &r.spec)
    }
}
