//! srcsel's data path: one program set per uplink and mode, attached to the
//! cgroups assigned to that uplink. Each entry point is a thin shim; the
//! decisions live in the modules.
//!
//! Every path that is not a srcsel decision returns ALLOW: a bug here must
//! never break sockets that srcsel does not own.
#![no_std]
#![no_main]

mod answer;
mod count;
mod dns;
mod sockopt;
mod steer;
mod uplink;
mod v4;
mod v6;

use aya_ebpf::{
    macros::{cgroup_skb, cgroup_sock, cgroup_sock_addr, cgroup_sockopt},
    programs::{SkBuffContext, SockAddrContext, SockContext, SockoptContext},
};

const ALLOW: i32 = 1;
const DENY: i32 = 0;

#[cgroup_sock(sock_create)]
pub fn sock_create(ctx: SockContext) -> i32 {
    if uplink::mark_socket(&ctx) {
        ALLOW
    } else {
        DENY
    }
}

#[cgroup_sock(post_bind4)]
pub fn post_bind4(ctx: SockContext) -> i32 {
    answer::bound(&ctx);
    ALLOW
}

#[cgroup_sock(post_bind6)]
pub fn post_bind6(ctx: SockContext) -> i32 {
    answer::bound(&ctx);
    ALLOW
}

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    v4::connect(&ctx)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    v4::sendmsg(&ctx)
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    v6::connect(&ctx)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    v6::sendmsg(&ctx)
}

#[cgroup_sock_addr(recvmsg4)]
pub fn recvmsg4(ctx: SockAddrContext) -> i32 {
    v4::recvmsg(&ctx)
}

#[cgroup_sock_addr(recvmsg6)]
pub fn recvmsg6(ctx: SockAddrContext) -> i32 {
    v6::recvmsg(&ctx)
}

#[cgroup_sockopt(setsockopt)]
pub fn setsockopt(ctx: SockoptContext) -> i32 {
    sockopt::setsockopt(&ctx)
}

#[cgroup_skb(egress)]
pub fn count_egress(ctx: SkBuffContext) -> i32 {
    count::egress(&ctx);
    ALLOW
}

#[cgroup_skb(ingress)]
pub fn count_ingress(ctx: SkBuffContext) -> i32 {
    count::ingress(&ctx);
    ALLOW
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
