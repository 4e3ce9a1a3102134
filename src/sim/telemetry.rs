//! Seeded, realistic telemetry for one simulated miner.
//!
//! Values are a pure function of (seed, miner, time window), so the same seed gives the
//! same fleet, and two calls in the same 5-second window agree with each other.

use std::time::Duration;

/// A miner model's nameplate figures.
#[derive(Debug)]
pub struct Model {
    pub name: &'static str,
    pub nominal_ghs: f64,
    pub power_w: f64,
    pub boards: u32,
    pub chips_per_board: u32,
    pub frequency_mhz: f64,
    pub(crate) voltage_v: f64,
    pub fans: u32,
    /// Water-cooled: no fans; its boards report water inlet and outlet temperatures.
    pub hydro: bool,
}

/// The models a simulated fleet is drawn from (hashrate and power from the public spec
/// sheets; chips, frequency and voltage illustrative).
pub(crate) const MODELS: [Model; 4] = [
    Model {
        name: "Antminer S21 Pro",
        nominal_ghs: 247_000.0,
        power_w: 3_480.0,
        boards: 3,
        chips_per_board: 65,
        frequency_mhz: 626.0,
        voltage_v: 13.7,
        fans: 4,
        hydro: false,
    },
    Model {
        name: "Antminer S21",
        nominal_ghs: 200_000.0,
        power_w: 3_500.0,
        boards: 3,
        chips_per_board: 108,
        frequency_mhz: 490.0,
        voltage_v: 13.2,
        fans: 4,
        hydro: false,
    },
    Model {
        name: "Antminer S19j Pro",
        nominal_ghs: 104_000.0,
        power_w: 3_068.0,
        boards: 3,
        chips_per_board: 126,
        frequency_mhz: 525.0,
        voltage_v: 13.8,
        fans: 4,
        hydro: false,
    },
    Model {
        name: "Antminer S21 XP Hydro",
        nominal_ghs: 473_000.0,
        power_w: 5_676.0,
        boards: 3,
        chips_per_board: 156,
        frequency_mhz: 560.0,
        voltage_v: 14.2,
        fans: 0,
        hydro: true,
    },
];

/// Stock-firmware models of the other families (hashrate and power from the public
/// spec sheets; chips, frequency and voltage illustrative).
pub(crate) const WHATSMINER: Model = Model {
    name: "Whatsminer M50S",
    nominal_ghs: 126_000.0,
    power_w: 3_276.0,
    boards: 3,
    chips_per_board: 105,
    frequency_mhz: 575.0,
    voltage_v: 13.4,
    fans: 2,
    hydro: false,
};

pub(crate) const AVALON: Model = Model {
    name: "Avalon A1366",
    nominal_ghs: 130_000.0,
    power_w: 3_250.0,
    boards: 3,
    chips_per_board: 120,
    frequency_mhz: 500.0,
    voltage_v: 13.0,
    fans: 4,
    hydro: false,
};

/// Which firmware family's CGMiner-API dialect a miner speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Antminer,
    Whatsminer,
    Avalon,
}

impl Dialect {
    pub const ALL: [Dialect; 3] = [Dialect::Antminer, Dialect::Whatsminer, Dialect::Avalon];
}

/// What a simulated miner runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Firmware {
    /// Braiins OS: the gRPC API, and the CGMiner API beside it (Antminer's dialect).
    BraiinsOs,
    /// Stock firmware: only the CGMiner API, in its family's dialect.
    Stock(Dialect),
}

/// The firmware and model of miner `index`: a `stock` share of the fleet (0 to 1,
/// picked by seeded hash) runs stock firmware of one of the three families.
pub fn firmware_of(seed: u64, index: usize, stock: f64) -> (Firmware, &'static Model) {
    let pick = mix(seed ^ 0x5_70C4, index as u64, 1);
    if (pick % 1_000_000) as f64 >= stock * 1_000_000.0 {
        return (Firmware::BraiinsOs, model_of(seed, index));
    }
    let dialect = Dialect::ALL[(pick / 1_000_000 % 3) as usize];
    let model = match dialect {
        Dialect::Antminer => model_of(seed, index),
        Dialect::Whatsminer => &WHATSMINER,
        Dialect::Avalon => &AVALON,
    };
    (Firmware::Stock(dialect), model)
}

/// How often the simulated values change: callers in one window see one state.
const WINDOW: Duration = Duration::from_secs(5);

/// One board's figures at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct BoardState {
    pub enabled: bool,
    pub hashrate_ghs: f64,
    pub chip_temp_c: f64,
    pub board_temp_c: f64,
    /// Hydro models: the water's temperature into and out of the board.
    pub water_c: Option<(f64, f64)>,
}

/// The whole miner at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub hashrate_ghs: f64,
    pub power_w: f64,
    pub boards: Vec<BoardState>,
    pub fan_rpm: Vec<u32>,
    pub accepted: u64,
    pub rejected: u64,
    pub stale: u64,
    pub uptime_s: u64,
}

impl Snapshot {
    pub(crate) fn efficiency_jth(&self) -> f64 {
        self.power_w / (self.hashrate_ghs / 1000.0)
    }

    pub(crate) fn highest_chip_temp_c(&self) -> f64 {
        self.boards
            .iter()
            .map(|b| b.chip_temp_c)
            .fold(f64::MIN, f64::max)
    }
}

/// Computes a miner's state `elapsed` after it started (its uptime then reads
/// `elapsed` + 1 h): what every API serves of it, so tests can check what a
/// collector made of it.
pub fn snapshot(model: &Model, seed: u64, miner: usize, elapsed: Duration) -> Snapshot {
    let window = elapsed.as_secs() / WINDOW.as_secs();
    let mut rng = fastrand::Rng::with_seed(mix(seed, miner as u64, window));
    // A board fails now and then: about 1% of miners have one board down in any
    // 10-minute stretch.
    let fault_window = elapsed.as_secs() / 600;
    let mut fault_rng = fastrand::Rng::with_seed(mix(seed ^ 0xB0A2D, miner as u64, fault_window));
    let failed_board = (fault_rng.f64() < 0.01).then(|| fault_rng.u32(0..model.boards));

    let per_board = model.nominal_ghs / f64::from(model.boards);
    let boards: Vec<BoardState> = (0..model.boards)
        .map(|b| {
            let enabled = failed_board != Some(b);
            let load = if enabled {
                0.97 + 0.06 * rng.f64()
            } else {
                0.0
            };
            BoardState {
                enabled,
                hashrate_ghs: per_board * load,
                // Chips run 60-80 °C and follow load; an idle board cools to the inlet.
                chip_temp_c: 28.0 + 45.0 * load + 4.0 * rng.f64(),
                board_temp_c: 26.0 + 32.0 * load + 3.0 * rng.f64(),
                // Inlet 30-35 °C; the water leaves 5-10 °C warmer under load.
                water_c: model.hydro.then(|| {
                    let inlet = 30.0 + 5.0 * rng.f64();
                    (inlet, inlet + 0.5 + 8.0 * load + rng.f64())
                }),
            }
        })
        .collect();
    let hashrate_ghs: f64 = boards.iter().map(|b| b.hashrate_ghs).sum();
    let load = hashrate_ghs / model.nominal_ghs;
    let power_w = (model.power_w * (0.15 + 0.85 * load) * (0.99 + 0.02 * rng.f64())).round();
    let fan_rpm = (0..model.fans)
        .map(|_| (5_600.0 + 600.0 * rng.f64()) as u32)
        .collect();
    // About one accepted share every two seconds per miner, a few rejected per thousand.
    // Counters only grow: the rate is the miner's long-run one, not this window's load,
    // which goes up and down by more than ten seconds' shares once it has run a while.
    let accepted = elapsed.as_secs() / 2;
    Snapshot {
        hashrate_ghs,
        power_w,
        boards,
        fan_rpm,
        accepted,
        rejected: accepted * 3 / 1000,
        stale: accepted / 1000,
        uptime_s: elapsed.as_secs() + 3_600,
    }
}

/// A well-spread seed from three numbers (splitmix64 finaliser).
fn mix(a: u64, b: u64, c: u64) -> u64 {
    let mut z = a
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b.rotate_left(21))
        .wrapping_add(c.rotate_left(42));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The model of miner `index` in a fleet seeded with `seed`.
pub fn model_of(seed: u64, index: usize) -> &'static Model {
    &MODELS[(mix(seed, index as u64, u64::MAX) % MODELS.len() as u64) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_realistic_for_an_s21_pro() {
        let s = snapshot(&MODELS[0], 1, 0, Duration::from_secs(100));
        let enabled = s.boards.iter().filter(|b| b.enabled).count();
        if enabled == 3 {
            assert!(
                (235_000.0..260_000.0).contains(&s.hashrate_ghs),
                "{}",
                s.hashrate_ghs
            );
            assert!((3_300.0..3_700.0).contains(&s.power_w), "{}", s.power_w);
            assert!(
                (13.0..15.5).contains(&s.efficiency_jth()),
                "{}",
                s.efficiency_jth()
            );
        }
        assert!(s.boards.iter().all(|b| b.chip_temp_c < 80.0));
        assert!(s.fan_rpm.iter().all(|r| (5_600..6_200).contains(r)));
    }

    #[test]
    fn same_seed_same_values_and_counters_grow() {
        let t = Duration::from_secs(1000);
        assert_eq!(snapshot(&MODELS[1], 7, 3, t), snapshot(&MODELS[1], 7, 3, t));
        assert_ne!(snapshot(&MODELS[1], 8, 3, t), snapshot(&MODELS[1], 7, 3, t));
        let later = snapshot(&MODELS[1], 7, 3, t * 2);
        assert!(later.accepted > snapshot(&MODELS[1], 7, 3, t).accepted);
    }

    #[test]
    fn share_counters_never_go_back() {
        // Two hours of polls every 10 s, a board failing now and then among them.
        for miner in 0..50 {
            let model = model_of(5, miner);
            let mut before = snapshot(model, 5, miner, Duration::ZERO);
            for t in (10..7200).step_by(10) {
                let now = snapshot(model, 5, miner, Duration::from_secs(t));
                assert!(
                    now.accepted >= before.accepted
                        && now.rejected >= before.rejected
                        && now.stale >= before.stale
                        && now.uptime_s > before.uptime_s,
                    "miner {miner} at {t} s: {before:?} then {now:?}"
                );
                before = now;
            }
        }
    }

    #[test]
    fn some_boards_fail_across_a_fleet() {
        let failed = (0..2000)
            .filter(|m| {
                snapshot(&MODELS[0], 3, *m, Duration::from_secs(60))
                    .boards
                    .iter()
                    .any(|b| !b.enabled)
            })
            .count();
        assert!(
            (5..60).contains(&failed),
            "{failed} of 2000 miners have a failed board"
        );
    }
}
