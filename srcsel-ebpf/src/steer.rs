//! The decision every connect and unconnected send of an assigned socket
//! goes through, for both families: leave loopback and LAN destinations to
//! normal routing; bind an unbound socket to the uplink's address of the
//! destination's family; refuse in strict mode what would leave another way
//! (the uplink can't carry it, or the program bound the socket to another
//! device or address); in fallback mode, hand such a socket back to the
//! program: its uplink mark is cleared, so normal routing (and the other
//! uplink's `from` rule) takes it where the program bound it.
use aya_ebpf::{
    macros::map,
    maps::{LpmTrie, lpm_trie::Key},
    programs::SockAddrContext,
};
use srcsel_common::{MAX_EXEMPT4, MAX_EXEMPT6, UplinkState};

use crate::{
    count,
    uplink::{self, Owned},
};

/// Values: the key again (address, prefix length), so userspace can list entries.
#[map(name = "SRCSEL_EXEMPT4")]
static EXEMPT4: LpmTrie<[u8; 4], [u32; 2]> = LpmTrie::pinned(MAX_EXEMPT4, 0);
#[map(name = "SRCSEL_EXEMPT6")]
static EXEMPT6: LpmTrie<[u8; 16], [u32; 5]> = LpmTrie::pinned(MAX_EXEMPT6, 0);

/// An address as the hooks carry it (network byte order); all zero: none.
#[derive(Clone, Copy)]
pub enum Addr {
    V4(u32),
    V6([u32; 4]),
}

/// `::ffff:0:0/96` as the hooks see its words.
const MAPPED: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

impl Addr {
    /// An IPv6 address; a v4-mapped one (`::ffff:a.b.c.d`, an AF_INET6
    /// socket reaching IPv4) is the IPv4 address it maps.
    #[inline(always)]
    pub fn from6(a: [u32; 4]) -> Self {
        if a[0] == 0 && a[1] == 0 && a[2] == MAPPED {
            Addr::V4(a[3])
        } else {
            Addr::V6(a)
        }
    }

    #[inline(always)]
    fn is_set(self) -> bool {
        match self {
            Addr::V4(a) => a != 0,
            Addr::V6(a) => a != [0; 4],
        }
    }

    /// Whether it is the uplink's current address of its family.
    #[inline(always)]
    fn is_uplinks(self, u: &UplinkState) -> bool {
        match self {
            Addr::V4(a) => a == u.addr4,
            Addr::V6(a) => a == u.addr6,
        }
    }

    /// Whether the uplink can carry traffic of this address's family now.
    #[inline(always)]
    pub fn usable(self, u: &UplinkState) -> bool {
        match self {
            Addr::V4(_) => u.usable4(),
            Addr::V6(_) => u.usable6(),
        }
    }

    /// Destinations normal routing keeps local: loopback, link-local,
    /// multicast, the unspecified address, and the main table's LAN prefixes.
    #[inline(always)]
    pub fn exempt(self) -> bool {
        match self {
            Addr::V4(a) => {
                let b = a.to_ne_bytes();
                b[0] == 127 || EXEMPT4.get(Key::new(32, b)).is_some()
            }
            Addr::V6(a) => {
                let b0 = a[0].to_ne_bytes();
                let loopback = a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == 1u32.to_be();
                let link_local = b0[0] == 0xfe && b0[1] & 0xc0 == 0x80;
                // SAFETY: the same 16 bytes, as the trie's key wants them.
                let b = unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(a) };
                a == [0; 4]
                    || loopback
                    || link_local
                    || b0[0] == 0xff
                    || EXEMPT6.get(Key::new(128, b)).is_some()
            }
        }
    }
}

/// Reads an address field of the context word by word: the verifier allows
/// only whole-field accesses there, never a byte-wise copy.
#[inline(always)]
pub fn read6(field: *const [u32; 4]) -> [u32; 4] {
    let w = field as *const u32;
    unsafe {
        [
            w.read_volatile(),
            w.add(1).read_volatile(),
            w.add(2).read_volatile(),
            w.add(3).read_volatile(),
        ]
    }
}

#[inline(always)]
pub fn write6(field: *mut [u32; 4], value: [u32; 4]) {
    let w = field as *mut u32;
    unsafe {
        w.write_volatile(value[0]);
        w.add(1).write_volatile(value[1]);
        w.add(2).write_volatile(value[2]);
        w.add(3).write_volatile(value[3]);
    }
}

#[inline(always)]
pub fn mapped(addr4: u32) -> [u32; 4] {
    [0, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff]), addr4]
}

/// An address as an AF_INET6 socket carries it.
#[inline(always)]
pub fn words(a: Addr) -> [u32; 4] {
    match a {
        Addr::V4(a) => mapped(a),
        Addr::V6(a) => a,
    }
}

pub enum Verdict {
    /// Not srcsel's to decide, or let through as it is.
    Allow,
    /// Let through, and counted as steered: the routing rules take it
    /// through the uplink's table (its source is the uplink's already, or it
    /// is bound to the wildcard with a port and the table's routes give the
    /// uplink's source, as for busybox nslookup's `bind(0.0.0.0:0)`).
    Steered,
    /// Give it the uplink's source address of the destination's family.
    Bind(&'static UplinkState),
    /// Refused (EPERM); counted.
    Deny,
}

/// The verdict for a socket of this program set's uplink sending to `dst`
/// with source `src` (the socket's, or the one the program chose for this
/// datagram): none, the uplink's, or another.
#[inline(always)]
pub fn decide(ctx: &SockAddrContext, dst: Addr, src: Addr) -> Verdict {
    // Loopback and the LAN first: the cheapest answer, and the commonest.
    if dst.exempt() {
        return Verdict::Allow;
    }
    let Some(Owned {
        uplink: u,
        mark,
        dev,
        port,
    }) = uplink::owned(ctx)
    else {
        return Verdict::Allow;
    };
    // Binding it would pair one uplink's address with another's device.
    if bound_elsewhere(u, dev, src) {
        if !uplink::strict() {
            uplink::release(ctx, mark);
        }
        return uplink::strict_or(Verdict::Deny, Verdict::Allow);
    }
    if !dst.usable(u) {
        return uplink::strict_or(Verdict::Deny, Verdict::Allow);
    }
    if src.is_set() || port != 0 {
        return Verdict::Steered;
    }
    Verdict::Bind(u)
}

/// Whether a socket of uplink `u` is bound to another device (`dev`), or
/// sends from `src`, an address that is not the uplink's.
#[inline(always)]
pub fn bound_elsewhere(u: &UplinkState, dev: u32, src: Addr) -> bool {
    (dev != 0 && dev != u.ifindex) || (src.is_set() && !src.is_uplinks(u))
}

/// The hook's return value for a verdict that needs no binding, and the count.
#[inline(always)]
pub fn finish(v: &Verdict, datagram: bool) -> i32 {
    match v {
        Verdict::Deny => {
            count::add(|c| c.refused += 1);
            crate::DENY
        }
        Verdict::Steered | Verdict::Bind(_) => {
            count::add(|c| {
                if datagram {
                    c.datagrams += 1
                } else {
                    c.connections += 1
                }
            });
            crate::ALLOW
        }
        Verdict::Allow => crate::ALLOW,
    }
}

/// The verdict when the hook could not do what steering needs: bind the
/// uplink's address (it went away between the address event and this
/// call), or give a TCP socket the uplink's mark ([`uplink::claim`]; it
/// would route as unassigned).
#[inline(always)]
pub fn cannot_steer() -> Verdict {
    uplink::strict_or(Verdict::Deny, Verdict::Allow)
}
