//! What else steers a cgroup's traffic, measured side by side with srcsel
//! in the same run, per connection:
//! - nftables: `socket cgroupv2` marks the cgroup's packets, a fwmark rule
//!   routes them through usb0, masquerade gives them usb0's address (what a
//!   hand-made setup does);
//! - the bare mechanism: `sock_create` setting `bound_dev_if` (what `ip vrf
//!   exec` loads);
//! - bind + from-rule: a program that binds to usb0's address itself, routed
//!   by srcsel's `from` rule (the baseline: no per-packet work at all).
//!
//! All of it in the lab's client namespace; the cgroups are the bench's own.
use std::{
    fs,
    io::Write as _,
    os::fd::AsFd as _,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};
use srcsel_lab::{CgroupTree, Lab};

use super::{
    CONNECTS, ROUNDS,
    failover::{CLOSED, REFUSED},
    in_cgroup, median, seconds, stats,
};

const DATAGRAMS: u32 = 100_000;
const DATAGRAM: usize = 100;
const MARK: &str = "0x5eed";
const TABLE: &str = "4242";

/// A cgroup of the bench's under cgroup2's root, removed on drop.
pub(super) fn cgroup(what: &str) -> anyhow::Result<CgroupTree> {
    let path =
        srcsel_lab::cgroup2_root().join(format!("srcsel-bench-{what}-{}", std::process::id()));
    fs::create_dir(&path).with_context(|| path.display().to_string())?;
    Ok(CgroupTree(path))
}

fn client_sh(lab: &Lab, script: &str, stdin: &str) -> anyhow::Result<String> {
    let mut child = lab
        .client("sh")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(stdin.as_bytes())?;
    let o = child.wait_with_output()?;
    if !o.status.success() {
        bail!("{script}: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// usb0's ifindex in the client namespace (its /sys is the host's).
fn usb0_ifindex(lab: &Lab) -> anyhow::Result<u32> {
    let line = client_sh(lab, "ip -o link show dev usb0", "")?;
    line.split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("usb0's ifindex in {line:?}"))
}

/// The nftables peer for the cgroup `cg`, in the client namespace.
fn nft_peer(lab: &Lab, cg: &CgroupTree) -> anyhow::Result<()> {
    // nft names a cgroup by its path under /sys/fs/cgroup (it takes the
    // inode from there); cgroup2 may be mounted below it (hybrid layouts).
    let path =
        cg.0.strip_prefix("/sys/fs/cgroup")
            .with_context(|| format!("{} is not under /sys/fs/cgroup", cg.0.display()))?;
    let rules = format!(
        "table inet srcsel_bench {{
    chain out {{ type route hook output priority mangle; socket cgroupv2 level 1 \"{}\" meta mark set {MARK}; }}
    chain post {{ type nat hook postrouting priority srcnat; oifname \"usb0\" meta mark {MARK} masquerade; }}
}}
",
        path.display()
    );
    client_sh(lab, "nft -f -", &rules)?;
    client_sh(
        lab,
        &format!(
            // Loose reverse-path checks on usb0: the answers come back
            // de-NATed to eth0's address, which strict ones would drop.
            "ip rule add fwmark {MARK} lookup {TABLE} pref 100 && \
             ip route add default via 10.99.0.1 dev usb0 table {TABLE} && \
             sysctl -qw net.ipv4.conf.usb0.rp_filter=2"
        ),
        "",
    )?;
    Ok(())
}

/// The four ways a loop of this tool leaves through usb0.
struct Ways<'a> {
    lab: &'a Lab,
    me: &'a Path,
    usb0: &'a str,
    nft: &'a CgroupTree,
    dev: &'a CgroupTree,
}

impl Ways<'_> {
    /// Medians of ROUNDS runs of `me ARGS`: bound to usb0's address, under
    /// `srcsel run --via usb0`, in the nftables peer's cgroup, in the
    /// bound_dev_if peer's cgroup.
    fn medians(&self, args: &[&str]) -> anyhow::Result<[f64; 4]> {
        let (lab, me) = (self.lab, self.me);
        let mut m = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..ROUNDS {
            m[0].push(seconds(
                lab.client(me).args(args).args(["--bind", self.usb0]),
            )?);
            m[1].push(seconds(
                lab.srcsel(["run", "--via", "usb0", "--"])
                    .arg(me)
                    .args(args),
            )?);
            m[2].push(seconds(in_cgroup(lab, &self.nft.0, me).args(args))?);
            m[3].push(seconds(in_cgroup(lab, &self.dev.0, me).args(args))?);
        }
        Ok(m.map(|mut v| median(&mut v)))
    }
}

fn ratio_line(name: &str, secs: f64, base: f64, count: u32) {
    println!(
        "  {name:<26} {:>8.0} conn/s   {:.3}x",
        f64::from(count) / secs,
        secs / base
    );
}

pub fn run(lab: &Lab, me: &Path) -> anyhow::Result<()> {
    // srcsel's usb0 slot, whose `from` rule routes the bind peer.
    crate::run(&mut lab.srcsel(["run", "--via", "usb0", "--", "true"]))?;
    let usb0 = lab.usb0_addr();
    let nft = cgroup("nft")?;
    nft_peer(lab, &nft)?;
    let dev = cgroup("dev")?;
    let _attached = crate::mechanism::bind_to_device(&dev.0, usb0_ifindex(lab)?)?;

    // Loopback: what each costs a connection that is not steered anywhere
    // (every socket passes sock_create, connect and the setsockopt
    // of SO_LINGER); bound_dev_if would take it off lo, so that peer has no
    // line here.
    for (family, flag) in [("IPv4", None), ("IPv6", Some("--v6"))] {
        let connect = |c: &mut Command| -> anyhow::Result<f64> {
            c.args(["connect-loop", &CONNECTS.to_string()]).args(flag);
            seconds(c)
        };
        let mut m = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..ROUNDS {
            m[0].push(connect(&mut lab.client(me))?);
            m[1].push(connect(lab.srcsel(["run", "--via", "usb0", "--"]).arg(me))?);
            m[2].push(connect(&mut in_cgroup(lab, &nft.0, me))?);
        }
        let [plain, ours, nft_lo] = m.map(|mut v| median(&mut v));
        println!(
            "loopback {family} TCP connect+accept+close, {CONNECTS} per round, median of {ROUNDS}:"
        );
        ratio_line("unassigned", plain, plain, CONNECTS);
        ratio_line("srcsel run --via usb0", ours, plain, CONNECTS);
        ratio_line("nft socket cgroupv2 mark", nft_lo, plain, CONNECTS);
        let count = CONNECTS.to_string();
        let args: Vec<&str> = ["connect-loop", &count].into_iter().chain(flag).collect();
        program_time(lab, me, &args, CONNECTION, CONNECTS, "connection")?;
    }

    // Through usb0: a SYN out and a RST back per connection.
    let ways = Ways {
        lab,
        me,
        usb0: &usb0,
        nft: &nft,
        dev: &dev,
    };
    let [bound, ours, nft_usb0, dev_usb0] =
        ways.medians(&["refused-loop", &REFUSED.to_string(), CLOSED])?;
    println!("TCP connect+reset through usb0, {REFUSED} per round, median of {ROUNDS}:");
    ratio_line("bind + from-rule", bound, bound, REFUSED);
    ratio_line("srcsel run --via usb0", ours, bound, REFUSED);
    ratio_line("nft mark+rule+masquerade", nft_usb0, bound, REFUSED);
    ratio_line("sock_create bound_dev_if", dev_usb0, bound, REFUSED);
    let args = ["refused-loop", &REFUSED.to_string(), CLOSED];
    program_time(lab, me, &args, CONNECTION, REFUSED, "connection")?;

    // Per datagram: the sender's own CPU (the programs and nft run in its
    // system calls), 100-byte datagrams through usb0, one sendto each.
    let [bound, ours, nft_udp, dev_udp] =
        ways.medians(&["udp-loop", &DATAGRAMS.to_string(), CLOSED])?;
    let per_gb = |cpu: f64| cpu / (f64::from(DATAGRAMS) * DATAGRAM as f64 / 1e9);
    println!(
        "UDP {DATAGRAM}-byte datagrams through usb0, the sender's CPU, {DATAGRAMS} per round, median of {ROUNDS}:"
    );
    for (name, cpu) in [
        ("bind + from-rule", bound),
        ("srcsel run --via usb0", ours),
        ("nft mark+rule+masquerade", nft_udp),
        ("sock_create bound_dev_if", dev_udp),
    ] {
        println!(
            "  {name:<26} {:>8.1} s/GB    {:.3}x",
            per_gb(cpu),
            cpu / bound
        );
    }
    let args = ["udp-loop", &DATAGRAMS.to_string(), CLOSED];
    program_time(lab, me, &args, DATAGRAM_PATH, DATAGRAMS, "datagram")?;
    // The floor under each figure above: a program that does nothing,
    // timed the same way, in the bound_dev_if peer's cgroup (its ratio
    // rounds are over).
    let empty = crate::mechanism::empty_egress(&dev.0)?;
    let _on = stats::enable()?;
    let before = stats::of(empty[0].as_fd())?;
    seconds(in_cgroup(lab, &dev.0, me).args(args))?;
    stats::line("an empty one", stats::of(empty[0].as_fd())? - before);
    // The lab's namespace goes with the lab; its nft table and rule with it.
    Ok(())
}

/// The programs a connection passes, and those an unconnected datagram does.
const CONNECTION: &[&str] = &[
    "sock_create",
    "connect4",
    "connect6",
    "setsockopt",
    "count_egress",
    "count_ingress",
];
const DATAGRAM_PATH: &[&str] = &["sendmsg4", "count_egress", "count_ingress"];

/// One more round of `me ARGS` under `srcsel run --via usb0`, with the
/// kernel counting the time each of srcsel's programs `names` ran.
fn program_time(
    lab: &Lab,
    me: &Path,
    args: &[&str],
    names: &'static [&'static str],
    units: u32,
    unit: &str,
) -> anyhow::Result<()> {
    let set = stats::Set::new(super::usb0_programs(lab)?, names);
    let _on = stats::enable()?;
    let before = set.read()?;
    seconds(
        lab.srcsel(["run", "--via", "usb0", "--"])
            .arg(me)
            .args(args),
    )?;
    let after = set.read()?;
    println!("  srcsel's programs in one more round, timed by the kernel:");
    set.print(&before, &after, u64::from(units), unit);
    Ok(())
}

/// Sends `count` datagrams of 100 bytes to `target`, one sendto each (bound
/// to `bind` first, if given); prints the CPU seconds this process used.
pub fn udp_loop(
    count: u32,
    target: std::net::SocketAddr,
    bind: Option<std::net::IpAddr>,
) -> anyhow::Result<()> {
    let sock = std::net::UdpSocket::bind(match bind {
        Some(addr) => std::net::SocketAddr::new(addr, 0),
        None => std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
    })?;
    let payload = [0x5a_u8; DATAGRAM];
    let before = cpu_seconds();
    for _ in 0..count {
        // ICMP port unreachables from the closed port may fail a send.
        let _ = sock.send_to(&payload, target);
    }
    println!("{}", cpu_seconds() - before);
    Ok(())
}

/// User and system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}
