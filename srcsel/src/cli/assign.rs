//! `srcsel assign` and `srcsel unassign`: record a slice, unit or cgroup's
//! uplink in the config, and have the daemon apply it at once.
use std::path::Path;

use anyhow::Context as _;
use clap::Args;

use crate::{
    api::{Reply, Request, client::Client},
    config::edit::{self, Edit},
    kernel::{
        bpf::{Namespace, pins},
        privileges,
    },
    policy::{Assignment, Mode, dns, plan, target::Target},
};

/// Exactly one of --slice, --unit, --cgroup.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct TargetArgs {
    /// A systemd slice (for example hotspot.slice): every unit in it, and in its sub-slices
    #[arg(long, value_name = "NAME", allow_hyphen_values = true)]
    slice: Option<String>,
    /// A systemd unit (for example backup.service), across its restarts
    #[arg(long, value_name = "NAME")]
    unit: Option<String>,
    /// A cgroup, relative to the cgroup2 mount (for example hotspot.slice/app.service); made if missing
    #[arg(long, value_name = "PATH")]
    cgroup: Option<String>,
}

impl TargetArgs {
    fn target(&self) -> anyhow::Result<Target> {
        let (kind, name) = match (&self.slice, &self.unit, &self.cgroup) {
            (Some(n), _, _) => ("slice", n),
            (_, Some(n), _) => ("unit", n),
            (_, _, Some(n)) => ("cgroup", n),
            _ => unreachable!("clap requires one"),
        };
        Target::new(kind, name).map_err(anyhow::Error::msg)
    }
}

pub fn assign(target: &TargetArgs, via: &str, fallback: bool, config: &Path) -> anyhow::Result<()> {
    privileges::require()?;
    crate::config::check_via(via).map_err(anyhow::Error::msg)?;
    let target = target.target()?;
    let mode = if fallback {
        Mode::Fallback
    } else {
        Mode::Strict
    };
    let a = Assignment {
        via: via.to_owned(),
        mode,
    };
    let edit = edit::set(config, &target, Some(&a))?;
    let said = match &edit {
        Edit::Unchanged => format!("{target} was already assigned to {a}"),
        Edit::Written {
            replaced: Some(old),
        } => format!("{target}: {old} → {a}"),
        Edit::Written { replaced: None } => format!("{target} → {a}"),
    };
    eprintln!("srcsel: {said} (in {})", config.display());
    crate::systemd::dropin::write(&target, &a).context("writing the systemd drop-in")?;
    tell_daemon(config)?;
    if a.mode == Mode::Strict {
        warn_without_resolvers(via, config);
    }
    Ok(())
}

/// Strict name lookups fail while the uplink knows no resolver: said now,
/// not found out later from a program's "could not resolve host".
fn warn_without_resolvers(via: &str, config: &Path) {
    let known = (|| {
        let bpffs = pins::find_bpffs().ok()??;
        let ns = Namespace::open_existing(&bpffs, pins::netns_cookie().ok()?).ok()??;
        let id = plan::slot_held_by(&ns.registry().ok()?, via)?;
        Some(dns::knows_resolvers(&ns.dns(id).ok()?))
    })();
    if known == Some(false) {
        eprintln!(
            "srcsel: warning: {}",
            crate::reconcile::no_dns_warning(via, &config.display().to_string())
        );
    }
}

pub fn unassign(target: &TargetArgs, config: &Path) -> anyhow::Result<()> {
    privileges::require()?;
    let target = target.target()?;
    edit::set(config, &target, None)?;
    eprintln!("srcsel: {target} unassigned (in {})", config.display());
    crate::systemd::dropin::remove(&target).context("removing the systemd drop-in")?;
    tell_daemon(config)
}

/// The daemon applies the config now; without one, it does when it starts.
fn tell_daemon(config: &Path) -> anyhow::Result<()> {
    let Some(mut daemon) = Client::connect()? else {
        eprintln!(
            "srcsel: no srcsel daemon runs in this network namespace; it applies this when it \
             starts (`systemctl start srcsel`, or `srcsel daemon --config {}`)",
            config.display()
        );
        return Ok(());
    };
    let Reply::Reloaded {
        config: read,
        problems,
    } = daemon.request(Request::Reload)?
    else {
        anyhow::bail!("the srcsel daemon did not say it reloaded");
    };
    let same = Path::new(&read).canonicalize().ok() == config.canonicalize().ok();
    if !same {
        anyhow::bail!(
            "the srcsel daemon reads {read}, not {}: this change is not in force; use the same \
             --config for both",
            config.display()
        );
    }
    for p in &problems {
        eprintln!("srcsel: warning: {p}");
    }
    eprintln!("srcsel: the daemon (pid {}) applied it", daemon.daemon_pid);
    Ok(())
}
