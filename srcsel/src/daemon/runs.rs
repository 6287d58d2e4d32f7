//! Runs made for callers: who may, the assignment's group with the uplink's
//! programs attached (the daemon keeps managed uplinks current, so a run
//! needs no pass of its own), a new run cgroup in it, and the caller's
//! waiting child moved in.
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tracing::{info, warn};

use super::Daemon;
use crate::{
    api::{ErrorKind, Reply},
    config::check_via,
    kernel::{
        bpf::Namespace,
        cgroup,
        peer::{self, MoveError},
        users,
    },
    placement,
    policy::{
        Assignment, Mode,
        access::{self, Allow, Caller, Resolved, Who},
        failover, plan,
    },
    reconcile,
};

/// How many lists of uplinks users' runs may add to a namespace.
const USER_LISTS: usize = 8;

/// A run the daemon made, until its `End` or its caller's exit.
pub struct DaemonRun {
    cgroup: PathBuf,
}

fn resolve(rules: &[Allow]) -> Vec<Resolved<'_>> {
    rules
        .iter()
        .map(|allow| Resolved {
            allow,
            id: match &allow.who {
                Who::User(u) => users::user_id(u),
                Who::Group(g) => users::group_id(g),
            },
        })
        .collect()
}

impl Daemon {
    pub fn may_read_status(&self, c: &Caller) -> bool {
        access::may_read_status(&resolve(&self.config().allowed()), c)
    }

    pub fn status_refusal(&self, c: &Caller) -> String {
        let config = self.config();
        access::refusal(
            &resolve(&config.allowed()),
            c,
            "srcsel status",
            &config.path,
        )
    }

    /// Sets up a run for `caller` (pid `owner`) and moves its child `pid`
    /// into it. The error is the reply to send.
    pub async fn start_run(
        &self,
        caller: &Caller,
        privileged: bool,
        owner: u32,
        via: &str,
        mode: Mode,
        pid: u32,
    ) -> Result<(DaemonRun, Reply), Reply> {
        let failed = |e: anyhow::Error| Reply::error(ErrorKind::Failed, format!("{e:#}"));
        check_via(via).map_err(|why| Reply::error(ErrorKind::BadRequest, why))?;
        if !privileged {
            let config = self.config();
            access::check_run(&resolve(&config.allowed()), caller, via, mode, &config.path)
                .map_err(|why| Reply::error(ErrorKind::Refused, why))?;
        }
        let cg_root = self
            .cg_root
            .as_ref()
            .map_err(|e| failed(anyhow::anyhow!("{e}")))?;
        let assignment = Assignment {
            via: via.to_owned(),
            mode,
        };
        let runs_dir = cgroup::runs_dir(cg_root, self.cookie);
        let (group, warning) = self
            .group(&assignment, &runs_dir, privileged)
            .await
            .map_err(failed)?;
        let moved = match peer::Child::check(pid, owner, caller.uid) {
            Err(e) => Err(e.into()),
            Ok(child) if cgroup::runs_are_scopes(&runs_dir) => {
                let what = format!("srcsel run --via {via} ({mode}) for {}", caller.name);
                self.run_scope(child, &group, owner, &what, &assignment, &runs_dir)
                    .await
            }
            Ok(child) => placement::into_cgroup(child, &group, owner, cg_root),
        };
        let cgroup = moved.map_err(|e| {
            let kind = match e.downcast_ref::<MoveError>() {
                Some(MoveError::NotYours { .. }) => ErrorKind::Refused,
                _ => ErrorKind::Failed,
            };
            Reply::error(kind, format!("{e:#}"))
        })?;
        info!(
            "run for {} (pid {owner}): {} {assignment}",
            caller.name,
            cgroup.display()
        );
        let started = Reply::Started {
            cgroup: cgroup.display().to_string(),
            warning,
        };
        Ok((DaemonRun { cgroup }, started))
    }

    /// `child` in its scope, then the group systemd made (maybe anew) with it
    /// attached, before the command goes on; a failed attach ends the scope
    /// (the caller's own child, not started yet).
    async fn run_scope(
        &self,
        child: peer::Child,
        group: &Path,
        owner: u32,
        what: &str,
        a: &Assignment,
        runs_dir: &Path,
    ) -> anyhow::Result<PathBuf> {
        let cg_root = self.cg_root.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
        let path = placement::into_scope(child, group, owner, what, cg_root).await?;
        if let Err(e) = self.group(a, runs_dir, true).await {
            let _ = cgroup::remove(&path);
            return Err(e);
        }
        Ok(path)
    }

    /// Ends a run: when the caller said `End` (its command has exited), or
    /// its cgroup is empty, kills what is left and removes the cgroup. A
    /// caller that vanished mid-run leaves its command running, steered;
    /// the reaper removes the cgroup once it is empty.
    pub async fn end_run(&self, run: DaemonRun, ended: bool) {
        let cgroup = run.cgroup;
        let removed = if !ended && cgroup::populated(&cgroup) {
            Ok(Ok(false))
        } else if cgroup::remove_if_empty(&cgroup) {
            // The common end: the command and all it started are gone; a
            // rmdir, done at once, before the caller is told.
            Ok(Ok(true))
        } else {
            // Killing what is left waits for it to go: off this thread.
            tokio::task::spawn_blocking(move || cgroup::remove(&cgroup).map(|()| true)).await
        };
        match removed {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                info!("a run's caller left while its command runs on; it stays steered");
            }
            Ok(Err(e)) => warn!("ending a run: {e}"),
            Err(e) => warn!("ending a run: {e}"),
        }
    }

    /// The assignment's group, attached. An uplink in the registry is kept
    /// current by the daemon's passes: only its live state is read (for the
    /// warning). A new one gets its pass first.
    /// A user's run may add a list only while fewer than [`USER_LISTS`]
    /// exist: each holds a slot until `srcsel down`, and the slots are few.
    async fn group(
        &self,
        a: &Assignment,
        runs_dir: &Path,
        privileged: bool,
    ) -> anyhow::Result<(PathBuf, Option<String>)> {
        // Also keeps the namespace's flock (held by a pass across awaits)
        // from blocking this single-threaded runtime.
        let _pass = self.passes.lock().await;
        let ns = Namespace::open_existing(&self.bpffs, self.cookie)?;
        let registry = ns.as_ref().map(|ns| ns.registry()).transpose()?;
        if let Some(ns) = &ns
            && let Some(id) = registry
                .as_ref()
                .and_then(|r| plan::slot_held_by(r, &a.via))
        {
            let group = reconcile::attach_group(ns, id, a, runs_dir)?;
            let warnings = reconcile::warnings(ns, id, a, &self.config().path)?;
            return Ok((group, warnings));
        }
        // The namespace's flock goes before the pass takes it again.
        drop(ns);
        let lists: Vec<&str> = registry
            .iter()
            .flat_map(|r| r.values().map(|s| s.name.as_str()))
            .filter(|n| failover::is_list(n))
            .collect();
        if !privileged && failover::is_list(&a.via) && lists.len() >= USER_LISTS {
            anyhow::bail!(
                "{}: this namespace has {} lists of uplinks already ({}), the most a user's run \
                 may add; use one of them, or ask root to run it",
                a.via,
                lists.len(),
                lists.join(", ")
            );
        }
        let set_up = reconcile::for_run(
            &self.handle,
            &self.config(),
            a,
            &self.bpffs,
            self.cookie,
            runs_dir,
        )
        .await
        .with_context(|| format!("setting up {}", a.via))?;
        self.reset_lost(&set_up.lost, &set_up.exempt);
        Ok((set_up.group, set_up.warning))
    }
}
