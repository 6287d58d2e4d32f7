//! What a command's child does between fork and exec to be moved into its
//! cgroup. A [`Gate`]: it announces its pid on one pipe and waits for a word
//! on another while a helper thread has it moved (std's `spawn` returns only
//! after exec). A [`Note`]: it asks the daemon itself and tells the parent
//! what came of it.
use std::{
    fs::File,
    io::{self, Read as _, Write as _},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
    thread,
};

pub struct Gate {
    announce_r: OwnedFd,
    announce_w: OwnedFd,
    go_r: OwnedFd,
    go_w: OwnedFd,
}

/// The child's ends, as plain descriptors for `pre_exec`.
#[derive(Clone, Copy)]
pub struct ChildEnds {
    announce_w: RawFd,
    go_r: RawFd,
    /// The parent's ends, closed in the child so that a parent that gives
    /// no word reads as "no".
    parents: [RawFd; 2],
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two new descriptors, which we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors nobody else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Gate {
    pub fn new() -> io::Result<Self> {
        let (announce_r, announce_w) = pipe()?;
        let (go_r, go_w) = pipe()?;
        Ok(Self {
            announce_r,
            announce_w,
            go_r,
            go_w,
        })
    }

    pub fn child_ends(&self) -> ChildEnds {
        ChildEnds {
            announce_w: self.announce_w.as_raw_fd(),
            go_r: self.go_r.as_raw_fd(),
            parents: [self.announce_r.as_raw_fd(), self.go_w.as_raw_fd()],
        }
    }

    /// Runs `spawn` while a helper thread reads the child's pid, calls
    /// `ask(pid)` and lets the child go on only if it succeeded. Returns
    /// what `spawn` returned, and `ask`'s result if a child asked.
    pub fn open_with<T>(
        self,
        ask: Box<dyn FnOnce(u32) -> anyhow::Result<()> + Send + '_>,
        spawn: impl FnOnce() -> io::Result<T>,
    ) -> (io::Result<T>, Option<anyhow::Result<()>>) {
        let Gate {
            announce_r,
            announce_w,
            go_r,
            go_w,
        } = self;
        thread::scope(|s| {
            let helper = s.spawn(move || {
                let mut pid = [0u8; 4];
                File::from(announce_r).read_exact(&mut pid).ok()?;
                let asked = ask(u32::from_ne_bytes(pid));
                let word = if asked.is_ok() { b"y" } else { b"n" };
                let _ = File::from(go_w).write_all(word);
                Some(asked)
            });
            let spawned = spawn();
            // Our copies: with them gone, a child that never announced
            // (fork failed) reads as end of file to the helper.
            drop((announce_w, go_r));
            (spawned, helper.join().unwrap_or(None))
        })
    }
}

impl ChildEnds {
    /// In the child: announce, then wait for the word. Only
    /// async-signal-safe calls.
    pub fn wait(&self) -> io::Result<()> {
        // SAFETY: write/read/close on descriptors inherited from the parent.
        unsafe {
            for fd in self.parents {
                libc::close(fd);
            }
            let pid = libc::getpid().to_ne_bytes();
            if libc::write(self.announce_w, pid.as_ptr().cast(), 4) != 4 {
                return Err(io::Error::last_os_error());
            }
            let mut word = 0u8;
            if libc::read(self.go_r, (&raw mut word).cast(), 1) == 1 && word == b'y' {
                return Ok(());
            }
        }
        Err(io::Error::from_raw_os_error(libc::ECANCELED))
    }
}

/// The pipe a child that asks for itself writes its note on.
pub struct Note {
    read: OwnedFd,
    write: OwnedFd,
}

/// The child's end, as a plain descriptor for `pre_exec`.
#[derive(Clone, Copy)]
pub struct NoteEnd {
    write: RawFd,
    read: RawFd,
}

impl Note {
    pub fn new() -> io::Result<Self> {
        let (read, write) = pipe()?;
        Ok(Self { read, write })
    }

    pub fn child_end(&self) -> NoteEnd {
        NoteEnd {
            write: self.write.as_raw_fd(),
            read: self.read.as_raw_fd(),
        }
    }

    /// After `spawn` returned (the child has exec'd or ended): what it
    /// wrote. A note that cannot be read reads as none (the command is
    /// still waited for; its run ends when the connection closes).
    pub fn read_into(self, said: &mut Vec<u8>) {
        drop(self.write);
        if File::from(self.read).read_to_end(said).is_err() {
            said.clear();
        }
    }
}

impl NoteEnd {
    /// In the child: `ask(pid)`, its note to the parent, and whether to go on.
    pub fn ask(self, ask: &mut super::Ask) -> io::Result<()> {
        // SAFETY: getpid and close on our own descriptors.
        let pid = unsafe {
            libc::close(self.read);
            libc::getpid()
        };
        let (go_on, note) = ask(pid as u32);
        // SAFETY: the write end, open until exec; ManuallyDrop leaves it so.
        let mut w = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(self.write) });
        w.write_all(&note)?;
        if go_on {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(libc::ECANCELED))
        }
    }
}
