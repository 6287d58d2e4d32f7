//! Connections that cannot work any more, reset: how (tried once at
//! start), and the resets after a pass.
use std::collections::BTreeSet;

use tracing::{debug, info, warn};

use super::Daemon;
use crate::{kernel::sock_reset, reconcile};

/// How this kernel lets the daemon reset connections, tried at start on
/// a connection of its own; said once in the log, and in `srcsel status`.
/// `SRCSEL_RESET=pidfd` skips SOCK_DESTROY (to test the other way).
pub fn detect() -> sock_reset::Method {
    let without_destroy = std::env::var("SRCSEL_RESET").is_ok_and(|v| v == "pidfd");
    let (method, why) = sock_reset::detect(without_destroy);
    match method {
        sock_reset::Method::Unavailable => warn!(
            "connections that cannot work any more (an uplink renumbered, down or failing its              health checks) will not be reset: {}",
            why.join("; ")
        ),
        m => info!("connections that cannot work any more are reset with {m}"),
    }
    method
}

impl Daemon {
    /// Resets the assigned connections bound to addresses their uplinks
    /// lost: their programs see an error now, and reconnect through what is
    /// in force, instead of hanging until their own timeouts. Those to a
    /// LAN the address still reaches are spared. Off the loop's thread: a
    /// dump (or, without SOCK_DESTROY, a scan of /proc) takes a while.
    pub(super) fn reset_lost(&self, lost: &[reconcile::Lost], lan: &BTreeSet<ipnet::IpNet>) {
        if lost.is_empty() {
            return;
        }
        let sels: Vec<sock_reset::Selector> = lost
            .iter()
            .map(|l| sock_reset::Selector {
                value: l.mark,
                mask: srcsel_common::UPLINK_MASK,
                local: Some(l.addr),
                spare: if l.kept {
                    lan.iter().copied().collect()
                } else {
                    Vec::new()
                },
            })
            .collect();
        let what: Vec<String> = lost
            .iter()
            .map(|l| format!("{} {}", l.uplink, l.addr))
            .collect();
        let method = self.reset;
        tokio::task::spawn_blocking(move || match sock_reset::reset(method, &sels) {
            Ok(0) => debug!("no assigned connection to reset ({})", what.join(", ")),
            Ok(n) => info!(
                "reset {n} assigned connections ({}, {method})",
                what.join(", ")
            ),
            Err(e) => warn!("resetting connections ({}): {e}", what.join(", ")),
        });
    }
}
