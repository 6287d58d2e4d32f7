//! The command line: clap types, one file per subcommand, and the exit
//! status convention (125 when srcsel itself failed).
mod assign;
mod daemon;
mod down;
mod generate;
mod lease;
mod log;
mod run;
pub mod status;

use std::{ffi::OsString, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::config;

/// Exit status when srcsel itself fails (before or after running the command),
/// as `env`, `timeout` and `docker run` use it.
const SRCSEL_FAILED: u8 = 125;

#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a command whose traffic (and that of everything it starts) leaves through one uplink.
    ///
    /// The command runs in a fresh cgroup with srcsel's eBPF programs attached:
    /// its sockets get the uplink's mark, and unbound sockets are bound to the
    /// uplink's current address, so programs that never bind are steered too.
    /// With a srcsel daemon in the network namespace, the daemon makes the
    /// cgroup, and members of group srcsel (or whom the config allows) need
    /// no sudo; without one, root sets the uplink's table and rules up here.
    /// srcsel exits with the command's status (128+N if signal N killed it);
    /// 125 if srcsel itself failed. When the command exits, anything it left
    /// running in its cgroup is killed, and the cgroup is removed.
    #[command(arg_required_else_help = true)]
    Run {
        /// Uplink interface to leave through (for example usb0), or an ordered
        /// list (usb0,eth0): per family, the first that can carry it now
        #[arg(long, value_name = "IFACE[,IFACE...]")]
        via: String,
        /// While the uplink (every one of a list) is down, use normal routing
        /// instead of failing connections (the default, strict mode, never
        /// leaks through another uplink)
        #[arg(long)]
        fallback: bool,
        /// Run the command as this user (name or uid), with their groups and
        /// HOME, USER, LOGNAME and SHELL, like `systemd-run --uid` (root only;
        /// without it the command runs as whoever runs srcsel)
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// The command and its arguments (after `--`)
        // No allow_hyphen_values: a mistyped option before `--` (`--fallbak`)
        // is an error, never taken for the command.
        #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
        command: Vec<OsString>,
        /// Configuration file (read when srcsel sets the uplink up itself, without a daemon)
        #[arg(long, value_name = "PATH", default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Bind a systemd slice or unit, or a cgroup, to an uplink, from now on and from every boot.
    ///
    /// Recorded in the config ([[assign]]) and applied by the daemon at once:
    /// everything running in it, and everything started in it later, leaves
    /// through the uplink. The nearest assigned ancestor wins, so a cgroup
    /// assigned inside an assigned slice uses its own uplink. Under systemd,
    /// a drop-in has systemd attach srcsel's programs whenever it makes the
    /// unit's cgroup, and start the unit only after srcsel.
    #[command(arg_required_else_help = true)]
    Assign {
        #[command(flatten)]
        target: assign::TargetArgs,
        /// Uplink interface to leave through (for example usb0), or an ordered
        /// list (usb0,eth0): per family, the first that can carry it now
        #[arg(long, value_name = "IFACE[,IFACE...]")]
        via: String,
        /// While the uplink (every one of a list) is down, use normal routing
        /// instead of failing connections
        #[arg(long)]
        fallback: bool,
        /// Configuration file
        #[arg(long, value_name = "PATH", default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Undo `srcsel assign`: new sockets in the slice, unit or cgroup use normal routing again.
    #[command(arg_required_else_help = true)]
    Unassign {
        #[command(flatten)]
        target: assign::TargetArgs,
        /// Configuration file
        #[arg(long, value_name = "PATH", default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Remove everything srcsel added in this network namespace: rules, routes,
    /// pinned programs, links and maps, and the cgroups of its runs.
    ///
    /// Refused while a srcsel daemon runs in the namespace (it would put
    /// everything back) or while runs are active (their traffic would leave
    /// another way), unless --force stops them first.
    Down {
        /// Stop active runs (kill their commands) before removing everything
        #[arg(long)]
        force: bool,
        /// Configuration file (its assigned cgroups keep their programs)
        #[arg(long, value_name = "PATH", default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Keep managed uplinks' tables, rules and eBPF state in sync with their
    /// links and leases, on netlink events. Runs in the foreground, logs to stderr.
    Daemon {
        /// Configuration file [default: /etc/srcsel/srcsel.toml, none if missing]
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Show uplinks, leases, tables, rules, assignments and counters in this network namespace.
    Status {
        /// Machine-readable output (layout documented in README.md)
        #[arg(long)]
        json: bool,
        /// Configuration file (for assignments not yet applied, without a daemon)
        #[arg(long, value_name = "PATH", default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Report a DHCP lease from a client hook (dhcpcd, dhclient, udhcpc,
    /// NetworkManager dispatcher): reads the hook's variables, for uplinks
    /// whose DHCP client installs no default route (dhcpcd `nogateway`).
    Lease {
        /// Arguments the hook was given (udhcpc: the event; NetworkManager: interface and action)
        args: Vec<String>,
        /// Configuration file (read when srcsel applies the lease itself, without a daemon)
        #[arg(long, value_name = "PATH", default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Write the man pages, shell completions and iproute2 names into DIR (for packages).
    #[command(hide = true)]
    Generate {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version are answers; any other parse error is srcsel
            // failing, with the status the README documents.
            let asked = matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            );
            return ExitCode::from(if asked { 0 } else { SRCSEL_FAILED });
        }
    };
    // After parsing: help, version and usage errors log nothing.
    log::init();
    let result = match cli.command {
        Command::Run {
            via,
            fallback,
            user,
            command,
            config,
        } => run::run(&via, fallback, user.as_deref(), &command, &config),
        Command::Assign {
            target,
            via,
            fallback,
            config,
        } => assign::assign(&target, &via, fallback, &config).map(|()| 0),
        Command::Unassign { target, config } => assign::unassign(&target, &config).map(|()| 0),
        Command::Down { force, config } => down::down(force, &config).map(|()| 0),
        Command::Daemon { config } => daemon::daemon(config).map(|()| 0),
        Command::Status { json, config } => status::status(json, &config).map(|()| 0),
        Command::Lease { args, config } => lease::lease(&args, &config).map(|()| 0),
        Command::Generate { dir } => generate::generate(&dir).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            log::fatal(&e);
            ExitCode::from(SRCSEL_FAILED)
        }
    }
}
