//! `GET` over plain HTTP, expecting 204 No Content. A captive portal
//! intercepts such requests and answers 200 with its page or a redirect,
//! so those count as failures that say "captive".
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Failure, Probed, Source, connect};
use crate::health::target::url_authority;

/// Enough for a status line and the headers we read.
const LIMIT: usize = 4096;

pub(super) async fn probe(url: &str, addr: SocketAddr, path: &str, src: &Source) -> Probed {
    let (mut stream, start) = connect(addr, src).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: srcsel-health\r\nConnection: close\r\n\r\n",
        url_authority(addr, 80)
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send the request to {addr}: {e}"))?;
    // The head is the answer: stop there, in case the server keeps the
    // connection open despite "Connection: close".
    let mut head = Vec::with_capacity(LIMIT);
    let mut chunk = [0u8; 1024];
    while head.len() < LIMIT && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let room = chunk.len().min(LIMIT - head.len());
        let len = stream
            .read(&mut chunk[..room])
            .await
            .map_err(|e| format!("cannot read the answer from {addr}: {e}"))?;
        if len == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..len]);
    }
    let rtt = start.elapsed();
    if head.is_empty() {
        return Err(format!("{addr} closed the connection without answering").into());
    }
    judge(&String::from_utf8_lossy(&head), url).map(|()| rtt)
}

/// Only 204 is up; 200 and redirects are a portal's.
fn judge(head: &str, url: &str) -> Result<(), Failure> {
    let Some(status) = parse_status(head) else {
        let first: String = head.lines().next().unwrap_or("").chars().take(60).collect();
        return Err(format!("not an HTTP answer: {first:?}").into());
    };
    let captive = |what: String| Failure {
        error: format!("captive portal at {url}: {what}"),
        captive: true,
    };
    match status {
        204 => Ok(()),
        200 => Err(captive(match header(head, "content-length") {
            Some("0") => "answered 200 instead of 204".into(),
            _ => "answered 200 with a body".into(),
        })),
        300..=399 => {
            let location = header(head, "location")
                .map(|location| format!(" (Location: {location})"))
                .unwrap_or_default();
            Err(captive(format!("answered {status}{location}")))
        }
        _ => Err(format!("answered {status}").into()),
    }
}

/// The code of an `HTTP/1.x NNN reason` status line.
fn parse_status(head: &str) -> Option<u16> {
    let line = head.lines().next()?;
    let rest = line.strip_prefix("HTTP/1.")?;
    let (minor, rest) = rest.split_at_checked(1)?;
    let rest = rest.strip_prefix(' ')?;
    let (code, reason) = rest.split_at_checked(3)?;
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(minor) || !digits(code) || !(reason.is_empty() || reason.starts_with(' ')) {
        return None;
    }
    code.parse().ok().filter(|code| (100..600).contains(code))
}

/// A header's trimmed value, by case-insensitive name.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .skip(1)
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://192.0.2.1/generate_204";

    fn error(head: &str) -> (String, bool) {
        let failure = judge(head, URL).expect_err(head);
        (failure.error, failure.captive)
    }

    #[test]
    fn parses_status_lines() {
        assert_eq!(parse_status("HTTP/1.1 204 No Content\r\n\r\n"), Some(204));
        assert_eq!(
            parse_status("HTTP/1.0 302 Found\r\nLocation: x\r\n"),
            Some(302)
        );
        assert_eq!(parse_status("HTTP/1.1 200\r\n"), Some(200));
        assert_eq!(parse_status("HTTP/1.1 204"), Some(204));
        for garbage in [
            "",
            "SSH-2.0-OpenSSH_9.6\r\n",
            "HTTP/2 204\r\n",
            "HTTP/1.1 20 OK\r\n",
            "HTTP/1.1 2040 OK\r\n",
            "HTTP/1.1 099 x\r\n",
            "HTTP/1.1 600 x\r\n",
            "HTTP/1.x 204 x\r\n",
            "HTTP/1.1  204 x\r\n",
            "HTTP/1.1 2é4 x\r\n",
            "<html>",
        ] {
            assert_eq!(parse_status(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn only_204_is_up() {
        assert!(judge("HTTP/1.1 204 No Content\r\n\r\n", URL).is_ok());
        let (message, captive) = error("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert_eq!((message.as_str(), captive), ("answered 503", false));
        let (message, captive) = error("HTTP/1.1 404 Not Found\r\n\r\n");
        assert_eq!((message.as_str(), captive), ("answered 404", false));
        let (message, captive) = error("garbage\r\n");
        assert_eq!(
            (message.as_str(), captive),
            ("not an HTTP answer: \"garbage\"", false)
        );
    }

    #[test]
    fn portals_are_named() {
        let (message, captive) =
            error("HTTP/1.1 302 Found\r\nlocation:  http://portal/login \r\n\r\n");
        assert!(captive);
        assert_eq!(
            message,
            "captive portal at http://192.0.2.1/generate_204: answered 302 (Location: http://portal/login)"
        );
        let (message, _) = error("HTTP/1.1 307 Temporary Redirect\r\n\r\n");
        assert!(message.ends_with(": answered 307"), "{message}");
        let (message, captive) = error("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>");
        assert!(
            captive && message.ends_with("answered 200 with a body"),
            "{message}"
        );
        let (message, _) = error("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(
            message.ends_with("answered 200 instead of 204"),
            "{message}"
        );
    }

    #[test]
    fn headers_end_at_the_blank_line() {
        let head = "HTTP/1.1 302 Found\r\nX: 1\r\n\r\nLocation: body";
        assert_eq!(header(head, "location"), None);
        assert_eq!(header(head, "x"), Some("1"));
    }
}
