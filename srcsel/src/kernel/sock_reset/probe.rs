//! Trying a method on a loopback connection of srcsel's own: found in the
//! dump by its exact addresses and ports (never by mark alone, so nobody
//! else's connection is touched), reset, then checked from its own end.
use std::{
    io::{self, Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsFd,
    time::Duration,
};

use super::{Method, ResetError, diag::Diag, matching, reset_socks};

pub const CAP_SYS_PTRACE: u32 = 19;

/// A mark outside srcsel's bits, to see that the dump reports marks.
const PROBE_MARK: u32 = 0x0053_5253;

const NO_MARKS: &str = "sock_diag shows no socket marks (needs CAP_NET_ADMIN), \
    so no connection can be told to be an uplink's";

pub fn has_cap(cap: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| crate::kernel::privileges::effective_caps(&s))
        .is_some_and(|caps| caps & (1 << cap) != 0)
}

/// A connected pair and its listener, all closed on drop.
pub struct Pair {
    pub client: TcpStream,
    pub server: TcpStream,
    _listener: TcpListener,
}

impl Pair {
    /// Listens on `listen` and connects to the same port at `dest` (the
    /// same address, or its v4-mapped form).
    pub fn open(listen: IpAddr, dest: IpAddr) -> io::Result<Self> {
        let listener = TcpListener::bind((listen, 0))?;
        let to = SocketAddr::new(dest, listener.local_addr()?.port());
        let client = TcpStream::connect_timeout(&to, Duration::from_secs(1))?;
        let (server, _) = listener.accept()?;
        Ok(Self {
            client,
            server,
            _listener: listener,
        })
    }

    /// Whether a byte gets through each way.
    pub fn alive(&mut self) -> io::Result<()> {
        self.server.write_all(b"x")?;
        if self.client_read()? != 1 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.client.write_all(b"y")?;
        self.server
            .set_read_timeout(Some(Duration::from_millis(500)))?;
        self.server.read_exact(&mut [0])
    }

    /// How the client's next read ends: `Ok(0)` for EOF, an error
    /// (`TimedOut`/`WouldBlock`: still connected) otherwise.
    pub fn client_read(&mut self) -> io::Result<usize> {
        self.client
            .set_read_timeout(Some(Duration::from_millis(500)))?;
        self.client.read(&mut [0; 16])
    }
}

pub fn set_mark(sock: impl AsFd, mark: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: setsockopt(2) with a u32 of its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MARK,
            (&raw const mark).cast(),
            size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the client's read shows that `method` reset its connection.
pub fn ended_by(method: Method, read: &io::Result<usize>) -> bool {
    match (method, read) {
        (Method::SockDestroy, Err(e)) => e.raw_os_error() == Some(libc::ECONNABORTED),
        (Method::PidfdGetfd, Ok(0)) => true,
        _ => false,
    }
}

pub fn try_method(method: Method) -> Result<(), String> {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut pair = Pair::open(lo, lo)
        .map_err(|e| format!("no loopback connection to try it on (is lo up?): {e}"))?;
    // Without CAP_NET_ADMIN this fails, and the dump below says what that means.
    let marked = set_mark(&pair.client, PROBE_MARK).is_ok();
    let (local, remote) = (pair.client.local_addr(), pair.client.peer_addr());
    let (Ok(local), Ok(remote)) = (local, remote) else {
        return Err("the loopback connection has no addresses".into());
    };
    let mut diag = Diag::open().map_err(|e| chain(ResetError::Open(e)))?;
    let socks =
        matching(&mut diag, |s| s.local() == local && s.remote() == remote).map_err(chain)?;
    let [sock] = socks.as_slice() else {
        return Err(format!(
            "sock_diag lists the connection {local} -> {remote} {} times",
            socks.len()
        ));
    };
    match sock.mark {
        None => return Err(NO_MARKS.into()),
        Some(m) if marked && m != PROBE_MARK => {
            return Err(format!(
                "sock_diag reports mark {m:#x} for one of {PROBE_MARK:#x}"
            ));
        }
        Some(_) => {}
    }
    // So that an ended read below means the reset, not a broken pair.
    pair.alive()
        .map_err(|e| format!("the loopback connection carries no data: {e}"))?;
    let n = reset_socks(method, &mut diag, &socks).map_err(chain)?;
    let read = pair.client_read();
    if n != 1 || !ended_by(method, &read) {
        let expected = if method == Method::SockDestroy {
            "ECONNABORTED"
        } else {
            "EOF"
        };
        return Err(format!(
            "{n} of 1 connection reset, whose read then gave {read:?}, not {expected}"
        ));
    }
    Ok(())
}

/// An error with its causes, on one line.
fn chain(e: impl std::error::Error + Send + Sync + 'static) -> String {
    format!("{:#}", anyhow::Error::new(e))
}
