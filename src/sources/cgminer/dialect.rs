//! The CGMiner-style answers of three firmware families, turned into samples in the
//! same fields and units as the `bos` source: hashrate in TH/s, temperatures in °C,
//! fans in RPM, power in W, one `kind: board` sample per hashboard where the firmware
//! reports boards.
//!
//! - Antminer (bmminer/cgminer): `summary` (`GHS 5s`, `GHS av` in GH/s), `stats` (its
//!   second object: `chain_rateN` in GH/s, `chain_acnN` chips, `temp2_N` chip and
//!   `tempN` board temperatures, `freq_avgN`, `fanN`, `total_rateideal`); no power.
//! - Whatsminer (btminer): `summary` (`MHS av` in MH/s, `Power`, `Temperature`,
//!   `Chip Temp Max`, `Fan Speed In`/`Out`, `Factory GHS`), `edevs` per board (`MHS av`,
//!   `Temperature`, `Chip Temp Max`, `Chip Frequency`, `Effective Chips`).
//! - Avalon (Canaan): `summary` (`MHS 30s`, `MHS 1m`, `MHS av`), `estats`/`stats`
//!   whose `MM ID0` is one string of `Key[value]` pairs: `GHSmm` nominal GH/s,
//!   `MGHS[..]` and `MTmax[..]` per board, `TMax`, `Fan1`..., `WALLPOWER`, and
//!   `PS[...]`, the power supply's figures (the seventh the wall power in W where
//!   there are seven, else the fifth, the DC output).
//!
//! Numbers may come as strings; a key a firmware leaves out stays absent, never zero.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::fleet::figures::{boards_read, max, mean, sample_at};
use crate::fleet::targets::Target;
use crate::toolkit::sample::{Sample, SampleKind};

/// The answers of one poll: each command's first object (`SUMMARY`), or its list
/// (`STATS`, `DEVS`, `POOLS`).
#[derive(Debug, Default)]
pub(crate) struct Answers {
    pub summary: Option<Map<String, Value>>,
    pub stats: Vec<Map<String, Value>>,
    pub devs: Vec<Map<String, Value>>,
    pub pools: Vec<Map<String, Value>>,
}

impl Answers {
    /// Takes in one command's answer (or a combined answer, `{"summary": [answer],
    /// "pools": [answer]}`), wherever its lists are.
    pub(crate) fn add(&mut self, answer: &Value) {
        let Some(object) = answer.as_object() else {
            return;
        };
        let list = |key: &str| -> Vec<Map<String, Value>> {
            object
                .get(key)
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|i| i.as_object().cloned())
                        .collect()
                })
                .unwrap_or_default()
        };
        if let Some(summary) = list("SUMMARY").into_iter().next() {
            self.summary = Some(summary);
        }
        self.stats.extend(list("STATS"));
        self.devs.extend(list("DEVS"));
        self.pools.extend(list("POOLS"));
        // A combined answer nests each command's answer in a one-element list.
        for (key, parts) in object {
            if key.chars().all(|c| c.is_ascii_lowercase()) {
                for part in parts.as_array().into_iter().flatten() {
                    self.add(part);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.summary.is_none()
            && self.stats.is_empty()
            && self.devs.is_empty()
            && self.pools.is_empty()
    }
}

/// A number, or a string holding one (`"104000.52"`, `" 65 "`).
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|v: &f64| v.is_finite())
}

/// The first of `keys` that `object` holds as a number.
fn first(object: &Map<String, Value>, keys: &[&str]) -> Option<f64> {
    keys.iter().find_map(|k| object.get(*k).and_then(number))
}

/// The hashrate windows read, in order of preference: a minute, as the `bos` source.
const WINDOWS: &[&str] = &["1m", "5s", "30s", "av"];

/// A hashrate in TH/s, from whichever unit the object reports it in.
fn hashrate_ths(object: &Map<String, Value>, window: &[&str]) -> Option<f64> {
    window.iter().find_map(|w| {
        first(object, &[&format!("GHS {w}")])
            .map(|ghs| ghs / 1e3)
            .or_else(|| first(object, &[&format!("MHS {w}")]).map(|mhs| mhs / 1e6))
            .or_else(|| first(object, &[&format!("THS {w}")]))
    })
}

/// Avalon's `Key[value]` string: the value of `key`, whitespace-separated numbers.
fn bracketed<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = text;
    while let Some(start) = rest.find(&format!("{key}[")) {
        let preceded = rest[..start].chars().last().is_none_or(char::is_whitespace);
        let after = &rest[start + key.len() + 1..];
        let end = after.find(']')?;
        if preceded {
            return Some(&after[..end]);
        }
        rest = &after[end..];
    }
    None
}

fn bracketed_number(text: &str, key: &str) -> Option<f64> {
    bracketed(text, key)?
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
}

/// The samples of one poll, stamped `at`; none when nothing answered.
pub(crate) fn samples(target: &Target, answers: &Answers, at: DateTime<Utc>) -> Vec<Sample> {
    if answers.is_empty() {
        return Vec::new();
    }
    let new = |kind| sample_at(target, kind, at);
    let mut miner = new(SampleKind::Miner);
    let mut boards = Vec::new();
    if let Some(summary) = &answers.summary {
        miner.hashrate_ths = hashrate_ths(summary, WINDOWS);
        miner.uptime_s = first(summary, &["Elapsed"]).map(|s| s.max(0.0) as u64);
        miner.shares_accepted = first(summary, &["Accepted"]).map(|v| v.max(0.0) as u64);
        miner.shares_rejected = first(summary, &["Rejected"]).map(|v| v.max(0.0) as u64);
        miner.shares_stale = first(summary, &["Stale"]).map(|v| v.max(0.0) as u64);
        // Whatsminer puts its power, temperatures and fans in the summary.
        miner.power_w = first(summary, &["Power", "Power_RT"]);
        miner.temp_board_c = first(summary, &["Temperature"]);
        miner.temp_chip_c = first(summary, &["Chip Temp Max"]);
        // 0 is a fan that is not there (one fan, or water cooling).
        miner.fan_rpm = mean(
            ["Fan Speed In", "Fan Speed Out"]
                .iter()
                .filter_map(|k| first(summary, &[k]))
                .filter(|rpm| *rpm > 0.0),
        );
        miner.hashrate_nominal_ths = first(summary, &["Factory GHS"]).map(|g| g / 1e3);
    }
    for stats in &answers.stats {
        if stats.keys().any(|k| k.starts_with("chain_rate")) {
            antminer(stats, &mut miner, &mut boards, &new);
        }
        if let Some(mm) = stats
            .iter()
            .find(|(k, _)| k.starts_with("MM ID"))
            .and_then(|(_, v)| v.as_str())
        {
            avalon(mm, &mut miner, &mut boards, &new);
        }
    }
    // `devs` repeats what `stats` already gave per board on firmware that has both.
    let devs: &[Map<String, Value>] = if boards.is_empty() {
        &answers.devs
    } else {
        &[]
    };
    for (i, dev) in devs.iter().enumerate() {
        let mut board = new(SampleKind::Board);
        let slot = first(dev, &["Slot", "ASC", "ID"]).map_or(i as u32, |s| s.max(0.0) as u32);
        board.board = Some(slot.saturating_add(1));
        board.hashrate_ths = hashrate_ths(dev, WINDOWS);
        board.temp_board_c = first(dev, &["Temperature"]);
        board.temp_chip_c = first(dev, &["Chip Temp Max", "Chip Temp Avg"]);
        board.frequency_mhz = first(dev, &["Chip Frequency", "Frequency"]);
        board.chips = first(dev, &["Effective Chips"]).map(|c| c.max(0.0) as u32);
        boards.push(board);
    }
    if miner.shares_accepted.is_none() && !answers.pools.is_empty() {
        let total = |key: &str| {
            answers
                .pools
                .iter()
                .filter_map(|p| first(p, &[key]))
                .fold(0u64, |sum, v| sum.saturating_add(v.max(0.0) as u64))
        };
        miner.shares_accepted = Some(total("Accepted"));
        miner.shares_rejected = Some(total("Rejected"));
        miner.shares_stale = Some(total("Stale"));
    }
    boards.truncate(boards_read(boards.len(), target));
    if !boards.is_empty() {
        miner.temp_chip_c = miner
            .temp_chip_c
            .or_else(|| max(boards.iter().filter_map(|b| b.temp_chip_c)));
        miner.temp_board_c = miner
            .temp_board_c
            .or_else(|| max(boards.iter().filter_map(|b| b.temp_board_c)));
        let chips: Vec<u32> = boards.iter().filter_map(|b| b.chips).collect();
        miner.chips =
            (!chips.is_empty()).then(|| chips.iter().fold(0u32, |s, c| s.saturating_add(*c)));
    }
    let mut out = Vec::with_capacity(1 + boards.len());
    out.push(miner);
    out.extend(boards);
    out
}

/// An Antminer `stats` object: per-chain rates, chips, temperatures; fans.
fn antminer(
    stats: &Map<String, Value>,
    miner: &mut Sample,
    boards: &mut Vec<Sample>,
    new: &dyn Fn(SampleKind) -> Sample,
) {
    miner.hashrate_ths = miner.hashrate_ths.or_else(|| hashrate_ths(stats, WINDOWS));
    miner.hashrate_nominal_ths = first(stats, &["total_rateideal"]).map(|g| g / 1e3);
    let fans = (1..=8)
        .filter_map(|i| first(stats, &[&format!("fan{i}")]))
        .filter(|rpm| *rpm > 0.0);
    miner.fan_rpm = mean(fans);
    for chain in 1..=16 {
        let Some(rate) = first(stats, &[&format!("chain_rate{chain}")]) else {
            continue;
        };
        let mut board = new(SampleKind::Board);
        board.board = Some(chain);
        board.hashrate_ths = Some(rate / 1e3);
        board.chips = first(stats, &[&format!("chain_acn{chain}")]).map(|c| c.max(0.0) as u32);
        board.temp_chip_c = first(
            stats,
            &[&format!("temp2_{chain}"), &format!("temp_chip{chain}")],
        );
        board.temp_board_c = first(
            stats,
            &[&format!("temp{chain}"), &format!("temp_pcb{chain}")],
        );
        board.frequency_mhz = first(
            stats,
            &[&format!("freq_avg{chain}"), &format!("freq{chain}")],
        );
        boards.push(board);
    }
}

/// An Avalon `MM ID0` string: nominal hashrate, per-board rates and temperatures,
/// the hottest chip, fans, power.
fn avalon(
    mm: &str,
    miner: &mut Sample,
    boards: &mut Vec<Sample>,
    new: &dyn Fn(SampleKind) -> Sample,
) {
    // Each position kept (absent where unreadable), so lists stay in line.
    let numbers = |key: &str| -> Vec<Option<f64>> {
        bracketed(mm, key)
            .map(|v| {
                v.split_whitespace()
                    .map(|n| n.parse().ok().filter(|v: &f64| v.is_finite()))
                    .collect()
            })
            .unwrap_or_default()
    };
    miner.hashrate_nominal_ths = bracketed_number(mm, "GHSmm").map(|g| g / 1e3);
    miner.temp_chip_c = bracketed_number(mm, "TMax");
    miner.fan_rpm = mean((1..=4).filter_map(|i| bracketed_number(mm, &format!("Fan{i}"))));
    let ps = numbers("PS");
    // The seventh figure where there are seven, else the fifth.
    let supply = if ps.len() >= 7 { ps.get(6) } else { ps.get(4) };
    miner.power_w = bracketed_number(mm, "WALLPOWER")
        .or(supply.copied().flatten())
        // PS[0 0 0 0 0 0]: the supply could not be read.
        .filter(|w| *w > 0.0);
    let temps = numbers("MTmax");
    for (i, ghs) in numbers("MGHS").into_iter().enumerate() {
        let Some(ghs) = ghs else {
            continue;
        };
        let mut board = new(SampleKind::Board);
        board.board = Some(i as u32 + 1);
        board.hashrate_ths = Some(ghs / 1e3);
        board.temp_chip_c = temps.get(i).copied().flatten();
        boards.push(board);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::targets;
    use crate::sources::cgminer::wire::parse;

    /// The samples of the fixtures named, each parsed as the wire reads it.
    fn samples_of(fixtures: &[&[u8]]) -> Vec<Sample> {
        let mut answers = Answers::default();
        for fixture in fixtures {
            answers.add(&parse(fixture).expect("the fixture parses"));
        }
        samples(&targets::fixture("m1"), &answers, Utc::now())
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-6)
    }

    #[test]
    fn antminer_chains_in_gh_s_with_its_missing_comma() {
        let out = samples_of(&[
            include_bytes!("../../../tests/data/cgminer/antminer_summary.json"),
            include_bytes!("../../../tests/data/cgminer/antminer_stats.raw"),
            include_bytes!("../../../tests/data/cgminer/antminer_pools.json"),
        ]);
        let (miner, boards) = (&out[0], &out[1..]);
        assert!(
            close(miner.hashrate_ths, 102.23259),
            "GHS 5s, a string: {miner:?}"
        );
        assert!(close(miner.hashrate_nominal_ths, 102.003));
        assert_eq!(
            miner.power_w, None,
            "stock Antminer firmware reports no power"
        );
        assert_eq!(
            (
                miner.shares_accepted,
                miner.shares_rejected,
                miner.shares_stale
            ),
            (Some(48211), Some(37), Some(2))
        );
        assert_eq!(miner.uptime_s, Some(185_806));
        assert!(close(miner.fan_rpm, 5850.0));
        assert_eq!(
            (miner.temp_chip_c, miner.temp_board_c),
            (Some(75.0), Some(55.0))
        );
        assert_eq!(miner.chips, Some(378));
        assert_eq!(boards.len(), 3, "the empty fourth chain is no board");
        let first = &boards[0];
        assert_eq!((first.board, first.chips), (Some(1), Some(126)));
        assert!(close(first.hashrate_ths, 34.18851));
        assert_eq!(
            (first.temp_chip_c, first.temp_board_c, first.frequency_mhz),
            (Some(74.0), Some(53.0), Some(525.0))
        );
    }

    #[test]
    fn whatsminer_in_mh_s_with_power_and_boards_from_edevs() {
        let out = samples_of(&[
            include_bytes!("../../../tests/data/cgminer/whatsminer_summary.raw"),
            include_bytes!("../../../tests/data/cgminer/whatsminer_edevs.raw"),
        ]);
        let (miner, boards) = (&out[0], &out[1..]);
        assert!(close(miner.hashrate_ths, 77.9094486), "MHS 1m: {miner:?}");
        assert!(close(miner.hashrate_nominal_ths, 78.0));
        assert_eq!(miner.power_w, Some(3553.0));
        assert_eq!(
            (miner.temp_chip_c, miner.temp_board_c),
            (Some(89.25), Some(72.0))
        );
        assert_eq!(miner.fan_rpm, Some(5700.0), "a fan at 0 is no fan");
        assert_eq!(
            (miner.shares_accepted, miner.uptime_s),
            (Some(2296), Some(33_102))
        );
        assert_eq!(miner.chips, Some(314));
        assert_eq!(boards.len(), 3);
        let second = &boards[1];
        assert_eq!(
            (second.board, second.chips, second.frequency_mhz),
            (Some(2), Some(105), Some(710.0))
        );
        assert!(close(second.hashrate_ths, 25.86451304));
        assert_eq!(
            (second.temp_chip_c, second.temp_board_c),
            (Some(89.25), Some(72.0))
        );
    }

    #[test]
    fn avalon_from_its_bracketed_string_and_a_bare_nan() {
        let out = samples_of(&[
            include_bytes!("../../../tests/data/cgminer/avalon_summary.raw"),
            include_bytes!("../../../tests/data/cgminer/avalon_stats.raw"),
        ]);
        let (miner, boards) = (&out[0], &out[1..]);
        assert!(
            close(miner.hashrate_ths, 80.10025077),
            "MHS 1m, the nan skipped: {miner:?}"
        );
        assert!(close(miner.hashrate_nominal_ths, 83.92304));
        assert_eq!(
            miner.power_w,
            Some(3504.0),
            "PS's seventh figure, the wall power"
        );
        assert_eq!(miner.temp_chip_c, Some(77.0));
        assert!(close(miner.fan_rpm, 5348.5));
        assert_eq!(
            (miner.shares_accepted, miner.shares_rejected),
            (Some(1698), Some(2))
        );
        assert_eq!(boards.len(), 3);
        assert!(close(boards[2].hashrate_ths, 26.72456));
        assert_eq!(boards[2].temp_chip_c, Some(76.0));
    }

    #[test]
    fn avalon_lists_stay_in_line_past_an_unreadable_figure() {
        let mm = r#"{"STATS":[{"MM ID0":"MGHS[26907.01 nan 26724.56] MTmax[77 x 76] PS[0 1214 1316 242 3189 oops 3504]"}]}"#;
        let out = samples_of(&[mm.as_bytes()]);
        let boards: Vec<(Option<u32>, Option<f64>)> =
            out[1..].iter().map(|b| (b.board, b.temp_chip_c)).collect();
        assert_eq!(boards, [(Some(1), Some(77.0)), (Some(3), Some(76.0))]);
        assert_eq!(out[0].power_w, Some(3504.0), "still the seventh figure");
    }

    #[test]
    fn an_avalon_string_of_twenty_thousand_boards_is_cut_to_the_most_a_miner_has() {
        let figures = vec!["26907.01"; 20_000].join(" ");
        let mm = format!(r#"{{"STATS":[{{"MM ID0":"MGHS[{figures}]"}}]}}"#);
        let out = samples_of(&[mm.as_bytes()]);
        assert_eq!(out.len(), 1 + crate::fleet::figures::MAX_BOARDS);
        assert_eq!(out.last().and_then(|b| b.board), Some(16));
    }

    #[test]
    fn a_combined_answer_reads_as_its_parts() {
        let combined = format!(
            "{{\"summary\":[{}],\"pools\":[{}],\"id\":1}}",
            include_str!("../../../tests/data/cgminer/antminer_summary.json"),
            include_str!("../../../tests/data/cgminer/antminer_pools.json"),
        );
        let out = samples_of(&[combined.as_bytes()]);
        assert!(close(out[0].hashrate_ths, 102.23259));
        assert_eq!(out[0].shares_accepted, Some(48211));
    }

    mod hostile {
        use proptest::prelude::*;

        use super::*;

        /// A value a firmware could send for any key: numbers (as numbers or strings,
        /// absurd ones included), text, nothing, lists.
        fn value() -> impl Strategy<Value = Value> {
            prop_oneof![
                any::<f64>().prop_map(|v| serde_json::json!(v)),
                any::<i64>().prop_map(|v| serde_json::json!(v)),
                any::<f64>().prop_map(|v| Value::String(v.to_string())),
                ".{0,12}".prop_map(Value::String),
                "([A-Za-z]{1,6}\\[[-0-9. ]{0,20}\\] ?){0,8}".prop_map(Value::String),
                Just(Value::Null),
            ]
        }

        fn object() -> impl Strategy<Value = Map<String, Value>> {
            let keys = prop::sample::select(vec![
                "GHS 5s",
                "MHS 1m",
                "MHS av",
                "THS 5s",
                "Elapsed",
                "Accepted",
                "Rejected",
                "Stale",
                "Power",
                "Temperature",
                "Chip Temp Max",
                "Fan Speed In",
                "Factory GHS",
                "chain_rate1",
                "chain_rate2",
                "chain_acn1",
                "temp2_1",
                "temp1",
                "fan1",
                "freq1",
                "total_rateideal",
                "MM ID0",
                "Slot",
                "ASC",
                "Effective Chips",
                "Chip Frequency",
            ]);
            prop::collection::btree_map(keys, value(), 0..12)
                .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        }

        proptest! {
            /// Whatever bytes arrive, parsing answers or refuses; never a panic.
            #[test]
            fn any_bytes_parse_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
                let _ = parse(&bytes);
            }

            /// Whatever objects a firmware sends under its sections, samples come
            /// out: one for the miner, one per board, values finite or absent.
            #[test]
            fn any_answers_become_samples(
                summary in proptest::option::of(object()),
                stats in prop::collection::vec(object(), 0..3),
                devs in prop::collection::vec(object(), 0..4),
                pools in prop::collection::vec(object(), 0..3),
            ) {
                let answers = Answers { summary, stats, devs, pools };
                let empty = answers.is_empty();
                let out = samples(&targets::fixture("m1"), &answers, Utc::now());
                prop_assert_eq!(out.is_empty(), empty);
                for s in &out {
                    for v in [s.hashrate_ths, s.power_w, s.temp_chip_c, s.fan_rpm, s.frequency_mhz].into_iter().flatten() {
                        prop_assert!(v.is_finite());
                    }
                }
            }
        }
    }

    #[test]
    fn answers_without_what_a_dialect_needs_are_absent_not_zero() {
        let out = samples_of(&[br#"{"STATUS":[{"STATUS":"S"}],"SUMMARY":[{"Elapsed":"x","GHS 5s":null,"Accepted":-4}],"STATS":[{"MM ID0":"TMax[] PS[oops] MGHS[a b]"}],"id":1}"#]);
        let miner = &out[0];
        assert_eq!(
            (
                miner.hashrate_ths,
                miner.uptime_s,
                miner.power_w,
                miner.temp_chip_c
            ),
            (None, None, None, None)
        );
        assert_eq!(
            miner.shares_accepted,
            Some(0),
            "a negative counter is not trusted below zero"
        );
        assert_eq!(out.len(), 1, "no boards from unreadable figures");
    }
}
