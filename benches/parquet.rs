//! Samples per second through the parquet sink into files on the local disk, with the
//! memory buffer against a disk buffer (`buffer: {type: disk}`: each sample appended
//! to the buffer, and acknowledged when its file is committed).
//!
//! `cargo bench --bench parquet`; compare the two within one run, as a ratio. Each
//! iteration starts a sink, sends 100,000 samples and waits until every file is
//! finished (and, with the buffer, committed).

mod common;
#[path = "common/sink.rs"]
mod sink;

use std::time::Duration;

use common::samples;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rigtap::sinks::parquet;
use rigtap::toolkit::yaml::node;
use sink::{disk_buffer, run_sink};

const SAMPLES: usize = 100_000;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let batch = samples(SAMPLES);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("parquet_sink");
    group.throughput(Throughput::Elements(SAMPLES as u64));
    group.sample_size(10);
    for (name, buffered) in [("memory_buffer", false), ("disk_buffer", true)] {
        let tree = dir.path().join(name);
        let body = node::parse(&format!(
            "path: {}\nbatch: {{max_rows: 10000}}\nrotate: {{max_rows: 50000}}\n",
            tree.display()
        ))
        .expect("yaml");
        let disk = buffered.then(|| disk_buffer(&dir.path().join("buffer")));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let _ = std::fs::remove_dir_all(&tree);
                    total +=
                        runtime.block_on(run_sink(&parquet::TYPE, &body, &batch, disk.clone()));
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
