//! DNS follows the uplink: an assigned socket's query to one of the
//! system's resolvers (resolv.conf's, a local stub, or any on a LAN) goes
//! to the uplink's resolver instead, rewritten in connect or sendmsg as
//! socket-level load balancers do; its answers' source is given back in
//! recvmsg, so every resolver library accepts them. Queries to a resolver
//! on the internet are the program's own choice and are left alone.
use aya_ebpf::{
    helpers::bpf_get_socket_cookie,
    macros::map,
    maps::{Array, LruHashMap},
    programs::SockAddrContext,
};
use srcsel_common::{DnsKey, MAX_DNS_QUERIES, MAX_UPLINKS, Resolvers, dns_flags};

use crate::{
    steer::{self, Addr, words, write6},
    uplink::{self, AF_INET, AF_INET6, Owned},
};

/// Per slot; slot 0 holds the system's resolvers.
#[map(name = "SRCSEL_DNS")]
static DNS: Array<Resolvers> = Array::pinned(MAX_UPLINKS, 0);

#[map(name = "SRCSEL_DNS_QUERIES")]
static QUERIES: LruHashMap<DnsKey, [u32; 4]> = LruHashMap::pinned(MAX_DNS_QUERIES, 0);

/// Port 53 as the hooks carry it: network byte order in the low 16 bits.
const DNS_PORT: u32 = 53u16.to_be() as u32;

/// Fieldless on purpose: an enum carrying an address here made LLVM merge
/// paths through a register left unset on one of them, which the verifier
/// refuses (`R3 !read_ok`). The new destination is read back from the call.
pub enum Query {
    /// Not a query to a system resolver from a socket of this uplink.
    Keep,
    /// Sent to the uplink's resolver instead (written into the call).
    Rewritten,
    /// Strict, and the uplink can't carry it or knows no resolver for it.
    Refuse,
}

/// Where a socket's packet to `dst` (the hook's port) from `src` (its
/// source, or none) goes; `six`: the call is an AF_INET6 socket's.
#[inline(always)]
pub fn redirect(ctx: &SockAddrContext, dst: Addr, src: Addr, six: bool) -> Query {
    let sa = ctx.sock_addr;
    if unsafe { (*sa).user_port } != DNS_PORT {
        return Query::Keep;
    }
    let Some(index) = system_resolver(dst) else {
        return Query::Keep;
    };
    let Some(Owned { uplink: u, dev, .. }) = uplink::owned(ctx) else {
        return Query::Keep;
    };
    // Bound to another device or address: the steering decides (strict
    // refuses it, fallback hands it back to normal routing as it asked).
    if steer::bound_elsewhere(u, dev, src) {
        return Query::Keep;
    }
    let Some(r) = DNS.get(uplink::id()) else {
        return Query::Keep;
    };
    // Already the uplink's (a second program set of the same uplink on
    // this socket, or a program that asks it directly).
    if r.flags & dns_flags::SYSTEM != 0 || is_one_of(r, dst) {
        return Query::Keep;
    }
    // While the uplink can't carry the query, or knows no resolver for it,
    // strict fails it at once; fallback leaves it to the system's resolver
    // (sending it to the uplink's would take that one the other way).
    let server = match pick(r, dst, index) {
        Some(server) if dst.usable(u) => server,
        _ => return uplink::strict_or(Query::Refuse, Query::Keep),
    };
    // Without the record its answers would look forged.
    let (_, asked) = family_words(dst);
    if QUERIES.insert(&key(ctx, server), &asked, 0).is_err() {
        return uplink::strict_or(Query::Refuse, Query::Keep);
    }
    match server {
        _ if six => write6(unsafe { &raw mut (*sa).user_ip6 }, words(server)),
        Addr::V4(s) => unsafe { (*sa).user_ip4 = s },
        Addr::V6(_) => return Query::Keep,
    }
    Query::Rewritten
}

/// Where a call sends: the address `read` gives, or the uplink's resolver
/// in place of a system one (written into the call, and read back); None:
/// refused. `six`: the call is an AF_INET6 socket's.
#[inline(always)]
pub fn destination(
    ctx: &SockAddrContext,
    src: Addr,
    six: bool,
    read: impl Fn() -> Addr,
) -> Option<Addr> {
    let asked = read();
    match redirect(ctx, asked, src, six) {
        Query::Keep => Some(asked),
        Query::Rewritten => Some(read()),
        Query::Refuse => None,
    }
}

/// The address an answer from `src` (the hook's port) is given back from:
/// the one the socket asked, if srcsel redirected its query there.
#[inline(always)]
pub fn answered_from(ctx: &SockAddrContext, src: Addr) -> Option<Addr> {
    let sa = ctx.sock_addr;
    if unsafe { (*sa).user_port } != DNS_PORT {
        return None;
    }
    let asked = unsafe { QUERIES.get(&key(ctx, src)) }?;
    Some(match src {
        Addr::V4(_) => Addr::V4(asked[3]),
        Addr::V6(_) => Addr::V6(*asked),
    })
}

/// The record of a query from the socket of `ctx` to `server`.
#[inline(always)]
fn key(ctx: &SockAddrContext, server: Addr) -> DnsKey {
    let (family, server) = family_words(server);
    DnsKey {
        cookie: unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) },
        family,
        _pad: 0,
        server,
    }
}

/// An address as the map keeps it: its family, and IPv4 in the last word.
#[inline(always)]
fn family_words(a: Addr) -> (u32, [u32; 4]) {
    match a {
        Addr::V4(a) => (AF_INET, [0, 0, 0, a]),
        Addr::V6(a) => (AF_INET6, a),
    }
}

/// Which of the system's resolvers `dst` is (its place in resolv.conf; 0
/// otherwise), if it is one: resolv.conf's, a local stub (loopback, the
/// unspecified address), or any resolver on a LAN, which would carry the
/// name to the network normal routing reaches it by.
#[inline(always)]
fn system_resolver(dst: Addr) -> Option<usize> {
    let listed = DNS.get(0).and_then(|sys| match dst {
        Addr::V4(a) => index_of(&sys.v4, &a),
        Addr::V6(a) => index_of(&sys.v6, &a),
    });
    if listed.is_some() {
        return listed;
    }
    let local = match dst {
        Addr::V4(a) => a == 0,
        Addr::V6(a) => a == [0; 4],
    };
    // exempt(): loopback, link-local, multicast and the main table's LANs.
    (local || dst.exempt()).then_some(0)
}

/// Whether `dst` is one of the uplink's resolvers in use.
#[inline(always)]
fn is_one_of(r: &Resolvers, dst: Addr) -> bool {
    match dst {
        Addr::V4(a) => index_of(&r.v4, &a).is_some(),
        Addr::V6(a) => index_of(&r.v6, &a).is_some(),
    }
}

#[inline(always)]
fn index_of<T: PartialEq + Default>(list: &[T; 3], a: &T) -> Option<usize> {
    if *a == T::default() {
        None
    } else if list[0] == *a {
        Some(0)
    } else if list[1] == *a {
        Some(1)
    } else if list[2] == *a {
        Some(2)
    } else {
        None
    }
}

/// The uplink's resolver in the place of the one asked (so a library's
/// turn to its second resolver turns to the uplink's second), else its first.
#[inline(always)]
fn pick(r: &Resolvers, dst: Addr, index: usize) -> Option<Addr> {
    match dst {
        Addr::V4(_) => {
            let a = [r.v4[0], r.v4[1], r.v4[2]];
            let s = if index < 3 && a[index] != 0 {
                a[index]
            } else {
                a[0]
            };
            (s != 0).then_some(Addr::V4(s))
        }
        Addr::V6(_) => {
            let a = [r.v6[0], r.v6[1], r.v6[2]];
            let s = if index < 3 && a[index] != [0; 4] {
                a[index]
            } else {
                a[0]
            };
            (s != [0; 4]).then_some(Addr::V6(s))
        }
    }
}
