//! The `shipper` daemon: arguments, logging, configuration, then
//! [`shipper::app::run`] until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use shipper::config::{ConfigSource, Overrides};
use tokio::signal::unix::{SignalKind, signal};

/// Tails Bitville APM spool files and ships every record to the processor.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML configuration file (see shipper.example.toml).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Check the configuration, print one line saying what is wrong (or that
    /// it is fine) and exit.
    #[arg(long)]
    check_config: bool,
    #[command(flatten)]
    overrides: Overrides,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let source = ConfigSource { path: args.config, overrides: args.overrides };
    if args.check_config {
        let checked = source.load().and_then(|c| c.to_engine(Default::default()).map(|e| (c, e)));
        return match checked {
            Ok((c, e)) => {
                println!("config ok: {} spool dir(s), processor {}, status on {}", e.spool_dirs.len(), e.processor_url, c.listen);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        };
    }
    match run(source) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shipper: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(source: ConfigSource) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: draining"),
                _ = int.recv() => tracing::info!("SIGINT: draining"),
            }
        };
        shipper::app::run(source, shutdown).await.context("shipper stopped")
    })
}
