//! `srcsel run --via IFACE -- CMD`: CMD and all it starts leave through IFACE.
//! With a daemon in the namespace, it makes the run (so users in its group
//! need no sudo); without one, root does it all here.
use std::{ffi::OsString, path::Path};

use anyhow::{Context as _, bail};
use tracing::warn;

use crate::{
    api::{
        Reply, Request,
        client::{Client, ClientError},
    },
    config::Config,
    kernel::{
        self,
        bpf::pins,
        cgroup::{self, RunCgroup},
        netlink, peer, privileges, users,
    },
    placement,
    policy::{Assignment, Mode},
    reconcile,
    supervise::{self, AsUser, Join},
};

/// Returns the command's exit status.
pub fn run(
    via: &str,
    fallback: bool,
    user: Option<&str>,
    command: &[OsString],
    config: &Path,
) -> anyhow::Result<u8> {
    let mode = if fallback {
        Mode::Fallback
    } else {
        Mode::Strict
    };
    let as_user = user.map(as_user).transpose()?;
    let can_alone = || privileges::require().is_ok();
    match Client::connect()? {
        Some(daemon) => match via_daemon(daemon, via, mode, as_user.as_ref(), command) {
            // The daemon stopped before it took the run: root does it here.
            Err(e) if is_gone(&e) && can_alone() => {
                alone(via, mode, as_user.as_ref(), command, config)
            }
            result => result,
        },
        None if can_alone() => alone(via, mode, as_user.as_ref(), command, config),
        // SAFETY: plain getter.
        None => bail!(
            "srcsel run as uid {} needs the srcsel daemon in this network namespace, and none \
             runs: start it (`sudo systemctl start srcsel`, or `sudo srcsel daemon`), or run \
             srcsel as root",
            unsafe { libc::getuid() }
        ),
    }
}

fn is_gone(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<ClientError>(), Some(ClientError::Gone))
}

/// `--user NAME`: root starts the command as NAME, like `systemd-run --uid`.
fn as_user(name: &str) -> anyhow::Result<AsUser> {
    // SAFETY: plain getter.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "--user needs root: it starts the command as another user (`sudo srcsel run --user \
             {name} …`); without it, srcsel run starts the command as you"
        );
    }
    let u = users::user(name)
        .with_context(|| format!("there is no user {name:?} (see `getent passwd {name}`)"))?;
    Ok(AsUser {
        uid: u.uid,
        gid: u.gid,
        groups: users::groups_of(&u),
        env: [
            ("HOME", u.home.clone()),
            ("USER", u.name.clone()),
            ("LOGNAME", u.name.clone()),
            ("SHELL", u.shell),
        ],
    })
}

/// The daemon checks the caller, makes the cgroup and moves the command in;
/// the command's child asks for that itself before exec, on this connection.
/// `End` removes the cgroup afterwards.
fn via_daemon(
    mut daemon: Client,
    via: &str,
    mode: Mode,
    user: Option<&AsUser>,
    command: &[OsString],
) -> anyhow::Result<u8> {
    let conn = daemon.inherited();
    let via = via.to_owned();
    // In the child: this process has no other thread (no runtime on this
    // path), so it may allocate and log there.
    let ask = move |pid| {
        let run = Request::Run {
            via: via.clone(),
            mode,
            pid,
        };
        // SAFETY: `ask` runs in the forked child, before exec, while the
        // parent's `daemon` lives.
        let asked = match unsafe { conn.request(run) } {
            Ok(Reply::Started { cgroup, warning }) => {
                if let Some(w) = warning {
                    warn!("{w}");
                }
                Asked::Started { cgroup }
            }
            Ok(reply) => Asked::failed(ClientError::Unexpected(format!("{reply:?}"))),
            Err(ClientError::Gone) => Asked::Gone,
            Err(e) => Asked::failed(e),
        };
        let started = matches!(asked, Asked::Started { .. });
        (started, serde_json::to_vec(&asked).unwrap_or_default())
    };
    let mut said = Vec::new();
    let join = Join::Asks {
        ask: Box::new(ask),
        said: &mut said,
    };
    let status = supervise::run(command, join, user);
    let cgroup = match serde_json::from_slice(&said) {
        Ok(Asked::Started { cgroup }) => cgroup,
        Ok(Asked::Gone) => return Err(ClientError::Gone.into()),
        Ok(Asked::Failed(why)) => return Err(anyhow::anyhow!(why)),
        // Not forked (spawn's error says why), or the child died before it
        // could say: that status is not the command's.
        Err(_) => {
            let code = status?;
            bail!(
                "the command's child ended before it was moved into its cgroup (status {code}); \
                 the command did not run"
            );
        }
    };
    let ended = daemon.request(Request::End);
    supervise::reap_all();
    if let Err(e) = ended {
        end_here(Path::new(&cgroup)).with_context(|| {
            format!("{e}; the run's cgroup {cgroup} is removed by the next srcsel run or daemon")
        })?;
    }
    status
}

/// What the command's child tells `srcsel run` of its `Run` request.
#[derive(serde::Serialize, serde::Deserialize)]
enum Asked {
    Started {
        cgroup: String,
    },
    /// The daemon went away before it replied.
    Gone,
    Failed(String),
}

/// A note fits a pipe's atomic write (PIPE_BUF): the child writes it
/// before exec and the parent reads it only after, so a longer one could
/// leave both waiting.
const NOTE_TEXT: usize = 2048;

impl Asked {
    fn failed(e: impl std::fmt::Display) -> Self {
        let mut why = e.to_string();
        if why.len() > NOTE_TEXT {
            let cut = (0..=NOTE_TEXT).rev().find(|&i| why.is_char_boundary(i));
            why.truncate(cut.unwrap_or(0));
            why.push('…');
        }
        Asked::Failed(why)
    }
}

/// Ends a run whose daemon went away: root removes its cgroup.
fn end_here(cgroup: &Path) -> anyhow::Result<()> {
    privileges::require()?;
    Ok(cgroup::remove(cgroup)?)
}

/// Without a daemon: root sets the uplink up, makes the cgroup and attaches.
fn alone(
    via: &str,
    mode: Mode,
    user: Option<&AsUser>,
    command: &[OsString],
    config: &Path,
) -> anyhow::Result<u8> {
    privileges::require()?;
    let cg_root = cgroup::cgroup2_mount()?;
    let cookie = pins::netns_cookie()?;
    let bpffs = pins::bpffs()?;
    let config = Config::load(config, false)?;
    let assignment = Assignment {
        via: via.to_owned(),
        mode,
    };
    let runs_dir = cgroup::runs_dir(&cg_root, cookie);
    // Without a daemon nothing resets connections: that is the daemon's.
    let reconcile::SetUp { group, warning, .. } = kernel::block_on(async {
        let handle = netlink::connect()?;
        reconcile::for_run(&handle, &config, &assignment, &bpffs, cookie, &runs_dir).await
    })?;
    if let Some(w) = warning {
        warn!("{w}");
    }
    for problem in crate::cleanup::leftovers(&cg_root, &bpffs, cookie) {
        warn!("{problem}");
    }
    let owner = std::process::id();
    let (ran, placed) = if cgroup::runs_are_scopes(&runs_dir) {
        // Under systemd: the command waits while systemd puts it in a scope
        // (making the group's slice), then the group is attached.
        let mut scope = None;
        let ask = Box::new(|pid| {
            // SAFETY: plain getter.
            let child = peer::Child::check(pid, owner, unsafe { libc::geteuid() })?;
            let what = format!("srcsel run --via {via} ({mode})");
            kernel::block_on(async {
                scope = Some(placement::into_scope(child, &group, owner, &what, &cg_root).await?);
                reconcile::attach_again(&bpffs, cookie, &assignment, &runs_dir)
            })
            .map(drop)
        });
        let ran = supervise::run(command, Join::Moved(ask), user);
        (ran, scope)
    } else {
        let cg = RunCgroup::create(&group, owner)?;
        let ran = supervise::run(command, Join::Itself(&cg), user);
        (ran, Some(cg.path().to_owned()))
    };
    // Leftovers are killed while still steered.
    let removed = placed.map(|p| cgroup::remove(&p)).transpose();
    supervise::reap_all();
    let status = ran?;
    removed?;
    Ok(status)
}
