use std::net::{Ipv4Addr, Ipv6Addr};

use super::{
    diag::{self, Reply},
    probe::{Pair, ended_by, set_mark},
    *,
};

const INET_DIAG_SHUTDOWN: u16 = 8;
const INET_DIAG_MARK: u16 = 15;

fn sock(local: IpAddr, mark: Option<u32>, shutdown: u8) -> DiagSock {
    let family = if local.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let mark = mark.map(u32::to_ne_bytes);
    let shutdown = [shutdown];
    let mut attrs = vec![(INET_DIAG_SHUTDOWN, &shutdown[..])];
    if let Some(m) = &mark {
        attrs.push((INET_DIAG_MARK, m));
    }
    let msg = diag::tests::reply_msg(1, family as u8, (local, 40000), 5, &attrs);
    match diag::replies(&msg).unwrap().remove(0).1 {
        Reply::Sock(s) => s,
        other => panic!("{other:?}"),
    }
}

const SLOT1: Selector = Selector {
    value: 0x0100_0000,
    mask: 0x3f00_0000,
    local: None,
    spare: Vec::new(),
};

#[test]
fn selects_by_slot_bits_and_local_address() {
    let a: IpAddr = Ipv4Addr::new(192, 0, 2, 5).into();
    let b: IpAddr = Ipv4Addr::new(192, 0, 2, 6).into();
    let strict = sock(a, Some(0x4100_0000), 0);
    assert!(SLOT1.matches(&strict));
    assert!(
        Selector {
            local: Some(a),
            ..SLOT1
        }
        .matches(&strict)
    );
    assert!(
        !Selector {
            local: Some(b),
            ..SLOT1
        }
        .matches(&strict)
    );
    assert!(
        !Selector {
            value: 0x0200_0000,
            ..SLOT1
        }
        .matches(&strict)
    );
    let strict_only = Selector {
        value: 0x4100_0000,
        mask: 0x7f00_0000,
        ..SLOT1
    };
    assert!(strict_only.matches(&strict));
    assert!(!strict_only.matches(&sock(a, Some(0x0100_0000), 0)));
}

#[test]
fn a_v4_mapped_local_address_is_its_ipv4_address() {
    let v4 = Ipv4Addr::new(192, 0, 2, 5);
    let mapped = sock(v4.to_ipv6_mapped().into(), Some(0x0100_0000), 0);
    assert!(
        Selector {
            local: Some(v4.into()),
            ..SLOT1
        }
        .matches(&mapped)
    );
    let v6: IpAddr = "2001:db8::5".parse().unwrap();
    let native = sock(v6, Some(0x0100_0000), 0);
    assert!(
        Selector {
            local: Some(v6),
            ..SLOT1
        }
        .matches(&native)
    );
    assert!(
        !Selector {
            local: Some(v4.into()),
            ..SLOT1
        }
        .matches(&native)
    );
}

#[test]
fn unmarked_or_already_shut_sockets_never_match() {
    let a: IpAddr = Ipv4Addr::new(192, 0, 2, 5).into();
    let any = Selector {
        value: 0,
        mask: 0,
        ..SLOT1
    };
    assert!(!any.matches(&sock(a, None, 0)));
    assert!(any.matches(&sock(a, Some(0), 0)));
    // Half-closed by its program: still a connection to reset.
    assert!(any.matches(&sock(a, Some(0), 2)));
    assert!(!any.matches(&sock(a, Some(0), 3)));
}

#[test]
fn peers_in_spared_prefixes_are_left_alone() {
    // The constructed replies' peer is the unspecified address.
    let s = sock("192.0.2.5".parse().unwrap(), Some(0x0100_0000), 0);
    assert!(SLOT1.matches(&s));
    let lan = Selector {
        spare: vec!["0.0.0.0/8".parse().unwrap()],
        ..SLOT1
    };
    assert!(!lan.matches(&s));
}

#[test]
fn methods_are_named_for_the_log() {
    let names =
        [Method::SockDestroy, Method::PidfdGetfd, Method::Unavailable].map(|m| m.to_string());
    assert_eq!(names, ["SOCK_DESTROY", "pidfd_getfd", "none"]);
    assert!(matches!(
        reset(Method::Unavailable, &[SLOT1]),
        Err(ResetError::Unavailable)
    ));
}

#[test]
#[ignore = "needs root in a private netns; run with --ignored under unshare -n"]
fn resets_only_the_selected_connections_with_each_method() {
    let lo4: IpAddr = Ipv4Addr::LOCALHOST.into();
    let lo6: IpAddr = Ipv6Addr::LOCALHOST.into();
    let mapped: IpAddr = Ipv4Addr::LOCALHOST.to_ipv6_mapped().into();
    let open = |listen, dest, mark| {
        let p = Pair::open(listen, dest).expect("a loopback connection (is lo up?)");
        set_mark(&p.client, mark).expect("SO_MARK (needs CAP_NET_ADMIN)");
        p
    };
    for method in [Method::SockDestroy, Method::PidfdGetfd] {
        let (found, why) = detect(method == Method::PidfdGetfd);
        println!("detect: {found} {why:?}");
        assert_eq!(found, method, "{why:?}");
        let mut v4 = open(lo4, lo4, 0x0100_0000);
        let mut v4_mapped = open(lo4, mapped, 0x4100_0000);
        let mut v6 = open(lo6, lo6, 0x0100_0000);
        let mut other = open(lo4, lo4, 0x0200_0000);
        let mut unmarked = Pair::open(lo4, lo4).unwrap();

        let on_lo4 = Selector {
            local: Some(lo4),
            ..SLOT1
        };
        assert_eq!(reset(method, std::slice::from_ref(&on_lo4)).unwrap(), 2);
        let (r4, rmapped) = (v4.client_read(), v4_mapped.client_read());
        println!("{method}: reset 2 on 127.0.0.1; their reads: {r4:?}, {rmapped:?}");
        assert!(ended_by(method, &r4) && ended_by(method, &rmapped));
        for p in [&mut v6, &mut other, &mut unmarked] {
            p.alive().unwrap();
        }

        // Those reset already are not counted again.
        assert_eq!(reset(method, &[SLOT1]).unwrap(), 1);
        let r6 = v6.client_read();
        println!("{method}: reset 1 more (::1); its read: {r6:?}");
        assert!(ended_by(method, &r6));
        other.alive().unwrap();
        unmarked.alive().unwrap();
    }
}
