//! The eBPF loader: bpffs, srcsel's pins, the shared maps, and attaching an
//! uplink's program set to a cgroup.
//!
//! Layout, per network namespace (by its cookie, never reused while the
//! machine runs):
//! `<bpffs>/srcsel/net-<cookie>/maps/{SRCSEL_UPLINKS,SRCSEL_EXEMPT4}` and
//! `<bpffs>/srcsel/net-<cookie>/<uplink>/<strict|fallback>/{sock_create,connect4,sendmsg4}`.
use std::{
    collections::BTreeSet,
    fs, io,
    net::Ipv4Addr,
    os::fd::{AsFd, AsRawFd},
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, LpmTrie, Map, MapData, PerCpuArray, lpm_trie::Key},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr,
        CgroupSockAddrAttachType, CgroupSockAttachType,
    },
};
use srcsel_common::{
    Counters, MAX_UPLINKS, STRICT_GLOBAL, UPLINK_ID_GLOBAL, UplinkState, maps, programs,
};

use crate::{
    mounts,
    routing::Slot,
    uplink::{Ipv4Net, Uplink},
};

/// An address as the programs store it (network byte order, 0 for none).
fn raw(addr: Option<Ipv4Addr>) -> u32 {
    addr.map_or(0, |a| u32::from_ne_bytes(a.octets()))
}

pub fn ipv4(raw: u32) -> Option<Ipv4Addr> {
    (raw != 0).then(|| Ipv4Addr::from(raw.to_ne_bytes()))
}

/// The eBPF object, built by build.rs (empty when built without the toolchain).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/srcsel"));

const DEFAULT_BPFFS: &str = "/sys/fs/bpf";
const TOP: &str = "srcsel";

#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error(
        "this srcsel binary was built without its eBPF programs (no bpf-linker or nightly rust-src at build time); \
         rebuild it after `cargo xtask setup`"
    )]
    NoObject,
    #[error(
        "no bpffs mounted, and mounting one at {path} failed (mount it with `mount -t bpf bpf {path}`)"
    )]
    Bpffs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("all {max} uplink slots of this network namespace are taken; `srcsel down` frees them", max = MAX_UPLINKS - 1)]
    NoSlot,
    #[error("{name} uses mark {:#x} but the config asks for {:#x}; run `srcsel down` to renumber", srcsel_common::mark_for(*id), srcsel_common::mark_for(*wanted))]
    SlotMoved { name: String, id: u32, wanted: u32 },
    #[error("the config gives {name} mark {:#x}, which another uplink already holds; run `srcsel down` to renumber", srcsel_common::mark_for(*wanted))]
    SlotTaken { name: String, wanted: u32 },
    #[error("loading srcsel's eBPF programs")]
    Load(#[from] aya::EbpfError),
    #[error("eBPF program {name}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("pinning {path}")]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("srcsel map {path}")]
    Map {
        path: PathBuf,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("reading this network namespace's cookie (SO_NETNS_COOKIE needs Linux 5.14)")]
    Cookie(#[source] io::Error),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> EbpfError + '_ {
    move |source| EbpfError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The bpffs mount point; mounts one at /sys/fs/bpf when there is none.
pub fn bpffs() -> Result<PathBuf, EbpfError> {
    if let Some(p) = mounts::find("bpf").map_err(io_err(Path::new(mounts::MOUNTINFO)))? {
        return Ok(p);
    }
    let path = PathBuf::from(DEFAULT_BPFFS);
    let err = |source| EbpfError::Bpffs {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(&path).map_err(err)?;
    let target = std::ffi::CString::new(DEFAULT_BPFFS).expect("no NUL");
    // SAFETY: plain mount(2) with valid C strings.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    Ok(path)
}

/// The cookie of the calling thread's network namespace.
pub fn netns_cookie() -> Result<u64, EbpfError> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")
        .or_else(|_| std::net::UdpSocket::bind("[::1]:0"))
        .map_err(EbpfError::Cookie)?;
    let mut cookie = 0u64;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: the buffer and its length match.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(EbpfError::Cookie(io::Error::last_os_error()));
    }
    Ok(cookie)
}

/// The hook gateway recorded for uplink `name`, read without mounting bpffs
/// or creating any state (for checks that must change nothing).
pub fn peek_hook_gateway(cookie: u64, name: &str) -> Result<Option<Ipv4Addr>, EbpfError> {
    let Some(bpffs) = mounts::find("bpf").map_err(io_err(Path::new(mounts::MOUNTINFO)))? else {
        return Ok(None);
    };
    let Some(ns) = Namespace::open_existing(&bpffs, cookie)? else {
        return Ok(None);
    };
    match ns.find(name)? {
        Some(id) => ns.hook_gateway(id),
        None => Ok(None),
    }
}

/// The folder of this namespace's pins.
pub fn ns_dir(bpffs: &Path, cookie: u64) -> PathBuf {
    bpffs.join(TOP).join(format!("net-{cookie}"))
}

/// srcsel's pinned state in one network namespace, locked for the caller.
pub struct Namespace {
    dir: PathBuf,
    cookie: u64,
    uplinks: Array<MapData, UplinkState>,
    exempt: LpmTrie<MapData, [u8; 4], [u32; 2]>,
    _lock: fs::File,
}

impl Namespace {
    /// Opens (creating if needed) the namespace's folder and maps, and takes
    /// its lock so concurrent `srcsel run`s do not race on slots and pins.
    pub fn open(bpffs: &Path, cookie: u64) -> Result<Self, EbpfError> {
        if OBJECT.is_empty() {
            return Err(EbpfError::NoObject);
        }
        let dir = ns_dir(bpffs, cookie);
        fs::create_dir_all(dir.join("maps")).map_err(io_err(&dir))?;
        let lock = fs::File::open(&dir).map_err(io_err(&dir))?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_err(&dir)(io::Error::last_os_error()));
        }
        let maps_dir = dir.join("maps");
        if !maps_pinned(&maps_dir) {
            // Parsing the object creates and pins its by-name maps.
            loader(&maps_dir).load(OBJECT)?;
        }
        let uplinks = open_map(&maps_dir.join(maps::UPLINKS), Map::Array)?;
        let exempt = open_map(&maps_dir.join(maps::EXEMPT4), Map::LpmTrie)?;
        Ok(Self {
            dir,
            cookie,
            uplinks,
            exempt,
            _lock: lock,
        })
    }

    /// Opens the namespace's state only if it already exists (read-only use:
    /// refusing bad input must not create pins).
    pub fn open_existing(bpffs: &Path, cookie: u64) -> Result<Option<Self>, EbpfError> {
        let maps_dir = ns_dir(bpffs, cookie).join("maps");
        if !maps_pinned(&maps_dir) {
            return Ok(None);
        }
        Self::open(bpffs, cookie).map(Some)
    }

    /// The slot uplink `name` holds, if any.
    pub fn find(&self, name: &str) -> Result<Option<u32>, EbpfError> {
        let key = name_key(name);
        Ok(self
            .uplinks()?
            .into_iter()
            .find(|(_, s)| s.name == key)
            .map(|(id, _)| id))
    }

    /// The slot of uplink `name`, claiming `wanted` (from a configured mark)
    /// or a free one the first time. Claiming writes the name at once, so the
    /// next caller (under the same lock) cannot get the same slot.
    pub fn slot(&mut self, name: &str, wanted: Option<u32>) -> Result<u32, EbpfError> {
        if let Some(id) = self.find(name)? {
            return match wanted {
                Some(w) if w != id => Err(EbpfError::SlotMoved {
                    name: name.to_owned(),
                    id,
                    wanted: w,
                }),
                _ => Ok(id),
            };
        }
        let mut free = None;
        for id in wanted.map_or(1..MAX_UPLINKS, |w| w..w + 1) {
            if self.state(id)?.mark == 0 {
                free = Some(id);
                break;
            }
        }
        let id = free.ok_or_else(|| match wanted {
            Some(w) => EbpfError::SlotTaken {
                name: name.to_owned(),
                wanted: w,
            },
            None => EbpfError::NoSlot,
        })?;
        let claim = UplinkState {
            netns_cookie: self.cookie,
            name: name_key(name),
            mark: srcsel_common::mark_for(id),
            table: crate::routing::table_for(id),
            ..Default::default()
        };
        self.uplinks
            .set(id, claim, 0)
            .map_err(|source| self.map_err(maps::UPLINKS, source))?;
        Ok(id)
    }

    /// Slot `id`'s counters, summed over CPUs.
    pub fn counters(&self, id: u32) -> Result<Counters, EbpfError> {
        let path = self.dir.join("maps").join(maps::COUNTERS);
        let map: PerCpuArray<MapData, Counters> = open_map(&path, Map::PerCpuArray)?;
        let per_cpu = map
            .get(&id, 0)
            .map_err(|source| EbpfError::Map { path, source })?;
        Ok(per_cpu.iter().fold(Counters::default(), |mut t, c| {
            t.connections += c.connections;
            t.datagrams += c.datagrams;
            t.refused += c.refused;
            t.bytes_out += c.bytes_out;
            t.bytes_in += c.bytes_in;
            t
        }))
    }

    /// The live state in slot `id` (all zero when free).
    pub fn state(&self, id: u32) -> Result<UplinkState, EbpfError> {
        self.uplinks
            .get(&id, 0)
            .map_err(|source| self.map_err(maps::UPLINKS, source))
    }

    /// Every uplink that has a slot here, by slot.
    pub fn uplinks(&self) -> Result<Vec<(u32, UplinkState)>, EbpfError> {
        let mut all = Vec::new();
        for id in 1..MAX_UPLINKS {
            let s = self.state(id)?;
            if s.mark != 0 {
                all.push((id, s));
            }
        }
        Ok(all)
    }

    /// The gateway a DHCP client hook last reported for slot `id`.
    pub fn hook_gateway(&self, id: u32) -> Result<Option<Ipv4Addr>, EbpfError> {
        Ok(ipv4(self.state(id)?.hook_gateway4))
    }

    /// Records the gateway a DHCP client hook reported (None: the lease ended).
    pub fn set_hook_gateway(&mut self, id: u32, gw: Option<Ipv4Addr>) -> Result<(), EbpfError> {
        let mut s = self.state(id)?;
        s.hook_gateway4 = raw(gw);
        self.uplinks
            .set(id, s, 0)
            .map_err(|source| self.map_err(maps::UPLINKS, source))
    }

    /// Publishes an uplink's live state to the programs; whether it changed.
    pub fn publish(
        &mut self,
        slot: Slot,
        up: &Uplink,
        hook_gateway: Option<Ipv4Addr>,
    ) -> Result<bool, EbpfError> {
        use srcsel_common::flags;
        let mut f = 0;
        if up.usable() {
            f |= flags::UP;
        }
        if up.addr.is_some() {
            f |= flags::HAS_ADDR4;
        }
        let state = UplinkState {
            netns_cookie: self.cookie,
            name: name_key(&up.name),
            mark: srcsel_common::mark_for(slot.id),
            ifindex: up.index,
            addr4: raw(up.addr.map(|a| a.addr)),
            flags: f,
            gateway4: raw(up.gateway),
            hook_gateway4: raw(hook_gateway),
            table: slot.table,
            _pad: 0,
        };
        if self.state(slot.id)? == state {
            return Ok(false);
        }
        self.uplinks
            .set(slot.id, state, 0)
            .map_err(|source| self.map_err(maps::UPLINKS, source))?;
        Ok(true)
    }

    /// Makes the exempt-destination trie hold exactly `prefixes`.
    pub fn sync_exempt(&mut self, prefixes: &BTreeSet<Ipv4Net>) -> Result<(), EbpfError> {
        let value = |n: &Ipv4Net| [u32::from_ne_bytes(n.addr.octets()), u32::from(n.len)];
        let current: Vec<[u32; 2]> = self
            .exempt
            .iter()
            .filter_map(Result::ok)
            .map(|(_, v)| v)
            .collect();
        let wanted: Vec<[u32; 2]> = prefixes.iter().map(value).collect();
        let (remove, add) = crate::routing::diff(&current, &wanted);
        let key = |v: &[u32; 2]| Key::new(v[1], v[0].to_ne_bytes());
        for v in &remove {
            self.exempt
                .remove(&key(v))
                .map_err(|source| self.map_err(maps::EXEMPT4, source))?;
        }
        for v in &add {
            self.exempt
                .insert(&key(v), v, 0)
                .map_err(|source| self.map_err(maps::EXEMPT4, source))?;
        }
        Ok(())
    }

    fn map_err(&self, name: &str, source: aya::maps::MapError) -> EbpfError {
        EbpfError::Map {
            path: self.dir.join("maps").join(name),
            source,
        }
    }

    /// Loads and pins the program set of uplink slot `id` unless it is pinned.
    pub fn ensure_programs(
        &self,
        name: &str,
        id: u32,
        strict: bool,
    ) -> Result<ProgramSet, EbpfError> {
        let set = ProgramSet {
            dir: self
                .dir
                .join(name)
                .join(if strict { "strict" } else { "fallback" }),
        };
        if set.complete() {
            return Ok(set);
        }
        // A set half-pinned by a crashed run is replaced whole.
        let _ = remove_tree(&set.dir);
        fs::create_dir_all(&set.dir).map_err(io_err(&set.dir))?;
        let strict = u32::from(strict);
        let mut ebpf: Ebpf = loader(&self.dir.join("maps"))
            .override_global(UPLINK_ID_GLOBAL, &id, true)
            .override_global(STRICT_GLOBAL, &strict, true)
            .load(OBJECT)?;
        for name in PROGRAMS {
            let prog = ebpf.program_mut(name).ok_or(EbpfError::Program {
                name,
                source: aya::programs::ProgramError::UnexpectedProgramType,
            })?;
            let err = |source| EbpfError::Program { name, source };
            match prog {
                aya::programs::Program::CgroupSock(p) => p.load().map_err(err)?,
                aya::programs::Program::CgroupSockAddr(p) => p.load().map_err(err)?,
                aya::programs::Program::CgroupSkb(p) => p.load().map_err(err)?,
                _ => return Err(err(aya::programs::ProgramError::UnexpectedProgramType)),
            }
            let path = set.dir.join(name);
            prog.pin(&path)
                .map_err(|source| EbpfError::Pin { path, source })?;
        }
        Ok(set)
    }
}

const PROGRAMS: [&str; 5] = [
    programs::SOCK_CREATE,
    programs::CONNECT4,
    programs::SENDMSG4,
    programs::EGRESS,
    programs::INGRESS,
];

fn maps_pinned(maps_dir: &Path) -> bool {
    [maps::UPLINKS, maps::EXEMPT4, maps::COUNTERS]
        .iter()
        .all(|m| maps_dir.join(m).exists())
}

fn loader(maps_dir: &Path) -> EbpfLoader<'_> {
    let mut l = EbpfLoader::new();
    l.default_map_pin_directory(maps_dir);
    l
}

fn open_map<T: TryFrom<Map, Error = aya::maps::MapError>>(
    path: &Path,
    kind: fn(MapData) -> Map,
) -> Result<T, EbpfError> {
    let err = |source| EbpfError::Map {
        path: path.to_owned(),
        source,
    };
    T::try_from(kind(MapData::from_pin(path).map_err(err)?)).map_err(err)
}

fn name_key(name: &str) -> [u8; 16] {
    let mut key = [0u8; 16];
    let n = name.len().min(15);
    key[..n].copy_from_slice(&name.as_bytes()[..n]);
    key
}

/// One uplink's pinned programs, in one mode.
pub struct ProgramSet {
    dir: PathBuf,
}

/// Programs attached to a cgroup; detached when dropped.
pub struct Attached {
    _sock: CgroupSock,
    _addr: Vec<CgroupSockAddr>,
    _skb: Vec<CgroupSkb>,
}

impl ProgramSet {
    fn complete(&self) -> bool {
        PROGRAMS.iter().all(|p| self.dir.join(p).exists())
    }

    /// Attaches the set to `cgroup` through bpf_links. Links are always
    /// multi-attach in the kernel, so other cgroup programs keep running.
    pub fn attach(&self, cgroup: impl AsFd) -> Result<Attached, EbpfError> {
        let cg = cgroup.as_fd();
        let prog_err = |name| move |source| EbpfError::Program { name, source };
        let mut sock = CgroupSock::from_pin(
            self.dir.join(programs::SOCK_CREATE),
            CgroupSockAttachType::SockCreate,
        )
        .map_err(prog_err(programs::SOCK_CREATE))?;
        sock.attach(cg, CgroupAttachMode::Single)
            .map_err(prog_err(programs::SOCK_CREATE))?;
        let mut addr = Vec::new();
        for (name, kind) in [
            (programs::CONNECT4, CgroupSockAddrAttachType::Connect4),
            (programs::SENDMSG4, CgroupSockAddrAttachType::UDPSendMsg4),
        ] {
            let mut p =
                CgroupSockAddr::from_pin(self.dir.join(name), kind).map_err(prog_err(name))?;
            p.attach(cg, CgroupAttachMode::Single)
                .map_err(prog_err(name))?;
            addr.push(p);
        }
        let mut skb = Vec::new();
        for (name, kind) in [
            (programs::EGRESS, CgroupSkbAttachType::Egress),
            (programs::INGRESS, CgroupSkbAttachType::Ingress),
        ] {
            let mut p = CgroupSkb::from_pin(self.dir.join(name), kind).map_err(prog_err(name))?;
            p.attach(cg, kind, CgroupAttachMode::Single)
                .map_err(prog_err(name))?;
            skb.push(p);
        }
        Ok(Attached {
            _sock: sock,
            _addr: addr,
            _skb: skb,
        })
    }
}

/// Removes a pin folder and everything below it (bpffs: unlink drops the pin).
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_dir() {
            remove_tree(&p)?
        } else {
            fs::remove_file(&p)?
        }
    }
    fs::remove_dir(dir)
}

/// Removes this namespace's pins, and srcsel's top folder if no other
/// namespace uses it. Returns whether there was anything.
pub fn remove_namespace(bpffs: &Path, cookie: u64) -> io::Result<bool> {
    let dir = ns_dir(bpffs, cookie);
    let existed = dir.exists();
    remove_tree(&dir)?;
    let _ = fs::remove_dir(bpffs.join(TOP));
    Ok(existed)
}
