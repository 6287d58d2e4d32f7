//! ICMP echo. A datagram ("ping") socket needs no privilege where
//! net.ipv4.ping_group_range includes our group; elsewhere a raw socket
//! does the same with CAP_NET_RAW.
use std::{
    io::ErrorKind,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Instant,
};

use socket2::{Domain, Protocol, Socket, Type};

use super::{Probed, Source, datagram};

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;
/// Echoed back verbatim, so a reply is told from other traffic.
const PAYLOAD: &[u8] = b"srcsel-health";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The kernel owns the identifier and hands us only our replies,
    /// without the IP header.
    Datagram,
    /// Every ICMP packet arrives; IPv4 ones with their IP header.
    Raw,
}

pub(super) async fn probe(target: IpAddr, src: &Source) -> Probed {
    let (socket, kind) = open(target, src)?;
    let socket = datagram(socket)?;
    let (id, seq) = (fastrand::u16(..), fastrand::u16(..));
    let request = echo_request(target, id, seq);
    let start = Instant::now();
    socket
        .send_to(&request, SocketAddr::new(target, 0))
        .await
        .map_err(|e| format!("cannot send an echo request to {target}{}: {e}", src.on()))?;
    let mut buf = [0u8; 1500];
    loop {
        let (len, from) = socket
            .recv_from(&mut buf)
            .await
            .map_err(|e| format!("cannot receive from {target}{}: {e}", src.on()))?;
        if from.ip() == target && is_reply(&buf[..len], target, kind, id, seq) {
            return Ok(start.elapsed());
        }
    }
}

fn open(target: IpAddr, src: &Source) -> Result<(Socket, Kind), super::Failure> {
    let (domain, protocol) = match target {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    let (socket, kind) = match Socket::new(domain, Type::DGRAM, Some(protocol)) {
        Ok(socket) => (socket, Kind::Datagram),
        // EACCES: net.ipv4.ping_group_range excludes our group.
        Err(ping) if ping.kind() == ErrorKind::PermissionDenied => {
            let raw = Socket::new(domain, Type::RAW, Some(protocol)).map_err(|raw| {
                format!(
                    "cannot open an ICMP socket: net.ipv4.ping_group_range excludes our group \
                     ({ping}) and a raw socket needs CAP_NET_RAW ({raw})"
                )
            })?;
            (raw, Kind::Raw)
        }
        Err(e) => return Err(format!("cannot open an ICMP socket: {e}").into()),
    };
    src.pin(&socket)?;
    Ok((socket, kind))
}

fn echo_request(target: IpAddr, id: u16, seq: u16) -> Vec<u8> {
    let kind = match target {
        IpAddr::V4(_) => ECHO_REQUEST_V4,
        IpAddr::V6(_) => ECHO_REQUEST_V6,
    };
    let mut packet = vec![kind, 0, 0, 0];
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(PAYLOAD);
    // ICMPv6's checksum covers a pseudo-header: the kernel fills it in.
    if target.is_ipv4() {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Whether `packet`, as `kind` of socket delivers it, is the echo reply to
/// our request `id`/`seq` from `target`.
fn is_reply(packet: &[u8], target: IpAddr, kind: Kind, id: u16, seq: u16) -> bool {
    let (icmp, reply) = match target {
        IpAddr::V4(from) if kind == Kind::Raw => match ipv4_payload(packet, from) {
            Some(icmp) => (icmp, ECHO_REPLY_V4),
            None => return false,
        },
        IpAddr::V4(_) => (packet, ECHO_REPLY_V4),
        IpAddr::V6(_) => (packet, ECHO_REPLY_V6),
    };
    icmp.len() >= 8
        && icmp[0] == reply
        && icmp[1] == 0
        && (kind == Kind::Datagram || icmp[4..6] == id.to_be_bytes())
        && icmp[6..8] == seq.to_be_bytes()
        && icmp[8..] == *PAYLOAD
}

/// The ICMP part of an IPv4 packet from `from`.
fn ipv4_payload(packet: &[u8], from: Ipv4Addr) -> Option<&[u8]> {
    let header_len = usize::from(packet.first()? & 0x0f) * 4;
    let ours = packet[0] >> 4 == 4
        && header_len >= 20
        && packet.len() >= header_len
        && packet[9] == 1
        && packet[12..16] == from.octets();
    ours.then(|| &packet[header_len..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

    fn reply(request: &[u8], reply_type: u8) -> Vec<u8> {
        let mut reply = request.to_vec();
        reply[0] = reply_type;
        reply
    }

    fn ipv4_packet(from: Ipv4Addr, icmp: &[u8]) -> Vec<u8> {
        let mut packet = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
        packet.extend_from_slice(&from.octets());
        packet.extend_from_slice(&[127, 0, 0, 1]);
        packet.extend_from_slice(icmp);
        packet
    }

    #[test]
    fn request_carries_id_seq_and_a_valid_v4_checksum() {
        let request = echo_request(IpAddr::V4(TARGET), 0x1234, 0xabcd);
        assert_eq!(request[..2], [ECHO_REQUEST_V4, 0]);
        assert_eq!(request[4..8], [0x12, 0x34, 0xab, 0xcd]);
        assert_eq!(checksum(&request), 0, "a correct checksum sums to zero");
        let v6 = echo_request("2001:db8::1".parse().unwrap(), 1, 2);
        assert_eq!(v6[..4], [ECHO_REQUEST_V6, 0, 0, 0]);
    }

    #[test]
    fn checksum_matches_rfc_1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data), !0xddf2);
        assert_eq!(checksum(&[0xff]), !0xff00);
    }

    #[test]
    fn raw_v4_replies_are_read_past_the_ip_header() {
        let target = IpAddr::V4(TARGET);
        let request = echo_request(target, 7, 9);
        let good = ipv4_packet(TARGET, &reply(&request, ECHO_REPLY_V4));
        assert!(is_reply(&good, target, Kind::Raw, 7, 9));
        assert!(
            !is_reply(&good, target, Kind::Raw, 8, 9),
            "another pinger's id"
        );
        assert!(
            !is_reply(&good, target, Kind::Raw, 7, 10),
            "another sequence"
        );
        let echoed_request = ipv4_packet(TARGET, &request);
        assert!(!is_reply(&echoed_request, target, Kind::Raw, 7, 9));
        let elsewhere = ipv4_packet(Ipv4Addr::new(192, 0, 2, 9), &reply(&request, 0));
        assert!(!is_reply(&elsewhere, target, Kind::Raw, 7, 9));
        assert!(!is_reply(&good[..20], target, Kind::Raw, 7, 9), "truncated");
        assert!(!is_reply(&[], target, Kind::Raw, 7, 9));
        assert!(
            !is_reply(&good[20..], target, Kind::Raw, 7, 9),
            "no IP header"
        );
    }

    #[test]
    fn datagram_replies_have_no_header_and_the_kernel_owns_the_id() {
        let target = IpAddr::V4(TARGET);
        let good = reply(&echo_request(target, 7, 9), ECHO_REPLY_V4);
        assert!(is_reply(&good, target, Kind::Datagram, 1, 9));
        assert!(!is_reply(&good, target, Kind::Datagram, 1, 8));
        assert!(
            !is_reply(&good[..8], target, Kind::Datagram, 1, 9),
            "payload cut"
        );
    }

    #[test]
    fn v6_replies_have_no_header_either_way() {
        let target: IpAddr = "2001:db8::1".parse().unwrap();
        let good = reply(&echo_request(target, 7, 9), ECHO_REPLY_V6);
        assert!(is_reply(&good, target, Kind::Raw, 7, 9));
        assert!(is_reply(&good, target, Kind::Datagram, 0, 9));
        assert!(!is_reply(&good, target, Kind::Raw, 6, 9));
        let v4_type = reply(&good, ECHO_REPLY_V4);
        assert!(!is_reply(&v4_type, target, Kind::Raw, 7, 9));
        let neighbour_solicitation = [135, 0, 0, 0, 0, 7, 0, 9];
        assert!(!is_reply(&neighbour_solicitation, target, Kind::Raw, 7, 9));
    }
}
