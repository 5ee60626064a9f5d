//! pg-watch: arguments, logging, config, then [`pg_watch::daemon::run`] until
//! SIGTERM; SIGHUP reloads the config (a bad new config keeps the old one).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use pg_watch::config::Config;
use tokio::signal::unix::{SignalKind, signal};

/// Samples PostgreSQL activity and statements, parses its logs, and ships
/// everything to the Bitville APM processor.
#[derive(Debug, Parser)]
#[command(name = "pg-watch", version, about)]
struct Args {
    /// The TOML config file.
    #[arg(long, short, default_value = "/etc/bitville-apm/pg-watch.toml", env = "PG_WATCH_CONFIG")]
    config: PathBuf,
    /// Check the config file and exit: 0 when it is valid, 1 with the reason otherwise.
    #[arg(long)]
    check_config: bool,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pg-watch: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    if args.check_config {
        pg_watch::log::prefix::PrefixParser::compile(&config.logs.log_line_prefix)?;
        config.token().context("ship token")?;
        println!("{}: ok", args.config.display());
        return Ok(());
    }
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    rt.block_on(async move {
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        let mut config = config;
        loop {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let daemon = tokio::spawn(pg_watch::daemon::run(config.clone(), async move {
                let _ = rx.await;
            }));
            let reload = tokio::select! {
                _ = term.recv() => false,
                _ = tokio::signal::ctrl_c() => false,
                _ = hup.recv() => true,
            };
            let _ = tx.send(());
            daemon.await.context("daemon task")??;
            if !reload {
                return Ok(());
            }
            match Config::load(&args.config) {
                Ok(c) => {
                    tracing::info!(config = %args.config.display(), "config reloaded");
                    config = c;
                }
                Err(e) => tracing::error!("config not reloaded, keeping the old one: {e}"),
            }
        }
    })
}
