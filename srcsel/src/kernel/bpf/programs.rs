//! Loading an uplink's program set (one per uplink and mode, with the slot
//! and mode as globals), pinning it, and attaching it to a cgroup. The list
//! of programs is srcsel_common's: nothing here names a program.
use std::{
    fs,
    os::fd::{AsFd as _, BorrowedFd},
    path::{Path, PathBuf},
};

use aya::{
    Ebpf,
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr,
        CgroupSockAddrAttachType, CgroupSockAttachType, CgroupSockopt, CgroupSockoptAttachType,
        Program as AyaProgram, ProgramError, ProgramInfo,
        links::{FdLink, LinkError},
    },
};
use srcsel_common::{
    STRICT_GLOBAL, UPLINK_ID_GLOBAL,
    programs::{self, Hook, Program},
};

use super::{BpfError, OBJECT, io_err, loader, namespace::Namespace, pins};
use crate::policy::{Assignment, Mode};

/// One uplink's pinned programs, in one mode.
pub struct ProgramSet {
    pub(super) dir: PathBuf,
    /// The namespace's folder, where attachments pin their links.
    pub(super) ns_dir: PathBuf,
    pub(super) assignment: Assignment,
}

impl Namespace {
    /// Loads and pins the program set of uplink slot `id` unless it is pinned.
    pub fn ensure_programs(&self, name: &str, id: u32, mode: Mode) -> Result<ProgramSet, BpfError> {
        let assignment = Assignment {
            via: name.to_owned(),
            mode,
        };
        let set = ProgramSet {
            dir: set_dir(&self.dir, &assignment),
            ns_dir: self.dir.clone(),
            assignment,
        };
        if all_pinned(&set.dir) {
            return Ok(set);
        }
        // A set half-pinned by a crashed run is replaced whole.
        let _ = pins::remove_tree(&set.dir);
        fs::create_dir_all(&set.dir).map_err(io_err(&set.dir))?;
        let strict = u32::from(mode.is_strict());
        let mut ebpf: Ebpf = loader(&self.dir.join("maps"))
            .override_global(UPLINK_ID_GLOBAL, &id, true)
            .override_global(STRICT_GLOBAL, &strict, true)
            .load(OBJECT)?;
        for Program { name, .. } in programs::ALL {
            let err = |source| BpfError::Program { name, source };
            let prog = ebpf
                .program_mut(name)
                .ok_or(err(ProgramError::UnexpectedProgramType))?;
            match prog {
                AyaProgram::CgroupSock(p) => p.load().map_err(err)?,
                AyaProgram::CgroupSockAddr(p) => p.load().map_err(err)?,
                AyaProgram::CgroupSkb(p) => p.load().map_err(err)?,
                AyaProgram::CgroupSockopt(p) => p.load().map_err(err)?,
                _ => return Err(err(ProgramError::UnexpectedProgramType)),
            }
            let path = set.dir.join(name);
            prog.pin(&path)
                .map_err(|source| BpfError::Pin { path, source })?;
        }
        Ok(set)
    }
}

/// Where the set of `a` is pinned in the namespace's folder `ns_dir`.
pub(super) fn set_dir(ns_dir: &Path, a: &Assignment) -> PathBuf {
    ns_dir.join(pins::pin_name(&a.via)).join(a.mode.as_str())
}

/// Whether the set of `a` is attached to the cgroup at `cgroup` itself now,
/// as the kernel says (srcsel's links, or systemd's `BPFProgram=`): its
/// connect4 program is among the cgroup's.
pub fn attached_to(ns_dir: &Path, a: &Assignment, cgroup: &Path) -> bool {
    attachments(ns_dir, a, cgroup) > 0
}

/// How many times `a`'s set is attached to `cgroup` (srcsel's links and
/// systemd's `BPFProgram=` each count), as the kernel lists its programs.
pub fn attachments(ns_dir: &Path, a: &Assignment, cgroup: &Path) -> usize {
    let pin = set_dir(ns_dir, a).join(programs::CONNECT4);
    let info = match ProgramInfo::from_pin(&pin) {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!("{}: {e}", pin.display());
            return 0;
        }
    };
    fs::File::open(cgroup)
        .and_then(|cg| super::syscall::attached_ids(cg.as_fd(), Hook::Connect4.attach_type()))
        .inspect_err(|e| tracing::debug!("programs of {}: {e}", cgroup.display()))
        .map_or(0, |ids| ids.iter().filter(|id| **id == info.id()).count())
}

/// Whether `dir` holds a pin of each program's name (its programs, or the
/// links attaching them).
pub(super) fn all_pinned(dir: &Path) -> bool {
    pins::holds_all(dir, programs::ALL.iter().map(|p| p.name))
}

/// Attaches one pinned program through a bpf_link pinned at `link_pin`.
pub(super) fn attach_one(
    p: &Program,
    pin: &Path,
    cg: BorrowedFd<'_>,
    link_pin: &Path,
) -> Result<(), BpfError> {
    let err = |source| BpfError::Program {
        name: p.name,
        source,
    };
    if p.hook == Hook::Setsockopt {
        // aya 0.14 cannot hand this hook's link over as an FdLink.
        let x = CgroupSockopt::from_pin(pin, CgroupSockoptAttachType::Set).map_err(err)?;
        let prog = x.fd().map_err(err)?;
        return super::syscall::attach_and_pin(prog.as_fd(), cg, p.hook.attach_type(), link_pin)
            .map_err(io_err(link_pin));
    }
    let link = link_for(p, pin, cg)?;
    link.pin(link_pin).map_err(|source| BpfError::Pin {
        path: link_pin.to_owned(),
        source,
    })?;
    Ok(())
}

/// Attaches one pinned program through a bpf_link and hands the link over.
fn link_for(p: &Program, pin: &Path, cg: BorrowedFd<'_>) -> Result<FdLink, BpfError> {
    let single = CgroupAttachMode::Single;
    let prog = |source| BpfError::Program {
        name: p.name,
        source,
    };
    let fd = |link: Result<FdLink, LinkError>| {
        link.map_err(|source| BpfError::Link {
            name: p.name,
            source,
        })
    };
    let addr = |kind| {
        let mut x = CgroupSockAddr::from_pin(pin, kind).map_err(prog)?;
        let id = x.attach(cg, single).map_err(prog)?;
        fd(x.take_link(id).map_err(prog)?.try_into())
    };
    let skb = |kind| {
        let mut x = CgroupSkb::from_pin(pin, kind).map_err(prog)?;
        let id = x.attach(cg, kind, single).map_err(prog)?;
        fd(x.take_link(id).map_err(prog)?.try_into())
    };
    let sock = |kind| {
        let mut x = CgroupSock::from_pin(pin, kind).map_err(prog)?;
        let id = x.attach(cg, single).map_err(prog)?;
        fd(x.take_link(id).map_err(prog)?.try_into())
    };
    match p.hook {
        Hook::SockCreate => sock(CgroupSockAttachType::SockCreate),
        Hook::PostBind4 => sock(CgroupSockAttachType::PostBind4),
        Hook::PostBind6 => sock(CgroupSockAttachType::PostBind6),
        Hook::Connect4 => addr(CgroupSockAddrAttachType::Connect4),
        Hook::Sendmsg4 => addr(CgroupSockAddrAttachType::UDPSendMsg4),
        Hook::Connect6 => addr(CgroupSockAddrAttachType::Connect6),
        Hook::Sendmsg6 => addr(CgroupSockAddrAttachType::UDPSendMsg6),
        Hook::Recvmsg4 => addr(CgroupSockAddrAttachType::UDPRecvMsg4),
        Hook::Recvmsg6 => addr(CgroupSockAddrAttachType::UDPRecvMsg6),
        Hook::Setsockopt => unreachable!("attached by attach_one"),
        Hook::Egress => skb(CgroupSkbAttachType::Egress),
        Hook::Ingress => skb(CgroupSkbAttachType::Ingress),
    }
}
