//! The server behind both uplinks (server.py): it logs every token with the
//! peer address it came from, which is how a test learns which uplink a
//! connection left through.
use std::{collections::BTreeSet, fs, path::PathBuf, process::Command, thread, time::Duration};

use crate::{HOLD_PORT, Lab, SERVER, SERVER6, TCP_PORT, UDP_PORT, inspect::wait_until};

/// The server's HTTP URL for `token`.
pub fn url(token: &str) -> String {
    format!("http://{SERVER}:{TCP_PORT}/{token}")
}

/// The same over IPv6.
pub fn url6(token: &str) -> String {
    format!("http://[{SERVER6}]:{TCP_PORT}/{token}")
}

impl Lab {
    pub(crate) fn start_server(&mut self) {
        let script = self.dir.join("server.py");
        fs::write(&script, include_str!("../server.py")).expect("server.py");
        let ready = self.dir.join("server.ready");
        let ns = self.ns("inet");
        let log = self.server_log();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns, "python3"])
            .args([&script, &log, &ready])
            .args([SERVER, SERVER6]);
        self.spawn("server", &mut cmd);
        wait_until("the lab server to listen", Duration::from_secs(10), || {
            ready.exists()
        });
    }

    /// probe.py (a client that reports how its call went), in the lab's folder.
    pub fn probe(&self) -> PathBuf {
        let path = self.dir.join("probe.py");
        if !path.exists() {
            fs::write(&path, include_str!("../probe.py")).expect("probe.py");
        }
        path
    }

    /// hold.py SERVER [BIND]: a client holding one TCP connection to the
    /// server's hold port open (`udp:SERVER`: a connected UDP socket to its
    /// UDP port, after one exchange), which prints how it ended ("error
    /// ERRNO" or "eof"); bound to BIND, if given.
    pub fn hold_script(&self) -> PathBuf {
        let path = self.dir.join("hold.py");
        let text = format!(
            r#"import socket, sys
udp = sys.argv[1].startswith("udp:")
server = sys.argv[1].removeprefix("udp:")
family = socket.AF_INET6 if ":" in sys.argv[-1].removeprefix("udp:") else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
if len(sys.argv) > 2:
    s.bind((sys.argv[2], 0))
s.connect((server, {UDP_PORT} if udp else {HOLD_PORT}))
if udp:
    s.send(b"held")
    s.recv(100)
print("connected", s.getsockname()[0], flush=True)
try:
    while s.recv(1):
        pass
    print("eof", flush=True)
except OSError as e:
    print("error", e.errno, flush=True)
"#
        );
        fs::write(&path, text).expect("hold.py");
        path
    }

    /// Waits until the holder started as `role` is connected.
    pub fn wait_held(&self, role: &str) {
        wait_until(
            &format!("{role} to connect"),
            Duration::from_secs(10),
            || self.log(role).contains("connected"),
        );
    }

    /// Whether the holder started as `role` saw its connection end.
    pub fn hold_ended(&self, role: &str) -> bool {
        let log = self.log(role);
        log.contains("error") || log.contains("eof")
    }

    pub fn server_log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// Every peer the server logged for `token` (protocol, address).
    pub fn seen(&self, token: &str) -> Vec<(String, String)> {
        let log = fs::read_to_string(self.server_log()).unwrap_or_default();
        log.lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let (proto, tok, peer) = (w.next()?, w.next()?, w.next()?);
                (tok == token || (proto == "icmp" && tok.contains(token)))
                    .then(|| (proto.to_owned(), peer.to_owned()))
            })
            .collect()
    }

    /// The one address the server saw `token` from, waiting briefly for the log.
    pub fn source_of(&self, token: &str) -> String {
        wait_until(
            &format!("the server to log {token}"),
            Duration::from_secs(5),
            || !self.seen(token).is_empty(),
        );
        let seen = self.seen(token);
        let peers: BTreeSet<_> = seen.iter().map(|(_, p)| p.clone()).collect();
        assert_eq!(
            peers.len(),
            1,
            "{token} came from more than one address: {seen:?}"
        );
        peers.into_iter().next().expect("one")
    }

    /// Asserts that nothing with `token` reached the server, through any uplink.
    pub fn assert_unseen(&self, token: &str) {
        thread::sleep(Duration::from_millis(300));
        assert!(
            self.seen(token).is_empty(),
            "{token} reached the server: {:?}",
            self.seen(token)
        );
    }
}
