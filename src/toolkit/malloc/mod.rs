//! How this process's allocator is set up: glibc's malloc, tuned for thousands of
//! connections and for file work on many threads.

#[cfg(target_os = "linux")]
mod mapped;
#[cfg(target_os = "linux")]
pub use mapped::Allocator;

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
/// Blocks of 16 KiB and more mapped when the heap has no room for them. glibc maps a
/// block only then (else it carves it from the heap, whatever its size); by default
/// only from 128 KiB on, and higher after each such block is freed. A batch or a parquet
/// page that grows the heap leaves it grown, and resident, once freed; mapped, it goes
/// back to the kernel at once. At 10,000 miners RSS went from 428 to 388 MiB (README,
/// "What a miner costs"). Neighbouring maps merge: the collector had 142 in all at
/// 10,000 miners. Past glibc's limit on maps (`M_MMAP_MAX`, 65,536) malloc takes
/// blocks from the heap again. The blocks mapped always are [`Allocator`]'s.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune() {
    const ARENAS: libc::c_int = 1;
    const MMAP_THRESHOLD: libc::c_int = 16 * 1024;
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    let env_sets =
        |name: &str, tunable: &str| std::env::var_os(name).is_some() || tunables.contains(tunable);
    // SAFETY: mallopt only sets a parameter of glibc's allocator; called first thing
    // in main, with no other thread running yet (or by a test, in a process that runs
    // that test alone). mallopt is thread-safe in any case.
    unsafe {
        if !env_sets("MALLOC_ARENA_MAX", "arena_max") {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
        if !env_sets("MALLOC_MMAP_THRESHOLD_", "mmap_threshold") {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
    }
}

/// Other allocators size their caches themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}
