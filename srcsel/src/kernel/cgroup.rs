//! srcsel's cgroups for runs, one folder per network namespace, one group
//! per assignment inside, one cgroup per run inside that:
//! - without systemd: `<cgroup2 mount>/srcsel/net-<cookie>/<uplink>:<mode>/run-<pid>`;
//! - under systemd, its units (it alone makes cgroups outside delegated
//!   subtrees): `srcsel.slice/srcsel-net<cookie>.slice/srcsel-net<cookie>-<uplink>:<mode>.slice/srcsel-run-<pid>.scope`,
//!   the uplink escaped as systemd escapes unit names (`-` nests slices).
//!
//! The group is the assignment: the uplink's programs are attached to it
//! once, and every run inside inherits them, so starting a run attaches
//! nothing (`:` is in no interface name).
use crate::{kernel::mounts, policy::Assignment};
use std::{
    fs,
    io::{self, ErrorKind},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

/// Folder under the cgroup2 mount that holds srcsel's cgroups.
pub const SUBTREE: &str = "srcsel";
/// Its place under systemd.
pub const SLICE: &str = "srcsel.slice";
const RUN_PREFIX: &str = "run-";
const SCOPE_PREFIX: &str = "srcsel-";

/// The group of runs with `assignment`, under a namespace's runs folder.
pub fn group_dir(runs_dir: &Path, a: &Assignment) -> PathBuf {
    match slice_stem(runs_dir) {
        Some(stem) => runs_dir.join(format!("{stem}-{}:{}.slice", escape(&a.via), a.mode)),
        None => runs_dir.join(format!("{}:{}", a.via, a.mode)),
    }
}

/// `srcsel-net<cookie>` of a runs folder under systemd.
fn slice_stem(runs_dir: &Path) -> Option<&str> {
    runs_dir.file_name()?.to_str()?.strip_suffix(".slice")
}

/// The assignment a group's name stands for.
fn group_of(name: &str) -> Option<Assignment> {
    let name = match name.strip_suffix(".slice") {
        Some(stem) => unescape(stem.rsplit_once('-')?.1)?,
        None => name.to_owned(),
    };
    let (via, mode) = name.rsplit_once(':')?;
    Some(Assignment {
        via: via.to_owned(),
        mode: mode.parse().ok()?,
    })
}

/// systemd's unit name escaping (`systemd-escape`): bytes other than
/// letters, digits, `_` and `.` (a leading one too) become `\xNN`.
fn escape(s: &str) -> String {
    let mut out = String::new();
    for (i, b) in s.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'_' || (b == b'.' && i > 0) {
            out.push(b as char);
        } else {
            out += &format!("\\x{b:02x}");
        }
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    let mut bytes = Vec::new();
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'\\' {
            let hex = tail.strip_prefix(b"x")?.get(..2)?;
            bytes.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            rest = &tail[3..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// Creates the group of `assignment` (and its parents) if needed.
pub fn ensure_group(runs_dir: &Path, a: &Assignment) -> Result<PathBuf, CgroupError> {
    let dir = group_dir(runs_dir, a);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    Ok(dir)
}

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

/// sd_booted(3): systemd is the init system, and makes the cgroups outside
/// delegated subtrees.
pub fn systemd_booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The folder of a namespace's run cgroups, so that no srcsel ever lists,
/// reaps or kills another namespace's runs: a slice of srcsel's under
/// systemd, srcsel's own subtree otherwise.
pub fn runs_dir(root: &Path, cookie: u64) -> PathBuf {
    if systemd_booted() {
        root.join(SLICE).join(format!("srcsel-net{cookie}.slice"))
    } else {
        plain_runs_dir(root, cookie)
    }
}

/// Every folder runs of this namespace may be in: the current layout's, and
/// the plain one's under systemd (runs made before an upgrade, or by a root
/// `srcsel run` that saw no systemd), so none is ever taken for something else.
pub fn all_runs_dirs(root: &Path, cookie: u64) -> Vec<PathBuf> {
    let (now, plain) = (runs_dir(root, cookie), plain_runs_dir(root, cookie));
    if now == plain {
        vec![now]
    } else {
        vec![now, plain]
    }
}

/// The runs folder without systemd: `<root>/srcsel/net-<cookie>`.
pub fn plain_runs_dir(root: &Path, cookie: u64) -> PathBuf {
    root.join(SUBTREE).join(format!("net-{cookie}"))
}

/// Whether runs in `runs_dir` are systemd scopes (systemd makes their cgroups).
pub fn runs_are_scopes(runs_dir: &Path) -> bool {
    slice_stem(runs_dir).is_some()
}

/// The systemd scope (unit name) of `owner`'s run.
pub fn scope_name(owner: u32) -> String {
    format!("{SCOPE_PREFIX}{}.scope", run_name(owner))
}

/// A cgroup made for one command.
pub struct RunCgroup {
    path: PathBuf,
}

impl RunCgroup {
    /// Creates `<group>/run-<owner>` for the `srcsel run` process `owner`.
    /// An empty one of that name (left by a daemon that stopped while
    /// setting it up) is taken over.
    pub fn create(group: &Path, owner: u32) -> Result<Self, CgroupError> {
        let path = group.join(run_name(owner));
        match fs::create_dir(&path) {
            Err(e) if e.kind() == ErrorKind::AlreadyExists && !populated(&path) => {}
            Err(e) => return Err(io_err(&path)(e)),
            Ok(()) => {}
        }
        Ok(Self { path })
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
        remove(&self.path)
    }
}

pub fn populated(path: &Path) -> bool {
    fs::read_to_string(path.join("cgroup.events"))
        .map(|e| e.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

/// Removes a cgroup that has no processes (or is gone already); false if
/// it has some, or the rmdir failed otherwise ([`remove`] then says why).
pub fn remove_if_empty(path: &Path) -> bool {
    rmdir(path).is_ok()
}

/// rmdir(2) of a cgroup; one already gone counts as removed.
fn rmdir(path: &Path) -> io::Result<()> {
    match fs::remove_dir(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        done => done,
    }
}

/// Kills the processes of a cgroup (`cgroup.kill`), waits for them to go, and
/// removes it. Its group stays, attached, for the next run.
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
    rmdir(path).map_err(io_err(path))
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

fn subdirs(dir: &Path) -> impl Iterator<Item = (String, PathBuf)> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.to_owned(), e.path())))
}

/// The run cgroups of one namespace, with their assignments and processes.
pub fn runs(runs_dir: &Path) -> Vec<Run> {
    let mut runs = Vec::new();
    for (name, group) in subdirs(runs_dir) {
        let assignment = group_of(&name);
        for (name, path) in subdirs(&group) {
            let Some(owner) = run_owner(&name) else {
                continue;
            };
            let procs = fs::read_to_string(path.join("cgroup.procs")).unwrap_or_default();
            runs.push(Run {
                owner,
                assignment: assignment.clone(),
                pids: procs
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect(),
                path,
            });
        }
    }
    runs
}

/// The processes of a cgroup and its descendants (at most 10000).
pub fn pids_below(path: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    let mut todo = vec![path.to_owned()];
    while let Some(dir) = todo.pop() {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        if pids.len() >= 10_000 {
            pids.truncate(10_000);
            break;
        }
        todo.extend(subdirs(&dir).map(|(_, p)| p));
    }
    pids.sort_unstable();
    pids
}

pub fn run_name(owner: u32) -> String {
    format!("{RUN_PREFIX}{owner}")
}

/// The pid in a run cgroup's name (or its scope's), if it is one.
pub fn run_owner(name: &str) -> Option<u32> {
    let name = match name.strip_suffix(".scope") {
        Some(scope) => scope.strip_prefix(SCOPE_PREFIX)?,
        None => name,
    };
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
pub fn remove_dead_runs(runs_dir: &Path) -> (Vec<u32>, Vec<(PathBuf, CgroupError)>) {
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

/// Removes a namespace's runs folder, its groups and their empty runs
/// (`srcsel down`, a gone namespace), and srcsel's top folder once empty;
/// populated cgroups stay.
pub fn remove_empty(runs_dir: &Path) {
    for (_, group) in subdirs(runs_dir) {
        for (_, run) in subdirs(&group) {
            let _ = fs::remove_dir(run);
        }
        let _ = fs::remove_dir(group);
    }
    let _ = fs::remove_dir(runs_dir);
    // srcsel.slice is systemd's to remove.
    if let Some(top) = runs_dir.parent().filter(|_| !runs_are_scopes(runs_dir)) {
        let _ = fs::remove_dir(top);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_carry_the_assignment() {
        let a: Assignment = "eth0.5 fallback".parse().unwrap();
        let dir = group_dir(Path::new("/x"), &a);
        assert_eq!(dir, Path::new("/x/eth0.5:fallback"));
        assert_eq!(group_of("eth0.5:fallback"), Some(a));
        assert_eq!(group_of("run-7"), None);
    }

    #[test]
    fn under_systemd_groups_are_slices_named_by_escaped_uplink() {
        let runs = Path::new("/cg/srcsel.slice/srcsel-net7.slice");
        assert!(runs_are_scopes(runs));
        assert!(!runs_are_scopes(&plain_runs_dir(Path::new("/cg"), 7)));
        let a: Assignment = "wan-1.5 strict".parse().unwrap();
        let dir = group_dir(runs, &a);
        let name = dir.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, r"srcsel-net7-wan\x2d1.5:strict.slice");
        assert_eq!(group_of(name), Some(a));
        assert_eq!(escape(".x"), r"\x2ex");
        assert_eq!(unescape(r"a\x2"), None);
        assert_eq!(run_owner(&scope_name(42)), Some(42));
        assert_eq!(run_owner("run-u42.scope"), None);
    }

    #[test]
    fn run_owner_parses_only_run_cgroups() {
        assert_eq!(run_owner(&run_name(1234)), Some(1234));
        assert_eq!(run_owner("usb0.slice"), None);
        assert_eq!(run_owner("run-x"), None);
    }
}
