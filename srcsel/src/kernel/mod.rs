//! Thin adapters between policy and the kernel: rtnetlink, eBPF (bpffs,
//! maps, programs), cgroupfs, mounts, capabilities, socket peers and the
//! user database.
pub mod bpf;
pub mod cgroup;
pub mod mounts;
pub mod netlink;
pub mod netns;
pub mod peer;
pub mod privileges;
pub mod resolv;
pub mod sock_reset;
pub mod users;

/// A `SOL_SOCKET` option of plain-data type `T` (`SO_NETNS_COOKIE`, `SO_PEERCRED`).
pub fn socket_option<T: Copy>(
    sock: impl std::os::fd::AsFd,
    name: libc::c_int,
    mut value: T,
) -> std::io::Result<T> {
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: the buffer is a T and its length is T's size.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock.as_fd()),
            libc::SOL_SOCKET,
            name,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(value)
}

/// Runs netlink work on a single-threaded runtime, then returns to plain
/// threads (a run's command is supervised with blocking calls and a signalfd).
/// Waits until `fd` is readable, then reads what is queued, one read each,
/// into `each` until none is left. A netlink overrun (ENOBUFS) loses
/// messages, not the descriptor: reading goes on.
pub async fn drain(
    fd: &tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
    buf: &mut [u8],
    mut each: impl FnMut(&[u8]),
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let mut guard = fd.readable().await?;
    loop {
        // SAFETY: read(2) into a buffer of that length.
        let n = unsafe { libc::read(fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            each(&buf[..n as usize]);
            continue;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) => {
                guard.clear_ready();
                return Ok(());
            }
            Some(libc::ENOBUFS | libc::EINTR) => {}
            _ => return Err(e),
        }
    }
}

pub fn block_on<T>(f: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}
