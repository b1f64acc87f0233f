//! What the benchmark needs from the operating system: the file-descriptor limit, a server's
//! resident memory, wall-clock time.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (or `want`, the smaller), and
/// returns the limit in force afterwards.
///
/// # Errors
/// When the limit cannot be read or set.
pub fn raise_nofile(want: u64) -> anyhow::Result<u64> {
    let got = rlimit::increase_nofile_limit(want).context("raising RLIMIT_NOFILE")?;
    Ok(got)
}

/// Resident memory of process `pid` in bytes, from `/proc/<pid>/status` (`VmRSS`).
///
/// # Errors
/// When the process does not exist or the file has no `VmRSS` line.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .with_context(|| format!("no VmRSS line in {path}"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("unexpected VmRSS line in {path}: {line:?}"))?;
    Ok(kb * 1024)
}

/// Wall-clock time in Unix microseconds: what pushes carry in `data.t` and receivers subtract.
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
