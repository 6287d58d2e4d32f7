//! The lab's background processes (server, DHCP servers and clients, the
//! daemon), each under a role with its own log in the lab's folder, so a
//! test can stop or signal one by name and a failed test leaves the logs.
use std::{
    fs,
    path::PathBuf,
    process::{Command, ExitStatus, Stdio},
};

use crate::Lab;

impl Lab {
    /// Starts a background process under `role`; its output goes to `<role>.log`.
    pub fn spawn(&mut self, role: &str, cmd: &mut Command) {
        self.stop(role);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(role))
            .expect("log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        self.procs.push((role.to_owned(), child));
    }

    pub fn log_path(&self, role: &str) -> PathBuf {
        self.dir.join(format!("{role}.log"))
    }

    pub fn log(&self, role: &str) -> String {
        fs::read_to_string(self.log_path(role)).unwrap_or_default()
    }

    pub fn pid(&self, role: &str) -> Option<u32> {
        self.procs
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, c)| c.id())
    }

    /// Sends `signal` to the process of `role` and waits for it to end.
    pub fn signal(&mut self, role: &str, signal: i32) -> Option<ExitStatus> {
        let i = self.procs.iter().position(|(r, _)| r == role)?;
        let (_, mut child) = self.procs.remove(i);
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        child.wait().ok()
    }

    /// Stops (SIGTERM) the process of `role`, if any.
    pub fn stop(&mut self, role: &str) {
        self.signal(role, libc::SIGTERM);
    }

    /// SIGTERM to every process at once, then waits for them all.
    pub(crate) fn stop_all(&mut self) {
        for (_, c) in &mut self.procs {
            // SAFETY: SIGTERM to our own child: dhcpcd stops its helpers itself.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        for (_, c) in &mut self.procs {
            let _ = c.wait();
        }
    }
}
