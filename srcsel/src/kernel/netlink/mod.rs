//! The rtnetlink adapter: one snapshot per pass, codecs, applying a plan's
//! route and rule changes, and the event stream the daemon reacts to.
//!
//! Netlink sockets belong to the network namespace of the thread that opens
//! them, so every handle is opened on the thread that uses it.
pub mod apply;
pub mod codec;
pub mod dump;
pub mod events;
pub mod rdnss;

pub use dump::Dump;

#[derive(Debug, thiserror::Error)]
#[error("netlink: {what}")]
pub struct NetlinkError {
    pub what: String,
    #[source]
    pub source: rtnetlink::Error,
}

pub(crate) fn err(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let what = what.into();
    move |source| NetlinkError { what, source }
}

/// A route-netlink handle for the calling thread's network namespace.
/// Must be called inside the runtime: the connection runs as a task of it.
pub fn connect() -> std::io::Result<rtnetlink::Handle> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(conn);
    Ok(handle)
}

/// Whether the calling thread's namespace has a link named `name`, by its
/// own name (not an altname, as passes read links): if_nametoindex(3) and
/// back, two ioctls where status needs no dump.
pub fn link_exists(name: &str) -> bool {
    let Ok(c_name) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return false;
    }
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: a buffer of IF_NAMESIZE bytes, as if_indextoname(3) needs.
    let named = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    // SAFETY: on success the buffer holds a NUL-terminated name.
    !named.is_null()
        && unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_bytes() == name.as_bytes()
}
