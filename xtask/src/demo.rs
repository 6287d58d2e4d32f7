//! `cargo xtask demo`: the lab, one plain curl and one through srcsel.
use std::process::Command;

use anyhow::{Context as _, bail};
use srcsel_lab::{ETH0_ADDR, Lab, SERVER, TCP_PORT};

pub fn run() -> anyhow::Result<()> {
    crate::require_root("the demo")?;
    crate::setup::all()?;
    let srcsel = crate::build_srcsel(true)?;
    println!("\nraising the lab (network namespaces; the host's own network is not touched)...");
    let lab = Lab::new(&srcsel);
    let usb0 = lab.usb0_addr();
    println!("client: eth0 {ETH0_ADDR} (primary, default route metric 100)");
    println!("        usb0 {usb0} (hotspot; lease from dnsmasq, taken by dhcpcd with metric 3000)");
    println!(
        "server: {SERVER}:{TCP_PORT}, reachable through both; it answers with the source address it sees\n"
    );

    let url = format!("http://{SERVER}:{TCP_PORT}/demo");
    let plain = seen(lab.client("curl").args(["-sS", &url]))?;
    let via = seen(&mut lab.srcsel(["run", "--via", "usb0", "--", "curl", "-sS", &url]))?;
    println!("  $ curl {url}");
    println!("    server saw {plain:<15} {}", label(&plain, &usb0));
    println!("  $ srcsel run --via usb0 -- curl {url}");
    println!("    server saw {via:<15} {}", label(&via, &usb0));
    drop(lab);
    println!("\nlab removed.");
    if plain != ETH0_ADDR || via != usb0 {
        bail!("unexpected sources: plain {plain}, via usb0 {via}");
    }
    Ok(())
}

fn label(addr: &str, usb0: &str) -> &'static str {
    if addr == ETH0_ADDR {
        "(eth0, the primary uplink)"
    } else if addr == usb0 {
        "(usb0, the hotspot)"
    } else {
        "(?)"
    }
}

fn seen(cmd: &mut Command) -> anyhow::Result<String> {
    let o = cmd.output().with_context(|| format!("{cmd:?}"))?;
    if !o.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned())
}
