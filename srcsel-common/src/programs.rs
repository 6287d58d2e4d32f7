//! The one list of srcsel's programs: the eBPF crate defines a function of
//! each name, and the loader loads, pins and attaches exactly these.

/// Where a program is attached on a cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// `cgroup/sock_create`
    SockCreate,
    /// `cgroup/connect4`
    Connect4,
    /// `cgroup/sendmsg4`
    Sendmsg4,
    /// `cgroup_skb/egress`
    Egress,
    /// `cgroup_skb/ingress`
    Ingress,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Program {
    /// The function's name in the eBPF object, and its pin's file name.
    pub name: &'static str,
    pub hook: Hook,
}

pub const SOCK_CREATE: &str = "sock_create";
pub const CONNECT4: &str = "connect4";
pub const SENDMSG4: &str = "sendmsg4";
pub const EGRESS: &str = "count_egress";
pub const INGRESS: &str = "count_ingress";

/// Every program of an uplink's set, in attach order.
pub const ALL: [Program; 5] = [
    Program {
        name: SOCK_CREATE,
        hook: Hook::SockCreate,
    },
    Program {
        name: CONNECT4,
        hook: Hook::Connect4,
    },
    Program {
        name: SENDMSG4,
        hook: Hook::Sendmsg4,
    },
    Program {
        name: EGRESS,
        hook: Hook::Egress,
    },
    Program {
        name: INGRESS,
        hook: Hook::Ingress,
    },
];
