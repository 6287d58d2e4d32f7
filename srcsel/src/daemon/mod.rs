//! `srcsel daemon`: keeps every managed uplink's table, rules and live eBPF
//! state equal to what the kernel and the config say. Event-driven: a pass
//! runs on rtnetlink multicast messages (an overrun is a message too) and on
//! lease reports from DHCP client hooks; it never polls.
pub mod socket;

use std::{path::PathBuf, time::Instant};

use anyhow::Context as _;
use futures::{FutureExt as _, StreamExt as _};
use rtnetlink::Handle;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::UnixStream,
    signal::unix::{SignalKind, signal},
};
use tracing::{debug, info, warn};

use crate::{
    config::Config,
    kernel::{
        self,
        bpf::{Namespace, pins},
        cgroup,
        netlink::{Dump, events},
    },
    policy::{
        Mode, Scope, Uplink,
        plan::{self, HookReport},
        uplink::UplinkError,
    },
    reconcile,
};

struct Daemon {
    handle: Handle,
    config: Config,
    bpffs: PathBuf,
    cookie: u64,
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let (handle, mut events) = events::subscribe()?;
    let cookie = pins::netns_cookie()?;
    // Every configured uplink must be plannable before anything changes.
    let dump = Dump::read(&handle).await?;
    let registry = Namespace::peek_registry(cookie)?;
    let check = plan::plan(&config, &dump.snapshot, &registry, Scope::Managed, None);
    check.check()?;
    if let Some((name, e)) = check
        .failed
        .iter()
        .find(|(name, _)| config.uplink(name).is_some())
    {
        return Err(e.clone()).with_context(|| format!("uplink {name} in the config"));
    }
    for u in &config.uplinks {
        let name = u.name.get_ref();
        if let Err(e @ (UplinkError::NotFound(_) | UplinkError::Loopback(_))) =
            Uplink::observe(&dump.snapshot, name)
        {
            warn!(
                "uplink {name} in the config: {e}; it stays down until such an interface appears"
            );
        }
    }
    let listener = socket::listen()?;
    let d = Daemon {
        handle,
        config,
        bpffs: pins::bpffs()?,
        cookie,
    };
    d.reap();
    d.reconcile("start", None).await;
    d.ensure_configured_programs()?;
    let (mut term, mut int) = (
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
    );
    info!("watching links, addresses, routes and rules");
    loop {
        tokio::select! {
            ev = events.next() => {
                ev.context("the netlink event stream ended")?;
                // Coalesce a burst (a lease change is several messages) into one pass.
                while let Some(Some(_)) = events.next().now_or_never() {}
                d.reconcile("netlink event", None).await;
            }
            conn = listener.accept() => match conn {
                Ok((stream, _)) => {
                    if let Err(e) = d.serve_lease(stream).await {
                        warn!("lease report: {e:#}");
                    }
                }
                Err(e) => warn!("lease socket: {e}"),
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    // Rules, routes and pins stay: traffic keeps flowing; `srcsel down` removes them.
    info!("stopping; uplink state stays in force");
    Ok(())
}

impl Daemon {
    /// Both modes' programs of every configured uplink, so that runs and
    /// assignments find them pinned.
    fn ensure_configured_programs(&self) -> anyhow::Result<()> {
        let ns = Namespace::open(&self.bpffs, self.cookie)?;
        let registry = ns.registry()?;
        for u in &self.config.uplinks {
            let name = u.name.get_ref();
            let Some(id) = plan::slot_of(&registry, name) else {
                continue;
            };
            for mode in Mode::ALL {
                ns.ensure_programs(name, id, mode)?;
            }
        }
        Ok(())
    }

    /// Removes what dead runs and gone namespaces left (at start: a run
    /// ending makes no event, and the next run reaps too).
    fn reap(&self) {
        if let Ok(root) = cgroup::cgroup2_mount() {
            for problem in kernel::reap(&root, &self.bpffs, self.cookie) {
                warn!("{problem}");
            }
        }
    }

    /// One full pass over every managed uplink; failures are logged per uplink.
    async fn reconcile(&self, why: &str, hook: Option<&HookReport>) {
        let t = Instant::now();
        let result = async {
            let mut ns = Namespace::open(&self.bpffs, self.cookie)?;
            reconcile::pass(&self.handle, &mut ns, &self.config, Scope::Managed, hook).await
        };
        match result.await {
            Ok(failed) => {
                for (name, e) in failed {
                    warn!("{name}: {e:#}");
                }
            }
            Err(e) => warn!("reconcile ({why}): {e:#}"),
        }
        debug!("reconciled ({why}) in {:?}", t.elapsed());
    }

    async fn serve_lease(&self, stream: UnixStream) -> anyhow::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        BufReader::new(read).read_line(&mut line).await?;
        if line.is_empty() {
            // A probe (`srcsel status`, `srcsel down`) that sent nothing.
            return Ok(());
        }
        let report =
            socket::from_line(&line).with_context(|| format!("malformed lease report {line:?}"))?;
        info!(
            "lease hook: {} gateway {}",
            report.interface,
            report.gateway.map_or("none".into(), |g| g.to_string())
        );
        self.reconcile("lease hook", Some(&report)).await;
        write.write_all(b"ok\n").await?;
        Ok(())
    }
}
