//! srcsel's folder in bpffs (mounted at /sys/fs/bpf when there is none) and
//! the network namespace cookie that names each namespace's pins.
use std::{
    fs, io,
    path::{Path, PathBuf},
};

use super::{BpfError, io_err};
use crate::kernel::{mounts, netns};

const DEFAULT_BPFFS: &str = "/sys/fs/bpf";
const TOP: &str = "srcsel";
/// The host namespace's pin folder, under the bpffs mount.
pub const HOST_ALIAS: &str = "srcsel/host";

/// The bpffs mount point. When there is none, one is mounted at
/// /sys/fs/bpf only in the host's own mount namespace (PID 1's): elsewhere
/// (a sandboxed DHCP client's hook, `ip netns exec`'s private /sys) it would
/// be a private instance whose slots and pins no other srcsel sees, while
/// its rules land in the shared network namespace.
pub fn bpffs() -> Result<PathBuf, BpfError> {
    if let Some(p) = find_bpffs()? {
        return Ok(p);
    }
    let path = PathBuf::from(DEFAULT_BPFFS);
    if !in_host_mount_namespace() {
        return Err(BpfError::NotVisible { path });
    }
    let err = |source| BpfError::Bpffs {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(&path).map_err(err)?;
    rustix::mount::mount(
        "bpf",
        &path,
        "bpf",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .map_err(|e| err(e.into()))?;
    Ok(path)
}

/// Whether this process shares PID 1's mount namespace (unknown: no).
fn in_host_mount_namespace() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let ino = |p: &str| fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    ino("/proc/self/ns/mnt").is_some_and(|me| ino("/proc/1/ns/mnt") == Some(me))
}

/// The bpffs mount point, if there is one (never mounts).
pub fn find_bpffs() -> Result<Option<PathBuf>, BpfError> {
    mounts::find("bpf").map_err(io_err(Path::new(mounts::MOUNTINFO)))
}

/// The cookie of the calling thread's network namespace.
pub fn netns_cookie() -> Result<u64, BpfError> {
    // Any socket will do, unbound: a Unix one needs no address or port.
    let (sock, _) = std::os::unix::net::UnixStream::pair().map_err(BpfError::Cookie)?;
    crate::kernel::socket_option(sock, libc::SO_NETNS_COOKIE, 0u64).map_err(BpfError::Cookie)
}

/// The folder of a namespace's pins.
pub fn ns_dir(bpffs: &Path, cookie: u64) -> PathBuf {
    bpffs.join(TOP).join(format!("net-{cookie}"))
}

/// The marker folder that records which network namespace (by inode) a
/// `net-<cookie>` folder belongs to: a cookie cannot be looked up, an inode can.
fn inode_marker(ns_dir: &Path, inode: u64) -> PathBuf {
    ns_dir.join(format!("netns-{inode}"))
}

/// Marks `ns_dir` as the pins of the calling thread's network namespace.
pub fn mark_namespace(ns_dir: &Path) -> Result<(), BpfError> {
    let inode = netns::current_inode().map_err(io_err(Path::new("/proc/thread-self/ns/net")))?;
    let marker = inode_marker(ns_dir, inode);
    match fs::create_dir(&marker) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(io_err(&marker)(e)),
        _ => Ok(()),
    }
}

/// Removes the pins of network namespaces that no longer exist (deleted
/// without `srcsel down`: a lab, a container). A folder without a marker is
/// left alone: whose it is cannot be told. Returns the folders removed.
pub fn remove_gone_namespaces(bpffs: &Path, cookie: u64) -> io::Result<Vec<PathBuf>> {
    let Ok(entries) = fs::read_dir(bpffs.join(TOP)) else {
        return Ok(Vec::new());
    };
    // Folders only: the `host` alias is a symlink to one of them.
    let dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    // Our own namespace is live: only others need the scan of /proc. (By
    // cookie: a dead namespace's folder may carry our inode.)
    let me = ns_dir(bpffs, cookie);
    let marked: Vec<(PathBuf, u64)> = dirs
        .iter()
        .filter(|d| **d != me)
        .filter_map(|d| Some((d.clone(), marked_inode(d)?)))
        .collect();
    if marked.is_empty() {
        return Ok(Vec::new());
    }
    let live = netns::live();
    let mut removed = Vec::new();
    for (dir, inode) in marked {
        if !alive(&dir, inode, live.get(&inode)) {
            remove_tree(&dir)?;
            removed.push(dir);
        }
    }
    Ok(removed)
}

/// Whether the namespace whose pins are in `dir` (`net-<cookie>`) is the
/// live one with the marker's inode (`at` opens it): a namespace made since
/// may have been given a dead one's inode, but never its cookie. When the
/// cookie cannot be read (a sandbox forbids setns), it counts as alive.
fn alive(dir: &Path, inode: u64, at: Option<&PathBuf>) -> bool {
    let Some(at) = at else { return false };
    let cookie = dir
        .file_name()
        .and_then(|n| n.to_str()?.strip_prefix("net-")?.parse::<u64>().ok());
    match netns::cookie_of(at, inode) {
        Ok(live) => cookie.is_some_and(|c| c == live),
        Err(e) => {
            tracing::debug!(
                "reading the cookie of {}: {e}; {} kept",
                at.display(),
                dir.display()
            );
            true
        }
    }
}

fn marked_inode(ns_dir: &Path) -> Option<u64> {
    fs::read_dir(ns_dir)
        .ok()?
        .filter_map(Result::ok)
        .find_map(|e| e.file_name().to_str()?.strip_prefix("netns-")?.parse().ok())
}

/// An uplink's name as a pin's: bpffs refuses names with a dot (a VLAN's
/// `eth0.100`), and no interface name has a `:`.
pub fn pin_name(uplink: &str) -> String {
    uplink.replace('.', ":")
}

/// The uplink a [`pin_name`] names.
pub fn uplink_of_pin(name: &str) -> String {
    name.replace(':', ".")
}

/// Whether `dir` holds an entry of each of `names`: one read of the
/// folder rather than a stat per name (a run's path checks two sets).
pub fn holds_all<'a>(dir: &Path, names: impl IntoIterator<Item = &'a str>) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    let present: std::collections::HashSet<_> = entries.flatten().map(|e| e.file_name()).collect();
    names
        .into_iter()
        .all(|n| present.contains(std::ffi::OsStr::new(n)))
}

/// Where a namespace's attachments pin their links, one folder each.
pub fn links_dir(ns_dir: &Path) -> PathBuf {
    ns_dir.join("links")
}

/// Removes a pin folder and everything below it (bpffs: unlink drops the pin).
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Err(_) => return Ok(()),
        Ok(m) if m.file_type().is_symlink() => return fs::remove_file(dir),
        Ok(_) => {}
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        // Never through a symlink: an attachment's `cgroup` points into cgroupfs.
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?
        } else {
            fs::remove_file(entry.path())?
        }
    }
    fs::remove_dir(dir)
}

/// Removes a namespace's pins, and srcsel's top folder if no other namespace
/// uses it. Returns whether there was anything.
pub fn remove_namespace(bpffs: &Path, cookie: u64) -> io::Result<bool> {
    let dir = ns_dir(bpffs, cookie);
    let existed = dir.exists();
    unalias_host(bpffs, cookie);
    remove_tree(&dir)?;
    let _ = fs::remove_dir(bpffs.join(TOP));
    Ok(existed)
}

/// Points `<bpffs>/srcsel/host` at this namespace's pin folder, for the
/// drop-ins systemd reads (`BPFProgram=`): the cookie in the folder's name
/// differs per boot, the alias does not.
pub fn alias_host(bpffs: &Path, cookie: u64) -> io::Result<()> {
    let alias = bpffs.join(HOST_ALIAS);
    let target = PathBuf::from(format!("net-{cookie}"));
    if fs::read_link(&alias).is_ok_and(|t| t == target) {
        return Ok(());
    }
    // bpffs refuses names with a dot (`host.new`).
    let tmp = alias.with_file_name("host-new");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&target, &tmp)?;
    fs::rename(&tmp, &alias)
}

/// Removes the alias when it points at `cookie`'s folder (`srcsel down`).
pub fn unalias_host(bpffs: &Path, cookie: u64) {
    let alias = bpffs.join(HOST_ALIAS);
    if fs::read_link(&alias).is_ok_and(|t| t == Path::new(&format!("net-{cookie}"))) {
        let _ = fs::remove_file(alias);
    }
}
