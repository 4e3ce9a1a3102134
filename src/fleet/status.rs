//! A miner's state as the collector sees it, and what changes of it produce: a
//! `kind: status` sample every time (consumers see gaps as facts), and a log line that
//! says what to check, rate-limited per miner and fleet-wide so a site-wide outage is a
//! handful of lines, not ten thousand.

use std::num::NonZeroU32;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::stats::PoolStats;
use super::targets::Target;
use crate::toolkit::log_budget::LogBudget;
use crate::toolkit::sample::{MinerState, Sample, SampleKind, StatusCode};

/// A miner logs the same state again only after this long (a flapping miner).
const REPEAT_AFTER: Duration = Duration::from_secs(300);

/// Fleet-wide budget of state-change lines: 10 a second, bursts of 50.
pub(crate) struct StatusLog(LogBudget);

impl Default for StatusLog {
    fn default() -> Self {
        StatusLog(LogBudget::new(
            NonZeroU32::new(10).expect("10 > 0"),
            NonZeroU32::new(50).expect("50 > 0"),
        ))
    }
}

impl StatusLog {
    /// Lines not written since the start, because of the fleet-wide budget.
    pub(crate) fn suppressed(&self) -> u64 {
        self.0.suppressed()
    }
}

/// One miner's current state and when each state was last logged.
#[derive(Default)]
pub(crate) struct MinerStatus {
    state: Option<MinerState>,
    code: Option<StatusCode>,
    logged: [Option<Instant>; MinerState::COUNT],
    /// The last status sample's time, in ms: each is stamped later than the one
    /// before, so no two share a sample id (miner, time, kind) that consumers
    /// deduplicate on.
    last_ms: i64,
    /// When the current window of [`SAMPLES_PER_WINDOW`] began, and how many status
    /// samples it has had.
    window: Option<Instant>,
    in_window: u8,
    /// A change was past the window's share (its message): the next call reports the
    /// state then, or the miner's last samples do.
    unreported: Option<Box<str>>,
}

/// A miner's status samples, at most: a miner whose stream flapped between normal and
/// paused made 91,212 of them in 15 s. What a window has no room for is reported by
/// the next call after it (the next poll, at the latest), from the state then.
const SAMPLES_PER_WINDOW: u8 = 10;
const WINDOW: Duration = Duration::from_secs(10);

impl MinerStatus {
    pub(crate) fn state(&self) -> Option<MinerState> {
        self.state
    }

    /// Moves to state `to` for `code` (`message` says why, and what to check), and
    /// counts the move in `stats`; returns the status sample to emit, or `None` if
    /// neither changed. A new code in the same state (offline: `breaker_open`, then
    /// `unreachable`) is a sample, not a log line.
    pub(crate) fn change(
        &mut self,
        (to, code, message): (MinerState, StatusCode, &str),
        target: &Target,
        log: &StatusLog,
        stats: &PoolStats,
    ) -> Option<Sample> {
        let from = self.state.replace(to);
        let was = self.code.replace(code);
        let changed = from != Some(to) || was != Some(code);
        if !changed && self.unreported.is_none() {
            return None;
        }
        if changed {
            stats.transition(from, to);
            self.log(from, (to, message), target, log);
        }
        if self.window.is_none_or(|at| at.elapsed() >= WINDOW) {
            (self.window, self.in_window) = (Some(Instant::now()), 0);
        }
        if self.in_window >= SAMPLES_PER_WINDOW {
            self.unreported = Some(message.into());
            if changed {
                stats.status_samples_held.fetch_add(1, Relaxed);
            }
            return None;
        }
        self.in_window += 1;
        self.unreported = None;
        Some(self.sample(to, code, message, target))
    }

    /// Logs a change of state (or of code alone: the state's line was written).
    fn log(
        &mut self,
        from: Option<MinerState>,
        (to, message): (MinerState, &str),
        target: &Target,
        log: &StatusLog,
    ) {
        let last = &mut self.logged[to.index()];
        // Start-up (connecting, then online) is logged at debug level and costs no
        // budget; the budget is for lines an operator sees.
        let quiet = matches!(to, MinerState::Connecting)
            || (to == MinerState::Online && from.is_none_or(|f| f == MinerState::Connecting));
        if from == Some(to) {
            // Only the code changed: the state's line was written.
        } else if quiet {
            write(from, to, message, target, 0);
        } else if last.is_none_or(|at| at.elapsed() >= REPEAT_AFTER) && log.0.allow() {
            *last = Some(Instant::now());
            write(from, to, message, target, log.suppressed());
        }
    }

    /// The state a full window held back, as a sample, whatever the window: for the
    /// miner's last samples (at the stop, or its removal).
    pub(crate) fn held_back(&mut self, target: &Target) -> Option<Sample> {
        let message = self.unreported.take()?;
        let (to, code) = (self.state?, self.code?);
        Some(self.sample(to, code, &message, target))
    }

    fn sample(
        &mut self,
        to: MinerState,
        code: StatusCode,
        message: &str,
        target: &Target,
    ) -> Sample {
        let mut sample = Sample::new(SampleKind::Status, target.id.clone(), target.labels.clone());
        let ms = sample.timestamp.timestamp_millis();
        // Within a second: a step of the clock back starts afresh instead.
        if ms <= self.last_ms && self.last_ms - ms < 1000 {
            sample.timestamp += chrono::TimeDelta::milliseconds(self.last_ms + 1 - ms);
        }
        self.last_ms = sample.timestamp.timestamp_millis();
        sample.state = Some(to);
        sample.code = Some(code);
        sample.message = Some(message.to_string());
        sample
    }
}

fn write(
    from: Option<MinerState>,
    to: MinerState,
    message: &str,
    target: &Target,
    suppressed: u64,
) {
    let (miner, address, state) = (&*target.id, &target.address, to.as_str());
    let was = from.map_or("new", MinerState::as_str);
    match to {
        MinerState::Offline
        | MinerState::AuthFailed
        | MinerState::Unsupported
        | MinerState::Degraded => {
            tracing::warn!(
                miner,
                address,
                state,
                was,
                suppressed_so_far = suppressed,
                "{message}"
            )
        }
        MinerState::Online if from.is_some_and(|f| f != MinerState::Connecting) => {
            tracing::info!(miner, address, state, was, "{message}")
        }
        MinerState::Online | MinerState::Connecting => {
            tracing::debug!(miner, address, state, was, "{message}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::targets;

    fn target() -> Target {
        targets::fixture("m1")
    }

    #[test]
    fn only_changes_make_samples_and_are_counted() {
        let (log, stats) = (StatusLog::default(), PoolStats::default());
        let mut status = MinerStatus::default();
        let mut change =
            |to, code, message| status.change((to, code, message), &target(), &log, &stats);
        let sample = change(MinerState::Offline, StatusCode::Unreachable, "refused").unwrap();
        assert_eq!(sample.kind, SampleKind::Status);
        assert_eq!(sample.state, Some(MinerState::Offline));
        assert_eq!(sample.message.as_deref(), Some("refused"));
        assert_eq!(sample.code, Some(StatusCode::Unreachable));
        assert!(change(
            MinerState::Offline,
            StatusCode::Unreachable,
            "refused again"
        )
        .is_none());
        let same_state = change(MinerState::Offline, StatusCode::Timeout, "silent")
            .expect("a new code in the same state is a sample");
        assert_eq!(same_state.code, Some(StatusCode::Timeout));
        assert!(change(MinerState::Online, StatusCode::Ok, "back").is_some());
        assert_eq!(status.state(), Some(MinerState::Online));
        assert_eq!(
            (
                stats.in_state(MinerState::Online),
                stats.in_state(MinerState::Offline)
            ),
            (1, 0),
            "one miner, counted where it is"
        );
    }

    #[test]
    fn status_samples_of_a_miner_never_share_a_millisecond() {
        let (log, stats) = (StatusLog::default(), PoolStats::default());
        let mut status = MinerStatus::default();
        let states = [
            (MinerState::Online, StatusCode::Ok),
            (MinerState::Degraded, StatusCode::NotMining),
        ];
        let times: Vec<i64> = (0..usize::from(SAMPLES_PER_WINDOW))
            .map(|i| {
                let (to, code) = states[i % 2];
                let sample = status.change((to, code, "flap"), &target(), &log, &stats);
                sample.unwrap().timestamp.timestamp_millis()
            })
            .collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    }

    #[test]
    fn a_flapping_miner_makes_ten_status_samples_a_window_and_its_last_state_follows() {
        let (log, stats) = (StatusLog::default(), PoolStats::default());
        let mut status = MinerStatus::default();
        let mut flap = |i: usize| {
            let (to, code) = match i % 2 {
                0 => (MinerState::Online, StatusCode::Ok),
                _ => (MinerState::Degraded, StatusCode::NotMining),
            };
            status.change((to, code, "flap"), &target(), &log, &stats)
        };
        let made = (0..1000).filter_map(&mut flap).count();
        assert_eq!(made, usize::from(SAMPLES_PER_WINDOW));
        assert_eq!(stats.status_samples_held.load(Relaxed), 990);
        // The flapping stops at degraded (i = 999); a poll finds it so again.
        let later = status.change(
            (MinerState::Degraded, StatusCode::NotMining, "not mining"),
            &target(),
            &log,
            &stats,
        );
        assert!(later.is_none(), "the window is still full");
        status.window = Some(Instant::now() - WINDOW);
        let reported = status
            .change(
                (MinerState::Degraded, StatusCode::NotMining, "not mining"),
                &target(),
                &log,
                &stats,
            )
            .expect("the state the flapping left is reported");
        assert_eq!(reported.state, Some(MinerState::Degraded));
        assert!(status
            .change(
                (MinerState::Degraded, StatusCode::NotMining, "not mining"),
                &target(),
                &log,
                &stats
            )
            .is_none());
    }

    #[test]
    fn a_held_back_state_is_the_miners_last_sample_at_the_stop() {
        let (log, stats) = (StatusLog::default(), PoolStats::default());
        let mut status = MinerStatus::default();
        assert!(status.held_back(&target()).is_none(), "nothing held back");
        for i in 0..=usize::from(SAMPLES_PER_WINDOW) {
            let (to, code) = match i % 2 {
                0 => (MinerState::Online, StatusCode::Ok),
                _ => (MinerState::Offline, StatusCode::Unreachable),
            };
            status.change((to, code, "flap"), &target(), &log, &stats);
        }
        assert_eq!(stats.status_samples_held.load(Relaxed), 1);
        let last = status
            .held_back(&target())
            .expect("the state the window held back");
        assert_eq!(last.state, Some(MinerState::Online));
        assert_eq!(last.message.as_deref(), Some("flap"));
        assert!(status.held_back(&target()).is_none());
    }

    #[test]
    fn a_fleet_wide_flood_is_cut_to_the_budget() {
        let (log, stats) = (StatusLog::default(), PoolStats::default());
        for i in 0..1000 {
            let mut status = MinerStatus::default();
            let t = targets::fixture(&format!("m{i}"));
            let change = (MinerState::Offline, StatusCode::Unreachable, "down");
            assert!(
                status.change(change, &t, &log, &stats).is_some(),
                "every change is a sample"
            );
        }
        assert!(log.suppressed() >= 900, "suppressed {}", log.suppressed());
        assert_eq!(stats.in_state(MinerState::Offline), 1000);
    }
}
