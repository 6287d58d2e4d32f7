//! bpf(2) directly where aya 0.14 has no call: a pinned bpf_link for the
//! hook whose link it cannot hand over (cgroup sockopt: no `FdLink`
//! conversion), and the programs attached to a cgroup, whoever attached them.
use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    path::Path,
};

const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_LINK_CREATE: libc::c_long = 28;

fn bpf(cmd: libc::c_long, attr: &mut [u64; 8]) -> io::Result<libc::c_long> {
    // SAFETY: bpf(2) with a zeroed attr union larger than any command's here.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), size_of_val(attr)) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

/// Attaches `prog` to cgroup `cg` at `attach_type` through a new bpf_link
/// and pins the link at `pin`; the link lives as long as the pin.
pub fn attach_and_pin(
    prog: BorrowedFd<'_>,
    cg: BorrowedFd<'_>,
    attach_type: u32,
    pin: &Path,
) -> io::Result<()> {
    let mut attr = [0u64; 8];
    // link_create: prog_fd (u32), target_fd (u32), attach_type (u32), flags (u32).
    attr[0] = u64::from(prog.as_raw_fd() as u32) | (u64::from(cg.as_raw_fd() as u32) << 32);
    attr[1] = u64::from(attach_type);
    let fd = bpf(BPF_LINK_CREATE, &mut attr)?;
    // SAFETY: a descriptor the kernel just gave us.
    let link = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let path = CString::new(pin.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut attr = [0u64; 8];
    // obj_pin: pathname (u64), bpf_fd (u32).
    attr[0] = path.as_ptr() as u64;
    attr[1] = u64::from(link.as_raw_fd() as u32);
    bpf(BPF_OBJ_PIN, &mut attr)?;
    Ok(())
}

/// The ids of the programs attached to cgroup `cg` itself at `attach_type`
/// (not its ancestors'), by srcsel's links or anyone else (systemd's
/// `BPFProgram=`). A cgroup has at most 64 per hook (BPF_CGROUP_MAX_PROGS).
pub fn attached_ids(cg: BorrowedFd<'_>, attach_type: u32) -> io::Result<Vec<u32>> {
    let mut ids = [0u32; 64];
    // 64 bytes: since 6.16 the kernel also writes query.revision, at offset 56.
    let mut attr = [0u64; 8];
    // query: target_fd, attach_type, query_flags, attach_flags, prog_ids, prog_cnt.
    attr[0] = u64::from(cg.as_raw_fd() as u32) | (u64::from(attach_type) << 32);
    attr[2] = ids.as_mut_ptr() as u64;
    attr[3] = ids.len() as u64;
    // ENOSPC (more than fit) cannot happen at the kernel's cap; the ids
    // that fit are still copied.
    match bpf(BPF_PROG_QUERY, &mut attr) {
        Err(e) if e.raw_os_error() != Some(libc::ENOSPC) => return Err(e),
        _ => {}
    }
    let n = (attr[3] as u32 as usize).min(ids.len());
    Ok(ids[..n].to_vec())
}
