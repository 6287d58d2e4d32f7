//! Resetting a connection from outside its owner where SOCK_DESTROY is
//! missing: a duplicate of the owner's descriptor (pidfd_getfd), shut down
//! both ways, then closed. The program reads EOF and its writes fail with
//! EPIPE, while its own descriptor stays open and valid.
use std::{
    collections::HashSet,
    ffi::OsStr,
    fs, io,
    os::{
        fd::{AsRawFd as _, OwnedFd},
        unix::fs::MetadataExt as _,
    },
};

/// The socket inode a `/proc/PID/fd/N` link names ("socket:[12345]").
pub fn socket_inode(link: &OsStr) -> Option<u64> {
    link.to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Shuts down each socket in `inodes` through a process that holds it;
/// returns how many were shut down. Errors only when pidfd_getfd(2) does
/// not exist or /proc cannot be read; a process that refuses (EPERM without
/// CAP_SYS_PTRACE over it) or exits meanwhile is skipped with a warning.
pub fn shut_down(inodes: &HashSet<u64>) -> io::Result<usize> {
    let mut left = inodes.clone();
    let mut done = 0;
    for entry in fs::read_dir("/proc")? {
        if left.is_empty() {
            break;
        }
        let Some(pid) = entry
            .ok()
            .and_then(|e| e.file_name().to_str()?.parse::<u32>().ok())
        else {
            continue;
        };
        // Gone already, or a kernel thread: nothing to reset there.
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let mut pidfd = None;
        for fd in fds.flatten() {
            let inode = fs::read_link(fd.path())
                .ok()
                .and_then(|l| socket_inode(l.as_os_str()));
            let num = fd.file_name().to_str().and_then(|n| n.parse::<i32>().ok());
            let (Some(inode), Some(num)) = (inode, num) else {
                continue;
            };
            if !left.contains(&inode) {
                continue;
            }
            if pidfd.is_none() {
                match crate::kernel::peer::pidfd_open(pid) {
                    Ok(p) => pidfd = Some(p),
                    Err(_) => break, // exited
                }
            }
            let Some(p) = &pidfd else { break };
            match shut(p, num, inode) {
                Ok(Some(true)) => {
                    done += 1;
                    left.remove(&inode);
                }
                // Not connected any more: nothing left to reset.
                Ok(Some(false)) => {
                    left.remove(&inode);
                }
                Ok(None) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => return Err(e),
                Err(e) => {
                    let hint = if e.raw_os_error() == Some(libc::EPERM) {
                        " (needs CAP_SYS_PTRACE over it)"
                    } else {
                        ""
                    };
                    tracing::warn!("resetting socket {inode} of process {pid}: {e}{hint}");
                }
            }
        }
    }
    Ok(done)
}

/// Shuts down the process's descriptor `fd` both ways, provided it still is
/// socket `inode` (the process may have closed it, or exited and its number
/// been reused, since /proc was read). `Some(false)`: it was not connected.
fn shut(pidfd: &OwnedFd, fd: i32, inode: u64) -> io::Result<Option<bool>> {
    let dup = fs::File::from(pidfd_getfd(pidfd, fd)?);
    if dup.metadata()?.ino() != inode {
        return Ok(None);
    }
    // SAFETY: shutdown(2) on a descriptor we own.
    if unsafe { libc::shutdown(dup.as_raw_fd(), libc::SHUT_RDWR) } == 0 {
        return Ok(Some(true));
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOTCONN) {
        return Ok(Some(false));
    }
    Err(e)
}

/// A duplicate, in this process, of the descriptor `fd` of the pidfd's process.
fn pidfd_getfd(pidfd: &OwnedFd, fd: i32) -> io::Result<OwnedFd> {
    use rustix::process::{PidfdGetfdFlags, pidfd_getfd};
    Ok(pidfd_getfd(pidfd, fd, PidfdGetfdFlags::empty())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_socket_links() {
        assert_eq!(socket_inode(OsStr::new("socket:[12345]")), Some(12345));
        assert_eq!(
            socket_inode(OsStr::new("socket:[4294967296]")),
            Some(1 << 32)
        );
        for other in [
            "pipe:[12345]",
            "/dev/null",
            "socket:[]",
            "socket:[12",
            "anon_inode:[eventfd]",
        ] {
            assert_eq!(socket_inode(OsStr::new(other)), None, "{other}");
        }
    }

    #[test]
    fn finds_nothing_for_an_inode_nobody_holds() {
        // Inode 0 is never a socket's, so nothing is touched.
        assert_eq!(shut_down(&HashSet::from([0])).unwrap(), 0);
    }
}
