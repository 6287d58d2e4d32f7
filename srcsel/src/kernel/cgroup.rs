//! srcsel's cgroups: `<cgroup2 mount>/srcsel/run-<pid>`, one per `srcsel run`.
use crate::{kernel::mounts, policy::Assignment};
use std::{
    fs,
    io::{self, ErrorKind},
    os::fd::{AsFd, BorrowedFd},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

/// Folder under the cgroup2 mount that holds srcsel's cgroups.
pub const SUBTREE: &str = "srcsel";
const RUN_PREFIX: &str = "run-";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "no cgroup2 mount in this mount namespace (/proc/self/mountinfo lists none). \
         `ip netns exec` remounts /sys and hides it: enter the namespace with \
         `nsenter --net=/run/netns/NAME` instead, or mount one (`mount -t cgroup2 none /sys/fs/cgroup`)"
    )]
    NoMount,
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} still has processes after they were killed; remove it by hand once they exit")]
    Busy { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The cgroup2 mount point, from `/proc/self/mountinfo`.
pub fn cgroup2_mount() -> Result<PathBuf, CgroupError> {
    mounts::find("cgroup2")
        .map_err(io_err(Path::new(mounts::MOUNTINFO)))?
        .ok_or(CgroupError::NoMount)
}

/// A cgroup made for one command; removed (with anything left in it) on drop.
pub struct RunCgroup {
    path: PathBuf,
    dir: fs::File,
}

impl RunCgroup {
    /// Creates `<root>/srcsel/run-<our pid>`, labelled with its assignment
    /// (`usb0 strict`) for `srcsel status`.
    pub fn create(root: &Path, assignment: &Assignment) -> Result<Self, CgroupError> {
        let parent = root.join(SUBTREE);
        let path = parent.join(format!("{RUN_PREFIX}{}", std::process::id()));
        // Another run may remove the empty parent between our two mkdirs.
        for _ in 0..10 {
            match fs::create_dir(&parent) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(&parent)(e)),
            }
            match fs::create_dir(&path) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        // Best effort: cgroupfs has user xattrs since Linux 5.7.
        let _ = set_label(&path, &assignment.to_string());
        let dir = fs::File::open(&path).map_err(io_err(&path))?;
        Ok(Self { path, dir })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `cgroup.procs`, opened for writing: writing "0" moves the writer in.
    pub fn procs(&self) -> Result<fs::File, CgroupError> {
        let p = self.path.join("cgroup.procs");
        fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .map_err(io_err(&p))
    }

    /// Kills whatever is still in the cgroup and removes it.
    pub fn remove(self) -> Result<(), CgroupError> {
        let path = self.path.clone();
        drop(self.dir);
        remove_cgroup(&path)
    }
}

impl AsFd for RunCgroup {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }
}

fn populated(path: &Path) -> bool {
    fs::read_to_string(path.join("cgroup.events"))
        .map(|e| e.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

/// Kills the processes of a cgroup (`cgroup.kill`), waits for them to go, and
/// removes it; its parent too when that is srcsel's and now empty.
fn remove_cgroup(path: &Path) -> Result<(), CgroupError> {
    if populated(path) {
        let kill = path.join("cgroup.kill");
        fs::write(&kill, "1").map_err(io_err(&kill))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while populated(path) {
            if Instant::now() > deadline {
                return Err(CgroupError::Busy {
                    path: path.to_owned(),
                });
            }
            thread::sleep(Duration::from_millis(2));
        }
    }
    match fs::remove_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    if let Some(parent) = path.parent().filter(|p| p.ends_with(SUBTREE)) {
        // Busy (another run's cgroup is inside) is fine: that run removes it.
        let _ = fs::remove_dir(parent);
    }
    Ok(())
}

const LABEL: &std::ffi::CStr = c"user.srcsel";

fn set_label(path: &Path, label: &str) -> io::Result<()> {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: valid C strings and a buffer with its length.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            LABEL.as_ptr(),
            label.as_ptr().cast(),
            label.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The assignment a cgroup is labelled with, if any.
pub fn label(path: &Path) -> Option<Assignment> {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut buf = [0u8; 64];
    // SAFETY: valid C strings and a buffer with its length.
    let n = unsafe {
        libc::getxattr(
            p.as_ptr(),
            LABEL.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = usize::try_from(n).ok()?;
    String::from_utf8_lossy(&buf[..n]).parse().ok()
}

/// srcsel's run cgroups with their labels and processes.
pub fn runs(root: &Path) -> Vec<(PathBuf, Option<Assignment>, Vec<u32>)> {
    let Ok(entries) = fs::read_dir(root.join(SUBTREE)) else {
        return vec![];
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(run_owner)
                .is_some()
        })
        .map(|p| {
            let procs = fs::read_to_string(p.join("cgroup.procs")).unwrap_or_default();
            let pids = procs
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect();
            let label = label(&p);
            (p, label, pids)
        })
        .collect()
}

/// The pid in a run cgroup's name, if it is one.
pub fn run_owner(name: &str) -> Option<i32> {
    name.strip_prefix(RUN_PREFIX)?.parse().ok()
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe {
        libc::kill(pid, 0) == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
}

/// Run cgroups whose `srcsel run` died (kill -9, reboot of a container...).
fn stale_runs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root.join(SUBTREE)) else {
        return vec![];
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(run_owner)
                .is_some_and(|pid| !alive(pid))
        })
        .map(|e| e.path())
        .collect()
}

/// Removes run cgroups whose owner is gone, killing what they still hold;
/// returns how many there were and those that could not be removed.
pub fn remove_stale(root: &Path) -> (usize, Vec<(PathBuf, CgroupError)>) {
    let stale = stale_runs(root);
    let failed = stale
        .iter()
        .filter_map(|p| remove_cgroup(p).err().map(|e| (p.clone(), e)))
        .collect();
    (stale.len(), failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_owner_parses_only_run_cgroups() {
        assert_eq!(run_owner("run-1234"), Some(1234));
        assert_eq!(run_owner("usb0.slice"), None);
        assert_eq!(run_owner("run-x"), None);
    }
}
