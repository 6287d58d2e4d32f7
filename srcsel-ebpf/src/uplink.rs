//! Which uplink this program set serves (globals set by the loader), its live
//! state in the shared map, and the socket mark that assigns a socket to it.
use aya_ebpf::{
    EbpfContext, Global,
    bindings::bpf_sock,
    helpers::bpf_get_netns_cookie,
    macros::map,
    maps::{Array, HashMap},
    programs::{SockAddrContext, SockContext},
};
use srcsel_common::{
    LeaseReport, MARK_MASK, MAX_LEASES, MAX_UPLINKS, PENDING, STRICT_BIT, UPLINK_MASK,
    UplinkRecord, UplinkState,
};

/// Which slot of UPLINKS this program set serves; set by the loader.
#[unsafe(no_mangle)]
static UPLINK_ID: Global<u32> = Global::new(0);
/// 1: strict (refuse while the uplink is unusable), 0: fall back; set by the loader.
#[unsafe(no_mangle)]
static STRICT: Global<u32> = Global::new(0);

#[map(name = "SRCSEL_UPLINKS")]
static UPLINKS: Array<UplinkState> = Array::pinned(MAX_UPLINKS, 0);

/// Userspace's slot registry. No program reads it; it lives in this object
/// so that it is created and pinned with the other maps.
#[map(name = "SRCSEL_REGISTRY")]
static REGISTRY: Array<UplinkRecord> = Array::pinned(MAX_UPLINKS, 0);

/// The DHCP hooks' reports by interface name; like REGISTRY, userspace's
/// alone. A plain hash map: userspace evicts the oldest report itself (an
/// LRU map's per-CPU free lists may evict long before it is full).
#[map(name = "SRCSEL_LEASES")]
static LEASES: HashMap<[u8; 16], LeaseReport> = HashMap::pinned(MAX_LEASES, 0);

pub const SOL_SOCKET: i32 = 1;
pub const SO_MARK: i32 = 36;

pub const AF_INET: u32 = 2;
pub const AF_INET6: u32 = 10;

#[inline(always)]
pub fn id() -> u32 {
    UPLINK_ID.load()
}

#[inline(always)]
pub fn strict() -> bool {
    STRICT.load() != 0
}

/// `refused` in strict mode (the call fails rather than leave another
/// way), else `otherwise`.
#[inline(always)]
pub fn strict_or<T>(refused: T, otherwise: T) -> T {
    if strict() { refused } else { otherwise }
}

/// A socket this program set decides for, as the sock_addr hooks see it.
pub struct Owned {
    pub uplink: &'static UplinkState,
    pub mark: u32,
    /// `SO_BINDTODEVICE`'s device, 0 for none.
    pub dev: u32,
    /// Its bound source port (host order), 0 for none.
    pub port: u32,
}

/// The socket of `ctx`, if it is this program set's: its uplink's slot is
/// taken, it lives in the uplink's network namespace, and its mark names
/// the uplink (not a nearer assignment's, nor one the program took back).
#[inline(always)]
pub fn owned(ctx: &SockAddrContext) -> Option<Owned> {
    let u = here(ctx)?;
    let sk = unsafe { (*ctx.sock_addr).__bindgen_anon_1.sk };
    if sk.is_null() {
        return None;
    }
    let (mark, dev, port) = unsafe { ((*sk).mark, (*sk).bound_dev_if, (*sk).src_port) };
    (mark & UPLINK_MASK == u.mark).then_some(Owned {
        uplink: u,
        mark,
        dev,
        port,
    })
}

/// The uplink, if its slot is taken and `ctx` belongs to its network namespace.
#[inline(always)]
pub fn here<C: EbpfContext>(ctx: &C) -> Option<&'static UplinkState> {
    let u = UPLINKS.get(id()).filter(|u| u.mark != 0)?;
    let cookie = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    (u.netns_cookie == cookie).then_some(u)
}

const SOCK_STREAM: u32 = 1;
const IPPROTO_TCP: u32 = 6;
const IPPROTO_MPTCP: u32 = 262;
const TCP_CLOSE: u32 = 7;
const TCP_LISTEN: u32 = 10;

/// Gives a new IPv4/IPv6 socket the uplink's mark, unless a nearer assigned
/// cgroup's program (which runs first) already chose. A TCP stream gets
/// [`PENDING`] instead, and its uplink's mark when it connects ([`claim`]):
/// one that listens instead keeps PENDING, so the connections it accepts
/// (conversations its peers began) inherit no uplink and their answers
/// leave by their address. (A `sock_ops` program could take the mark off
/// at `listen()`, but it runs at nine TCP events of every connection.)
/// Whether the socket may be made: an MPTCP socket may not, in either mode,
/// since the kernel makes its TCP subflows itself, without this hook, so
/// none would carry the mark (programs that try MPTCP first fall back to
/// TCP).
#[inline(always)]
pub fn mark_socket(ctx: &SockContext) -> bool {
    let sk: *mut bpf_sock = ctx.sock;
    let Some(u) = here(ctx) else { return true };
    let family = unsafe { (*sk).family };
    if family != AF_INET && family != AF_INET6 {
        return true;
    }
    let protocol = unsafe { (*sk).protocol };
    if protocol == IPPROTO_MPTCP {
        return false;
    }
    let mark = unsafe { (*sk).mark };
    if mark & MARK_MASK != 0 {
        return true;
    }
    // Not a raw socket of protocol TCP: it never connects through the hooks.
    let ours = if protocol == IPPROTO_TCP && unsafe { (*sk).type_ } == SOCK_STREAM {
        PENDING
    } else {
        assigned(u)
    };
    unsafe { (*sk).mark = (mark & !MARK_MASK) | ours };
    true
}

/// connect: a [`PENDING`] TCP socket takes this uplink's mark, before any
/// decision reads it (the nearest assignment's program runs first and
/// takes it; the others then see another uplink's). False when the mark
/// could not be set: strict then refuses the connection, which would
/// otherwise route as unassigned.
#[inline(always)]
pub fn claim(ctx: &SockAddrContext) -> bool {
    let sk = unsafe { (*ctx.sock_addr).__bindgen_anon_1.sk };
    if sk.is_null() {
        return true;
    }
    let mark = unsafe { (*sk).mark };
    if mark & MARK_MASK != PENDING {
        return true;
    }
    let Some(u) = here(ctx) else { return true };
    set_mark(ctx, &mut ((mark & !MARK_MASK) | assigned(u)))
}

/// srcsel's bits of a socket this program set has taken: the uplink's mark,
/// and the strict bit in strict mode.
#[inline(always)]
pub fn assigned(u: &UplinkState) -> u32 {
    u.mark | if strict() { STRICT_BIT } else { 0 }
}

/// Whether a socket the setsockopt hook sees is a [`PENDING`] one that has
/// not connected: not yet, or never (a listener). Its srcsel bits stay
/// as they are until a connect takes it, or it could later connect (after
/// `connect(AF_UNSPEC)`) untaken, as if unassigned.
#[inline(always)]
pub fn pending(sk: *const bpf_sock) -> bool {
    let (mark, state) = unsafe { ((*sk).mark, (*sk).state) };
    mark & MARK_MASK == PENDING && (state == TCP_CLOSE || state == TCP_LISTEN)
}

/// Clears srcsel's bits of a socket's mark (the rest is others'): from now
/// on it is routed as if unassigned, and the hooks leave it alone. `ctx` is
/// a sock_addr context (bpf_setsockopt takes it). If that fails, the
/// uplink's table still routes it, as before srcsel knew better.
#[inline(always)]
pub fn release(ctx: &SockAddrContext, mark: u32) {
    let _ = set_mark(ctx, &mut (mark & !MARK_MASK));
}

/// `setsockopt(SO_MARK)` on the context's socket; whether it took.
#[inline(always)]
fn set_mark(ctx: &SockAddrContext, mark: &mut u32) -> bool {
    let ret = unsafe {
        aya_ebpf::helpers::bpf_setsockopt(
            ctx.as_ptr().cast(),
            SOL_SOCKET,
            SO_MARK,
            (mark as *mut u32).cast(),
            size_of::<u32>() as i32,
        )
    };
    ret == 0
}
