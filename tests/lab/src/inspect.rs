//! Looking at the client's state from outside srcsel: rule and route dumps,
//! shell output, the namespace cookie and pin folder, mounts, and waiting for
//! a condition. Tests judge srcsel by these, never by its own code.
use std::{
    fs,
    path::PathBuf,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use crate::Lab;

impl Lab {
    /// The output of a shell command line run in the client namespace.
    pub fn client_out(&self, line: &str) -> String {
        let out = self
            .client("sh")
            .args(["-c", line])
            .output()
            .expect("nsenter");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// srcsel's rules and the routes of its tables (proto 201), as text,
    /// numeric (`-N`) also where the package's iproute2 names are installed.
    pub fn owned(&self) -> String {
        self.client_out(
            "ip -N rule | grep 'proto 201'; ip -N route show table all | grep 'proto 201'",
        )
    }

    /// One `srcsel run --via IFACE -- curl` carrying `token`.
    pub fn curl_via(&self, iface: &str, token: &str) {
        crate::ok(&mut self.srcsel([
            "run",
            "--via",
            iface,
            "--",
            "curl",
            "-sf",
            &crate::url(token),
        ]));
    }

    /// `srcsel status --json`'s entry for uplink (or list) `name`; null
    /// when it has none.
    pub fn uplink_status(&self, name: &str) -> serde_json::Value {
        let text = crate::ok(&mut self.srcsel(["status", "--json"]));
        let json: serde_json::Value = serde_json::from_str(&text).expect("status JSON");
        json["uplinks"]
            .as_array()
            .and_then(|a| a.iter().find(|u| u["name"] == name))
            .cloned()
            .unwrap_or_default()
    }

    pub fn rules(&self) -> String {
        self.client_out("ip rule; ip -6 rule")
    }

    pub fn routes(&self) -> String {
        self.client_out("ip route show table all; ip -6 route show table all")
    }

    /// The client namespace's cookie, which names srcsel's pin folder.
    pub fn netns_cookie(&self) -> u64 {
        let out = self.client_out(
            "python3 -c 'import socket; s=socket.socket(); print(int.from_bytes(s.getsockopt(socket.SOL_SOCKET, 71, 8), \"little\"))'",
        );
        out.trim().parse().expect("netns cookie")
    }

    /// The folder of srcsel's run cgroups for the client namespace (under
    /// systemd, srcsel's slice for it).
    pub fn runs_dir(&self) -> PathBuf {
        let cookie = self.netns_cookie();
        if systemd_booted() {
            cgroup2_root()
                .join("srcsel.slice")
                .join(format!("srcsel-net{cookie}.slice"))
        } else {
            cgroup2_root().join("srcsel").join(format!("net-{cookie}"))
        }
    }

    /// The cgroup of the `srcsel run` with process id `pid`: in its
    /// assignment's group (`usb0:strict` when there is none yet).
    pub fn run_cgroup(&self, pid: u32) -> PathBuf {
        let runs = self.runs_dir();
        let (name, group) = if systemd_booted() {
            let stem = runs.file_stem().unwrap().to_string_lossy().into_owned();
            (
                format!("srcsel-run-{pid}.scope"),
                format!("{stem}-usb0:strict.slice"),
            )
        } else {
            (format!("run-{pid}"), "usb0:strict".to_owned())
        };
        let groups = fs::read_dir(&runs).into_iter().flatten().flatten();
        groups
            .map(|g| g.path().join(&name))
            .find(|p| p.exists())
            .unwrap_or_else(|| runs.join(group).join(name))
    }

    /// The run cgroups there are now, in every group.
    pub fn run_cgroups(&self) -> Vec<PathBuf> {
        let groups = fs::read_dir(self.runs_dir())
            .into_iter()
            .flatten()
            .flatten();
        groups
            .flat_map(|g| fs::read_dir(g.path()).into_iter().flatten().flatten())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.starts_with("run-") || n.starts_with("srcsel-run-")
                })
            })
            .collect()
    }

    /// A kernel counter of `/proc/net/netstat` in namespace `role` (e.g.
    /// `TcpExt` `IPReversePathFilter`): what a router itself counted.
    pub fn netstat(&self, role: &str, group: &str, name: &str) -> u64 {
        let text = self.output_in(role, &["cat", "/proc/net/netstat"]);
        netstat_value(&text, group, name)
            .unwrap_or_else(|| panic!("no {group} {name} in /proc/net/netstat of {role}"))
    }

    /// The output of a command run in namespace `role` (a router, inet); panics if it fails.
    pub fn output_in(&self, role: &str, args: &[&str]) -> String {
        crate::ok(
            Command::new("ip")
                .args(["netns", "exec", &self.ns(role)])
                .args(args),
        )
    }

    /// srcsel's pin folder for the client namespace, wherever bpffs is.
    pub fn pin_dir(&self) -> PathBuf {
        let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let bpffs = mount_point(&info, "bpf").unwrap_or_else(|| PathBuf::from("/sys/fs/bpf"));
        bpffs
            .join("srcsel")
            .join(format!("net-{}", self.netns_cookie()))
    }
}

/// The mount point of the first filesystem of type `fstype`.
pub fn mount_point(mountinfo: &str, fstype: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let point = left.split(' ').nth(4)?;
        (right.split(' ').next()? == fstype).then(|| PathBuf::from(point))
    })
}

/// The value of `name` in a `/proc/net/netstat` text: lines come in pairs,
/// `Group: names...` then `Group: values...`.
pub fn netstat_value(text: &str, group: &str, name: &str) -> Option<u64> {
    let lines: Vec<&str> = text.lines().collect();
    lines.chunks(2).find_map(|pair| {
        let [names, values] = pair else { return None };
        let (mut n, mut v) = (names.split_whitespace(), values.split_whitespace());
        if n.next()? != format!("{group}:") || v.next()? != format!("{group}:") {
            return None;
        }
        n.zip(v).find(|(k, _)| *k == name)?.1.parse().ok()
    })
}

pub fn cgroup2_root() -> PathBuf {
    mount_point(
        &fs::read_to_string("/proc/self/mountinfo").expect("mountinfo"),
        "cgroup2",
    )
    .expect("a cgroup2 mount")
}

/// Polls `ok` every 20 ms; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// sd_booted(3): runs are systemd scopes then.
pub fn systemd_booted() -> bool {
    std::path::Path::new("/run/systemd/system").is_dir()
}

/// Context switches per thread of `pid` (each wakeup is at least one); a
/// thread that ended meanwhile is left out.
pub fn switches(pid: u32) -> std::collections::HashMap<String, u64> {
    let mut per_thread = std::collections::HashMap::new();
    let tasks = fs::read_dir(format!("/proc/{pid}/task"));
    for task in tasks.into_iter().flatten().flatten() {
        let Ok(status) = fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        let n = status
            .lines()
            .filter(|l| l.contains("ctxt_switches"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
        per_thread.insert(task.file_name().to_string_lossy().into_owned(), n);
    }
    per_thread
}

/// Wakeups between two samples, of threads alive in both (tokio's idle
/// blocking threads exit; a polling thread would not).
pub fn wakeups(
    before: &std::collections::HashMap<String, u64>,
    after: &std::collections::HashMap<String, u64>,
) -> u64 {
    after
        .iter()
        .filter_map(|(tid, n)| Some(n.saturating_sub(*before.get(tid)?)))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netstat_value_reads_a_named_counter_of_a_group() {
        let text = "\
TcpExt: SyncookiesSent IPReversePathFilter
TcpExt: 0 7
IpExt: InNoRoutes IPReversePathFilter
IpExt: 3 9
";
        assert_eq!(
            netstat_value(text, "TcpExt", "IPReversePathFilter"),
            Some(7)
        );
        assert_eq!(netstat_value(text, "IpExt", "InNoRoutes"), Some(3));
        assert_eq!(netstat_value(text, "TcpExt", "Nope"), None);
    }

    #[test]
    fn mount_point_finds_the_first_of_a_type() {
        let info = "\
25 1 0:23 / /sys rw,nosuid - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw
41 25 0:35 / /sys/fs/bpf rw,nosuid - bpf bpf rw
42 25 0:36 / /mnt/bpf2 rw - bpf bpf rw
";
        assert_eq!(mount_point(info, "bpf"), Some(PathBuf::from("/sys/fs/bpf")));
        assert_eq!(
            mount_point(info, "cgroup2"),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(mount_point(info, "tmpfs"), None);
    }
}
