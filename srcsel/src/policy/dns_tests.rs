use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn learned() -> Learned {
    Learned {
        hook4: vec![v4("10.99.0.1"), v4("9.9.9.9")],
        ra6: vec![(v6("2001:db8:99::1"), 1000), (v6("2001:db8:99::2"), 50)],
    }
}

#[test]
fn learned_resolvers_are_used_and_expired_rdnss_is_dropped() {
    let d = choose(&DnsConfig::Learned, &learned(), 100);
    assert_eq!(d.v4, [v4("10.99.0.1"), v4("9.9.9.9")]);
    assert_eq!(d.v6, [v6("2001:db8:99::1")]);
    assert_eq!(d.source4, Some(DnsSource::Dhcp));
    assert_eq!(d.source6, Some(DnsSource::RouterAdvertisement));
    assert_eq!(
        d.ra6,
        [(v6("2001:db8:99::1"), 1000)],
        "the expired one is forgotten"
    );
}

#[test]
fn the_config_wins_for_both_families_and_learned_ones_are_kept() {
    let list: Vec<IpAddr> = vec!["192.0.2.53".parse().unwrap()];
    let d = choose(&DnsConfig::Servers(list), &learned(), 100);
    assert_eq!(d.v4, [v4("192.0.2.53")]);
    assert!(
        d.v6.is_empty(),
        "no IPv6 resolver named: none, not the RA's"
    );
    assert_eq!((d.source4, d.source6), (Some(DnsSource::Config), None));
    assert_eq!(
        d.hook4.len(),
        2,
        "still remembered for when the config changes"
    );
}

#[test]
fn system_dns_keeps_the_systems_and_says_so_in_the_flags() {
    let d = choose(&DnsConfig::System, &learned(), 100);
    assert!(d.v4.is_empty() && d.v6.is_empty());
    let r = to_value(&d);
    assert_ne!(r.flags & dns_flags::SYSTEM, 0);
    assert_eq!(in_use(&r).source4, Some(DnsSource::System));
}

#[test]
fn nothing_learned_means_no_resolver() {
    let d = choose(&DnsConfig::Learned, &Learned::default(), 0);
    assert_eq!(d, Dns::default());
    assert_eq!(to_value(&d), Resolvers::default(), "a free slot's value");
}

#[test]
fn the_map_value_round_trips_and_caps_each_family() {
    let many: Vec<Ipv4Addr> = (1..=5).map(|i| Ipv4Addr::new(192, 0, 2, i)).collect();
    let l = Learned {
        hook4: many,
        ra6: learned().ra6,
    };
    let d = choose(&DnsConfig::Learned, &l, 10);
    assert_eq!(d.v4.len(), MAX_RESOLVERS);
    let back = in_use(&to_value(&d));
    assert_eq!(back, d);
    assert_eq!(
        learned_of(&to_value(&d)),
        Learned {
            hook4: d.hook4.clone(),
            ra6: d.ra6.clone()
        }
    );
}
