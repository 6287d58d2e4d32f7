//! A listening socket answers as the host does: the connections it accepts
//! are conversations its peers began, not the program's, so their answers
//! must leave through the link and from the address they came in on. The
//! listener's mark is taken off when it starts listening; the requests and
//! children it makes inherit no mark, and the routing rules then take each
//! answer by its source: an uplink's address through the uplink (its `from`
//! rule), any other through normal routing, whatever the listener's
//! assignment, mode or slot order. Costs one call per `listen()`, none per
//! connection.
use aya_ebpf::{bindings::BPF_SOCK_OPS_TCP_LISTEN_CB, programs::SockOpsContext};
use srcsel_common::UPLINK_MASK;

use crate::uplink;

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
    uplink::release(ctx, mark);
}
