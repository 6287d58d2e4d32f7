//! The CLI's side: finds this namespace's daemon, checks that root serves
//! the socket, and sends requests.
use std::{
    io,
    mem::ManuallyDrop,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, RawFd},
        unix::net::UnixStream,
    },
    path::{Path, PathBuf},
    time::Duration,
};

use super::{
    ErrorKind, MAX_REPLY, Message, Reply, Request, VERSION,
    frame::{self, FrameError},
};
use crate::kernel::{
    bpf::{BpfError, pins},
    peer,
};

/// Long enough for a first run's pass on a host with thousands of routes.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "the srcsel daemon closed the connection before replying (it stopped or restarted); \
         try again"
    )]
    Gone,
    #[error(
        "{} is held by uid {uid} (pid {pid}), not root, so it is not srcsel's daemon; \
         stop that process and restart the daemon", path.display()
    )]
    NotRoot { path: PathBuf, uid: u32, pid: u32 },
    #[error("{message}")]
    Daemon { kind: ErrorKind, message: String },
    #[error("the srcsel daemon's reply: {0}")]
    Frame(FrameError),
    #[error("talking to the srcsel daemon at {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Cookie(#[from] BpfError),
    #[error("the srcsel daemon replied {0}, which this srcsel does not expect here")]
    Unexpected(String),
}

pub struct Client {
    stream: UnixStream,
    path: PathBuf,
    /// The daemon's pid, from the socket's credentials.
    pub daemon_pid: u32,
}

impl Client {
    /// Connects to this namespace's daemon; `None` when none listens.
    pub fn connect() -> Result<Option<Self>, ClientError> {
        let path = super::socket_path(pins::netns_cookie()?);
        let io_err = |source| ClientError::Io {
            path: path.clone(),
            source,
        };
        let stream = match UnixStream::connect(&path) {
            Ok(s) => s,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ECONNREFUSED)) => {
                return Ok(None);
            }
            Err(e) => return Err(io_err(e)),
        };
        let cred = peer::credentials(&stream).map_err(io_err)?;
        if cred.uid != 0 {
            return Err(ClientError::NotRoot {
                path,
                uid: cred.uid,
                pid: cred.pid,
            });
        }
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(io_err)?;
        stream
            .set_write_timeout(Some(REPLY_TIMEOUT))
            .map_err(io_err)?;
        Ok(Some(Self {
            stream,
            path,
            daemon_pid: cred.pid,
        }))
    }

    /// Sends `request` and returns the reply; an error reply is an error.
    pub fn request(&mut self, request: Request) -> Result<Reply, ClientError> {
        exchange(&self.stream, &self.path, request)
    }

    /// This connection as a child forked from here may use it before exec.
    pub fn inherited(&self) -> Inherited {
        Inherited {
            fd: self.stream.as_raw_fd(),
            path: self.path.clone(),
        }
    }
}

/// The connection as a forked child sees it: the same socket, inherited
/// (close-on-exec, so the command never holds it). The parent does not use
/// it until the child has exec'd.
pub struct Inherited {
    fd: RawFd,
    path: PathBuf,
}

impl Inherited {
    /// In the child: one request on the parent's connection.
    ///
    /// # Safety
    /// Only in a child forked while the [`Client`] lived, before exec: the
    /// descriptor is the parent's copy, open there (and not reused).
    pub unsafe fn request(&self, request: Request) -> Result<Reply, ClientError> {
        // SAFETY: open, per the contract; ManuallyDrop leaves it so.
        let stream = ManuallyDrop::new(unsafe { UnixStream::from_raw_fd(self.fd) });
        exchange(&stream, &self.path, request)
    }
}

fn exchange(mut stream: &UnixStream, path: &Path, request: Request) -> Result<Reply, ClientError> {
    let msg = Message {
        version: VERSION,
        body: request,
    };
    let gone = |e: &io::Error| {
        matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::UnexpectedEof
        )
    };
    // A daemon that refused at once (busy) wrote why and closed: its
    // reply is still there to read when our request can no longer go.
    if let Err(e) = frame::write(&mut stream, &msg)
        && !gone(&e)
    {
        return Err(ClientError::Io {
            path: path.to_owned(),
            source: e,
        });
    }
    match frame::read::<Message<Reply>>(&mut stream, MAX_REPLY) {
        Ok(Message {
            body: Reply::Error { kind, message },
            ..
        }) => Err(ClientError::Daemon { kind, message }),
        Ok(m) => Ok(m.body),
        Err(FrameError::Closed) => Err(ClientError::Gone),
        Err(FrameError::Io(e)) if gone(&e) => Err(ClientError::Gone),
        Err(e) => Err(ClientError::Frame(e)),
    }
}

/// The pid of this namespace's daemon, if one listens (it sees a connection
/// that sends nothing, and logs nothing about it).
pub fn daemon_pid() -> Option<u32> {
    Client::connect().ok().flatten().map(|c| c.daemon_pid)
}
