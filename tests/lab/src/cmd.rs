//! Running one command and judging it: the helpers every suite and the lab
//! itself use, so a failure always reads the same (command, status, stderr).
use std::process::{Command, Output, Stdio};

/// Runs `cmd` to completion with stdin from /dev/null, whatever its status.
pub fn out(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// Runs `cmd`, asserts it succeeded (its stderr in the message), returns its output.
pub fn sh(cmd: &mut Command) -> Output {
    let o = out(cmd);
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}): {}",
        o.status,
        stderr(&o)
    );
    o
}

/// Runs `cmd`, asserts it succeeded, returns its stdout.
pub fn ok(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&sh(cmd).stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `path` as one word of a shell line, whatever it holds (a checkout under
/// `/home/a b/` puts spaces in every path the suites build).
pub fn quoted(path: impl AsRef<std::ffi::OsStr>) -> String {
    let s = path.as_ref().to_string_lossy();
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `ip ARGS`, split on whitespace; panics if it fails.
pub fn ip(args: &str) {
    sh(Command::new("ip").args(args.split_whitespace()));
}
