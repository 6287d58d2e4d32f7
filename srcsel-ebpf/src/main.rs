//! srcsel's data path: one program set per uplink, attached to the cgroups
//! assigned to that uplink.
//!
//! Every path that is not a srcsel decision returns ALLOW: a bug here must
//! never break sockets that srcsel does not own.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{bpf_sock, bpf_sock_addr},
    helpers::{bpf_bind, bpf_get_netns_cookie, bpf_sk_fullsock},
    macros::{cgroup_skb, cgroup_sock, cgroup_sock_addr, map},
    maps::{Array, LpmTrie, PerCpuArray, lpm_trie::Key},
    programs::{SkBuffContext, SockAddrContext, SockContext},
};
use srcsel_common::{
    Counters, MARK_MASK, MAX_UPLINKS, STRICT_BIT, UPLINK_MASK, UplinkState, mark_for,
};

const ALLOW: i32 = 1;
const DENY: i32 = 0;
const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

/// Which slot of UPLINKS this program set serves; set by the loader.
#[unsafe(no_mangle)]
static UPLINK_ID: u32 = 0;
/// 1: strict (refuse while the uplink is unusable), 0: fall back; set by the loader.
#[unsafe(no_mangle)]
static STRICT: u32 = 0;

fn strict() -> bool {
    unsafe { core::ptr::read_volatile(&STRICT) != 0 }
}

#[map(name = "SRCSEL_UPLINKS")]
static UPLINKS: Array<UplinkState> = Array::pinned(MAX_UPLINKS, 0);

/// Value: the key again (address, prefix length), so userspace can list entries.
#[map(name = "SRCSEL_EXEMPT4")]
static EXEMPT4: LpmTrie<[u8; 4], [u32; 2]> = LpmTrie::pinned(1024, 0);

#[map(name = "SRCSEL_COUNTERS")]
static COUNTERS: PerCpuArray<Counters> = PerCpuArray::pinned(MAX_UPLINKS, 0);

fn count(f: impl FnOnce(&mut Counters)) {
    let id = unsafe { core::ptr::read_volatile(&UPLINK_ID) };
    if let Some(c) = COUNTERS.get_ptr_mut(id) {
        // SAFETY: a per-CPU slot; nothing else writes it while we run.
        f(unsafe { &mut *c });
    }
}

#[repr(C)]
struct SockaddrIn {
    family: u16,
    port: u16,
    addr: u32,
    zero: [u8; 8],
}

fn uplink() -> Option<&'static UplinkState> {
    let id = unsafe { core::ptr::read_volatile(&UPLINK_ID) };
    UPLINKS.get(id).filter(|u| u.mark != 0)
}

/// The uplink, if `ctx` belongs to its network namespace.
fn uplink_here<C: aya_ebpf::EbpfContext>(ctx: &C) -> Option<&'static UplinkState> {
    let u = uplink()?;
    let cookie = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    (u.netns_cookie == cookie).then_some(u)
}

#[cgroup_sock(sock_create)]
pub fn sock_create(ctx: SockContext) -> i32 {
    mark_socket(&ctx);
    ALLOW
}

fn mark_socket(ctx: &SockContext) {
    let sk: *mut bpf_sock = ctx.sock;
    let Some(u) = uplink_here(ctx) else { return };
    let family = unsafe { (*sk).family };
    if family != AF_INET && family != AF_INET6 {
        return;
    }
    // A nearer assigned cgroup's program ran first and already chose.
    let mark = unsafe { (*sk).mark };
    if mark & MARK_MASK != 0 {
        return;
    }
    let strict_bit = if strict() { STRICT_BIT } else { 0 };
    unsafe { (*sk).mark = (mark & !MARK_MASK) | u.mark | strict_bit };
}

/// The uplink if this socket is one this program set decides for: marked with
/// its mark (not a nearer assignment's, not relabelled by the program) and
/// with no source address of its own yet.
fn owned_unbound(ctx: &SockAddrContext) -> Option<&'static UplinkState> {
    let u = uplink_here(ctx)?;
    let sk = unsafe { (*ctx.sock_addr).__bindgen_anon_1.sk };
    if sk.is_null() {
        return None;
    }
    let (mark, src) = unsafe { ((*sk).mark, (*sk).src_ip4) };
    // `curl --interface ADDR` binds with IP_BIND_ADDRESS_NO_PORT: src is set, port
    // is not. bpf_bind would silently re-bind it, so any source means hands off.
    (mark & UPLINK_MASK == u.mark && src == 0).then_some(u)
}

/// Destinations normal routing keeps on a local link (loopback, the LAN).
fn exempt4(dst: u32) -> bool {
    let bytes = dst.to_ne_bytes();
    bytes[0] == 127 || EXEMPT4.get(Key::new(32, bytes)).is_some()
}

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    let Some(u) = owned_unbound(&ctx) else {
        return ALLOW;
    };
    if exempt4(unsafe { (*ctx.sock_addr).user_ip4 }) {
        return ALLOW;
    }
    if !u.usable4() {
        return refuse_or_allow();
    }
    let sa_in = SockaddrIn {
        family: AF_INET as u16,
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
    count(|c| c.connections += 1);
    ALLOW
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    let Some(u) = owned_unbound(&ctx) else {
        return ALLOW;
    };
    let sa = ctx.sock_addr;
    // The program chose a source itself (IP_PKTINFO).
    if unsafe { (*sa).msg_src_ip4 } != 0 || exempt4(unsafe { (*sa).user_ip4 }) {
        return ALLOW;
    }
    if !u.usable4() {
        return refuse_or_allow();
    }
    unsafe { (*sa).msg_src_ip4 = u.addr4 };
    count(|c| c.datagrams += 1);
    ALLOW
}

/// Bytes of this uplink's sockets, told apart by the socket mark, so that
/// nested assignments never count a packet twice.
fn count_bytes(ctx: &SkBuffContext, mark: u32, outbound: bool) {
    // The slot's mark is derived from its id: no map lookup per packet.
    let id = unsafe { core::ptr::read_volatile(&UPLINK_ID) };
    if mark & UPLINK_MASK != mark_for(id) {
        return;
    }
    let len = u64::from(ctx.len());
    count(|c| {
        if outbound {
            c.bytes_out += len
        } else {
            c.bytes_in += len
        }
    });
}

#[cgroup_skb(egress)]
pub fn count_egress(ctx: SkBuffContext) -> i32 {
    // Locally generated packets carry their socket's mark.
    let mark = unsafe { (*ctx.skb.skb).mark };
    count_bytes(&ctx, mark, true);
    ALLOW
}

#[cgroup_skb(ingress)]
pub fn count_ingress(ctx: SkBuffContext) -> i32 {
    let sk = unsafe { (*ctx.skb.skb).__bindgen_anon_2.sk };
    if !sk.is_null() {
        let full = unsafe { bpf_sk_fullsock(sk) };
        if !full.is_null() {
            count_bytes(&ctx, unsafe { (*full).mark }, false);
        }
    }
    ALLOW
}

/// Strict mode fails the call (EPERM) rather than let it leave another way.
fn refuse_or_allow() -> i32 {
    if strict() {
        count(|c| c.refused += 1);
        DENY
    } else {
        ALLOW
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
