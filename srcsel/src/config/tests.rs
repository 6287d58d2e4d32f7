use super::*;
use crate::policy::{Mode, access::Who, target::Target};

fn err(text: &str) -> String {
    Config::parse(text, "srcsel.toml").unwrap_err().to_string()
}

#[test]
fn parses_uplinks_with_defaults() {
    let c = Config::parse(
            "[[uplink]]\nname = \"usb0\"\n\n[[uplink]]\nname = \"eth0v0\"\ntable = 300\nmark = 0x02000000\ngateway = \"192.0.2.1\"\n",
            "x",
        )
        .unwrap();
    assert_eq!(c.uplinks.len(), 2);
    assert!(c.uplink("usb0").unwrap().table.is_none());
    let m = c.uplink("eth0v0").unwrap();
    assert_eq!(m.slot(), Some(2));
    assert_eq!(*m.table.as_ref().unwrap().get_ref(), 300);
    assert_eq!(m.gateway, Some("192.0.2.1".parse().unwrap()));
    assert!(!m.isolate && m.gateway6.is_none());
    assert!(Config::parse("", "x").unwrap().uplinks.is_empty());
    let c = Config::parse(
        "[[uplink]]\nname = \"usb0\"\nisolate = true\ngateway6 = \"fe80::1\"\n",
        "x",
    )
    .unwrap();
    let u = c.uplink("usb0").unwrap();
    assert!(u.isolate);
    assert_eq!(u.gateway6, Some("fe80::1".parse().unwrap()));
    assert!(err("[[uplink]]\nname = \"a\"\nisolate = \"yes\"\n").starts_with("srcsel.toml:3:"));
}

#[test]
fn allow_entries_default_to_group_srcsel_and_are_checked() {
    assert_eq!(
        Config::parse("", "x").unwrap().allowed(),
        Allow::default_rules()
    );
    let c = Config::parse(
            "[[uplink]]\nname = \"usb0\"\n[[allow]]\nuser = 4242\nvia = [\"usb0\"]\nmodes = [\"strict\"]\n[[allow]]\ngroup = \"ops\"\n",
            "x",
        )
        .unwrap();
    let a = c.allowed();
    assert_eq!(a[0].who, Who::User("4242".into()));
    assert_eq!(a[0].modes, Some(vec![Mode::Strict]));
    assert_eq!(a[1].who, Who::Group("ops".into()));
    assert_eq!(
        err("[[uplink]]\nname = \"usb0\"\n\n[[allow]]\nuser = \"a\"\ngroup = \"b\"\n"),
        "srcsel.toml:4: an [[allow]] entry names either a user or a group (one of them)"
    );
    assert!(err("[[allow]]\ngroup = \"g\"\nmodes = []\n").contains("allows nothing"));
    assert!(err("[[allow]]\ngroup = \"g\"\nmodes = [\"loose\"]\n").starts_with("srcsel.toml:3:"));
    assert!(err("[[allow]]\ngroup = \"g\"\nvia = [\"a/b\"]\n").contains("not an interface name"));
}

#[test]
fn unknown_keys_are_refused_with_their_line() {
    let e = err("[[uplink]]\nname = \"usb0\"\nmetric = 3000\n");
    assert!(e.starts_with("srcsel.toml:3:"), "{e}");
    assert!(e.contains("metric"), "{e}");
}

#[test]
fn duplicates_are_refused_with_their_line() {
    let e = err("[[uplink]]\nname = \"usb0\"\n[[uplink]]\nname = \"usb0\"\n");
    assert_eq!(
        e,
        "srcsel.toml:4: uplink usb0 is already configured on line 2"
    );
    let e = err("[[uplink]]\nname = \"a\"\ntable = 7\n[[uplink]]\nname = \"b\"\ntable = 7\n");
    assert_eq!(e, "srcsel.toml:6: table 7 is already used by uplink a");
    let e = err(
        "[[uplink]]\nname = \"a\"\nmark = 0x1000000\n[[uplink]]\nname = \"b\"\nmark = 0x1000000\n",
    );
    assert!(
        e.starts_with("srcsel.toml:6: mark 0x1000000 is already used by uplink a"),
        "{e}"
    );
}

#[test]
fn bad_values_are_refused() {
    assert!(err("[[uplink]]\nname = \"a\"\ntable = 254\n").contains("reserved"));
    assert!(err("[[uplink]]\nname = \"a\"\nmark = 5\n").contains("not one of srcsel's marks"));
    assert!(err("[[uplink]]\nname = \"a\"\ngateway = \"nope\"\n").starts_with("srcsel.toml:3:"));
    assert!(
        err("[[uplink]]\nname = \"this-name-is-too-long\"\n").contains("not an interface name")
    );
}

#[test]
fn interface_names_follow_the_kernels_rules() {
    for good in ["usb0", "eth0v0", "wwp0s20f0u6i12", "enx0a1b2c3d4e5f"] {
        assert_eq!(check_ifname(good), Ok(()));
    }
    for bad in [
        "",
        ".",
        "..",
        "../../etc",
        "a:b",
        "with space",
        "x".repeat(16).as_str(),
    ] {
        let e = check_ifname(bad).unwrap_err();
        assert!(e.contains("is not an interface name"), "{e}");
    }
    assert!(check_ifname(&"y".repeat(500)).unwrap_err().len() < 200);
}

#[test]
fn the_shipped_example_parses() {
    let c = Config::parse(
        include_str!("../../../contrib/srcsel.toml"),
        "contrib/srcsel.toml",
    )
    .unwrap();
    assert_eq!(c.uplinks.len(), 1);
}

#[test]
fn assign_entries_are_checked_with_their_line() {
    let c = Config::parse(
        "[[uplink]]\nname = \"usb0\"\n[[assign]]\nslice = \"hotspot.slice\"\nvia = \"usb0\"\n[[assign]]\ncgroup = \"/lab/app\"\nvia = \"eth0\"\nmode = \"fallback\"\n",
        "x",
    )
    .unwrap();
    assert_eq!(c.assigned.len(), 2);
    assert_eq!(c.assigned[0].assignment.mode, Mode::Strict);
    assert_eq!(c.assigned[1].target, Target::Cgroup("lab/app".into()));
    assert_eq!(c.managed().collect::<Vec<_>>(), ["usb0", "usb0", "eth0"]);
    assert_eq!(
        err(
            "[[assign]]\nvia = \"usb0\"\nslice = \"a.slice\"\n\n[[assign]]\nslice = \"a.slice\"\nunit = \"b.service\"\nvia = \"usb0\"\n"
        ),
        "srcsel.toml:5: an [[assign]] entry names one slice, unit or cgroup"
    );
    assert!(err("[[assign]]\nslice = \"a.slice\"\nvia = \"usb0\"\n[[assign]]\nslice = \"a.slice\"\nvia = \"eth0\"\n").contains("srcsel.toml:4: slice a.slice is already assigned"));
    assert!(err("[[assign]]\nslice = \"-.slice\"\nvia = \"usb0\"\n").contains("root"));
    assert!(err("[[assign]]\ncgroup = \"a\"\nvia = \"u sb\"\n").contains("not an interface name"));
    assert!(err("[[assign]]\ncgroup = \"a\"\n").contains("via"));
}

#[test]
fn dns_settings_are_parsed_and_checked_with_their_line() {
    let dns = |text: &str| {
        Config::parse(&format!("[[uplink]]\nname = \"usb0\"\n{text}"), "x")
            .unwrap()
            .uplink("usb0")
            .unwrap()
            .dns()
    };
    assert_eq!(dns(""), DnsConfig::Learned);
    assert_eq!(dns("system_dns = true\n"), DnsConfig::System);
    assert_eq!(
        dns("dns = [\"192.0.2.53\", \"2001:db8::53\"]\n"),
        DnsConfig::Servers(vec![
            "192.0.2.53".parse().unwrap(),
            "2001:db8::53".parse().unwrap()
        ])
    );
    let bad = |text: &str| err(&format!("[[uplink]]\nname = \"usb0\"\n{text}"));
    assert!(bad("dns = []\n").contains("srcsel.toml:3: `dns = []` names no resolver"));
    assert!(
        bad("dns = [\"192.0.2.53\"]\nsystem_dns = true\n")
            .contains("srcsel.toml:3: `dns` and `system_dns")
    );
    assert!(
        bad("dns = [\"127.0.0.53\"]\n")
            .contains("127.0.0.53 is not a resolver the uplink can reach")
    );
    assert!(
        bad("dns = [\"1.1.1.1\", \"1.0.0.1\", \"9.9.9.9\", \"8.8.8.8\"]\n").contains("at most 3")
    );
    assert!(bad("dns = [\"resolver.example\"]\n").starts_with("srcsel.toml:3:"));
}

#[test]
fn health_checks_have_defaults_and_each_mistake_its_line() {
    let head = "[[uplink]]\nname = \"usb0\"\n[uplink.health]\n";
    let c = Config::parse(
        &format!("{head}targets = [\"icmp://198.51.100.10\"]\n"),
        "x",
    )
    .unwrap();
    let h = c.uplink("usb0").unwrap().health().unwrap();
    assert_eq!((h.interval.as_secs(), h.timeout.as_secs()), (5, 2));
    assert_eq!((h.down_after, h.up_after), (3, 2));
    let plain = Config::parse("[[uplink]]\nname = \"usb0\"\n", "x").unwrap();
    assert!(plain.uplink("usb0").unwrap().health().is_none());
    for (bad, says) in [
        ("targets = []", "probes nothing"),
        ("targets = [\"gopher://1.2.3.4\"]", "gopher"),
        ("targets = [\"tcp://example.com:443\"]", "example.com"),
        (
            "targets = [\"icmp://1.2.3.4\"]\ninterval = \"0s\"",
            "interval must be longer than 0",
        ),
        (
            "targets = [\"icmp://1.2.3.4\"]\ninterval = \"5\"",
            "interval",
        ),
        (
            "targets = [\"icmp://1.2.3.4\"]\ndown_after = 0",
            "down_after = 0",
        ),
        (
            "targets = [\"icmp://1.2.3.4\"]\ntimeout = \"9s\"",
            "longer than interval",
        ),
        (
            "targets = [\"icmp://1.2.3.4\"]\nevery = \"5s\"",
            "unknown field",
        ),
    ] {
        let e = err(&format!("{head}{bad}\n"));
        assert!(
            e.starts_with("srcsel.toml:4:") || e.starts_with("srcsel.toml:5:"),
            "{bad}: {e}"
        );
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn an_assignment_may_name_an_ordered_list() {
    let c = Config::parse(
        "[[assign]]\nslice = \"a.slice\"\nvia = [\"usb0\", \"eth0\"]\n",
        "x",
    )
    .unwrap();
    assert_eq!(c.assigned[0].assignment.via, "usb0,eth0");
    assert_eq!(c.managed().collect::<Vec<_>>(), ["usb0,eth0"]);
    let e = err("[[assign]]\nslice = \"a.slice\"\nvia = [\"usb0\", \"usb0\"]\n");
    assert!(e.contains("names usb0 twice"), "{e}");
}
