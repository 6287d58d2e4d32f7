//! srcsel: choose which uplink a process's traffic leaves through.
//!
//! `policy` decides (pure), `kernel` adapts (netlink, eBPF, cgroupfs),
//! `reconcile` joins them in one pass; `cli` and `daemon` drive it.
mod api;
mod assign;
mod cleanup;
mod cli;
mod config;
mod daemon;
mod dhcp;
mod dhcp_clients;
mod kernel;
mod placement;
mod policy;
mod reconcile;
mod status;
mod supervise;
mod systemd;

fn main() -> std::process::ExitCode {
    cli::main()
}
