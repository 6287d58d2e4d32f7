//! systemd-networkd's state file of a link, `/run/systemd/netif/links/<ifindex>`
//! (world-readable): its `DNS=` line lists the link's resolvers, static ones
//! first, then DHCPv4's, DHCPv6's and the router advertisements'.
use std::{fs, net::IpAddr};

use crate::policy::dns::{Asked, DnsSource};

const LINKS: &str = "/run/systemd/netif/links";

/// Some(answer) when networkd keeps the link (even with no resolver), None
/// when it does not.
pub fn ask(index: u32) -> Option<Option<Asked>> {
    let text = fs::read_to_string(format!("{LINKS}/{index}")).ok()?;
    Some(parse(&text))
}

fn parse(text: &str) -> Option<Asked> {
    let line = text.lines().find_map(|l| l.strip_prefix("DNS="))?;
    Asked::new(
        DnsSource::Networkd,
        line.split_whitespace().filter_map(server),
    )
}

/// One entry: `10.0.0.1`, `10.0.0.1:53`, `[2001:db8::1]:53`, each maybe
/// with `%ifindex` and `#server-name`.
fn server(entry: &str) -> Option<IpAddr> {
    let entry = entry.split('#').next()?;
    let entry = match entry.strip_prefix('[') {
        Some(rest) => rest.split(']').next()?,
        None if entry.matches(':').count() == 1 => entry.split(':').next()?,
        None => entry,
    };
    entry.split('%').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dns_line_in_every_form_networkd_writes() {
        let text = "# This is private data. Do not parse.\nADMIN_STATE=configured\n\
                    DNS=192.0.2.99:5353#dns.example 10.77.0.53 fe80::1%3 [2001:db8::53]:53 fd77::53\n";
        let a = parse(text).unwrap();
        assert_eq!(a.source, DnsSource::Networkd);
        let v4: Vec<String> = a.v4.iter().map(ToString::to_string).collect();
        let v6: Vec<String> = a.v6.iter().map(ToString::to_string).collect();
        assert_eq!(v4, ["192.0.2.99", "10.77.0.53"]);
        assert_eq!(v6, ["2001:db8::53", "fd77::53"], "link-local dropped");
        assert_eq!(parse("ADMIN_STATE=unmanaged\n"), None);
    }
}
