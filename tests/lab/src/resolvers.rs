//! Resolvers for the DNS suites: one on each router's lan (the home
//! router's, the hotspot's) and a "public" one beside the server, each
//! answering [`NAME`] with an address of its own and logging who asked; a
//! local stub in the client, as systemd-resolved or dnsmasq on a host; and
//! the client's own resolv.conf, bind-mounted over /etc/resolv.conf for
//! every command the lab runs in the client (a mount namespace each).
use std::{fs, process::Command, time::Duration};

use crate::{Lab, SERVER, inspect::wait_until};

/// The name every resolver answers.
pub const NAME: &str = "who.test";
/// The home router (eth0's gateway) and its answer (nothing listens there).
pub const HOME_DNS: &str = "10.1.0.1";
pub const HOME_ANSWER: &str = "192.0.2.1";
/// A resolver on the internet, reached through either uplink, and its answer.
pub const PUBLIC_DNS: &str = "198.51.100.53";
pub const PUBLIC_ANSWER: &str = "192.0.2.2";
/// The hotspot's resolver (its router, whatever its address) answers with
/// the lab's server, so a name looked up through it can be connected to.
pub const HOTSPOT_ANSWER: &str = SERVER;
/// The client's local stub, forwarding to the home router.
pub const STUB_DNS: &str = "127.0.0.53";

/// One query a resolver logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub name: String,
    pub from: String,
}

impl Lab {
    /// Starts the home router's, the hotspot's and the public resolver, and
    /// the client's stub; each logs under `dns-<role>`.
    pub fn start_resolvers(&mut self) {
        let inet = self.ns("inet");
        crate::ip(&format!("-n {inet} addr add {PUBLIC_DNS}/32 dev lo"));
        self.start_resolver("r1", &["--interface=lan"], &answer(HOME_ANSWER));
        // The hotspot's follows its router's address through a renumbering.
        self.start_resolver("r2", &["--interface=lan"], &answer(HOTSPOT_ANSWER));
        let public = format!("--listen-address={PUBLIC_DNS}");
        self.start_resolver("inet", &[&public], &answer(PUBLIC_ANSWER));
        let stub = format!("--listen-address={STUB_DNS}");
        let upstream = format!("--server={HOME_DNS}");
        self.start_resolver("client", &[&stub, &upstream], "--cache-size=0");
        for (role, at) in [("r1", HOME_DNS), ("inet", PUBLIC_DNS), ("client", STUB_DNS)] {
            wait_until(
                &format!("the {role} resolver"),
                Duration::from_secs(10),
                || {
                    let ns = self.ns(role);
                    Command::new("ip")
                        .args(["netns", "exec", &ns, "ss", "-lnu", &format!("src {at}:53")])
                        .output()
                        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(":53"))
                },
            );
        }
    }

    fn start_resolver(&mut self, role: &str, listen: &[&str], serve: &str) {
        let ns = self.ns(role);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns, "dnsmasq", "--keep-in-foreground"])
            .args(["--conf-file=/dev/null", "--no-resolv", "--no-hosts"])
            .args(["--bind-dynamic", "--log-queries", "--log-facility=-"])
            .arg("--pid-file=")
            .args(listen)
            .arg(serve);
        self.spawn(&format!("dns-{role}"), &mut cmd);
    }

    /// The queries the resolver of `role` ("r1", "r2", "inet", "client") has
    /// been asked, in order.
    pub fn queries(&self, role: &str) -> Vec<Query> {
        self.log(&format!("dns-{role}"))
            .lines()
            .filter_map(|line| {
                let rest = &line[line.find("query[")?..];
                let mut words = rest.split_whitespace();
                let (_, name, from, addr) =
                    (words.next()?, words.next()?, words.next()?, words.next()?);
                (from == "from").then(|| Query {
                    name: name.to_owned(),
                    from: addr.to_owned(),
                })
            })
            .collect()
    }

    /// From now on, commands in the client read `text` as /etc/resolv.conf
    /// (the file is rewritten in place: processes already running see it).
    pub fn set_resolv_conf(&mut self, text: &str) {
        let path = self.dir.join("resolv.conf");
        fs::write(&path, text).expect("resolv.conf");
        self.resolv_conf = Some(path);
    }
}

fn answer(addr: &str) -> String {
    format!("--address=/{NAME}/{addr}")
}
