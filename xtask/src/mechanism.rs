//! The bare mechanism a run is measured against (`xtask mechanism-run`,
//! used by bench): mkdir a cgroup, attach one program through a bpf_link,
//! start `true` in it (the child joins before exec), wait, remove the
//! cgroup. And the bare steering peer: a `sock_create` program that sets
//! `bound_dev_if`, as `ip vrf exec` loads. Raw syscalls, nothing of srcsel's code.
use std::{
    ffi::CString,
    fs, io,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::process::CommandExt as _,
    },
    path::Path,
    process::Command,
};

use anyhow::{Context as _, bail};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_CGROUP_SKB: u64 = 8;
const BPF_PROG_TYPE_CGROUP_SOCK: u64 = 9;
const BPF_CGROUP_INET_EGRESS: u32 = 1;
const BPF_CGROUP_INET_SOCK_CREATE: u32 = 2;

pub fn bpf(cmd: libc::c_long, attr: &mut [u64]) -> io::Result<i32> {
    // SAFETY: bpf(2) with a zeroed attr union of ample size.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), size_of_val(attr)) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd as i32)
}

/// The pinned object at `pin`.
pub fn obj_get(pin: &Path) -> anyhow::Result<OwnedFd> {
    let path = CString::new(pin.as_os_str().as_encoded_bytes())?;
    let mut attr = [0u64; 8];
    attr[0] = path.as_ptr() as u64;
    let fd =
        bpf(BPF_OBJ_GET, &mut attr).with_context(|| format!("BPF_OBJ_GET {}", pin.display()))?;
    // SAFETY: a descriptor bpf(2) just made, owned from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One run of `true` under program `pin`, in a new cgroup under `parent`.
pub fn run(pin: &Path, parent: &Path) -> anyhow::Result<()> {
    let cg = parent.join(format!("m-{}", std::process::id()));
    fs::create_dir(&cg).with_context(|| cg.display().to_string())?;
    let result = (|| {
        let dir = fs::File::open(&cg)?;
        let prog = obj_get(pin)?;
        let mut attr = [0u64; 8];
        attr[0] = u64::from(prog.as_raw_fd() as u32) | (u64::from(dir.as_raw_fd() as u32) << 32);
        attr[1] = u64::from(BPF_CGROUP_INET_SOCK_CREATE);
        let link = bpf(BPF_LINK_CREATE, &mut attr).context("BPF_LINK_CREATE")?;
        let procs = fs::OpenOptions::new()
            .write(true)
            .open(cg.join("cgroup.procs"))?;
        let fd = procs.as_raw_fd();
        let mut cmd = Command::new("true");
        // SAFETY: one write(2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let status = cmd.status()?;
        // SAFETY: our own descriptor.
        unsafe { libc::close(link) };
        drop(prog);
        if !status.success() {
            bail!("true: {status}");
        }
        anyhow::Ok(())
    })();
    fs::remove_dir(&cg).with_context(|| cg.display().to_string())?;
    result
}

/// A program of `sock_create` attached to the cgroup `cg` that binds every
/// new socket to the device `ifindex` (`sk->bound_dev_if`), as `ip vrf exec`
/// does; attached while the returned descriptors live.
pub fn bind_to_device(cg: &Path, ifindex: u32) -> anyhow::Result<[OwnedFd; 2]> {
    // r3 = ifindex; *(u32 *)(r1 + 0: bound_dev_if) = r3; r0 = 1; exit
    let insns = [
        insn(0xb7, 0x03, ifindex),
        insn(0x63, 0x31, 0),
        insn(0xb7, 0x00, 1),
        insn(0x95, 0x00, 0),
    ];
    attach(
        cg,
        BPF_PROG_TYPE_CGROUP_SOCK,
        BPF_CGROUP_INET_SOCK_CREATE,
        &insns,
    )
}

/// A `cgroup_skb` egress program that lets every packet pass and does
/// nothing else: what the kernel's timing of a program costs by itself.
pub fn empty_egress(cg: &Path) -> anyhow::Result<[OwnedFd; 2]> {
    // r0 = 1; exit
    let insns = [insn(0xb7, 0x00, 1), insn(0x95, 0x00, 0)];
    attach(cg, BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_EGRESS, &insns)
}

fn insn(code: u64, regs: u64, imm: u32) -> u64 {
    code | regs << 8 | u64::from(imm) << 32
}

/// `insns` loaded as a program of `prog_type` and attached to the cgroup
/// `cg` at `attach_type` through a bpf_link, while the descriptors live.
fn attach(
    cg: &Path,
    prog_type: u64,
    attach_type: u32,
    insns: &[u64],
) -> anyhow::Result<[OwnedFd; 2]> {
    let license = c"GPL";
    let mut attr = [0u64; 16];
    attr[0] = prog_type | (insns.len() as u64) << 32;
    attr[1] = insns.as_ptr() as u64;
    attr[2] = license.as_ptr() as u64;
    // expected_attach_type, after prog_ifindex (offset 64).
    attr[8] = u64::from(attach_type) << 32;
    // SAFETY: a descriptor bpf(2) just made, owned from here on.
    let prog =
        unsafe { OwnedFd::from_raw_fd(bpf(BPF_PROG_LOAD, &mut attr).context("BPF_PROG_LOAD")?) };
    let dir = fs::File::open(cg).with_context(|| cg.display().to_string())?;
    let mut attr = [0u64; 8];
    attr[0] = u64::from(prog.as_raw_fd() as u32) | (u64::from(dir.as_raw_fd() as u32) << 32);
    attr[1] = u64::from(attach_type);
    // SAFETY: as above.
    let link = unsafe {
        OwnedFd::from_raw_fd(bpf(BPF_LINK_CREATE, &mut attr).context("BPF_LINK_CREATE")?)
    };
    Ok([prog, link])
}
