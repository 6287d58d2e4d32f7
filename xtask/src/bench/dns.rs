//! What the DNS redirect costs a query: round trips from an assigned
//! program asking the system's resolver (sent to usb0's by the programs)
//! against an unassigned one asking usb0's resolver itself: the same
//! resolver over the same link, so the difference is srcsel's hooks.
use std::{
    net::{Ipv4Addr, UdpSocket},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use srcsel_lab::{HOME_DNS, Lab, NAME, wait_until};

use super::{ROUNDS, median, seconds};

const QUERIES: u32 = 2000;
/// The hotspot's router and resolver in the lab.
const HOTSPOT_DNS: &str = "10.99.0.1";

pub fn run(srcsel: &Path, me: &Path) -> anyhow::Result<()> {
    let mut lab = Lab::new(srcsel);
    lab.start_resolvers();
    lab.set_resolv_conf(&format!("nameserver {HOME_DNS}\n"));
    let config = lab.dir.join("srcsel.toml");
    std::fs::write(&config, "[[uplink]]\nname = \"usb0\"\n")?;
    lab.start_daemon(&["--config", &config.display().to_string()]);
    let hook = lab.srcsel_hook();
    lab.start_dhcpcd_on("usb0", "metric 3000", &hook);
    wait_until("usb0's resolver", Duration::from_secs(30), || {
        lab.client_out(&format!("{} status", srcsel_lab::quoted(srcsel)))
            .contains(&format!("DNS: {HOTSPOT_DNS} (dhcp)"))
    });
    let queries = QUERIES.to_string();
    let (mut plain, mut direct, mut redirected) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let mut c = lab.client(me);
        c.args(["dns-loop", &queries, HOTSPOT_DNS]);
        plain.push(seconds(&mut c)?);
        let mut c = lab.srcsel(["run", "--via", "usb0", "--"]);
        c.arg(me).args(["dns-loop", &queries, HOTSPOT_DNS]);
        direct.push(seconds(&mut c)?);
        let mut c = lab.srcsel(["run", "--via", "usb0", "--"]);
        c.arg(me).args(["dns-loop", &queries, HOME_DNS]);
        redirected.push(seconds(&mut c)?);
    }
    let [p, d, r] = [plain, direct, redirected].map(|mut v| median(&mut v));
    let us = |s: f64| s / f64::from(QUERIES) * 1e6;
    println!("DNS query round trip (UDP, a socket each), {QUERIES} per round, median of {ROUNDS}:");
    println!(
        "  unassigned, asking usb0's resolver       {:>8.1} us",
        us(p)
    );
    println!(
        "  assigned, asking usb0's resolver         {:>8.1} us   ratio {:.3}x",
        us(d),
        d / p
    );
    println!(
        "  assigned, asking the system's (redirect) {:>8.1} us   ratio {:.3}x   (goal <= 1.10x)",
        us(r),
        r / p
    );
    Ok(())
}

/// Asks `server` for [`NAME`] `count` times, a new UDP socket each time (as
/// glibc does per lookup); prints the seconds taken.
pub fn dns_loop(count: u32, server: Ipv4Addr) -> anyhow::Result<()> {
    let mut query = vec![0x53, 0x53, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in NAME.split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut answer = [0u8; 512];
    let t = Instant::now();
    for _ in 0..count {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.connect((server, 53))?;
        s.send(&query)?;
        // With the sender's address, as glibc asks for it (and checks it).
        let (n, from) = s.recv_from(&mut answer).context("no answer")?;
        if from != (server, 53).into() {
            bail!("the answer came from {from}, not {server}");
        }
        if n < 12 || answer[..2] != query[..2] || answer[7] == 0 {
            bail!("{server}: not an answer to the query ({n} bytes)");
        }
    }
    println!("{}", t.elapsed().as_secs_f64());
    Ok(())
}
