//! The `rigtap` command: parse arguments, load the config, hand over, map errors to
//! exit codes (0 done, 1 failed, 2 bad config or usage, 130 abandoned by a second signal).

use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use rigtap::config::{self, units::HumanDuration, ConfigError};
use rigtap::sim::faults::{self, FaultRule};
use rigtap::sim::{Fleet, SimConfig, SimTls};
use rigtap::telemetry::api_config::ApiConfig;
use rigtap::telemetry::logging::{self, LogFormat};
use rigtap::telemetry::progress::ProgressMode;
use rigtap::telemetry::{self, tap};
use rigtap::topology::shutdown::{self, Signals};
use rigtap::topology::Running;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
    },
    /// Print the samples a running pipeline's source or transform emits (JSON lines),
    /// through the pipeline's API (`api.address` of the config file).
    Tap {
        #[arg(short, long, default_value = "collector.yaml")]
        config: PathBuf,
        /// The id of a source or transform.
        component: String,
        /// Stop after this many samples.
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

/// How long the API's open connections get to finish once the pipeline has stopped.
const OPERATOR_GRACE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
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
        Command::Sim(args) => block_on(simulate(*args)),
        Command::Validate { config } => match config::load(&config) {
            Ok(pipeline) => {
                println!("{}: ok: {pipeline}", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => config_failed(&e),
        },
        Command::Run {
            config,
            duration,
            progress,
        } => {
            let pipeline = match config::load(&config) {
                Ok(pipeline) => pipeline,
                Err(e) => return config_failed(&e),
            };
            block_on(run(pipeline, duration, progress))
        }
        Command::Tap {
            config,
            component,
            limit,
        } => {
            let pipeline = match config::load(&config) {
                Ok(pipeline) => pipeline,
                Err(e) => return config_failed(&e),
            };
            block_on(async move {
                match tap::print(pipeline.api.address, &component, limit).await {
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

async fn run(
    pipeline: config::PipelineConfig,
    duration: Option<Duration>,
    progress: ProgressMode,
) -> ExitCode {
    let Some(mut signals) = install_signals() else {
        return ExitCode::FAILURE;
    };
    tracing::info!(summary = %pipeline, "pipeline starting");
    let fleet = match &pipeline.simulator {
        None => None,
        Some(simulator) => match Fleet::start(simulator.sim_config()).await {
            Ok(fleet) => {
                tracing::info!(miners = fleet.len(), first = %simulator.first, "embedded simulator serving");
                Some(fleet)
            }
            Err(e) => {
                tracing::error!("embedded simulator: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let inventory = fleet.as_ref().map(|f| f.inventory().to_vec());
    let api = pipeline.api.clone();
    let running = Running::start(pipeline, inventory);
    let operator = CancellationToken::new();
    let operator_tasks = serve_operator(&api, &running, progress, &operator).await;
    let outcome = running.run_until_stopped(&mut signals, duration).await;
    operator.cancel();
    // Open API connections get to finish their response; a client that will not read
    // it does not hold the exit back.
    if tokio::time::timeout(OPERATOR_GRACE, operator_tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "the API's connections did not close within {OPERATOR_GRACE:?}; exiting anyway"
        );
    }
    if let Some(fleet) = fleet {
        fleet.shutdown().await;
    }
    match outcome {
        Ok(report) => {
            let components = &report.telemetry.components;
            let dropped: u64 = components.iter().map(|c| c.stats.dropped_total()).sum();
            tracing::info!(components = components.len(), dropped, "pipeline stopped");
            if report.failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(abandoned) => {
            tracing::error!("{abandoned}");
            // Exit now: tasks blocked on a full pipe would otherwise hold the runtime open.
            std::process::exit(130)
        }
    }
}

/// Starts what an operator watches the pipeline with, until `stop`: the API (if
/// enabled; a port in use is logged, not fatal: the pipeline matters more), the queue
/// observer behind `/health`, and the progress line. Returns their tasks, closed.
async fn serve_operator(
    api: &ApiConfig,
    running: &Running,
    progress: ProgressMode,
    stop: &CancellationToken,
) -> TaskTracker {
    let tasks = TaskTracker::new();
    let telemetry = running.telemetry();
    if api.enabled {
        match tokio::net::TcpListener::bind(api.address).await {
            Ok(listener) => {
                tracing::info!(address = %api.address, "serving /metrics, /health and /tap/COMPONENT");
                tasks.spawn(telemetry::api::serve(
                    listener,
                    telemetry.clone(),
                    running.taps(),
                    stop.clone(),
                ));
            }
            Err(error) => {
                tracing::error!(address = %api.address, %error, "cannot serve the API (/metrics, /health); the pipeline runs without it. Set `api.address` to a free port")
            }
        }
    }
    let observed = telemetry.clone();
    tasks.spawn(
        stop.clone()
            .run_until_cancelled_owned(async move { observed.watch().await }),
    );
    tasks.spawn(
        stop.clone()
            .run_until_cancelled_owned(telemetry::progress::report(progress, telemetry)),
    );
    tasks.close();
    tasks
}

async fn simulate(args: SimArgs) -> ExitCode {
    match sim_config(&args) {
        Ok(config) => serve_fleet(config, &args).await,
        Err(message) => {
            eprintln!("rigtap sim: {message}");
            ExitCode::from(2)
        }
    }
}

fn sim_config(args: &SimArgs) -> Result<SimConfig, String> {
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
    Ok(SimConfig {
        miners: args.miners,
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
    })
}

async fn serve_fleet(config: SimConfig, args: &SimArgs) -> ExitCode {
    let Some(mut signals) = install_signals() else {
        return ExitCode::FAILURE;
    };
    let started = std::time::Instant::now();
    let fleet = match Fleet::start(config).await {
        Ok(fleet) => fleet,
        Err(e) => {
            eprintln!("rigtap sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.inventory {
        if let Err(e) = fleet.write_inventory(path) {
            eprintln!(
                "rigtap sim: {}: cannot write the inventory: {e}",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    }
    let last = fleet.len().saturating_sub(1);
    tracing::info!(
        miners = fleet.len(),
        first = %fleet.address(0),
        last = %fleet.address(last),
        startup_ms = started.elapsed().as_millis() as u64,
        "simulated fleet ready"
    );
    println!(
        "ready: {} miners, {} to {}",
        fleet.len(),
        fleet.address(0),
        fleet.address(last)
    );
    tokio::select! {
        signal = signals.recv() => tracing::info!(%signal, "stopping the simulated fleet"),
        _ = shutdown::deadline(args.duration) => {}
    }
    fleet.shutdown().await;
    ExitCode::SUCCESS
}
