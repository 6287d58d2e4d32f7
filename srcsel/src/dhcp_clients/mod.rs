//! What the host's DHCP client knows that no lease hook told srcsel: an
//! uplink's resolvers. systemd-networkd runs no hooks at all, and a daemon
//! started after the lease (or `srcsel down`) heard none. Asked, in this
//! order, of what is present: dhcpcd (its control socket), NetworkManager
//! (D-Bus, only while it runs: never activated), systemd-networkd (its state
//! files). Each answer is bounded in time; none changes anything.
mod dhcpcd;
mod networkd;
mod networkmanager;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use ipnet::{Ipv4Net, Ipv6Net};
use tracing::debug;

use crate::policy::{Uplink, dns::Asked};

/// How long one client may take to answer.
const TIMEOUT: Duration = Duration::from_secs(1);
/// How often an uplink is asked after its link or addresses changed, while
/// nothing is known: at once, then 1, 2 and 4 s later (a client may publish
/// a lease's resolvers a moment after its address). Then not until the
/// next change: an uplink no client keeps costs no timer.
const TRIES: u32 = 4;
/// How long an answer stands before a pass (an event, never a timer) asks
/// again: a lease renewal may change the resolvers on the same address.
const FRESH: Duration = Duration::from_secs(600);

/// The DHCP clients' answers per uplink, asked again when its link or
/// addresses change: the daemon keeps one across passes, so a netlink event
/// that changes nothing of an uplink asks nothing.
#[derive(Default)]
pub struct Asker {
    known: HashMap<String, Entry>,
}

type Key = (u32, bool, Option<Ipv4Net>, Option<Ipv6Net>);

struct Entry {
    key: Key,
    at: Instant,
    tries: u32,
    answer: Option<Asked>,
}

impl Entry {
    /// When to ask again, if ever.
    fn due(&self) -> Option<Instant> {
        (self.answer.is_none() && self.tries < TRIES)
            .then(|| self.at + Duration::from_secs(1 << (self.tries - 1)))
    }
}

impl Asker {
    /// The resolvers the host's DHCP client knows for `up`, if any.
    pub async fn ask(&mut self, up: &Uplink) -> Option<Asked> {
        let key = (up.index, up.up, up.addr, up.addr6);
        let tries = match self.known.get(&up.name) {
            // A renewal may bring other resolvers on the same address: an
            // answer stands for a while, then the next pass asks again.
            Some(e) if e.key == key && e.answer.is_some() && e.at.elapsed() < FRESH => {
                return e.answer.clone();
            }
            Some(e) if e.key == key && e.answer.is_none() => match e.due() {
                Some(t) if Instant::now() >= t => e.tries + 1,
                _ => return None,
            },
            _ => 1,
        };
        let answer = if up.index == 0 { None } else { ask(up).await };
        debug!("{}: the DHCP client knows resolvers {answer:?}", up.name);
        let entry = Entry {
            key,
            at: Instant::now(),
            tries,
            answer: answer.clone(),
        };
        self.known.insert(up.name.clone(), entry);
        answer
    }

    /// Forgets the uplinks a pass did not ask about (a hook told of them).
    pub fn keep_only(&mut self, asked: &[String]) {
        self.known.retain(|name, _| asked.contains(name));
    }

    /// When a pass should ask again about an uplink nothing is known of.
    pub fn next_try(&self) -> Option<Instant> {
        self.known.values().filter_map(Entry::due).min()
    }
}

/// The answer of the first client that keeps the interface. dhcpcd's
/// answer is its lease's, checked against the uplink's address (a dhcpcd of
/// another network namespace may keep a link of that name);
/// NetworkManager and networkd keep the host's links, so they are not asked
/// from another network namespace.
async fn ask(up: &Uplink) -> Option<Asked> {
    if let Some(a) = dhcpcd::ask(&up.name, up.addr.map(|a| a.addr())).await {
        return a;
    }
    if in_host_netns() == Some(false) {
        return None;
    }
    if let Some(a) = networkmanager::ask(&up.name).await {
        return a;
    }
    networkd::ask(up.index).flatten()
}

/// Whether this thread is in PID 1's network namespace; None when PID 1's
/// cannot be read (the shipped unit has no CAP_SYS_PTRACE, and PID 1 more
/// capabilities than it): then the clients are asked, as on a host.
fn in_host_netns() -> Option<bool> {
    use std::os::unix::fs::MetadataExt as _;
    let ino = |p: &str| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    Some(ino("/proc/thread-self/ns/net")? == ino("/proc/1/ns/net")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn nothing_known_is_asked_again_a_few_times_then_not_until_a_change() {
        let mut asker = Asker::default();
        let gone = Uplink::absent("usb9");
        assert_eq!(asker.ask(&gone).await, None);
        let first = asker.next_try().expect("asked again in a second");
        // Not before it is due: the same answer, no new try.
        assert_eq!(asker.ask(&gone).await, None);
        assert_eq!(asker.next_try(), Some(first));
        asker.known.get_mut("usb9").unwrap().tries = TRIES;
        assert_eq!(asker.next_try(), None, "no timer once the tries are spent");
        asker.keep_only(&[]);
        assert!(asker.known.is_empty());
    }
}
