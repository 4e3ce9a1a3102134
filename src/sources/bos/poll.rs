//! One poll's answers turned into samples: one `kind: miner` sample and one
//! `kind: board` sample per hashboard.
//!
//! The miner API names its units in its types (GigaHashrate, Frequency in Hz, Power
//! in W), so conversion to the sample's units happens here, where the unit is known;
//! plausibility checks belong to the `normalise` transform. Whatever a miner left out
//! stays absent, never zero.

use chrono::{DateTime, Utc};

use crate::fleet::figures::{boards_read, max, min, sample_at};
use crate::fleet::targets::Target;
use crate::toolkit::proto::bos::v1 as api;
use crate::toolkit::sample::{Sample, SampleKind};

/// What one poll got back; a call that failed or was not asked for is `None`.
#[derive(Default)]
pub struct Answers {
    pub details: Option<api::GetMinerDetailsResponse>,
    pub stats: Option<api::GetMinerStatsResponse>,
    pub hashboards: Option<api::GetHashboardsResponse>,
    pub cooling: Option<api::GetCoolingStateResponse>,
    pub pools: Option<api::GetPoolGroupsResponse>,
}

impl Answers {
    fn is_empty(&self) -> bool {
        self.answered() == 0
    }

    /// How many calls answered.
    pub(crate) fn answered(&self) -> usize {
        [
            self.details.is_some(),
            self.stats.is_some(),
            self.hashboards.is_some(),
            self.cooling.is_some(),
            self.pools.is_some(),
        ]
        .into_iter()
        .filter(|answered| *answered)
        .count()
    }
}

/// `MINER_STATUS_NORMAL` → `normal`: the sample carries the short lowercase form.
pub(crate) fn status_name(status: i32) -> Option<String> {
    let status = api::MinerStatus::try_from(status).ok()?;
    let name = status.as_str_name().strip_prefix("MINER_STATUS_")?;
    Some(name.to_ascii_lowercase())
}

fn ths(rate: Option<&api::GigaHashrate>) -> Option<f64> {
    rate.map(|r| r.gigahash_per_second / 1000.0)
}

fn last_minute(stats: Option<&api::WorkSolverStats>) -> Option<f64> {
    ths(stats?.real_hashrate.as_ref()?.last_1m.as_ref())
}

fn celsius(sensor: Option<&api::TemperatureSensor>) -> Option<f64> {
    Some(sensor?.temperature.as_ref()?.degree_c)
}

/// The samples of one poll, all stamped `at`; none when every call failed.
pub fn samples(
    target: &Target,
    miner_status: Option<i32>,
    answers: &Answers,
    at: DateTime<Utc>,
) -> Vec<Sample> {
    if answers.is_empty() {
        return Vec::new();
    }
    let new = |kind| sample_at(target, kind, at);
    let boards: &[api::Hashboard] = answers
        .hashboards
        .as_ref()
        .map_or(&[], |h| h.hashboards.as_slice());
    let boards = &boards[..boards_read(boards.len(), target)];

    let mut miner = new(SampleKind::Miner);
    miner.miner_status = miner_status
        .or(answers.details.as_ref().map(|d| d.status))
        .and_then(status_name);
    if let Some(details) = &answers.details {
        miner.uptime_s = Some(details.bosminer_uptime_s);
        miner.hashrate_nominal_ths = ths(details.sticker_hashrate.as_ref());
    }
    if let Some(stats) = &answers.stats {
        let work = stats.miner_stats.as_ref();
        miner.hashrate_ths = last_minute(work);
        miner.hashrate_nominal_ths =
            ths(work.and_then(|w| w.nominal_hashrate.as_ref())).or(miner.hashrate_nominal_ths);
        if let Some(power) = &stats.power_stats {
            miner.power_w = power
                .approximated_consumption
                .as_ref()
                .map(|p| p.watt as f64);
            miner.efficiency_jth = power.efficiency.as_ref().map(|e| e.joule_per_terahash);
        }
        if let Some(pool) = &stats.pool_stats {
            miner.shares_accepted = Some(pool.accepted_shares);
            miner.shares_rejected = Some(pool.rejected_shares);
            miner.shares_stale = Some(pool.stale_shares);
        }
    }
    if miner.shares_accepted.is_none() {
        if let Some(pools) = &answers.pools {
            let stats: Vec<&api::PoolStats> = pools
                .pool_groups
                .iter()
                .flat_map(|g| &g.pools)
                .filter_map(|p| p.stats.as_ref())
                .collect();
            if !stats.is_empty() {
                // Saturating: a miner's counters are not trusted not to overflow.
                let total = |get: fn(&api::PoolStats) -> u64| {
                    stats.iter().fold(0u64, |sum, s| sum.saturating_add(get(s)))
                };
                miner.shares_accepted = Some(total(|s| s.accepted_shares));
                miner.shares_rejected = Some(total(|s| s.rejected_shares));
                miner.shares_stale = Some(total(|s| s.stale_shares));
            }
        }
    }
    if let Some(cooling) = &answers.cooling {
        miner.temp_chip_c = celsius(cooling.highest_temperature.as_ref());
        if !cooling.fans.is_empty() {
            let total: f64 = cooling.fans.iter().map(|f| f64::from(f.rpm)).sum();
            miner.fan_rpm = Some(total / cooling.fans.len() as f64);
        }
    }
    if !boards.is_empty() {
        miner.temp_chip_c = miner.temp_chip_c.or_else(|| {
            max(boards
                .iter()
                .filter_map(|b| celsius(b.highest_chip_temp.as_ref())))
        });
        miner.temp_board_c = max(boards
            .iter()
            .filter_map(|b| b.board_temp.as_ref().map(|t| t.degree_c)));
        miner.temp_water_in_c = min(boards
            .iter()
            .filter_map(|b| b.lowest_water_inlet_temp.as_ref().map(|t| t.degree_c)));
        miner.temp_water_out_c = max(boards
            .iter()
            .filter_map(|b| b.highest_water_outlet_temp.as_ref().map(|t| t.degree_c)));
        let chips: Vec<u32> = boards.iter().filter_map(|b| b.chips_count).collect();
        miner.chips =
            (!chips.is_empty()).then(|| chips.iter().fold(0u32, |sum, n| sum.saturating_add(*n)));
    }

    let mut out = Vec::with_capacity(1 + boards.len());
    out.push(miner);
    let numbers = board_numbers(boards);
    out.extend(boards.iter().zip(numbers).map(|(board, number)| {
        let mut sample = new(SampleKind::Board);
        sample.board = Some(number);
        sample.message = (!board.enabled).then(|| "board disabled".to_string());
        sample.hashrate_ths = last_minute(board.stats.as_ref());
        sample.hashrate_nominal_ths = ths(board
            .stats
            .as_ref()
            .and_then(|s| s.nominal_hashrate.as_ref()));
        sample.temp_chip_c = celsius(board.highest_chip_temp.as_ref());
        sample.temp_board_c = board.board_temp.as_ref().map(|t| t.degree_c);
        sample.temp_water_in_c = board.lowest_water_inlet_temp.as_ref().map(|t| t.degree_c);
        sample.temp_water_out_c = board.highest_water_outlet_temp.as_ref().map(|t| t.degree_c);
        sample.frequency_mhz = board.current_frequency.as_ref().map(|f| f.hertz / 1e6);
        sample.voltage_v = board.current_voltage.as_ref().map(|v| v.volt);
        sample.chips = board.chips_count;
        sample
    }));
    out
}

/// Each board's number: its id when it is a number no other board of the answer has,
/// else the lowest number no board has. A board's samples are told apart by it (the
/// Kafka sample id is miner, time, kind, board): a firmware listing three boards as `1`
/// would have consumers keep one. Numbered ids are kept first, so a board keeps its
/// number whatever the order of the others.
fn board_numbers(boards: &[api::Hashboard]) -> Vec<u32> {
    let ids: Vec<Option<u32>> = boards.iter().map(|b| b.id.parse().ok()).collect();
    let unique = |id: &u32| ids.iter().filter(|i| **i == Some(*id)).count() == 1;
    let mut numbers: Vec<Option<u32>> = ids.iter().map(|id| id.filter(unique)).collect();
    for i in 0..numbers.len() {
        if numbers[i].is_none() {
            numbers[i] = (1..).find(|n| !numbers.contains(&Some(*n)));
        }
    }
    numbers.into_iter().map(|n| n.unwrap_or(0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::targets;

    fn target() -> Target {
        targets::fixture("m1")
    }

    #[test]
    fn boards_of_one_answer_never_share_a_number() {
        let boards = |ids: &[&str]| -> Vec<api::Hashboard> {
            ids.iter()
                .map(|id| api::Hashboard {
                    id: id.to_string(),
                    ..Default::default()
                })
                .collect()
        };
        assert_eq!(board_numbers(&boards(&["0", "1", "2"])), [0, 1, 2]);
        assert_eq!(board_numbers(&boards(&["1", "1", "1"])), [1, 2, 3]);
        assert_eq!(board_numbers(&boards(&["3", "x", "1", "3"])), [2, 3, 1, 4]);
        assert_eq!(
            board_numbers(&boards(&["x", "1"])),
            [2, 1],
            "board 1 keeps its number"
        );
        assert_eq!(board_numbers(&boards(&["x", "y"])), [1, 2]);
    }

    fn ghs(value: f64) -> Option<api::GigaHashrate> {
        Some(api::GigaHashrate {
            gigahash_per_second: value,
        })
    }

    #[test]
    fn units_are_converted_and_absent_stays_absent() {
        let answers = Answers {
            stats: Some(api::GetMinerStatsResponse {
                miner_stats: Some(api::WorkSolverStats {
                    real_hashrate: Some(api::RealHashrate {
                        last_1m: ghs(247_000.0),
                        ..Default::default()
                    }),
                    nominal_hashrate: ghs(250_000.0),
                    ..Default::default()
                }),
                power_stats: Some(api::MinerPowerStats {
                    approximated_consumption: Some(api::Power { watt: 3480 }),
                    efficiency: None,
                }),
                pool_stats: None,
            }),
            hashboards: Some(api::GetHashboardsResponse {
                hashboards: vec![api::Hashboard {
                    id: "2".into(),
                    enabled: true,
                    chips_count: Some(65),
                    current_frequency: Some(api::Frequency { hertz: 626e6 }),
                    board_temp: Some(api::Temperature { degree_c: 55.0 }),
                    lowest_water_inlet_temp: Some(api::Temperature { degree_c: 31.5 }),
                    highest_water_outlet_temp: Some(api::Temperature { degree_c: 39.0 }),
                    ..Default::default()
                }],
            }),
            ..Answers::default()
        };
        let samples = samples(
            &target(),
            Some(api::MinerStatus::Paused as i32),
            &answers,
            Utc::now(),
        );
        assert_eq!(samples.len(), 2);
        let miner = &samples[0];
        assert_eq!(miner.kind, SampleKind::Miner);
        assert_eq!(miner.hashrate_ths, Some(247.0));
        assert_eq!(miner.hashrate_nominal_ths, Some(250.0));
        assert_eq!(miner.power_w, Some(3480.0));
        assert_eq!(miner.efficiency_jth, None, "not reported, not invented");
        assert_eq!(miner.shares_accepted, None);
        assert_eq!(miner.miner_status.as_deref(), Some("paused"));
        assert_eq!(miner.temp_board_c, Some(55.0));
        assert_eq!(miner.chips, Some(65));
        let board = &samples[1];
        assert_eq!((board.kind, board.board), (SampleKind::Board, Some(2)));
        assert_eq!(board.frequency_mhz, Some(626.0));
        assert_eq!(
            (board.temp_water_in_c, board.temp_water_out_c),
            (Some(31.5), Some(39.0)),
            "a hydro board's water"
        );
        assert_eq!(
            (miner.temp_water_in_c, miner.temp_water_out_c),
            (Some(31.5), Some(39.0))
        );
        assert_eq!(board.hashrate_ths, None);
    }

    #[test]
    fn a_list_of_thousands_of_hashboards_is_cut_to_the_most_a_miner_has() {
        let answers = Answers {
            hashboards: Some(api::GetHashboardsResponse {
                hashboards: vec![api::Hashboard::default(); 20_000],
            }),
            ..Default::default()
        };
        let out = samples(&target(), None, &answers, Utc::now());
        assert_eq!(out.len(), 1 + crate::fleet::figures::MAX_BOARDS);
    }

    #[test]
    fn nothing_answered_means_no_samples() {
        assert!(samples(&target(), None, &Answers::default(), Utc::now()).is_empty());
    }

    mod answers {
        use proptest::prelude::*;

        use super::*;
        use crate::toolkit::strategies::hostile_double as double;

        fn ghs() -> impl Strategy<Value = Option<api::GigaHashrate>> {
            proptest::option::of(double().prop_map(|v| api::GigaHashrate {
                gigahash_per_second: v,
            }))
        }

        fn temperature() -> impl Strategy<Value = Option<api::Temperature>> {
            proptest::option::of(double().prop_map(|v| api::Temperature { degree_c: v }))
        }

        fn stats() -> impl Strategy<Value = Option<api::GetMinerStatsResponse>> {
            let work = (ghs(), ghs()).prop_map(|(last_1m, nominal)| api::WorkSolverStats {
                real_hashrate: Some(api::RealHashrate {
                    last_1m,
                    ..Default::default()
                }),
                nominal_hashrate: nominal,
                ..Default::default()
            });
            let power = (
                proptest::option::of(any::<u64>()),
                proptest::option::of(double()),
            )
                .prop_map(|(watt, jth)| api::MinerPowerStats {
                    approximated_consumption: watt.map(|watt| api::Power { watt }),
                    efficiency: jth
                        .map(|joule_per_terahash| api::PowerEfficiency { joule_per_terahash }),
                });
            let pool =
                (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(a, r, s)| api::PoolStats {
                    accepted_shares: a,
                    rejected_shares: r,
                    stale_shares: s,
                    ..Default::default()
                });
            proptest::option::of(
                (
                    proptest::option::of(work),
                    proptest::option::of(power),
                    proptest::option::of(pool),
                )
                    .prop_map(|(miner_stats, power_stats, pool_stats)| {
                        api::GetMinerStatsResponse {
                            pool_stats,
                            miner_stats,
                            power_stats,
                        }
                    }),
            )
        }

        fn hashboards() -> impl Strategy<Value = Option<api::GetHashboardsResponse>> {
            let board = (
                ".{0,4}",
                proptest::option::of(any::<u32>()),
                proptest::option::of(double()),
                proptest::option::of(double()),
                temperature(),
                temperature(),
                ghs(),
            )
                .prop_map(|(id, chips, hz, volt, chip, board, rate)| api::Hashboard {
                    id,
                    chips_count: chips,
                    current_frequency: hz.map(|hertz| api::Frequency { hertz }),
                    current_voltage: volt.map(|volt| api::Voltage { volt }),
                    highest_chip_temp: chip.map(|temperature| api::TemperatureSensor {
                        temperature: Some(temperature),
                        ..Default::default()
                    }),
                    board_temp: board,
                    stats: Some(api::WorkSolverStats {
                        real_hashrate: Some(api::RealHashrate {
                            last_1m: rate,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            proptest::option::of(
                proptest::collection::vec(board, 0..6)
                    .prop_map(|hashboards| api::GetHashboardsResponse { hashboards }),
            )
        }

        fn cooling() -> impl Strategy<Value = Option<api::GetCoolingStateResponse>> {
            let fan = any::<u32>().prop_map(|rpm| api::FanState {
                rpm,
                ..Default::default()
            });
            proptest::option::of(
                (proptest::collection::vec(fan, 0..6), temperature()).prop_map(
                    |(fans, hottest)| api::GetCoolingStateResponse {
                        fans,
                        highest_temperature: hottest.map(|temperature| api::TemperatureSensor {
                            temperature: Some(temperature),
                            ..Default::default()
                        }),
                    },
                ),
            )
        }

        proptest! {
            /// Whatever a miner answers (NaN, infinities, extremes, missing fields), the
            /// conversion makes samples without a panic: one for the miner and one per
            /// board, with the miner's values carried over as sent (`normalise`, which
            /// has its own property test, removes the implausible ones).
            #[test]
            fn any_answer_becomes_samples(
                stats in stats(),
                hashboards in hashboards(),
                cooling in cooling(),
                status in proptest::option::of(any::<i32>()),
            ) {
                let boards = hashboards.as_ref().map_or(0, |h| h.hashboards.len());
                let last_1m = stats.as_ref()
                    .and_then(|s| s.miner_stats.as_ref())
                    .and_then(|w| w.real_hashrate.as_ref())
                    .and_then(|r| r.last_1m.as_ref())
                    .map(|r| r.gigahash_per_second / 1000.0);
                let answers = Answers { stats, hashboards, cooling, ..Answers::default() };
                let produced = samples(&target(), status, &answers, Utc::now());
                if answers.is_empty() {
                    prop_assert!(produced.is_empty());
                } else {
                    prop_assert_eq!(produced.len(), 1 + boards);
                    let hashrate = produced[0].hashrate_ths;
                    prop_assert!(hashrate == last_1m || hashrate.zip(last_1m).is_some_and(|(a, b)| a.is_nan() && b.is_nan()));
                }
            }
        }
    }
}
