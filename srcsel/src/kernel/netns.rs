//! Which network namespaces still exist, by inode: those of every process
//! and thread, those held open by a file descriptor, and those bind-mounted
//! (`ip netns add`). A namespace none of these holds is gone for good, and
//! srcsel's pins for it can go too.
use std::{collections::HashSet, fs, io, os::unix::fs::MetadataExt as _, path::Path};

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

/// Every network namespace inode some process, thread, descriptor or mount
/// of this host refers to.
pub fn live_inodes() -> HashSet<u64> {
    let mut live = HashSet::new();
    let links = |dir: &Path, live: &mut HashSet<u64>| {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            if let Some(ino) = fs::read_link(e.path())
                .ok()
                .as_deref()
                .and_then(inode_of_link)
            {
                live.insert(ino);
            }
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
            if let Some(ino) = fs::read_link(t.path().join("ns/net"))
                .ok()
                .as_deref()
                .and_then(inode_of_link)
            {
                live.insert(ino);
            }
        }
        links(&proc.join("fd"), &mut live);
    }
    // Bind mounts of namespace files: `... net:[ino] /run/netns/x ... - nsfs nsfs rw`.
    if let Ok(info) = fs::read_to_string(super::mounts::MOUNTINFO) {
        for line in info.lines().filter(|l| l.contains(" - nsfs ")) {
            if let Some(ino) = line
                .split(' ')
                .nth(3)
                .and_then(|r| inode_of_link(Path::new(r)))
            {
                live.insert(ino);
            }
        }
    }
    live
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_threads_namespace_is_live() {
        let me = current_inode().unwrap();
        assert!(live_inodes().contains(&me));
        assert_eq!(
            inode_of_link(Path::new("net:[4026531840]")),
            Some(4026531840)
        );
        assert_eq!(inode_of_link(Path::new("mnt:[4026531840]")), None);
    }
}
