//! Boots the image under qemu (TCG: there is no usable KVM) and runs one job in it.
use std::{
    collections::VecDeque,
    fs,
    io::{BufRead as _, BufReader, Read},
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{guest::Guest, image::Image, lock};

const TAIL: usize = 40;
/// The guest's script (image.rs) prints these on the console.
const JOB_START: &str = "srcsel-vm: job start";
const JOB_END: &str = "srcsel-vm: job end";

#[derive(Default)]
struct Console {
    tail: VecDeque<String>,
    job_start: Option<Instant>,
    job_end: Option<Instant>,
}

impl Console {
    fn push(&mut self, line: String) {
        if line.contains(JOB_START) {
            self.job_start = Some(Instant::now());
        } else if line.contains(JOB_END) {
            self.job_end = Some(Instant::now());
        }
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    fn tail(&self) -> String {
        self.tail.iter().map(|l| format!("  | {l}\n")).collect()
    }
}

/// Boots `image` with the workspace `ws` shared at the same path, runs `script`
/// there as target/vm/job.sh, and is Ok only if the job exited 0.
pub fn run_job(
    guest: &Guest,
    image: &Image,
    ws: &Path,
    script: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    for (what, path) in [
        ("kernel", &image.kernel),
        ("initrd", &image.initrd),
        ("disk image", &image.disk),
    ] {
        if !path.is_file() {
            bail!(
                "the VM cannot start: its {what} {} is missing; remove {} so the next run rebuilds it",
                path.display(),
                path.parent().unwrap_or(path).display()
            );
        }
    }
    let ws_str = ws.to_str().context("the workspace path is not UTF-8")?;
    let dir = ws.join("target/vm");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // job.sh and status have fixed names: one VM per workspace at a time.
    let _lock = lock(&dir.join("lock"), "another VM job runs for this workspace")?;
    for stale in ["status", "status.tmp", "job.log"] {
        let _ = fs::remove_file(dir.join(stale));
    }
    let _ = fs::remove_dir_all(dir.join("guest"));
    // The job should see what a root shell sees, not the variables systemd gives
    // the service that runs it (a daemon the tests start would inherit them).
    let job = format!("unset INVOCATION_ID JOURNAL_STREAM SYSTEMD_EXEC_PID\n{script}");
    fs::write(dir.join("job.sh"), job).context("writing target/vm/job.sh")?;

    let append = format!(
        "root=/dev/vda rw console={} panic=-1 quiet systemd.show_status=0 srcsel.ws={}",
        guest.console,
        cmdline_word(ws_str)
    );
    let qemu = guest.qemu;
    let mut cmd = Command::new(qemu);
    cmd.args(guest.machine)
        .args(["-smp", "2"])
        .args(["-m", "2048", "-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.initrd)
        .args(["-append", &append])
        // snapshot=on: writes go to a throwaway overlay, every boot starts clean.
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=virtio,snapshot=on",
            image.disk.display()
        ))
        .arg("-virtfs")
        .arg(format!(
            // qemu's option lists escape a comma by doubling it.
            "local,path={},mount_tag=ws,security_model=none,id=ws",
            ws_str.replace(',', ",,")
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "the VM cannot start: {qemu} is not installed (cargo xtask vm installs it from bookworm-backports)"
            )
        }
        Err(e) => return Err(e).context(format!("the VM cannot start: running {qemu}")),
    };
    println!("vm: booting ({qemu}, TCG, timeout {}s)", timeout.as_secs());
    let console = Arc::new(Mutex::new(Console::default()));
    let readers = [
        reader(child.stdout.take().expect("piped"), console.clone(), false),
        reader(child.stderr.take().expect("piped"), console.clone(), true),
    ];
    let exit = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(200));
    };
    for r in readers {
        let _ = r.join();
    }
    let total = started.elapsed();
    let console = console.lock().expect("console");
    let secs = |d: Duration| format!("{:.1}s", d.as_secs_f64());
    match (console.job_start, console.job_end) {
        (Some(s), Some(e)) => println!(
            "vm: boot to job start {}, job {}, total {}",
            secs(s - started),
            secs(e - s),
            secs(total)
        ),
        (Some(s), None) => println!(
            "vm: boot to job start {}, total {} (no job end seen)",
            secs(s - started),
            secs(total)
        ),
        _ => println!("vm: total {} (the job never started)", secs(total)),
    }
    let Some(exit) = exit else {
        bail!(
            "the VM timed out after {}s and was killed ({}); last console lines:\n{}\
             give it longer with --timeout",
            timeout.as_secs(),
            if console.job_start.is_some() {
                "the job was still running; its output so far is in target/vm/job.log"
            } else {
                "it had not finished booting; boot takes 20-40s under TCG"
            },
            console.tail()
        );
    };
    let status = match fs::read_to_string(dir.join("status")) {
        Ok(s) => s,
        Err(_) => bail!(
            "the VM exited ({exit}) without writing target/vm/status: {}; last console lines:\n{}",
            if console.job_start.is_some() {
                "the job started but the guest went down before it ended (a crash, \
                 or something in the job powered it off)"
            } else {
                "the guest never got to the job (a boot failure or the 9p share did not mount)"
            },
            console.tail()
        ),
    };
    match status.trim() {
        "0" => Ok(()),
        s => bail!(
            "the job failed in the VM with status {s}; its output is in {}, the guest's /tmp \
             and journal in {}",
            dir.join("job.log").display(),
            dir.join("guest").display()
        ),
    }
}

/// `path` as one word of the kernel command line: bytes other than
/// `[A-Za-z0-9/._-]` as `%XX`, which the guest's job script decodes (a
/// checkout may live under `/home/a b/`).
fn cmdline_word(path: &str) -> String {
    path.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'_' | b'-' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Streams one of qemu's outputs line by line to ours, keeping the tail.
fn reader(
    from: impl Read + Send + 'static,
    console: Arc<Mutex<Console>>,
    stderr: bool,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut from = BufReader::new(from);
        let mut buf = Vec::new();
        while from.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            // The serial line turns \n into \r\n.
            let text = plain(String::from_utf8_lossy(&buf).trim_end_matches(['\r', '\n']));
            buf.clear();
            for line in text.split('\n') {
                if stderr {
                    eprintln!("qemu: {line}");
                } else {
                    println!("{line}");
                }
                console.lock().expect("console").push(line.to_owned());
            }
        }
    })
}

/// `line` without the terminal escapes SeaBIOS and the kernel send (screen
/// clears), which would otherwise reach our terminal or the error tail; a
/// terminal reset (`ESC c`, after SeaBIOS's unterminated last line) starts a new line.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // A CSI sequence ends at its first byte in @..~.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                Some('c') if !out.is_empty() => out.push('\n'),
                _ => {}
            },
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn workspace_paths_survive_the_kernel_command_line() {
        assert_eq!(super::cmdline_word("/work/main"), "/work/main");
        assert_eq!(
            super::cmdline_word("/home/a b/src,1%"),
            "/home/a%20b/src%2C1%25"
        );
    }
}
