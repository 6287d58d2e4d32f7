//! Types shared by srcsel's eBPF programs and its userspace: the programs,
//! the layout of the pinned maps, and the bits of the socket mark srcsel owns.
#![no_std]

pub mod mark;
pub mod programs;
pub mod state;

pub use mark::{MARK_MASK, PENDING, STRICT_BIT, UPLINK_MASK, mark_for};
pub use state::{
    Counters, DnsKey, LeaseReport, MAX_RESOLVERS, PeerKey, PeerValue, Resolvers, UplinkRecord,
    UplinkState, dns_flags, flags, health_flags,
};

/// Slots in the uplink maps. Slot 0 is never used, so an uplink id is never 0.
pub const MAX_UPLINKS: u32 = 64;

/// Capacity of the exempt-destination trie (the main table's LAN prefixes).
/// An LPM trie allocates per entry, so a large cap costs nothing until used.
pub const MAX_EXEMPT4: u32 = 65536;
/// The same for IPv6.
pub const MAX_EXEMPT6: u32 = 65536;

/// Capacity of the lease reports map: interfaces whose leases the hooks
/// reported (userspace removes the oldest report when it is full).
pub const MAX_LEASES: u32 = 256;

/// Capacity of the redirected-query map: queries in flight at once, per
/// namespace. An LRU map: the oldest (long answered) go first.
pub const MAX_DNS_QUERIES: u32 = 16384;

/// Capacity of the service-socket map: UDP sockets programs bound
/// themselves, per namespace (an LRU map: closed ones go first).
pub const MAX_SERVICES: u32 = 16384;
/// Capacity of the request map: peers of those sockets, per namespace.
pub const MAX_PEERS: u32 = 65536;

/// Names of the pinned maps, shared by every program set of a namespace.
pub mod maps {
    /// [`crate::UplinkState`] per slot: what the programs read.
    pub const UPLINKS: &str = "SRCSEL_UPLINKS";
    /// [`crate::UplinkRecord`] per slot: what only userspace reads (the slot
    /// registry every srcsel process of the namespace shares).
    pub const REGISTRY: &str = "SRCSEL_REGISTRY";
    /// Destinations that normal routing keeps on a local link (the main
    /// table's non-default routes): the programs do not bind them to the uplink.
    pub const EXEMPT4: &str = "SRCSEL_EXEMPT4";
    pub const EXEMPT6: &str = "SRCSEL_EXEMPT6";
    pub const COUNTERS: &str = "SRCSEL_COUNTERS";
    /// [`crate::Resolvers`] per slot. Added after the others: a namespace
    /// set up by an older srcsel gets it the next time one opens it.
    pub const DNS: &str = "SRCSEL_DNS";
    /// [`crate::DnsKey`] → the address asked: the sockets whose queries
    /// were redirected, so their answers come back from where they asked.
    pub const DNS_QUERIES: &str = "SRCSEL_DNS_QUERIES";
    /// [`crate::LeaseReport`] by interface name: what the DHCP hooks
    /// reported of every interface, managed or not. Added after the others.
    pub const LEASES: &str = "SRCSEL_LEASES";
    /// Socket cookie → 1: UDP sockets of assigned programs that bound
    /// themselves (services). Added after the others.
    pub const SERVICES: &str = "SRCSEL_SERVICES";
    /// [`crate::PeerKey`] → [`crate::PeerValue`]: who began each service
    /// socket's conversations, and where the requests came to.
    pub const PEERS: &str = "SRCSEL_PEERS";
    /// Every pinned map, for checking that a namespace's maps are complete.
    pub const ALL: [&str; 10] = [
        UPLINKS,
        REGISTRY,
        EXEMPT4,
        EXEMPT6,
        COUNTERS,
        DNS,
        DNS_QUERIES,
        LEASES,
        SERVICES,
        PEERS,
    ];
}

/// The globals each program set is loaded with: which uplink slot it serves,
/// and whether its sockets are strict (1) or fall back to normal routing (0).
pub const UPLINK_ID_GLOBAL: &str = "UPLINK_ID";
pub const STRICT_GLOBAL: &str = "STRICT";
