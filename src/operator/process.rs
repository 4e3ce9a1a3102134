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

/// Two settings of glibc's allocator, made before the runtime starts any thread. Each
/// is left alone if the environment sets it (glibc has read it already, and it wins).
///
/// One arena. glibc gives threads heaps of their own ("arenas"), up to eight per core,
/// and memory freed into an arena mostly stays in the process. rigtap's file work runs
/// on tokio's blocking threads, each with its arena: a parquet sink writing 20,000
/// partitions (90 s, budget 256 MiB) peaked at 868 MiB with the default, 630 MiB with
/// two arenas and 398 MiB with one. Threads still keep small caches of their own
/// (glibc's tcache), so one arena costs the default profile no measurable CPU.
///
/// Blocks of 16 KiB and more mapped on their own. h2 gives each connection a 16 KiB
/// write buffer that a miner's small requests barely touch. Carved from the heap, its
/// pages become resident with its neighbours; mapped alone, only the pages written are.
/// At 10,000 miners RSS went from 428 to 389 MiB (README, "What a miner costs"). Every
/// bigger block (a batch, a parquet page) then costs a map and an unmap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_malloc() {
    const ARENAS: libc::c_int = 1;
    const MMAP_THRESHOLD: libc::c_int = 16 * 1024;
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    let set =
        |name: &str, tunable: &str| std::env::var_os(name).is_some() || tunables.contains(tunable);
    // SAFETY: mallopt only sets a parameter of glibc's allocator; called first thing
    // in main, with no other thread running yet.
    unsafe {
        if !set("MALLOC_ARENA_MAX", "arena_max") {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
        if !set("MALLOC_MMAP_THRESHOLD_", "mmap_threshold") {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
    }
}

/// Other allocators size their caches themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_malloc() {}

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
