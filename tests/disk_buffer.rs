//! A Kafka sink with a disk buffer (`buffer: {type: disk}`) against a real broker
//! (tansu): an outage longer than memory can hold loses nothing and does not hold
//! the source back; a `kill -9` during an outage loses nothing appended, and a restart
//! on the same buffer delivers it, skipping (and reporting) only records damaged on
//! disk. kafka-python reads what reached the broker.
//!
//! tansu's in-memory storage forgets everything at a restart (see kafka_outage.rs), so
//! the checks count what was generated from the outage on, and the sink runs with
//! `idempotence: false`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use support::kafka::Tansu;
use support::net::free_port;
use support::scrape::{scrape, scrape_until, value};
use support::{finished, start};

/// A pipeline: `generate` into a buffered Kafka sink (with a memory budget far too
/// small for an outage) and a stdout copy.
fn pipeline(api: &str, generate: &str, kafka: (&str, &str, &str), buffer: &Path) -> String {
    let (brokers, topic, shutdown_timeout) = kafka;
    let disk = format!(
        "{{type: disk, path: {}, max_size: 100MiB, warn_at: 0.5, sync_every: 200ms}}",
        buffer.display()
    );
    format!(
        "
memory_budget: 2MiB
api: {{address: '{api}'}}
sources:
  gen: {{type: generate, {generate}}}
sinks:
  kafka:
    type: kafka
    inputs: [gen]
    brokers: {brokers}
    topic: {topic}
    idempotence: false
    max_in_flight: {{messages: 2000, bytes: 1MiB}}
    shutdown_timeout: {shutdown_timeout}
    buffer: {disk}
  copy: {{type: stdout, inputs: [gen]}}
"
    )
}

/// Reads the stdout copy's lines, each with when it came, until rigtap exits.
fn read_copy(rigtap: &mut support::Rigtap) -> std::thread::JoinHandle<Vec<(Instant, String)>> {
    let mut stdout = rigtap.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut stdout, &mut line).unwrap_or(0) > 0 {
            lines.push((Instant::now(), std::mem::take(&mut line)));
        }
        lines
    })
}

/// (miner, counter) of a generated sample, as the stdout copy or the broker hold it.
fn id(v: &serde_json::Value) -> (String, u64) {
    (
        v["miner_id"].as_str().unwrap().to_string(),
        v["shares_accepted"].as_u64().unwrap(),
    )
}

#[test]
fn an_outage_longer_than_memory_holds_loses_nothing_and_holds_nothing_back() {
    const OUTAGE: Duration = Duration::from_secs(60);
    const TOPIC: &str = "buffered";
    let mut tansu = Tansu::start_gated();
    tansu.create_topics(&[TOPIC], 3);
    let dir = tempfile::tempdir().unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    let generate = "rate: 5000, count: 150000, miners: 50, seed: 4";
    // The source ends during the outage; the sink waits for the broker's return.
    let kafka = (&*tansu.bootstrap(), TOPIC, "120s");
    let yaml = pipeline(&api, generate, kafka, &dir.path().join("buf"));
    let mut rigtap = start(&yaml, &["--progress", "off"]);
    let copy = read_copy(&mut rigtap);
    std::thread::sleep(Duration::from_secs(3));
    tansu.stop();
    let (stopped, stopped_at) = (Instant::now(), SystemTime::now());
    let base = format!("http://{api}");
    // The whole outage is buffered on disk, far past the memory budget.
    let during = scrape_until(&base, OUTAGE - Duration::from_secs(5), |s| {
        value(
            s,
            "rigtap_component_received_samples",
            "rigtap_component_received_samples_total",
            &[("component", "kafka")],
        ) >= 150_000.0
    });
    let buffered_bytes = value(
        &during,
        "rigtap_sink_buffer_bytes",
        "rigtap_sink_buffer_bytes",
        &[("component", "kafka")],
    );
    let buffered = value(
        &during,
        "rigtap_sink_buffer_samples",
        "rigtap_sink_buffer_samples",
        &[("component", "kafka")],
    );
    let generated_by = stopped.elapsed();
    assert!(
        buffered_bytes > 8.0 * 1024.0 * 1024.0,
        "{buffered_bytes} bytes buffered: more than the 2 MiB budget holds"
    );
    let health = scrape(&base)["health"].clone();
    let reasons = health["body"]["reasons"].to_string();
    let full: u32 = reasons
        .split("the disk buffer of sink `kafka` is ")
        .nth(1)
        .and_then(|rest| rest.split('%').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no disk buffer reason: {reasons}"));
    assert!(
        full > 50,
        "more than half full (warn_at: 0.5) is a reason: {reasons}"
    );
    std::thread::sleep(OUTAGE.saturating_sub(stopped.elapsed()));
    tansu.restart_with_topics(&[TOPIC], 3);

    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(120));
    let copy = copy.join().unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let kafka = finished(&logs, "kafka");
    assert_eq!(
        (
            &kafka["samples_in"],
            &kafka["samples_out"],
            &kafka["dropped"]
        ),
        (&150_000.into(), &150_000.into(), &0.into()),
        "every sample in was acknowledged: {kafka}"
    );
    eprintln!(
        "outage {OUTAGE:?}: the source generated all 150,000 within {generated_by:?} of it (not held back); {buffered} samples, {:.1} MiB, waited on disk; /health: {}",
        buffered_bytes / 1048576.0,
        health["body"]["reasons"]
    );

    // Everything generated from the outage on is in the restarted broker, once, and
    // in order for each miner.
    let stopped_at: DateTime<Utc> = stopped_at.into();
    let mut since_outage = BTreeSet::new();
    for (_, line) in &copy {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let at: DateTime<Utc> = v["timestamp"].as_str().unwrap().parse().unwrap();
        if at >= stopped_at {
            since_outage.insert(id(&v));
        }
    }
    assert!(since_outage.len() > 100_000, "{}", since_outage.len());
    let mut delivered = BTreeSet::new();
    let mut last: BTreeMap<(i64, String), u64> = BTreeMap::new();
    for m in tansu.read(&[TOPIC]) {
        let id = id(&m["value"]);
        assert!(delivered.insert(id.clone()), "{id:?} delivered twice");
        let partition = m["partition"].as_i64().unwrap();
        let previous = last.insert((partition, id.0.clone()), id.1);
        assert!(
            previous.is_none_or(|p| p < id.1),
            "{id:?} after {previous:?} in partition {partition}: out of order"
        );
    }
    let missing = since_outage.difference(&delivered).count();
    assert_eq!(
        missing, 0,
        "{missing} generated since the outage are not in the broker"
    );
    eprintln!(
        "{} generated since the outage began, all in the broker once, in order per miner",
        since_outage.len()
    );
}

/// The buffer's segment files, in order.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

#[test]
fn a_kill_during_an_outage_loses_only_what_the_disk_damaged() {
    const TOPIC: &str = "crash";
    let mut tansu = Tansu::start_gated();
    tansu.create_topics(&[TOPIC], 3);
    let brokers = tansu.bootstrap();
    tansu.stop();
    let dir = tempfile::tempdir().unwrap();
    let buffer = dir.path().join("buf");

    // The broker is away the whole run: every sample waits in the buffer.
    let api = format!("127.0.0.1:{}", free_port());
    let generate = "rate: 20000, count: 60000, miners: 20, seed: 6, labels: {run: first}";
    let kafka = (&*brokers, TOPIC, "5s");
    let mut first = start(
        &pipeline(&api, generate, kafka, &buffer),
        &["--progress", "off"],
    );
    let copy = read_copy(&mut first);
    scrape_until(&format!("http://{api}"), Duration::from_secs(60), |s| {
        value(
            s,
            "rigtap_sink_buffer_samples",
            "rigtap_sink_buffer_samples",
            &[("component", "kafka")],
        ) >= 60_000.0
    });
    first.signal("KILL");
    let _ = first.finish(Duration::from_secs(10));
    let generated: BTreeSet<(String, u64)> = copy
        .join()
        .unwrap()
        .iter()
        .map(|(_, l)| id(&serde_json::from_str(l).unwrap()))
        .collect();
    assert_eq!(generated.len(), 60_000);

    // The disk damages one record in the middle, and the last is cut short.
    let files = segments(&buffer);
    assert!(files.len() >= 2, "{files:?}");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5A;
    std::fs::write(&files[0], &bytes).unwrap();
    let last = files
        .iter()
        .rev()
        .find(|f| std::fs::metadata(f).unwrap().len() > 0)
        .unwrap();
    let length = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(length - 10)
        .unwrap();

    // A restart on the same buffer, with the broker back, delivers the rest.
    tansu.restart_with_topics(&[TOPIC], 3);
    let started = Instant::now();
    let api = format!("127.0.0.1:{}", free_port());
    let generate = "rate: 5000, count: 1000, miners: 20, seed: 7, labels: {run: second}";
    let mut second = start(
        &pipeline(&api, generate, kafka, &buffer),
        &["--progress", "off"],
    );
    let copy = second.rest();
    assert_eq!(copy.len(), 1000);
    let (code, logs, stderr) = second.finish(Duration::from_secs(120));
    assert_eq!(code, Some(0), "{stderr}");
    let took = started.elapsed();
    let damage = logs
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("the disk buffer had damage")
        })
        .unwrap_or_else(|| panic!("the damage was reported: {stderr}"));
    assert_eq!(damage["corrupt_records"], 1, "{damage}");
    assert!(damage["truncated_bytes"].as_u64().unwrap() > 0, "{damage}");
    let kafka = finished(&logs, "kafka");
    let (samples_in, samples_out) = (
        kafka["samples_in"].as_u64().unwrap(),
        kafka["samples_out"].as_u64().unwrap(),
    );
    assert_eq!(samples_in, 60_000 - 2 + 1000, "recovered and new: {kafka}");
    assert_eq!(
        (samples_out, kafka["dropped"].as_u64().unwrap()),
        (samples_in, 0)
    );

    // Everything delivered: the damage left no gap that would keep segments forever.
    let acked = std::fs::read_to_string(buffer.join("acked")).unwrap();
    assert_eq!(
        acked.split_whitespace().count(),
        1,
        "acknowledged up to one number: {acked}"
    );
    let on_disk: u64 = segments(&buffer)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(on_disk < 4 << 20, "{on_disk} bytes left in the buffer");

    let mut seen: BTreeMap<(String, u64), u32> = BTreeMap::new();
    let mut new = 0;
    for m in tansu.read(&[TOPIC]) {
        match m["value"]["run"].as_str() {
            Some("first") => *seen.entry(id(&m["value"])).or_default() += 1,
            _ => new += 1,
        }
    }
    assert_eq!(new, 1000, "the second run's own samples");
    let delivered: BTreeSet<_> = generated
        .iter()
        .filter(|id| seen.contains_key(*id))
        .collect();
    let duplicates: u32 = seen.values().map(|n| n - 1).sum();
    assert_eq!(
        delivered.len(),
        60_000 - 2,
        "all but the damaged record and the cut-short one"
    );
    eprintln!(
        "kill -9 with 60,000 samples buffered; restart delivered {} of them ({duplicates} duplicates) and 1,000 new in {took:?}; 1 damaged record and 1 cut short, reported",
        delivered.len()
    );
}

#[test]
fn a_reload_replaces_a_buffered_sink_while_its_broker_is_away_and_loses_nothing() {
    const TOPIC: &str = "reload";
    let mut tansu = Tansu::start_gated();
    tansu.create_topics(&[TOPIC], 3);
    let brokers = tansu.bootstrap();
    tansu.stop();
    let dir = tempfile::tempdir().unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    let yaml = |in_flight: u32| {
        pipeline(
            &api,
            "rate: 2000, miners: 20, seed: 8",
            (&brokers, TOPIC, "10s"),
            &dir.path().join("buf"),
        )
        .replace(
            "max_in_flight: {messages: 2000, bytes: 1MiB}",
            &format!("max_in_flight: {{messages: {in_flight}, bytes: 1MiB}}"),
        )
    };
    let mut rigtap = start(&yaml(2000), &["--progress", "off"]);
    let copy = read_copy(&mut rigtap);
    std::thread::sleep(Duration::from_secs(2));
    // The old sink cannot deliver: it leaves its samples on disk within its
    // shutdown_timeout, and the new one takes them over.
    std::fs::write(rigtap.config_path(), yaml(1000)).unwrap();
    let asked = Instant::now();
    let (code, body) = support::http::request(&api, "POST", "/reload");
    assert_eq!(code, 200, "{body}");
    let replaced: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(replaced["replaced"], serde_json::json!(["kafka"]), "{body}");
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "{:?}",
        asked.elapsed()
    );
    std::thread::sleep(Duration::from_secs(1));
    tansu.restart_with_topics(&[TOPIC], 3);
    std::thread::sleep(Duration::from_secs(3));
    rigtap.signal("TERM");
    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(60));
    let copy = copy.join().unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let ledger = support::ledger(&logs, "gen", "kafka");
    assert_eq!(
        (ledger.delivered, ledger.dropped, ledger.unaccounted),
        (ledger.emitted, 0, 0),
        "{ledger:?}"
    );
    let generated: BTreeSet<(String, u64)> = copy
        .iter()
        .map(|(_, l)| id(&serde_json::from_str(l).unwrap()))
        .collect();
    let delivered: BTreeSet<(String, u64)> = tansu
        .read(&[TOPIC])
        .iter()
        .map(|m| id(&m["value"]))
        .collect();
    assert_eq!(generated.len() as u64, ledger.emitted);
    assert_eq!(
        delivered, generated,
        "every sample, through both sinks, in the broker"
    );
    eprintln!(
        "reload with the broker away took {:?}; {} samples, all delivered after it came back",
        asked.elapsed(),
        ledger.emitted
    );
}
