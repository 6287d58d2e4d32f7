//! Writing a plan's route and rule changes, make-before-break: additions
//! first (`add_*`), removals only once their successors are in place
//! (`remove_*`); and removing all of srcsel's objects.
use netlink_packet_route::route::{RouteMessage, RouteProtocol};
use rtnetlink::Handle;

use super::{Dump, NetlinkError, codec, dump, err};
use crate::policy::{PROTO, Route, Rule};

/// A delete that found nothing (someone removed it first) is not an error.
fn gone(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m)
        if m.raw_code() == -libc::ESRCH || m.raw_code() == -libc::ENOENT)
}

/// Adds (or replaces) routes, in order: the connected route before the
/// default route whose gateway it makes reachable.
pub async fn add_routes(handle: &Handle, uplink: &str, add: &[Route]) -> Result<(), NetlinkError> {
    for spec in add {
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

pub async fn remove_routes(
    handle: &Handle,
    dump: &Dump,
    remove: &[Route],
) -> Result<(), NetlinkError> {
    for spec in remove {
        let Some(msg) = dump.route_msg(spec) else {
            continue;
        };
        match handle.route().del(msg.clone()).execute().await {
            Err(e) if !gone(&e) => return Err(err(format!("deleting route {spec}"))(e)),
            _ => {}
        }
    }
    Ok(())
}

pub async fn add_rules(handle: &Handle, add: &[Rule]) -> Result<(), NetlinkError> {
    for spec in add {
        let mut req = handle.rule().add().priority(spec.priority);
        codec::fill_rule(req.message_mut(), spec);
        req.execute()
            .await
            .map_err(err(format!("adding rule {spec}")))?;
    }
    Ok(())
}

pub async fn remove_rules(
    handle: &Handle,
    dump: &Dump,
    remove: &[Rule],
) -> Result<(), NetlinkError> {
    for spec in remove {
        let Some(msg) = dump.rule_msg(spec) else {
            continue;
        };
        match handle.rule().del(msg.clone()).execute().await {
            Err(e) if !gone(&e) => return Err(err(format!("deleting rule {spec}"))(e)),
            _ => {}
        }
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
