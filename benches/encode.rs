//! Encoding throughput of the stdout sink (samples/s), JSON against text.
//!
//! `cargo bench --bench encode`; compare the two in one run, as ratios.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rigtap::sample::{Sample, SampleKind};
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

criterion_group!(benches, bench);
criterion_main!(benches);
