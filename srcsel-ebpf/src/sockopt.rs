//! Options that would take a strict socket around its uplink are refused
//! (EPERM) when set: binding it to another device (`SO_BINDTODEVICE`,
//! `SO_BINDTOIFINDEX`, `IP_UNICAST_IF`, `IPV6_UNICAST_IF`), or changing the
//! mark bits srcsel owns (`SO_MARK`). A TCP socket that has not connected
//! ([`uplink::pending`]) keeps its bits too; the device it is bound to is
//! checked at connect, by the assignment that takes it. Fallback sockets
//! may set what they like; the connect and sendmsg hooks then leave them to
//! the program.
use aya_ebpf::programs::SockoptContext;
use srcsel_common::{MARK_MASK, UPLINK_MASK, UplinkState};

use crate::{
    ALLOW, DENY, count,
    uplink::{self, SO_MARK, SOL_SOCKET},
};

const SOL_IP: i32 = 0;
const SOL_IPV6: i32 = 41;
const SO_BINDTODEVICE: i32 = 25;
const SO_BINDTOIFINDEX: i32 = 62;
const IP_UNICAST_IF: i32 = 50;
const IPV6_UNICAST_IF: i32 = 76;

#[inline(always)]
pub fn setsockopt(ctx: &SockoptContext) -> i32 {
    let so = ctx.sockopt;
    let (begin, end) = unsafe {
        (
            (*so).__bindgen_anon_2.optval as usize,
            (*so).__bindgen_anon_3.optval_end as usize,
        )
    };
    let len = unsafe { (*so).optlen };
    // A value longer than the page the kernel copied for us: optlen 0 tells
    // it to use the caller's own buffer (else 6.1 fails the call, EFAULT).
    if len < 0 || len as usize > end - begin {
        unsafe { (*so).optlen = 0 };
        return ALLOW;
    }
    let (level, name) = unsafe { ((*so).level, (*so).optname) };
    // Most options are none of srcsel's business: answer before any lookup.
    let watched = matches!(
        (level, name),
        (SOL_SOCKET, SO_BINDTODEVICE | SO_BINDTOIFINDEX | SO_MARK)
            | (SOL_IP, IP_UNICAST_IF)
            | (SOL_IPV6, IPV6_UNICAST_IF)
    );
    if !watched || !uplink::strict() {
        return ALLOW;
    }
    let Some(u) = uplink::here(ctx) else {
        return ALLOW;
    };
    let sk = unsafe { (*so).__bindgen_anon_1.sk };
    if sk.is_null() {
        return ALLOW;
    }
    let mark = unsafe { (*sk).mark };
    let pending = uplink::pending(sk);
    if mark & UPLINK_MASK != u.mark && !pending {
        return ALLOW;
    }
    let int = || -> Option<u32> {
        (begin + 4 <= end).then(|| unsafe { core::ptr::read_unaligned(begin as *const u32) })
    };
    let allowed = match (level, name) {
        // A socket not connected yet may also take the mark its connect would give it.
        (SOL_SOCKET, SO_MARK) => int().is_none_or(|m| {
            let bits = m & MARK_MASK;
            bits == mark & MARK_MASK || (pending && bits == uplink::assigned(u))
        }),
        // Which uplink's device is right is for the connect to decide: a
        // nearer assignment may take the socket for another uplink.
        _ if pending => true,
        (SOL_SOCKET, SO_BINDTODEVICE) => names_uplink(u, begin, end, len as usize),
        (SOL_SOCKET, SO_BINDTOIFINDEX) | (SOL_IPV6, IPV6_UNICAST_IF) => {
            int().is_none_or(|i| i == 0 || i == u.ifindex)
        }
        // IP_UNICAST_IF takes the index in network byte order.
        (SOL_IP, IP_UNICAST_IF) => int().is_none_or(|i| i == 0 || u32::from_be(i) == u.ifindex),
        _ => true,
    };
    if allowed {
        ALLOW
    } else {
        count::add(|c| c.refused += 1);
        DENY
    }
}

/// Whether the device name at `begin..begin+len` is empty (unbinding) or the
/// uplink's. Names are at most 15 bytes; a NUL may end one early. Unrolled,
/// with one bounds check per byte, as the verifier needs.
#[inline(always)]
fn names_uplink(u: &UplinkState, begin: usize, end: usize, len: usize) -> bool {
    let mut name = [0u8; 16];
    let mut live = true;
    macro_rules! byte {
        ($($i:literal)*) => {$(
            if live && $i < len && begin + $i + 1 <= end {
                let c = unsafe { *((begin + $i) as *const u8) };
                name[$i] = c;
                live = c != 0;
            } else {
                live = false;
            }
        )*};
    }
    byte!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
    let _ = live;
    // SAFETY: both are 16 plain bytes; compared as two words, no memcmp in BPF.
    let (a, b): ([u64; 2], [u64; 2]) =
        unsafe { (core::mem::transmute(name), core::mem::transmute(u.ifname)) };
    name[0] == 0 || a == b
}
