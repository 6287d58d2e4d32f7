//! `cargo xtask dist`: a Debian package per architecture (amd64, arm64) in
//! target/dist/, and the arm64 build exercised under qemu-user. Both builds
//! embed the same eBPF object (the programs are built once, for bpfel); the
//! packages are assembled with dpkg-deb from files this workspace holds or
//! the binary generates, so nothing is copied by hand.
mod deb;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::{cargo, root, run, setup};

/// A Debian architecture and how to build for it.
pub struct Arch {
    pub deb: &'static str,
    pub triple: &'static str,
    /// The cross linker, when not the host's.
    linker: Option<&'static str>,
}

pub const AMD64: Arch = Arch {
    deb: "amd64",
    triple: "x86_64-unknown-linux-gnu",
    linker: None,
};
pub const ARM64: Arch = Arch {
    deb: "arm64",
    triple: "aarch64-unknown-linux-gnu",
    linker: Some("aarch64-linux-gnu-gcc"),
};

impl Arch {
    /// How cargo builds for this architecture (and runs its unit tests).
    pub fn env(&self, cmd: &mut Command) {
        if let Some(linker) = self.linker {
            cmd.env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", linker)
                // Unit tests run under qemu-user, with the cross libc.
                .env(
                    "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER",
                    "qemu-aarch64-static",
                )
                .env("QEMU_LD_PREFIX", "/usr/aarch64-linux-gnu");
        }
    }
}

pub fn dist() -> anyhow::Result<()> {
    setup::toolchain()?;
    setup::cross()?;
    let out = root().join("target/dist");
    let mut objects = Vec::new();
    let mut binaries = Vec::new();
    for arch in [AMD64, ARM64] {
        let (binary, object) = build(&arch)?;
        objects.push(fs::read(&object).with_context(|| format!("reading {}", object.display()))?);
        binaries.push((arch, binary));
    }
    let programs = [
        program_sections(&objects[0])?,
        program_sections(&objects[1])?,
    ];
    if programs[0] != programs[1] {
        bail!("the amd64 and arm64 builds embed different eBPF programs or maps");
    }
    let generated = out.join("generated");
    let _ = fs::remove_dir_all(&generated);
    run(Command::new(&binaries[0].1).arg("generate").arg(&generated))?;
    exercise_arm64(&binaries[1].1)?;
    for (arch, binary) in &binaries {
        let deb = deb::build(arch, binary, &generated, &out, deb::RELEASE)?;
        println!("dist: {}", deb.display());
    }
    println!(
        "dist: both builds embed the same eBPF programs and maps ({} sections)",
        programs[0].len()
    );
    Ok(())
}

/// An eBPF object's sections but its debug info and BTF, which name the
/// build folder (and so the target triple): the programs, maps, relocations
/// and symbols, by name.
fn program_sections(elf: &[u8]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    use object::{Object as _, ObjectSection as _};
    let file = object::File::parse(elf).context("parsing the eBPF object")?;
    let mut all = Vec::new();
    for s in file.sections() {
        let name = s.name().context("a section name")?.to_owned();
        let debug = [".debug", ".BTF", ".rel.debug", ".rel.BTF"]
            .iter()
            .any(|p| name.starts_with(p));
        if !debug {
            all.push((name, s.data().context("a section's data")?.to_vec()));
        }
    }
    Ok(all)
}

/// A package of `arch`'s debug binary, for the VM's package suite (what the
/// package's files and scripts do; `dist` makes the release ones).
pub fn test_package(arch: &Arch) -> anyhow::Result<PathBuf> {
    let binary = match arch.linker {
        None => root().join("target/debug/srcsel"),
        Some(_) => root().join("target").join(arch.triple).join("debug/srcsel"),
    };
    let out = root().join("target/dist/test");
    let _ = fs::remove_dir_all(&out);
    let generated = out.join("generated");
    // Man pages and completions are the same for every architecture; the
    // arm64 binary makes its own under qemu-user.
    let mut generate = match arch.linker {
        None => Command::new(&binary),
        Some(_) => under_qemu_user(&binary),
    };
    run(generate.arg("generate").arg(&generated))?;
    deb::build(arch, &binary, &generated, &out, deb::FAST)
}

/// `cargo build --release -p srcsel` for `arch`, stripped: the binary and the
/// eBPF object its build script made.
fn build(arch: &Arch) -> anyhow::Result<(PathBuf, PathBuf)> {
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--release",
        "-p",
        "srcsel",
        "--target",
        arch.triple,
    ])
    .arg("--message-format=json-render-diagnostics")
    .env("CARGO_PROFILE_RELEASE_STRIP", "true")
    .env_remove("AYA_BUILD_SKIP")
    .stderr(Stdio::inherit());
    arch.env(&mut cmd);
    let o = cmd.output().context("starting cargo build")?;
    if !o.status.success() {
        bail!("cargo build for {} failed: {}", arch.triple, o.status);
    }
    let messages = crate::cargo_messages(&o.stdout);
    let object = crate::ebpf_object(&messages)?;
    let binary = messages
        .iter()
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "srcsel")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo reported no srcsel executable")?;
    Ok((binary, object))
}

/// The arm64 binary answers --version and --help under qemu-user.
fn exercise_arm64(binary: &Path) -> anyhow::Result<()> {
    for arg in ["--version", "--help"] {
        let o = under_qemu_user(binary)
            .arg(arg)
            .output()
            .context("starting qemu-aarch64-static")?;
        let text = String::from_utf8_lossy(&o.stdout);
        if !o.status.success() || !text.contains("srcsel") {
            bail!(
                "the arm64 srcsel {arg} under qemu-user: {}\n{text}",
                o.status
            );
        }
    }
    println!("dist: the arm64 binary answers --version and --help under qemu-user");
    Ok(())
}

/// The arm64 `binary` run by qemu-user, with the cross libc.
fn under_qemu_user(binary: &Path) -> Command {
    let mut c = Command::new("qemu-aarch64-static");
    c.env("QEMU_LD_PREFIX", "/usr/aarch64-linux-gnu")
        .arg(binary);
    c
}

/// `cargo test -p srcsel` (unit tests) for arm64, run under qemu-user.
pub fn test_arm64() -> anyhow::Result<()> {
    setup::cross()?;
    let mut cmd = cargo();
    cmd.args(["test", "-p", "srcsel", "--bins", "--target", ARM64.triple]);
    ARM64.env(&mut cmd);
    run(&mut cmd)
}
