//! The system's resolvers: read from resolv.conf for each pass, and a
//! watch that wakes the daemon when they may have changed:
//! /etc/resolv.conf rewritten in place, replaced (resolvconf, dhcpcd), or
//! the file its symlink points at replaced (NetworkManager's
//! /run/NetworkManager/resolv.conf, systemd-resolved's stub file). inotify
//! on the files (a write through a bind mount of one is seen only there)
//! and on their folders (a file created or renamed into place). A watch is
//! made anew after each change, to follow a replaced file.
use std::{
    ffi::{CString, OsString},
    io,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::{Path, PathBuf},
};

use tokio::io::unix::AsyncFd;

/// What programs read to find the system's resolvers.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The system's resolvers, as programs here read them; none without a
/// resolv.conf (then no query is redirected: there is none to move).
pub fn system_resolvers() -> Vec<std::net::IpAddr> {
    std::fs::read_to_string(RESOLV_CONF)
        .map(|text| crate::policy::dns::parse_resolv_conf(&text))
        .unwrap_or_default()
}

const DIR_MASK: u32 = libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_CREATE
    | libc::IN_DELETE;
const FILE_MASK: u32 = libc::IN_CLOSE_WRITE | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF;

pub struct ResolvWatch {
    fd: AsyncFd<OwnedFd>,
    /// The file names that matter, in any watched folder.
    names: Vec<OsString>,
    /// The watches on the files themselves: any event of theirs matters.
    files: Vec<i32>,
}

impl ResolvWatch {
    /// Watches `conf` (the path programs read) and, if it is a symlink, what
    /// it points at.
    pub fn new(conf: &Path) -> io::Result<Self> {
        // SAFETY: inotify_init1 returns a new descriptor or -1.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor we own from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut paths: Vec<PathBuf> = vec![conf.to_owned()];
        // What the symlink points at, even if it is not there yet.
        if let Ok(target) = std::fs::read_link(conf) {
            let target = conf.parent().unwrap_or(Path::new("/")).join(target);
            paths.push(std::fs::canonicalize(&target).unwrap_or(target));
        }
        let (mut names, mut files) = (Vec::new(), Vec::new());
        for path in &paths {
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                continue;
            };
            if watch(&fd, dir, DIR_MASK).is_some() {
                names.push(name.to_owned());
            }
            files.extend(watch(&fd, path, FILE_MASK));
        }
        Ok(Self {
            // SAFETY: an owned descriptor, neither replaced nor closed while registered.
            fd: unsafe { AsyncFd::register(fd)? },
            names,
            files,
        })
    }

    /// Returns once one of the files changed (after reading every event
    /// queued, so a burst of them is one wake-up).
    pub async fn changed(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        loop {
            let mut hit = false;
            super::drain(&self.fd, &mut buf, |read| {
                hit |= events(read).any(|(wd, name)| {
                    self.files.contains(&wd) || self.names.iter().any(|n| n.as_bytes() == name)
                });
            })
            .await?;
            if hit {
                return Ok(());
            }
        }
    }
}

/// Adds a watch on `path`; its descriptor, or None (missing, say).
fn watch(fd: &OwnedFd, path: &Path, mask: u32) -> Option<i32> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: a valid descriptor and C string.
    let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) };
    if wd < 0 {
        let e = io::Error::last_os_error();
        tracing::debug!("not watching {}: {e}", path.display());
        return None;
    }
    Some(wd)
}

/// The (watch, name) of each `struct inotify_event` in a buffer.
fn events(mut buf: &[u8]) -> impl Iterator<Item = (i32, &[u8])> {
    const HEADER: usize = size_of::<libc::inotify_event>();
    std::iter::from_fn(move || {
        if buf.len() < HEADER {
            return None;
        }
        let wd = i32::from_ne_bytes(buf[0..4].try_into().ok()?);
        let len = u32::from_ne_bytes(buf[12..16].try_into().ok()?) as usize;
        let name = buf.get(HEADER..HEADER + len)?;
        buf = &buf[HEADER + len..];
        let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
        Some((wd, &name[..end]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_from_the_kernels_records() {
        let mut buf = Vec::new();
        for (wd, name, padded) in [(1i32, "resolv.conf", 16), (2, "", 0)] {
            buf.extend_from_slice(&wd.to_ne_bytes());
            buf.extend_from_slice(&libc::IN_CLOSE_WRITE.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes()); // cookie
            buf.extend_from_slice(&(padded as u32).to_ne_bytes());
            let mut n = name.as_bytes().to_vec();
            n.resize(padded, 0);
            buf.extend_from_slice(&n);
        }
        let got: Vec<(i32, &[u8])> = events(&buf).collect();
        assert_eq!(got, [(1, b"resolv.conf".as_slice()), (2, b"".as_slice())]);
    }
}
