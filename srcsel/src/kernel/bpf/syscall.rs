//! bpf(2) directly where aya 0.14 has no call: a pinned bpf_link for the
//! hook whose link it cannot hand over (cgroup sockopt: no `FdLink`
//! conversion), the programs attached to a cgroup, whoever attached them,
//! and a whole array map read in one call.
use std::{
    ffi::CString,
    io,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    path::Path,
};

use aya::maps::{Array, IterableMap as _, MapData};

const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
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

/// Every value of the array map `map`, in one call rather than one per
/// key (Linux 5.6). aya checked its value size against `V` when it was
/// opened: the kernel writes exactly `len × size_of::<V>()` bytes.
pub fn array_values<V: aya::Pod>(map: &Array<MapData, V>) -> io::Result<Vec<V>> {
    let max = map.len();
    let fd = map.map().fd().as_fd();
    // SAFETY: Pod values are plain data; all zeroes is a value.
    let mut values: Vec<V> = (0..max).map(|_| unsafe { std::mem::zeroed() }).collect();
    let mut keys = vec![0u32; max as usize];
    let mut next = 0u32;
    let mut attr = [0u64; 8];
    // batch: in_batch (none: from the start), out_batch, keys, values,
    // count (u32), map_fd (u32), elem_flags, flags.
    attr[1] = (&raw mut next) as u64;
    attr[2] = keys.as_mut_ptr() as u64;
    attr[3] = values.as_mut_ptr() as u64;
    attr[4] = u64::from(max) | (u64::from(fd.as_raw_fd() as u32) << 32);
    // ENOENT: the map ended before `max` (the count says how many came).
    match bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) {
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
        _ => {}
    }
    let n = (attr[4] as u32).min(max) as usize;
    if keys[..n].iter().enumerate().any(|(i, k)| *k as usize != i) {
        return Err(io::Error::other("an array's batch came out of order"));
    }
    values.truncate(n);
    Ok(values)
}
