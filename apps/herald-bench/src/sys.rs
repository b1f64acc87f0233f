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

/// CPU time (user + system) process `pid` has used so far, in seconds, from
/// `/proc/<pid>/stat`; `None` when it cannot be read. Ticks are taken as 1/100 s, Linux's
/// `USER_HZ` on every common architecture.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Share of one core processes used between two [`cpu_seconds`] readings `secs` apart.
pub fn cpu_share(before: Option<f64>, after: Option<f64>, secs: f64) -> Option<f64> {
    let used = after? - before?;
    Some((used / secs.max(1e-9) * 1000.0).round() / 1000.0)
}
