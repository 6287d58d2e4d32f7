use super::*;

/// A netlink message carrying `opts` as the kernel sends them.
fn message(ifindex: u32, opts: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    let len = NLMSG_HDR + USEROPT_HDR + opts.len() + 20; // + NDUSEROPT_SRCADDR
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&RTM_NEWNDUSEROPT.to_ne_bytes());
    m.extend_from_slice(&[0; 10]); // flags, seq, pid
    m.extend_from_slice(&[libc::AF_INET6 as u8, 0]);
    m.extend_from_slice(&(opts.len() as u16).to_ne_bytes());
    m.extend_from_slice(&ifindex.to_ne_bytes());
    m.extend_from_slice(&[134, 0, 0, 0, 0, 0, 0, 0]); // router advertisement
    m.extend_from_slice(opts);
    m.extend_from_slice(&[20, 0, 1, 0]); // the router's address, as an attribute
    m.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    m
}

fn rdnss(lifetime: u32, servers: &[&str]) -> Vec<u8> {
    let mut o = vec![ND_OPT_RDNSS, (1 + 2 * servers.len()) as u8, 0, 0];
    o.extend_from_slice(&lifetime.to_be_bytes());
    for s in servers {
        o.extend_from_slice(&s.parse::<Ipv6Addr>().unwrap().octets());
    }
    o
}

#[test]
fn rdnss_options_are_read_and_other_options_and_messages_skipped() {
    // A DNSSL option (31) before the RDNSS one.
    let mut opts = vec![31, 2, 0, 0, 0, 0, 0, 60, 4, b't', b'e', b's', b't', 0, 0, 0];
    opts.extend(rdnss(600, &["2001:db8:99::1", "2001:db8:99::2"]));
    let mut buf = message(7, &opts);
    // Another kind of message after it (RTM_NEWLINK), then a second RDNSS.
    let mut other = vec![0u8; 20];
    other[0] = 20;
    other[4] = 16;
    buf.extend(other);
    buf.extend(message(9, &rdnss(0, &["2001:db8:1::1"])));
    let got = parse(&buf);
    assert_eq!(
        got,
        [
            Rdnss {
                ifindex: 7,
                lifetime: 600,
                servers: vec![
                    "2001:db8:99::1".parse().unwrap(),
                    "2001:db8:99::2".parse().unwrap()
                ],
            },
            Rdnss {
                ifindex: 9,
                lifetime: 0,
                servers: vec!["2001:db8:1::1".parse().unwrap()],
            },
        ]
    );
}

#[test]
fn truncated_or_malformed_input_yields_nothing() {
    let full = message(7, &rdnss(600, &["2001:db8:99::1"]));
    for cut in [0, 10, 20, 40] {
        assert_eq!(parse(&full[..cut]), [], "cut at {cut}");
    }
    let mut zero_len = rdnss(600, &["2001:db8:99::1"]);
    zero_len[1] = 0;
    assert_eq!(parse(&message(7, &zero_len)), []);
}
