//! The IPv6 hooks. A v4-mapped destination (`::ffff:a.b.c.d`, Java's
//! default) takes the IPv4 decision and is bound to the mapped form of the
//! uplink's IPv4 address.
use aya_ebpf::programs::SockAddrContext;

use crate::{
    dns::{self, Query},
    steer::{self, Addr, Verdict},
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

/// Reads an address field of the context word by word: the verifier allows
/// only whole-field accesses there, never a byte-wise copy.
#[inline(always)]
fn read6(field: *const [u32; 4]) -> [u32; 4] {
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
fn write6(field: *mut [u32; 4], value: [u32; 4]) {
    let w = field as *mut u32;
    unsafe {
        w.write_volatile(value[0]);
        w.add(1).write_volatile(value[1]);
        w.add(2).write_volatile(value[2]);
        w.add(3).write_volatile(value[3]);
    }
}

#[inline(always)]
fn mapped(addr4: u32) -> [u32; 4] {
    [0, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff]), addr4]
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
    let Some(dst) = destination(ctx) else {
        return steer::finish(&Verdict::Deny, false);
    };
    let v = steer::decide(ctx, dst, source(ctx, dst));
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
            return steer::finish(&steer::refuse_after_bind(), false);
        }
    }
    steer::finish(&v, false)
}

#[inline(always)]
pub fn sendmsg(ctx: &SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // The kernel sends v4-mapped datagrams through the IPv4 hook.
    let Addr::V6(_) = Addr::from6(read6(unsafe { &raw const (*sa).user_ip6 })) else {
        return crate::ALLOW;
    };
    let Some(dst) = destination(ctx) else {
        return steer::finish(&Verdict::Deny, true);
    };
    let chosen = read6(unsafe { &raw const (*sa).msg_src_ip6 });
    let src = if chosen != [0; 4] {
        Addr::V6(chosen)
    } else {
        source(ctx, dst)
    };
    let v = steer::decide(ctx, dst, src);
    if let Verdict::Bind(u) = v {
        write6(unsafe { &raw mut (*sa).msg_src_ip6 }, u.addr6);
    }
    steer::finish(&v, true)
}

/// Where the call sends: the address asked, or the uplink's resolver in
/// place of a system one (written into the call); None: refused.
#[inline(always)]
fn destination(ctx: &SockAddrContext) -> Option<Addr> {
    let field = unsafe { &raw mut (*ctx.sock_addr).user_ip6 };
    let asked = Addr::from6(read6(field));
    match dns::redirect(ctx, asked) {
        Query::NotOurs => Some(asked),
        Query::To(to) => {
            write6(field, words(to));
            Some(to)
        }
        Query::Refuse => None,
    }
}

/// An address as an AF_INET6 socket carries it.
#[inline(always)]
fn words(a: Addr) -> [u32; 4] {
    match a {
        Addr::V4(a) => mapped(a),
        Addr::V6(a) => a,
    }
}

/// An answer to a redirected query comes from the address the socket asked.
#[inline(always)]
pub fn recvmsg(ctx: &SockAddrContext) -> i32 {
    let field = unsafe { &raw mut (*ctx.sock_addr).user_ip6 };
    if let Some(asked) = dns::answered_from(ctx, Addr::from6(read6(field))) {
        write6(field, words(asked));
    }
    crate::ALLOW
}
