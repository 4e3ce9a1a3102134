//! The end-to-end load harness: simulated fleets in processes of their own (at most
//! 5,000 miners each, under a 20,000 open-file limit), the collector on top of them,
//! and a table of what it did: miners online, samples per second expected and
//! delivered, CPU, resident memory (and per miner), sample age at delivery
//! (p50/p95/p99), skipped and late polls, and drops. Delivered samples include the
//! `gap` samples that report missed polls.
//!
//! ```text
//! cargo bench --bench load -- --miners 1000,5000,10000 [--mode stream|polls|firehose]
//!     [--sink stdout|parquet|kafka|kafka-away|blocked] [--partition TEMPLATE]
//!     [--budget 256MiB] [--duration 120s] [--warmup 30s] [--soak 30m] [--ceiling]
//!     [--collector PATH]
//! ```
//!
//! `stream` holds every miner's status stream and polls every 10 s (the default
//! profile); `polls` polls only; `firehose` polls every `--interval` (500 ms) with the
//! simulator's think time removed, for throughput. `kafka` starts tansu (in memory, a
//! topic of 3 partitions; needs the test venv of tests/run.sh for kafka-python, which
//! creates the topic) and delivers to it. `blocked` is a stdout nobody reads, and
//! `kafka-away` a Kafka sink whose broker never answers: with them, memory must stay
//! within the budget plus a cost per miner. Rates are measured from the end of the
//! warmup, or later, once every miner has been online for a poll interval. `--soak`
//! prints a row a minute for its length from then, each the mean so far. `--ceiling`
//! also measures, in this process, what one core does with the same answers and no
//! network: decode the protobuf, make the samples, build the Arrow batches and encode
//! Parquet; the firehose's samples per collector core are compared with it.
//! `--collector` runs another build of rigtap as the collector (the simulators stay
//! this one), to compare builds in one sitting; CPU and RSS are those of the process
//! it starts, so a wrapper script should `exec` rigtap (heaptrack, which cannot,
//! reports its own figures), and the whole process group is stopped at the end. It
//! runs unchanged on bigger machines.
//!
//! Run by `cargo test --all-targets` (no `--bench` argument), it only checks that it
//! works: 100 miners for 10 s, measured from 5 s, with samples delivered in the window;
//! the test suite holds no scale run.

#[path = "common/answers.rs"]
mod answers;
#[path = "../tests/support/kafka.rs"]
mod kafka;
#[path = "../tests/support/net.rs"]
#[allow(dead_code)] // the harness needs no miner's address
mod net;
#[path = "../tests/support/python.rs"]
mod python;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rigtap::operator::process::{cpu_seconds, rss_kib};
use rigtap::toolkit::units::HumanDuration;

/// Miners per simulator process: two open files each, under a 20,000 limit.
const PER_SIMULATOR: usize = 5000;

struct Options {
    miners: Vec<usize>,
    mode: String,
    sink: String,
    partition: Option<String>,
    budget: String,
    duration: Duration,
    warmup: Duration,
    soak: Option<Duration>,
    interval: HumanDuration,
    ceiling: bool,
    collector: Option<PathBuf>,
    /// Run by `cargo test` (no `--bench`): the short run of the test suite.
    smoke: bool,
}

fn parse() -> Options {
    let mut options = Options {
        miners: vec![1000],
        mode: "stream".into(),
        sink: "stdout".into(),
        partition: None,
        budget: "256MiB".into(),
        duration: Duration::from_secs(120),
        warmup: Duration::from_secs(30),
        soak: None,
        interval: HumanDuration(Duration::from_millis(500)),
        ceiling: false,
        collector: None,
        // `cargo bench` passes `--bench`; `cargo test` runs a bench target without it.
        smoke: !std::env::args().any(|a| a == "--bench"),
    };
    let seconds = |text: &str| -> Duration {
        let text = text.trim();
        let (number, unit) = text.split_at(
            text.find(|c: char| !c.is_ascii_digit())
                .unwrap_or(text.len()),
        );
        let n: u64 = number
            .parse()
            .expect("a number of seconds, minutes or hours");
        Duration::from_secs(match unit {
            "" | "s" => n,
            "m" => n * 60,
            "h" => n * 3600,
            _ => panic!("`{text}`: write 90s, 5m or 1h"),
        })
    };
    if options.smoke {
        options.miners = vec![100];
        options.duration = Duration::from_secs(10);
        options.warmup = Duration::from_secs(5);
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--miners" => {
                options.miners = value()
                    .split(',')
                    .map(|n| n.parse().expect("a count"))
                    .collect()
            }
            "--mode" => options.mode = value(),
            "--sink" => options.sink = value(),
            "--partition" => options.partition = Some(value()),
            "--budget" => options.budget = value(),
            "--duration" => options.duration = seconds(&value()),
            "--warmup" => options.warmup = seconds(&value()),
            "--soak" => options.soak = Some(seconds(&value())),
            "--interval" => {
                options.interval = value().parse().unwrap_or_else(|e: String| panic!("{e}"))
            }
            "--ceiling" => options.ceiling = true,
            "--collector" => options.collector = Some(value().into()),
            // cargo bench passes this to every bench binary.
            "--bench" => {}
            other => panic!("unknown option {other}; see the doc comment of benches/load.rs"),
        }
    }
    options
}

fn main() {
    let options = parse();
    let rigtap = PathBuf::from(env!("CARGO_BIN_EXE_rigtap"));
    let ceiling = options.ceiling.then(ceiling::measure);
    println!(
        "\nmode {}, sink {}{}, budget {}",
        options.mode,
        options.sink,
        options
            .partition
            .as_deref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default(),
        options.budget
    );
    println!("| miners | online | samples/s expected | delivered/s | collector CPU (cores) | RSS MiB | RSS KiB/miner | simulators RSS MiB | age p50/p95/p99 | polls skipped | polls late | dropped |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for &miners in &options.miners {
        let row = run(&rigtap, miners, &options);
        rows.push(row);
    }
    if options.smoke {
        // The run of the test suite: its window must have measured something.
        for row in &rows {
            assert!(
                row.delivered_per_s > 0.0 && row.cores > 0.0,
                "{} miners: the window measured no delivery or no CPU",
                row.miners
            );
        }
    }
    if rows.len() > 1 {
        let (first, last) = (&rows[0], &rows[rows.len() - 1]);
        let slope = (last.rss_kib - first.rss_kib) / (last.miners - first.miners) as f64;
        println!(
            "\nRSS slope from {} to {} miners: {slope:.1} KiB per miner",
            first.miners, last.miners
        );
    }
    if let (Some(ceiling), Some(row)) = (ceiling, rows.last()) {
        let per_core = row.delivered_per_s / row.cores.max(0.01);
        println!(
            "\nceiling (one core, no network: decode + samples + Arrow + Parquet): {ceiling:.0} samples/s; collector: {per_core:.0} samples/s per core = {:.0}% of the ceiling",
            100.0 * per_core / ceiling
        );
    }
}

/// One run's figures over its steady window.
struct Row {
    miners: usize,
    delivered_per_s: f64,
    cores: f64,
    rss_kib: f64,
}

fn run(rigtap: &Path, miners: usize, options: &Options) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let firehose = options.mode == "firehose";
    let simulators = start_simulators(rigtap, miners, dir.path(), firehose);
    let inventory = dir.path().join("fleet.csv");
    merge_inventories(&simulators, &inventory);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Kept until the run ends; stopped when dropped.
    let tansu = (options.sink == "kafka").then(|| {
        let tansu = kafka::Tansu::start();
        tansu.create_topics(&["fleet"], 3);
        tansu
    });
    let bootstrap = match options.sink.as_str() {
        // A broker that is not there: nothing listens on the port.
        "kafka-away" => Some(format!("127.0.0.1:{}", net::free_port())),
        _ => tansu.as_ref().map(kafka::Tansu::bootstrap),
    };
    let config = dir.path().join("pipeline.yaml");
    let yaml = pipeline(options, &inventory, port, dir.path(), bootstrap.as_deref());
    std::fs::write(&config, yaml).unwrap();
    let stdout = match options.sink.as_str() {
        "blocked" => Stdio::piped(),
        _ => Stdio::null(),
    };
    let log = std::fs::File::create(dir.path().join("collector.log")).unwrap();
    let mut collector = Command::new(options.collector.as_deref().unwrap_or(rigtap))
        .args(["--log-format", "json", "run", "-c"])
        .arg(&config)
        .args(["--progress", "off"])
        .stdout(stdout)
        .stderr(log)
        // Its own process group, stopped whole: a `--collector` wrapper (heaptrack's
        // script, say) runs rigtap as its child.
        .process_group(0)
        .spawn()
        .expect("start the collector");
    // A blocked sink: the pipe is held open and never read.
    let _unread = collector.stdout.take();
    let api = format!("127.0.0.1:{port}");
    let pids: Vec<u32> = simulators.iter().map(|s| s.child.id()).collect();

    let started = Instant::now();
    // A soak runs its length from the window's opening; the limit stops a collector
    // whose API never answers.
    let limit = match options.soak {
        Some(soak) => 2 * options.warmup + soak + Duration::from_secs(120),
        None => options.duration,
    };
    let mut first: Option<Sample> = None;
    let mut last: Option<Sample> = None;
    let mut steps = Steps::default();
    let mut next_row = started;
    let mut printed = None;
    let mut minutes = 0;
    let mut all_online: Option<Instant> = None;
    while started.elapsed() < limit {
        std::thread::sleep(Duration::from_secs(1));
        let Some(sample) = Sample::take(&api, collector.id(), &pids) else {
            continue;
        };
        if sample.online >= miners as f64 && all_online.is_none() {
            all_online = Some(sample.at);
            let at = sample.at.duration_since(started).as_secs_f64();
            eprintln!("{miners} miners: all online at {at:.0} s");
        }
        // The window opens after the warmup, once every miner has been online for a
        // poll interval (a large fleet is still connecting at the end of a short
        // warmup), or at twice the warmup (at most half the run) if some never come
        // online by then.
        let settled = all_online.is_some_and(|at| at.elapsed() >= poll_interval(options));
        let elapsed = started.elapsed();
        let late = elapsed >= (2 * options.warmup).min(limit / 2);
        if first.is_none() && elapsed >= options.warmup && (settled || late) {
            let from = elapsed.as_secs_f64();
            eprintln!("{miners} miners: measured from {from:.0} s");
            first = Some(sample.clone());
            next_row = Instant::now() + Duration::from_secs(60);
        } else if let (Some(_), Some(last)) = (&first, &last) {
            steps.look(last, &sample);
        }
        if let (Some(soak), Some(first)) = (options.soak, &first) {
            if Instant::now() >= next_row {
                minutes += 1;
                let row = print_row(miners, options, (first, &sample), &steps, Some(minutes));
                printed = Some(row);
                next_row += Duration::from_secs(60);
                if minutes * 60 >= soak.as_secs() {
                    break;
                }
            }
        }
        last = Some(sample);
    }
    let group = format!("-{}", collector.id());
    let signal = |name: &str| Command::new("kill").args([name, "--", &group]).status();
    let _ = signal("-TERM");
    if wait(&mut collector, Duration::from_secs(60)).is_none() {
        let _ = signal("-KILL");
        let _ = collector.wait();
    }
    drop(simulators);
    let (Some(first), Some(last)) = (first, last) else {
        panic!(
            "the collector's API never answered; see {}",
            dir.path().join("collector.log").display()
        );
    };
    printed.unwrap_or_else(|| print_row(miners, options, (&first, &last), &steps, None))
}

fn print_row(
    miners: usize,
    options: &Options,
    (first, last): (&Sample, &Sample),
    steps: &Steps,
    minute: Option<u64>,
) -> Row {
    let seconds = last.at.duration_since(first.at).as_secs_f64().max(0.001);
    let delivered = steps
        .per_second()
        .unwrap_or((last.delivered - first.delivered) / seconds);
    let cores = (last.cpu - first.cpu) / seconds;
    let expected = expected_per_second(miners, options);
    let ages = quantiles(&last.age, &first.age);
    let rss_kib = last.rss_kib;
    let soak = minute.map(|m| format!(" (at {m} min)")).unwrap_or_default();
    println!(
        "| {miners}{soak} | {:.0} | {expected:.0} | {delivered:.0} | {cores:.2} | {:.0} | {:.1} | {:.0} | {ages} | {:.0} | {:.0} | {:.0} |",
        last.online,
        rss_kib / 1024.0,
        rss_kib / miners as f64,
        last.simulators_rss_kib / 1024.0,
        last.skipped - first.skipped,
        last.late - first.late,
        last.dropped,
    );
    std::io::stdout().flush().unwrap();
    Row {
        miners,
        delivered_per_s: delivered,
        cores,
        rss_kib,
    }
}

/// The window's deliveries, counted from the first look at which the sink's count rose
/// to the last. A Parquet sink counts a file's samples when it finishes the file (every
/// 10 s here), so the count rises in steps, and a window cut anywhere between them
/// counts a file more or less: 17% of a 60 s window.
#[derive(Default)]
struct Steps {
    first: Option<(Instant, f64)>,
    last: Option<(Instant, f64)>,
}

impl Steps {
    fn look(&mut self, before: &Sample, now: &Sample) {
        if now.delivered > before.delivered {
            let step = (now.at, now.delivered);
            self.first.get_or_insert(step);
            self.last = Some(step);
        }
    }

    /// Samples a second between the first and the last rise, once there are two.
    fn per_second(&self) -> Option<f64> {
        let ((from, before), (to, after)) = (self.first?, self.last?);
        let seconds = to.duration_since(from).as_secs_f64();
        (seconds > 0.0).then(|| (after - before) / seconds)
    }
}

/// Samples a second the fleet should produce: every poll of a miner makes one miner
/// sample and one per board (three for every simulated model).
fn expected_per_second(miners: usize, options: &Options) -> f64 {
    miners as f64 * 4.0 / poll_interval(options).as_secs_f64()
}

/// How often each miner is polled: `--interval` in firehose mode, else the default
/// profile's 10 s.
fn poll_interval(options: &Options) -> Duration {
    match options.mode.as_str() {
        "firehose" => options.interval.0,
        _ => Duration::from_secs(10),
    }
}

fn pipeline(
    options: &Options,
    inventory: &Path,
    port: u16,
    dir: &Path,
    kafka: Option<&str>,
) -> String {
    let source = match options.mode.as_str() {
        "stream" => String::new(),
        "polls" => "    stream: false\n".into(),
        "firehose" => format!(
            "    stream: false\n    interval: {}\n    rate: {{connects: 500, rpcs: 1000000, rpcs_per_miner: 100}}\n    batch_size: 5000\n",
            options.interval
        ),
        other => panic!("unknown mode {other}: stream, polls or firehose"),
    };
    let sink = match options.sink.as_str() {
        "stdout" | "blocked" => "    type: stdout\n".to_string(),
        // Files finished every 10 s: the sink counts a sample delivered once its file
        // is finished, so a run of a few minutes with the default 5 m would show none.
        "parquet" => format!(
            "    type: parquet\n    path: {}\n    rotate: {{max_age: 10s}}\n{}",
            dir.join("parquet").display(),
            options
                .partition
                .as_ref()
                .map(|p| format!("    partition: \"{p}\"\n"))
                .unwrap_or_default()
        ),
        "kafka" | "kafka-away" => format!(
            "    type: kafka\n    brokers: {}\n    topic: fleet\n",
            kafka.expect("a broker for the kafka sink")
        ),
        other => panic!("unknown sink {other}: stdout, parquet, kafka, kafka-away or blocked"),
    };
    format!(
        "memory_budget: {}\napi: {{address: 127.0.0.1:{port}}}\nsources:\n  fleet:\n    type: bos\n    profile: default\n    targets: {{inventory: {}}}\n    username: root\n    password: root\n{source}transforms:\n  clean: {{type: normalise, inputs: [fleet]}}\nsinks:\n  out:\n    inputs: [clean]\n{sink}",
        options.budget,
        inventory.display()
    )
}

struct Simulator {
    child: Child,
    inventory: PathBuf,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Simulators of at most [`PER_SIMULATOR`] miners, each on a free block of loopback
/// drawn at random (as the tests' fleets are, so that a harness run beside the test
/// suite or another run does not collide), ready when they return. Each block is drawn
/// once the simulator before listens on its own.
fn start_simulators(rigtap: &Path, miners: usize, dir: &Path, firehose: bool) -> Vec<Simulator> {
    let count = miners.div_ceil(PER_SIMULATOR);
    (0..count)
        .map(|i| {
            let size = PER_SIMULATOR.min(miners - i * PER_SIMULATOR);
            let first = net::free_block(size);
            let inventory = dir.join(format!("sim-{i}.csv"));
            let mut command = Command::new(rigtap);
            command
                .args(["--log-level", "warn", "sim", "--miners", &size.to_string()])
                .args(["--first", &first.to_string(), "--seed", &i.to_string()])
                .arg("--inventory")
                .arg(&inventory)
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            if firehose {
                command.arg("--firehose");
            }
            let mut simulator = Simulator {
                child: command.spawn().expect("start a simulator"),
                inventory,
            };
            let stdout = simulator.child.stdout.take().expect("stdout");
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            assert!(
                line.starts_with("ready"),
                "a simulator did not start: {line}"
            );
            simulator
        })
        .collect()
}

/// One inventory of every simulator's miners, with ids made unique across them.
fn merge_inventories(simulators: &[Simulator], path: &Path) {
    let mut out = String::from("id,address,site,rack,model\n");
    for (i, simulator) in simulators.iter().enumerate() {
        let text = std::fs::read_to_string(&simulator.inventory).unwrap();
        for line in text.lines().skip(1) {
            out.push_str(&format!("s{i}-{line}\n"));
        }
    }
    std::fs::write(path, out).unwrap();
}

/// The child's exit status, if it exits within `limit`.
fn wait(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// What one second's look found.
#[derive(Clone)]
struct Sample {
    at: Instant,
    online: f64,
    delivered: f64,
    skipped: f64,
    late: f64,
    dropped: f64,
    /// Cumulative counts of the sink's sample-age histogram, by bucket bound.
    age: Vec<(String, f64)>,
    cpu: f64,
    rss_kib: f64,
    simulators_rss_kib: f64,
}

impl Sample {
    fn take(api: &str, collector: u32, simulators: &[u32]) -> Option<Sample> {
        let metrics = get(api, "/metrics")?;
        let sum = |name: &str, filter: &str| -> f64 {
            metrics
                .lines()
                .filter(|l| l.starts_with(name) && l.contains(filter))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        let age = metrics
            .lines()
            .filter(|l| l.starts_with("rigtap_sink_sample_age_seconds_bucket"))
            .filter_map(|l| {
                let le = l.split("le=\"").nth(1)?.split('"').next()?.to_string();
                Some((le, l.rsplit(' ').next()?.parse().ok()?))
            })
            .collect();
        let (cpu, rss_kib) = process(collector)?;
        Some(Sample {
            at: Instant::now(),
            online: sum("rigtap_source_miners_in_state{", "state=\"online\""),
            delivered: sum("rigtap_component_sent_samples_total{", "kind=\"sink\""),
            skipped: sum("rigtap_source_polls_skipped_total{", ""),
            late: sum("rigtap_source_polls_late_total{", ""),
            dropped: sum("rigtap_component_dropped_samples_total{", ""),
            age,
            cpu,
            rss_kib,
            simulators_rss_kib: simulators
                .iter()
                .filter_map(|p| process(*p))
                .map(|(_, r)| r)
                .sum(),
        })
    }
}

/// CPU seconds and resident KiB of process `pid`, from /proc.
fn process(pid: u32) -> Option<(f64, f64)> {
    let pid = pid.to_string();
    Some((cpu_seconds(&pid)?, rss_kib(&pid)? as f64))
}

fn get(address: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response.split_once("\r\n\r\n")?.1.to_string())
}

/// p50/p95/p99 of the samples delivered between two looks, as bucket bounds.
fn quantiles(last: &[(String, f64)], first: &[(String, f64)]) -> String {
    let before: BTreeMap<&str, f64> = first.iter().map(|(le, n)| (le.as_str(), *n)).collect();
    let counts: Vec<(&str, f64)> = last
        .iter()
        .map(|(le, n)| (le.as_str(), n - before.get(le.as_str()).unwrap_or(&0.0)))
        .collect();
    let total = counts.last().map_or(0.0, |(_, n)| *n);
    if total == 0.0 {
        return "-".into();
    }
    let at = |q: f64| -> String {
        let bound = counts
            .iter()
            .find(|(_, n)| *n >= q * total)
            .map_or("+Inf", |(le, _)| le);
        match bound.parse::<f64>() {
            Ok(s) if s < 1.0 => format!("{:.0}ms", s * 1000.0),
            Ok(s) => format!("{s}s"),
            Err(_) => "≥30s".into(),
        }
    };
    format!("≤{}/≤{}/≤{}", at(0.5), at(0.95), at(0.99))
}

/// The in-process ceiling: one core decoding the same answers a simulated miner gives,
/// making samples, building Arrow batches and encoding Parquet, with no network.
mod ceiling {
    use std::time::Instant;

    use parquet::arrow::ArrowWriter;
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::WriterProperties;
    use rigtap::toolkit::sample::Sample;

    use super::answers;

    /// Samples a second one core turns answers into Parquet rows.
    pub(super) fn measure() -> f64 {
        let answers = answers::capture();
        let target = answers::target();
        let schema = rigtap::sinks::parquet::file_schema(&[], ["kind"].into_iter());
        // As the sink writes by default: zstd.
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let mut writer =
            ArrowWriter::try_new(std::io::sink(), schema.clone(), Some(properties)).unwrap();
        let polls = 50_000;
        let started = Instant::now();
        let mut batch: Vec<Sample> = Vec::with_capacity(10_000);
        let mut rows = 0;
        for _ in 0..polls {
            answers::poll(&answers, &target, &mut batch);
            if batch.len() >= 10_000 {
                rows += batch.len();
                writer
                    .write(&rigtap::sinks::parquet::record_batch(&batch, &schema).unwrap())
                    .unwrap();
                batch.clear();
            }
        }
        writer.close().unwrap();
        rows as f64 / started.elapsed().as_secs_f64()
    }
}
