//! Answers leave the way the question came, for UDP services: a datagram
//! that arrives for a UDP socket its program bound itself (a service) from
//! a peer it did not write to first is a request, recorded with the
//! address it came to; the socket's datagrams to that peer are answers,
//! sent from that address, and the routing rules take each through its
//! own link, whatever the socket's uplink, mode or slot. What the program
//! begins (it writes first) is steered as before. Other sockets pay one
//! lookup per unconnected datagram; services one more.
use aya_ebpf::{
    bindings::bpf_sock,
    helpers::{bpf_get_socket_cookie, bpf_skb_load_bytes},
    macros::map,
    maps::LruHashMap,
    programs::{SkBuffContext, SockAddrContext, SockContext},
};
use srcsel_common::{MAX_PEERS, MAX_SERVICES, PeerKey, PeerValue};

use crate::{
    steer::Addr,
    uplink::{self, AF_INET, AF_INET6},
};

#[map(name = "SRCSEL_SERVICES")]
static SERVICES: LruHashMap<u64, u32> = LruHashMap::pinned(MAX_SERVICES, 0);
#[map(name = "SRCSEL_PEERS")]
static PEERS: LruHashMap<PeerKey, PeerValue> = LruHashMap::pinned(MAX_PEERS, 0);

const IPPROTO_UDP: u32 = 17;
const ETH_P_IP: u32 = 0x0800;
const ETH_P_IPV6: u32 = 0x86dd;

/// post_bind: a UDP socket its program bound in an assigned cgroup: a
/// service. (post_bind may not read the mark; which assignment's it is
/// does not matter here: answers go by the address asked.)
#[inline(always)]
pub fn bound(ctx: &SockContext) {
    let sk: *mut bpf_sock = ctx.sock;
    if uplink::here(ctx).is_none() || unsafe { (*sk).protocol } != IPPROTO_UDP {
        return;
    }
    let cookie = unsafe { bpf_get_socket_cookie(sk.cast()) };
    let _ = SERVICES.insert(&cookie, &1, 0);
}

/// ingress: a datagram for a service socket (`sk`, a full socket) from a
/// peer it did not write to first: a request.
#[inline(always)]
pub fn arrived(ctx: &SkBuffContext, sk: *mut bpf_sock) {
    if unsafe { (*sk).protocol } != IPPROTO_UDP {
        return;
    }
    let cookie = unsafe { bpf_get_socket_cookie(ctx.skb.skb.cast()) };
    if unsafe { SERVICES.get(&cookie) }.is_none() {
        return;
    }
    let Some((family, peer, port, local)) = headers(ctx) else {
        return;
    };
    let key = PeerKey {
        cookie,
        family,
        port,
        peer,
    };
    if unsafe { PEERS.get(&key) }.is_some_and(|v| v.ours != 0) {
        return;
    }
    let value = PeerValue {
        local,
        ours: 0,
        _pad: 0,
    };
    let _ = PEERS.insert(&key, &value, 0);
}

/// The sender's address and port and the address it sent to, from the IP
/// and UDP headers (IPv6 without extension headers).
#[inline(always)]
fn headers(ctx: &SkBuffContext) -> Option<(u32, [u32; 4], u32, [u32; 4])> {
    let proto = u32::from(u16::from_be(unsafe { (*ctx.skb.skb).protocol } as u16));
    let mut h = [0u32; 10];
    if proto == ETH_P_IP {
        load(ctx, 0, &mut h[..5])?;
        let b = h[0].to_ne_bytes();
        let ihl = u32::from(b[0] & 0x0f) * 4;
        if h[2].to_ne_bytes()[1] != IPPROTO_UDP as u8 || ihl < 20 {
            return None;
        }
        let port = port_at(ctx, ihl)?;
        return Some((AF_INET, [h[3], 0, 0, 0], port, [h[4], 0, 0, 0]));
    }
    if proto == ETH_P_IPV6 {
        load(ctx, 0, &mut h)?;
        if h[1].to_ne_bytes()[2] != IPPROTO_UDP as u8 {
            return None;
        }
        let port = port_at(ctx, 40)?;
        let (src, dst) = ([h[2], h[3], h[4], h[5]], [h[6], h[7], h[8], h[9]]);
        return Some((AF_INET6, src, port, dst));
    }
    None
}

#[inline(always)]
fn load(ctx: &SkBuffContext, offset: u32, to: &mut [u32]) -> Option<()> {
    let len = (to.len() * 4) as u32;
    let ret =
        unsafe { bpf_skb_load_bytes(ctx.skb.skb.cast(), offset, to.as_mut_ptr().cast(), len) };
    (ret == 0).then_some(())
}

/// The UDP source port at `offset`, as `user_port` holds a port.
#[inline(always)]
fn port_at(ctx: &SkBuffContext, offset: u32) -> Option<u32> {
    let mut p = [0u8; 2];
    let ret = unsafe { bpf_skb_load_bytes(ctx.skb.skb.cast(), offset, p.as_mut_ptr().cast(), 2) };
    (ret == 0).then(|| u32::from(u16::from_ne_bytes(p)))
}

/// What a datagram of `ctx` to `dst` is, for the service logic.
pub enum Sending {
    /// Not a service's socket, or a service writing again to a peer it
    /// wrote to first: recorded already (the lookup kept the record fresh),
    /// so a flow of datagrams pays no map update per datagram.
    Other,
    /// A service writing to a peer that asked: send from `local`.
    Answer(Addr),
    /// A service writing first ([`began`] records it).
    Service(PeerKey),
}

/// sendmsg: whether the datagram answers a recorded request.
#[inline(always)]
pub fn sending(ctx: &SockAddrContext, dst: Addr) -> Sending {
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    if unsafe { SERVICES.get(&cookie) }.is_none() {
        return Sending::Other;
    }
    let (family, peer) = match dst {
        Addr::V4(a) => (AF_INET, [a, 0, 0, 0]),
        Addr::V6(a) => (AF_INET6, a),
    };
    let key = PeerKey {
        cookie,
        family,
        port: unsafe { (*ctx.sock_addr).user_port },
        peer,
    };
    match unsafe { PEERS.get(&key) } {
        Some(v) if v.ours == 0 => Sending::Answer(match dst {
            Addr::V4(_) => Addr::V4(v.local[0]),
            Addr::V6(_) => Addr::V6(v.local),
        }),
        Some(_) => Sending::Other,
        None => Sending::Service(key),
    }
}

/// sendmsg: a service wrote to a peer first: what comes back is no request.
#[inline(always)]
pub fn began(key: &PeerKey) {
    let value = PeerValue {
        local: [0; 4],
        ours: 1,
        _pad: 0,
    };
    let _ = PEERS.insert(key, &value, 0);
}
