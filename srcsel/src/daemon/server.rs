//! The control socket: `/run/srcsel/net-<cookie>.sock`, in a folder only
//! root can write, so no user can bind it first or stand in for the daemon;
//! a lock held for the daemon's life makes it one daemon per namespace.
//! Every connection is its own task under limits, so no client can stall
//! the event loop or grow the daemon without bound.
use std::{
    collections::HashMap,
    fs,
    io::{self, ErrorKind},
    os::{
        fd::AsRawFd as _,
        unix::fs::{
            DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
        },
    },
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use tokio::{net::UnixListener, sync::Notify};
use tracing::warn;

use crate::api::{self, RUNTIME_DIR};

/// Connections at once, in all (runs hold theirs while their command runs).
const MAX_CONNECTIONS: usize = 1024;
/// Connections at once from one user other than root.
const MAX_PER_USER: usize = 64;
/// Complaints about clients logged per minute; the rest are counted.
const COMPLAINTS_PER_MINUTE: u32 = 10;

pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    _lock: fs::File,
    pub conns: Arc<Conns>,
}

/// Refuses a runtime folder someone else made: it must be root's (or
/// ours) and writable by nobody else.
fn check_runtime_dir(dir: &Path) -> anyhow::Result<()> {
    match fs::DirBuilder::new().mode(0o755).create(dir) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => {
            return Err(e).with_context(|| format!("creating {}", dir.display()));
        }
        _ => {}
    }
    let m = fs::symlink_metadata(dir).with_context(|| dir.display().to_string())?;
    // SAFETY: plain getter.
    let me = unsafe { libc::geteuid() };
    if !m.is_dir() || (m.uid() != 0 && m.uid() != me) || m.mode() & 0o022 != 0 {
        bail!(
            "{} is not a folder of root's that only root can write (owner uid {}, mode {:o}): \
             someone else made it; remove it and start the daemon again",
            dir.display(),
            m.uid(),
            m.mode() & 0o7777
        );
    }
    Ok(())
}

impl Server {
    pub fn listen(cookie: u64) -> anyhow::Result<Self> {
        let dir = Path::new(RUNTIME_DIR);
        check_runtime_dir(dir)?;
        let lock_path = api::lock_path(cookie);
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&lock_path)
            .with_context(|| lock_path.display().to_string())?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let pid = api::client::daemon_pid().map_or(String::new(), |p| format!(" (pid {p})"));
            bail!(
                "another srcsel daemon{pid} runs in this network namespace (it holds {}); \
                 stop it first",
                lock_path.display()
            );
        }
        let path = api::socket_path(cookie);
        // Left by a daemon that was killed: we hold the lock, so it is stale.
        match fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing stale {}", path.display()));
            }
            _ => {}
        }
        let std = std::os::unix::net::UnixListener::bind(&path)
            .with_context(|| format!("binding {}", path.display()))?;
        // Anyone may connect; each request is checked against its sender.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666))?;
        std.set_nonblocking(true)?;
        Ok(Self {
            listener: UnixListener::from_std(std)?,
            path,
            _lock: lock,
            conns: Arc::new(Conns::default()),
        })
    }

    pub async fn accept(&self) -> io::Result<tokio::net::UnixStream> {
        self.listener.accept().await.map(|(s, _)| s)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Still under our lock: no other daemon's socket can be at this path.
        let _ = fs::remove_file(&self.path);
    }
}

/// Raises the soft open-files limit to the hard one, for many runs at once.
pub fn raise_fd_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max.min(65536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Open connections per user, the requests in progress, and a limit on
/// what misbehaving clients can make the daemon log.
#[derive(Default)]
pub struct Conns {
    state: Mutex<State>,
    idle: Notify,
}

#[derive(Default)]
struct State {
    per_uid: HashMap<u32, usize>,
    total: usize,
    /// Connections between accept and their reply (a run: its start).
    busy: usize,
    window: Option<Instant>,
    logged: u32,
    suppressed: u32,
}

/// A connection's place in the limits, given back on drop.
pub struct Slot {
    conns: Arc<Conns>,
    uid: u32,
    busy: bool,
}

impl Conns {
    /// Takes a slot for a connection from `uid`, or says why not.
    pub fn admit(self: &Arc<Self>, uid: u32, privileged: bool) -> Result<Slot, String> {
        let mut s = self.state.lock().expect("not poisoned");
        let mine = s.per_uid.get(&uid).copied().unwrap_or(0);
        if s.total >= MAX_CONNECTIONS {
            return Err(format!(
                "the daemon has {MAX_CONNECTIONS} connections open; try again"
            ));
        }
        if !privileged && mine >= MAX_PER_USER {
            return Err(format!(
                "uid {uid} has {MAX_PER_USER} connections to the daemon open (runs included)"
            ));
        }
        *s.per_uid.entry(uid).or_default() += 1;
        s.total += 1;
        s.busy += 1;
        Ok(Slot {
            conns: self.clone(),
            uid,
            busy: true,
        })
    }

    /// Logs a client's misbehaviour, at most a few times a minute.
    pub fn complain(&self, what: &str) {
        let mut s = self.state.lock().expect("not poisoned");
        let now = Instant::now();
        if s.window.is_none_or(|w| now - w > Duration::from_secs(60)) {
            if s.suppressed > 0 {
                warn!("{} more client errors were not logged", s.suppressed);
            }
            (s.window, s.logged, s.suppressed) = (Some(now), 0, 0);
        }
        if s.logged < COMPLAINTS_PER_MINUTE {
            s.logged += 1;
            warn!("{what}");
        } else {
            s.suppressed += 1;
        }
    }

    /// Waits (at most `limit`) until no request is in progress: runs that
    /// are being set up get their cgroup before the daemon stops.
    pub async fn drained(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            loop {
                let notified = self.idle.notified();
                if self.state.lock().expect("not poisoned").busy == 0 {
                    return;
                }
                notified.await;
            }
        })
        .await;
    }
}

impl Slot {
    /// The request is answered (a run now only waits for its end).
    pub fn done(&mut self) {
        if std::mem::take(&mut self.busy) {
            let mut s = self.conns.state.lock().expect("not poisoned");
            s.busy -= 1;
            if s.busy == 0 {
                self.conns.idle.notify_waiters();
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.done();
        let mut s = self.conns.state.lock().expect("not poisoned");
        s.total -= 1;
        if let Some(n) = s.per_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                s.per_uid.remove(&self.uid);
            }
        }
    }
}
