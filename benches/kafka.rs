//! Samples per second into a real broker (tansu on loopback) through the kafka sink,
//! JSON against protobuf, each message acknowledged (`acks: all`, idempotence, zstd).
//!
//! `cargo bench --bench kafka` (needs tansu: ./tests/run.sh installs it); compare the
//! variants within one run, as ratios. Each iteration starts a sink, sends 20,000
//! samples and waits until every one is acknowledged: JSON and protobuf with the
//! memory buffer, and JSON through a disk buffer (`buffer: {type: disk}`).
//!
//! `disk_buffer` measures the buffer alone: appending 1 KiB records (with and
//! without a sync per 500), and opening a 1 GiB buffer a crash left (recovery), from
//! the page cache and, where the bench may drop the cache (root), from the disk.

mod common;
#[path = "common/sink.rs"]
mod sink;

// The tests' own broker helper, with the two helpers it uses.
#[path = "../tests/support/kafka.rs"]
mod broker;
#[path = "../tests/support/net.rs"]
#[allow(dead_code)] // the bench needs only a free port
mod net;
#[path = "../tests/support/python.rs"]
mod python;

use std::time::{Duration, Instant};

use common::samples;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rigtap::sinks::kafka;
use rigtap::toolkit::segment_log::SegmentLog;
use rigtap::toolkit::yaml::node;
use sink::run_sink;

const SAMPLES: usize = 20_000;

fn bench(c: &mut Criterion) {
    let tansu = broker::Tansu::start();
    tansu.create_topics(&["bench"], 3);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let batch = samples(SAMPLES);
    let mut group = c.benchmark_group("kafka_broker");
    group.throughput(Throughput::Elements(SAMPLES as u64));
    group.sample_size(10);
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, encoding, disk) in [
        ("json", "json", false),
        ("protobuf", "protobuf", false),
        ("json_disk_buffer", "json", true),
    ] {
        let yaml = format!(
            "brokers: {}\ntopic: bench\nencoding: {encoding}\n",
            tansu.bootstrap()
        );
        let body = node::parse(&yaml).expect("yaml");
        let disk = disk.then(|| sink::disk_buffer(&dir.path().join("buffer")));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    total += runtime.block_on(run_sink(&kafka::TYPE, &body, &batch, disk.clone()));
                }
                total
            })
        });
    }
    group.finish();
}

/// The disk buffer alone: appends, and the recovery of 1 GiB.
fn disk_buffer(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let record = vec![7u8; 1024];
    let mut group = c.benchmark_group("disk_buffer");
    group.throughput(Throughput::Elements(10_000));
    group.sample_size(10);
    for sync in [false, true] {
        let name = if sync {
            "append_sync_per_500"
        } else {
            "append"
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let path = dir.path().join(name);
                let _ = std::fs::remove_dir_all(&path);
                let (mut log, _) = SegmentLog::open(&path, 1 << 34, 64 << 20).expect("open");
                let started = Instant::now();
                for i in 0..iterations * 10_000 {
                    log.append(&record).expect("append");
                    if i % 500 == 499 {
                        match sync {
                            true => log.sync().expect("sync"),
                            false => log.flush().expect("flush"),
                        }
                    }
                }
                log.flush().expect("flush");
                started.elapsed()
            })
        });
    }
    let path = dir.path().join("recovery");
    {
        let (mut log, _) = SegmentLog::open(&path, 1 << 34, 64 << 20).expect("open");
        for _ in 0..(1 << 30) / (record.len() + 28) {
            log.append(&record).expect("append");
        }
        log.sync().expect("sync");
    }
    group.throughput(Throughput::Bytes(1 << 30));
    let recover = || {
        let (_, recovery) = SegmentLog::open(&path, 1 << 34, 64 << 20).expect("open");
        assert!(recovery.pending > 1_000_000);
    };
    group.bench_function("recover_1GiB", |b| b.iter(recover));
    // From the disk itself, as after a reboot: only where the page cache may be
    // dropped (root on Linux).
    if drop_page_cache() {
        group.bench_function("recover_1GiB_cold", |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    drop_page_cache();
                    let started = Instant::now();
                    recover();
                    total += started.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

/// Writes dirty pages out and drops the page cache; `false` where that is not allowed.
fn drop_page_cache() -> bool {
    let synced = std::process::Command::new("sync")
        .status()
        .is_ok_and(|s| s.success());
    synced && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

criterion_group!(benches, bench, disk_buffer);
criterion_main!(benches);
