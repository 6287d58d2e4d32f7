//! Per-slot map values: what the programs read ([`UplinkState`]), what only
//! userspace keeps ([`UplinkRecord`]), and the counters.

/// `UplinkState::flags` bits.
pub mod flags {
    /// The link is up and has an IPv4 gateway: IPv4 traffic can leave.
    pub const UP4: u32 = 1 << 0;
    /// `addr4` holds the uplink's current IPv4 address.
    pub const HAS_ADDR4: u32 = 1 << 2;
    /// The link is up and has an IPv6 gateway: IPv6 traffic can leave.
    pub const UP6: u32 = 1 << 3;
    /// `addr6` holds the uplink's current IPv6 address.
    pub const HAS_ADDR6: u32 = 1 << 4;
}

/// Live state of one uplink, as the programs read it on every connect/sendmsg.
/// Userspace rewrites it on lease events, so programs never need re-attaching.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UplinkState {
    /// Network namespace the uplink lives in (`SO_NETNS_COOKIE`); the programs
    /// ignore sockets of other namespaces.
    pub netns_cookie: u64,
    /// The socket mark (only bits of [`crate::MARK_MASK`]); 0 for a free slot.
    pub mark: u32,
    pub ifindex: u32,
    /// IPv4 address in network byte order, valid when `flags & HAS_ADDR4`.
    pub addr4: u32,
    pub flags: u32,
    /// IPv6 address in network byte order, valid when `flags & HAS_ADDR6`.
    pub addr6: [u32; 4],
    /// Interface name, NUL-padded: what `SO_BINDTODEVICE` may name.
    pub ifname: [u8; 16],
}

impl UplinkState {
    pub const fn is(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// Whether new IPv4 connections can be bound to this uplink now.
    pub const fn usable4(&self) -> bool {
        self.is(flags::UP4) && self.is(flags::HAS_ADDR4)
    }

    /// Whether new IPv6 connections can be bound to this uplink now.
    pub const fn usable6(&self) -> bool {
        self.is(flags::UP6) && self.is(flags::HAS_ADDR6)
    }
}

/// What userspace keeps about a slot, shared by every srcsel process of the
/// namespace (run, daemon, DHCP hook); the programs never read it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UplinkRecord {
    /// Interface name, NUL-padded; all zero for a free slot.
    pub name: [u8; 16],
    /// The routing table in use.
    pub table: u32,
    /// The gateway in use (network byte order, 0 if none), for `srcsel status`.
    pub gateway4: u32,
    /// The gateway a DHCP client hook reported (`srcsel lease`); 0 if none.
    pub hook_gateway4: u32,
    /// The daemon's health verdicts, kept here so that every srcsel
    /// process's pass steers as the daemon last judged; for a list, also
    /// which members are active ([`health_flags`]).
    pub health: u32,
    /// The IPv6 gateway in use (all zero if none), for `srcsel status`.
    pub gateway6: [u8; 16],
}

/// `UplinkRecord::health` bits: families whose health checks failed, and
/// a list's active members (slot ids, 0 for none).
pub mod health_flags {
    pub const DOWN4: u32 = 1 << 0;
    pub const DOWN6: u32 = 1 << 1;
    pub const ACTIVE4_SHIFT: u32 = 8;
    pub const ACTIVE6_SHIFT: u32 = 16;
    pub const ACTIVE_MASK: u32 = 0xff;
}

/// How many resolvers per family an uplink keeps (as resolv.conf's MAXNS).
pub const MAX_RESOLVERS: usize = 3;

/// `Resolvers::flags` bits.
pub mod dns_flags {
    /// The config keeps the system's resolvers for this uplink
    /// (`system_dns = true`): queries to them are not redirected.
    pub const SYSTEM: u32 = 1 << 0;
    /// Where the IPv4 and IPv6 resolvers come from, a code each (userspace's).
    pub const SOURCE4_SHIFT: u32 = 8;
    pub const SOURCE6_SHIFT: u32 = 16;
}

/// An uplink's DNS resolvers (an array indexed by slot). The programs read
/// `v4`/`v6` and `flags`; the rest is what only userspace keeps, because
/// nothing in the kernel remembers it: a hook's report, router
/// advertisements' RDNSS. Slot 0, which no uplink holds, has the system's
/// resolvers (resolv.conf's `nameserver`s) in `v4`/`v6`: the queries the
/// programs redirect are those sent to these (and to a local stub).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resolvers {
    /// The resolvers in use, network byte order, 0 for none (first ones first).
    pub v4: [u32; MAX_RESOLVERS],
    pub flags: u32,
    /// The same for IPv6 (all zero for none).
    pub v6: [[u32; 4]; MAX_RESOLVERS],
    /// What a DHCP client hook last reported (`srcsel lease`).
    pub hook4: [u32; MAX_RESOLVERS],
    pub _pad: u32,
    /// RDNSS of the uplink's router advertisements, with when each expires
    /// (CLOCK_BOOTTIME, seconds; 0 for none).
    pub ra6: [[u32; 4]; MAX_RESOLVERS],
    pub ra6_until: [u64; MAX_RESOLVERS],
}

/// Key of the redirected-query map: a socket (its cookie) whose query to a
/// system resolver went to `server` instead. The value is the address the
/// program asked (the same words), which its answers are given back from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsKey {
    pub cookie: u64,
    /// `AF_INET` or `AF_INET6` (`server` then holds the IPv4 address in
    /// its last word).
    pub family: u32,
    pub _pad: u32,
    pub server: [u32; 4],
}

/// The last lease a DHCP client hook reported for an interface (a hash map
/// keyed by the NUL-padded name), whether or not srcsel manages it: a report
/// is data, used once something names the interface. The programs never
/// read it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseReport {
    /// The gateway (network byte order, 0: none: the lease ended).
    pub gateway4: u32,
    /// The DNS servers (network byte order, 0 for none).
    pub dns4: [u32; MAX_RESOLVERS],
    /// When it was reported (CLOCK_BOOTTIME, seconds).
    pub at: u64,
}

/// Key of the request map: a datagram that arrived for a UDP service socket
/// (its cookie) from a peer (family, port and address as the hooks carry
/// them: network byte order, an IPv4 address in the first word).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerKey {
    pub cookie: u64,
    /// `AF_INET` or `AF_INET6`.
    pub family: u32,
    /// The peer's port, as `user_port` holds it.
    pub port: u32,
    pub peer: [u32; 4],
}

/// What a service socket's conversation with a peer is: begun by the peer
/// (a request: answers go from `local`) or by the socket itself.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerValue {
    /// The address the request came to (same layout as the key's peer).
    pub local: [u32; 4],
    /// 1: the socket sent to the peer first; its datagrams are answers.
    pub ours: u32,
    pub _pad: u32,
}

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

impl Counters {
    /// Both added up (per-CPU copies, or a cgroup's attach types).
    pub const fn plus(self, o: Counters) -> Counters {
        Counters {
            connections: self.connections + o.connections,
            datagrams: self.datagrams + o.datagrams,
            refused: self.refused + o.refused,
            bytes_out: self.bytes_out + o.bytes_out,
            bytes_in: self.bytes_in + o.bytes_in,
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] integers with explicit padding.
    unsafe impl aya::Pod for super::UplinkState {}
    unsafe impl aya::Pod for super::UplinkRecord {}
    unsafe impl aya::Pod for super::Counters {}
    unsafe impl aya::Pod for super::Resolvers {}
    unsafe impl aya::Pod for super::DnsKey {}
    unsafe impl aya::Pod for super::LeaseReport {}
    unsafe impl aya::Pod for super::PeerKey {}
    unsafe impl aya::Pod for super::PeerValue {}
}
