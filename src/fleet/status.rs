//! A miner's state as the collector sees it, and what changes of it produce: a
//! `kind: status` sample every time (consumers see gaps as facts), and a log line that
//! says what to check, rate-limited per miner and fleet-wide so a site-wide outage is a
//! handful of lines, not ten thousand.

use std::num::NonZeroU32;
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
}

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
        if from == Some(to) && was == Some(code) {
            return None;
        }
        stats.transition(from, to);
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
        let mut sample = Sample::new(SampleKind::Status, target.id.clone(), target.labels.clone());
        sample.state = Some(to);
        sample.code = Some(code);
        sample.message = Some(message.to_string());
        Some(sample)
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
