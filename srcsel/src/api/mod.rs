//! The control API between the CLI and the daemon: typed, versioned
//! messages, each one frame (a 4-byte big-endian length, then JSON) on a
//! Unix stream socket in a root-owned folder, one socket per network
//! namespace. The daemon checks the peer's credentials on every request.
pub mod client;
pub mod frame;

use std::{net::Ipv4Addr, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::{policy::Mode, status::Report};

/// Bumped when a message changes incompatibly; the daemon refuses other
/// versions with a message that says which side to restart.
pub const VERSION: u32 = 1;

/// A request is a few hundred bytes; anything larger is refused unread.
pub const MAX_REQUEST: usize = 4096;
/// A status reply lists every run and its pids; bounded all the same.
pub const MAX_REPLY: usize = 4 << 20;

/// Root-owned and not writable by others, so no user can bind (or pre-empt)
/// the daemon's socket.
pub const RUNTIME_DIR: &str = "/run/srcsel";

fn runtime_file(cookie: u64, ext: &str) -> PathBuf {
    PathBuf::from(RUNTIME_DIR).join(format!("net-{cookie}.{ext}"))
}

/// The socket of the network namespace with this cookie.
pub fn socket_path(cookie: u64) -> PathBuf {
    runtime_file(cookie, "sock")
}

/// Held (flock) by the namespace's daemon for its lifetime.
pub fn lock_path(cookie: u64) -> PathBuf {
    runtime_file(cookie, "lock")
}

/// Removes a namespace's socket and lock files once no daemon can hold
/// them (`srcsel down` refuses while one runs; a gone namespace has none),
/// and the folder when it is empty.
pub fn remove_runtime_files(cookie: u64) {
    let _ = std::fs::remove_file(socket_path(cookie));
    let _ = std::fs::remove_file(lock_path(cookie));
    let _ = std::fs::remove_dir(RUNTIME_DIR);
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Message<T> {
    pub version: u32,
    pub body: T,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// What srcsel has in force (`srcsel status`).
    Status,
    /// A DHCP client hook's lease (`srcsel lease`); root only.
    Lease {
        interface: String,
        gateway: Option<Ipv4Addr>,
        /// The lease's DNS servers (added within version 1; left out when
        /// empty, so a daemon from before takes the lease as it was).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        dns: Vec<Ipv4Addr>,
    },
    /// Put `pid`, a child of the caller waiting to exec the command, into a
    /// new cgroup assigned to `via`. The connection then stays open for the
    /// run; `End` (or the caller's exit) ends it.
    Run { via: String, mode: Mode, pid: u32 },
    /// The run's command has ended: kill what it left and remove its cgroup.
    End,
    /// Read the config again and apply it (`srcsel assign`); root only.
    Reload,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    Ok,
    Status(Box<Report>),
    Started {
        cgroup: String,
        /// For the user: the uplink is down, say what that means.
        warning: Option<String>,
    },
    /// The config the daemon read, and what it could not apply.
    Reloaded {
        config: String,
        problems: Vec<String>,
    },
    Error {
        kind: ErrorKind,
        message: String,
    },
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The caller may not do this; the message says who may and how.
    Refused,
    /// Malformed, oversized, too slow or of another version.
    BadRequest,
    /// Too many connections; try again.
    Busy,
    /// Allowed, but it failed (the uplink is not ready, the kernel said no).
    Failed,
}

impl Reply {
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        Reply::Error {
            kind,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_unknown_fields_are_refused() {
        let r = Message {
            version: VERSION,
            body: Request::Run {
                via: "usb0".into(),
                mode: Mode::Fallback,
                pid: 42,
            },
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"version":1,"body":{"run":{"via":"usb0","mode":"fallback","pid":42}}}"#
        );
        assert_eq!(serde_json::from_str::<Message<Request>>(&text).unwrap(), r);
        let lease = r#"{"version":1,"body":{"lease":{"interface":"eth0v0","gateway":null}}}"#;
        assert!(serde_json::from_str::<Message<Request>>(lease).is_ok());
        for bad in [
            r#"{"version":1,"body":"status","x":1}"#,
            r#"{"version":1,"body":{"run":{"via":"usb0","mode":"sideways","pid":1}}}"#,
            r#"{"version":1,"body":"down"}"#,
        ] {
            assert!(
                serde_json::from_str::<Message<Request>>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
