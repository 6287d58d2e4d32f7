//! Runs the user's command inside a cgroup and waits for it like a shell
//! would: same stdin/stdout/stderr and terminal, signals passed on, its exit
//! status returned (128+N when signal N killed it).
use std::{
    ffi::OsString,
    io,
    mem::MaybeUninit,
    os::{fd::AsRawFd, unix::process::CommandExt as _},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::kernel::cgroup::RunCgroup;

mod gate;
use gate::Gate;

/// Exit statuses for a command that could not be started, as in POSIX shells.
pub const NOT_FOUND: u8 = 127;
pub const NOT_EXECUTABLE: u8 = 126;

/// Signals srcsel passes on to the command (SIGCHLD tells it the command ended).
const HANDLED: [libc::c_int; 10] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGALRM,
    libc::SIGCONT,
    libc::SIGCHLD,
];

/// A signalfd receiving [`HANDLED`], which stay blocked while it lives.
struct Signals {
    fd: libc::c_int,
    old_mask: libc::sigset_t,
}

impl Signals {
    fn block() -> io::Result<Self> {
        // SAFETY: sigset manipulation on local, initialised sets.
        unsafe {
            let mut set = MaybeUninit::<libc::sigset_t>::zeroed().assume_init();
            libc::sigemptyset(&mut set);
            for s in HANDLED {
                libc::sigaddset(&mut set, s);
            }
            let mut old_mask = MaybeUninit::<libc::sigset_t>::zeroed().assume_init();
            if libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old_mask) != 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Self { fd, old_mask })
        }
    }

    fn next(&self) -> io::Result<libc::signalfd_siginfo> {
        // SAFETY: reading exactly one siginfo into a buffer of that size.
        unsafe {
            let mut info = MaybeUninit::<libc::signalfd_siginfo>::zeroed().assume_init();
            loop {
                let n = libc::read(
                    self.fd,
                    (&raw mut info).cast(),
                    size_of::<libc::signalfd_siginfo>(),
                );
                if n == size_of::<libc::signalfd_siginfo>() as isize {
                    return Ok(info);
                }
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        // SAFETY: restoring the mask saved in block(), closing our own fd.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.old_mask, std::ptr::null_mut());
            libc::close(self.fd);
        }
    }
}

/// How the command gets into its cgroup, before it execs.
pub enum Join<'a> {
    /// It writes itself into the cgroup (root, no daemon).
    Itself(&'a RunCgroup),
    /// It waits while `ask(pid)` (on a helper thread) has it moved: into a
    /// systemd scope.
    Moved(Box<dyn FnOnce(u32) -> anyhow::Result<()> + Send + 'a>),
    /// It asks to be moved itself, before exec: `ask(its pid)` on the
    /// daemon's connection it inherited, no thread and no hop through the
    /// parent. It goes on if `ask` says so; the note `ask` returns reaches
    /// `said`, in the parent.
    Asks {
        ask: Box<Ask>,
        said: &'a mut Vec<u8>,
    },
}

/// Runs in the forked child: the process must have no other thread then
/// (so the child may allocate); says whether to exec, and a note.
pub type Ask = dyn FnMut(u32) -> (bool, Vec<u8>) + Send + Sync;

/// The user `--user` runs the command as.
pub struct AsUser {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub env: [(&'static str, String); 4],
}

/// Starts `argv` in its cgroup (as `user`, if given) and waits for it;
/// returns its exit status.
pub fn run(argv: &[OsString], join: Join<'_>, user: Option<&AsUser>) -> anyhow::Result<u8> {
    let Some((program, args)) = argv.split_first() else {
        bail!("no command given")
    };
    let signals = Signals::block().context("blocking signals")?;
    // Orphans of the command (daemons, `cmd &`) are re-parented to us rather
    // than to PID 1, so we reap them (not every PID 1 does).
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
    let mut cmd = Command::new(program);
    cmd.args(args);
    let ids = user.map(|u| (u.uid, u.gid, u.groups.clone()));
    if let Some(u) = user {
        cmd.envs(u.env.iter().map(|(k, v)| (k, v)));
    }
    let (spawned, asked) = match join {
        Join::Itself(cg) => {
            let procs = cg.procs()?;
            let fd = procs.as_raw_fd();
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe { cmd.pre_exec(move || in_child(|| join_itself(fd), ids.as_ref())) };
            (cmd.spawn(), None)
        }
        Join::Moved(ask) => {
            let gate = Gate::new().context("making the pipes a run waits on")?;
            let child = gate.child_ends();
            // SAFETY: as above.
            unsafe { cmd.pre_exec(move || in_child(|| child.wait(), ids.as_ref())) };
            gate.open_with(ask, || cmd.spawn())
        }
        Join::Asks { mut ask, said } => {
            debug_assert_eq!(
                threads(),
                Some(1),
                "a child that asks needs a parent with one thread"
            );
            let note = gate::Note::new().context("making the pipe a run's child answers on")?;
            let end = note.child_end();
            // SAFETY: as above; `ask` allocates, which is safe in the child of
            // a process with one thread.
            unsafe { cmd.pre_exec(move || in_child(|| end.ask(&mut ask), ids.as_ref())) };
            let spawned = cmd.spawn();
            note.read_into(said);
            (spawned, None)
        }
    };
    if let Some(Err(e)) = asked {
        return Err(e);
    }
    let child = match spawned {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            eprintln!("srcsel: {}: command not found", program.to_string_lossy());
            return Ok(NOT_FOUND);
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            eprintln!("srcsel: {}: {e}", program.to_string_lossy());
            return Ok(NOT_EXECUTABLE);
        }
        Err(e) => {
            return Err(e).with_context(|| format!("starting {}", program.to_string_lossy()));
        }
    };
    wait_forwarding(child.id() as libc::pid_t, &signals)
}

/// This process's thread count, as /proc says (checked in debug builds).
fn threads() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:")?.trim().parse().ok())
}

/// In the child, before exec: join the cgroup (so the command's first
/// socket is covered), drop to the user, unblock signals.
fn in_child(
    join: impl FnOnce() -> io::Result<()>,
    ids: Option<&(u32, u32, Vec<u32>)>,
) -> io::Result<()> {
    join()?;
    // SAFETY: async-signal-safe calls on valid arguments.
    unsafe {
        if let Some((uid, gid, groups)) = ids
            && (libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setresgid(*gid, *gid, *gid) != 0
                || libc::setresuid(*uid, *uid, *uid) != 0)
        {
            return Err(io::Error::last_os_error());
        }
        let mut empty = MaybeUninit::<libc::sigset_t>::zeroed().assume_init();
        libc::sigemptyset(&mut empty);
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
    Ok(())
}

fn join_itself(procs_fd: libc::c_int) -> io::Result<()> {
    // SAFETY: write(2) on an fd we keep open until the child has exec'd.
    if unsafe { libc::write(procs_fd, b"0".as_ptr().cast(), 1) } != 1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn wait_forwarding(pid: libc::pid_t, signals: &Signals) -> anyhow::Result<u8> {
    loop {
        let info = signals.next().context("reading signals")?;
        let signo = info.ssi_signo as libc::c_int;
        if signo == libc::SIGCHLD {
            if let Some(code) = reap(pid)? {
                return Ok(code);
            }
            continue;
        }
        // Signals from the terminal (Ctrl-C, Ctrl-\, resize) reach the command
        // directly: it is in our process group. Pass on only those sent to us.
        if info.ssi_code == libc::SI_KERNEL || info.ssi_pid as libc::pid_t == pid {
            continue;
        }
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid, signo) };
    }
}

/// Reaps every child that has ended; the exit status of `pid` if it is one.
fn reap(pid: libc::pid_t) -> anyhow::Result<Option<u8>> {
    let mut main = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r == pid {
            main = Some(exit_code(status));
        } else if r <= 0 {
            let err = io::Error::last_os_error();
            if r < 0 && err.raw_os_error() != Some(libc::ECHILD) {
                return Err(err).context("waiting for the command");
            }
            return Ok(main);
        }
    }
}

/// Waits for every remaining child (orphans of the command that were killed
/// with its cgroup), so none is left a zombie.
pub fn reap_all() {
    // SAFETY: waitpid with a null status pointer; ECHILD ends the loop.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), 0) } > 0 {}
}

/// A wait status as a shell reports it.
pub fn exit_code(status: libc::c_int) -> u8 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status) as u8
    } else if libc::WIFSIGNALED(status) {
        128u8.wrapping_add(libc::WTERMSIG(status) as u8)
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_like_a_shell() {
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(libc::SIGKILL), 137);
        assert_eq!(exit_code(libc::SIGINT), 130);
    }
}
