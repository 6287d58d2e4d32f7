use super::*;

/// A reply message as the kernel writes it: a header, an
/// `inet_diag_msg` and the given attributes (type, value).
pub fn reply_msg(
    seq: u32,
    family: u8,
    local: (IpAddr, u16),
    inode: u32,
    attrs: &[(u16, &[u8])],
) -> Vec<u8> {
    let mut body = vec![family, 1, 0, 0];
    let mut id = [0u8; SOCKID_LEN];
    id[0..2].copy_from_slice(&local.1.to_be_bytes());
    id[2..4].copy_from_slice(&443u16.to_be_bytes());
    match local.0 {
        IpAddr::V4(a) => id[4..8].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => id[4..20].copy_from_slice(&a.octets()),
    }
    id[40..44].copy_from_slice(&7u32.to_ne_bytes()); // interface
    id[44..48].copy_from_slice(&0xc00c1e_u32.to_ne_bytes()); // cookie
    body.extend(id);
    body.extend([0u8; 16]); // expires, rqueue, wqueue, uid
    body.extend(inode.to_ne_bytes());
    assert_eq!(body.len(), MSG_LEN);
    for (kind, value) in attrs {
        body.extend(((4 + value.len()) as u16).to_ne_bytes());
        body.extend(kind.to_ne_bytes());
        body.extend(*value);
        body.resize(align4(body.len()), 0);
    }
    let mut m = ((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes().to_vec();
    m.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend((libc::NLM_F_MULTI as u16).to_ne_bytes());
    m.extend(seq.to_ne_bytes());
    m.extend(1234u32.to_ne_bytes());
    m.extend(body);
    m
}

/// An `NLMSG_DONE` or `NLMSG_ERROR` carrying `errno` (0 or negative).
pub fn status_msg(seq: u32, kind: i32, errno: i32) -> Vec<u8> {
    let mut m = 20u32.to_ne_bytes().to_vec();
    m.extend((kind as u16).to_ne_bytes());
    m.extend([0; 2]); // flags
    m.extend(seq.to_ne_bytes());
    m.extend([0; 4]); // port id
    m.extend(errno.to_ne_bytes());
    m
}

#[test]
fn dump_request_is_a_header_and_an_inet_diag_req_v2() {
    let m = dump_request(9, libc::AF_INET6 as u8, libc::IPPROTO_TCP as u8);
    assert_eq!(m.len(), 16 + 56);
    assert_eq!(u32_at(&m, 0), Some(72));
    assert_eq!(u16_at(&m, 4), Some(20));
    assert_eq!(u16_at(&m, 6), Some(0x301)); // REQUEST | DUMP
    assert_eq!(u32_at(&m, 8), Some(9));
    assert_eq!(&m[16..20], &[10, 6, 0, 0]);
    assert_eq!(u32_at(&m, 20), Some(0b1011_0011_1110));
    assert!(m[24..].iter().all(|b| *b == 0));
    // UDP: connected sockets only (its ESTABLISHED).
    let m = dump_request(9, libc::AF_INET as u8, libc::IPPROTO_UDP as u8);
    assert_eq!(&m[16..20], &[2, 17, 0, 0]);
    assert_eq!(u32_at(&m, 20), Some(0b10));
}

#[test]
fn destroy_request_echoes_the_dumped_sockid() {
    let v4 = Ipv4Addr::new(192, 0, 2, 5).into();
    let msg = reply_msg(1, libc::AF_INET as u8, (v4, 40000), 99, &[]);
    let Reply::Sock(s) = replies(&msg).unwrap().remove(0).1 else {
        panic!("not a socket")
    };
    let m = destroy_request(3, &s);
    assert_eq!(m.len(), 72);
    assert_eq!(u16_at(&m, 4), Some(21));
    assert_eq!(u16_at(&m, 6), Some(0x5)); // REQUEST | ACK
    assert_eq!(&m[16..18], &[2, 6]);
    assert_eq!(&m[24..], &msg[20..68]);
    let udp = DiagSock {
        protocol: libc::IPPROTO_UDP as u8,
        ..s
    };
    assert_eq!(&destroy_request(4, &udp)[16..18], &[2, 17]);
}

#[test]
fn reads_marks_and_addresses_of_both_families() {
    let v4: IpAddr = Ipv4Addr::new(192, 0, 2, 5).into();
    let v6: IpAddr = "2001:db8::5".parse().unwrap();
    let mark = 0x4100_0000u32.to_ne_bytes();
    let mut buf = reply_msg(
        4,
        libc::AF_INET as u8,
        (v4, 40000),
        11,
        &[(INET_DIAG_MARK, &mark)],
    );
    buf.extend(reply_msg(
        4,
        libc::AF_INET6 as u8,
        (v6, 40001),
        12,
        &[(INET_DIAG_SHUTDOWN, &[3]), (INET_DIAG_MARK, &mark)],
    ));
    buf.extend(reply_msg(
        4,
        libc::AF_INET as u8,
        (v4, 40002),
        13,
        &[(INET_DIAG_SHUTDOWN, &[0])],
    ));
    buf.extend(status_msg(4, libc::NLMSG_DONE, 0));
    let r = replies(&buf).unwrap();
    assert_eq!(r.len(), 4);
    let socks: Vec<_> = r
        .iter()
        .filter_map(|(_, r)| match r {
            Reply::Sock(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(socks[0].local(), SocketAddr::new(v4, 40000));
    assert_eq!(socks[0].remote().port(), 443);
    assert_eq!(
        (socks[0].inode, socks[0].mark, socks[0].shutdown),
        (11, Some(0x4100_0000), 0)
    );
    assert_eq!(socks[1].local(), SocketAddr::new(v6, 40001));
    assert_eq!(
        (socks[1].inode, socks[1].mark, socks[1].shutdown),
        (12, Some(0x4100_0000), 3)
    );
    assert_eq!(socks[2].mark, None);
    assert_eq!(r[3], (4, Reply::Done(0)));
}

#[test]
fn an_error_carries_its_errno() {
    let r = replies(&status_msg(8, libc::NLMSG_ERROR, -libc::ENOENT)).unwrap();
    assert_eq!(r, [(8, Reply::Done(-libc::ENOENT))]);
}

#[test]
fn a_truncated_reply_is_an_error() {
    let v4 = Ipv4Addr::LOCALHOST.into();
    let msg = reply_msg(1, libc::AF_INET as u8, (v4, 1), 1, &[]);
    assert!(replies(&msg[..msg.len() - 1]).is_err());
    assert!(replies(&msg[..60]).is_err());
}
