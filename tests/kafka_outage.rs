//! A broker outage: tansu is stopped for 20 s while the pipeline runs, then started
//! again. Nothing produced during or after the outage may be lost, the kafka sink's
//! memory must stay bounded, the source must be held back meanwhile, and `/health`
//! must say the sink is failing. In its own
//! test binary, so no other test moves the process's memory.
//!
//! tansu's in-memory storage forgets everything at a restart, topics and producer ids
//! included. So the topic is created again (behind a gate, before rigtap can reach the
//! broker: see tests/support/kafka.rs), what the old broker had acknowledged is
//! gone (the check counts from the outage onward), and the sink runs with
//! `idempotence: false`: a restarted empty broker answers an idempotent producer's
//! next sequence with UNKNOWN_PRODUCER_ID forever, which a real Kafka cluster, whose
//! producer state survives restarts, never does. The mock-cluster tests in
//! src/sinks/kafka/tests.rs cover an outage with idempotence on.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use support::kafka::Tansu;
use support::net::free_port;
use support::scrape::scrape;
use support::{finished, start};

const TOPIC: &str = "outage";

#[test]
fn a_twenty_second_outage_loses_nothing_and_holds_the_source_back() {
    let mut tansu = Tansu::start_gated();
    tansu.create_topics(&[TOPIC], 3);
    let api = format!("127.0.0.1:{}", free_port());
    let yaml = format!(
        "
api: {{address: '{api}', health: {{sink_failing_for: 5s}}}}
sources:
  gen: {{type: generate, rate: 10000, count: 200000, miners: 50, seed: 9}}
sinks:
  kafka:
    type: kafka
    inputs: [gen]
    brokers: {}
    topic: {TOPIC}
    idempotence: false
    max_in_flight: {{messages: 20000, bytes: 16MiB}}
  copy: {{type: stdout, inputs: [gen]}}
",
        tansu.bootstrap()
    );
    let mut rigtap = start(&yaml, &[]);
    let mut stdout = rigtap.stdout.take().unwrap();
    // The stdout copy sees every batch the kafka sink takes, when it takes it.
    let copy: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let reader = std::thread::spawn({
        let copy = copy.clone();
        move || {
            let mut line = String::new();
            while std::io::BufRead::read_line(&mut stdout, &mut line).unwrap_or(0) > 0 {
                copy.lock()
                    .unwrap()
                    .push((Instant::now(), std::mem::take(&mut line)));
            }
        }
    });
    let lines_by = |at: Instant| {
        copy.lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t <= at)
            .count()
    };

    std::thread::sleep(Duration::from_secs(5));
    let delivered_before = lines_by(Instant::now());
    assert!(
        delivered_before > 10_000,
        "running before the outage: {delivered_before}"
    );
    let base = format!("http://{api}");
    assert_eq!(scrape(&base)["health"]["code"], 200, "healthy before");
    tansu.stop();
    let (killed, killed_at) = (Instant::now(), SystemTime::now());
    let rss_at_kill = rigtap.rss_kib();
    let mut rss_peak = rss_at_kill;
    let mut degraded = None;
    while killed.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(500));
        rss_peak = rss_peak.max(rigtap.rss_kib());
        // The sink stalls within a second or two of the kill; 5 s later it is failing.
        if degraded.is_none() && killed.elapsed() > Duration::from_secs(8) {
            let health = scrape(&base)["health"].clone();
            degraded = (health["code"] == 503).then_some(health);
        }
    }
    let (taken_at_5s, taken_at_19s) = (
        lines_by(killed + Duration::from_secs(5)),
        lines_by(killed + Duration::from_secs(19)),
    );
    tansu.restart_with_topics(&[TOPIC], 3);

    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(120));
    reader.join().unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let kafka = finished(&logs, "kafka");
    assert_eq!(kafka["samples_in"], 200_000, "{kafka}");
    assert_eq!(
        (&kafka["samples_out"], &kafka["dropped"]),
        (&200_000.into(), &0.into()),
        "every sample acknowledged, none dropped: {kafka}"
    );
    assert!(
        logs.iter().any(|l| l["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("no delivery from the broker")),
        "the stall was reported"
    );

    // Held back: while the broker was away the sink took nothing new once its
    // in-flight bound was reached, so neither did the stdout copy beside it.
    eprintln!(
        "outage: {delivered_before} taken before, {taken_at_5s} by 5 s into it, {taken_at_19s} by 19 s; RSS {rss_at_kill} KiB at the kill, peak {rss_peak} KiB"
    );
    assert_eq!(taken_at_19s, taken_at_5s, "the source was held back");
    let degraded = degraded.expect("/health said 503 during the outage");
    let reasons = degraded["body"]["reasons"].to_string();
    assert!(
        reasons.contains("sink `kafka` has delivered nothing for"),
        "{reasons}"
    );
    eprintln!("/health during the outage: {reasons}");
    assert!(
        rss_peak - rss_at_kill < 64 * 1024,
        "memory stayed bounded: {rss_at_kill} -> {rss_peak} KiB"
    );

    // Everything generated from the outage on is in the restarted broker, once.
    let copy = copy.lock().unwrap();
    let mut generated: BTreeMap<(String, u64), DateTime<Utc>> = BTreeMap::new();
    for (_, line) in copy.iter() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let at: DateTime<Utc> = v["timestamp"].as_str().unwrap().parse().unwrap();
        generated.insert(
            (
                v["miner_id"].as_str().unwrap().into(),
                v["shares_accepted"].as_u64().unwrap(),
            ),
            at,
        );
    }
    assert_eq!(generated.len(), 200_000);
    let mut delivered = BTreeSet::new();
    for m in tansu.read(&[TOPIC]) {
        let v = &m["value"];
        let id = (
            v["miner_id"].as_str().unwrap().to_string(),
            v["shares_accepted"].as_u64().unwrap(),
        );
        assert!(generated.contains_key(&id), "{id:?} was never generated");
        assert!(delivered.insert(id.clone()), "{id:?} delivered twice");
    }
    let killed_at: DateTime<Utc> = killed_at.into();
    let since_outage: Vec<_> = generated
        .iter()
        .filter(|(_, at)| **at >= killed_at)
        .map(|(id, _)| id)
        .collect();
    assert!(
        since_outage.len() > 50_000,
        "{} generated since the outage",
        since_outage.len()
    );
    let missing: Vec<_> = since_outage
        .iter()
        .filter(|id| !delivered.contains(**id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} lost, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    eprintln!(
        "{} generated since the outage began, all delivered; {} in the restarted broker",
        since_outage.len(),
        delivered.len()
    );
}
