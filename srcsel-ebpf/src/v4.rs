//! The IPv4 hooks (also AF_INET6 sockets sending to v4-mapped addresses,
//! which the kernel routes through udp_sendmsg).
use aya_ebpf::{bindings::bpf_sock_addr, helpers::bpf_bind, programs::SockAddrContext};

use crate::{
    answer::{self, Sending},
    dns,
    steer::{self, Addr, Verdict},
    uplink,
};

#[repr(C)]
struct SockaddrIn {
    family: u16,
    port: u16,
    addr: u32,
    zero: [u8; 8],
}

#[inline(always)]
pub fn connect(ctx: &SockAddrContext) -> i32 {
    if !uplink::claim(ctx) {
        return steer::finish(&steer::cannot_steer(), false);
    }
    let sa = ctx.sock_addr;
    let sk = unsafe { (*sa).__bindgen_anon_1.sk };
    let src = if sk.is_null() {
        0
    } else {
        unsafe { (*sk).src_ip4 }
    };
    let Some(dst) = destination(ctx, Addr::V4(src)) else {
        return steer::finish(&Verdict::Deny, false);
    };
    let v = steer::decide(ctx, dst, Addr::V4(src));
    if let Verdict::Bind(u) = v {
        let sin = SockaddrIn {
            family: uplink::AF_INET as u16,
            port: 0,
            addr: u.addr4,
            zero: [0; 8],
        };
        // The address can vanish between the lease event and this connect.
        if !bind(ctx, &sin) {
            return steer::finish(&steer::cannot_steer(), false);
        }
    }
    steer::finish(&v, false)
}

#[inline(always)]
pub fn sendmsg(ctx: &SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    let sk = unsafe { (*sa).__bindgen_anon_1.sk };
    // The program chose a source for this datagram itself (IP_PKTINFO), or bound one.
    let mut src = unsafe { (*sa).msg_src_ip4 };
    if src == 0 && !sk.is_null() {
        src = unsafe { (*sk).src_ip4 };
    }
    let service = answer::sending(ctx, Addr::V4(unsafe { (*sa).user_ip4 }));
    if let Sending::Answer(Addr::V4(local)) = service
        && (src == 0 || src == local)
    {
        unsafe { (*sa).msg_src_ip4 = local };
        return crate::ALLOW;
    }
    let Some(dst) = destination(ctx, Addr::V4(src)) else {
        return steer::finish(&Verdict::Deny, true);
    };
    let v = steer::decide(ctx, dst, Addr::V4(src));
    if let Verdict::Bind(u) = v {
        unsafe { (*sa).msg_src_ip4 = u.addr4 };
    }
    if let (Sending::Service(key), Verdict::Bind(_) | Verdict::Steered) = (&service, &v) {
        answer::began(key);
    }
    steer::finish(&v, true)
}

/// Where the call sends ([`dns::destination`]).
#[inline(always)]
fn destination(ctx: &SockAddrContext, src: Addr) -> Option<Addr> {
    let sa = ctx.sock_addr;
    dns::destination(ctx, src, false, || Addr::V4(unsafe { (*sa).user_ip4 }))
}

/// An answer to a redirected query comes from the address the socket asked.
#[inline(always)]
pub fn recvmsg(ctx: &SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    if let Some(Addr::V4(a)) = dns::answered_from(ctx, Addr::V4(unsafe { (*sa).user_ip4 })) {
        unsafe { (*sa).user_ip4 = a };
    }
    crate::ALLOW
}

/// `bpf_bind` with port 0: the address only, the port at connect time.
#[inline(always)]
pub fn bind<T>(ctx: &SockAddrContext, sa: &T) -> bool {
    let ret = unsafe {
        bpf_bind(
            ctx.sock_addr as *mut bpf_sock_addr,
            sa as *const T as *mut _,
            core::mem::size_of::<T>() as i32,
        )
    };
    ret == 0
}
