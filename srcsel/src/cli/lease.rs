//! `srcsel lease`: hands a DHCP hook's lease to the daemon, or, when none
//! runs, applies it here in one pass for that uplink.
use std::path::Path;

use tracing::debug;

use crate::{
    api::{Request, client::Client},
    config::Config,
    dhcp,
    kernel::{
        self,
        bpf::{Namespace, pins},
        netlink, privileges,
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
    if let Some(mut daemon) = Client::connect()? {
        daemon.request(Request::Lease {
            interface: report.interface.clone(),
            gateway: report.gateway,
            dns: report.dns.clone(),
        })?;
        return Ok(());
    }
    // No daemon: record it and bring the uplink up to date once.
    let bpffs = pins::bpffs()?;
    let cookie = pins::netns_cookie()?;
    if report.gateway.is_none() && Namespace::open_existing(&bpffs, cookie)?.is_none() {
        // An ended lease of an uplink srcsel never set up: nothing to undo.
        return Ok(());
    }
    let config = Config::load(config_path, false)?;
    kernel::block_on(async {
        let handle = netlink::connect()?;
        let mut ns = Namespace::open(&bpffs, cookie)?;
        let scope = Scope::One(&report.interface);
        let failed = reconcile::pass(&handle, &mut ns, &config, scope, Some(&report)).await?;
        match failed.into_iter().next() {
            Some((name, e)) => Err(e.context(name)),
            None => Ok(()),
        }
    })
}
