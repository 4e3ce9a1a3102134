//! What deploy/ ships works with this rigtap: the systemd unit verifies, the
//! Kubernetes pipeline validates with the StatefulSet's environment (and that
//! environment sets every variable it uses), and every metric the Grafana dashboard
//! and the alert rules name exists on a running pipeline's /metrics (the rules pass
//! `promtool check rules` where promtool is installed).

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use rigtap::sim::Fleet;
use support::kafka::Tansu;
use support::net::free_port;
use support::scrape::scrape_until;
use support::{sim_config, start};

fn deploy(path: &str) -> String {
    std::fs::read_to_string(format!("{}/deploy/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn has(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_systemd_unit_verifies() {
    if !has("systemd-analyze") {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The unit names the installed binary; verify it against this build's.
    let unit = deploy("systemd/rigtap.service")
        .replace("/usr/local/bin/rigtap", env!("CARGO_BIN_EXE_rigtap"));
    let path = dir.path().join("rigtap.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

#[test]
fn the_kubernetes_pipeline_validates_with_the_statefulsets_environment() {
    let pipeline = deploy("kubernetes/pipeline.yaml");
    let statefulset = deploy("kubernetes/statefulset.yaml");
    // Every variable the pipeline reads is set by the StatefulSet.
    let used: BTreeSet<&str> = pipeline
        .split("${")
        .skip(1)
        .filter_map(|rest| rest.split(['}', ':']).next())
        .collect();
    for name in &used {
        assert!(
            statefulset.contains(&format!("- name: {name}\n")),
            "the StatefulSet does not set {name}"
        );
    }
    let root = env!("CARGO_MANIFEST_DIR");
    for index in ["0", "1", "2"] {
        let out = Command::new(env!("CARGO_BIN_EXE_rigtap"))
            .args([
                "validate",
                "-c",
                &format!("{root}/deploy/kubernetes/pipeline.yaml"),
            ])
            .env("POD_INDEX", index)
            .env("POD_NAME", format!("rigtap-{index}"))
            .env("RIGTAP_SHARDS", "3")
            .env(
                "RIGTAP_INVENTORY",
                format!("{root}/deploy/kubernetes/inventory.csv"),
            )
            .env("KAFKA_BROKERS", "kafka-0.kafka:9092,kafka-1.kafka:9092")
            .env("BOS_PASSWORD", "secret")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The metric names a file uses: `rigtap_…` and `process_…` words.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        let named = |prefix: &str| word.len() > prefix.len() && word.starts_with(prefix);
        if named("rigtap_") || named("process_") {
            names.insert(word.to_string());
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_the_rules_use_exists() {
    let dashboard = deploy("grafana/rigtap.json");
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("the dashboard is JSON");
    let rules = deploy("prometheus/rules.yml");
    let mut wanted = metric_names(&dashboard);
    wanted.extend(metric_names(&rules));
    assert!(wanted.len() > 20, "{wanted:?}");

    // A pipeline with every kind of series: a bos source, a transform, a Kafka sink.
    let fleet = Fleet::start(sim_config(5)).await.unwrap();
    let tansu = tokio::task::spawn_blocking(|| {
        let tansu = Tansu::start();
        tansu.create_topics(&["deploy"], 1);
        tansu
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("fleet.csv");
    fleet.write_inventory(&inventory).unwrap();
    let port = free_port();
    let yaml = format!(
        "api: {{address: 127.0.0.1:{port}}}\nsources:\n  fleet:\n    type: bos\n    profile: development\n    targets: {{inventory: {}}}\n    username: root\n    password: root\ntransforms:\n  clean: {{type: normalise, inputs: [fleet]}}\nsinks:\n  kafka: {{type: kafka, inputs: [clean], brokers: '{}', topic: deploy}}\n",
        inventory.display(),
        tansu.bootstrap()
    );
    let rigtap = start(&yaml, &[]);
    let base = format!("http://127.0.0.1:{port}");
    let scraped = tokio::task::spawn_blocking(move || {
        scrape_until(&base, Duration::from_secs(60), |s| {
            s["metrics"]["rigtap_sink_delivery_duration_seconds"].is_object()
                && s["metrics"]["rigtap_source_rpc_duration_seconds"].is_object()
        })
    })
    .await
    .unwrap();
    let exposed: BTreeSet<String> = scraped["metrics"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|family| family["samples"].as_array().unwrap().iter())
        .map(|sample| sample[0].as_str().unwrap().to_string())
        .collect();
    let missing: Vec<&String> = wanted.iter().filter(|n| !exposed.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "used but not exposed: {missing:?}\nexposed: {exposed:?}"
    );
    rigtap.signal("TERM");
    let (code, _, stderr) =
        tokio::task::spawn_blocking(move || rigtap.finish(Duration::from_secs(60)))
            .await
            .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    drop(tansu);
}

#[test]
fn the_alert_rules_pass_promtool() {
    if !has("promtool") {
        eprintln!("skipped: promtool is not installed (Debian's `prometheus` package has it)");
        return;
    }
    let path = format!("{}/deploy/prometheus/rules.yml", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("promtool")
        .args(["check", "rules", &path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
