//! Which test suites each guest runs, and the job that builds and runs them.
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::{
    guest::{Arch, Guest},
    quote, run_in_guest,
};

/// A suite and which of its tests a guest runs.
struct Selection {
    suite: &'static str,
    /// Only these tests (exact names); every test when empty.
    only: &'static [&'static str],
    /// Tests left to the host: what they prove does not depend on the
    /// kernel's version, and under TCG they cost minutes.
    skip: &'static [&'static str],
}

const fn all(suite: &'static str) -> Selection {
    Selection {
        suite,
        only: &[],
        skip: &[],
    }
}

const fn only(suite: &'static str, tests: &'static [&'static str]) -> Selection {
    Selection {
        suite,
        only: tests,
        skip: &[],
    }
}

/// amd64: systemd as PID 1 (the `systemd` and `package` suites), and the
/// `run` and `daemon` suites on kernel 6.1.
const AMD64: &[Selection] = &[
    all("systemd"),
    Selection {
        suite: "run",
        only: &[],
        // 132 s of the run suite's 460 under TCG.
        skip: &["thousands_of_lan_routes_and_a_hundred_concurrent_runs_keep_working"],
    },
    all("daemon"),
    all("package"),
];

/// arm64, as on a Raspberry Pi: the package (installed, a slice steered under
/// NetworkManager and dhcpcd, a renumbering, purged to the routing before),
/// then the lab's core cases with the binary the package holds. Each case
/// costs about twice its amd64 time under TCG, so the rest stays with the
/// amd64 guest and the host, where the same programs are verified.
const ARM64: &[Selection] = &[
    all("package"),
    only(
        "run",
        &[
            "every_client_leaves_through_usb0_under_srcsel_and_through_eth0_without",
            "strict_mode_fails_at_once_and_nothing_leaks_through_eth0",
            "runs_leave_nothing_behind_and_down_restores_the_dumps",
        ],
    ),
    only(
        "daemon",
        &["renumbering_reaches_processes_already_running_and_leaves_no_stale_rule"],
    ),
    only(
        "ipv6",
        &["ipv6_clients_leave_through_usb0_and_unassigned_ones_through_eth0"],
    ),
    only(
        "dns_redirect",
        &["strict_refuses_at_once_without_a_resolver_and_a_renumbering_is_followed"],
    ),
    only(
        "health",
        &[
            "a_silent_upstream_cut_is_found_and_steering_follows_it",
            // The reset a Raspberry Pi kernel (no INET_DIAG_DESTROY) gets.
            "without_sock_destroy_the_socket_is_taken_and_shut_down",
        ],
    ),
];

/// Every suite name a guest may run (`cargo xtask vm --suite`).
pub const NAMES: [&str; 7] = [
    "systemd",
    "run",
    "daemon",
    "package",
    "ipv6",
    "dns_redirect",
    "health",
];

fn selections(arch: Arch) -> &'static [Selection] {
    match arch {
        Arch::Amd64 => AMD64,
        Arch::Arm64 => ARM64,
    }
}

/// What the arm64 job sets up first: the kernel as a Raspberry Pi OS one
/// is, where the guest's can be made so.
const ARM64_PREAMBLE: &str = r#"# Raspberry Pi OS kernels have no CONFIG_DEBUG_INFO_BTF: no /sys/kernel/btf/vmlinux.
mount -t tmpfs -o size=64k,mode=0555 srcsel-no-btf /sys/kernel/btf
test ! -e /sys/kernel/btf/vmlinux || { echo "vmlinux BTF still visible"; exit 1; }
echo "guest: /sys/kernel/btf hidden; $(grep -E '^CONFIG_(INET_DIAG_DESTROY|INET_DIAG|DEBUG_INFO_BTF)=' /boot/config-$(uname -r) | tr '\n' ' ')"
"#;

/// Builds the guest's suites (all of its own with `suites` empty) for its
/// architecture, and runs them one after another in one boot; `args` go to
/// each test binary. Fails, saying why, when the VM cannot start.
pub fn test_suites(
    guest: &Guest,
    suites: &[&str],
    args: &[String],
    timeout: Duration,
) -> anyhow::Result<()> {
    let chosen: Vec<&Selection> = selections(guest.arch)
        .iter()
        .filter(|s| suites.is_empty() || suites.contains(&s.suite))
        .collect();
    if let Some(unknown) = suites
        .iter()
        .find(|name| !chosen.iter().any(|s| s.suite == **name))
    {
        let theirs: Vec<&str> = selections(guest.arch).iter().map(|s| s.suite).collect();
        bail!(
            "the {} guest runs no suite {unknown}; its suites: {}",
            guest.build.deb,
            theirs.join(", ")
        );
    }
    let mut cmd = crate::cargo();
    cmd.args(["test", "-p", "srcsel", "--features", "vm-tests", "--no-run"]);
    if guest.arch == Arch::Arm64 {
        // (amd64 is the host's own: its default target dir, shared with the host suites.)
        cmd.args(["--target", guest.build.triple]);
    }
    cmd.args(chosen.iter().flat_map(|s| ["--test", s.suite]))
        .arg("--message-format=json-render-diagnostics")
        .env_remove("AYA_BUILD_SKIP")
        .stdout(std::process::Stdio::piped());
    guest.build.env(&mut cmd);
    if guest.arch == Arch::Arm64 {
        crate::setup::cross()?;
    }
    let out = cmd.output().context("building the VM suites")?;
    if !out.status.success() {
        bail!(
            "building the VM suites for {} failed: {}",
            guest.build.triple,
            out.status
        );
    }
    // The package suite installs a package of the binary just built; arm64's
    // other cases run with that package installed.
    let deb = if guest.arch == Arch::Arm64 || chosen.iter().any(|s| s.suite == "package") {
        Some(crate::dist::test_package(guest.build)?)
    } else {
        None
    };
    let messages = crate::cargo_messages(&out.stdout);
    let exe = |suite: &str| {
        messages
            .iter()
            .filter(|m| m["target"]["name"] == suite)
            .find_map(|m| m["executable"].as_str())
    };
    let mut script = String::new();
    if guest.arch == Arch::Arm64 {
        script += ARM64_PREAMBLE;
    }
    script += "failed=\n";
    let (mut runs, mut installed) = (0, false);
    for sel in &chosen {
        let exe = exe(sel.suite).with_context(|| {
            format!("cargo reported no test binary for the {} suite", sel.suite)
        })?;
        let Some(test_args) = arguments(sel, args) else {
            continue;
        };
        if guest.arch == Arch::Arm64 && sel.suite != "package" && !installed {
            let deb = deb.as_deref().expect("built above");
            script += &install_for_the_cases(&quote(&deb.display().to_string()));
            installed = true;
        }
        let call: Vec<String> = [exe.to_owned(), "--test-threads=1".into()]
            .into_iter()
            .chain(test_args)
            .map(|a| quote(&a))
            .collect();
        runs += 1;
        script += &format!(
            "echo \"== VM suite {} ($(uname -m), kernel $(uname -r), systemd as PID 1)\"\n{} || failed=\"$failed {}\"\n",
            sel.suite,
            call.join(" "),
            sel.suite
        );
    }
    if installed {
        script += "apt-get purge -y -q srcsel >/dev/null || failed=\"$failed purge\"\n";
    }
    if runs == 0 {
        println!(
            "vm: no {} VM test matches {args:?}; not booting it",
            guest.build.deb
        );
        return Ok(());
    }
    script += "[ -z \"$failed\" ] || { echo \"VM suites failed:$failed\"; exit 1; }\n";
    run_in_guest(guest, &script, timeout).with_context(|| {
        format!(
            "the {} VM suites (systemd as PID 1, kernel 6.1) did not pass or could not run",
            guest.build.deb
        )
    })
}

/// Installs `deb` (quoted) for the lab's core cases: they then run
/// /usr/bin/srcsel with the package's service running beside them, as on a
/// Raspberry Pi it is installed on.
fn install_for_the_cases(deb: &str) -> String {
    format!(
        "echo \"== installing {deb} for the core cases\"
apt-get install -y -q --no-install-recommends {deb} >/tmp/srcsel-install.log 2>&1 \\
    || {{ cat /tmp/srcsel-install.log; failed=\"$failed install\"; }}
export SRCSEL_LAB_BINARY=/usr/bin/srcsel
"
    )
}

/// The test binary's arguments for `sel` and the user's `args`, or None when
/// the user's name filters leave none of its tests. A selection of named
/// tests runs those of them that a filter names part of (libtest would
/// otherwise run the selection and the filter's matches).
fn arguments(sel: &Selection, args: &[String]) -> Option<Vec<String>> {
    let mut out: Vec<String> = sel
        .skip
        .iter()
        .flat_map(|t| ["--skip".to_owned(), (*t).to_owned()])
        .collect();
    if sel.only.is_empty() {
        out.extend(args.iter().cloned());
        return Some(out);
    }
    // The user's name filters and skips narrow the selection here: with
    // `--exact` below, libtest would match them whole.
    let (mut words, mut skips, mut flags) = (Vec::new(), Vec::new(), Vec::new());
    let mut args = args.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--exact" => {}
            "--skip" => skips.extend(args.next().map(String::as_str)),
            flag if flag.starts_with('-') => {
                flags.push(a.clone());
                if TAKES_VALUE.contains(&flag) {
                    flags.extend(args.next().cloned());
                }
            }
            word => words.push(word),
        }
    }
    let tests: Vec<String> = sel
        .only
        .iter()
        .filter(|t| words.is_empty() || words.iter().any(|w| t.contains(w)))
        .filter(|t| !skips.iter().any(|s| t.contains(s)))
        .map(|t| (*t).to_owned())
        .collect();
    if tests.is_empty() {
        return None;
    }
    out.push("--exact".to_owned());
    out.extend(tests);
    out.extend(flags);
    Some(out)
}

/// libtest's options that take a value as the next argument.
const TAKES_VALUE: &[&str] = &[
    "--format",
    "--color",
    "--logfile",
    "--test-threads",
    "--shuffle-seed",
    "-Z",
];

#[cfg(test)]
mod tests {
    use super::{Selection, arguments};

    const SEL: Selection = Selection {
        suite: "run",
        only: &["a_strict_case", "a_fallback_case"],
        skip: &[],
    };

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_selection_narrowed_by_the_users_filters() {
        assert_eq!(
            arguments(&SEL, &args(&["--nocapture"])).unwrap(),
            args(&["--exact", "a_strict_case", "a_fallback_case", "--nocapture"])
        );
        assert_eq!(
            arguments(&SEL, &args(&["strict", "--skip", "x"])).unwrap(),
            args(&["--exact", "a_strict_case"])
        );
        assert_eq!(
            arguments(
                &SEL,
                &args(&["--exact", "--skip", "strict", "--logfile", "l"])
            )
            .unwrap(),
            args(&["--exact", "a_fallback_case", "--logfile", "l"])
        );
        assert_eq!(arguments(&SEL, &args(&["nothing"])), None);
        let whole = Selection {
            suite: "daemon",
            only: &[],
            skip: &["slow"],
        };
        assert_eq!(
            arguments(&whole, &args(&["renumber"])).unwrap(),
            args(&["--skip", "slow", "renumber"])
        );
    }
}
