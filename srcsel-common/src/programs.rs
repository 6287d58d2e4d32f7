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
    /// `cgroup/connect6`
    Connect6,
    /// `cgroup/sendmsg6`
    Sendmsg6,
    /// `cgroup/recvmsg4`
    Recvmsg4,
    /// `cgroup/recvmsg6`
    Recvmsg6,
    /// `cgroup/setsockopt`
    Setsockopt,
    /// `cgroup/post_bind4`
    PostBind4,
    /// `cgroup/post_bind6`
    PostBind6,
    /// `cgroup_skb/egress`
    Egress,
    /// `cgroup_skb/ingress`
    Ingress,
}

impl Hook {
    /// The kernel's `enum bpf_attach_type` for the hook: what a link is made
    /// with, and the second half of a cgroup storage key.
    pub const fn attach_type(self) -> u32 {
        match self {
            Hook::Ingress => 0,
            Hook::Egress => 1,
            Hook::SockCreate => 2,
            Hook::PostBind4 => 12,
            Hook::PostBind6 => 13,
            Hook::Connect4 => 10,
            Hook::Connect6 => 11,
            Hook::Sendmsg4 => 14,
            Hook::Sendmsg6 => 15,
            Hook::Recvmsg4 => 19,
            Hook::Recvmsg6 => 20,
            Hook::Setsockopt => 22,
        }
    }

    /// systemd's name for it (`BPFProgram=TYPE:PATH` in a unit's drop-in).
    pub const fn systemd_name(self) -> &'static str {
        match self {
            Hook::SockCreate => "sock_create",
            Hook::Connect4 => "connect4",
            Hook::Sendmsg4 => "sendmsg4",
            Hook::Connect6 => "connect6",
            Hook::Sendmsg6 => "sendmsg6",
            Hook::Recvmsg4 => "recvmsg4",
            Hook::Recvmsg6 => "recvmsg6",
            Hook::Setsockopt => "setsockopt",
            Hook::PostBind4 => "post_bind4",
            Hook::PostBind6 => "post_bind6",
            Hook::Egress => "egress",
            Hook::Ingress => "ingress",
        }
    }
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
pub const CONNECT6: &str = "connect6";
pub const SENDMSG6: &str = "sendmsg6";
pub const RECVMSG4: &str = "recvmsg4";
pub const RECVMSG6: &str = "recvmsg6";
pub const SETSOCKOPT: &str = "setsockopt";
pub const POST_BIND4: &str = "post_bind4";
pub const POST_BIND6: &str = "post_bind6";
pub const EGRESS: &str = "count_egress";
pub const INGRESS: &str = "count_ingress";

/// Every program of an uplink's set, in attach order.
pub const ALL: [Program; 12] = [
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
        name: CONNECT6,
        hook: Hook::Connect6,
    },
    Program {
        name: SENDMSG6,
        hook: Hook::Sendmsg6,
    },
    Program {
        name: RECVMSG4,
        hook: Hook::Recvmsg4,
    },
    Program {
        name: RECVMSG6,
        hook: Hook::Recvmsg6,
    },
    Program {
        name: SETSOCKOPT,
        hook: Hook::Setsockopt,
    },
    Program {
        name: POST_BIND4,
        hook: Hook::PostBind4,
    },
    Program {
        name: POST_BIND6,
        hook: Hook::PostBind6,
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
