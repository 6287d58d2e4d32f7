//! Who is on the other end of a Unix socket, and moving a caller's child
//! into a cgroup without ever moving a process that is not that child.
//!
//! A pid names a process only while it lives (a number is reused once its
//! process is reaped), so every check is bracketed by a pidfd: opened first,
//! it refers to one process for good, and while that process has not been
//! reaped no other can hold its number. What is read about the pid between
//! two "still alive" checks of the pidfd is that process's.
use std::{
    fs,
    io::{self, Read as _, Write as _},
    os::fd::{AsFd, AsRawFd as _, OwnedFd},
    path::Path,
};

/// `SO_PEERCRED`: the peer's pid, uid and gid when it connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
}

pub fn credentials(sock: impl AsFd) -> io::Result<Credentials> {
    let empty = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let c = super::socket_option(sock, libc::SO_PEERCRED, empty)?;
    Ok(Credentials {
        pid: c.pid as u32,
        uid: c.uid,
        gid: c.gid,
    })
}

/// `SO_PEERGROUPS`: the peer's supplementary groups when it connected.
pub fn groups(sock: impl AsFd) -> io::Result<Vec<u32>> {
    let fd = sock.as_fd().as_raw_fd();
    let mut gids = vec![0u32; 64];
    loop {
        let mut len = (gids.len() * 4) as libc::socklen_t;
        // SAFETY: the buffer holds `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                gids.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc == 0 {
            gids.truncate(len as usize / 4);
            return Ok(gids);
        }
        let err = io::Error::last_os_error();
        // ERANGE: `len` now says how much is needed.
        if err.raw_os_error() != Some(libc::ERANGE) || len as usize <= gids.len() * 4 {
            return Err(err);
        }
        gids.resize(len as usize / 4, 0);
    }
}

/// What `/proc/<pid>/status` says about a process's parent and owner.
#[derive(Debug, PartialEq, Eq)]
pub struct ProcStatus {
    pub ppid: u32,
    /// Real, effective, saved and filesystem uid.
    pub uids: [u32; 4],
}

impl ProcStatus {
    pub fn parse(text: &str) -> Option<Self> {
        let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name));
        let ppid = field("PPid:")?.trim().parse().ok()?;
        let mut uids = [0; 4];
        let mut words = field("Uid:")?.split_whitespace();
        for u in &mut uids {
            *u = words.next()?.parse().ok()?;
        }
        Some(Self { ppid, uids })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("process {0} does not exist (any more)")]
    Gone(u32),
    #[error("process {pid} is not a child of the caller (pid {parent}) running as uid {uid}")]
    NotYours { pid: u32, parent: u32, uid: u32 },
    #[error("moving process {pid}: {source}")]
    Io {
        pid: u32,
        #[source]
        source: io::Error,
    },
}

/// A pidfd of process `pid` (which may then exit, but not be replaced).
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    use rustix::process::{Pid, PidfdFlags};
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    Ok(rustix::process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// Whether the pidfd's process has not been reaped (so still holds its pid).
/// EPERM (a daemon without CAP_KILL asking about another user's process)
/// still means it exists; only ESRCH means it is gone.
fn holds_pid(pidfd: &OwnedFd) -> bool {
    // SAFETY: signal 0 only checks; the pidfd is valid.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A file of /proc/PID: its size reads 0, so std would start 32 bytes at a
/// time; a page's buffer takes it in one read.
fn proc_file(pid: u32, name: &str) -> Option<String> {
    let mut text = String::with_capacity(4096);
    fs::File::open(format!("/proc/{pid}/{name}"))
        .and_then(|mut f| f.read_to_string(&mut text))
        .ok()?;
    Some(text)
}

/// The cgroup (v2 path, relative to the mount) `pid` is in.
fn cgroup_of(pid: u32) -> Option<String> {
    let text = proc_file(pid, "cgroup")?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

/// A caller's child, checked before it is moved into a run's cgroup: the
/// pidfd tells afterwards whether the number still names that process.
pub struct Child {
    pid: u32,
    pidfd: OwnedFd,
    /// Its cgroup before the move, to put back a process that took its number.
    from: Option<String>,
}

impl Child {
    /// `pid`, provided it is a child of `parent` and runs as `uid` (all four uids).
    pub fn check(pid: u32, parent: u32, uid: u32) -> Result<Self, MoveError> {
        let pidfd = pidfd_open(pid).map_err(|_| MoveError::Gone(pid))?;
        let status = proc_file(pid, "status").and_then(|s| ProcStatus::parse(&s));
        let from = cgroup_of(pid);
        if !holds_pid(&pidfd) {
            return Err(MoveError::Gone(pid));
        }
        let ours = status.is_some_and(|s| s.ppid == parent && s.uids.iter().all(|u| *u == uid));
        if !ours {
            return Err(MoveError::NotYours { pid, parent, uid });
        }
        Ok(Self { pid, pidfd, from })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Moves it into the cgroup whose `cgroup.procs` is `procs`.
    pub fn move_into(self, procs: &fs::File, cg_root: &Path) -> Result<(), MoveError> {
        write_pid(procs, self.pid).map_err(|source| MoveError::Io {
            pid: self.pid,
            source,
        })?;
        self.confirm(cg_root)
    }

    /// Whether it is (still the same process and) in cgroup `path`: systemd
    /// may place a pid elsewhere (its own cgroup root, another pid namespace).
    pub fn placed_in(&self, cg_root: &Path, path: &Path) -> bool {
        let Ok(rel) = path.strip_prefix(cg_root) else {
            return false;
        };
        let there = cgroup_of(self.pid).is_some_and(|c| Path::new(&c) == Path::new("/").join(rel));
        there && holds_pid(&self.pidfd)
    }

    /// After it was moved (by us or systemd): if it died meanwhile and its
    /// number was taken, whatever holds it now goes back where it was.
    pub fn confirm(self, cg_root: &Path) -> Result<(), MoveError> {
        if holds_pid(&self.pidfd) {
            return Ok(());
        }
        if let Some(from) = self.from {
            let back = cg_root
                .join(from.trim_start_matches('/'))
                .join("cgroup.procs");
            if let Ok(f) = fs::OpenOptions::new().write(true).open(back) {
                let _ = write_pid(&f, self.pid);
            }
        }
        Err(MoveError::Gone(self.pid))
    }
}

fn write_pid(mut procs: &fs::File, pid: u32) -> io::Result<()> {
    procs.write_all(pid.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_parent_and_uids() {
        let s = "Name:\tsh\nPid:\t7\nPPid:\t5\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(
            ProcStatus::parse(s),
            Some(ProcStatus {
                ppid: 5,
                uids: [1000; 4]
            })
        );
        assert_eq!(ProcStatus::parse("PPid:\t5\nUid:\t1 2\n"), None);
    }

    #[test]
    fn our_own_credentials_and_groups_come_back() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let c = credentials(&a).unwrap();
        assert_eq!(c.pid, std::process::id());
        // SAFETY: plain getters.
        assert_eq!(c.uid, unsafe { libc::geteuid() });
        groups(&a).unwrap();
    }
}
