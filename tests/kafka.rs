//! The kafka sink against a real Kafka-protocol broker (tansu on loopback), with what
//! reached it read back by kafka-python and compared sample by sample with a stdout
//! copy of the same stream.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use support::kafka::Tansu;
use support::{finished, start};

/// The stdout copy's lines, by (site, miner, counter).
fn by_identity(lines: &[String]) -> BTreeMap<(String, String, u64), serde_json::Value> {
    lines
        .iter()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let id = (
                v["site"].as_str().unwrap().to_string(),
                v["miner_id"].as_str().unwrap().to_string(),
                v["shares_accepted"].as_u64().unwrap(),
            );
            (id, v)
        })
        .collect()
}

#[test]
fn json_samples_arrive_once_keyed_by_miner_on_templated_topics() {
    let tansu = Tansu::start();
    let topics = ["miners.north.miner", "miners.south.miner"];
    tansu.create_topics(&topics, 3);
    let yaml = format!(
        "
sources:
  north: {{type: generate, count: 6000, miners: 30, seed: 1, batch_size: 250, labels: {{site: north}}}}
  south: {{type: generate, count: 4000, miners: 20, seed: 2, batch_size: 250, labels: {{site: south}}}}
sinks:
  kafka:
    type: kafka
    inputs: [north, south]
    brokers: [{}]
    topic: miners.{{site}}.{{kind}}
    agent_id: rig-test
  copy: {{type: stdout, inputs: [north, south]}}
",
        tansu.bootstrap()
    );
    let mut rigtap = start(&yaml, &[]);
    let copy = by_identity(&rigtap.rest());
    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{stderr}");
    let kafka = finished(&logs, "kafka");
    assert_eq!(
        (kafka["samples_out"].as_u64(), kafka["dropped"].as_u64()),
        (Some(10_000), Some(0))
    );
    assert_eq!(copy.len(), 10_000);

    let messages = tansu.read(&topics);
    assert_eq!(messages.len(), 10_000, "every sample, once");
    let mut partition_of: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut last_counter: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut per_topic: BTreeMap<String, usize> = BTreeMap::new();
    for m in &messages {
        let (topic, key, value) = (
            m["topic"].as_str().unwrap(),
            m["key"].as_str().unwrap(),
            &m["value"],
        );
        *per_topic.entry(topic.to_string()).or_default() += 1;
        let site = value["site"].as_str().unwrap();
        assert_eq!(topic, format!("miners.{site}.miner"), "the topic template");
        assert_eq!(key, value["miner_id"], "the key is the miner id");
        let identity = (
            site.to_string(),
            key.to_string(),
            value["shares_accepted"].as_u64().unwrap(),
        );
        assert_eq!(
            Some(value),
            copy.get(&identity),
            "the message is the sample, field for field"
        );
        assert!(
            seen.insert(identity.clone()),
            "delivered twice: {identity:?}"
        );

        // One partition per key, the one the Java client's partitioner picks, and the
        // key's samples in order within it (messages come partition by partition, in
        // offset order).
        let partition = m["partition"].as_i64().unwrap();
        assert_eq!(
            m["expected_partition"].as_i64(),
            Some(partition),
            "murmur2 partition for {key}"
        );
        let stream = (topic.to_string(), key.to_string());
        assert_eq!(
            *partition_of.entry(stream.clone()).or_insert(partition),
            partition
        );
        let previous = last_counter.insert(stream, identity.2).unwrap_or(0);
        assert_eq!(identity.2, previous + 1, "{key}: in order, nothing missing");

        let headers = &m["headers"];
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["schema-version"], "rigtap.v1.Sample");
        assert_eq!(headers["agent-id"], "rig-test");
        // What consumers deduplicate on after a redelivery.
        let at: chrono::DateTime<chrono::Utc> =
            value["timestamp"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            headers["sample-id"],
            format!("{key}/{}/miner/-", at.timestamp_millis())
        );
    }
    assert_eq!(per_topic["miners.north.miner"], 6000);
    assert_eq!(per_topic["miners.south.miner"], 4000);
    let used: BTreeSet<i64> = partition_of.values().copied().collect();
    assert_eq!(used.len(), 3, "50 keys spread over all 3 partitions");
}

#[test]
fn protobuf_messages_decode_to_the_same_samples() {
    let tansu = Tansu::start();
    tansu.create_topics(&["fleet"], 2);
    let yaml = format!(
        "
sources:
  gen: {{type: generate, count: 3000, miners: 10, seed: 3, labels: {{site: east, rack: r7}}}}
sinks:
  kafka:
    type: kafka
    inputs: [gen]
    brokers: {}
    topic: fleet
    encoding: protobuf
    compression: gzip
    batch: {{max_messages: 500, linger: 10ms}}
  copy: {{type: stdout, inputs: [gen]}}
",
        tansu.bootstrap()
    );
    let mut rigtap = start(&yaml, &[]);
    let copy = by_identity(&rigtap.rest());
    let (code, _, stderr) = rigtap.finish(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{stderr}");

    let messages = tansu.read(&["fleet"]);
    assert_eq!(messages.len(), 3000);
    for m in &messages {
        assert_eq!(m["headers"]["content-type"], "application/x-protobuf");
        let v = &m["value"];
        let counter: u64 = v["shares_accepted"].as_str().unwrap().parse().unwrap(); // uint64 is a string in proto3 JSON
        let key = m["key"].as_str().unwrap().to_string();
        let sample = &copy[&("east".to_string(), key.clone(), counter)];
        assert_eq!(v["miner_id"], sample["miner_id"]);
        assert_eq!(v["kind"], "KIND_MINER");
        for field in [
            "hashrate_ths",
            "power_w",
            "efficiency_jth",
            "temp_chip_c",
            "fan_rpm",
        ] {
            assert_eq!(
                v[field].as_f64(),
                sample[field].as_f64(),
                "{field} of {key}"
            );
        }
        assert_eq!(v["labels"]["site"], "east");
        assert_eq!(v["labels"]["rack"], "r7");
        let ms: i64 = v["timestamp_ms"].as_str().unwrap().parse().unwrap();
        let text = chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        assert_eq!(sample["timestamp"], text.as_str());
    }
}

#[test]
fn a_missing_topic_is_reported_with_the_miners_and_counted() {
    let tansu = Tansu::start();
    let yaml = format!(
        "
sources:
  gen: {{type: generate, count: 40, miners: 4}}
sinks:
  kafka:
    type: kafka
    inputs: [gen]
    brokers: {}
    topic: nowhere
    librdkafka: {{topic.metadata.propagation.max.ms: 1000}}
",
        tansu.bootstrap()
    );
    let (code, logs, stderr) = start(&yaml, &[]).finish(Duration::from_secs(60));
    assert_eq!(
        code,
        Some(0),
        "drops are counted and reported, not fatal: {stderr}"
    );
    let kafka = finished(&logs, "kafka");
    assert_eq!(
        (
            kafka["samples_in"].as_u64(),
            kafka["samples_out"].as_u64(),
            kafka["dropped"].as_u64()
        ),
        (Some(40), Some(0), Some(40))
    );
    let refused: Vec<&serde_json::Value> = logs
        .iter()
        .filter(|l| {
            l["level"] == "ERROR"
                && l["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("refused a sample")
        })
        .collect();
    assert!(!refused.is_empty(), "{stderr}");
    assert!(refused
        .iter()
        .all(|l| l["miner"].as_str().unwrap().starts_with("gen-")));
    assert!(
        refused.len() <= 11,
        "a flood is cut to the log budget: {} lines",
        refused.len()
    );
    assert!(refused[0]["error"]
        .as_str()
        .unwrap()
        .contains("UnknownTopicOrPartition"));
}
