//! Encoding throughput of the sinks (samples/s): stdout JSON against text, and Parquet
//! (Arrow columns, then a compressed file in memory) with zstd against snappy.
//!
//! `cargo bench --bench encode`; compare within one run, as ratios.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rigtap::sample::{Sample, SampleKind};
use rigtap::sinks::parquet::{file_schema, record_batch};
use rigtap::sinks::stdout::{encode, StdoutEncoding};

fn samples(n: usize) -> Vec<Sample> {
    let labels = Arc::new(
        [
            ("site".to_string(), "north".to_string()),
            ("rack".to_string(), "r12".to_string()),
        ]
        .into(),
    );
    (0..n)
        .map(|i| {
            let mut s = Sample::new(
                SampleKind::Miner,
                format!("m-{i:05}").into(),
                Arc::clone(&labels),
            );
            s.hashrate_ths = Some(240.0 + i as f64 % 7.0);
            s.power_w = Some(3400.0);
            s.efficiency_jth = Some(14.1);
            s.temp_chip_c = Some(71.5);
            s.fan_rpm = Some(5900.0);
            s.shares_accepted = Some(i as u64);
            s
        })
        .collect()
}

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

criterion_group!(benches, bench, bench_parquet);
criterion_main!(benches);
