//! The `shipper` daemon: arguments, logging, configuration, then
//! [`shipper::app::run`] until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bitville_daemon::Shutdown;
use clap::Parser;
use shipper::config::{ConfigSource, Overrides};

/// Tails Bitville APM spool files and ships every record to the processor.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML configuration file (see shipper.example.toml).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Check the configuration, the directories, the token and the processor
    /// without starting; print one line per problem (or one ok line) and exit
    /// 0 when there is none, 2 otherwise.
    #[arg(long)]
    check_config: bool,
    #[command(flatten)]
    overrides: Overrides,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let source = ConfigSource {
        path: args.config,
        overrides: args.overrides,
    };
    if args.check_config {
        return check_config(&source);
    }
    match run(source) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shipper: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--check-config`: exit 0 with one ok line, or 2 with a line per problem.
fn check_config(source: &ConfigSource) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shipper: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let (findings, summary) = runtime.block_on(shipper::check::check(source));
    if findings.report(&summary) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

fn run(source: ConfigSource) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown =
            Shutdown::on_signals().context("installing the SIGTERM and SIGINT handlers")?;
        shipper::app::run(source, shutdown)
            .await
            .context("shipper stopped")
    })
}
