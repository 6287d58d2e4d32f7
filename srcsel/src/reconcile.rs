//! Bringing one uplink's state in line with what the kernel says about its
//! link and lease: its slot, live map entry, routing table and rules.
//! `resolve` only reads; `commit` changes, and changes nothing that matches.
use std::net::Ipv4Addr;

use netlink_packet_route::route::RouteMessage;
use rtnetlink::Handle;

use crate::{
    config::UplinkConfig,
    ebpf::Namespace,
    routing::{self, Slot},
    uplink::Uplink,
};

/// Where the gateway came from, for logs and status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)] // read through Debug in logs
pub enum GatewaySource {
    Route,
    Hook,
    Config,
    None,
}

pub struct Resolved {
    pub slot: Slot,
    pub uplink: Uplink,
    pub gateway_source: GatewaySource,
    pub hook_gateway: Option<Ipv4Addr>,
}

/// Decides an observed uplink's slot, table and gateway.
pub fn resolve(
    ns: &mut Namespace,
    mut up: Uplink,
    cfg: Option<&UplinkConfig>,
    routes: &[RouteMessage],
) -> anyhow::Result<Resolved> {
    let name = up.name.clone();
    let name = name.as_str();
    let id = ns.slot(name, cfg.and_then(UplinkConfig::slot))?;
    let table = cfg
        .and_then(|c| c.table.as_ref())
        .map_or(routing::table_for(id), |t| *t.get_ref());
    let hook_gateway = ns.hook_gateway(id)?;
    let gateway_source = choose_gateway(&mut up, hook_gateway, cfg);
    routing::check_table_free(table, name, routes)?;
    Ok(Resolved {
        slot: Slot { id, table },
        uplink: up,
        gateway_source,
        hook_gateway,
    })
}

/// Fills in the gateway when no default route names one: the DHCP client
/// hook's, else the config's; either only if it is on the uplink's subnet.
pub fn choose_gateway(
    up: &mut Uplink,
    hook: Option<Ipv4Addr>,
    cfg: Option<&UplinkConfig>,
) -> GatewaySource {
    if up.gateway.is_some() {
        return GatewaySource::Route;
    }
    let on_link = |gw: &Ipv4Addr| up.addr.is_some_and(|a| a.network().contains(*gw));
    let (gw, source) = match (
        hook.filter(on_link),
        cfg.and_then(|c| c.gateway).filter(on_link),
    ) {
        (Some(gw), _) => (Some(gw), GatewaySource::Hook),
        (None, Some(gw)) => (Some(gw), GatewaySource::Config),
        (None, None) => (None, GatewaySource::None),
    };
    up.gateway = gw;
    source
}

/// Publishes the live state to the programs and makes table and rules match.
pub async fn commit(
    handle: &Handle,
    ns: &mut Namespace,
    r: &Resolved,
    routes: &[RouteMessage],
) -> anyhow::Result<()> {
    if ns.publish(r.slot, &r.uplink, r.hook_gateway)? {
        let u = &r.uplink;
        let addr = u.addr.map_or("no address".into(), |a| a.to_string());
        let gw = u.gateway.map_or("no gateway".into(), |g| {
            format!("gateway {g} ({:?})", r.gateway_source)
        });
        tracing::info!(
            "{}: {} (ifindex {}), {addr}, {gw}",
            u.name,
            if u.usable() { "up" } else { "down" },
            u.index
        );
    }
    routing::apply(handle, r.slot, &r.uplink, routes).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(addr: &str, gw: Option<&str>) -> Uplink {
        Uplink {
            name: "eth0v0".into(),
            index: 4,
            up: true,
            addr: Some(addr.parse().unwrap()),
            gateway: gw.map(|g| g.parse().unwrap()),
        }
    }

    #[test]
    fn route_beats_hook_beats_config_and_off_link_gateways_are_ignored() {
        let cfg = crate::config::Config::parse(
            "[[uplink]]\nname = \"eth0v0\"\ngateway = \"203.0.113.254\"\n",
            "t",
        )
        .unwrap();
        let cfg = cfg.uplink("eth0v0");
        let hook = Some("203.0.113.1".parse().unwrap());
        let mut u = up("203.0.113.7/24", Some("203.0.113.9"));
        assert_eq!(choose_gateway(&mut u, hook, cfg), GatewaySource::Route);
        let mut u = up("203.0.113.7/24", None);
        assert_eq!(choose_gateway(&mut u, hook, cfg), GatewaySource::Hook);
        assert_eq!(u.gateway, hook);
        let mut u = up("203.0.113.7/24", None);
        assert_eq!(
            choose_gateway(&mut u, Some("10.0.0.1".parse().unwrap()), cfg),
            GatewaySource::Config
        );
        let mut u = up("198.51.100.7/24", None);
        assert_eq!(choose_gateway(&mut u, hook, cfg), GatewaySource::None);
        assert_eq!(u.gateway, None);
    }
}
