//! pg-watch: arguments, logging, config, then [`pg_watch::app::run`] until
//! SIGTERM; SIGHUP reloads the config (a bad new config keeps the old one).

use std::path::PathBuf;

use anyhow::Context;
use bitville_daemon::Shutdown;
use clap::Parser;
use pg_watch::config::Config;

/// Samples PostgreSQL activity and statements, parses its logs, and ships
/// everything to the Bitville APM processor.
#[derive(Debug, Parser)]
#[command(name = "pg-watch", version, about)]
struct Args {
    /// The TOML config file.
    #[arg(
        long,
        short,
        default_value = "/etc/bitville-apm/pg-watch.toml",
        env = "PG_WATCH_CONFIG"
    )]
    config: PathBuf,
    /// Check the config file, the directories, PostgreSQL (rights, extension,
    /// log settings) and the processor without starting, then exit: 0 with
    /// one ok line, 2 with one line per problem.
    #[arg(long)]
    check_config: bool,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.check_config {
        return check_config(&args.config);
    }
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pg-watch: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `--check-config`: exit 0 with one ok line, or 2 with a line per problem.
fn check_config(path: &std::path::Path) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pg-watch: starting the async runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let (findings, summary) = runtime.block_on(pg_watch::check::check(path));
    if findings.report(&summary) {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(2)
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    rt.block_on(async move {
        let shutdown = Shutdown::on_signals().context("SIGTERM and SIGINT handlers")?;
        pg_watch::app::run(config, Some(args.config), shutdown).await
    })
}
