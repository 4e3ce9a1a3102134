//! Operating rigtap: `/metrics` scraped with a real HTTP client and parsed by the
//! Prometheus project's parser (tests/py/scrape.py), `/health` flipped by killing and
//! restarting the simulated miners, and `rigtap tap` on the running pipeline.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use rigtap::sim::{Fleet, SimConfig};
use support::net::free_port;
use support::scrape::{scrape_until, value};
use support::sim_config;
use support::start;

const MINERS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_tap_tell_the_truth() {
    let mut fleet = Fleet::start(SimConfig {
        seed: 0,
        status_interval: Duration::from_millis(500),
        ..sim_config(MINERS)
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("fleet.csv");
    fleet.write_inventory(&inventory).unwrap();
    let port = free_port();
    let yaml = format!(
        "
api:
  address: 127.0.0.1:{port}
  health: {{min_online: 0.8, queue_full_for: 2s}}
sources:
  fleet:
    type: bos
    profile: development
    targets: {{inventory: {}}}
    username: root
    password: root
    backoff: {{initial: 100ms, max: 500ms}}
transforms:
  clean: {{type: normalise, inputs: [fleet]}}
sinks:
  out: {{type: stdout, inputs: [clean]}}
",
        inventory.display()
    );
    let path = dir.path().join("pipeline.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let started = Instant::now();
    let mut rigtap = start(&yaml, &["--progress", "json"]);
    let mut stdout = rigtap.stdout.take().unwrap();
    let drain = std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let base = format!("http://127.0.0.1:{port}");

    // All online: healthy, and the numbers agree with each other.
    let online = [("source", "fleet"), ("state", "online")];
    let scraped = tokio::task::block_in_place(|| {
        scrape_until(&base, Duration::from_secs(30), |s| {
            s["health"]["code"] == 200
                && s["metrics"]["rigtap_source_miners_in_state"].is_object()
                && value(
                    s,
                    "rigtap_source_miners_in_state",
                    "rigtap_source_miners_in_state",
                    &online,
                ) == MINERS as f64
                && value(
                    s,
                    "rigtap_component_sent_samples",
                    "rigtap_component_sent_samples_total",
                    &[("component", "out")],
                ) > 0.0
                // Every miner has polled (its first poll lands within an interval).
                && s["metrics"]["rigtap_source_rpcs"]["samples"]
                    .as_array()
                    .is_some_and(|samples| samples.iter().any(|x| {
                        x[1]["method"] == "GetMinerStats" && x[1]["code"] == "OK" && x[2].as_f64() >= Some(MINERS as f64)
                    }))
        })
    });
    assert_eq!(
        scraped["content_type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(
        scraped["health"]["body"],
        serde_json::json!({"status": "ok", "reasons": []})
    );
    let fleet_label = [("source", "fleet")];
    assert_eq!(
        value(
            &scraped,
            "rigtap_source_miners",
            "rigtap_source_miners",
            &fleet_label
        ),
        MINERS as f64
    );
    assert_eq!(
        value(
            &scraped,
            "rigtap_source_connections_open",
            "rigtap_source_connections_open",
            &fleet_label
        ),
        MINERS as f64
    );
    // Calls by method and code, and a latency histogram per method with the same count.
    let stats_call = [("source", "fleet"), ("method", "GetMinerStats")];
    let rpcs = |labels: &[(&str, &str)]| {
        value(
            &scraped,
            "rigtap_source_rpcs",
            "rigtap_source_rpcs_total",
            labels,
        )
    };
    let ok = rpcs(&[stats_call[0], stats_call[1], ("code", "OK")]);
    assert_eq!(
        rpcs(&[("source", "fleet"), ("method", "Login"), ("code", "OK")]),
        MINERS as f64
    );
    let histogram = &scraped["metrics"]["rigtap_source_rpc_duration_seconds"];
    assert_eq!(histogram["type"], "histogram");
    let latency = |sample: &str, labels: &[(&str, &str)]| {
        value(
            &scraped,
            "rigtap_source_rpc_duration_seconds",
            sample,
            labels,
        )
    };
    let count = latency("rigtap_source_rpc_duration_seconds_count", &stats_call);
    let inf = latency(
        "rigtap_source_rpc_duration_seconds_bucket",
        &[stats_call[0], stats_call[1], ("le", "+Inf")],
    );
    assert!(
        ok > 0.0 && count == ok && inf == count,
        "every GetMinerStats call is in its histogram: {ok} ok, {count} observed"
    );
    // The connection layer: every miner connected once (its handshake timed), its
    // first calls went on the new channel and the polls after them on the open one.
    assert_eq!(
        value(
            &scraped,
            "rigtap_source_connect_duration_seconds",
            "rigtap_source_connect_duration_seconds_count",
            &fleet_label
        ),
        MINERS as f64
    );
    let channel_calls = |channel: &str| {
        value(
            &scraped,
            "rigtap_source_channel_calls",
            "rigtap_source_channel_calls_total",
            &[("source", "fleet"), ("channel", channel)],
        )
    };
    assert_eq!(
        channel_calls("new"),
        3.0 * MINERS as f64,
        "version, login and stream on each new channel"
    );
    assert!(
        channel_calls("open") >= ok,
        "every poll on the open channel"
    );
    for governor in ["rpcs", "connects"] {
        let headroom = value(
            &scraped,
            "rigtap_source_rate_headroom_ratio",
            "rigtap_source_rate_headroom_ratio",
            &[("source", "fleet"), ("governor", governor)],
        );
        assert!((0.0..=1.0).contains(&headroom), "{governor}: {headroom}");
    }
    assert_eq!(
        value(
            &scraped,
            "rigtap_source_rpc_retries",
            "rigtap_source_rpc_retries_total",
            &stats_call
        ),
        0.0,
        "nothing failed, nothing retried"
    );
    let received = value(
        &scraped,
        "rigtap_component_received_samples",
        "rigtap_component_received_samples_total",
        &[("component", "out"), ("kind", "sink")],
    );
    let sent = value(
        &scraped,
        "rigtap_component_sent_samples",
        "rigtap_component_sent_samples_total",
        &[("component", "out")],
    );
    assert!(sent > 0.0 && sent <= received);
    assert!(
        value(
            &scraped,
            "rigtap_component_sent_bytes",
            "rigtap_component_sent_bytes_total",
            &[("component", "out")]
        ) > 0.0
    );
    assert_eq!(
        value(
            &scraped,
            "rigtap_component_dropped_samples",
            "rigtap_component_dropped_samples_total",
            &[("component", "out"), ("reason", "queue_full")]
        ),
        0.0
    );
    assert_eq!(scraped["metrics"]["rigtap_queue_batches"]["type"], "gauge");
    let in_flight = [("component", "out")];
    let in_flight = value(
        &scraped,
        "rigtap_sink_in_flight_samples",
        "rigtap_sink_in_flight_samples",
        &in_flight,
    );
    assert_eq!(in_flight, 0.0, "stdout does not wait for acknowledgements");
    assert!(
        value(
            &scraped,
            "process_resident_memory_bytes",
            "process_resident_memory_bytes",
            &[]
        ) > 1e6
    );
    assert_eq!(scraped["metrics"]["process_cpu_seconds"]["type"], "counter");

    // A live view of the source, without disturbing the pipeline.
    let tapped = Command::new(env!("CARGO_BIN_EXE_rigtap"))
        .args(["tap", "-c"])
        .arg(&path)
        .args(["fleet", "--limit", "5"])
        .output()
        .unwrap();
    assert!(
        tapped.status.success(),
        "{}",
        String::from_utf8_lossy(&tapped.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(tapped.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert!(
        lines
            .iter()
            .all(|s| s["miner_id"].as_str().unwrap().starts_with("sim-")),
        "{lines:?}"
    );

    // Three of ten miners gone: below min_online 0.8, so degraded, with the reason.
    for i in 0..3 {
        fleet.kill(i).await;
    }
    // /metrics is read before /health: a scrape between the third miner's loss and
    // the next can show the gauge at 8 beside a health of 7. Both settle.
    let scraped = tokio::task::block_in_place(|| {
        scrape_until(&base, Duration::from_secs(30), |s| {
            s["health"]["code"] == 503
                && value(
                    s,
                    "rigtap_source_miners_in_state",
                    "rigtap_source_miners_in_state",
                    &online,
                ) == 7.0
        })
    });
    let reasons = scraped["health"]["body"]["reasons"].to_string();
    assert_eq!(scraped["health"]["body"]["status"], "degraded");
    assert!(
        reasons.contains("source `fleet`: 7 of 10 miners online, below health.min_online (80%)"),
        "{reasons}"
    );
    assert_eq!(
        value(
            &scraped,
            "rigtap_source_miners_in_state",
            "rigtap_source_miners_in_state",
            &online
        ),
        7.0
    );
    // The killed miners back off before each reconnect, and each delay is observed.
    let backoffs = value(
        &scraped,
        "rigtap_source_backoff_delay_seconds",
        "rigtap_source_backoff_delay_seconds_count",
        &[("source", "fleet"), ("kind", "reconnect")],
    );
    assert!(backoffs >= 3.0, "{backoffs} reconnect backoffs observed");

    // Back: healthy again.
    for i in 0..3 {
        fleet.restart(i).await.unwrap();
    }
    tokio::task::block_in_place(|| {
        scrape_until(&base, Duration::from_secs(30), |s| {
            s["health"]["code"] == 200
        })
    });

    // Long enough for a progress line (every 5 s).
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(started.elapsed())).await;
    rigtap.signal("INT");
    let (code, _, stderr) = tokio::task::block_in_place(|| rigtap.finish(Duration::from_secs(30)));
    assert_eq!(code, Some(0), "{stderr}");
    drain.join().unwrap().unwrap();
    let progress: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l.get("progress").is_some())
        .collect();
    assert!(
        !progress.is_empty(),
        "a JSON progress line every 5 s: {stderr}"
    );
    assert_eq!(progress[0]["progress"]["miners"], MINERS);
    fleet.shutdown().await;
}
