//! Logging: to stderr, at warn unless `SRCSEL_LOG` says otherwise. When
//! stderr is the journal (systemd sets `JOURNAL_STREAM` to its device and
//! inode), each line starts with its syslog priority (`<3>` error … `<7>`
//! debug), which journald takes as the entry's priority, so `journalctl
//! -p warning` finds srcsel's warnings.
use std::{fmt, os::fd::AsFd as _};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::{
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
    registry::LookupSpan,
};

pub fn init() {
    let fmt = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false);
    // A filter from SRCSEL_LOG only when set: building one costs a run
    // a tenth of a millisecond.
    let filter = std::env::var_os("SRCSEL_LOG")
        .and_then(|_| tracing_subscriber::EnvFilter::try_from_env("SRCSEL_LOG").ok());
    match (filter, to_journal()) {
        (Some(f), true) => fmt.with_env_filter(f).event_format(Journal).init(),
        (Some(f), false) => fmt.with_env_filter(f).init(),
        (None, true) => fmt.with_max_level(Level::WARN).event_format(Journal).init(),
        (None, false) => fmt.with_max_level(Level::WARN).init(),
    }
}

/// srcsel's own failure, the last thing it says: an error in the journal.
pub fn fatal(e: &anyhow::Error) {
    let prefix = if to_journal() { "<3>" } else { "" };
    eprintln!("{prefix}srcsel: {e:#}");
}

/// Whether stderr is the stream systemd connected to the journal.
fn to_journal() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    stream.to_str() == Some(format!("{}:{}", meta.dev(), meta.ino()).as_str())
}

/// `<priority>message key=value…`, the priority on every line.
struct Journal;

impl<S, N> FormatEvent<S, N> for Journal
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut text = String::new();
        ctx.field_format()
            .format_fields(Writer::new(&mut text), event)?;
        // Every line: journald gives each its own entry and priority.
        let p = priority(*event.metadata().level());
        for line in text.lines() {
            writeln!(writer, "<{p}>{line}")?;
        }
        Ok(())
    }
}

/// syslog(3) priorities.
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}
