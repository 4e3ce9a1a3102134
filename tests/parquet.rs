//! The parquet sink end to end: `rigtap run` writes a partitioned tree, and DuckDB (an
//! independent reader, from PyPI in the test venv) reads it back.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use support::net::free_port;
use support::python::run_script;
use support::scrape::{scrape_until, value};
use support::{finished, start};

/// Runs tests/py/parquet_read.py on `root` and parses what it prints.
fn duckdb(root: &Path, mode: &str) -> serde_json::Value {
    let output = run_script("parquet_read.py", &[root.as_os_str(), mode.as_ref()]);
    serde_json::from_slice(&output).expect("JSON from parquet_read.py")
}

/// Files under `root` whose names satisfy `keep`.
fn files(root: &Path, keep: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                dirs.push(path);
            } else if keep(&name) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".parquet.tmp")
}

#[test]
fn duckdb_reads_back_exactly_what_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (zstd, snappy) = (dir.path().join("zstd"), dir.path().join("snappy"));
    let yaml = format!(
        "
sources:
  gen: {{type: generate, count: 30000, miners: 13, seed: 5, batch_size: 500, labels: {{site: north, rack: r1}}}}
sinks:
  files:
    type: parquet
    inputs: [gen]
    path: {}
    labels: [site, rack]
    partition: site={{site}}/kind={{kind}}/date={{date}}/hour={{hour}}/
    batch: {{max_rows: 2000}}
    rotate: {{max_rows: 5000}}
  small:
    type: parquet
    inputs: [gen]
    path: {}
    labels: [site, rack]
    compression: snappy
    row_group_rows: 1000
  copy:
    type: stdout
    inputs: [gen]
",
        zstd.display(),
        snappy.display()
    );
    let mut rigtap = start(&yaml, &[]);
    let lines = rigtap.rest();
    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(finished(&logs, "files")["samples_out"], 30000);

    // What was sent, from the stdout copy of the same stream.
    let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let entry = sums
            .entry(v["miner_id"].as_str().unwrap().to_string())
            .or_default();
        entry.0 += v["hashrate_ths"].as_f64().unwrap();
        entry.1 += 1.0;
    }
    assert_eq!(lines.len(), 30000);

    for root in [&zstd, &snappy] {
        let table = duckdb(root, "table");
        assert_eq!(table["rows"], 30000, "{}", root.display());
        let types = &table["types"];
        assert_eq!(types["timestamp"], "TIMESTAMP WITH TIME ZONE");
        assert_eq!(types["hashrate_ths"], "DOUBLE");
        assert_eq!(types["shares_accepted"], "UBIGINT");
        assert_eq!(types["board"], "UINTEGER");
        assert_eq!(types["miner_id"], "VARCHAR");
        assert_eq!(types["kind"], "VARCHAR", "a partition column");
        assert!(types.get("date").is_some() && types.get("hour").is_some());
        let means = table["mean_hashrate"].as_object().unwrap();
        assert_eq!(means.len(), 13);
        for (miner, (sum, n)) in &sums {
            let read = means[miner].as_f64().unwrap();
            assert!(
                (read - sum / n).abs() < 1e-9,
                "{miner}: {read} vs {}",
                sum / n
            );
        }
        assert!(
            files(root, &|n| is_temporary(n)).is_empty(),
            "nothing half-written is left"
        );
    }
    // Rotation past 5,000 rows, checked after each write of at most 2,000: every file
    // but the smallest holds 5,000 to 6,999 rows, and the smallest no more.
    let per_file = duckdb(&zstd, "files");
    let mut rows: Vec<u64> = per_file
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .collect();
    rows.sort_unstable();
    assert!(rows.len() >= 5, "rotated by rows: {per_file}");
    assert!(
        rows[1..].iter().all(|n| (5000..7000).contains(n)) && rows[0] < 7000,
        "{rows:?}"
    );
    assert_eq!(rows.iter().sum::<u64>(), 30000);
    let zstd_files = files(&zstd, &|n| n.ends_with(".parquet"));
    assert!(
        zstd_files
            .iter()
            .all(|f| f.contains("/site=north/kind=miner/date=")),
        "{zstd_files:?}"
    );
}

#[test]
fn kill_9_leaves_only_complete_files_and_the_next_start_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = |rate: &str| {
        format!(
            "
sources:
  gen: {{type: generate, {rate}, miners: 10}}
sinks:
  files:
    type: parquet
    inputs: [gen]
    path: {}
    batch: {{max_rows: 500, timeout: 100ms}}
    rotate: {{max_rows: 3000, max_age: 300ms}}
",
            dir.path().display()
        )
    };
    let rigtap = start(&yaml("rate: 5000"), &[]);
    std::thread::sleep(Duration::from_millis(2500));
    rigtap.signal("KILL");
    let (code, _, _) = rigtap.finish(Duration::from_secs(10));
    assert_eq!(code, None, "killed by a signal");

    let visible = duckdb(dir.path(), "files");
    let visible = visible.as_object().unwrap();
    assert!(
        visible.len() >= 3,
        "files were finished while it ran: {visible:?}"
    );
    for (path, rows) in visible {
        assert!(
            rows.as_u64().is_some_and(|n| n > 0),
            "{path} must open cleanly: {rows}"
        );
    }

    let leftovers = files(dir.path(), &|n| is_temporary(n)).len();
    let rigtap = start(&yaml("count: 10"), &[]);
    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    if leftovers > 0 {
        let cleaned = logs
            .iter()
            .find(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("removed unfinished files"))
            })
            .unwrap_or_else(|| panic!("the restart reports the {leftovers} leftover(s): {stderr}"));
        assert_eq!(cleaned["leftovers"], leftovers as u64);
    }
    assert!(files(dir.path(), &|n| is_temporary(n)).is_empty());
}

/// The disk buffer records each visible file names in its metadata, checked against
/// its rows; all of them, ascending.
fn buffer_records(root: &Path) -> Vec<u64> {
    let files = duckdb(root, "records");
    let mut all = Vec::new();
    for (path, entry) in files.as_object().unwrap() {
        let (rows, ranges) = (entry[0].as_u64().unwrap(), entry[1].as_str().unwrap());
        let mut records = Vec::new();
        for run in ranges.split(',') {
            let (a, b) = run.split_once('-').unwrap_or((run, run));
            records.extend(a.parse::<u64>().unwrap()..=b.parse::<u64>().unwrap());
        }
        assert_eq!(
            records.len() as u64,
            rows,
            "{path} names one record per row"
        );
        all.extend(records);
    }
    all.sort_unstable();
    all
}

#[test]
fn kill_9_with_a_disk_buffer_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, buffer) = (dir.path().join("tree"), dir.path().join("buffer"));
    let yaml = |api: &str, source: &str, copy: &str| {
        format!(
            "
api: {{address: '{api}'}}
sources:
  {source}
sinks:
  {copy}
  files:
    type: parquet
    inputs: [gen]
    path: {}
    batch: {{max_rows: 500, timeout: 100ms}}
    rotate: {{max_rows: 4000, max_age: 1h}}
    buffer: {{type: disk, path: {}, max_size: 64MiB}}
",
            tree.display(),
            buffer.display()
        )
    };
    // Each miner's samples counted 1, 2, 3, ...; killed mid-stream, with files
    // finished, and samples in an open file or still waiting for one. The stdout copy takes each batch after the parquet
    // sink (consumers are served in the order of their names), so every batch it
    // printed had been handed to the parquet sink, which takes a batch only once it
    // is appended to its disk buffer.
    let api = format!("127.0.0.1:{}", free_port());
    let mut first = start(
        &yaml(
            &api,
            "gen: {type: generate, miners: 10, seed: 5}",
            "zcopy: {type: stdout, inputs: [gen]}",
        ),
        &["--progress", "off"],
    );
    let mut stdout = first.stdout.take().unwrap();
    let copy = std::thread::spawn(move || {
        let mut printed: BTreeMap<String, u64> = BTreeMap::new();
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut stdout, &mut line).unwrap_or(0) > 0 {
            // A line cut short by the kill is not one the copy printed.
            if let Ok(sample) = serde_json::from_str::<serde_json::Value>(&line) {
                let miner = sample["miner_id"].as_str().unwrap().to_string();
                let n = sample["shares_accepted"].as_u64().unwrap();
                let top = printed.entry(miner).or_default();
                *top = (*top).max(n);
            }
            line.clear();
        }
        printed
    });
    scrape_until(&format!("http://{api}"), Duration::from_secs(60), |s| {
        value(
            s,
            "rigtap_component_received_samples",
            "rigtap_component_received_samples_total",
            &[("component", "files")],
        ) >= 20_000.0
    });
    first.signal("KILL");
    let (code, _, _) = first.finish(Duration::from_secs(10));
    assert_eq!(code, None, "killed by a signal");
    let printed = copy.join().unwrap();
    let committed = duckdb(&tree, "shares")["rows"].as_u64().unwrap();
    let open = files(&tree, &|n| is_temporary(n)).len();
    assert!(
        committed >= 4000,
        "files finished ({committed} rows) at the kill"
    );

    // The restart writes what the buffer holds (its own source brings nothing).
    let api = format!("127.0.0.1:{}", free_port());
    let second = start(
        &yaml(&api, "gen: {type: generate, count: 0}", ""),
        &["--progress", "off"],
    );
    let (code, logs, stderr) = second.finish(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{stderr}");
    let shares = duckdb(&tree, "shares");
    let rows = shares["rows"].as_u64().unwrap();
    // A kill between a file's commit and its rename into view leaves it to the
    // restart, which finishes it and acknowledges its samples without writing them.
    let finished_at_start: Vec<u64> = logs
        .iter()
        .filter(|l| {
            l["message"] == "finished a parquet file the last run had committed when it stopped"
        })
        .map(|l| l["samples"].as_u64().unwrap())
        .collect();
    let recovered: u64 = finished_at_start.iter().sum();
    let ledger = finished(&logs, "files");
    let written = rows - committed - recovered;
    assert_eq!(
        (
            &ledger["samples_in"],
            &ledger["samples_out"],
            &ledger["dropped"]
        ),
        (&written.into(), &written.into(), &0.into()),
        "the buffer's samples, all written: {ledger}"
    );
    // Samples not yet in a file at the kill are in no temporary either.
    let unfinished = open - finished_at_start.len();
    if unfinished > 0 {
        assert!(
            logs.iter().any(|l| l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("removed unfinished files"))
                && l["leftovers"] == unfinished as u64),
            "the restart reports the {unfinished} unfinished file(s): {stderr}"
        );
    }
    assert_eq!(shares["distinct"], rows, "no sample twice: {shares}");
    assert_eq!(shares["contiguous"], true, "none missing: {shares}");
    let copied: u64 = printed.values().sum();
    for (miner, n) in &printed {
        let top = shares["top"][miner].as_u64().unwrap_or(0);
        assert!(
            top >= *n,
            "{miner}: the copy printed its sample {n}, the files end at {top}"
        );
    }
    let records = buffer_records(&tree);
    assert_eq!(records.len() as u64, rows);
    assert!(
        records.windows(2).all(|w| w[0] < w[1]),
        "each buffer record in one file only"
    );
    assert!(files(&tree, &|n| is_temporary(n)).is_empty());
    assert!(
        std::fs::read_dir(&buffer)
            .unwrap()
            .all(|e| e.unwrap().file_name() != "committing"),
        "no commit left half done"
    );
    eprintln!(
        "kill -9 mid-stream: {committed} rows in finished files, {open} open; {rows} rows after the restart, once each; the copy had printed {copied}"
    );
}

/// Refused when the pipeline is loaded, at its place, before any sample is taken in.
#[test]
fn an_unwritable_path_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-directory");
    std::fs::write(&blocker, "x").unwrap();
    let yaml = format!(
        "
sources:
  gen: {{type: generate, count: 100}}
sinks:
  files: {{type: parquet, inputs: [gen], path: {}/out}}
",
        blocker.display()
    );
    let rigtap = start(&yaml, &[]);
    let (code, _, stderr) = rigtap.finish(Duration::from_secs(30));
    assert_eq!(code, Some(2), "an invalid pipeline: {stderr}");
    assert!(
        stderr.contains(&format!(
            ":5:47: {} is a file, not a directory, so {}/out cannot be made",
            blocker.display(),
            blocker.display()
        )),
        "{stderr}"
    );
}

#[test]
fn partition_templates_are_checked_at_validate_time() {
    let yaml = "
sources:
  gen: {type: generate}
sinks:
  files:
    type: parquet
    inputs: [gen]
    path: /tmp/x
    partition: site={site}/
";
    let problems = rigtap::operator::config::from_str(yaml, &|_| None).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!((problems[0].mark.line, problems[0].mark.column), (9, 16));
    assert!(
        problems[0].message.contains("unknown field `{site}`"),
        "{}",
        problems[0].message
    );
}

/// `generate` (4,000 samples from 40 miners, 100 each) into a parquet sink at `root`
/// partitioned by miner with `settings`, under `budget`.
fn partitioned_pipeline(root: &Path, settings: &str, budget: &str) -> String {
    format!(
        "
memory_budget: {budget}
sources:
  gen: {{type: generate, count: 4000, miners: 40, seed: 9, batch_size: 200}}
sinks:
  files:
    type: parquet
    inputs: [gen]
    path: {}
    partition: miner_id={{miner_id}}/
    {settings}
",
        root.display()
    )
}

/// Runs [`partitioned_pipeline`] to its end; returns the root, the logs and the sink's
/// final counts.
fn partitioned_by_miner(
    settings: &str,
    budget: &str,
) -> (tempfile::TempDir, Vec<serde_json::Value>, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let yaml = partitioned_pipeline(dir.path(), settings, budget);
    let rigtap = start(&yaml, &[]);
    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(120));
    assert_eq!(code, Some(0), "{stderr}");
    let counts = finished(&logs, "files");
    (dir, logs, counts)
}

fn warned(logs: &[serde_json::Value], words: &str) -> bool {
    logs.iter()
        .any(|l| l["level"] == "WARN" && l["message"].as_str().is_some_and(|m| m.contains(words)))
}

#[test]
fn more_partitions_than_max_open_files_finish_files_early_and_lose_nothing() {
    // Each miner's 100 samples are encoded 25 at a time: every partition opens a file
    // four times over, with room for 4 of the 40.
    let (dir, logs, counts) =
        partitioned_by_miner("max_open_files: 4\n    batch: {max_rows: 25}", "256MiB");
    assert_eq!(counts["samples_in"], 4000);
    assert_eq!(counts["samples_out"], 4000, "{counts}");
    assert_eq!(counts["dropped"], 0);
    assert_eq!(duckdb(dir.path(), "table")["rows"], 4000);
    let written = files(dir.path(), &|n| n.ends_with(".parquet")).len();
    assert!(written > 40, "files were finished early: {written}");
    assert!(
        warned(&logs, "least recently written files are finished early"),
        "the log says the cap binds and what to change"
    );
    assert!(files(dir.path(), &|n| is_temporary(n)).is_empty());
}

/// At the end the files of 40 partitions are finished four at a time, and one
/// partition's directory cannot be made (a file in its place). The writes under way
/// are seen to their end: what reached files is counted delivered and DuckDB reads it,
/// the rest is counted dropped, and the run fails naming the path.
#[test]
fn a_partition_failing_while_files_finish_together_leaves_nothing_uncounted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("out");
    std::fs::create_dir(&root).unwrap();
    let blocker = root.join("miner_id=gen-00007");
    std::fs::write(&blocker, "x").unwrap();
    // Nothing is written before the end: each miner's 100 samples wait in memory.
    let yaml = partitioned_pipeline(&root, "batch: {max_rows: 100000, timeout: 5m}", "256MiB");
    let (code, logs, stderr) = start(&yaml, &[]).finish(Duration::from_secs(120));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&blocker.display().to_string()), "{stderr}");
    let counts = finished(&logs, "files");
    let count = |key: &str| counts[key].as_u64().unwrap();
    assert_eq!(count("samples_in"), 4000);
    assert_eq!(count("samples_out") + count("dropped"), 4000, "{counts}");
    // Partitions are finished in order of their names: the seven before the blocked
    // one were launched before it failed, and were seen to their end.
    assert!(count("samples_out") >= 700, "{counts}");
    assert!(count("dropped") >= 100, "the blocked miner's: {counts}");
    assert_eq!(duckdb(&root, "table")["rows"], count("samples_out"));
    assert!(files(&root, &|n| is_temporary(n)).is_empty());
}

#[test]
fn a_sink_short_of_memory_budget_writes_out_instead_of_holding_and_loses_nothing() {
    // 64 KiB cannot hold one batch of 200 samples beside what the sink buffers: every
    // batch is written out into files finished at once.
    let (dir, logs, counts) = partitioned_by_miner("batch: {timeout: 5m}", "64KiB");
    assert_eq!(counts["samples_out"], 4000, "{counts}");
    assert_eq!(counts["dropped"], 0);
    assert_eq!(duckdb(dir.path(), "table")["rows"], 4000);
    assert!(
        warned(
            &logs,
            "the memory budget has no room for what this sink holds"
        ),
        "the log says the budget binds and what to change"
    );
    let written = files(dir.path(), &|n| n.ends_with(".parquet")).len();
    assert!(written >= 40, "{written}");
}
