//! The `rigtap` command: parse arguments, load the config, hand over to the operator
//! layer, map outcomes to exit codes (0 done, 1 failed, 2 bad config or usage, 130
//! abandoned by a second signal).

use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use rigtap::operator::agent::{self, Outcome, RunOptions};
use rigtap::operator::config;
use rigtap::operator::logging::{self, LogFormat};
use rigtap::operator::progress::ProgressMode;
use rigtap::operator::signals::Signals;
use rigtap::operator::{simulate, tap, top};
use rigtap::sim::faults::{self, FaultRule};
use rigtap::sim::{SimConfig, SimTls};
use rigtap::toolkit::units::HumanDuration;
use rigtap::toolkit::yaml::diagnostic::ConfigError;

#[derive(Parser)]
#[command(
    name = "rigtap",
    version,
    about = "Telemetry collector for fleets of ASIC miners"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "human")]
    log_format: LogFormat,
    /// Log level or filter (e.g. `debug`, `rigtap=trace`); overrides RUST_LOG.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline until stopped (SIGINT/SIGTERM) or for --duration.
    Run {
        #[arg(short, long, default_value = "collector.yaml")]
        config: PathBuf,
        /// Stop in order after this long, e.g. `30s`, `5m`.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// A progress line on stderr every 5 s: `auto` (only at a terminal), `json`, `off`.
        #[arg(long, value_enum, default_value = "auto")]
        progress: ProgressMode,
        /// Reload the config when the file changes (SIGHUP and `POST /reload` always do).
        #[arg(long)]
        watch: bool,
    },
    /// A live view of a running pipeline, through its API (`api.address` of the config
    /// file): per component samples/s, queues and drops; per source miners by state,
    /// failed calls and latency; per sink what waits for acknowledgement. `q` quits.
    Top {
        #[arg(short, long, default_value = "collector.yaml")]
        config: PathBuf,
    },
    /// Print the samples a running pipeline's source or transform emits (JSON lines),
    /// through the pipeline's API (`api.address` of the config file).
    Tap {
        #[arg(short, long, default_value = "collector.yaml")]
        config: PathBuf,
        /// The id of a source or transform.
        component: String,
        /// Stop after this many samples (0: print none, only check that the
        /// component can be tapped).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Check a pipeline file and print a one-line summary of its graph.
    Validate {
        #[arg(short, long, default_value = "collector.yaml")]
        config: PathBuf,
    },
    /// Serve a fleet of simulated miners over the miner API on loopback.
    Sim(Box<SimArgs>),
    /// Find the miners in address ranges: which answer the Braiins OS gRPC API or the
    /// CGMiner API, with model and firmware; writes an inventory CSV for `targets`.
    Discover(Box<DiscoverArgs>),
}

#[derive(clap::Args)]
struct SimArgs {
    /// Number of miners.
    #[arg(long, default_value_t = 10)]
    miners: usize,
    /// Address of miner 0; miner i listens on the i-th address after it, same port.
    #[arg(long, default_value = "127.1.0.1:50051")]
    first: SocketAddrV4,
    /// Seed of the telemetry and of fault selection.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write an inventory CSV (id, address, site, rack, model) here.
    #[arg(long)]
    inventory: Option<PathBuf>,
    #[arg(long, default_value = "root")]
    username: String,
    /// Password the miners accept.
    #[arg(
        long,
        env = "RIGTAP_SIM_PASSWORD",
        default_value = "root",
        hide_env_values = true
    )]
    password: String,
    /// Sessions expire after this long without a call.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    session_timeout: Duration,
    /// Serve TLS with this certificate (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (mTLS).
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// A fault, `KIND[:FRACTION]`, e.g. `unavailable:0.1`; repeatable.
    #[arg(long = "fault", value_parser = FaultRule::parse_flag)]
    faults: Vec<FaultRule>,
    /// Fault rules from a YAML file (`faults: [{kind, fraction|miners, ...}]`).
    #[arg(long)]
    faults_file: Option<PathBuf>,
    /// Pause between status stream messages.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    status_interval: Duration,
    /// The share of miners (0 to 1) on stock firmware (Antminer, Whatsminer, Avalon),
    /// serving only the CGMiner API; the inventory's `api` column says which.
    #[arg(long, default_value_t = 0.0)]
    stock: f64,
    /// Serve the CGMiner API on this port of every miner too (stock miners use 4028).
    #[arg(long)]
    cgminer_port: Option<u16>,
    /// Serve a recording (a `bos` source's `record.path`) instead of simulated
    /// telemetry: one miner per recorded miner, under its id; `--miners` is ignored.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// The pace of a replay: 1 as recorded, 10 ten times faster.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Benchmark mode: no think time, status stream as fast as flow control allows.
    #[arg(long, conflicts_with_all = ["faults", "faults_file"])]
    firehose: bool,
    /// Stop after this long.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    text.parse::<HumanDuration>().map(|d| d.0)
}

/// glibc's malloc, with each connection's HTTP/2 write buffer mapped on its own.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: rigtap::toolkit::malloc::Allocator = rigtap::toolkit::malloc::Allocator::new();

fn main() -> ExitCode {
    rigtap::toolkit::malloc::tune();
    let cli = Cli::parse();
    if let Err(message) = logging::init(cli.log_format, cli.log_level.as_deref()) {
        eprintln!("rigtap: {message}");
        return ExitCode::from(2);
    }
    // Thousands of miners means thousands of sockets: lift the soft limit to the hard one.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "cannot raise the open-file limit");
    }
    match cli.command {
        Command::Sim(args) => simulate(*args),
        Command::Discover(args) => discover(*args),
        Command::Validate { config } => match config::load(&config) {
            Ok(loaded) => {
                println!("{}: ok: {loaded}", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => config_failed(&e),
        },
        Command::Run {
            config: path,
            duration,
            progress,
            watch,
        } => {
            let loaded = match config::load(&path) {
                Ok(loaded) => loaded,
                Err(e) => return config_failed(&e),
            };
            let options = RunOptions {
                duration,
                progress,
                watch,
            };
            block_on(async move {
                let Some(mut signals) = install_signals() else {
                    return ExitCode::FAILURE;
                };
                match agent::run(&path, loaded, &mut signals, options).await {
                    Outcome::Done => ExitCode::SUCCESS,
                    Outcome::Failed => ExitCode::FAILURE,
                    // Exit now: tasks blocked on a full pipe would otherwise hold the
                    // runtime open.
                    Outcome::Abandoned => std::process::exit(130),
                }
            })
        }
        Command::Top { config } => match config::load(&config) {
            Ok(loaded) => match top::run(loaded.api.address) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("rigtap top: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => config_failed(&e),
        },
        Command::Tap {
            config,
            component,
            limit,
        } => {
            let loaded = match config::load(&config) {
                Ok(loaded) => loaded,
                Err(e) => return config_failed(&e),
            };
            block_on(async move {
                match tap::print(loaded.api.address, &component, limit).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("rigtap tap: {e}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
    }
}

#[derive(clap::Args)]
struct DiscoverArgs {
    /// Addresses: `10.0.0.7`, `10.0.0.1-10.0.3.254` or `10.0.0.0/22`.
    #[arg(required = true)]
    ranges: Vec<String>,
    /// Write the inventory CSV (id, address, api, model, firmware) here.
    #[arg(long, default_value = "miners.csv")]
    out: PathBuf,
    #[arg(long, default_value_t = 50051)]
    grpc_port: u16,
    #[arg(long, default_value_t = 4028)]
    cgminer_port: u16,
    /// Probes under way at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Probes started a second at most, e.g. `500`, `500/s`, `30/min`.
    #[arg(long, default_value = "500/s")]
    rate: rigtap::toolkit::units::Rate,
    /// Each probe ends within this.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    timeout: Duration,
    /// With a password, Braiins OS miners are asked their model and firmware too.
    #[arg(long)]
    username: Option<String>,
    #[arg(long, env = "BOS_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

fn discover(args: DiscoverArgs) -> ExitCode {
    let options = rigtap::operator::discover::DiscoverOptions {
        ranges: args.ranges,
        grpc_port: args.grpc_port,
        cgminer_port: args.cgminer_port,
        concurrency: args.concurrency,
        rate: args.rate,
        timeout: args.timeout,
        username: args.username,
        password: args.password,
        out: args.out.clone(),
    };
    block_on(async move {
        match rigtap::operator::discover::discover(options).await {
            Ok(found) => {
                let count = |api: &str| {
                    found
                        .rows
                        .iter()
                        .filter(|r| r.labels.get("api").is_some_and(|a| a == api))
                        .count()
                };
                println!(
                    "{} of {} addresses answered ({} Braiins OS, {} CGMiner API); inventory written to {}",
                    found.rows.len(),
                    found.probed,
                    count("bos"),
                    count("cgminer"),
                    args.out.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rigtap discover: {e}");
                ExitCode::from(2)
            }
        }
    })
}

/// Runs `future` on a new multi-threaded runtime.
fn block_on(future: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(future),
        Err(e) => {
            eprintln!("rigtap: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Takes over SIGINT and SIGTERM, or says why it cannot.
fn install_signals() -> Option<Signals> {
    Signals::install()
        .map_err(|e| eprintln!("rigtap: cannot install signal handlers: {e}"))
        .ok()
}

fn config_failed(error: &ConfigError) -> ExitCode {
    eprintln!("{error}");
    ExitCode::from(2)
}

fn simulate(args: SimArgs) -> ExitCode {
    let config = match sim_config(&args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("rigtap sim: {message}");
            return ExitCode::from(2);
        }
    };
    block_on(async move {
        let Some(mut signals) = install_signals() else {
            return ExitCode::FAILURE;
        };
        let inventory = args.inventory.as_deref();
        match simulate::serve(config, inventory, &mut signals, args.duration).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rigtap sim: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn sim_config(args: &SimArgs) -> Result<SimConfig, String> {
    if !(1..=rigtap::sim::MAX_MINERS).contains(&args.miners) {
        return Err(rigtap::sim::SimError::Miners(args.miners).to_string());
    }
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(SimTls {
            cert: read(cert)?,
            key: read(key)?,
            client_ca: args.client_ca.as_ref().map(read).transpose()?,
        }),
        _ => None,
    };
    let mut rules = args.faults.clone();
    if let Some(path) = &args.faults_file {
        rules.extend(faults::load(path).map_err(|e| e.to_string())?);
    }
    let replay = match &args.replay {
        None => None,
        Some(dir) => {
            if !(args.speed.is_finite() && args.speed > 0.0) {
                return Err(format!("--speed {} is not above zero", args.speed));
            }
            let recording = rigtap::sim::replay::Recording::load(dir).map_err(|e| e.to_string())?;
            Some((std::sync::Arc::new(recording), args.speed))
        }
    };
    Ok(SimConfig {
        miners: replay.as_ref().map_or(args.miners, |(r, _)| r.len()),
        first: args.first,
        seed: args.seed,
        username: args.username.clone(),
        password: args.password.clone(),
        session_timeout: args.session_timeout,
        tls,
        faults: rules,
        status_interval: if args.firehose {
            Duration::ZERO
        } else {
            args.status_interval
        },
        cgminer_port: args.cgminer_port,
        stock: args.stock,
        replay,
    })
}
