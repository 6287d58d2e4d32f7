//! A listening socket answers as the host does: the connections it accepts
//! are conversations its peers began, not the program's, so their answers
//! must leave through the link and from the address they came in on. The
//! listener's mark is taken off when it starts listening; the requests and
//! children it makes inherit no mark, and the routing rules then take each
//! answer by its source: an uplink's address through the uplink (its `from`
//! rule), any other through normal routing, whatever the listener's
//! assignment, mode or slot order. Costs one call per `listen()`, none per
//! connection.
use aya_ebpf::{
    bindings::BPF_SOCK_OPS_TCP_LISTEN_CB, helpers::bpf_setsockopt, programs::SockOpsContext,
};
use srcsel_common::{MARK_MASK, UPLINK_MASK};

use crate::uplink;

const SOL_SOCKET: i32 = 1;
const SO_MARK: i32 = 36;

#[inline(always)]
pub fn sock_ops(ctx: &SockOpsContext) {
    if ctx.op() != BPF_SOCK_OPS_TCP_LISTEN_CB {
        return;
    }
    let Some(u) = uplink::here(ctx) else { return };
    let sk = unsafe { (*ctx.ops).__bindgen_anon_2.sk };
    if sk.is_null() {
        return;
    }
    let mark = unsafe { (*sk).mark };
    // A nearer assignment's socket is its own program's to release.
    if mark & UPLINK_MASK != u.mark {
        return;
    }
    let mut m = mark & !MARK_MASK;
    unsafe {
        bpf_setsockopt(
            ctx.ops.cast(),
            SOL_SOCKET,
            SO_MARK,
            (&raw mut m).cast(),
            size_of::<u32>() as i32,
        )
    };
}
