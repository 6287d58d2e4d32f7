//! Counters for `srcsel status`: decisions, and bytes told apart by the
//! socket mark (a packet of a nearer assignment to another uplink is not
//! this set's), per uplink and per assigned cgroup.
#![expect(
    deprecated,
    reason = "cgroup local storage: its successor (BPF_MAP_TYPE_CGRP_STORAGE) needs Linux 6.2"
)]
use aya_ebpf::{
    helpers::bpf_sk_fullsock,
    macros::map,
    maps::{PerCpuArray, PerCpuCgroupStorage},
    programs::SkBuffContext,
};
use srcsel_common::{Counters, MAX_UPLINKS, UPLINK_MASK, mark_for};

use crate::uplink;

#[map(name = "SRCSEL_COUNTERS")]
static COUNTERS: PerCpuArray<Counters> = PerCpuArray::pinned(MAX_UPLINKS, 0);

/// The counters of the cgroup this program is attached to: the kernel hands
/// over the attachment's storage, so no lookup and no key to keep current.
/// One map per loaded set (not pinned): it lives as long as the set's
/// programs, a storage as long as its cgroup.
#[map(name = "SRCSEL_ASSIGNED")]
static ASSIGNED: PerCpuCgroupStorage<Counters> = PerCpuCgroupStorage::new();

pub fn add(f: impl Fn(&mut Counters)) {
    if let Some(c) = COUNTERS.get_ptr_mut(uplink::id()) {
        // SAFETY: a per-CPU slot; nothing else writes it while we run.
        f(unsafe { &mut *c });
    }
    // SAFETY: this CPU's copy of the attachment's storage, never null.
    f(unsafe { &mut *ASSIGNED.get_ptr_mut() });
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
        crate::answer::arrived(ctx, full);
    }
}
