//! The eBPF adapter: srcsel's folder in bpffs, the slot registry and the
//! maps every program set shares, and loading, pinning and attaching the
//! programs.
//!
//! Layout, per network namespace (by its cookie, never reused while the
//! machine runs): `<bpffs>/srcsel/net-<cookie>/maps/<map>` and
//! `<bpffs>/srcsel/net-<cookie>/<uplink>/<strict|fallback>/<program>`, and
//! the attachments' links in `<bpffs>/srcsel/net-<cookie>/links/`.
pub mod attachments;
mod leases;
mod maps;
pub mod namespace;
pub mod pins;
pub mod programs;
mod syscall;

use std::{io, path::PathBuf};

pub use maps::SetCounters;
pub use namespace::Namespace;

/// The eBPF object, built by build.rs (empty when built without the toolchain).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/srcsel"));

/// A loader of [`OBJECT`] that pins (and reuses) its maps under `maps_dir`.
fn loader(maps_dir: &std::path::Path) -> aya::EbpfLoader<'_> {
    let mut l = aya::EbpfLoader::new();
    l.default_map_pin_directory(maps_dir);
    l
}

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error(
        "this srcsel binary was built without its eBPF programs (no bpf-linker or nightly rust-src at build time); \
         rebuild it after `cargo xtask setup`"
    )]
    NoObject,
    #[error(
        "no bpffs mounted, and mounting one at {path} failed (mount it with `mount -t bpf bpf {path}`)"
    )]
    Bpffs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "no bpffs is visible in this mount namespace (none at {path}): srcsel keeps its pins in the \
         host's bpffs and will not mount a private one that no other srcsel would see. Run srcsel \
         where the host's /sys/fs/bpf is mounted (`nsenter --net=/run/netns/NAME srcsel ...`, not \
         `ip netns exec`), or start its daemon (`systemctl start srcsel`): runs and lease hooks \
         reach it over its socket from any mount namespace"
    )]
    NotVisible { path: PathBuf },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("loading srcsel's eBPF programs")]
    Load(#[from] aya::EbpfError),
    #[error("eBPF program {name}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("eBPF link of {name}")]
    Link {
        name: &'static str,
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error("pinning {path}")]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("srcsel map {path}")]
    Map {
        path: PathBuf,
        #[source]
        source: aya::maps::MapError,
    },
    #[error(
        "the pins in {dir} were made by a srcsel with another map layout (an older or newer version); \
         its programs keep steering until you stop its runs and daemon and run `srcsel down`, \
         which removes them, then start again"
    )]
    Layout { dir: PathBuf },
    #[error("reading this network namespace's cookie (SO_NETNS_COOKIE needs Linux 5.14)")]
    Cookie(#[source] io::Error),
}

fn io_err(path: &std::path::Path) -> impl FnOnce(io::Error) -> BpfError + '_ {
    move |source| BpfError::Io {
        path: path.to_owned(),
        source,
    }
}
