//! Deltas of a miner's cumulative counters (shares), with resets detected: a counter
//! that goes down, or an uptime that goes down, means the miner restarted, and the new
//! value is then what was counted since the restart.

use crate::toolkit::sample::Sample;

/// What one miner's previous sample said.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Previous {
    accepted: Option<u64>,
    rejected: Option<u64>,
    stale: Option<u64>,
    uptime_s: Option<u64>,
}

/// Sets the sample's deltas from `previous` and remembers it; returns true on a reset.
pub(super) fn apply(previous: &mut Option<Previous>, sample: &mut Sample) -> bool {
    let now = Previous {
        accepted: sample.shares_accepted,
        rejected: sample.shares_rejected,
        stale: sample.shares_stale,
        uptime_s: sample.uptime_s,
    };
    let Some(before) = previous.replace(now) else {
        return false; // the first sample has nothing to subtract
    };
    let went_down = |a: Option<u64>, b: Option<u64>| matches!((a, b), (Some(a), Some(b)) if b < a);
    let reset = went_down(before.accepted, now.accepted)
        || went_down(before.rejected, now.rejected)
        || went_down(before.stale, now.stale)
        || went_down(before.uptime_s, now.uptime_s);
    let delta = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (_, Some(b)) if reset => Some(b),
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    sample.shares_accepted_delta = delta(before.accepted, now.accepted);
    sample.shares_rejected_delta = delta(before.rejected, now.rejected);
    sample.shares_stale_delta = delta(before.stale, now.stale);
    reset
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::toolkit::sample::SampleKind;

    fn sample(accepted: u64, uptime: u64) -> Sample {
        let mut s = Sample::new(SampleKind::Miner, "m".into(), Default::default());
        s.shares_accepted = Some(accepted);
        s.uptime_s = Some(uptime);
        s
    }

    #[test]
    fn first_sample_has_no_delta_then_differences() {
        let mut previous = None;
        let mut a = sample(100, 10);
        assert!(!apply(&mut previous, &mut a));
        assert_eq!(a.shares_accepted_delta, None);
        let mut b = sample(130, 20);
        assert!(!apply(&mut previous, &mut b));
        assert_eq!(b.shares_accepted_delta, Some(30));
    }

    #[test]
    fn a_reboot_is_a_reset_even_when_counters_happen_to_grow() {
        let mut previous = None;
        apply(&mut previous, &mut sample(100, 5000));
        let mut after = sample(150, 30);
        assert!(apply(&mut previous, &mut after), "uptime went down");
        assert_eq!(
            after.shares_accepted_delta,
            Some(150),
            "all counted since the reboot"
        );
    }

    proptest! {
        /// Whatever the increments and wherever the reboots, the deltas add up to every
        /// share counted after the first sample, and are never negative or invented.
        #[test]
        fn deltas_add_up_to_the_shares_counted(
            steps in proptest::collection::vec((0u64..1000, any::<bool>()), 1..60)
        ) {
            let mut previous = None;
            let (mut counter, mut uptime) = (0u64, 0u64);
            let mut counted_after_first = 0u64;
            let mut summed = 0u64;
            for (i, (increment, reboot)) in steps.iter().enumerate() {
                // Samples are 10 s apart. A reboot shows as an uptime below the last
                // one (a reboot that leaves both uptime and counters where they were
                // cannot be seen by anyone, so it is not generated).
                if *reboot && i > 0 && uptime >= 2 {
                    counter = 0;
                    uptime /= 2;
                } else {
                    uptime += 10;
                }
                counter += increment;
                if i > 0 {
                    counted_after_first += increment;
                }
                let mut s = sample(counter, uptime);
                apply(&mut previous, &mut s);
                summed += s.shares_accepted_delta.unwrap_or(0);
                prop_assert!(s.shares_accepted_delta.unwrap_or(0) <= counter);
            }
            prop_assert_eq!(summed, counted_after_first);
        }
    }
}
