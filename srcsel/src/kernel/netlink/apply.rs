//! Writing a plan's route and rule changes, and removing all of srcsel's.
use netlink_packet_route::route::{RouteMessage, RouteProtocol};
use rtnetlink::Handle;

use super::{Dump, NetlinkError, codec, dump, err};
use crate::policy::{PROTO, Route, Rule, routing::Changes};

/// Makes one uplink's routes match: stale ones go, then new ones are added
/// (the connected route before the default route whose gateway it makes
/// reachable).
pub async fn routes(
    handle: &Handle,
    dump: &Dump,
    uplink: &str,
    changes: &Changes<Route>,
) -> Result<(), NetlinkError> {
    for spec in &changes.remove {
        if let Some(msg) = dump.route_msg(spec) {
            handle
                .route()
                .del(msg.clone())
                .execute()
                .await
                .map_err(err(format!("deleting route {spec}")))?;
        }
    }
    for spec in &changes.add {
        handle
            .route()
            .add(codec::route_message(spec))
            .replace()
            .execute()
            .await
            .map_err(err(format!("adding route {spec} for {uplink}")))?;
    }
    Ok(())
}

/// Makes one uplink's rules match.
pub async fn rules(
    handle: &Handle,
    dump: &Dump,
    changes: &Changes<Rule>,
) -> Result<(), NetlinkError> {
    for spec in &changes.remove {
        if let Some(msg) = dump.rule_msg(spec) {
            handle
                .rule()
                .del(msg.clone())
                .execute()
                .await
                .map_err(err(format!("deleting rule {spec}")))?;
        }
    }
    for spec in &changes.add {
        let mut req = handle.rule().add().priority(spec.priority);
        codec::fill_rule(req.message_mut(), spec);
        req.execute()
            .await
            .map_err(err(format!("adding rule {spec}")))?;
    }
    Ok(())
}

/// Removes every rule and route that carries srcsel's protocol number,
/// whatever its kind; returns how many.
pub async fn remove_all(handle: &Handle) -> Result<usize, NetlinkError> {
    let mut removed = 0;
    for msg in dump::rules(handle)
        .await?
        .into_iter()
        .filter(codec::is_our_rule)
    {
        handle
            .rule()
            .del(msg)
            .execute()
            .await
            .map_err(err("deleting a rule of srcsel"))?;
        removed += 1;
    }
    let ours = |m: &RouteMessage| m.header.protocol == RouteProtocol::Other(PROTO);
    for msg in dump::routes(handle).await?.into_iter().filter(ours) {
        handle
            .route()
            .del(msg)
            .execute()
            .await
            .map_err(err("deleting a route of srcsel"))?;
        removed += 1;
    }
    Ok(removed)
}
