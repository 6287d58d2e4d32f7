//! The socket-mark bits srcsel owns. Other users of the mark (Kubernetes,
//! Tailscale, WireGuard, nftables rules) keep the rest.

pub const MARK_MASK: u32 = 0x7f00_0000;
/// The part of the mark that names the uplink.
pub const UPLINK_MASK: u32 = 0x3f00_0000;
/// Set on sockets of strict assignments: routing rules stop them when the
/// uplink has no route, instead of letting them fall through to the main table.
pub const STRICT_BIT: u32 = 0x4000_0000;
/// A TCP stream of an assigned cgroup that has not connected: the strict
/// bit without an uplink. No routing rule of srcsel's takes it (it routes as
/// unassigned). The nearest assignment's connect program gives the socket
/// its uplink's mark; a listener keeps this one, and so do the connections
/// it accepts, which answer by their address.
pub const PENDING: u32 = STRICT_BIT;
const MARK_SHIFT: u32 = 24;

/// The socket mark of uplink `id` (1..MAX_UPLINKS), without the strict bit.
pub const fn mark_for(id: u32) -> u32 {
    (id << MARK_SHIFT) & UPLINK_MASK
}
