//! What each miner owed and what arrived: every poll that comes due is expected; one
//! that brings samples is received; the rest are missed, each with why (the miner's
//! status code, or `skipped` for backpressure). Missed polls become `kind: gap`
//! samples, coalesced: one while a miner stays down for the same reason, cut at most
//! every [`GAP_WINDOW`] so a long outage still reports as it goes. Per source,
//! `expected = received + missed` (the counters in [`PoolStats`]).
//!
//! While a miner is down no poll comes due in its loop; the polls of that time are
//! counted when it is back (or at the next failure, or at the stop), one per
//! `interval` of it.
//!
//! A poll that comes due late pushes every later poll back: the lateness adds up, and
//! each whole interval of it is a poll missed ([`Completeness::late`]): `late` when the
//! poll before overran the interval (or the process was short of CPU), `skipped` when
//! the loop waited for room downstream.
//!
//! A status stream silent past its idle timeout is a gap of its own
//! ([`silent_stream`]): the window it said nothing in, with no `missed` polls, so a
//! query tells it from the polls' gaps.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};

use super::figures::sample_at;
use super::stats::PoolStats;
use super::targets::Target;
use crate::toolkit::sample::{Sample, SampleKind, StatusCode};

/// A gap is reported at least this often while it lasts.
pub(crate) const GAP_WINDOW: Duration = Duration::from_secs(3600);

/// Lateness up to this share of the interval is the timer's and the scheduler's, not
/// a poll overrunning, and is not counted.
const ON_TIME: f64 = 0.01;

const LATE: &str = "the poll was not made: the polls before it took longer than the interval (slow answers, calls held back by the `rate` governors, or a collector short of CPU)";

const HELD_BACK: &str = "the poll was not made: the pipeline was full (backpressure)";

/// Why a poll came due late.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Overdue {
    /// The poll before it took longer than the interval: counted `late`.
    Overrun,
    /// The miner's loop waited for room downstream: counted `skipped`.
    HeldBack,
}

/// The missed polls of one miner, since `from`, for one reason.
struct Gap {
    from: DateTime<Utc>,
    opened: Instant,
    code: StatusCode,
    message: String,
    missed: u32,
}

/// Since when, and why, the miner has been down (no poll comes due meanwhile).
struct Down {
    since: Instant,
    code: StatusCode,
    message: String,
}

pub(crate) struct Completeness {
    interval: Duration,
    /// [`GAP_WINDOW`], shorter in tests.
    window: Duration,
    gap: Option<Gap>,
    down: Option<Down>,
    /// Lateness not yet counted as a missed poll (less than an interval), by cause.
    late: Duration,
    held_back: Duration,
}

impl Completeness {
    pub(crate) fn new(interval: Duration) -> Self {
        Completeness {
            interval,
            window: GAP_WINDOW,
            gap: None,
            down: None,
            late: Duration::ZERO,
            held_back: Duration::ZERO,
        }
    }

    /// A due poll brought samples: the gap before it, if any, is reported.
    pub(crate) fn received(&mut self, target: &Target, stats: &PoolStats) -> Vec<Sample> {
        let mut out = self.back(target, stats);
        stats.polls_expected.fetch_add(1, Relaxed);
        stats.polls_received.fetch_add(1, Relaxed);
        out.extend(self.gap.take().map(|gap| gap_sample(gap, target)));
        out
    }

    /// A poll came due `by` after its time, for `why`. It adds up (an overrun beyond a
    /// hundredth of the interval, the timer's slack), and each whole interval of it is
    /// a poll the miner did not get. While the miner is down, its time is counted as
    /// the outage's instead.
    pub(crate) fn late(
        &mut self,
        by: Duration,
        why: Overdue,
        target: &Target,
        stats: &PoolStats,
    ) -> Vec<Sample> {
        if self.down.is_some() || self.interval.is_zero() {
            return Vec::new();
        }
        let (carried, slack) = match why {
            Overdue::Overrun => (&mut self.late, self.interval.mul_f64(ON_TIME)),
            Overdue::HeldBack => (&mut self.held_back, Duration::ZERO),
        };
        *carried += by.saturating_sub(slack);
        let polls = (carried.as_secs_f64() / self.interval.as_secs_f64()) as u32;
        if polls == 0 {
            return Vec::new();
        }
        *carried = carried.saturating_sub(self.interval * polls);
        stats.polls_expected.fetch_add(u64::from(polls), Relaxed);
        let (code, message, counter) = match why {
            Overdue::Overrun => (StatusCode::Late, LATE, &stats.polls_late),
            Overdue::HeldBack => (StatusCode::Skipped, HELD_BACK, &stats.polls_skipped),
        };
        counter.fetch_add(u64::from(polls), Relaxed);
        self.add(code, message, polls, target, stats)
            .into_iter()
            .collect()
    }

    /// A due poll brought nothing, for `code` (`message` says more).
    pub(crate) fn missed(
        &mut self,
        code: StatusCode,
        message: &str,
        target: &Target,
        stats: &PoolStats,
    ) -> Vec<Sample> {
        let mut out = self.back(target, stats);
        stats.polls_expected.fetch_add(1, Relaxed);
        out.extend(self.add(code, message, 1, target, stats));
        out
    }

    /// The miner went down (or stays down with a new reason): no poll comes due
    /// until it is back; the time counts as missed polls, for `code`.
    pub(crate) fn down(
        &mut self,
        code: StatusCode,
        message: &str,
        target: &Target,
        stats: &PoolStats,
    ) -> Vec<Sample> {
        // Still down for the same reason: one period, counted once it ends, or
        // reported each window while it lasts.
        let same = self.down.as_ref().filter(|d| d.code == code);
        if same.is_some_and(|d| d.since.elapsed() < self.window) {
            return Vec::new();
        }
        let window_over = same.is_some();
        // Lateness left over from before is not carried past an outage.
        (self.late, self.held_back) = (Duration::ZERO, Duration::ZERO);
        let mut out = self.back(target, stats);
        if window_over {
            out.extend(self.gap.take().map(|gap| gap_sample(gap, target)));
        }
        self.down = Some(Down {
            since: Instant::now(),
            code,
            message: message.to_string(),
        });
        out
    }

    /// At the stop: what is still owed, reported.
    pub(crate) fn close(&mut self, target: &Target, stats: &PoolStats) -> Vec<Sample> {
        let mut out = self.back(target, stats);
        out.extend(self.gap.take().map(|gap| gap_sample(gap, target)));
        out
    }

    /// Ends a down period: one missed poll per `interval` of it.
    fn back(&mut self, target: &Target, stats: &PoolStats) -> Vec<Sample> {
        let Some(down) = self.down.take() else {
            return Vec::new();
        };
        let polls = (down.since.elapsed().as_secs_f64() / self.interval.as_secs_f64()) as u32;
        if polls == 0 {
            return Vec::new();
        }
        stats.polls_expected.fetch_add(u64::from(polls), Relaxed);
        self.add(down.code, &down.message, polls, target, stats)
            .into_iter()
            .collect()
    }

    /// Adds `polls` missed for `code`; a gap for another reason, or older than the
    /// window, is reported first.
    fn add(
        &mut self,
        code: StatusCode,
        message: &str,
        polls: u32,
        target: &Target,
        stats: &PoolStats,
    ) -> Option<Sample> {
        stats.polls_missed.fetch_add(u64::from(polls), Relaxed);
        let ends = self
            .gap
            .as_ref()
            .is_some_and(|g| g.code != code || g.opened.elapsed() >= self.window);
        let reported = match ends {
            true => self.gap.take().map(|gap| gap_sample(gap, target)),
            false => None,
        };
        let gap = self.gap.get_or_insert_with(|| Gap {
            from: Utc::now().trunc_subsecs(3) - self.interval * polls,
            opened: Instant::now(),
            code,
            message: message.to_string(),
            missed: 0,
        });
        gap.missed = gap.missed.saturating_add(polls);
        reported
    }
}

/// The status stream said nothing from `from` until now (`code`, `message`: why it
/// was given up and reopened).
pub(crate) fn silent_stream(
    target: &Target,
    from: DateTime<Utc>,
    code: StatusCode,
    message: &str,
) -> Sample {
    let mut sample = sample_at(target, SampleKind::Gap, from);
    sample.gap_end = Some(Utc::now().trunc_subsecs(3));
    sample.code = Some(code);
    sample.message = Some(format!("status stream: {message}"));
    sample
}

fn gap_sample(gap: Gap, target: &Target) -> Sample {
    let mut sample = sample_at(target, SampleKind::Gap, gap.from);
    sample.gap_end = Some(Utc::now().trunc_subsecs(3));
    sample.missed = Some(gap.missed);
    sample.code = Some(gap.code);
    sample.message = Some(gap.message);
    sample
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::targets;

    #[test]
    fn missed_polls_coalesce_per_reason_and_the_counts_add_up() {
        let (stats, target) = (PoolStats::default(), targets::fixture("m1"));
        let mut c = Completeness::new(Duration::from_millis(10));
        let missed = |c: &mut Completeness, code| c.missed(code, "why", &target, &stats);
        assert!(missed(&mut c, StatusCode::Skipped).is_empty());
        assert!(missed(&mut c, StatusCode::Skipped).is_empty());
        let [gap] = &missed(&mut c, StatusCode::Timeout)[..] else {
            panic!("a new reason reports the gap before it");
        };
        assert_eq!(
            (gap.kind, gap.code, gap.missed),
            (SampleKind::Gap, Some(StatusCode::Skipped), Some(2))
        );
        assert!(gap.gap_end.unwrap() >= gap.timestamp);
        assert!(c
            .down(StatusCode::Timeout, "slow", &target, &stats)
            .is_empty());
        std::thread::sleep(Duration::from_millis(55));
        let [gap] = &c.received(&target, &stats)[..] else {
            panic!("back: the gap is reported");
        };
        assert_eq!(gap.code, Some(StatusCode::Timeout));
        let n = gap.missed.unwrap();
        assert!((6..=7).contains(&n), "1 + 5 polls of the 55 ms down: {n}");
        assert!(c.close(&target, &stats).is_empty(), "nothing owed");

        // Down for one reason, then missed for another: both gaps are reported.
        assert!(missed(&mut c, StatusCode::Skipped).is_empty());
        assert!(c
            .down(StatusCode::Unreachable, "gone", &target, &stats)
            .is_empty());
        std::thread::sleep(Duration::from_millis(25));
        let codes: Vec<_> = missed(&mut c, StatusCode::Timeout)
            .iter()
            .map(|g| g.code)
            .collect();
        assert_eq!(
            codes,
            [Some(StatusCode::Skipped), Some(StatusCode::Unreachable)]
        );
        assert_eq!(
            c.close(&target, &stats).len(),
            1,
            "the timeout gap, at the stop"
        );

        let (expected, received, lost) = (
            stats.polls_expected.load(Relaxed),
            stats.polls_received.load(Relaxed),
            stats.polls_missed.load(Relaxed),
        );
        assert_eq!(expected, received + lost);
        assert_eq!(received, 1);
    }

    #[test]
    fn lateness_adds_up_to_missed_polls_and_a_timer_s_slack_does_not() {
        let (stats, target) = (PoolStats::default(), targets::fixture("m1"));
        let mut c = Completeness::new(Duration::from_millis(100));
        // A millisecond late, 10,000 times: the timer, not a missed poll.
        for _ in 0..10_000 {
            assert!(c
                .late(Duration::from_millis(1), Overdue::Overrun, &target, &stats)
                .is_empty());
        }
        assert_eq!(stats.polls_missed.load(Relaxed), 0);
        // Polls that take 151 ms every 100 ms: 50 ms lost each (past the 1 ms of
        // slack), a poll missed every second one.
        let mut gaps = Vec::new();
        for _ in 0..20 {
            gaps.extend(c.late(Duration::from_millis(51), Overdue::Overrun, &target, &stats));
            gaps.extend(c.received(&target, &stats));
        }
        assert_eq!(stats.polls_late.load(Relaxed), 10);
        assert_eq!(stats.polls_missed.load(Relaxed), 10);
        assert_eq!(stats.polls_received.load(Relaxed), 20);
        assert_eq!(stats.polls_expected.load(Relaxed), 30);
        assert_eq!(gaps.len(), 10, "each reported by the poll after it");
        assert!(gaps
            .iter()
            .all(|g| g.code == Some(StatusCode::Late) && g.missed == Some(1)));
        // Down: the outage counts its time, the lateness does not count it again.
        assert!(c
            .down(StatusCode::Timeout, "slow", &target, &stats)
            .is_empty());
        assert!(c
            .late(Duration::from_secs(1), Overdue::Overrun, &target, &stats)
            .is_empty());
        assert_eq!(stats.polls_late.load(Relaxed), 10);

        // Waiting for room downstream: skipped polls, with no slack, and apart from
        // lateness.
        let (stats, mut c) = (
            PoolStats::default(),
            Completeness::new(Duration::from_millis(100)),
        );
        let mut gaps = c.late(
            Duration::from_millis(250),
            Overdue::HeldBack,
            &target,
            &stats,
        );
        gaps.extend(c.late(
            Duration::from_millis(50),
            Overdue::HeldBack,
            &target,
            &stats,
        ));
        gaps.extend(c.late(Duration::from_millis(99), Overdue::Overrun, &target, &stats));
        gaps.extend(c.close(&target, &stats));
        assert_eq!(stats.polls_skipped.load(Relaxed), 3);
        assert_eq!(stats.polls_late.load(Relaxed), 0);
        assert_eq!(stats.polls_missed.load(Relaxed), 3);
        assert_eq!(stats.polls_expected.load(Relaxed), 3);
        let [gap] = &gaps[..] else {
            panic!("one gap: {gaps:?}");
        };
        assert_eq!((gap.code, gap.missed), (Some(StatusCode::Skipped), Some(3)));
    }

    #[test]
    fn a_long_outage_is_reported_each_window() {
        let (stats, target) = (PoolStats::default(), targets::fixture("m1"));
        let mut c = Completeness::new(Duration::from_millis(10));
        c.window = Duration::from_millis(60);
        let down = |c: &mut Completeness| c.down(StatusCode::Unreachable, "gone", &target, &stats);
        assert!(down(&mut c).is_empty());
        std::thread::sleep(Duration::from_millis(30));
        assert!(down(&mut c).is_empty(), "within the window: nothing yet");
        std::thread::sleep(Duration::from_millis(40));
        let [gap] = &down(&mut c)[..] else {
            panic!("a window of outage is reported while it lasts");
        };
        assert!((6..=8).contains(&gap.missed.unwrap()), "{gap:?}");
        assert_eq!(
            c.close(&target, &stats).len(),
            0,
            "the next window has just begun"
        );
    }
}
