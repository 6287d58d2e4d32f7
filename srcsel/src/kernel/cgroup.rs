//! srcsel's cgroups: `<cgroup2 mount>/srcsel/net-<cookie>/run-<pid>`, one per
//! `srcsel run`, labelled with its assignment (a `user.srcsel` xattr).
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

/// The folder of a namespace's run cgroups: `<root>/srcsel/net-<cookie>`, so
/// that no srcsel ever lists, reaps or kills another namespace's runs.
pub fn runs_dir(root: &Path, cookie: u64) -> PathBuf {
    root.join(SUBTREE).join(format!("net-{cookie}"))
}

/// A cgroup made for one command.
pub struct RunCgroup {
    path: PathBuf,
    dir: fs::File,
}

impl RunCgroup {
    /// Creates `<runs_dir>/run-<owner>` for the `srcsel run` process
    /// `owner`, labelled with its assignment (`usb0 strict`) for `srcsel
    /// status`. An empty one of that name (left by a daemon that stopped
    /// while setting it up) is taken over.
    pub fn create(
        runs_dir: &Path,
        owner: u32,
        assignment: &Assignment,
    ) -> Result<Self, CgroupError> {
        let path = runs_dir.join(run_name(owner));
        // Another srcsel may remove the empty parents between our mkdirs.
        for _ in 0..10 {
            fs::create_dir_all(runs_dir).map_err(io_err(runs_dir))?;
            match fs::create_dir(&path) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) if e.kind() == ErrorKind::AlreadyExists && !populated(&path) => break,
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
        remove(&path)
    }
}

impl AsFd for RunCgroup {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }
}

pub fn populated(path: &Path) -> bool {
    fs::read_to_string(path.join("cgroup.events"))
        .map(|e| e.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

/// Kills the processes of a cgroup (`cgroup.kill`), waits for them to go, and
/// removes it, with srcsel's parent folders once they are empty.
pub fn remove(path: &Path) -> Result<(), CgroupError> {
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
    // Busy (another run's cgroup is inside) is fine: that run removes it.
    for parent in path.ancestors().skip(1).take(2) {
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

/// One `srcsel run`'s cgroup, as found in the runs folder.
#[derive(Debug)]
pub struct Run {
    pub path: PathBuf,
    /// The `srcsel run` process that made it.
    pub owner: u32,
    pub assignment: Option<Assignment>,
    pub pids: Vec<u32>,
}

impl Run {
    /// Its `srcsel run` is gone (killed, crashed): nothing will remove it.
    pub fn orphaned(&self) -> bool {
        !alive(self.owner)
    }
}

/// The run cgroups of one namespace, with their labels and processes.
pub fn runs(runs_dir: &Path) -> Vec<Run> {
    let Ok(entries) = fs::read_dir(runs_dir) else {
        return vec![];
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let owner = run_owner(e.file_name().to_str()?)?;
            let path = e.path();
            let procs = fs::read_to_string(path.join("cgroup.procs")).unwrap_or_default();
            Some(Run {
                owner,
                assignment: label(&path),
                pids: procs
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect(),
                path,
            })
        })
        .collect()
}

pub fn run_name(owner: u32) -> String {
    format!("{RUN_PREFIX}{owner}")
}

/// The pid in a run cgroup's name, if it is one.
pub fn run_owner(name: &str) -> Option<u32> {
    name.strip_prefix(RUN_PREFIX)?.parse().ok()
}

fn alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    unsafe {
        libc::kill(pid, 0) == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
}

/// Removes the cgroups of runs whose `srcsel run` died and whose command has
/// ended too. A command still running stays, steered: its programs are
/// attached through pinned links, which live as long as its cgroup does.
/// Returns the owners of the removed cgroups and those that failed.
pub fn reap(runs_dir: &Path) -> (Vec<u32>, Vec<(PathBuf, CgroupError)>) {
    let (mut removed, mut failed) = (Vec::new(), Vec::new());
    for run in runs(runs_dir) {
        if !run.orphaned() || populated(&run.path) {
            continue;
        }
        match remove(&run.path) {
            Ok(()) => removed.push(run.owner),
            Err(e) => failed.push((run.path, e)),
        }
    }
    (removed, failed)
}

/// Removes a folder of run cgroups that hold no process any more (a gone
/// namespace's); populated ones stay.
pub fn remove_empty(dir: &Path) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let _ = fs::remove_dir(e.path());
    }
    let _ = fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_owner_parses_only_run_cgroups() {
        assert_eq!(run_owner(&run_name(1234)), Some(1234));
        assert_eq!(run_owner("usb0.slice"), None);
        assert_eq!(run_owner("run-x"), None);
    }
}
