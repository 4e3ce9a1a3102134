//! Loopback ports and address blocks for the servers and fleets the tests start.
//!
//! Nothing is fixed: two test runs at once, or a test beside a running rigtap (whose
//! default fleet is on 127.1.0.1 and API on port 9598), must not collide. Ports come
//! from the kernel; fleets get a block of consecutive addresses picked at random in
//! 127.64.0.0/10 (16,000 blocks of 256), checked free on the port the fleet will use.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The port simulated miners listen on, as real ones do.
pub const MINER_PORT: u16 = 50051;

/// A loopback port free right now (for a server the test starts next).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The first of `miners` consecutive loopback addresses that are free on
/// [`MINER_PORT`] right now: where a simulated fleet of that size can listen.
pub fn free_block(miners: usize) -> SocketAddrV4 {
    // Tests of one binary run at once: a per-process count keeps two that ask at the
    // same instant from drawing the same block (and both finding it free).
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()) << 32
        ^ DRAWS
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for _ in 0..100 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let block = (seed >> 33) as u32 % (1 << 14);
        let first = u32::from(Ipv4Addr::new(127, 64, 0, 1)) + (block << 8);
        // Every block drawn here starts 256 × k past 127.64.0.1, so one that overlaps
        // this block holds one of its addresses 256 × j past `first`: past the first
        // 256, those are enough, and a fleet of 5,000 (the load harness's) is checked
        // with 276 listeners, well under the open-file limit.
        let addresses = (0..miners as u32)
            .filter(|i| *i < 256 || i % 256 == 0)
            .map(|i| Ipv4Addr::from(first + i));
        // Held together, so the check sees the whole block at once.
        let held: Result<Vec<TcpListener>, _> = addresses
            .map(|ip| TcpListener::bind((ip, MINER_PORT)))
            .collect();
        if held.is_ok() {
            return SocketAddrV4::new(Ipv4Addr::from(first), MINER_PORT);
        }
    }
    panic!("no free block of {miners} loopback addresses found in 100 tries");
}

/// The address of miner `index` of a fleet starting at `first`.
pub fn miner_address(first: SocketAddrV4, index: usize) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from(*first.ip()) + index as u32),
        first.port(),
    )
}
