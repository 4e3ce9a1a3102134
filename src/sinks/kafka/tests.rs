//! Fault injection with librdkafka's mock cluster (in-process brokers): broker outages,
//! retryable and permanent request errors, and the in-flight bound. The real-broker
//! tests are in tests/kafka.rs and tests/kafka_outage.rs.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Message as _, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use super::config::decode;
use super::config::KafkaConfig;
use crate::pipeline::batch::{Batch, MemoryBudget};
use crate::pipeline::component::{ComponentResult, SinkConfig, SinkContext};
use crate::pipeline::queue::{DiskBuffer, Input, WhenFull};
use crate::pipeline::stats::ComponentStats;
use crate::pipeline::stats::DropReason;
use crate::toolkit::sample::{Sample, SampleKind};
use crate::toolkit::units::{ByteSize, HumanDuration};
use crate::toolkit::yaml::node;

const MINERS: u64 = 20;

fn config(bootstrap: &str, extra: &str) -> KafkaConfig {
    let yaml = format!("brokers: {bootstrap}\ntopic: t\nbatch: {{linger: 5ms}}\n{extra}");
    decode(&node::parse(&yaml).unwrap()).unwrap()
}

/// Samples `from..to` of the sequence where miner `i % MINERS` counts its samples.
fn samples(from: u64, to: u64) -> Vec<Sample> {
    (from..to)
        .map(|i| {
            let mut s = Sample::new(
                SampleKind::Miner,
                format!("m-{:02}", i % MINERS).into(),
                Default::default(),
            );
            s.shares_accepted = Some(i / MINERS + 1);
            s
        })
        .collect()
}

struct Harness {
    input: mpsc::Sender<crate::pipeline::batch::SharedBatch>,
    stats: Arc<ComponentStats>,
    stopping: CancellationToken,
    task: tokio::task::JoinHandle<ComponentResult>,
    budget: MemoryBudget,
}

fn start(config: KafkaConfig, queue: usize) -> Harness {
    start_within(config, queue, MemoryBudget::new(1 << 30))
}

fn start_within(config: KafkaConfig, queue: usize, budget: MemoryBudget) -> Harness {
    start_buffered(config, queue, budget, None)
}

fn start_buffered(
    config: KafkaConfig,
    queue: usize,
    budget: MemoryBudget,
    disk: Option<DiskBuffer>,
) -> Harness {
    let (input, rx) = mpsc::channel(queue);
    let stats = Arc::new(ComponentStats::default());
    let stopping = CancellationToken::new();
    let ctx = SinkContext {
        disk,
        id: "kafka".into(),
        input: Input::new(rx, stats.clone()).0,
        stats: stats.clone(),
        stop_pipeline: CancellationToken::new(),
        stopping: stopping.clone(),
        budget: budget.clone(),
    };
    Harness {
        input,
        stats,
        stopping,
        task: tokio::spawn(Box::new(config).start(ctx).task),
        budget,
    }
}

impl Harness {
    async fn send(&self, samples: Vec<Sample>) {
        let batch = Batch::new(samples, &self.budget).await;
        self.input.send(Arc::new(batch)).await.unwrap();
    }

    async fn finish(self) -> (ComponentResult, Arc<ComponentStats>) {
        drop(self.input);
        let result = tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the sink finishes")
            .unwrap();
        (result, self.stats)
    }
}

/// Every message of topic `t`, as (partition, key, counter), in offset order per partition.
fn read_all(bootstrap: &str, partitions: i32, expected: usize) -> Vec<(i32, String, u64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "check")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset("t", p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while out.len() < expected && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let value: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            out.push((
                m.partition(),
                key,
                value["shares_accepted"].as_u64().unwrap(),
            ));
        }
    }
    // Anything beyond what was sent would be a duplicate: give it a moment to show up.
    if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
        panic!(
            "more messages than sent, e.g. offset {} of partition {}",
            m.offset(),
            m.partition()
        );
    }
    out
}

/// Per key: one partition, and counters 1..=n in offset order (delivered once, in order).
fn assert_once_in_order(messages: &[(i32, String, u64)], per_miner: u64) {
    let mut by_key: BTreeMap<&str, (i32, Vec<u64>)> = BTreeMap::new();
    for (partition, key, counter) in messages {
        let entry = by_key.entry(key).or_insert((*partition, Vec::new()));
        assert_eq!(entry.0, *partition, "key {key} moved partition");
        entry.1.push(*counter);
    }
    assert_eq!(by_key.len() as u64, MINERS);
    for (key, (_, counters)) in by_key {
        assert_eq!(counters, (1..=per_miner).collect::<Vec<_>>(), "key {key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_delays_but_loses_and_repeats_nothing() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("t", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let sink = start(config(&bootstrap, ""), 4);
    sink.send(samples(0, 1000)).await;
    cluster.broker_down(1).unwrap();
    sink.send(samples(1000, 2000)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = sink.stats.samples_out();
    assert!(
        during < 2000,
        "nothing is acknowledged while the broker is down"
    );
    cluster.broker_up(1).unwrap();
    sink.send(samples(2000, 3000)).await;
    let (result, stats) = sink.finish().await;
    result.unwrap();
    assert_eq!(stats.samples_out(), 3000);
    assert_eq!(stats.dropped_total(), 0);
    assert_once_in_order(&read_all(&bootstrap, 3, 3000), 3000 / MINERS);
    // For /metrics: every delivery timed, some of them across the outage.
    assert_eq!(stats.delivery.count(), 3000);
    assert_eq!(stats.in_flight.load(Relaxed), 0);
    let slowest = crate::toolkit::histogram::quantile_ms(&stats.delivery.counts(), 1.0);
    assert!(slowest >= Some(1000), "waited out the outage: {slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_request_errors_are_retried_by_the_producer() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("t", 3, 1).unwrap();
    let errors = [
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
    ];
    cluster.request_errors(RDKafkaApiKey::Produce, &errors.repeat(3));
    let bootstrap = cluster.bootstrap_servers();
    let sink = start(config(&bootstrap, ""), 4);
    for from in (0..2000).step_by(200) {
        sink.send(samples(from, from + 200)).await;
    }
    let (result, stats) = sink.finish().await;
    result.unwrap();
    assert_eq!((stats.samples_out(), stats.dropped_total()), (2000, 0));
    assert_once_in_order(&read_all(&bootstrap, 3, 2000), 2000 / MINERS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_is_counted_not_retried_forever() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("t", 1, 1).unwrap();
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 200],
    );
    let sink = start(config(&cluster.bootstrap_servers(), ""), 4);
    sink.send(samples(0, 500)).await;
    let (result, stats) = sink.finish().await;
    result.unwrap();
    assert_eq!(stats.samples_in(), 500);
    assert_eq!(stats.dropped_for(DropReason::DeliveryFailed), 500);
    assert_eq!(stats.samples_out(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_flight_bound_holds_the_pipeline_back_and_shutdown_reports_the_rest() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("t", 3, 1).unwrap();
    cluster.broker_down(1).unwrap();
    let bounded = "max_in_flight: {messages: 150}\nshutdown_timeout: 500ms\n";
    let sink = start(config(&cluster.bootstrap_servers(), bounded), 2);
    // Batches of 100: the sink takes two (the second only in part), then its queue of
    // two fills, and the next send waits.
    for from in [0, 100, 200, 300] {
        sink.send(samples(from, from + 100)).await;
    }
    let held_back = tokio::time::timeout(Duration::from_secs(1), sink.send(samples(400, 500)));
    assert!(held_back.await.is_err(), "a full sink holds its input back");
    assert_eq!(
        sink.stats.samples_in(),
        200,
        "only what fits in flight is taken"
    );

    sink.stopping.cancel();
    let (result, stats) = sink.finish().await;
    let error = result
        .expect_err("undelivered samples fail the run")
        .to_string();
    assert!(
        error.contains("400 sample(s) were still undelivered"),
        "{error}"
    );
    assert_eq!(stats.samples_in(), 400);
    assert_eq!(stats.dropped_for(DropReason::ShutdownTimeout), 400);
    assert_eq!(stats.samples_out(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_in_flight_is_charged_to_the_memory_budget() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("t", 3, 1).unwrap();
    cluster.broker_down(1).unwrap();
    // `max_in_flight` (100,000 messages, 64 MiB) would take every sample sent here;
    // the budget of 256 KiB, shared with the batches queued for the sink, binds first.
    let budget = MemoryBudget::new(256 << 10);
    let sink = start_within(config(&cluster.bootstrap_servers(), ""), 2, budget.clone());
    let mut sent = 0;
    while sent < 20_000 {
        let send = sink.send(samples(sent, sent + 100));
        if tokio::time::timeout(Duration::from_secs(1), send)
            .await
            .is_err()
        {
            break;
        }
        sent += 100;
    }
    let in_flight = sink.stats.in_flight.load(Relaxed);
    assert!(sent < 20_000, "the budget holds the pipeline back");
    assert!(
        in_flight > 0 && in_flight < (256 << 10) / 512,
        "{in_flight} messages in flight with a 256 KiB budget"
    );
    assert!(budget.in_use() <= budget.total());

    cluster.broker_up(1).unwrap();
    let (result, stats) = sink.finish().await;
    result.unwrap();
    assert_eq!(stats.samples_in(), sent);
    assert_eq!(
        stats.samples_out(),
        sent,
        "everything held back is delivered"
    );
    assert_eq!(
        read_all(&cluster.bootstrap_servers(), 3, sent as usize).len(),
        sent as usize
    );
    assert_eq!(budget.in_use(), 0, "the sink gives its charge back");
}

/// A sink with a 1 MiB disk buffer in `dir` (and a queue of 2), its broker down.
fn small_buffered(
    dir: &std::path::Path,
    when_full: WhenFull,
    extra: &str,
) -> (
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    Harness,
) {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("t", 3, 1).unwrap();
    cluster.broker_down(1).unwrap();
    let disk = DiskBuffer {
        path: dir.join("buffer"),
        max_size: ByteSize(1 << 20),
        sync_every: HumanDuration(Duration::from_millis(100)),
        warn_at: 0.8,
        when_full,
    };
    let config = config(&cluster.bootstrap_servers(), extra);
    let sink = start_buffered(config, 2, MemoryBudget::new(1 << 30), Some(disk));
    (cluster, sink)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_buffer_holds_the_pipeline_back_then_delivers_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, sink) = small_buffered(dir.path(), WhenFull::Block, "");
    let mut sent = 0;
    let held_back = loop {
        let send = sink.send(samples(sent, sent + 500));
        if tokio::time::timeout(Duration::from_secs(2), send)
            .await
            .is_err()
        {
            break true;
        }
        sent += 500;
        assert!(sent < 100_000, "1 MiB never filled");
    };
    assert!(held_back && sent > 1000, "held back after {sent} samples");
    let on_disk = sink.stats.disk.bytes.load(Relaxed);
    assert!(on_disk <= 1 << 20, "{on_disk} bytes: within max_size");
    // The batch whose send timed out was dropped by the test before it was queued.
    cluster.broker_up(1).unwrap();
    sink.send(samples(sent + 500, sent + 1000)).await;
    let (result, stats) = sink.finish().await;
    result.unwrap();
    assert_eq!(stats.samples_in(), sent + 500);
    assert_eq!(
        (stats.samples_out(), stats.dropped_total()),
        (sent + 500, 0)
    );
    assert_eq!(stats.disk.samples.load(Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_buffer_that_drops_counts_and_what_stays_balances_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = "shutdown_timeout: 300ms\n";
    let (_cluster, sink) = small_buffered(dir.path(), WhenFull::DropNewest, shutdown);
    for from in (0..20_000).step_by(500) {
        sink.send(samples(from, from + 500)).await;
    }
    sink.stopping.cancel();
    let (result, stats) = sink.finish().await;
    result.expect("what stays in the buffer is not a failure");
    let (taken, full) = (
        stats.samples_in(),
        stats.dropped_for(DropReason::BufferFull),
    );
    let buffered = stats.disk.samples.load(Relaxed);
    assert_eq!(taken, 20_000, "never held back");
    assert!(
        full > 0 && buffered > 1000,
        "{full} dropped, {buffered} buffered"
    );
    assert_eq!(
        stats.samples_out() + stats.dropped_total() + buffered,
        taken,
        "the ledger balances, the buffer's samples apart"
    );
    assert_eq!(stats.held(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_gone_for_a_while_delays_but_loses_nothing() {
    // A broker restarted empty, or a topic deleted and created again: the broker says
    // the topic is unknown until it exists again.
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("t", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let sink = start(
        config(
            &bootstrap,
            "librdkafka: {topic.metadata.refresh.interval.ms: '200'}\n",
        ),
        4,
    );
    sink.send(samples(0, 200)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let unknown = RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    cluster.topic_error("t", unknown).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    for from in (200..1000).step_by(200) {
        sink.send(samples(from, from + 200)).await;
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    cluster
        .topic_error("t", RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
        .unwrap();
    let (result, stats) = sink.finish().await;
    result.unwrap();
    assert_eq!((stats.samples_out(), stats.dropped_total()), (1000, 0));
    assert_once_in_order(&read_all(&bootstrap, 3, 1000), 1000 / MINERS);
}
