//! A long-lived steered process that connects on demand: it shows what
//! happens to processes that were already running when something changed.
use std::{
    fs,
    path::PathBuf,
    process::{Child, Stdio},
    time::Duration,
};

use crate::{Lab, SERVER, TCP_PORT, unique, wait_until};

/// A process started once under `srcsel run --via IFACE` that makes a new
/// connection whenever asked: it shows what happens to processes that were
/// already running when the lease changed.
pub struct Runner {
    child: Child,
    dir: PathBuf,
    n: u32,
}

impl Runner {
    pub fn start(lab: &Lab, via: &str) -> Self {
        let dir = lab.dir.join(unique("runner"));
        fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let script = format!(
            "i=0; while :; do while [ ! -e {d}/go$i ]; do [ -e {d}/quit ] && exit 0; sleep 0.01; done; \
             curl -s -m 5 http://{SERVER}:{TCP_PORT}/$(cat {d}/go$i) >/dev/null; echo $? > {d}/rc$i.tmp; \
             mv {d}/rc$i.tmp {d}/rc$i; i=$((i+1)); done"
        );
        let child = lab
            .srcsel(["run", "--via", via, "--", "sh", "-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Self { child, dir, n: 0 }
    }

    /// Makes one connection carrying `token`; returns curl's exit code.
    pub fn connect(&mut self, token: &str) -> i32 {
        fs::write(self.dir.join(format!("go{}", self.n)), token).unwrap();
        let rc = self.dir.join(format!("rc{}", self.n));
        wait_until("the runner's curl", Duration::from_secs(15), || rc.exists());
        self.n += 1;
        fs::read_to_string(rc).unwrap().trim().parse().unwrap()
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = fs::write(self.dir.join("quit"), "");
        let _ = self.child.wait();
    }
}
