//! What `/proc` tells about another process: its resident memory and the CPU time it has used.

use anyhow::Context as _;

/// Clock ticks per second of `utime`/`stime` in `/proc/<pid>/stat`: Linux's `USER_HZ`, fixed at
/// 100 for user space on every architecture it supports.
const TICKS_PER_SECOND: u64 = 100;

/// The resident set size of process `pid`, in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_rss_kib(&status).with_context(|| format!("no VmRSS in {path}"))
}

fn parse_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().ok()
}

/// The CPU time process `pid` has used so far, user and system, in microseconds (at the
/// resolution of a clock tick, 10 ms).
pub fn cpu_us(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_cpu_ticks(&stat).with_context(|| format!("unexpected contents of {path}"))?;
    Ok(ticks * (1_000_000 / TICKS_PER_SECOND))
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (the state).
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// The system's load averages over 1, 5 and 15 minutes (`/proc/loadavg`), as written there.
pub fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    (fields.len() == 3).then(|| fields.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rss_and_cpu_ticks() {
        assert_eq!(parse_rss_kib("Name:\tx\nVmRSS:\t   12345 kB\nVmSwap:\t0 kB\n"), Some(12345));
        assert_eq!(parse_rss_kib("Name:\tx\n"), None);
        let stat = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 3 0 1000 1 1";
        assert_eq!(parse_cpu_ticks(stat), Some(12));
        assert_eq!(parse_cpu_ticks("42 (x"), None);
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        cpu_us(pid).unwrap();
    }
}
