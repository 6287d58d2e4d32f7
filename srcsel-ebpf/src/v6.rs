//! The IPv6 hooks. A v4-mapped destination (`::ffff:a.b.c.d`, Java's
//! default) takes the IPv4 decision and is bound to the mapped form of the
//! uplink's IPv4 address.
use aya_ebpf::programs::SockAddrContext;

use crate::{
    answer::{self, Sending},
    dns,
    steer::{self, Addr, Verdict, mapped, read6, write6},
    uplink, v4,
};

#[repr(C)]
struct SockaddrIn6 {
    family: u16,
    port: u16,
    flowinfo: u32,
    addr: [u32; 4],
    scope_id: u32,
}

/// The socket's own source, in the family of `dst`.
#[inline(always)]
fn source(ctx: &SockAddrContext, dst: Addr) -> Addr {
    let sk = unsafe { (*ctx.sock_addr).__bindgen_anon_1.sk };
    if sk.is_null() {
        return Addr::V6([0; 4]);
    }
    match dst {
        Addr::V4(_) => Addr::V4(unsafe { (*sk).src_ip4 }),
        Addr::V6(_) => Addr::V6(read6(unsafe { &raw const (*sk).src_ip6 })),
    }
}

#[inline(always)]
pub fn connect(ctx: &SockAddrContext) -> i32 {
    if !uplink::claim(ctx) {
        return steer::finish(&steer::cannot_steer(), false);
    }
    let field = unsafe { &raw mut (*ctx.sock_addr).user_ip6 };
    // The redirect keeps the family: the source is the same either way.
    let src = source(ctx, Addr::from6(read6(field)));
    let Some(dst) = destination(ctx, src) else {
        return steer::finish(&Verdict::Deny, false);
    };
    let v = steer::decide(ctx, dst, src);
    if let Verdict::Bind(u) = v {
        let addr = match dst {
            Addr::V4(_) => mapped(u.addr4),
            Addr::V6(_) => u.addr6,
        };
        let sin6 = SockaddrIn6 {
            family: uplink::AF_INET6 as u16,
            port: 0,
            flowinfo: 0,
            addr,
            scope_id: 0,
        };
        if !v4::bind(ctx, &sin6) {
            return steer::finish(&steer::cannot_steer(), false);
        }
    }
    steer::finish(&v, false)
}

#[inline(always)]
pub fn sendmsg(ctx: &SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // The kernel sends v4-mapped datagrams through the IPv4 hook.
    let asked @ Addr::V6(_) = Addr::from6(read6(unsafe { &raw const (*sa).user_ip6 })) else {
        return crate::ALLOW;
    };
    let chosen = read6(unsafe { &raw const (*sa).msg_src_ip6 });
    let src = if chosen != [0; 4] {
        Addr::V6(chosen)
    } else {
        source(ctx, asked)
    };
    let service = answer::sending(ctx, asked);
    if let Sending::Answer(local @ Addr::V6(words)) = service
        && (chosen == [0; 4] || chosen == words)
    {
        write6(unsafe { &raw mut (*sa).msg_src_ip6 }, steer::words(local));
        return crate::ALLOW;
    }
    let Some(dst) = destination(ctx, src) else {
        return steer::finish(&Verdict::Deny, true);
    };
    let v = steer::decide(ctx, dst, src);
    if let Verdict::Bind(u) = v {
        write6(unsafe { &raw mut (*sa).msg_src_ip6 }, u.addr6);
    }
    if let (Sending::Service(key), Verdict::Bind(_) | Verdict::Steered) = (&service, &v) {
        answer::began(key);
    }
    steer::finish(&v, true)
}

/// Where the call sends ([`dns::destination`]).
#[inline(always)]
fn destination(ctx: &SockAddrContext, src: Addr) -> Option<Addr> {
    let field = unsafe { &raw mut (*ctx.sock_addr).user_ip6 };
    dns::destination(ctx, src, true, || Addr::from6(read6(field)))
}

/// An answer to a redirected query comes from the address the socket asked.
#[inline(always)]
pub fn recvmsg(ctx: &SockAddrContext) -> i32 {
    let field = unsafe { &raw mut (*ctx.sock_addr).user_ip6 };
    if let Some(asked) = dns::answered_from(ctx, Addr::from6(read6(field))) {
        write6(field, steer::words(asked));
    }
    crate::ALLOW
}
