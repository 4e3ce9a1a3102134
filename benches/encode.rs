//! Throughput of the hot path's pieces (samples/s): a `bos` poll's answers decoded into
//! samples (the first half of the load harness's ceiling), then the sinks' encoders:
//! stdout JSON against text, Parquet (Arrow columns, then a compressed file in memory)
//! with zstd against snappy (the second half), and Kafka payloads, JSON against protobuf.
//!
//! `cargo bench --bench encode`; compare within one run, as ratios.

#[path = "common/answers.rs"]
mod answers;
mod common;
#[path = "../tests/support/net.rs"]
#[allow(dead_code)] // the answers need only a free address
mod net;

use common::samples;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rigtap::sinks::kafka::{Encoder, KafkaEncoding, Message};
use rigtap::sinks::parquet::{file_schema, record_batch};
use rigtap::sinks::stdout::{encode, StdoutEncoding};

fn bench(c: &mut Criterion) {
    let batch = samples(1000);
    let mut group = c.benchmark_group("stdout_encode");
    group.throughput(Throughput::Elements(batch.len() as u64));
    for (name, encoding) in [
        ("json", StdoutEncoding::Json),
        ("text", StdoutEncoding::Text),
    ] {
        let mut out = Vec::with_capacity(1 << 20);
        group.bench_with_input(BenchmarkId::from_parameter(name), &batch, |b, batch| {
            b.iter(|| {
                out.clear();
                encode(encoding, batch, &mut out);
                out.len()
            })
        });
    }
    group.finish();
}

/// One 10,000-row batch (a typical flush) to a finished Parquet file in memory.
fn bench_parquet(c: &mut Criterion) {
    let batch = samples(10_000);
    let labels = ["site".to_string(), "rack".to_string()];
    let schema = file_schema(&labels, ["kind"].into_iter());
    let mut group = c.benchmark_group("parquet_encode");
    group.throughput(Throughput::Elements(batch.len() as u64));
    for (name, compression) in [
        ("zstd", Compression::ZSTD(ZstdLevel::default())),
        ("snappy", Compression::SNAPPY),
    ] {
        let properties = WriterProperties::builder()
            .set_compression(compression)
            .build();
        group.bench_with_input(BenchmarkId::from_parameter(name), &batch, |b, batch| {
            b.iter(|| {
                let columns = record_batch(batch, &schema).expect("encodes");
                let mut writer =
                    ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties.clone()))
                        .expect("writer");
                writer.write(&columns).expect("write");
                writer.into_inner().expect("finish").len()
            })
        });
    }
    group.finish();
}

/// Kafka messages (topic, key and payload) for a 1,000-sample batch.
fn bench_kafka(c: &mut Criterion) {
    let batch = samples(1000);
    let mut group = c.benchmark_group("kafka_encode");
    group.throughput(Throughput::Elements(batch.len() as u64));
    for (name, encoding) in [
        ("json", KafkaEncoding::Json),
        ("protobuf", KafkaEncoding::Protobuf),
    ] {
        let encoder = Encoder::new("miners.{site}.{kind}", "{miner_id}", encoding).expect("valid");
        let mut message = Message::default();
        group.bench_with_input(BenchmarkId::from_parameter(name), &batch, |b, batch| {
            b.iter(|| {
                batch
                    .iter()
                    .map(|s| {
                        encoder.encode(s, &mut message);
                        message.size()
                    })
                    .sum::<usize>()
            })
        });
    }
    group.finish();
}

/// One poll of a simulated miner: its five answers decoded and turned into samples.
fn bench_poll(c: &mut Criterion) {
    let answers = answers::capture();
    let target = answers::target();
    let mut out = Vec::new();
    answers::poll(&answers, &target, &mut out);
    let mut group = c.benchmark_group("bos_poll");
    group.throughput(Throughput::Elements(out.len() as u64));
    group.bench_function("decode_and_samples", |b| {
        b.iter(|| {
            out.clear();
            answers::poll(&answers, &target, &mut out);
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_poll, bench, bench_parquet, bench_kafka);
criterion_main!(benches);
