//! A DNS query over UDP: A when testing IPv4, AAAA when testing IPv6.
//! Any well-formed answer to our question, NXDOMAIN included, shows the
//! resolver is reachable and working through the uplink.
use std::{io::ErrorKind, net::SocketAddr, time::Instant};

use socket2::{Protocol, Type};

use super::{Probed, Source, datagram};
use crate::policy::Family;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
/// Recursion desired; every other flag clear.
const FLAGS_RD: u16 = 0x0100;
const HEADER_LEN: usize = 12;

pub(super) async fn probe(server: SocketAddr, name: &str, family: Family, src: &Source) -> Probed {
    let socket = datagram(src.open(server, Type::DGRAM, Protocol::UDP)?)?;
    // Connected: the kernel drops datagrams from anyone else and reports
    // port unreachable as a refusal.
    socket
        .connect(server)
        .await
        .map_err(|e| format!("cannot reach {server}{}: {e}", src.on()))?;
    let qtype = match family {
        Family::V4 => TYPE_A,
        Family::V6 => TYPE_AAAA,
    };
    let query = encode_query(fastrand::u16(..), name, qtype);
    let start = Instant::now();
    socket
        .send(&query)
        .await
        .map_err(|e| format!("cannot send a query to {server}{}: {e}", src.on()))?;
    let mut buf = [0u8; 4096];
    loop {
        let len = socket.recv(&mut buf).await.map_err(|e| match e.kind() {
            ErrorKind::ConnectionRefused => format!("refused: nothing answers DNS at {server}"),
            _ => format!("cannot receive from {server}{}: {e}", src.on()),
        })?;
        match parse_answer(&query, &buf[..len]) {
            Answer::NotOurs => continue,
            Answer::Rcode(0 | 3) => return Ok(start.elapsed()),
            Answer::Rcode(code) => return Err(format!("answered {}", rcode_name(code)).into()),
            Answer::Malformed(why) => return Err(format!("not a DNS answer: {why}").into()),
        }
    }
}

/// One question, recursion desired.
fn encode_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut query = Vec::with_capacity(HEADER_LEN + name.len() + 6);
    for word in [id, FLAGS_RD, 1, 0, 0, 0] {
        query.extend_from_slice(&word.to_be_bytes());
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    for label in name.split('.') {
        // Target parsing keeps labels to 63 bytes.
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.push(0);
    query.extend_from_slice(&qtype.to_be_bytes());
    query.extend_from_slice(&CLASS_IN.to_be_bytes());
    query
}

#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// Not an answer to our query (another ID): keep waiting.
    NotOurs,
    Malformed(&'static str),
    Rcode(u8),
}

fn parse_answer(query: &[u8], answer: &[u8]) -> Answer {
    if answer.len() < 2 || answer[..2] != query[..2] {
        return Answer::NotOurs;
    }
    if answer.len() < HEADER_LEN {
        return Answer::Malformed("shorter than a DNS header");
    }
    let flags = u16::from_be_bytes([answer[2], answer[3]]);
    if flags & 0x8000 == 0 {
        return Answer::Malformed("a query, not a response");
    }
    if flags & 0x7800 != 0 {
        return Answer::Malformed("an unexpected opcode");
    }
    let rcode = (flags & 0x000f) as u8;
    // Error answers may leave the question out; a success must echo it
    // (case aside: resolvers may randomise it, 0x20 encoding).
    let question = &query[HEADER_LEN..];
    let echoed = answer[4..6] == [0, 1]
        && answer[HEADER_LEN..]
            .get(..question.len())
            .is_some_and(|q| q.eq_ignore_ascii_case(question));
    if matches!(rcode, 0 | 3) && !echoed {
        return Answer::Malformed("the question is not ours");
    }
    Answer::Rcode(rcode)
}

fn rcode_name(rcode: u8) -> String {
    match rcode {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        other => format!("RCODE {other}"),
    }
}

/// What a resolver would answer to `query`, for tests here and in `tests.rs`.
#[cfg(test)]
pub(super) fn answer_to(query: &[u8], rcode: u8) -> Vec<u8> {
    let mut answer = query.to_vec();
    answer[2] |= 0x80;
    answer[3] = (answer[3] & 0xf0) | rcode;
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_one_question() {
        let query = encode_query(0xbeef, "example.com.", TYPE_AAAA);
        let mut expected = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(b"\x07example\x03com\x00\x00\x1c\x00\x01");
        assert_eq!(query, expected);
        assert_eq!(
            encode_query(1, "a", TYPE_A)[12..],
            *b"\x01a\x00\x00\x01\x00\x01"
        );
    }

    #[test]
    fn accepts_noerror_and_nxdomain_to_our_question() {
        let query = encode_query(7, "example.com", TYPE_A);
        assert_eq!(
            parse_answer(&query, &answer_to(&query, 0)),
            Answer::Rcode(0)
        );
        assert_eq!(
            parse_answer(&query, &answer_to(&query, 3)),
            Answer::Rcode(3)
        );
        let mut mixed_case = answer_to(&query, 0);
        mixed_case[14] = b'X';
        assert_eq!(parse_answer(&query, &mixed_case), Answer::Rcode(0));
        let mut with_records = answer_to(&query, 0);
        with_records[7] = 1;
        with_records.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        assert_eq!(parse_answer(&query, &with_records), Answer::Rcode(0));
    }

    #[test]
    fn ignores_other_ids_and_refuses_malformed_answers() {
        let query = encode_query(7, "example.com", TYPE_A);
        let mut other = answer_to(&query, 0);
        other[1] = 8;
        assert_eq!(parse_answer(&query, &other), Answer::NotOurs);
        assert_eq!(parse_answer(&query, &[0]), Answer::NotOurs);
        let malformed =
            |answer: &[u8]| matches!(parse_answer(&query, answer), Answer::Malformed(_));
        assert!(malformed(&answer_to(&query, 0)[..11]), "cut in the header");
        assert!(
            malformed(&answer_to(&query, 0)[..20]),
            "cut in the question"
        );
        assert!(malformed(&query), "our own query echoed");
        let mut other_name = answer_to(&query, 0);
        other_name[13] = b'z';
        assert!(malformed(&other_name));
        let mut other_type = answer_to(&query, 0);
        other_type[26] = 28;
        assert!(malformed(&other_type));
        let mut opcode = answer_to(&query, 0);
        opcode[2] |= 0x10;
        assert!(malformed(&opcode));
    }

    #[test]
    fn reports_error_rcodes_even_without_the_question() {
        let query = encode_query(7, "example.com", TYPE_A);
        assert_eq!(
            parse_answer(&query, &answer_to(&query, 2)),
            Answer::Rcode(2)
        );
        let mut bare = answer_to(&query, 5)[..HEADER_LEN].to_vec();
        bare[5] = 0;
        assert_eq!(parse_answer(&query, &bare), Answer::Rcode(5));
        assert_eq!(rcode_name(2), "SERVFAIL");
        assert_eq!(rcode_name(9), "RCODE 9");
    }
}
