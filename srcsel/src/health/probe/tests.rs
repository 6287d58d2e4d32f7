//! Whole probes against servers on loopback, with an unpinned `Source`.
use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, UdpSocket},
    task::JoinHandle,
};

use super::*;

const WAIT: Duration = Duration::from_secs(5);

async fn probe_from(target: &Target, family: Family, src: &Source) -> Outcome {
    probe(target, family, src, &[], WAIT).await
}

async fn probe_plain(target: &Target, family: Family) -> Outcome {
    probe_from(target, family, &Source::default()).await
}

fn error(outcome: &Outcome) -> &str {
    assert!(!outcome.ok, "{outcome:?}");
    outcome.error.as_deref().unwrap_or_default()
}

fn http_target(addr: SocketAddr) -> Target {
    format!(
        "http://{}/generate_204",
        crate::health::target::url_authority(addr, 80)
    )
    .parse()
    .unwrap()
}

/// Serves one HTTP request with `answer`, or never answers; yields the request.
async fn http_server(at: &str, answer: Option<&'static str>) -> (SocketAddr, JoinHandle<String>) {
    let listener = TcpListener::bind(at).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let len = stream.read(&mut buf).await.unwrap();
            assert_ne!(len, 0, "the request ended early");
            request.extend_from_slice(&buf[..len]);
        }
        match answer {
            Some(answer) => stream.write_all(answer.as_bytes()).await.unwrap(),
            None => tokio::time::sleep(Duration::from_secs(60)).await,
        }
        String::from_utf8(request).unwrap()
    });
    (addr, server)
}

/// Answers one query with `rcode` after a stranger's answer, or stays
/// silent; yields the query.
async fn dns_server(at: &str, rcode: Option<u8>) -> (SocketAddr, JoinHandle<Vec<u8>>) {
    let socket = UdpSocket::bind(at).await.unwrap();
    let addr = socket.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut buf = [0; 512];
        let (len, peer) = socket.recv_from(&mut buf).await.unwrap();
        let query = buf[..len].to_vec();
        if let Some(rcode) = rcode {
            let mut stranger = dns::answer_to(&query, 0);
            stranger[0] ^= 0xff;
            socket.send_to(&stranger, peer).await.unwrap();
            socket
                .send_to(&dns::answer_to(&query, rcode), peer)
                .await
                .unwrap();
        }
        query
    });
    (addr, server)
}

fn dns_target(resolver: SocketAddr) -> Target {
    Target::Dns {
        resolver: Some(resolver),
        name: "example.com".into(),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn tcp_connects_over_both_families() {
    for (at, family) in [("127.0.0.1:0", Family::V4), ("[::1]:0", Family::V6)] {
        let listener = TcpListener::bind(at).await.unwrap();
        let target = Target::Tcp(listener.local_addr().unwrap());
        let outcome = probe_plain(&target, family).await;
        assert!(
            outcome.ok && outcome.error.is_none() && !outcome.captive,
            "{outcome:?}"
        );
        assert!(outcome.rtt < WAIT);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn tcp_refusal_is_a_failure_that_says_so() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let outcome = probe_plain(&Target::Tcp(closed), Family::V4).await;
    assert!(error(&outcome).starts_with("refused: "), "{outcome:?}");
    assert!(!outcome.captive);
}

#[tokio::test(flavor = "current_thread")]
async fn wrong_family_and_setup_failures_are_outcomes() {
    let target = Target::Tcp("127.0.0.1:9".parse().unwrap());
    let outcome = probe_plain(&target, Family::V6).await;
    assert_eq!(
        error(&outcome),
        "tcp://127.0.0.1:9 cannot be probed over IPv6"
    );
    let foreign = Source {
        addr: Some("203.0.113.77".parse().unwrap()),
        ..Source::default()
    };
    let outcome = probe_from(&target, Family::V4, &foreign).await;
    assert!(
        error(&outcome).starts_with("cannot bind to 203.0.113.77: "),
        "{outcome:?}"
    );
    let missing = Source {
        ifname: Some("srcsel-none0".into()),
        ..Source::default()
    };
    let outcome = probe_from(&target, Family::V4, &missing).await;
    assert!(
        error(&outcome).starts_with("cannot bind to interface srcsel-none0: "),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn http_204_is_up_over_both_families() {
    for at in ["127.0.0.1:0", "[::1]:0"] {
        let (addr, server) = http_server(at, Some("HTTP/1.1 204 No Content\r\n\r\n")).await;
        let outcome = probe_plain(&http_target(addr), family_of(addr.ip())).await;
        assert!(outcome.ok, "{outcome:?}");
        let request = server.await.unwrap();
        let host = crate::health::target::url_authority(addr, 80);
        assert_eq!(
            request,
            format!(
                "GET /generate_204 HTTP/1.1\r\nHost: {host}\r\nUser-Agent: srcsel-health\r\n\
                 Connection: close\r\n\r\n"
            )
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn http_redirect_and_200_are_captive() {
    let redirect = "HTTP/1.1 302 Found\r\nLocation: http://portal.example/login\r\n\r\n";
    let (addr, _server) = http_server("127.0.0.1:0", Some(redirect)).await;
    let outcome = probe_plain(&http_target(addr), Family::V4).await;
    let expected = format!(
        "captive portal at http://{addr}/generate_204: answered 302 (Location: http://portal.example/login)"
    );
    assert_eq!(error(&outcome), expected);
    assert!(outcome.captive);

    let page = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n<html></html>";
    let (addr, _server) = http_server("127.0.0.1:0", Some(page)).await;
    let outcome = probe_plain(&http_target(addr), Family::V4).await;
    assert!(
        error(&outcome).ends_with(": answered 200 with a body"),
        "{outcome:?}"
    );
    assert!(outcome.captive);
}

#[tokio::test(flavor = "current_thread")]
async fn http_silence_times_out() {
    let (addr, _server) = http_server("127.0.0.1:0", None).await;
    let timeout = Duration::from_millis(300);
    let outcome = probe(
        &http_target(addr),
        Family::V4,
        &Source::default(),
        &[],
        timeout,
    )
    .await;
    assert_eq!(error(&outcome), "no answer within 300ms");
    assert!(!outcome.captive && outcome.rtt >= timeout, "{outcome:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn dns_answers_count_and_strangers_are_ignored() {
    for (at, family, qtype) in [("127.0.0.1:0", Family::V4, 1), ("[::1]:0", Family::V6, 28)] {
        let (addr, server) = dns_server(at, Some(3)).await;
        let outcome = probe_plain(&dns_target(addr), family).await;
        assert!(
            outcome.ok,
            "NXDOMAIN still shows a working resolver: {outcome:?}"
        );
        let query = server.await.unwrap();
        assert_eq!(query[query.len() - 4..], [0, qtype, 0, 1]);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn dns_servfail_and_silence_fail() {
    let (addr, _server) = dns_server("127.0.0.1:0", Some(2)).await;
    let outcome = probe_plain(&dns_target(addr), Family::V4).await;
    assert_eq!(error(&outcome), "answered SERVFAIL");

    let (addr, _server) = dns_server("127.0.0.1:0", None).await;
    let timeout = Duration::from_millis(200);
    let outcome = probe(
        &dns_target(addr),
        Family::V4,
        &Source::default(),
        &[],
        timeout,
    )
    .await;
    assert_eq!(error(&outcome), "no answer within 200ms");
}

#[tokio::test(flavor = "current_thread")]
async fn dns_without_own_resolvers_says_whose() {
    let target: Target = "dns:///example.com".parse().unwrap();
    let usb0 = Source {
        ifname: Some("usb0".into()),
        ..Source::default()
    };
    let only_v6 = ["2001:db8::53".parse().unwrap()];
    let outcome = probe(&target, Family::V4, &usb0, &only_v6, WAIT).await;
    assert_eq!(error(&outcome), "no resolver of usb0's for IPv4 known");
    let outcome = probe_plain(&target, Family::V6).await;
    assert_eq!(error(&outcome), "no resolver for IPv6 known");
}

/// Needs a ping socket (net.ipv4.ping_group_range) or CAP_NET_RAW; says so
/// and passes where neither is available.
#[tokio::test(flavor = "current_thread")]
async fn icmp_echo_on_loopback() {
    for target in ["icmp://127.0.0.1", "icmp://[::1]"] {
        let target: Target = target.parse().unwrap();
        let outcome = probe_plain(&target, target.families()[0]).await;
        if let Some(e) = outcome
            .error
            .as_deref()
            .filter(|e| e.starts_with("cannot open"))
        {
            eprintln!("skipping {target}: {e}");
            continue;
        }
        assert!(outcome.ok, "{target}: {outcome:?}");
    }
}
