//! A cgroup subtree a test made (under the cgroup2 mount), its processes
//! killed and its folders removed on drop, even when the test panics.
use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

pub struct CgroupTree(pub PathBuf);

impl Drop for CgroupTree {
    fn drop(&mut self) {
        remove_tree(&self.0);
    }
}

fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = fs::write(dir.join("cgroup.kill"), "1");
    for _ in 0..500 {
        if fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
