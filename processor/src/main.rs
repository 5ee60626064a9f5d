//! The `processor` binary: arguments, logging, config, then serve until
//! SIGTERM or SIGINT; SIGHUP reloads tokens, limits and retention. The
//! `report`, `sql` and `demo` subcommands are in [`cli`].

mod cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use bitville_daemon::Shutdown;
use bitville_daemon::reload::Hangups;
use clap::{Parser, Subcommand};
use processor::config::Config;
use processor::{DEV_PROJECT, Processor};

#[derive(Debug, Parser)]
#[command(
    name = "processor",
    version,
    about = "Bitville APM processor: ingest, DuckDB store, retention"
)]
struct Cli {
    /// TOML config file; without it the embedded defaults are used (see processor.example.toml).
    #[arg(long, short = 'c', global = true, env = "BITVILLE_PROCESSOR_CONFIG")]
    config: Option<PathBuf>,
    /// Check the config, print a summary and exit (0 when it is good).
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve ingest, health and metrics (the default).
    Serve,
    /// Load a recorded spike into a fresh store, print its report, then serve it.
    Demo(cli::demo::DemoArgs),
    #[command(flatten)]
    Analysis(cli::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("processor: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The config file (or the embedded default), with tokens from the environment.
fn load(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    let config = match path {
        Some(p) => Config::load(p)?.with_env_overrides(p)?,
        None => Config::default().with_env_overrides(Path::new("(embedded default)"))?,
    };
    Ok(config)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = load(cli.config.as_ref())?;
    if cli.check_config {
        let origin = cli
            .config
            .as_ref()
            .map_or("(embedded default)".to_owned(), |p| p.display().to_string());
        let findings = processor::check::check(&config);
        let summary = format!(
            "config {origin} is good: http {}, udp {}, store {}, {} token(s), {} admin token(s), retention {} days, {} GELF output(s)",
            config.server.listen,
            if config.server.udp_listen.is_empty() {
                "off"
            } else {
                &config.server.udp_listen
            },
            config.store.path.display(),
            config.tokens.len(),
            config.admin_tokens.len(),
            config.retention.days,
            config.gelf.outputs.len(),
        );
        if !findings.report(&summary) {
            anyhow::bail!("config {origin}: {} problem(s)", findings.problems.len());
        }
        return Ok(());
    }
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config, cli.config),
        Command::Demo(args) => cli::demo::run(args, config),
        Command::Analysis(c) => cli::run(c, &config),
    }
}

fn serve(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let served = runtime.block_on(async move {
        let store_path = config.store.path.clone();
        let processor = Processor::start(config).await.context("cannot start")?;
        if processor.https() {
            println!("processor: https on {}", processor.http_addr());
        } else {
            println!("processor: http on {} (plain HTTP, no TLS)", processor.http_addr());
        }
        if let Some(udp) = processor.udp_addr() {
            println!("processor: udp on {udp}");
        }
        println!("processor: metrics on {} (plain HTTP)", processor.metrics_addr());
        println!("processor: store {}", store_path.display());
        if let Some(token) = processor.dev_token() {
            println!("processor: no tokens configured; development token for project {DEV_PROJECT}: {token}");
        }
        let mut shutdown =
            Shutdown::on_signals().context("cannot watch SIGTERM and SIGINT")?;
        let mut hangups = Hangups::new().context("cannot watch SIGHUP")?;
        loop {
            tokio::select! {
                () = shutdown.recv() => break,
                () = hangups.recv() => match &config_path {
                    Some(path) => match load(Some(path)) {
                        Ok(new) => {
                            processor.app().reload(&new);
                            tracing::info!(
                                "reloaded tokens, limits and retention from {}",
                                path.display()
                            );
                        }
                        Err(e) => tracing::error!("reload refused, keeping the running config: {e}"),
                    },
                    None => tracing::info!("SIGHUP: no config file to reload"),
                },
            }
        }
        tracing::info!("stopping: draining in-flight batches");
        processor.shutdown().await.context("store checkpoint at shutdown failed")?;
        tracing::info!("stopped");
        Ok(())
    });
    // Shutdown has interrupted every query; a blocking task that still runs
    // (a bug) must not keep the process from exiting after SIGTERM.
    runtime.shutdown_timeout(SHUTDOWN_LEFTOVERS);
    served
}

/// How long the runtime waits, once the processor has stopped, for blocking
/// tasks that are still running before it exits without them.
const SHUTDOWN_LEFTOVERS: std::time::Duration = std::time::Duration::from_secs(2);
