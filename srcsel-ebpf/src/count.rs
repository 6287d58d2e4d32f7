//! Per-uplink counters for `srcsel status`: decisions, and bytes told apart
//! by the socket mark so that nested assignments never count a packet twice.
use aya_ebpf::{helpers::bpf_sk_fullsock, macros::map, maps::PerCpuArray, programs::SkBuffContext};
use srcsel_common::{Counters, MAX_UPLINKS, UPLINK_MASK, mark_for};

use crate::uplink;

#[map(name = "SRCSEL_COUNTERS")]
static COUNTERS: PerCpuArray<Counters> = PerCpuArray::pinned(MAX_UPLINKS, 0);

pub fn add(f: impl FnOnce(&mut Counters)) {
    if let Some(c) = COUNTERS.get_ptr_mut(uplink::id()) {
        // SAFETY: a per-CPU slot; nothing else writes it while we run.
        f(unsafe { &mut *c });
    }
}

fn bytes(ctx: &SkBuffContext, mark: u32, outbound: bool) {
    // The slot's mark is derived from its id: no map lookup per packet.
    if mark & UPLINK_MASK != mark_for(uplink::id()) {
        return;
    }
    let len = u64::from(ctx.len());
    add(|c| {
        if outbound {
            c.bytes_out += len
        } else {
            c.bytes_in += len
        }
    });
}

/// Locally generated packets carry their socket's mark.
pub fn egress(ctx: &SkBuffContext) {
    bytes(ctx, unsafe { (*ctx.skb.skb).mark }, true);
}

pub fn ingress(ctx: &SkBuffContext) {
    let sk = unsafe { (*ctx.skb.skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return;
    }
    let full = unsafe { bpf_sk_fullsock(sk) };
    if !full.is_null() {
        bytes(ctx, unsafe { (*full).mark }, false);
    }
}
