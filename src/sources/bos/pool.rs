//! The cap on open connections (`max_connections`), with least-recently-used eviction
//! of idle poll-only connections.
//!
//! Every open channel holds one permit. A streaming miner keeps its channel (and
//! permit) for its whole session. A poll-only miner parks its channel here between
//! polls; when a miner needs a permit and none is free, the channel parked longest ago
//! is closed and its permit reused. Parked channels idle past `idle_timeout` are closed
//! by [`ConnectionPool::close_idle`]. Each connection is opened with its life (80 to
//! 100% of `connection_ttl`, drawn by the miner) and retires after it, whichever path
//! uses it, so a fleet that connected together does not reconnect together.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant as TokioInstant;

use super::channel::MinerChannel;
use crate::fleet::stats::PoolStats;

/// An open channel to one miner and its place under the cap.
pub(crate) struct Connection {
    pub channel: MinerChannel,
    /// When it is recycled: a poll-only miner reconnects at its first poll after,
    /// a streaming miner's session ends there.
    pub(crate) retire_at: TokioInstant,
    /// Whether it has served calls: the first client on it is a new channel's.
    pub(crate) served: std::sync::atomic::AtomicBool,
    _permit: OwnedSemaphorePermit,
    stats: Arc<PoolStats>,
}

impl Connection {
    /// Past its life: not to be used for another poll.
    pub(crate) fn retired(&self) -> bool {
        TokioInstant::now() >= self.retire_at
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.stats.connections_open.fetch_sub(1, Relaxed);
    }
}

pub(crate) struct ConnectionPool {
    slots: Arc<Semaphore>,
    /// Parked poll-only connections by miner index, with when they were parked.
    parked: Mutex<HashMap<usize, (Connection, Instant)>>,
    /// Wakes a miner waiting for a slot when a connection is parked (and so evictable).
    was_parked: Notify,
    stats: Arc<PoolStats>,
}

/// A place under the cap, before the channel exists.
pub(crate) struct Slot(OwnedSemaphorePermit);

impl ConnectionPool {
    pub(crate) fn new(max_connections: usize, stats: Arc<PoolStats>) -> Self {
        ConnectionPool {
            slots: Arc::new(Semaphore::new(max_connections)),
            parked: Mutex::default(),
            was_parked: Notify::new(),
            stats,
        }
    }

    /// A free place under the cap, evicting the least recently used parked
    /// connection if there is none; waits when every place is in active use.
    pub(crate) async fn slot(&self) -> Slot {
        loop {
            if let Ok(permit) = self.slots.clone().try_acquire_owned() {
                return Slot(permit);
            }
            if self.evict_oldest() {
                continue;
            }
            tokio::select! {
                permit = self.slots.clone().acquire_owned() => {
                    return Slot(permit.expect("the pool's semaphore is never closed"));
                }
                // `notify_one` keeps a wake-up for a waiter that comes later, so a park
                // between the eviction attempt above and this wait is not missed.
                _ = self.was_parked.notified() => {}
            }
        }
    }

    /// Turns a slot and a new channel into a counted connection that serves for `life`.
    pub(crate) fn open(&self, slot: Slot, channel: MinerChannel, life: Duration) -> Connection {
        self.stats.connections_open.fetch_add(1, Relaxed);
        Connection {
            channel,
            retire_at: TokioInstant::now() + life,
            served: Default::default(),
            _permit: slot.0,
            stats: self.stats.clone(),
        }
    }

    /// Keeps a poll-only miner's connection for its next poll.
    pub(crate) fn park(&self, miner: usize, connection: Connection) {
        self.lock().insert(miner, (connection, Instant::now()));
        self.was_parked.notify_one();
    }

    /// The miner's parked connection, if it was not evicted or closed meanwhile.
    pub(crate) fn take(&self, miner: usize) -> Option<Connection> {
        self.lock().remove(&miner).map(|(connection, _)| connection)
    }

    /// Closes parked connections idle for longer than `idle_timeout`.
    pub(crate) fn close_idle(&self, idle_timeout: Duration) {
        self.lock()
            .retain(|_, (_, parked)| parked.elapsed() < idle_timeout);
    }

    /// Scans for the oldest parked connection: linear, but only when the cap is
    /// reached, and cheaper than keeping an ordered index on every park.
    fn evict_oldest(&self) -> bool {
        let mut parked = self.lock();
        let oldest = parked
            .iter()
            .min_by_key(|(_, (_, at))| *at)
            .map(|(miner, _)| *miner);
        oldest.and_then(|miner| parked.remove(&miner)).is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<usize, (Connection, Instant)>> {
        self.parked.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sources::bos::channel::unanswered as channel;

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn a_full_pool_evicts_the_least_recently_parked() {
        let stats = Arc::new(PoolStats::default());
        let pool = ConnectionPool::new(2, stats.clone());
        let a = pool.open(pool.slot().await, channel().await, HOUR);
        let b = pool.open(pool.slot().await, channel().await, HOUR);
        pool.park(0, a);
        tokio::time::sleep(Duration::from_millis(5)).await;
        pool.park(1, b);
        assert_eq!(stats.connections_open.load(Relaxed), 2);

        let c = pool.open(pool.slot().await, channel().await, HOUR);
        assert!(
            pool.take(0).is_none(),
            "miner 0 parked first and was evicted"
        );
        assert!(pool.take(1).is_some(), "miner 1 is still parked");
        drop(c);
        assert_eq!(stats.connections_open.load(Relaxed), 0);
    }

    #[tokio::test]
    async fn busy_connections_are_never_evicted() {
        let pool = ConnectionPool::new(1, Arc::default());
        let held = pool.open(pool.slot().await, channel().await, HOUR);
        let waiting = tokio::time::timeout(Duration::from_millis(50), pool.slot()).await;
        assert!(
            waiting.is_err(),
            "waits while the only connection is in use"
        );
        drop(held);
        tokio::time::timeout(Duration::from_secs(1), pool.slot())
            .await
            .expect("a slot once the connection closed");
    }

    #[tokio::test]
    async fn a_waiting_miner_takes_over_a_connection_parked_later() {
        let pool = Arc::new(ConnectionPool::new(1, Arc::default()));
        let held = pool.open(pool.slot().await, channel().await, HOUR);
        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move { pool.slot().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        pool.park(0, held);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("parking wakes the waiter, which evicts the parked connection")
            .unwrap();
        assert!(pool.take(0).is_none());
    }

    #[tokio::test]
    async fn a_connection_retires_after_the_life_it_was_opened_with() {
        let pool = ConnectionPool::new(2, Arc::default());
        let short = pool.open(
            pool.slot().await,
            channel().await,
            Duration::from_millis(20),
        );
        let long = pool.open(pool.slot().await, channel().await, HOUR);
        assert!(!short.retired() && !long.retired());
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(short.retired(), "past its 20 ms");
        assert!(!long.retired());
    }

    #[tokio::test]
    async fn idle_parked_connections_close() {
        let pool = ConnectionPool::new(1, Arc::default());
        let a = pool.open(pool.slot().await, channel().await, HOUR);
        pool.park(3, a);
        pool.close_idle(Duration::from_secs(60));
        assert!(pool.take(3).is_some());
        let a = pool.open(pool.slot().await, channel().await, HOUR);
        pool.park(3, a);
        tokio::time::sleep(Duration::from_millis(5)).await;
        pool.close_idle(Duration::from_millis(1));
        assert!(pool.take(3).is_none());
    }
}
