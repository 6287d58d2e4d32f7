//! `srcsel lease`: hands a DHCP hook's lease to the daemon, or, when none
//! runs, applies it here in one pass for that uplink.
use std::{net::Ipv4Addr, path::Path};

use anyhow::Context as _;
use tracing::{debug, warn};

use crate::{
    api::{
        ErrorKind, Request,
        client::{Client, ClientError},
    },
    config::Config,
    dhcp,
    kernel::{
        self,
        bpf::{Namespace, pins},
        netlink::{self, dump::boottime_secs},
        privileges,
    },
    policy::{Scope, plan::HookReport},
    reconcile,
};

pub fn lease(args: &[String], config_path: &Path) -> anyhow::Result<()> {
    let env = std::env::vars().collect();
    let event = match dhcp::parse(&env, args)? {
        dhcp::Parsed::Event(e) => e,
        dhcp::Parsed::Ignored { interface, reason } => {
            debug!("{interface}: {reason} changes no lease");
            return Ok(());
        }
    };
    privileges::require()?;
    let report = HookReport {
        interface: event.interface,
        gateway: event.gateway,
        dns: event.dns,
    };
    if let Some(daemon) = Client::connect()? {
        return tell(daemon, &report);
    }
    // No daemon: record it, and bring the uplink up to date once if
    // something named it.
    let cookie = pins::netns_cookie()?;
    let config = Config::load(config_path, false)?;
    let bpffs = pins::bpffs()?;
    kernel::block_on(async {
        let mut ns = Namespace::open(&bpffs, cookie)?;
        if !report.concerns(&config, &ns.registry()?) {
            ns.record_lease(&report, boottime_secs())?;
            debug!(
                "{}: recorded; not an uplink srcsel manages, so nothing changes",
                report.interface
            );
            return Ok(());
        }
        let handle = netlink::connect()?;
        let scope = Scope::One(&report.interface);
        let mut asker = crate::dhcp_clients::Asker::default();
        let failed = reconcile::pass(
            &handle,
            &mut ns,
            &config,
            scope,
            Some(&report),
            &mut asker,
            None,
        )
        .await?
        .failed;
        match failed.into_iter().next() {
            Some((name, e)) => Err(e.context(name)),
            None => Ok(()),
        }
    })
}

/// Hands the lease to the daemon. One started before srcsel learned
/// resolvers (upgraded, not yet restarted) refuses the `dns` field: the
/// gateway matters more, so it is sent again without them.
fn tell(mut daemon: Client, report: &HookReport) -> anyhow::Result<()> {
    let lease = |dns: Vec<Ipv4Addr>| Request::Lease {
        interface: report.interface.clone(),
        gateway: report.gateway,
        dns,
    };
    match daemon.request(lease(report.dns.clone())) {
        Err(ClientError::Daemon {
            kind: ErrorKind::BadRequest,
            message,
        }) if !report.dns.is_empty() => {
            warn!(
                "the running srcsel daemon is older than this srcsel ({message}); \
                 its DNS servers are not recorded until it restarts (systemctl restart srcsel)"
            );
            let mut again = Client::connect()?.context("the srcsel daemon stopped")?;
            again
                .request(lease(Vec::new()))
                .map(drop)
                .map_err(Into::into)
        }
        r => r.map(drop).map_err(Into::into),
    }
}
