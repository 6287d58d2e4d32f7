//! One snapshot of links, addresses, routes and rules, each dumped once, with
//! the raw messages kept beside the decoded ones so that deleting an object
//! sends back exactly what the kernel reported.
use std::net::{Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt as _;
use netlink_packet_route::{route::RouteMessage, rule::RuleMessage};
use rtnetlink::{Handle, IpVersion, RouteMessageBuilder};

use super::{NetlinkError, codec, err};
use crate::policy::{Route, Rule, Snapshot};

pub struct Dump {
    pub snapshot: Snapshot,
    /// Aligned with `snapshot.routes` and `snapshot.rules`.
    route_msgs: Vec<RouteMessage>,
    rule_msgs: Vec<RuleMessage>,
}

impl Dump {
    pub async fn read(handle: &Handle) -> Result<Self, NetlinkError> {
        let mut snapshot = Snapshot {
            now: boottime_secs(),
            ..Snapshot::default()
        };
        let links: Vec<_> = handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(err("dumping links"))?;
        snapshot.links = links.iter().filter_map(codec::link).collect();
        let addrs: Vec<_> = handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(err("dumping addresses"))?;
        snapshot.addresses = addrs.iter().filter_map(codec::address).collect();
        let mut route_msgs = Vec::new();
        for m in routes(handle).await? {
            if let Some(r) = codec::route(&m) {
                snapshot.routes.push(r);
                route_msgs.push(m);
            }
        }
        let mut rule_msgs = Vec::new();
        for m in rules(handle).await? {
            if let Some(r) = codec::rule(&m) {
                snapshot.rules.push(r);
                rule_msgs.push(m);
            }
        }
        Ok(Self {
            snapshot,
            route_msgs,
            rule_msgs,
        })
    }

    /// The dumped message of one of srcsel's routes.
    pub fn route_msg(&self, spec: &Route) -> Option<&RouteMessage> {
        let i = self
            .snapshot
            .routes
            .iter()
            .position(|r| r.is_ours() && r.spec == *spec)?;
        self.route_msgs.get(i)
    }

    /// The dumped message of one of srcsel's rules.
    pub fn rule_msg(&self, spec: &Rule) -> Option<&RuleMessage> {
        let i = self
            .snapshot
            .rules
            .iter()
            .position(|r| r.is_ours() && r.spec == *spec)?;
        self.rule_msgs.get(i)
    }
}

/// Every route of every table, both families, as the kernel sent them.
pub async fn routes(handle: &Handle) -> Result<Vec<RouteMessage>, NetlinkError> {
    let mut all = Vec::new();
    for query in [
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ] {
        let msgs: Vec<RouteMessage> = handle
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .map_err(err("dumping routes"))?;
        all.extend(msgs);
    }
    Ok(all)
}

/// srcsel's own rules, both families: what status shows, without the
/// links, addresses and routes of every table a pass reads.
pub async fn our_rules(handle: &Handle) -> Result<Vec<Rule>, NetlinkError> {
    Ok(rules(handle)
        .await?
        .iter()
        .filter_map(codec::rule)
        .filter(|r| r.is_ours())
        .map(|r| r.spec)
        .collect())
}

/// Every rule, both families, as the kernel sent them.
pub async fn rules(handle: &Handle) -> Result<Vec<RuleMessage>, NetlinkError> {
    let mut all = Vec::new();
    for version in [IpVersion::V4, IpVersion::V6] {
        let msgs: Vec<RuleMessage> = handle
            .rule()
            .get(version)
            .execute()
            .try_collect()
            .await
            .map_err(err("dumping rules"))?;
        all.extend(msgs);
    }
    Ok(all)
}

/// CLOCK_BOOTTIME in seconds: RDNSS lifetimes run on while the host sleeps.
pub fn boottime_secs() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0)
}
