//! This process's resident memory and CPU time, from /proc (Linux).

/// Clock ticks per second in /proc/self/stat: USER_HZ, 100 on every Linux target.
const USER_HZ: f64 = 100.0;

pub(crate) struct Process {
    pub(crate) rss_bytes: u64,
    pub(crate) cpu_seconds: f64,
}

impl Process {
    /// Zero for what /proc does not say.
    pub(crate) fn read() -> Process {
        Process {
            rss_bytes: rss_kib("self").unwrap_or(0) * 1024,
            cpu_seconds: cpu_seconds("self").unwrap_or(0.0),
        }
    }
}

/// The CPU time (user + system) process `pid` (a number, or `self`) has used, in
/// seconds: /proc/PID/stat.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): utime is the 14th field
    // of the line, stime the 15th.
    let rest = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .collect::<Vec<_>>();
    let ticks = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / USER_HZ)
}

/// The resident memory of process `pid` (a number, or `self`), in KiB: `VmRSS` of
/// /proc/PID/status.
pub fn rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let process = Process::read();
        assert!(process.rss_bytes > 1 << 20, "{}", process.rss_bytes);
        assert_eq!(rss_kib("0"), None, "no such process");
    }
}
