//! Which network namespaces still exist: those of every process and
//! thread, those held open by a file descriptor, and those bind-mounted
//! (`ip netns add`), and the cookie of each. A namespace none of these
//! holds is gone for good, and srcsel's pins for it can go too.
use std::{
    collections::HashMap,
    fs, io,
    os::{fd::AsFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
};

/// The inode of the calling thread's network namespace.
pub fn current_inode() -> io::Result<u64> {
    Ok(fs::metadata("/proc/thread-self/ns/net")?.ino())
}

/// `net:[4026531840]` → 4026531840.
fn inode_of_link(target: &Path) -> Option<u64> {
    target
        .to_str()?
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Every network namespace some process, thread, descriptor or mount of
/// this host refers to: its inode, and one path that opens it. An inode
/// alone does not name a namespace for long: the kernel hands a new one the
/// lowest free inode, often a dead one's ([`cookie_of`] tells them apart).
pub fn live() -> HashMap<u64, PathBuf> {
    let mut live = HashMap::new();
    let add = |path: PathBuf, live: &mut HashMap<u64, PathBuf>| {
        if let Some(ino) = fs::read_link(&path).ok().as_deref().and_then(inode_of_link) {
            live.entry(ino).or_insert(path);
        }
    };
    for p in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let proc = p.path();
        if !p
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        for t in fs::read_dir(proc.join("task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            add(t.path().join("ns/net"), &mut live);
        }
        for fd in fs::read_dir(proc.join("fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            add(fd.path(), &mut live);
        }
    }
    // Bind mounts of namespace files: `... net:[ino] /run/netns/x ... - nsfs nsfs rw`.
    if let Ok(info) = fs::read_to_string(super::mounts::MOUNTINFO) {
        for line in info.lines().filter(|l| l.contains(" - nsfs ")) {
            let mut words = line.split(' ');
            let root = words.nth(3).and_then(|r| inode_of_link(Path::new(r)));
            if let (Some(ino), Some(at)) = (root, words.next()) {
                live.entry(ino)
                    .or_insert_with(|| PathBuf::from(super::mounts::unescape(at)));
            }
        }
    }
    live
}

/// The cookie of the network namespace `path` opens (`/proc/PID/ns/net`,
/// `/run/netns/NAME`), read on a thread of its own that enters it and ends.
/// The path is only a way to it: it is refused unless what it opens now is
/// namespace `inode` (a thread may have moved, an fd or pid been reused).
pub fn cookie_of(path: &Path, inode: u64) -> io::Result<u64> {
    let ns = fs::File::open(path)?;
    if ns.metadata()?.ino() != inode {
        return Err(io::Error::other(format!(
            "{} no longer opens namespace {inode}",
            path.display()
        )));
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            // Only this thread moves, and it ends right after.
            rustix::thread::move_into_link_name_space(
                ns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )?;
            let (sock, _) = std::os::unix::net::UnixStream::pair()?;
            super::socket_option(sock, libc::SO_NETNS_COOKIE, 0u64)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the thread reading a cookie panicked")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_threads_namespace_is_live() {
        let me = current_inode().unwrap();
        assert!(live().contains_key(&me));
        assert_eq!(
            inode_of_link(Path::new("net:[4026531840]")),
            Some(4026531840)
        );
        assert_eq!(inode_of_link(Path::new("mnt:[4026531840]")), None);
    }
}
