//! IPv4 decisions: bind an unbound connecting socket to the uplink's address
//! (`bpf_bind`, port 0), and give unconnected UDP its source; leave loopback
//! and LAN destinations to normal routing; refuse in strict mode while the
//! uplink is unusable.
use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::bpf_bind,
    macros::map,
    maps::{LpmTrie, lpm_trie::Key},
    programs::SockAddrContext,
};
use srcsel_common::{MAX_EXEMPT4, UPLINK_MASK, UplinkState};

use crate::{ALLOW, DENY, count, uplink};

/// Value: the key again (address, prefix length), so userspace can list entries.
#[map(name = "SRCSEL_EXEMPT4")]
static EXEMPT4: LpmTrie<[u8; 4], [u32; 2]> = LpmTrie::pinned(MAX_EXEMPT4, 0);

#[repr(C)]
struct SockaddrIn {
    family: u16,
    port: u16,
    addr: u32,
    zero: [u8; 8],
}

/// A socket this program set decides for: marked with its uplink's mark (not
/// a nearer assignment's, not relabelled by the program), with no source
/// address of its own yet.
struct Owned {
    uplink: &'static UplinkState,
    /// Bound to the wildcard address with a port already (`bind(0.0.0.0:0)`,
    /// as busybox nslookup does): bpf_bind cannot bind it again, but the
    /// mark routes it through the uplink's table, whose routes carry the
    /// uplink's address as their preferred source.
    has_port: bool,
}

fn owned_unbound(ctx: &SockAddrContext) -> Option<Owned> {
    let u = uplink::here(ctx)?;
    let sk = unsafe { (*ctx.sock_addr).__bindgen_anon_1.sk };
    if sk.is_null() {
        return None;
    }
    let (mark, src, port) = unsafe { ((*sk).mark, (*sk).src_ip4, (*sk).src_port) };
    // `curl --interface ADDR` binds with IP_BIND_ADDRESS_NO_PORT: src is set, port
    // is not. bpf_bind would silently re-bind it, so any source means hands off.
    (mark & UPLINK_MASK == u.mark && src == 0).then_some(Owned {
        uplink: u,
        has_port: port != 0,
    })
}

/// Destinations normal routing keeps on a local link (loopback, the LAN).
fn exempt(dst: u32) -> bool {
    let bytes = dst.to_ne_bytes();
    bytes[0] == 127 || EXEMPT4.get(Key::new(32, bytes)).is_some()
}

pub fn connect(ctx: &SockAddrContext) -> i32 {
    let Some(Owned {
        uplink: u,
        has_port,
    }) = owned_unbound(ctx)
    else {
        return ALLOW;
    };
    if exempt(unsafe { (*ctx.sock_addr).user_ip4 }) {
        return ALLOW;
    }
    if !u.usable4() {
        return refuse_or_allow();
    }
    if has_port {
        count::add(|c| c.connections += 1);
        return ALLOW;
    }
    let sa_in = SockaddrIn {
        family: uplink::AF_INET as u16,
        port: 0,
        addr: u.addr4,
        zero: [0; 8],
    };
    let ret = unsafe {
        bpf_bind(
            ctx.sock_addr as *mut bpf_sock_addr,
            &sa_in as *const SockaddrIn as *mut _,
            core::mem::size_of::<SockaddrIn>() as i32,
        )
    };
    // The address can vanish between the lease event and this connect.
    if ret != 0 {
        return refuse_or_allow();
    }
    count::add(|c| c.connections += 1);
    ALLOW
}

pub fn sendmsg(ctx: &SockAddrContext) -> i32 {
    let Some(Owned { uplink: u, .. }) = owned_unbound(ctx) else {
        return ALLOW;
    };
    let sa = ctx.sock_addr;
    // The program chose a source itself (IP_PKTINFO).
    if unsafe { (*sa).msg_src_ip4 } != 0 || exempt(unsafe { (*sa).user_ip4 }) {
        return ALLOW;
    }
    if !u.usable4() {
        return refuse_or_allow();
    }
    unsafe { (*sa).msg_src_ip4 = u.addr4 };
    count::add(|c| c.datagrams += 1);
    ALLOW
}

/// Strict mode fails the call (EPERM) rather than let it leave another way.
fn refuse_or_allow() -> i32 {
    if uplink::strict() {
        count::add(|c| c.refused += 1);
        DENY
    } else {
        ALLOW
    }
}
