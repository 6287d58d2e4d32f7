//! Where filesystems are mounted, from `/proc/self/mountinfo` (never assumed:
//! cgroup2 is at /sys/fs/cgroup/unified on hybrid layouts).
use std::{fs, io, path::PathBuf};

pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The mount point of the first filesystem of type `fstype` in this mount namespace.
pub fn find(fstype: &str) -> io::Result<Option<PathBuf>> {
    Ok(mount_of(&fs::read_to_string(MOUNTINFO)?, fstype))
}

/// The first mount point of filesystem type `fstype` in a mountinfo text.
pub fn mount_of(mountinfo: &str, fstype: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // `36 25 0:30 / /sys/fs/cgroup rw,... shared:9 - cgroup2 cgroup2 rw`
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split(' ').nth(4)?;
        (right.split(' ').next()? == fstype).then(|| PathBuf::from(unescape(mount_point)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(c as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out + rest
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 25 0:27 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
42 31 0:39 / /sys/fs/cgroup/cpu rw,relatime shared:11 - cgroup cgroup rw,cpu
50 25 0:44 / /sys/fs/bpf rw,relatime shared:18 - bpf bpf rw,mode=700
";

    #[test]
    fn finds_cgroup2_in_hybrid_layout() {
        assert_eq!(
            mount_of(HYBRID, "cgroup2"),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(mount_of(HYBRID, "bpf"), Some(PathBuf::from("/sys/fs/bpf")));
        assert_eq!(
            mount_of(HYBRID, "cgroup"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu"))
        );
    }

    #[test]
    fn no_cgroup2_after_ip_netns_exec() {
        let remounted = "100 99 0:50 / /sys rw,relatime - sysfs ns rw\n";
        assert_eq!(mount_of(remounted, "cgroup2"), None);
    }

    #[test]
    fn mount_points_are_unescaped() {
        let line = "41 31 0:38 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            mount_of(line, "cgroup2"),
            Some(PathBuf::from("/mnt/my cgroups"))
        );
    }
}
