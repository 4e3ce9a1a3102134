//! Samples per second into a real broker (tansu on loopback) through the kafka sink,
//! JSON against protobuf, each message acknowledged (`acks: all`, idempotence, zstd).
//!
//! `cargo bench --bench kafka` (needs tansu: ./tests/run.sh installs it); compare the
//! two within one run, as a ratio. Each iteration starts a sink, sends 20,000 samples
//! and waits until every one is acknowledged.

mod common;

// The tests' own broker helper, with the two helpers it uses.
#[path = "../tests/support/kafka.rs"]
mod broker;
#[path = "../tests/support/net.rs"]
#[allow(dead_code)] // the bench needs only a free port
mod net;
#[path = "../tests/support/python.rs"]
mod python;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::samples;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rigtap::pipeline::batch::{Batch, MemoryBudget};
use rigtap::pipeline::component::{DecodeContext, SinkContext};
use rigtap::pipeline::queue::Input;
use rigtap::pipeline::stats::ComponentStats;
use rigtap::sinks::kafka;
use rigtap::toolkit::yaml::node;
use tokio_util::sync::CancellationToken;

const SAMPLES: usize = 20_000;

fn bench(c: &mut Criterion) {
    let tansu = broker::Tansu::start();
    tansu.create_topics(&["bench"], 3);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let batch = samples(SAMPLES);
    let mut group = c.benchmark_group("kafka_broker");
    group.throughput(Throughput::Elements(SAMPLES as u64));
    group.sample_size(10);
    for encoding in ["json", "protobuf"] {
        let yaml = format!(
            "brokers: {}\ntopic: bench\nencoding: {encoding}\n",
            tansu.bootstrap()
        );
        let body = node::parse(&yaml).expect("yaml");
        group.bench_function(BenchmarkId::from_parameter(encoding), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    total += runtime.block_on(deliver(&body, &batch));
                }
                total
            })
        });
    }
    group.finish();
}

/// Runs one sink over `samples` (in batches of 500) until all are acknowledged.
async fn deliver(body: &node::Node, samples: &[rigtap::toolkit::sample::Sample]) -> Duration {
    let config = (kafka::TYPE.decode)(body, &DecodeContext::default()).expect("config");
    let (tx, input) = tokio::sync::mpsc::channel(16);
    let stats = Arc::new(ComponentStats::default());
    let budget = MemoryBudget::new(1 << 30);
    let ctx = SinkContext {
        id: "bench".into(),
        input: Input::new(input, stats.clone()).0,
        stats: stats.clone(),
        stop_pipeline: CancellationToken::new(),
        stopping: CancellationToken::new(),
        budget: budget.clone(),
    };
    let started = Instant::now();
    let sink = tokio::spawn(config.start(ctx).task);
    for chunk in samples.chunks(500) {
        let batch = Batch::new(chunk.to_vec(), &budget).await;
        tx.send(Arc::new(batch)).await.expect("the sink runs");
    }
    drop(tx);
    sink.await.expect("joined").expect("delivered");
    assert_eq!(stats.samples_out(), samples.len() as u64);
    started.elapsed()
}

criterion_group!(benches, bench);
criterion_main!(benches);
