//! The `rigtap` command: parse arguments, load the config, hand over, map errors to
//! exit codes (0 done, 1 failed, 2 bad config or usage, 130 abandoned by a second signal).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use rigtap::config::{self, units::HumanDuration, ConfigError};
use rigtap::telemetry::logging::{self, LogFormat};
use rigtap::topology::{shutdown::Signals, Running};

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
    },
    /// Check a pipeline file and print a one-line summary of its graph.
    Validate {
        #[arg(short, long, default_value = "collector.yaml")]
        config: PathBuf,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    text.parse::<HumanDuration>().map(|d| d.0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(message) = logging::init(cli.log_format, cli.log_level.as_deref()) {
        eprintln!("rigtap: {message}");
        return ExitCode::from(2);
    }
    match cli.command {
        Command::Validate { config } => match config::load(&config) {
            Ok(pipeline) => {
                println!("{}: ok: {pipeline}", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => config_failed(&e),
        },
        Command::Run { config, duration } => {
            let pipeline = match config::load(&config) {
                Ok(pipeline) => pipeline,
                Err(e) => return config_failed(&e),
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("rigtap: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(run(pipeline, duration))
        }
    }
}

fn config_failed(error: &ConfigError) -> ExitCode {
    eprintln!("{error}");
    ExitCode::from(2)
}

async fn run(pipeline: config::PipelineConfig, duration: Option<Duration>) -> ExitCode {
    let mut signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("rigtap: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(summary = %pipeline, "pipeline starting");
    let running = Running::start(pipeline);
    match running.run_until_stopped(&mut signals, duration).await {
        Ok(report) => {
            let dropped: u64 = report
                .components
                .iter()
                .map(|c| c.stats.dropped_total())
                .sum();
            tracing::info!(
                components = report.components.len(),
                dropped,
                "pipeline stopped"
            );
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
