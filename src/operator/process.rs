//! This process's resident memory and CPU time, from /proc (Linux), and how its
//! allocator is set up.

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

/// glibc's allocator gives threads heaps of their own ("arenas"), up to eight per
/// core, and memory freed into an arena mostly stays in the process. rigtap's file work
/// runs on tokio's blocking threads, each with its arena: a parquet sink writing
/// 20,000 partitions (90 s, budget 256 MiB) peaked at 868 MiB with the default, 630 MiB
/// with two arenas and 398 MiB with one. Threads still keep small caches of their own
/// (glibc's tcache), so one arena costs the default profile no measurable CPU. rigtap
/// asks for one before its runtime starts any thread, unless `MALLOC_ARENA_MAX` is
/// set (glibc has read it already, and it wins).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn limit_malloc_arenas() {
    const ARENAS: libc::c_int = 1;
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a parameter of glibc's allocator; called first
        // thing in main, with no other thread running yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
    }
}

/// Other allocators size their caches themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_malloc_arenas() {}

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
