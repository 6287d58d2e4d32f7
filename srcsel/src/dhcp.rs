//! What a DHCP client hook knows about a lease (dhcpcd, dhclient, udhcpc,
//! NetworkManager's dispatcher), read from its variables for `srcsel lease`.
use std::{collections::HashMap, net::Ipv4Addr};

/// One lease event, reduced to what srcsel uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseEvent {
    pub interface: String,
    /// The gateway while the lease holds; None once it has ended.
    pub gateway: Option<Ipv4Addr>,
    pub address: Option<Ipv4Addr>,
    pub mtu: Option<u32>,
    pub dns: Vec<Ipv4Addr>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LeaseError {
    #[error(
        "no lease variables found: run `srcsel lease` from a DHCP client hook (dhcpcd, dhclient, udhcpc, \
         NetworkManager dispatcher), which sets `interface` and `reason`"
    )]
    NotAHook,
    #[error("the hook's interface {0}")]
    BadInterface(String),
    #[error("the hook's {var}={value:?} is not a list of IPv4 addresses")]
    BadAddress { var: String, value: String },
}

/// What the hook's event means for srcsel.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Event(LeaseEvent),
    /// An event that changes no lease (PREINIT, CARRIER, a v6 event, ...).
    Ignored {
        interface: String,
        reason: String,
    },
}

const BOUND: &[&str] = &[
    "BOUND",
    "RENEW",
    "REBIND",
    "REBOOT",
    "INFORM",
    "STATIC",
    "TIMEOUT",
    "bound",
    "renew",
    "up",
    "dhcp4-change",
];
const ENDED: &[&str] = &[
    "EXPIRE",
    "FAIL",
    "RELEASE",
    "NAK",
    "STOP",
    "STOPPED",
    "NOCARRIER",
    "DEPARTED",
    "deconfig",
    "leasefail",
    "nak",
    "down",
];

/// The variable names one family of DHCP clients uses for a lease.
struct Names {
    routers: &'static str,
    address: &'static str,
    mtu: &'static str,
    dns: &'static str,
    /// Where the DNS servers are when `dns` is empty or unset.
    dns_else: Option<&'static str>,
}

/// dhcpcd and dhclient (`reason` in the environment).
const DHCLIENT: Names = Names {
    routers: "new_routers",
    address: "new_ip_address",
    mtu: "new_interface_mtu",
    dns: "new_domain_name_servers",
    dns_else: None,
};
/// udhcpc (the event is `$1`).
const UDHCPC: Names = Names {
    routers: "router",
    address: "ip",
    mtu: "mtu",
    dns: "dns",
    dns_else: None,
};
/// NetworkManager's dispatcher (`$1` interface, `$2` action).
const NETWORK_MANAGER: Names = Names {
    routers: "DHCP4_ROUTERS",
    address: "DHCP4_IP_ADDRESS",
    mtu: "DHCP4_INTERFACE_MTU",
    dns: "DHCP4_DOMAIN_NAME_SERVERS",
    // The connection's IPv4 servers (the lease's, or those its profile sets).
    dns_else: Some("IP4_NAMESERVERS"),
};

/// The addresses in variable `var` (space- or comma-separated); one that
/// does not parse is an error, never dropped silently.
fn ipv4s(env: &HashMap<String, String>, var: &str) -> Result<Vec<Ipv4Addr>, LeaseError> {
    let Some(value) = env.get(var) else {
        return Ok(Vec::new());
    };
    value
        .split([' ', ','])
        .filter(|w| !w.is_empty())
        .map(|w| w.parse())
        .collect::<Result<_, _>>()
        .map_err(|_| LeaseError::BadAddress {
            var: var.to_owned(),
            value: value.chars().take(80).collect(),
        })
}

/// Parses hook variables `env` and arguments `args` (udhcpc passes the event
/// as `$1`; NetworkManager passes interface and action).
pub fn parse(env: &HashMap<String, String>, args: &[String]) -> Result<Parsed, LeaseError> {
    match (env.get("interface"), env.get("reason"), args) {
        (Some(iface), Some(reason), _) => event(env, iface, reason, &DHCLIENT),
        (Some(iface), None, [event_name, ..]) => event(env, iface, event_name, &UDHCPC),
        (None, _, [iface, action]) => {
            // NetworkManager also dispatches `up` for links without DHCPv4,
            // and a `dhcp4-change` with no lease while one starts (seen on
            // 1.42): without DHCP4_* variables they say nothing of a lease.
            let lease = env.keys().any(|k| k.starts_with("DHCP4_"));
            if !lease && action != "down" {
                crate::config::check_ifname(iface).map_err(LeaseError::BadInterface)?;
                return Ok(Parsed::Ignored {
                    interface: iface.clone(),
                    reason: format!(
                        "{} without DHCPv4",
                        action.chars().take(40).collect::<String>()
                    ),
                });
            }
            event(env, iface, action, &NETWORK_MANAGER)
        }
        _ => Err(LeaseError::NotAHook),
    }
}

fn event(
    env: &HashMap<String, String>,
    interface: &str,
    reason: &str,
    names: &Names,
) -> Result<Parsed, LeaseError> {
    crate::config::check_ifname(interface).map_err(LeaseError::BadInterface)?;
    let ended = ENDED.contains(&reason);
    if !ended && !BOUND.contains(&reason) {
        return Ok(Parsed::Ignored {
            interface: interface.to_owned(),
            reason: reason.chars().take(40).collect(),
        });
    }
    // An ended lease's variables describe the old lease: not used.
    let first = |var: &str| -> Result<Option<Ipv4Addr>, LeaseError> {
        Ok(if ended {
            None
        } else {
            ipv4s(env, var)?.first().copied()
        })
    };
    Ok(Parsed::Event(LeaseEvent {
        interface: interface.to_owned(),
        gateway: first(names.routers)?,
        address: first(names.address)?,
        mtu: env.get(names.mtu).and_then(|m| m.parse().ok()),
        dns: if ended {
            Vec::new()
        } else {
            let dns = match (ipv4s(env, names.dns)?, names.dns_else) {
                (dns, Some(var)) if dns.is_empty() => ipv4s(env, var)?,
                (dns, _) => dns,
            };
            dns.into_iter()
                .filter(|a| crate::policy::dns::can_resolve((*a).into()))
                .collect()
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn event(p: Parsed) -> LeaseEvent {
        match p {
            Parsed::Event(e) => e,
            other => panic!("not an event: {other:?}"),
        }
    }

    #[test]
    fn dhcpcd_bound_with_nogateway_still_reports_routers() {
        let e = event(
            parse(
                &env(&[
                    ("interface", "eth0v0"),
                    ("reason", "BOUND"),
                    ("new_ip_address", "203.0.113.7"),
                    ("new_routers", "203.0.113.1 203.0.113.2"),
                    ("new_interface_mtu", "1500"),
                    // A router naming its own loopback stub: not the uplink's.
                    ("new_domain_name_servers", "192.0.2.53 127.0.0.1 192.0.2.54"),
                ]),
                &[],
            )
            .unwrap(),
        );
        assert_eq!(e.interface, "eth0v0");
        assert_eq!(e.gateway, Some("203.0.113.1".parse().unwrap()));
        assert_eq!(e.address, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(e.mtu, Some(1500));
        assert_eq!(
            e.dns,
            ["192.0.2.53", "192.0.2.54"].map(|a| a.parse::<Ipv4Addr>().unwrap())
        );
    }

    #[test]
    fn ended_leases_clear_the_gateway_and_others_are_ignored() {
        let e = event(
            parse(
                &env(&[
                    ("interface", "usb0"),
                    ("reason", "EXPIRE"),
                    ("new_routers", "1.2.3.4"),
                ]),
                &[],
            )
            .unwrap(),
        );
        assert_eq!(e.gateway, None);
        assert!(matches!(
            parse(&env(&[("interface", "usb0"), ("reason", "PREINIT")]), &[]).unwrap(),
            Parsed::Ignored { .. }
        ));
    }

    #[test]
    fn udhcpc_and_network_manager() {
        let u = event(
            parse(
                &env(&[
                    ("interface", "wwan0"),
                    ("ip", "10.0.0.5"),
                    ("router", "10.0.0.1"),
                ]),
                &["bound".into()],
            )
            .unwrap(),
        );
        assert_eq!(u.gateway, Some("10.0.0.1".parse().unwrap()));
        let d = event(parse(&env(&[("interface", "wwan0")]), &["deconfig".into()]).unwrap());
        assert_eq!(d.gateway, None);
        let nm = event(
            parse(
                &env(&[
                    ("CONNECTION_UUID", "x"),
                    ("DHCP4_ROUTERS", "192.168.8.1"),
                    ("IP4_NAMESERVERS", "192.168.8.1 9.9.9.9"),
                ]),
                &["usb0".into(), "up".into()],
            )
            .unwrap(),
        );
        assert_eq!(
            (nm.interface.as_str(), nm.gateway),
            ("usb0", Some("192.168.8.1".parse().unwrap()))
        );
        assert_eq!(nm.dns.len(), 2, "IP4_NAMESERVERS when the lease names none");
        // What NetworkManager 1.42 dispatches around an activation besides the lease.
        let nm_env = env(&[("CONNECTION_ID", "hotspot")]);
        for action in ["dhcp4-change", "up"] {
            let p = parse(&nm_env, &["usb0".into(), action.into()]).unwrap();
            assert!(matches!(p, Parsed::Ignored { .. }), "{action}: {p:?}");
        }
        let down = event(parse(&nm_env, &["usb0".into(), "down".into()]).unwrap());
        assert_eq!(down.gateway, None);
    }

    #[test]
    fn bad_interfaces_and_addresses_are_refused_by_name() {
        for iface in ["", "../../etc", &"x".repeat(500)] {
            let e = parse(&env(&[("interface", iface), ("reason", "BOUND")]), &[]).unwrap_err();
            assert!(matches!(e, LeaseError::BadInterface(_)), "{e}");
        }
        let e = parse(
            &env(&[
                ("interface", "usb0"),
                ("reason", "BOUND"),
                ("new_routers", "999.1.1.1"),
            ]),
            &[],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the hook's new_routers=\"999.1.1.1\" is not a list of IPv4 addresses"
        );
    }

    #[test]
    fn outside_a_hook_it_says_what_to_do() {
        assert_eq!(
            parse(&env(&[("PATH", "/bin")]), &[]),
            Err(LeaseError::NotAHook)
        );
    }
}
