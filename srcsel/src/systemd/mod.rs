//! What srcsel asks of systemd when it is PID 1: whether it is, and where a
//! unit's cgroup is (its `Slice=` decides).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub mod dropin;
pub mod scope;

use crate::policy::target::slice_path;

pub use crate::kernel::cgroup::systemd_booted as booted;

/// Whether systemd started this process as a service's main process (not
/// merely an ancestor did: INVOCATION_ID is inherited).
pub fn started_by_systemd() -> bool {
    // SAFETY: plain getter.
    std::env::var_os("INVOCATION_ID").is_some() && unsafe { libc::getppid() } == 1
}

/// The cgroup of unit `name`: where it runs now, or where its slice puts it.
pub fn unit_cgroup(cg_root: &Path, name: &str) -> Result<PathBuf, String> {
    if !booted() {
        return Err(format!(
            "unit {name}: units need systemd as PID 1, and this host has none; assign its \
             cgroup with --cgroup PATH instead"
        ));
    }
    let out = Command::new("systemctl")
        .args(["show", "--property=ControlGroup,Slice", "--", name])
        .output()
        .map_err(|e| format!("unit {name}: running systemctl show: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let prop = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    if let Some(cg) = prop("ControlGroup") {
        return Ok(cg_root.join(cg.trim_start_matches('/')));
    }
    let slice = prop("Slice").unwrap_or_else(|| "system.slice".into());
    Ok(cg_root.join(slice_path(&slice)?).join(name))
}

/// sd_notify(3): tells systemd (`Type=notify`) how the service is, when it
/// started it; nothing otherwise.
pub fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = (|| {
        use std::os::linux::net::SocketAddrExt as _;
        let sock = std::os::unix::net::UnixDatagram::unbound()?;
        let bytes = socket.as_encoded_bytes();
        let addr = match bytes.strip_prefix(b"@") {
            Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name)?,
            None => std::os::unix::net::SocketAddr::from_pathname(&socket)?,
        };
        sock.send_to_addr(state.as_bytes(), &addr)
    })();
    if let Err(e) = sent {
        tracing::warn!("telling systemd {state}: {e}");
    }
}
