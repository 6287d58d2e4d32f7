//! The rtnetlink multicast groups whose messages can change a plan. The
//! daemon treats every message (and an overrun) alike: a trigger for a full
//! pass, which reads a fresh snapshot.
use futures::Stream;
use rtnetlink::{Handle, MulticastGroup};

/// A handle and the stream of events, in the calling thread's namespace.
pub fn subscribe() -> std::io::Result<(Handle, impl Stream<Item = impl Sized> + Unpin)> {
    let (conn, handle, events) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv4Rule,
        MulticastGroup::Ipv6Ifaddr,
        MulticastGroup::Ipv6Route,
        MulticastGroup::Ipv6Rule,
    ])?;
    tokio::spawn(conn);
    Ok((handle, events))
}
