//! One architecture's package: the tree staged under target/dist/<arch>/,
//! then `dpkg-deb --build`. Where each file goes follows what Debian and the
//! programs it hooks into look at.
use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use super::Arch;
use crate::{root, run};

const EXEC: u32 = 0o755;
const FILE: u32 = 0o644;

/// What `srcsel generate` made (under its folder) and where it goes.
const GENERATED: &[(&str, &str)] = &[
    (
        "completions/srcsel.bash",
        "usr/share/bash-completion/completions/srcsel",
    ),
    (
        "completions/_srcsel",
        "usr/share/zsh/vendor-completions/_srcsel",
    ),
    (
        "completions/srcsel.fish",
        "usr/share/fish/vendor_completions.d/srcsel.fish",
    ),
    (
        "iproute2/rt_tables.d/srcsel.conf",
        "etc/iproute2/rt_tables.d/srcsel.conf",
    ),
    (
        "iproute2/rt_protos.d/srcsel.conf",
        "etc/iproute2/rt_protos.d/srcsel.conf",
    ),
];

/// Workspace files shipped as they are. dhcpcd and dhclient source their
/// hooks; NetworkManager runs its dispatcher scripts.
const AS_IS: &[(&str, &str, u32)] = &[
    (
        "contrib/deb/sysusers.conf",
        "usr/lib/sysusers.d/srcsel.conf",
        FILE,
    ),
    (
        "contrib/dhcpcd.exit-hook",
        "usr/lib/dhcpcd/dhcpcd-hooks/90-srcsel",
        FILE,
    ),
    (
        "contrib/dhclient-exit-hook",
        "etc/dhcp/dhclient-exit-hooks.d/srcsel",
        FILE,
    ),
    (
        "contrib/nm-dispatcher",
        "usr/lib/NetworkManager/dispatcher.d/90-srcsel",
        EXEC,
    ),
    ("README.md", "usr/share/doc/srcsel/README.md", FILE),
    (
        "contrib/deb/copyright",
        "usr/share/doc/srcsel/copyright",
        FILE,
    ),
    ("contrib/deb/postinst", "DEBIAN/postinst", EXEC),
    ("contrib/deb/prerm", "DEBIAN/prerm", EXEC),
    ("contrib/deb/postrm", "DEBIAN/postrm", EXEC),
];

/// How dpkg-deb compresses: xz for the packages `dist` makes; gzip -1 for
/// the VM suites' packages of a 160 MB debug binary, which xz takes a
/// minute or more to pack and the guest as long to unpack.
pub const RELEASE: &[&str] = &["-Zxz"];
pub const FAST: &[&str] = &["-Zgzip", "-z1"];

/// Stages and builds `srcsel_<version>_<arch>.deb` in `out`, compressed as `compression` says.
pub fn build(
    arch: &Arch,
    binary: &Path,
    generated: &Path,
    out: &Path,
    compression: &[&str],
) -> anyhow::Result<PathBuf> {
    let stage = out.join(arch.deb);
    let _ = fs::remove_dir_all(&stage);
    let contrib = root().join("contrib");
    let put = |dest: &str, text: &[u8], mode: u32| install(&stage.join(dest), text, mode);
    let read = |p: &Path| fs::read(p).with_context(|| format!("reading {}", p.display()));

    put("usr/bin/srcsel", &read(binary)?, EXEC)?;
    for page in fs::read_dir(generated.join("man"))? {
        let page = page?.path();
        let name = page.file_name().unwrap().to_string_lossy().into_owned();
        put(
            &format!("usr/share/man/man1/{name}.gz"),
            &gzip(&page)?,
            FILE,
        )?;
    }
    for (from, to) in GENERATED {
        put(to, &read(&generated.join(from))?, FILE)?;
    }
    for (from, to, mode) in AS_IS {
        put(to, &read(&root().join(from))?, *mode)?;
    }
    let config = String::from_utf8(read(&contrib.join("srcsel.toml"))?)?;
    put(
        "etc/srcsel/srcsel.toml",
        commented(&config).as_bytes(),
        FILE,
    )?;
    let unit = String::from_utf8(read(&contrib.join("srcsel.service"))?)?;
    put(
        "usr/lib/systemd/system/srcsel.service",
        unit.replace("/usr/local/bin/srcsel", "/usr/bin/srcsel")
            .as_bytes(),
        FILE,
    )?;
    let conffiles: Vec<String> = files_under(&stage.join("etc"))?
        .iter()
        .map(|p| format!("/{}\n", p.strip_prefix(&stage).unwrap().display()))
        .collect();
    put("DEBIAN/conffiles", conffiles.concat().as_bytes(), FILE)?;
    let control = String::from_utf8(read(&contrib.join("deb/control"))?)?
        .replace("@VERSION@", env!("CARGO_PKG_VERSION"))
        .replace("@ARCH@", arch.deb)
        .replace("@SIZE@", &installed_kib(&stage)?.to_string())
        .replace(
            "@DEPENDS@",
            &format!("libc6 (>= {})", glibc_needed(&read(binary)?)),
        );
    put("DEBIAN/control", control.as_bytes(), FILE)?;

    let deb = out.join(format!(
        "srcsel_{}_{}.deb",
        env!("CARGO_PKG_VERSION"),
        arch.deb
    ));
    run(Command::new("dpkg-deb")
        .arg("--root-owner-group")
        .args(compression)
        .arg("--build")
        .arg(&stage)
        .arg(&deb))?;
    Ok(deb)
}

fn install(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path.parent().unwrap();
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// The example config with every setting commented out: an installed
/// srcsel manages nothing until the admin says so.
fn commented(config: &str) -> String {
    config
        .lines()
        .map(|l| {
            if l.is_empty() || l.starts_with('#') {
                format!("{l}\n")
            } else {
                format!("# {l}\n")
            }
        })
        .collect()
}

/// `gzip -9n`: no name or time stamp, so a rebuild gives the same bytes.
fn gzip(path: &Path) -> anyhow::Result<Vec<u8>> {
    let o = Command::new("gzip")
        .args(["-9n", "-c"])
        .arg(path)
        .output()
        .context("starting gzip")?;
    anyhow::ensure!(o.status.success(), "gzip {}: {}", path.display(), o.status);
    Ok(o.stdout)
}

fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut all = Vec::new();
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            all.extend(files_under(&p)?);
        } else {
            all.push(p);
        }
    }
    all.sort();
    Ok(all)
}

/// The installed size in KiB (`Installed-Size`), the DEBIAN folder left out.
fn installed_kib(stage: &Path) -> anyhow::Result<u64> {
    let mut bytes = 0;
    for top in fs::read_dir(stage)? {
        let top = top?.path();
        if top.file_name().is_some_and(|n| n != "DEBIAN") {
            for f in files_under(&top)? {
                bytes += fs::metadata(&f)?.len();
            }
        }
    }
    Ok(bytes.div_ceil(1024))
}

/// The newest `GLIBC_2.N` symbol version the binary refers to.
fn glibc_needed(binary: &[u8]) -> String {
    let tag = b"GLIBC_2.";
    let newest = binary
        .windows(tag.len())
        .enumerate()
        .filter(|(_, w)| *w == tag)
        .filter_map(|(i, _)| {
            let rest = &binary[i + tag.len()..];
            let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            std::str::from_utf8(&rest[..n]).ok()?.parse::<u32>().ok()
        })
        .max()
        .unwrap_or(17);
    format!("2.{newest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packaged_config_sets_nothing() {
        let text = commented("# head\n[[uplink]]\nname = \"usb0\"   # hotspot\n\n# x = 1\n");
        assert_eq!(
            text,
            "# head\n# [[uplink]]\n# name = \"usb0\"   # hotspot\n\n# x = 1\n"
        );
        assert!(toml_is_empty(&text));
    }

    fn toml_is_empty(text: &str) -> bool {
        text.lines().all(|l| l.is_empty() || l.starts_with('#'))
    }

    #[test]
    fn glibc_is_the_newest_version_named() {
        let bin = b"\0GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_2.17\0GLIBC_PRIVATE\0";
        assert_eq!(glibc_needed(bin), "2.34");
    }
}
