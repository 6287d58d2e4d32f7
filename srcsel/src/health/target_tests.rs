use super::*;

fn parsed(text: &str) -> Target {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

fn problem(text: &str) -> Problem {
    match text.parse::<Target>() {
        Ok(t) => panic!("{text:?} should be refused, parsed as {t:?}"),
        Err(e) => {
            assert_eq!(e.text, text);
            e.problem
        }
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn parses_each_scheme() {
    assert_eq!(
        parsed("icmp://192.0.2.1"),
        Target::Icmp("192.0.2.1".parse().unwrap())
    );
    assert_eq!(
        parsed("icmp://[2001:db8::1]"),
        Target::Icmp("2001:db8::1".parse().unwrap())
    );
    assert_eq!(
        parsed("tcp://192.0.2.1:443"),
        Target::Tcp(sa("192.0.2.1:443"))
    );
    assert_eq!(
        parsed("tcp://[2001:db8::1]:443"),
        Target::Tcp(sa("[2001:db8::1]:443"))
    );
    let dns = |resolver: Option<&str>, name: &str| Target::Dns {
        resolver: resolver.map(sa),
        name: name.to_string(),
    };
    assert_eq!(
        parsed("dns://192.0.2.53/example.com"),
        dns(Some("192.0.2.53:53"), "example.com")
    );
    assert_eq!(
        parsed("dns://192.0.2.53:5353/a.b."),
        dns(Some("192.0.2.53:5353"), "a.b.")
    );
    assert_eq!(
        parsed("dns://[2001:db8::53]/x_y-z"),
        dns(Some("[2001:db8::53]:53"), "x_y-z")
    );
    assert_eq!(parsed("dns:///example.com"), dns(None, "example.com"));
    let http = |addr: &str, path: &str| Target::Http {
        addr: sa(addr),
        path: path.to_string(),
    };
    assert_eq!(parsed("http://192.0.2.1"), http("192.0.2.1:80", "/"));
    assert_eq!(
        parsed("http://192.0.2.1:8080/generate_204"),
        http("192.0.2.1:8080", "/generate_204")
    );
    assert_eq!(
        parsed("http://[2001:db8::1]/a/b%20c"),
        http("[2001:db8::1]:80", "/a/b%20c")
    );
    assert_eq!(parsed("TCP://192.0.2.1:1"), Target::Tcp(sa("192.0.2.1:1")));
}

#[test]
fn display_is_canonical_and_round_trips() {
    for (given, canonical) in [
        ("icmp://192.0.2.1", "icmp://192.0.2.1"),
        ("icmp://[2001:db8:0::1]", "icmp://[2001:db8::1]"),
        ("tcp://[2001:db8::1]:443", "tcp://[2001:db8::1]:443"),
        ("tcp://192.0.2.1:80", "tcp://192.0.2.1:80"),
        (
            "dns://192.0.2.53:53/example.com",
            "dns://192.0.2.53/example.com",
        ),
        (
            "dns://[::1]:5353/example.com.",
            "dns://[::1]:5353/example.com.",
        ),
        ("dns:///example.com", "dns:///example.com"),
        ("http://192.0.2.1", "http://192.0.2.1/"),
        (
            "http://192.0.2.1:80/generate_204",
            "http://192.0.2.1/generate_204",
        ),
        ("HTTP://[2001:db8::1]:8080/x", "http://[2001:db8::1]:8080/x"),
    ] {
        let target = parsed(given);
        assert_eq!(target.to_string(), canonical, "{given}");
        assert_eq!(parsed(canonical), target, "{canonical}");
    }
}

#[test]
fn families_follow_the_address() {
    assert_eq!(parsed("icmp://192.0.2.1").families(), [Family::V4]);
    assert_eq!(parsed("tcp://[2001:db8::1]:1").families(), [Family::V6]);
    assert_eq!(parsed("http://[::1]/").families(), [Family::V6]);
    assert_eq!(parsed("dns://192.0.2.53/x").families(), [Family::V4]);
    assert_eq!(parsed("dns:///x").families(), [Family::V4, Family::V6]);
}

#[test]
fn refuses_host_names_and_bad_addresses() {
    let name = |h: &str| Problem::HostName(h.to_string());
    assert_eq!(problem("icmp://example.com"), name("example.com"));
    assert_eq!(problem("tcp://example.com:443"), name("example.com"));
    assert_eq!(problem("http://localhost/"), name("localhost"));
    assert_eq!(problem("dns://dns.google/x"), name("dns.google"));
    assert_eq!(
        problem("icmp://192.0.2.300"),
        Problem::Address("192.0.2.300".into())
    );
    assert_eq!(
        problem("icmp://[192.0.2.1]"),
        Problem::Address("[192.0.2.1]".into())
    );
    assert_eq!(
        problem("icmp://[2001:db8::1"),
        Problem::Address("[2001:db8::1".into())
    );
    assert_eq!(problem("icmp://2001:db8::1"), Problem::Unbracketed);
    assert_eq!(problem("tcp://:443"), Problem::MissingAddress);
    assert_eq!(problem("icmp://"), Problem::MissingAddress);
    let message = "icmp://example.com"
        .parse::<Target>()
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("\"icmp://example.com\"") && message.contains("need no DNS"),
        "{message}"
    );
}

#[test]
fn refuses_bad_schemes_ports_and_trailing_text() {
    assert_eq!(problem("ftp://192.0.2.1"), Problem::Scheme);
    assert_eq!(problem("192.0.2.1"), Problem::Scheme);
    assert_eq!(problem("https://192.0.2.1/"), Problem::Https);
    assert!(Problem::Https.to_string().contains("tcp://HOST:443"));
    assert_eq!(problem("tcp://192.0.2.1"), Problem::MissingPort);
    assert_eq!(problem("tcp://192.0.2.1:0"), Problem::Port("0".into()));
    assert_eq!(problem("tcp://192.0.2.1:"), Problem::Port("".into()));
    assert_eq!(
        problem("tcp://192.0.2.1:65536"),
        Problem::Port("65536".into())
    );
    assert_eq!(problem("tcp://[::1]:x"), Problem::Port("x".into()));
    assert_eq!(problem("icmp://192.0.2.1:7"), Problem::UnexpectedPort);
    assert_eq!(problem("http://192.0.2.1/?a=b"), Problem::QueryOrFragment);
    assert_eq!(problem("http://192.0.2.1/#top"), Problem::QueryOrFragment);
    let trailing = |rest: &str, expected| Problem::Trailing {
        rest: rest.to_string(),
        expected,
    };
    assert_eq!(
        problem("icmp://192.0.2.1/"),
        trailing("/", "icmp://ADDRESS")
    );
    assert_eq!(
        problem("tcp://192.0.2.1:80/x"),
        trailing("/x", "tcp://ADDRESS:PORT")
    );
    assert_eq!(
        problem("tcp://[::1]x:80"),
        trailing("x:80", "tcp://ADDRESS:PORT")
    );
    assert_eq!(
        problem("http://192.0.2.1/a b"),
        Problem::Path("/a b".into())
    );
}

#[test]
fn refuses_bad_dns_names() {
    assert_eq!(problem("dns://192.0.2.53"), Problem::MissingName);
    assert_eq!(problem("dns://192.0.2.53/"), Problem::MissingName);
    assert_eq!(problem("dns:///"), Problem::MissingName);
    let why = |text: &str| match problem(text) {
        Problem::Name { why, .. } => why,
        other => panic!("{text:?}: {other:?}"),
    };
    assert_eq!(
        why(&format!("dns:///{}.com", "a".repeat(64))),
        "has a label longer than 63 characters"
    );
    let long = vec!["a".repeat(63); 4].join(".");
    assert_eq!(long.len(), 255);
    assert_eq!(
        why(&format!("dns:///{long}")),
        "is longer than 253 characters"
    );
    assert!(why("dns:///a b").contains("letters, digits"));
    assert!(why("dns:///exa/mple").contains("letters, digits"));
    assert!(why("dns:///é.com").contains("letters, digits"));
    assert_eq!(why("dns:///a..b"), "has an empty label");
    assert_eq!(why("dns:///.a"), "has an empty label");
    assert_eq!(why("dns:///."), "has an empty label");
    parsed(&format!("dns:///{}.com", "a".repeat(63)));
}

#[test]
fn parses_durations() {
    let ok = |s: &str| parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    assert_eq!(ok("500ms"), Duration::from_millis(500));
    assert_eq!(ok("5s"), Duration::from_secs(5));
    assert_eq!(ok("1.5s"), Duration::from_millis(1500));
    assert_eq!(ok("2m"), Duration::from_secs(120));
    assert_eq!(ok("1.5m"), Duration::from_secs(90));
    assert_eq!(ok("1h"), Duration::from_secs(3600));
    assert_eq!(ok("0s"), Duration::ZERO);
    assert_eq!(ok("0.25ms"), Duration::from_micros(250));
    assert_eq!(ok("0.000000001s"), Duration::from_nanos(1));
}

#[test]
fn refuses_bad_durations() {
    let err = |s: &str| parse_duration(s).expect_err(s);
    assert!(
        err("5").contains("needs a unit: ms, s, m or h"),
        "{}",
        err("5")
    );
    assert!(err("").contains("needs a unit"));
    assert!(err("5d").contains("needs a unit"));
    for bad in [
        "s",
        "ms",
        ".5s",
        "1.s",
        "-1s",
        "+1s",
        "1e3ms",
        "1 s",
        "1.2.3s",
        "1.0000000001s",
        "infs",
    ] {
        assert!(
            err(bad).contains("is not a duration"),
            "{bad}: {}",
            err(bad)
        );
    }
    assert!(err("99999999999999999999h").contains("too long"));
}

#[test]
fn formats_durations_as_parse_duration_reads_them() {
    for (d, text) in [
        (Duration::ZERO, "0s"),
        (Duration::from_millis(500), "500ms"),
        (Duration::from_secs(2), "2s"),
        (Duration::from_millis(1500), "1.5s"),
        (Duration::from_secs(90), "90s"),
        (Duration::from_secs(120), "2m"),
        (Duration::from_secs(7200), "2h"),
        (Duration::from_micros(1500), "1.5ms"),
        (Duration::new(3, 1), "3.000000001s"),
    ] {
        assert_eq!(format_duration(d), text);
        assert_eq!(parse_duration(text), Ok(d), "{text}");
    }
}
