//! `srcsel daemon`: keeps every managed uplink's table, rules and live eBPF
//! state equal to what the kernel and the config say. Event-driven: it
//! reconciles on rtnetlink multicast messages (an overrun is a message too)
//! and on lease reports from DHCP client hooks; it never polls.
use std::{
    collections::BTreeSet,
    os::{linux::net::SocketAddrExt as _, unix::net::SocketAddr},
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::Context as _;
use futures::{FutureExt as _, StreamExt as _};
use rtnetlink::{Handle, MulticastGroup};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    signal::unix::{SignalKind, signal},
};
use tracing::{debug, info, warn};

use crate::{
    config::Config,
    ebpf::{self, Namespace},
    lease, privileges, reconcile, routing, uplink,
};

struct Daemon {
    handle: Handle,
    config: Config,
    bpffs: PathBuf,
    cookie: u64,
}

pub fn daemon(config_path: &Path, explicit: bool) -> anyhow::Result<()> {
    privileges::require()?;
    let config = Config::load(config_path, explicit)?;
    crate::block_on(run(config))
}

async fn run(config: Config) -> anyhow::Result<()> {
    let (conn, handle, mut events) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv4Rule,
        MulticastGroup::Ipv6Rule,
    ])?;
    tokio::spawn(conn);
    // Tables named in the config must be free before anything changes.
    let routes = routing::all_routes4(&handle).await?;
    for u in &config.uplinks {
        if let Some(t) = &u.table {
            routing::check_table_free(*t.get_ref(), u.name.get_ref(), &routes)?;
        }
    }
    let listener = listen()?;
    let bpffs = ebpf::bpffs()?;
    let d = Daemon {
        handle,
        config,
        bpffs,
        cookie: ebpf::netns_cookie()?,
    };
    d.ensure_configured_programs()?;
    d.reconcile("start").await;
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
                d.reconcile("netlink event").await;
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

fn listen() -> anyhow::Result<UnixListener> {
    let addr = SocketAddr::from_abstract_name(lease::SOCKET)?;
    let std = std::os::unix::net::UnixListener::bind_addr(&addr).context(
        "binding the lease socket: is another srcsel daemon running in this network namespace?",
    )?;
    std.set_nonblocking(true)?;
    Ok(UnixListener::from_std(std)?)
}

impl Daemon {
    fn ensure_configured_programs(&self) -> anyhow::Result<()> {
        let mut ns = Namespace::open(&self.bpffs, self.cookie)?;
        for u in &self.config.uplinks {
            let name = u.name.get_ref();
            let id = ns.slot(name, u.slot())?;
            for strict in [true, false] {
                ns.ensure_programs(name, id, strict)?;
            }
        }
        Ok(())
    }

    /// One full pass over every managed uplink; errors are logged per uplink.
    async fn reconcile(&self, why: &str) {
        let t = Instant::now();
        if let Err(e) = self.try_reconcile().await {
            warn!("reconcile ({why}): {e:#}");
        }
        debug!("reconciled ({why}) in {:?}", t.elapsed());
    }

    async fn try_reconcile(&self) -> anyhow::Result<()> {
        let mut ns = Namespace::open(&self.bpffs, self.cookie)?;
        let routes = routing::all_routes4(&self.handle).await?;
        for name in self.managed(&ns)? {
            let cfg = self.config.uplink(&name);
            let result = async {
                let up = uplink::observe_or_absent(&self.handle, &name, &routes).await?;
                let r = reconcile::resolve(&mut ns, up, cfg, &routes)?;
                reconcile::commit(&self.handle, &mut ns, &r, &routes).await
            };
            if let Err(e) = result.await {
                warn!("{name}: {e:#}");
            }
        }
        ns.sync_exempt(&routing::exempt_prefixes(&routes))?;
        Ok(())
    }

    /// Uplinks in the config, and those a `srcsel run` set up (their slots).
    fn managed(&self, ns: &Namespace) -> anyhow::Result<BTreeSet<String>> {
        let mut names: BTreeSet<String> = self
            .config
            .uplinks
            .iter()
            .map(|u| u.name.get_ref().clone())
            .collect();
        for (_, s) in ns.uplinks()? {
            names.insert(
                String::from_utf8_lossy(&s.name)
                    .trim_end_matches('\0')
                    .to_owned(),
            );
        }
        Ok(names)
    }

    async fn serve_lease(&self, stream: UnixStream) -> anyhow::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        BufReader::new(read).read_line(&mut line).await?;
        let (iface, gw) =
            lease::from_line(&line).with_context(|| format!("malformed lease report {line:?}"))?;
        record_hook_gateway(&self.bpffs, self.cookie, &iface, gw)?;
        info!(
            "lease hook: {iface} gateway {}",
            gw.map_or("none".into(), |g| g.to_string())
        );
        self.reconcile("lease hook").await;
        write.write_all(b"ok\n").await?;
        Ok(())
    }
}

/// Stores a hook's gateway in the uplink's slot, where every srcsel process
/// of the namespace (daemon, run, a later daemon) finds it.
pub fn record_hook_gateway(
    bpffs: &Path,
    cookie: u64,
    iface: &str,
    gw: Option<std::net::Ipv4Addr>,
) -> anyhow::Result<()> {
    let mut ns = Namespace::open(bpffs, cookie)?;
    let id = ns.slot(iface, None)?;
    ns.set_hook_gateway(id, gw)?;
    Ok(())
}

/// `srcsel lease`: hands a hook's lease to the daemon, or applies it here.
pub fn lease_command(args: &[String]) -> anyhow::Result<()> {
    let env = std::env::vars().collect();
    let event = match lease::parse(&env, args)? {
        lease::Parsed::Event(e) => e,
        lease::Parsed::Ignored { interface, reason } => {
            debug!("{interface}: {reason} changes no lease");
            return Ok(());
        }
    };
    privileges::require()?;
    let line = lease::to_line(&event);
    let addr = SocketAddr::from_abstract_name(lease::SOCKET)?;
    if let Ok(mut s) = std::os::unix::net::UnixStream::connect_addr(&addr) {
        use std::io::{BufRead as _, Write as _};
        s.write_all(line.as_bytes())?;
        let mut reply = String::new();
        std::io::BufReader::new(s).read_line(&mut reply)?;
        anyhow::ensure!(
            reply.trim() == "ok",
            "the daemon did not take the lease: {reply:?}"
        );
        return Ok(());
    }
    // No daemon: record it and bring the uplink up to date once.
    let bpffs = ebpf::bpffs()?;
    let cookie = ebpf::netns_cookie()?;
    if event.gateway.is_none() && Namespace::open_existing(&bpffs, cookie)?.is_none() {
        // An ended lease of an uplink srcsel never set up: nothing to undo.
        return Ok(());
    }
    record_hook_gateway(&bpffs, cookie, &event.interface, event.gateway)?;
    crate::block_on(async {
        let handle = crate::netlink()?;
        let routes = routing::all_routes4(&handle).await?;
        let mut ns = Namespace::open(&bpffs, cookie)?;
        let config = Config::load(Path::new(crate::config::DEFAULT_PATH), false)?;
        let up = uplink::observe_or_absent(&handle, &event.interface, &routes).await?;
        let r = reconcile::resolve(&mut ns, up, config.uplink(&event.interface), &routes)?;
        reconcile::commit(&handle, &mut ns, &r, &routes).await
    })
}
