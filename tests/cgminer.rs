//! Stock firmware over the CGMiner-style API: the simulator's three dialects read by an
//! independent client (Python sockets), and a mixed fleet (Braiins OS over gRPC beside
//! stock Antminer, Whatsminer and Avalon miners) collected by a `bos` and a `cgminer`
//! source into Parquet, which DuckDB reads back: every stock miner's every poll holds
//! exactly what the simulator served then.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use rigtap::sim::telemetry::{firmware_of, snapshot, Dialect, Firmware, Snapshot};
use rigtap::sim::{Fleet, SimConfig};
use support::net::free_block;
use support::python::run_script;
use support::{sim_config, start};

/// The first miner of each stock dialect in `fleet`.
fn one_of_each(fleet: &Fleet) -> Vec<(Dialect, usize)> {
    Dialect::ALL
        .iter()
        .map(|dialect| {
            let index = (0..fleet.len())
                .find(|i| fleet.firmware(*i) == Firmware::Stock(*dialect))
                .unwrap_or_else(|| panic!("no {dialect:?} miner in the fleet"));
            (*dialect, index)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_client_reads_each_dialect_with_its_defects() {
    let fleet = Fleet::start(SimConfig {
        stock: 1.0,
        ..sim_config(12)
    })
    .await
    .unwrap();
    for (dialect, index) in one_of_each(&fleet) {
        let address = fleet.cgminer_address(index).unwrap().to_string();
        let commands: &[&str] = match dialect {
            Dialect::Antminer => &["summary", "stats", "pools", "estats"],
            Dialect::Whatsminer => &["summary", "edevs", "pools", "stats"],
            Dialect::Avalon => &["summary", "stats", "pools", "edevs"],
        };
        let mut args = vec![address.clone()];
        args.extend(commands.iter().map(|c| c.to_string()));
        let output = tokio::task::spawn_blocking(move || run_script("cgminer_client.py", &args))
            .await
            .unwrap();
        let got: serde_json::Value = serde_json::from_slice(&output).unwrap();
        let answers = &got["answers"];
        for command in commands {
            assert_eq!(
                got["raw_defects"][command]["nul"], true,
                "{dialect:?} {command}: NUL-terminated"
            );
        }
        let summary = &answers["summary"]["SUMMARY"][0];
        assert!(summary["Elapsed"].as_u64().unwrap() >= 3600, "{summary}");
        // The command this dialect does not know is refused, as firmware does.
        let refused = &answers[commands[3]]["STATUS"][0];
        assert_eq!(refused["STATUS"], "E", "{dialect:?}");
        assert_eq!(refused["Msg"], "Invalid command");
        match dialect {
            Dialect::Antminer => {
                assert_eq!(
                    got["raw_defects"]["stats"]["missing_comma"], true,
                    "bmminer's `}}{{`"
                );
                let ghs: f64 = summary["GHS 5s"]
                    .as_str()
                    .expect("a string, as bmminer sends it")
                    .parse()
                    .unwrap();
                let stats = &answers["stats"]["STATS"][1];
                let chains: f64 = (1..=3)
                    .map(|i| {
                        stats[format!("chain_rate{i}")]
                            .as_str()
                            .unwrap()
                            .parse::<f64>()
                            .unwrap()
                    })
                    .sum();
                assert!((chains / ghs - 1.0).abs() < 0.01, "{chains} of {ghs} GH/s");
                assert!(stats["temp2_1"].as_f64().unwrap() > 40.0);
            }
            Dialect::Whatsminer => {
                assert!((2000.0..4500.0).contains(&summary["Power"].as_f64().unwrap()));
                assert_eq!(summary["Factory GHS"], 126_000.0);
                assert_eq!(answers["edevs"]["DEVS"].as_array().unwrap().len(), 3);
            }
            Dialect::Avalon => {
                let mm = answers["stats"]["STATS"][0]["MM ID0"].as_str().unwrap();
                assert!(mm.contains("GHSmm[130000.00]"), "{mm}");
                let ps = mm.split("PS[").nth(1).unwrap().split(']').next().unwrap();
                let wall: f64 = ps.split_whitespace().nth(6).unwrap().parse().unwrap();
                assert!((2000.0..4500.0).contains(&wall), "PS[{ps}]");
                assert_eq!(
                    mm.split("MGHS[")
                        .nth(1)
                        .unwrap()
                        .split(']')
                        .next()
                        .unwrap()
                        .split(' ')
                        .count(),
                    3
                );
            }
        }
        assert_eq!(answers["pools"]["POOLS"].as_array().unwrap().len(), 2);
    }
}

#[test]
fn a_mixed_fleet_lands_in_parquet_with_every_dialect() {
    let dir = tempfile::tempdir().unwrap();
    let first = free_block(12);
    let yaml = format!(
        "
simulator: {{miners: 12, first: \"{first}\", seed: 7, stock: 0.6}}
sources:
  bos: {{type: bos, profile: development, interval: 1s, targets: {{simulator: true}}, username: root, password: root}}
  stock: {{type: cgminer, interval: 1s, targets: {{simulator: true}}}}
transforms:
  clean: {{type: normalise, inputs: [bos, stock]}}
  labelled: {{type: enrich, inputs: [clean], labels: [model, api]}}
sinks:
  files: {{type: parquet, inputs: [labelled], path: {}, labels: [model, api]}}
",
        dir.path().display()
    );
    let rigtap = start(&yaml, &["--duration", "6s"]);
    let (code, _, stderr) = rigtap.finish(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{stderr}");
    let output = run_script(
        "parquet_read.py",
        &[dir.path().as_os_str(), "fleet".as_ref()],
    );
    let fleet: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&output).unwrap();
    assert_eq!(fleet.len(), 12, "every miner is in the files: {fleet:?}");
    let models: BTreeSet<&str> = fleet
        .values()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert!(
        models.contains("Whatsminer M50S") && models.contains("Avalon A1366"),
        "{models:?}"
    );
    for (miner, m) in &fleet {
        let model = m["model"].as_str().unwrap();
        assert!(
            m["polls"].as_u64().unwrap() >= 3,
            "{miner}: polled every second: {m}"
        );
        let nominal = m["nominal_ths"].as_f64().unwrap();
        // TH/s in every dialect: GH/s (Antminer) and MH/s (Whatsminer, Avalon) converted.
        assert!((90.0..500.0).contains(&nominal), "{miner}: {m}");
        assert!(
            m["min_ths"].as_f64().unwrap() > 0.6 * nominal,
            "{miner}: {m}"
        );
        assert!(
            (40.0..110.0).contains(&m["chip_c"].as_f64().unwrap()),
            "{miner}: {m}"
        );
        assert_eq!(
            m["codes"],
            serde_json::json!(["connecting", "ok"]),
            "{miner}: {m}"
        );
        match (m["api"].as_str().unwrap(), model) {
            ("bos", _) => assert_eq!(m["boards"], 3, "{miner}: {m}"),
            ("cgminer", "Whatsminer M50S") => {
                assert_eq!(nominal, 126.0);
                assert!(
                    (2000.0..4500.0).contains(&m["power_w"].as_f64().unwrap()),
                    "{m}"
                );
                assert_eq!(m["boards"], 3, "one board per edevs entry: {m}");
            }
            ("cgminer", "Avalon A1366") => {
                assert_eq!(nominal, 130.0);
                assert!(
                    (2000.0..4500.0).contains(&m["power_w"].as_f64().unwrap()),
                    "{m}"
                );
                assert_eq!(m["boards"], 3, "one board per MGHS entry: {m}");
            }
            ("cgminer", _) => {
                assert!(
                    m["power_w"].is_null(),
                    "stock Antminer firmware reports no power: {m}"
                );
                assert_eq!(m["boards"], 3, "one board per chain: {m}");
                let board = m["min_board_ths"].as_f64().unwrap();
                assert!((board * 3.0 / nominal - 1.0).abs() < 0.1, "{miner}: {m}");
            }
            (api, _) => panic!("{miner}: api {api}"),
        }
    }
    every_poll_holds_what_the_simulator_served(dir.path(), 7, 0.6);
}

/// A figure as the firmware writes it with `digits` decimals, read back.
fn written(value: f64, digits: usize) -> f64 {
    format!("{value:.digits$}").parse().unwrap()
}

/// Checks each stock miner's every poll in the Parquet files under `root` against
/// what the simulator (seeded `seed`, `stock` of it stock) served then, value for
/// value in the sample's units: the miner's figures from its state at the summary's
/// uptime, its boards' from that state or the next window's (the commands are asked
/// one after another, and may straddle the simulator's 5 s window).
fn every_poll_holds_what_the_simulator_served(root: &std::path::Path, seed: u64, stock: f64) {
    let output = run_script("parquet_read.py", &[root.as_os_str(), "polls".as_ref()]);
    let polls: Vec<serde_json::Value> = serde_json::from_slice(&output).unwrap();
    let mut checked = std::collections::BTreeMap::new();
    for poll in &polls {
        let miner = poll["miner"].as_str().unwrap();
        let index: usize = miner.trim_start_matches("sim-").parse().unwrap();
        let (Firmware::Stock(dialect), model) = firmware_of(seed, index, stock) else {
            panic!("{miner} is a stock miner");
        };
        let elapsed = poll["uptime_s"].as_u64().unwrap() - 3600;
        let at = |seconds| snapshot(model, seed, index, Duration::from_secs(seconds));
        let (now, next) = (at(elapsed), at(elapsed + 5));
        let figure = |key: &str| poll[key].as_f64();
        let boards = poll["boards"].as_array().unwrap();
        // Each board row as (TH/s, chip °C, board °C), and as each state served it.
        let read: Vec<(Option<f64>, Option<f64>, Option<f64>)> = boards
            .iter()
            .map(|b| (b["ths"].as_f64(), b["chip"].as_f64(), b["pcb"].as_f64()))
            .collect();
        let served = |state: &Snapshot| -> Vec<(Option<f64>, Option<f64>, Option<f64>)> {
            state
                .boards
                .iter()
                .map(|b| match dialect {
                    Dialect::Antminer => (
                        Some(written(b.hashrate_ghs, 2) / 1e3),
                        Some(b.chip_temp_c.round()),
                        Some(b.board_temp_c.round()),
                    ),
                    Dialect::Whatsminer => (
                        Some(b.hashrate_ghs * 1e3 / 1e6),
                        Some(b.chip_temp_c),
                        Some(b.board_temp_c),
                    ),
                    Dialect::Avalon => (
                        Some(written(b.hashrate_ghs, 2) / 1e3),
                        Some(written(b.chip_temp_c, 0)),
                        None,
                    ),
                })
                .collect()
        };
        let board_state = [&now, &next]
            .into_iter()
            .find(|state| served(state) == read)
            .unwrap_or_else(|| {
                panic!(
                    "{miner} ({dialect:?}) boards {read:?}: served {:?} or {:?}",
                    served(&now),
                    served(&next)
                )
            });
        let hottest = |state: &Snapshot| {
            state
                .boards
                .iter()
                .map(|b| b.chip_temp_c)
                .fold(f64::MIN, f64::max)
        };
        let expected = match dialect {
            // No power on stock Antminer; the hottest chip is its boards'.
            Dialect::Antminer => (
                Some(written(now.hashrate_ghs * 1.002, 2) / 1e3),
                None,
                Some(hottest(board_state).round()),
            ),
            // All in the summary.
            Dialect::Whatsminer => (
                Some(now.hashrate_ghs * 1e3 / 1e6),
                Some(now.power_w),
                Some(hottest(&now)),
            ),
            // The hashrate in the summary; power and the hottest chip in `stats`.
            Dialect::Avalon => (
                Some(now.hashrate_ghs * 1e3 / 1e6),
                Some(written(board_state.power_w, 0)),
                Some(written(hottest(board_state), 0)),
            ),
        };
        assert_eq!(
            (figure("ths"), figure("power_w"), figure("chip_c")),
            expected,
            "{miner} ({dialect:?}) at uptime {}",
            elapsed + 3600
        );
        *checked.entry(format!("{dialect:?}")).or_insert(0) += 1;
    }
    assert_eq!(
        checked.len(),
        3,
        "polls of every dialect were checked: {checked:?}"
    );
}

/// The status samples of `miner` in `lines`, as (state, code).
fn statuses(lines: &[serde_json::Value], miner: usize) -> Vec<(String, String)> {
    let id = format!("sim-{miner:05}");
    lines
        .iter()
        .filter(|l| l["kind"] == "status" && l["miner_id"] == id.as_str())
        .map(|l| {
            (
                l["state"].as_str().unwrap().to_string(),
                l["code"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_miners_go_offline_with_a_code_and_come_back() {
    let mut config = SimConfig {
        stock: 1.0,
        ..sim_config(6)
    };
    use rigtap::sim::faults::FaultKind;
    config.faults = vec![
        rigtap::sim::faults::FaultRule {
            delay: Some("2s".parse().unwrap()),
            ..support::fault(FaultKind::Slow, &[1])
        },
        support::fault(FaultKind::Unavailable, &[2]),
        support::fault(FaultKind::Internal, &[3]),
    ];
    let mut fleet = Fleet::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("fleet.csv");
    fleet.write_inventory(&inventory).unwrap();
    // Combined commands: each poll is one connection.
    let yaml = format!(
        "sources:\n  stock: {{type: cgminer, interval: 300ms, timeout: 500ms, combine: true, targets: {{inventory: {}}}, backoff: {{initial: 100ms, max: 300ms}}, breaker: {{open_for: 500ms}}}}\nsinks:\n  out: {{type: stdout, inputs: [stock]}}\n",
        inventory.display()
    );
    let rigtap = start(&yaml, &["--duration", "7s"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    fleet.kill(0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    fleet.restart(0).await.unwrap();
    let (lines, code, stderr) = tokio::task::block_in_place(|| {
        let mut rigtap = rigtap;
        let lines = rigtap.rest();
        let (code, _, stderr) = rigtap.finish(Duration::from_secs(30));
        (lines, code, stderr)
    });
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let pair = |state: &str, code: &str| (state.to_string(), code.to_string());
    assert_eq!(
        statuses(&lines, 0),
        [
            pair("connecting", "connecting"),
            pair("online", "ok"),
            pair("offline", "unreachable"),
            pair("online", "ok")
        ],
        "killed and back"
    );
    assert_eq!(
        statuses(&lines, 1),
        [pair("connecting", "connecting"), pair("offline", "timeout")],
        "answers after 2 s, past the 500 ms timeout"
    );
    assert_eq!(
        statuses(&lines, 2),
        [
            pair("connecting", "connecting"),
            pair("offline", "unreachable")
        ],
        "closes the connection unanswered"
    );
    assert_eq!(
        statuses(&lines, 3),
        [
            pair("connecting", "connecting"),
            pair("offline", "miner_error")
        ],
        "refuses every command (STATUS E)"
    );
    for miner in 4..6 {
        assert_eq!(
            statuses(&lines, miner),
            [pair("connecting", "connecting"), pair("online", "ok")]
        );
    }
    let polls = |miner: &str| {
        lines
            .iter()
            .filter(|l| l["kind"] == "miner" && l["miner_id"] == miner)
            .count()
    };
    assert!(
        polls("sim-00004") >= 15,
        "every 300 ms for 7 s: {}",
        polls("sim-00004")
    );
}

/// A stock miner that says nothing: a poll asks its commands one after another, and
/// each waited out the whole timeout (four of them, 20 s at the defaults, the miner
/// `connecting` all along). The first silence ends the poll now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stock_miner_costs_one_timeout_a_poll() {
    use rigtap::sim::faults::FaultKind;
    let mut config = SimConfig {
        stock: 1.0,
        ..sim_config(1)
    };
    config.faults = vec![rigtap::sim::faults::FaultRule {
        delay: Some("3s".parse().unwrap()),
        ..support::fault(FaultKind::Slow, &[0])
    }];
    let fleet = Fleet::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("fleet.csv");
    fleet.write_inventory(&inventory).unwrap();
    let yaml = format!(
        "sources:\n  stock: {{type: cgminer, interval: 1s, timeout: 1s, targets: {{inventory: {}}}, backoff: {{initial: 3s, max: 3s}}}}\nsinks:\n  out: {{type: stdout, inputs: [stock]}}\n",
        inventory.display()
    );
    let rigtap =
        support::start_writing_to(&yaml, &["--duration", "6s"], std::process::Stdio::null());
    let (code, logs, stderr) =
        tokio::task::block_in_place(|| rigtap.finish(Duration::from_secs(30)));
    assert_eq!(code, Some(0), "{stderr}");
    let finished = support::source_summary(&logs, "cgminer source finished");
    let count = |key: &str| finished[key].as_u64().unwrap();
    // At most two polls in 6 s (a 1 s timeout, then a 3 s backoff), one ask each.
    assert!(count("connect_attempts") <= 2, "{finished}");
    assert_eq!(
        count("polls_expected"),
        count("polls_received") + count("polls_missed"),
        "{finished}"
    );
    assert_eq!(count("polls_received"), 0, "{finished}");
    fleet.shutdown().await;
}
