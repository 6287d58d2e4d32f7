//! What wakes the daemon, as one enum: its loop is then one `match`
//! ([`super::Daemon::on`]), each arm a named step. Waiting for the next
//! wake-up also does the bookkeeping a source needs (a burst of netlink
//! messages is one wake-up; resolv.conf is watched anew after a change).
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{FutureExt as _, Stream, StreamExt as _};
use tokio::{
    net::UnixStream,
    signal::unix::{Signal, SignalKind, signal},
    sync::mpsc,
};
use tracing::warn;

use super::{Daemon, health::Round, server::Server};
use crate::kernel::{
    netlink::rdnss::{Rdnss, RdnssListener},
    resolv::{self, ResolvWatch},
};

/// The shortest wait for a timer of the loop.
const MIN_WAIT: Duration = Duration::from_secs(1);

pub enum Wake {
    /// Links, addresses, routes or rules changed (or the socket overran).
    Netlink,
    ResolvConf,
    /// Routers advertised resolvers.
    Rdnss(Vec<Rdnss>),
    /// An advertised resolver's lifetime ended.
    RdnssExpired,
    /// A DHCP client knew no resolvers of an uplink a moment ago.
    AskAgain,
    /// A client of the control socket.
    Conn(UnixStream),
    /// An uplink's health-check round ended.
    Health(Round),
    /// SIGHUP: read the config again.
    Reload,
    /// SIGTERM or SIGINT.
    Stop,
}

/// Every source of wake-ups.
pub struct Wakes<E> {
    events: E,
    server: Server,
    rounds: mpsc::UnboundedReceiver<Round>,
    resolv: Option<ResolvWatch>,
    rdnss: RdnssListener,
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl<E: Stream + Unpin> Wakes<E> {
    pub fn new(
        events: E,
        server: Server,
        rounds: mpsc::UnboundedReceiver<Round>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            events,
            server,
            rounds,
            resolv: watch_resolv_conf(),
            rdnss: RdnssListener::new().context("listening for router advertisements' RDNSS")?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next wake-up; Err when a source ended for good.
    pub async fn next(&mut self, d: &Daemon) -> anyhow::Result<Wake> {
        loop {
            let expiry = d.until_rdnss_expiry();
            // At least a second: a pass that failed before it could ask
            // leaves a deadline in the past, which must not spin.
            let ask_again = d
                .ask_again()
                .map(|t| t.saturating_duration_since(Instant::now()).max(MIN_WAIT));
            return Ok(tokio::select! {
                found = self.rdnss.next() => Wake::Rdnss(found.context("reading RDNSS")?),
                () = sleep_or_never(expiry) => Wake::RdnssExpired,
                () = sleep_or_never(ask_again) => Wake::AskAgain,
                r = changed(&mut self.resolv) => {
                    if let Err(e) = r {
                        warn!("watching {}: {e}", resolv::RESOLV_CONF);
                    }
                    // Watched anew: the file may have been replaced.
                    self.resolv = watch_resolv_conf();
                    Wake::ResolvConf
                }
                ev = self.events.next() => {
                    ev.context("the netlink event stream ended")?;
                    // A burst (a lease change is several messages) is one pass.
                    while let Some(Some(_)) = self.events.next().now_or_never() {}
                    Wake::Netlink
                }
                conn = self.server.accept() => match conn {
                    Ok(stream) => Wake::Conn(stream),
                    Err(e) => {
                        // Out of file descriptors: give clients time to leave.
                        warn!("control socket: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                Some(round) = self.rounds.recv() => Wake::Health(round),
                () = d.timers_changed.notified() => continue,
                _ = self.hup.recv() => Wake::Reload,
                _ = self.term.recv() => Wake::Stop,
                _ = self.int.recv() => Wake::Stop,
            });
        }
    }

    /// Runs being set up get their cgroup (running ones keep theirs); then
    /// the socket goes, still under the lock.
    pub async fn close(self, d: &Daemon, drain: Duration) {
        d.conns.drained(drain).await;
        drop(self.server);
    }
}

/// Sleeps for `d`, or forever without one.
pub async fn sleep_or_never(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// A watch on resolv.conf; without one (no inotify instance left) the
/// system's resolvers are still read at every pass.
fn watch_resolv_conf() -> Option<ResolvWatch> {
    ResolvWatch::new(std::path::Path::new(resolv::RESOLV_CONF))
        .inspect_err(|e| warn!("not watching {}: {e}", resolv::RESOLV_CONF))
        .ok()
}

async fn changed(w: &mut Option<ResolvWatch>) -> std::io::Result<()> {
    match w {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}
