//! `srcsel generate DIR` (hidden): the files a package ships that derive from
//! srcsel's own definitions, so they never drift from them: man pages and
//! shell completions from the clap types, iproute2's names for srcsel's
//! tables and protocol from the slot policy. `cargo xtask dist` runs it.
use std::{fmt::Write as _, fs, path::Path};

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;
use srcsel_common::MAX_UPLINKS;

use super::Cli;
use crate::policy::slot::{PROTO, table_for};

/// Writes `DIR/man/srcsel.1` and a page per subcommand (`srcsel-run.1`, …),
/// `DIR/completions/{srcsel.bash,_srcsel,srcsel.fish}`, and
/// `DIR/iproute2/{rt_tables.d,rt_protos.d}/srcsel.conf`.
pub fn generate(dir: &Path) -> anyhow::Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    let tables = dir.join("iproute2/rt_tables.d");
    let protos = dir.join("iproute2/rt_protos.d");
    for d in [&man, &completions, &tables, &protos] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    // No pages for `srcsel help …`: they would repeat the others.
    let pages = Cli::command().disable_help_subcommand(true);
    clap_mangen::generate_to(pages, &man)
        .with_context(|| format!("writing man pages in {}", man.display()))?;
    let mut cmd = Cli::command();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "srcsel", &completions)
            .with_context(|| format!("writing {shell} completions in {}", completions.display()))?;
    }
    let write = |path: &Path, text: String| {
        fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    };
    write(&tables.join("srcsel.conf"), rt_tables())?;
    write(&protos.join("srcsel.conf"), rt_protos())
}

/// A name per slot's default table, so `ip rule` reads `lookup srcsel-1`.
/// Slots are claimed at run time: the name says the slot, `srcsel status`
/// which uplink holds it. A table set in the config keeps its number.
fn rt_tables() -> String {
    let mut s =
        String::from("# srcsel's routing tables, one per uplink slot (see `srcsel status`).\n");
    for id in 1..MAX_UPLINKS {
        let _ = writeln!(s, "{:#x}\tsrcsel-{id}", table_for(id));
    }
    s
}

fn rt_protos() -> String {
    format!("# The protocol srcsel's rules and routes carry.\n{PROTO}\tsrcsel\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iproute2_names_cover_every_slot_and_the_protocol() {
        let t = rt_tables();
        assert!(t.contains("0x5301\tsrcsel-1\n"), "{t}");
        assert!(t.ends_with(&format!("{:#x}\tsrcsel-63\n", table_for(63))));
        assert_eq!(t.lines().filter(|l| !l.starts_with('#')).count(), 63);
        assert!(rt_protos().contains("\n201\tsrcsel\n"));
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
