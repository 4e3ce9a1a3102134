//! What `validate` accepts, `run` can do: pipelines generated with values from the
//! whole range users can write (zero, tiny, huge, overflowing, malformed), each either
//! refused with a position, or built, started, run briefly and stopped in order with
//! no component failed (and no panic, which would fail a component).

use std::time::Duration;

use proptest::prelude::*;
use rigtap::topology::running::Running;

/// One of `usual` mostly, one of `hostile` now and then, so both the accepted and
/// the refused paths are walked in every run.
fn pick(
    usual: &'static [&'static str],
    hostile: &'static [&'static str],
) -> impl Strategy<Value = &'static str> {
    prop_oneof![
        12 => prop::sample::select(usual),
        1 => prop::sample::select(hostile),
    ]
}

fn duration() -> impl Strategy<Value = &'static str> {
    pick(
        &["1ms", "50ms", "1s", "1.5s", "10s", "5m", "365d"],
        &[
            "0s",
            "366d",
            "-1s",
            "1e19s",
            "10000000000000000000s10000000000000000000s",
            "soon",
        ],
    )
}

fn size() -> impl Strategy<Value = &'static str> {
    pick(
        &["64KiB", "1MiB", "16MiB", "1GiB"],
        &["0", "1", "2000TiB", "1e30", "-1MiB", "big"],
    )
}

fn count() -> impl Strategy<Value = &'static str> {
    pick(
        &["1", "7", "100", "10000"],
        &[
            "0",
            "1000000",
            "4000000000",
            "2305843009213693952",
            "1e12",
            "-5",
            "many",
        ],
    )
}

fn rate() -> impl Strategy<Value = &'static str> {
    pick(
        &["0.001", "0.5", "50", "20000"],
        &["0", "1e-20", "1e12", "NaN", ".inf", "-3"],
    )
}

/// A poll interval: within the per-miner call budget (5 polls at 10 calls/s), mostly.
fn interval() -> impl Strategy<Value = &'static str> {
    pick(
        &["500ms", "1s", "10s", "1h"],
        &["1ms", "50ms", "0s", "366d"],
    )
}

fn condition() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("kind == 'miner'".to_string()),
        Just("power_w > 100 and not (temp_chip_c >= 90)".to_string()),
        Just("site in ['a', 'b'] or hashrate_ths < 1".to_string()),
        Just("kind ==".to_string()),
        (1usize..60).prop_map(|n| format!("{}kind == 'miner'{}", "(".repeat(n), ")".repeat(n))),
        (1usize..400).prop_map(|n| vec!["power_w > 1"; n].join(" or ")),
        (1usize..40).prop_map(|n| format!("{}kind == 'miner'", "not ".repeat(n))),
    ]
}

/// A pipeline: generate → filter → normalise → parquet, beside a `bos` source of
/// unreachable miners into the same sink, with the generated values in every slot.
#[allow(clippy::too_many_arguments)]
fn pipeline(
    dir: &str,
    rate: &str,
    count: &str,
    miners: &str,
    condition: &str,
    durations: [&str; 6],
    size: &str,
    batches: &str,
) -> String {
    let [timeout, max_age, interval, ttl, idle, open_for] = durations;
    format!(
        "memory_budget: {size}
sources:
  gen: {{type: generate, rate: {rate}, count: {count}, miners: {miners}, batch_size: {count}}}
  fleet:
    type: bos
    targets: {{addresses: ['127.0.0.1:1']}}
    username: root
    password: root
    interval: {interval}
    connection_ttl: {ttl}
    stream_idle_timeout: {idle}
    breaker: {{open_for: {open_for}}}
transforms:
  keep:
    type: filter
    inputs: [gen]
    condition: \"{condition}\"
  clean: {{type: normalise, inputs: [keep, fleet], buffer: {{max_batches: {batches}}}}}
sinks:
  files:
    type: parquet
    inputs: [clean]
    path: {dir}
    batch: {{timeout: {timeout}, max_rows: {count}, max_bytes: {size}}}
    rotate: {{max_age: {max_age}, max_rows: {count}}}
api: {{enabled: false}}
"
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn accepted_configs_run_and_refused_ones_say_where(
        rate in rate(),
        count in count(),
        miners in count(),
        condition in condition(),
        (timeout, max_age, interval, ttl, idle, open_for) in (duration(), duration(), interval(), duration(), duration(), duration()),
        size in size(),
        batches in count(),
    ) {
        let durations = [timeout, max_age, interval, ttl, idle, open_for];
        let dir = tempfile::tempdir().unwrap();
        let yaml = pipeline(
            &dir.path().display().to_string(), rate, count, miners, &condition, durations, size, batches,
        );
        match rigtap::operator::config::from_str(&yaml, &|_| None) {
            Err(problems) => {
                prop_assert!(!problems.is_empty());
                let lines = yaml.lines().count();
                for p in &problems {
                    prop_assert!(
                        p.mark.line >= 1 && p.mark.line <= lines && p.mark.column >= 1,
                        "{}: {} is not a position in the file", p.mark, p.message
                    );
                }
            }
            Ok(config) => {
                eprintln!("accepted and ran: rate {rate}, count {count}, miners {miners}, durations {durations:?}, size {size}, batches {batches}");
                let runtime = tokio::runtime::Runtime::new().unwrap();
                runtime.block_on(async {
                    let mut running = Running::start(config.pipeline);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    running.stop();
                    tokio::time::timeout(Duration::from_secs(30), running.drained())
                        .await
                        .expect("an accepted pipeline stops in order");
                    let view = running.view();
                    for c in &view.components {
                        assert!(!c.stats.failed(), "`{}` failed on an accepted config:\n{yaml}", c.id);
                    }
                });
            }
        }
    }
}
