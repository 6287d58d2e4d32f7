//! Loading an uplink's program set (one per uplink and mode, with the slot
//! and mode as globals), pinning it, and attaching it to a cgroup. The list
//! of programs is srcsel_common's: nothing here names a program.
use std::{
    fs,
    os::fd::{AsFd, BorrowedFd},
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr,
        CgroupSockAddrAttachType, CgroupSockAttachType, Program as AyaProgram, ProgramError,
    },
};
use srcsel_common::{
    STRICT_GLOBAL, UPLINK_ID_GLOBAL,
    programs::{self, Hook, Program},
};

use super::{BpfError, OBJECT, io_err, pins, registry::Namespace};
use crate::policy::Mode;

/// A loader that pins (and reuses) the object's maps under `maps_dir`.
pub(super) fn loader(maps_dir: &Path) -> EbpfLoader<'_> {
    let mut l = EbpfLoader::new();
    l.default_map_pin_directory(maps_dir);
    l
}

/// One uplink's pinned programs, in one mode.
pub struct ProgramSet {
    dir: PathBuf,
}

impl Namespace {
    /// Loads and pins the program set of uplink slot `id` unless it is pinned.
    pub fn ensure_programs(&self, name: &str, id: u32, mode: Mode) -> Result<ProgramSet, BpfError> {
        let set = ProgramSet {
            dir: self.dir.join(name).join(mode.as_str()),
        };
        if set.complete() {
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
                _ => return Err(err(ProgramError::UnexpectedProgramType)),
            }
            let path = set.dir.join(name);
            prog.pin(&path)
                .map_err(|source| BpfError::Pin { path, source })?;
        }
        Ok(set)
    }
}

/// A program attached to a cgroup through a bpf_link; detached when dropped.
#[allow(dead_code)] // held, never read: dropping it detaches
enum Link {
    Sock(CgroupSock),
    Addr(CgroupSockAddr),
    Skb(CgroupSkb),
}

/// A program set attached to a cgroup; detached when dropped.
pub struct Attached {
    _links: Vec<Link>,
}

impl ProgramSet {
    fn complete(&self) -> bool {
        programs::ALL.iter().all(|p| self.dir.join(p.name).exists())
    }

    /// Attaches the set to `cgroup` through bpf_links. Links are always
    /// multi-attach in the kernel, so other cgroup programs keep running.
    pub fn attach(&self, cgroup: impl AsFd) -> Result<Attached, BpfError> {
        let cg = cgroup.as_fd();
        let links = programs::ALL
            .iter()
            .map(|p| {
                attach_one(&self.dir.join(p.name), p.hook, cg).map_err(|source| BpfError::Program {
                    name: p.name,
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Attached { _links: links })
    }
}

fn attach_one(pin: &Path, hook: Hook, cg: BorrowedFd<'_>) -> Result<Link, ProgramError> {
    let single = CgroupAttachMode::Single;
    let addr = |kind| -> Result<Link, ProgramError> {
        let mut p = CgroupSockAddr::from_pin(pin, kind)?;
        p.attach(cg, single)?;
        Ok(Link::Addr(p))
    };
    let skb = |kind| -> Result<Link, ProgramError> {
        let mut p = CgroupSkb::from_pin(pin, kind)?;
        p.attach(cg, kind, single)?;
        Ok(Link::Skb(p))
    };
    match hook {
        Hook::SockCreate => {
            let mut p = CgroupSock::from_pin(pin, CgroupSockAttachType::SockCreate)?;
            p.attach(cg, single)?;
            Ok(Link::Sock(p))
        }
        Hook::Connect4 => addr(CgroupSockAddrAttachType::Connect4),
        Hook::Sendmsg4 => addr(CgroupSockAddrAttachType::UDPSendMsg4),
        Hook::Egress => skb(CgroupSkbAttachType::Egress),
        Hook::Ingress => skb(CgroupSkbAttachType::Ingress),
    }
}
