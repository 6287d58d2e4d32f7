//! srcsel's cgroups: `<cgroup2 mount>/srcsel/run-<pid>`, one per `srcsel run`.
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
    let info = fs::read_to_string("/proc/self/mountinfo")
        .map_err(io_err(Path::new("/proc/self/mountinfo")))?;
    mount_of(&info, "cgroup2").ok_or(CgroupError::NoMount)
}

/// The first mount point of filesystem type `fstype` in a mountinfo text.
pub fn mount_of(mountinfo: &str, fstype: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // `36 25 0:30 / /sys/fs/cgroup rw,... shared:9 - cgroup2 cgroup2 rw`
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split(' ').nth(4)?;
        (right.split(' ').next()? == fstype).then(|| PathBuf::from(unescape(mount_point)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(c as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out + rest
}

/// A cgroup made for one command; removed (with anything left in it) on drop.
pub struct RunCgroup {
    path: PathBuf,
    dir: fs::File,
}

impl RunCgroup {
    /// Creates `<root>/srcsel/run-<our pid>`.
    pub fn create(root: &Path) -> Result<Self, CgroupError> {
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
pub fn stale_runs(root: &Path) -> Vec<PathBuf> {
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

/// Removes run cgroups whose owner is gone, killing what they still hold.
pub fn remove_stale(root: &Path) -> Vec<(PathBuf, CgroupError)> {
    stale_runs(root)
        .into_iter()
        .filter_map(|p| remove_cgroup(&p).err().map(|e| (p, e)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 25 0:27 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
42 31 0:39 / /sys/fs/cgroup/cpu rw,relatime shared:11 - cgroup cgroup rw,cpu
50 25 0:44 / /sys/fs/bpf rw,relatime shared:18 - bpf bpf rw,mode=700
";

    #[test]
    fn finds_cgroup2_in_hybrid_layout() {
        assert_eq!(
            mount_of(HYBRID, "cgroup2"),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(mount_of(HYBRID, "bpf"), Some(PathBuf::from("/sys/fs/bpf")));
        assert_eq!(
            mount_of(HYBRID, "cgroup"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu"))
        );
    }

    #[test]
    fn no_cgroup2_after_ip_netns_exec() {
        let remounted = "100 99 0:50 / /sys rw,relatime - sysfs ns rw\n";
        assert_eq!(mount_of(remounted, "cgroup2"), None);
    }

    #[test]
    fn mount_points_are_unescaped() {
        let line = "41 31 0:38 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            mount_of(line, "cgroup2"),
            Some(PathBuf::from("/mnt/my cgroups"))
        );
    }

    #[test]
    fn run_owner_parses_only_run_cgroups() {
        assert_eq!(run_owner("run-1234"), Some(1234));
        assert_eq!(run_owner("usb0.slice"), None);
        assert_eq!(run_owner("run-x"), None);
    }
}
