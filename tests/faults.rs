//! The fault suite: the real binary under a full disk, `/dev/full`, an unwritable
//! directory, a closed pipe, SIGTERM, SIGHUP (a reload) and SIGINT twice. For each, the sink's
//! ledger balances: every sample the source emitted is delivered or counted as dropped
//! with a reason, and nothing is unaccounted for. Each test prints its row of the
//! table (fault | emitted | delivered | dropped (reasons) | unaccounted).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{ledger, start, start_writing_to, Ledger};

/// A generate source `gen` into the sink `out` described by `sink` (YAML lines).
fn pipeline(generate: &str, sink: &str) -> String {
    format!("sources:\n  gen: {{type: generate, {generate}}}\nsinks:\n  out:\n    inputs: [gen]\n{sink}")
}

fn row(fault: &str, ledger: &Ledger) {
    eprintln!("fault table: {fault} | {ledger}");
    assert_eq!(
        ledger.unaccounted, 0,
        "{fault}: the ledger does not balance: {ledger:?}"
    );
}

/// A small tmpfs (root only), unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts one of `size` with `options`, or says why the test is skipped.
    fn mount(size: &str) -> Option<Tmpfs> {
        if !is_root() {
            eprintln!("skipped: mounting a tmpfs needs root (this test runs as uid != 0)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("skipped: cannot mount a tmpfs here (no CAP_SYS_ADMIN?)");
            return None;
        }
        Some(Tmpfs { path, _dir: dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn parquet_into(path: &Path) -> String {
    format!(
        "    type: parquet\n    path: {}\n    batch: {{max_rows: 5000}}\n    rotate: {{max_rows: 20000}}\n",
        path.display()
    )
}

#[test]
fn a_full_disk_fails_the_parquet_sink_and_every_sample_is_counted() {
    let Some(disk) = Tmpfs::mount("512k") else {
        return;
    };
    let yaml = pipeline("count: 400000, miners: 500", &parquet_into(&disk.path));
    let (code, logs, stderr) = start(&yaml, &[]).finish(Duration::from_secs(60));
    assert_eq!(code, Some(1), "a failed sink fails the run: {stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    let ledger = ledger(&logs, "gen", "out");
    assert!(ledger.drops.contains("write_failed="), "{ledger:?}");
    row("parquet on a full 512 KiB disk", &ledger);
}

/// A directory the sink cannot make while it runs: a file where its partitions'
/// directories go. (`validate` refuses a sink's own path that cannot be made; what is
/// made below it is found out only by writing.)
#[test]
fn a_directory_that_cannot_be_made_fails_the_parquet_sink_and_every_sample_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out");
    std::fs::create_dir(&path).unwrap();
    let blocker = path.join("kind=miner");
    std::fs::write(&blocker, "x").unwrap();
    let yaml = pipeline("count: 20000", &parquet_into(&path));
    let (code, logs, stderr) = start(&yaml, &[]).finish(Duration::from_secs(60));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&blocker.display().to_string()), "{stderr}");
    row(
        "parquet into a directory that cannot be made",
        &ledger(&logs, "gen", "out"),
    );
}

#[test]
fn dev_full_fails_the_stdout_sink_and_every_sample_is_counted() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let yaml = pipeline("count: 2000, batch_size: 100", "    type: stdout\n");
    let rigtap = start_writing_to(&yaml, &[], Stdio::from(full));
    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(60));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("writing to stdout failed"), "{stderr}");
    let ledger = ledger(&logs, "gen", "out");
    assert!(
        ledger.drops.contains("write_failed=100"),
        "the batch whose write failed: {ledger:?}"
    );
    row("stdout to /dev/full", &ledger);
}

#[test]
fn a_closed_pipe_stops_quietly_and_every_sample_is_counted() {
    let yaml = pipeline("rate: 5000, miners: 20", "    type: stdout\n");
    let mut rigtap = start(&yaml, &[]);
    for _ in 0..5 {
        rigtap.line().expect("a line before the pipe closes");
    }
    drop(rigtap.stdout.take());
    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(60));
    assert_eq!(code, Some(0), "a closed pipe is not a failure: {stderr}");
    let ledger = ledger(&logs, "gen", "out");
    assert!(ledger.drops.contains("output_closed="), "{ledger:?}");
    row("stdout pipe closed by its reader", &ledger);
}

/// Stops a pipeline that writes Parquet with `signal` once samples flow; returns the
/// exit code and the ledger.
fn signalled(signal: &str) -> (Option<i32>, Ledger, String) {
    let dir = tempfile::tempdir().unwrap();
    let yaml = pipeline("rate: 20000, miners: 50", &parquet_into(dir.path()));
    let rigtap = start(&yaml, &[]);
    std::thread::sleep(Duration::from_millis(1500));
    rigtap.signal(signal);
    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(60));
    (code, ledger(&logs, "gen", "out"), stderr)
}

#[test]
fn sigterm_drains_everything() {
    let (code, ledger, stderr) = signalled("TERM");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(ledger.emitted > 1000 && ledger.dropped == 0, "{ledger:?}");
    row("SIGTERM while writing Parquet", &ledger);
}

#[test]
fn sighup_reloads_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = pipeline("rate: 20000, miners: 50", &parquet_into(dir.path()));
    let rigtap = start(&yaml, &[]);
    std::thread::sleep(Duration::from_millis(1000));
    rigtap.signal("HUP");
    std::thread::sleep(Duration::from_millis(1000));
    rigtap.signal("TERM");
    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(60));
    assert_eq!(
        code,
        Some(0),
        "SIGHUP no longer kills the process (129): {stderr}"
    );
    assert!(
        logs.iter()
            .any(|l| l["message"] == "reloaded: nothing changed"),
        "{stderr}"
    );
    let ledger = ledger(&logs, "gen", "out");
    assert!(ledger.emitted > 1000 && ledger.dropped == 0, "{ledger:?}");
    row("SIGHUP (a reload) while writing Parquet", &ledger);
}

#[test]
fn sigint_twice_abandons_and_counts_what_it_abandons() {
    // Nobody reads stdout: the pipe fills, the sink blocks in a write, its queue
    // fills, and the second SIGINT finds samples everywhere.
    let yaml = pipeline("rate: 50000, miners: 50", "    type: stdout\n");
    let rigtap = start(&yaml, &[]);
    std::thread::sleep(Duration::from_millis(2000));
    rigtap.signal("INT");
    std::thread::sleep(Duration::from_millis(500));
    rigtap.signal("INT");
    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(60));
    assert_eq!(code, Some(130), "{stderr}");
    let ledger = ledger(&logs, "gen", "out");
    assert!(ledger.drops.contains("abandoned="), "{ledger:?}");
    row("SIGINT twice with the sink blocked", &ledger);
    // The sink's own ledger balances too (what it had queued is counted received,
    // then dropped), and it received what its source sent.
    let abandoned = |id: &str, key: &str| {
        logs.iter()
            .find(|l| l["message"] == "component abandoned" && l["component"] == id)
            .unwrap_or_else(|| panic!("no `component abandoned` line for {id}: {stderr}"))[key]
            .as_u64()
            .unwrap_or(0)
    };
    let received = abandoned("out", "samples_in");
    assert_eq!(
        received,
        abandoned("out", "samples_out") + abandoned("out", "dropped"),
        "samples_in = samples_out + dropped: {stderr}"
    );
    assert_eq!(abandoned("gen", "samples_out"), received, "{stderr}");
}

#[test]
fn sighup_while_stopping_is_ignored_not_taken_as_a_second_signal() {
    // Nobody reads stdout at first: the ordered stop cannot finish, and a SIGHUP
    // (`systemctl reload`) arrives while it waits.
    let yaml = pipeline("rate: 50000, miners: 50", "    type: stdout\n");
    let mut rigtap = start(&yaml, &[]);
    std::thread::sleep(Duration::from_millis(2000));
    rigtap.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    rigtap.signal("HUP");
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        rigtap.child.try_wait().expect("wait").is_none(),
        "a SIGHUP while stopping abandoned the pipeline"
    );
    // Reading stdout lets the ordered stop finish: everything is delivered.
    let delivered = rigtap.rest().len() as u64;
    let (code, logs, stderr) = rigtap.finish(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        logs.iter().any(|l| l["level"] == "INFO"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("a reload is not possible while stopping"))),
        "{stderr}"
    );
    let ledger = ledger(&logs, "gen", "out");
    assert!(ledger.dropped == 0, "{ledger:?}");
    assert_eq!(ledger.delivered, delivered, "{ledger:?}");
    row("SIGTERM, then SIGHUP, with the sink blocked", &ledger);
}
