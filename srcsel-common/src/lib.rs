//! Types shared by srcsel's eBPF programs and its userspace: the layout of the
//! pinned maps and the bits of the socket mark that srcsel owns.
#![no_std]

/// Slots in the `UPLINKS` array. Slot 0 is never used, so an uplink id is never 0.
pub const MAX_UPLINKS: u32 = 64;

/// The socket-mark bits srcsel owns. Other users of the mark (Kubernetes,
/// Tailscale, WireGuard, nftables rules) keep the rest.
pub const MARK_MASK: u32 = 0x7f00_0000;
/// The part of the mark that names the uplink.
pub const UPLINK_MASK: u32 = 0x3f00_0000;
/// Set on sockets of strict assignments: routing rules stop them when the
/// uplink has no route, instead of letting them fall through to the main table.
pub const STRICT_BIT: u32 = 0x4000_0000;
const MARK_SHIFT: u32 = 24;

/// The socket mark of uplink `id` (1..MAX_UPLINKS), without the strict bit.
pub const fn mark_for(id: u32) -> u32 {
    (id << MARK_SHIFT) & UPLINK_MASK
}

/// `UplinkState::flags` bits.
pub mod flags {
    /// The link is up and has a gateway (or is point-to-point): traffic can leave.
    pub const UP: u32 = 1 << 0;
    /// `addr4` holds the uplink's current IPv4 address.
    pub const HAS_ADDR4: u32 = 1 << 2;
}

/// Live state of one uplink, as the programs read it on every connect/sendmsg.
/// Userspace rewrites it on lease events, so programs never need re-attaching.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UplinkState {
    /// Network namespace the uplink lives in (`SO_NETNS_COOKIE`); the programs
    /// ignore sockets of other namespaces.
    pub netns_cookie: u64,
    /// Interface name, NUL-padded: how userspace finds the slot again.
    pub name: [u8; 16],
    /// The socket mark (only bits of [`MARK_MASK`]).
    pub mark: u32,
    pub ifindex: u32,
    /// IPv4 address in network byte order, valid when `flags & HAS_ADDR4`.
    pub addr4: u32,
    pub flags: u32,
    /// The gateway in use (network byte order, 0 if none), for `srcsel status`.
    pub gateway4: u32,
    /// The gateway a DHCP client hook reported (`srcsel lease`), kept here so
    /// that every srcsel process of the namespace sees it; 0 if none.
    pub hook_gateway4: u32,
    /// The routing table in use.
    pub table: u32,
    pub _pad: u32,
}

impl UplinkState {
    pub const fn is(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// Whether new connections can be bound to this uplink now.
    pub const fn usable4(&self) -> bool {
        self.is(flags::UP) && self.is(flags::HAS_ADDR4)
    }
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for UplinkState {}

/// Per-uplink counters (a per-CPU array indexed by slot), for `srcsel status`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections the programs bound to the uplink.
    pub connections: u64,
    /// Unconnected UDP datagrams given the uplink's source.
    pub datagrams: u64,
    /// connect/sendmsg calls refused in strict mode while the uplink was unusable.
    pub refused: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for Counters {}

/// Names of the pinned maps, shared by every program set of a namespace.
pub mod maps {
    pub const UPLINKS: &str = "SRCSEL_UPLINKS";
    /// Destinations that normal routing keeps on a local link (the main
    /// table's non-default routes): the programs do not bind them to the uplink.
    pub const EXEMPT4: &str = "SRCSEL_EXEMPT4";
    pub const COUNTERS: &str = "SRCSEL_COUNTERS";
}

/// Names of the program functions in the eBPF object.
pub mod programs {
    pub const SOCK_CREATE: &str = "sock_create";
    pub const CONNECT4: &str = "connect4";
    pub const SENDMSG4: &str = "sendmsg4";
    pub const EGRESS: &str = "count_egress";
    pub const INGRESS: &str = "count_ingress";
}

/// The globals each program set is loaded with: which uplink slot it serves,
/// and whether its sockets are strict (1) or fall back to normal routing (0).
pub const UPLINK_ID_GLOBAL: &str = "UPLINK_ID";
pub const STRICT_GLOBAL: &str = "STRICT";
