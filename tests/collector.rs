//! `rigtap run` end to end on the embedded simulator: the README's main command (the
//! shipped collector.yaml), and a JSON pipeline whose values are checked against what
//! the simulated miners report.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use support::net::{free_block, free_port, miner_address};
use support::{finished, start, start_with_env};

#[test]
fn the_default_collector_runs_on_the_embedded_fleet() {
    let root = env!("CARGO_MANIFEST_DIR");
    let yaml = std::fs::read_to_string(format!("{root}/collector.yaml")).unwrap();
    // Its fleet and API where no running rigtap (whose defaults they are) sits.
    let env = [
        ("RIGTAP_SIM_FIRST", free_block(20).to_string()),
        ("RIGTAP_API_ADDRESS", format!("127.0.0.1:{}", free_port())),
    ];
    let mut rigtap = start_with_env(&yaml, &["--duration", "5s"], &env);
    let lines = rigtap.rest();
    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    let with = |kind: &str| -> BTreeSet<String> {
        lines
            .iter()
            .filter_map(|l| {
                let mut words = l.split_whitespace().skip(1);
                (words.next() == Some(kind)).then(|| words.next().unwrap_or_default().to_string())
            })
            .collect()
    };
    let all: BTreeSet<String> = (0..20).map(|i| format!("sim-{i:05}")).collect();
    assert_eq!(with("miner"), all, "every simulated miner was polled");
    assert_eq!(with("board"), all);
    assert!(lines.iter().any(|l| l.contains("state=online")));
    assert_eq!(finished(&logs, "console")["dropped"], 0);
}

#[test]
fn samples_carry_what_the_simulated_miners_report() {
    let yaml = "
simulator:
  miners: 10
  first: FIRST
  seed: 3
sources:
  fleet:
    type: bos
    profile: development
    interval: 1s
    targets: {simulator: true}
    username: root
    password: root
sinks:
  out:
    type: stdout
    inputs: [fleet]
";
    let yaml = yaml.replace("FIRST", &free_block(10).to_string());
    let mut rigtap = start(&yaml, &["--duration", "4s"]);
    let lines = rigtap.rest();
    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    let samples: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    let mut kinds: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for s in &samples {
        kinds
            .entry(s["kind"].as_str().unwrap())
            .or_default()
            .insert(s["miner_id"].as_str().unwrap());
    }
    for kind in ["miner", "board", "status"] {
        assert_eq!(kinds[kind].len(), 10, "{kind} samples from every miner");
    }
    // Each status says its state and, as a stable code, why.
    for status in samples.iter().filter(|s| s["kind"] == "status") {
        let expected = match status["state"].as_str().unwrap() {
            "connecting" => "connecting",
            "online" => "ok",
            other => panic!("a healthy fleet went {other}: {status}"),
        };
        assert_eq!(status["code"], expected, "{status}");
    }
    for miner in samples.iter().filter(|s| s["kind"] == "miner") {
        let (ths, watts, jth) = (
            miner["hashrate_ths"].as_f64().unwrap(),
            miner["power_w"].as_f64().unwrap(),
            miner["efficiency_jth"].as_f64().unwrap(),
        );
        // The simulator's models: 100-250 TH/s at 14-22 J/TH; efficiency is W / TH/s.
        assert!((20.0..500.0).contains(&ths), "{miner}");
        assert!(
            (jth - watts / ths).abs() < 0.5,
            "J/TH is W over TH/s: {miner}"
        );
        assert_eq!(miner["miner_status"], "normal");
        assert!(
            miner["site"].as_str().unwrap().starts_with("site-"),
            "inventory labels: {miner}"
        );
        // Air-cooled models report fans; the hydro model its water instead.
        match miner.get("fan_rpm") {
            Some(rpm) => assert!(rpm.as_f64().unwrap() > 1000.0, "{miner}"),
            None => {
                let inlet = miner["temp_water_in_c"].as_f64().unwrap();
                let outlet = miner["temp_water_out_c"].as_f64().unwrap();
                assert!((25.0..40.0).contains(&inlet) && outlet > inlet, "{miner}");
            }
        }
    }
    // Seed 3 draws two hydro miners of ten: their water reaches the sample.
    let hydro: BTreeSet<&str> = samples
        .iter()
        .filter(|s| s["kind"] == "miner" && s.get("temp_water_in_c").is_some())
        .map(|s| s["miner_id"].as_str().unwrap())
        .collect();
    assert_eq!(hydro.len(), 2, "{hydro:?}");
    let boards: Vec<&serde_json::Value> = samples.iter().filter(|s| s["kind"] == "board").collect();
    assert!(boards
        .iter()
        .all(|b| (1..=4).contains(&b["board"].as_u64().unwrap())));
    assert!(
        boards
            .iter()
            .any(|b| b["frequency_mhz"].as_f64().unwrap() > 100.0),
        "Hz became MHz"
    );
    let source = support::source_summary(&logs, "bos source finished");
    assert_eq!(source["online"], 10);
    assert_eq!(source["connect_attempts"], 10, "one connection per miner");
}

#[test]
fn normalise_and_enrich_clean_and_label_what_the_miners_report() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory.csv");
    let first = free_block(6);
    let miner = |i: usize| miner_address(first, i).to_string();
    let mut csv = String::from("id,address,site,rack,model\n");
    for i in 1..=6 {
        let address = miner(i - 1);
        csv.push_str(&format!("{address},{address},site-a,rack-{i},S21\n"));
    }
    std::fs::write(&inventory, csv).unwrap();
    let yaml = format!(
        "
simulator:
  miners: 6
  first: {first}
  faults: [{{kind: malformed, miners: [0]}}]
sources:
  fleet:
    type: bos
    profile: development
    interval: 1s
    targets: {{addresses: ['{}-{}']}}
    username: root
    password: root
transforms:
  clean: {{type: normalise, inputs: [fleet]}}
  labelled:
    type: enrich
    inputs: [clean]
    labels: [site, rack, model]
    inventory: {}
    static: {{region: eu}}
sinks:
  out: {{type: stdout, inputs: [labelled]}}
",
        first.ip(),
        miner(5),
        inventory.display()
    );
    let mut rigtap = start(&yaml, &["--duration", "4500ms"]);
    let lines = rigtap.rest();
    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    let samples: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |miner: &str, kind: &str| -> Vec<&serde_json::Value> {
        samples
            .iter()
            .filter(|s| s["miner_id"] == miner && s["kind"] == kind)
            .collect()
    };

    // The malformed miner: NaN hashrate, 9 GW and -300 °C chips are removed, not passed on.
    let broken = of(&miner(0), "miner");
    assert!(!broken.is_empty());
    assert!(
        broken
            .iter()
            .all(|s| s.get("hashrate_ths").is_none() && s.get("power_w").is_none()),
        "{broken:?}"
    );
    assert!(of(&miner(0), "board")
        .iter()
        .all(|b| b.get("temp_chip_c").is_none() && b.get("hashrate_ths").is_none()));
    let report = logs
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("normalise finished"))
        })
        .unwrap();
    assert!(
        report["implausible"].as_str().unwrap().contains("power_w"),
        "{report}"
    );

    // A healthy miner: plausible values, efficiency consistent, deltas that match its counters.
    let healthy = of(&miner(1), "miner");
    assert!(healthy.len() >= 3, "polled every second: {}", healthy.len());
    for s in &healthy {
        let (ths, watts, jth) = (
            s["hashrate_ths"].as_f64().unwrap(),
            s["power_w"].as_f64().unwrap(),
            s["efficiency_jth"].as_f64().unwrap(),
        );
        assert!((jth - watts / ths).abs() < 0.5, "{s}");
        assert_eq!(
            (
                s["site"].as_str(),
                s["rack"].as_str(),
                s["model"].as_str(),
                s["region"].as_str()
            ),
            (Some("site-a"), Some("rack-2"), Some("S21"), Some("eu"))
        );
    }
    assert!(
        healthy[0].get("shares_accepted_delta").is_none(),
        "no delta before a second sample"
    );
    for pair in healthy.windows(2) {
        let delta = pair[1]["shares_accepted"].as_u64().unwrap()
            - pair[0]["shares_accepted"].as_u64().unwrap();
        assert_eq!(pair[1]["shares_accepted_delta"].as_u64(), Some(delta));
    }
    let status = of(&miner(2), "status");
    assert!(
        status
            .iter()
            .all(|s| s["region"] == "eu" && s["site"] == "site-a"),
        "status samples are labelled too"
    );
}
