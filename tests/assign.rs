//! `srcsel assign` end to end without systemd: a cgroup tree shaped like
//! systemd's (a slice, services in it), assigned before and after it
//! exists; processes started in it are judged by what the server and the
//! primary's router saw.
use std::{fs, path::PathBuf, time::Duration};

use srcsel_lab::{CgroupTree, ETH0_ADDR, Lab, cgroup2_root, out, stderr, unique, url, wait_until};

struct Setup {
    lab: Lab,
    config: PathBuf,
    /// `<unique>.slice`, relative to the cgroup2 mount.
    slice: String,
    root: PathBuf,
    _tree: CgroupTree,
}

fn setup() -> Setup {
    let lab = Lab::new(env!("CARGO_BIN_EXE_srcsel"));
    let config = lab.dir.join("srcsel.toml");
    fs::write(
        &config,
        "# the lab's config\n[[uplink]]\nname = \"usb0\"   # the hotspot\n",
    )
    .unwrap();
    let slice = format!("{}.slice", unique("as"));
    let root = cgroup2_root();
    let tree = CgroupTree(root.join(&slice));
    Setup {
        lab,
        config,
        slice,
        root,
        _tree: tree,
    }
}

impl Setup {
    fn srcsel(&self, args: &[&str]) -> std::process::Output {
        out(self.lab.srcsel(args).arg("--config").arg(&self.config))
    }

    fn assign(&self, cgroup: &str, via: &str) -> String {
        let o = self.srcsel(&["assign", "--cgroup", cgroup, "--via", via]);
        assert!(o.status.success(), "assign {cgroup}: {}", stderr(&o));
        stderr(&o)
    }

    /// `sh -c` that puts itself into `cgroup` first, then runs curl `opts` for token `t`.
    fn curl_cmd(&self, cgroup: &str, opts: &str, t: &str) -> std::process::Output {
        let procs = self.root.join(cgroup).join("cgroup.procs");
        let script = format!(
            "echo $$ > {} && exec curl {opts} {}",
            procs.display(),
            url(t)
        );
        out(self.lab.client("sh").args(["-c", &script]))
    }

    /// curl from inside `cgroup`: the source address the server saw.
    fn curl_in(&self, cgroup: &str) -> String {
        let t = unique("in");
        let o = self.curl_cmd(cgroup, "-sf", &t);
        assert!(o.status.success(), "curl in {cgroup}: {}", stderr(&o));
        self.lab.source_of(&t)
    }

    /// curl from inside `cgroup` fails, and the server saw nothing of it.
    fn refused_in(&self, cgroup: &str) {
        let t = unique("refused");
        assert!(!self.curl_cmd(cgroup, "-s -m3", &t).status.success());
        self.lab.assert_unseen(&t);
    }

    /// `srcsel status --json`'s entry for the assignment of `name`.
    fn assigned(&self, name: &str) -> serde_json::Value {
        let o = self.srcsel(&["status", "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let found = v["assigned"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name);
        found.cloned().unwrap_or_else(|| panic!("{name} in {v}"))
    }

    /// Its connections and refusals, after checking that bytes were counted
    /// both ways when anything was.
    fn counted(&self, name: &str) -> (u64, u64) {
        let a = self.assigned(name);
        let c = &a["counters"];
        let n = |k: &str| {
            c[k].as_u64()
                .unwrap_or_else(|| panic!("{k} of {name}: {a}"))
        };
        if n("connections") > 0 {
            assert!(n("bytes_out") > 0 && n("bytes_in") > 0, "{a}");
        }
        (n("connections"), n("refused"))
    }

    fn in_slice(&self, sub: &str) -> String {
        format!("{}/{sub}", self.slice)
    }
}

#[test]
fn assigned_before_it_exists_then_after_and_siblings_keep_the_primary() {
    let mut s = setup();
    let usb0 = s.lab.usb0_addr();
    // Recorded without a daemon: applied when it starts.
    let said = s.assign(&s.in_slice("app.service"), "usb0");
    assert!(said.contains("no srcsel daemon runs"), "{said}");
    let text = fs::read_to_string(&s.config).unwrap();
    assert!(
        text.starts_with("# the lab's config\n[[uplink]]\nname = \"usb0\"   # the hotspot\n"),
        "{text}"
    );
    assert!(!s.root.join(s.in_slice("app.service")).exists());

    let config = s.config.display().to_string();
    s.lab.start_daemon(&["--config", &config]);
    // The daemon made the missing cgroup and attached before anything ran in it.
    assert!(s.root.join(s.in_slice("app.service")).is_dir());
    assert_eq!(
        s.curl_in(&s.in_slice("app.service")),
        usb0,
        "a process started in the assigned cgroup"
    );
    fs::create_dir_all(s.root.join(s.in_slice("app.service/worker"))).unwrap();
    assert_eq!(
        s.curl_in(&s.in_slice("app.service/worker")),
        usb0,
        "a cgroup made inside it later"
    );

    fs::create_dir_all(s.root.join(s.in_slice("other.service"))).unwrap();
    assert_eq!(
        s.curl_in(&s.in_slice("other.service")),
        ETH0_ADDR,
        "a sibling"
    );

    // Assigned while it exists and the daemon runs: in force on return.
    s.assign(&s.in_slice("other.service"), "usb0");
    assert_eq!(
        s.curl_in(&s.in_slice("other.service")),
        usb0,
        "assigned while running"
    );

    let status = String::from_utf8(s.srcsel(&["status", "--json"]).stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let assigned = v["assigned"].as_array().unwrap();
    assert_eq!(assigned.len(), 2, "{status}");
    assert!(
        assigned
            .iter()
            .all(|a| a["live"] == true && a["via"] == "usb0"),
        "{status}"
    );
    // What the server saw: two requests from app.service and below (worker
    // is inside it), one from other.service since its assignment.
    assert_eq!(s.counted(&s.in_slice("app.service")), (2, 0));
    assert_eq!(s.counted(&s.in_slice("other.service")), (1, 0));
    let human = String::from_utf8(s.srcsel(&["status"]).stdout).unwrap();
    let app = format!(
        "assigned cgroup {} → usb0 strict (live)",
        s.in_slice("app.service")
    );
    let at = human
        .find(&app)
        .unwrap_or_else(|| panic!("{app} in {human}"));
    assert!(
        human[at..]
            .lines()
            .nth(1)
            .unwrap()
            .contains(" 2 connections, "),
        "{human}"
    );

    // Unassigned: new sockets take the primary again, the cgroup stays.
    let o = s.srcsel(&["unassign", "--cgroup", &s.in_slice("other.service")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        s.curl_in(&s.in_slice("other.service")),
        ETH0_ADDR,
        "after unassign"
    );
    assert_eq!(
        s.curl_in(&s.in_slice("app.service")),
        usb0,
        "the other assignment stays"
    );
    assert_eq!(
        s.lab.foreign_sources("r1").0,
        0,
        "hotspot-sourced packets at the primary's router"
    );
}

#[test]
fn the_nearest_assigned_ancestor_wins_both_ways() {
    let mut s = setup();
    let usb0 = s.lab.usb0_addr();
    let config = s.config.display().to_string();
    s.lab.start_daemon(&["--config", &config]);
    s.assign(&s.slice, "usb0");
    s.assign(&s.in_slice("primary.service"), "eth0");
    s.assign(&s.in_slice("primary.service/back"), "usb0");
    fs::create_dir_all(s.root.join(s.in_slice("plain.service"))).unwrap();
    assert_eq!(
        s.curl_in(&s.in_slice("plain.service")),
        usb0,
        "under the usb0 slice"
    );
    assert_eq!(
        s.curl_in(&s.in_slice("primary.service")),
        ETH0_ADDR,
        "eth0 inside usb0"
    );
    assert_eq!(
        s.curl_in(&s.in_slice("primary.service/back")),
        usb0,
        "usb0 inside eth0"
    );
    // Counted as cgroup statistics are, in the subtree: the slice counts
    // what left through usb0 below it, its nested usb0 assignment too.
    assert_eq!(s.counted(&s.slice), (2, 0));
    assert_eq!(s.counted(&s.in_slice("primary.service")), (1, 0));
    assert_eq!(s.counted(&s.in_slice("primary.service/back")), (1, 0));
    // Reassigning in place swaps the uplink (the new set is attached first).
    s.assign(&s.in_slice("primary.service"), "usb0");
    assert_eq!(
        s.curl_in(&s.in_slice("primary.service")),
        usb0,
        "reassigned"
    );
    // The new set counts from its own start.
    assert_eq!(s.counted(&s.in_slice("primary.service")), (1, 0));
    assert_eq!(s.counted(&s.slice), (3, 0));
    assert_eq!(s.lab.foreign_sources("r1").0, 0);
}

#[test]
fn assignments_survive_a_daemon_restart_and_kill_9() {
    let mut s = setup();
    let usb0 = s.lab.usb0_addr();
    let config = s.config.display().to_string();
    s.assign(&s.slice, "usb0");
    s.lab.start_daemon(&["--config", &config]);
    let pins = s.lab.pin_dir().join("links");
    let links = || fs::read_dir(&pins).map(|d| d.count()).unwrap_or(0);
    assert_eq!(links(), 1);
    s.lab.signal("daemon", libc::SIGKILL);
    // No srcsel process at all: still steered.
    assert_eq!(s.curl_in(&s.slice), usb0, "after kill -9 of the daemon");
    s.lab.start_daemon(&["--config", &config]);
    assert_eq!(links(), 1, "a restart attaches nothing twice");
    assert_eq!(s.curl_in(&s.slice), usb0, "after the restart");
    // A renumbered hotspot is followed for the assigned cgroup.
    s.lab.renumber_hotspot("10.99.7");
    let usb0 = s.lab.usb0_addr();
    wait_until("the new address in force", Duration::from_secs(10), || {
        s.lab.client_out("ip rule").contains(&usb0)
    });
    assert_eq!(s.curl_in(&s.slice), usb0, "after renumbering");
    // Strict: with usb0 down, a connection fails rather than leave by eth0.
    s.lab.client_out("ip link set usb0 down");
    s.refused_in(&s.slice);
    // Counted by the same programs throughout: kill -9 and restarts keep them.
    assert_eq!(s.counted(&s.slice), (3, 1));
    assert_eq!(s.lab.foreign_sources("r1").0, 0);
}

#[test]
fn bad_assignments_are_refused_and_change_nothing() {
    let s = setup();
    let before = fs::read_to_string(&s.config).unwrap();
    for (args, says) in [
        (
            vec!["assign", "--cgroup", "/", "--via", "usb0"],
            "root cgroup",
        ),
        (
            vec!["assign", "--cgroup", "a/../b", "--via", "usb0"],
            "not an assignable cgroup",
        ),
        (
            vec!["assign", "--cgroup", "srcsel/x", "--via", "usb0"],
            "srcsel's own",
        ),
        (
            vec!["assign", "--slice", "-.slice", "--via", "usb0"],
            "root",
        ),
        (
            vec!["assign", "--slice", "x.service", "--via", "usb0"],
            "does not end in .slice",
        ),
        (
            vec!["assign", "--unit", "x@.service", "--via", "usb0"],
            "template",
        ),
        (
            vec!["assign", "--cgroup", "a", "--via", "bad/name"],
            "not an interface name",
        ),
        (
            vec![
                "assign", "--cgroup", "a", "--slice", "b.slice", "--via", "usb0",
            ],
            "cannot be used with",
        ),
        (
            vec!["unassign", "--cgroup", "never/assigned"],
            "is not assigned",
        ),
    ] {
        let o = s.srcsel(&args);
        assert_eq!(o.status.code(), Some(125), "{args:?}");
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
        assert_eq!(fs::read_to_string(&s.config).unwrap(), before, "{args:?}");
    }
}

#[test]
fn down_keeps_assigned_cgroups_closed_and_a_new_daemon_steers_them_again() {
    let mut s = setup();
    let usb0 = s.lab.usb0_addr();
    let config = s.config.display().to_string();
    let rules_before = s.lab.rules();
    s.assign(&s.slice, "usb0");
    s.lab.start_daemon(&["--config", &config]);
    assert_eq!(s.curl_in(&s.slice), usb0);
    s.lab.stop("daemon");
    let o = s.srcsel(&["down"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not the programs of 1 assignment(s)"),
        "{}",
        stderr(&o)
    );
    assert_eq!(s.lab.rules(), rules_before, "down removed every rule");
    // Strict, and nothing to route it: refused at once, never through eth0.
    s.refused_in(&s.slice);
    s.lab.start_daemon(&["--config", &config]);
    assert_eq!(s.curl_in(&s.slice), usb0, "the same programs, state again");
    assert_eq!(s.lab.foreign_sources("r1").0, 0);
}
