//! Builds the eBPF object and leaves it in OUT_DIR for `include_bytes_aligned!`.
//!
//! Without the eBPF toolchain (nightly with rust-src, bpf-linker), or with
//! AYA_BUILD_SKIP=1, an empty stub takes its place so that `cargo check`,
//! clippy and the unit tests still work; such a binary refuses to load
//! programs and says how to build the real object (`cargo xtask build-ebpf`).
use std::{env, fs, path::PathBuf, process::Command};

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    let out = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?);
    let object = out.join("srcsel");
    if let Some(missing) = missing_toolchain() {
        println!(
            "cargo:warning=building srcsel without its eBPF object ({missing}); run `cargo xtask setup`"
        );
        return fs::write(&object, [])
            .with_context(|| format!("writing stub {}", object.display()));
    }
    let root = env::var("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = PathBuf::from(root).join("../srcsel-ebpf");
    let ebpf_dir = ebpf_dir.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
    aya_build::build_ebpf(
        [Package {
            name: "srcsel-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        Toolchain::Nightly,
    )
}

/// Why the eBPF object cannot be built here, if it cannot.
fn missing_toolchain() -> Option<&'static str> {
    if env::var_os("AYA_BUILD_SKIP").is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        return Some("AYA_BUILD_SKIP is set");
    }
    let works = |cmd: &mut Command| cmd.output().is_ok_and(|o| o.status.success());
    if !works(Command::new("bpf-linker").arg("--version")) {
        return Some("bpf-linker not found or broken");
    }
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output();
    match sysroot {
        Ok(o) if o.status.success() => {
            let root = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            let src = PathBuf::from(root).join("lib/rustlib/src/rust/library/core");
            (!src.exists()).then_some("nightly has no rust-src component")
        }
        _ => Some("no nightly toolchain"),
    }
}
