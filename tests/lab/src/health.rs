//! Health-check configs for the lab: usb0 probed through itself, fast
//! enough for a test (a verdict in about 2.5 s).

/// The config's `[[uplink]]` for usb0, with `extra` lines (`dns = [...]`)
/// and health checks of `targets`: a round every second, a 500 ms timeout,
/// two rounds in a row to decide.
pub fn usb0_health(targets: &[&str], extra: &str) -> String {
    let quoted: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "[[uplink]]\nname = \"usb0\"\n{extra}[uplink.health]\ntargets = [{}]\n\
         interval = \"1s\"\ntimeout = \"500ms\"\ndown_after = 2\nup_after = 2\n",
        quoted.join(", ")
    )
}

/// The lab server's connectivity check (HTTP 204), over IPv4 and IPv6.
pub const CHECK: &str = "http://198.51.100.10:8080/generate_204";
pub const CHECK6: &str = "http://[2001:db8:ffff::10]:8080/generate_204";
