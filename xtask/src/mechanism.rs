//! The bare mechanism a run is measured against (`xtask mechanism-run`,
//! used by bench): mkdir a cgroup, attach one program through a bpf_link,
//! start `true` in it (the child joins before exec), wait, remove the
//! cgroup. Raw syscalls, nothing of srcsel's code.
use std::{
    ffi::CString,
    fs, io,
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::Path,
    process::Command,
};

use anyhow::{Context as _, bail};

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_CGROUP_INET_SOCK_CREATE: u32 = 2;

fn bpf(cmd: libc::c_long, attr: &mut [u64; 8]) -> io::Result<i32> {
    // SAFETY: bpf(2) with a zeroed attr union of ample size.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), size_of_val(attr)) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd as i32)
}

/// One run of `true` under program `pin`, in a new cgroup under `parent`.
pub fn run(pin: &Path, parent: &Path) -> anyhow::Result<()> {
    let cg = parent.join(format!("m-{}", std::process::id()));
    fs::create_dir(&cg).with_context(|| cg.display().to_string())?;
    let result = (|| {
        let dir = fs::File::open(&cg)?;
        let path = CString::new(pin.as_os_str().as_encoded_bytes())?;
        let mut attr = [0u64; 8];
        attr[0] = path.as_ptr() as u64;
        let prog = bpf(BPF_OBJ_GET, &mut attr).context("BPF_OBJ_GET")?;
        let mut attr = [0u64; 8];
        attr[0] = u64::from(prog as u32) | (u64::from(dir.as_raw_fd() as u32) << 32);
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
        // SAFETY: our own descriptors.
        unsafe {
            libc::close(link);
            libc::close(prog);
        }
        if !status.success() {
            bail!("true: {status}");
        }
        anyhow::Ok(())
    })();
    fs::remove_dir(&cg).with_context(|| cg.display().to_string())?;
    result
}
