//! The kernel's own count of the time srcsel's programs run (BPF_ENABLE_STATS,
//! on only while its descriptor lives: a bench that dies leaves it off, unlike
//! the `kernel.bpf_stats_enabled` sysctl). Each run then pays two clock
//! reads, so the ratio rounds are measured without it.
use std::{
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use crate::mechanism::{bpf, obj_get};

const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_ENABLE_STATS: libc::c_long = 32;
/// `struct bpf_prog_info`: its size up to `run_cnt`, and where the two are.
const INFO_LEN: usize = 208;
const RUN_TIME_NS: usize = 192;
const RUN_CNT: usize = 200;

/// Run-time statistics, on while this lives.
pub struct Enabled(#[expect(dead_code, reason = "held for its lifetime")] OwnedFd);

pub fn enable() -> anyhow::Result<Enabled> {
    // BPF_STATS_RUN_TIME is 0.
    let mut attr = [0u64; 2];
    let fd = bpf(BPF_ENABLE_STATS, &mut attr).context("BPF_ENABLE_STATS")?;
    // SAFETY: a descriptor bpf(2) just made.
    Ok(Enabled(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// A program's total run time and run count so far.
#[derive(Clone, Copy, Default)]
pub struct Runs {
    pub ns: u64,
    pub count: u64,
}

impl std::ops::Sub for Runs {
    type Output = Runs;
    fn sub(self, before: Runs) -> Runs {
        Runs {
            ns: self.ns - before.ns,
            count: self.count - before.count,
        }
    }
}

fn of_pin(pin: &Path) -> anyhow::Result<Runs> {
    of(obj_get(pin)?.as_fd())
}

/// The program `prog`'s runs so far.
pub fn of(prog: BorrowedFd<'_>) -> anyhow::Result<Runs> {
    let mut info = [0u8; INFO_LEN];
    let mut attr = [0u64; 2];
    attr[0] = u64::from(prog.as_raw_fd() as u32) | (INFO_LEN as u64) << 32;
    attr[1] = info.as_mut_ptr() as u64;
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).context("BPF_OBJ_GET_INFO_BY_FD")?;
    let word = |at: usize| u64::from_ne_bytes(info[at..at + 8].try_into().expect("8 bytes"));
    Ok(Runs {
        ns: word(RUN_TIME_NS),
        count: word(RUN_CNT),
    })
}

/// The programs of one pinned program set, by name.
pub struct Set {
    dir: PathBuf,
    names: &'static [&'static str],
}

impl Set {
    pub fn new(dir: PathBuf, names: &'static [&'static str]) -> Self {
        Self { dir, names }
    }

    pub fn read(&self) -> anyhow::Result<Vec<Runs>> {
        self.names
            .iter()
            .map(|n| of_pin(&self.dir.join(n)))
            .collect()
    }

    /// Prints each program's runs and time per run between `before` and
    /// `after`, and their total per `unit` (a datagram, a connection).
    pub fn print(&self, before: &[Runs], after: &[Runs], units: u64, unit: &str) {
        let mut total = 0;
        for ((name, b), a) in self.names.iter().zip(before).zip(after) {
            let d = *a - *b;
            total += d.ns;
            line(name, d);
        }
        println!(
            "    together       {:>9.0} ns per {unit}",
            total as f64 / units as f64
        );
    }
}

/// A program's runs and time per run.
pub fn line(name: &str, d: Runs) {
    let per_run = d.ns.checked_div(d.count).unwrap_or(0);
    println!(
        "    {name:<14} {:>9} runs {:>6} ns per run",
        d.count, per_run
    );
}
