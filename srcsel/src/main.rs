//! srcsel: choose which uplink a process's traffic leaves through.
//!
//! - `policy` decides, purely: config + one kernel snapshot + slot registry
//!   → a plan. `kernel` adapts (netlink, eBPF pins and maps, cgroupfs) and
//!   imports nothing above it. `reconcile` joins them in one pass.
//! - Drivers: `cli` (one file per subcommand), `daemon` (one loop over its
//!   wake-ups), both through `reconcile`; `api` is what they say to each
//!   other; `status` is the report both show.
//! - Beside them: `config`, `dhcp` (hook variables), `dhcp_clients` (asking
//!   DHCP clients for resolvers), `assign` (assignments applied),
//!   `health` (probe targets, probes through one uplink), `placement`
//!   and `supervise` (a run's command), `systemd` (scopes,
//!   drop-ins), `cleanup` (what dead runs and gone namespaces left).
mod api;
mod assign;
mod cleanup;
mod cli;
mod config;
mod daemon;
mod dhcp;
mod dhcp_clients;
mod health;
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
