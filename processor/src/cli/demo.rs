//! `processor demo`: the whole path on a recorded spike, in one command.
//!
//! It starts the processor on a fresh store, runs the shipper's engine (the
//! real one: tailing, checkpoints, gzip batches, acknowledgements) over the
//! recorded spool files of `fixtures/spike/` into the processor's own
//! `/v1/ingest`, asks the analysis which spikes the data holds, prints the
//! report of the first, and then keeps serving until Ctrl-C, with the tokens
//! printed so a person can look around.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use shipper::engine::{self, EngineConfig};
use shipper::metrics::Metrics;

use processor::Processor;
use processor::analysis::api::WindowParams;
use processor::analysis::spikes::{self, Detection};
use processor::analysis::{Scope, report};
use processor::config::{Config, TokenConfig};
use processor::ingest::auth;

use super::layout;
use super::print::{Asking, print_report, print_spikes};

/// The recorded spike the demo loads when no folder is given.
const RECORDED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/spike/lock_contention"
);
/// The project of the recorded spool files.
const PROJECT: &str = "shop";
/// The recording is small; shipping it takes seconds, not minutes.
const SHIP_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder of spool files (`*.ndjson`) to load; the default is the recorded lock-contention spike.
    #[arg(long, default_value = RECORDED)]
    spool: PathBuf,
    /// Keep the store in this DuckDB file (default: a temporary folder, removed at exit).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Print the report and stop instead of serving.
    #[arg(long)]
    exit: bool,
    /// Serve on this address (host:port; port 0 picks a free one) instead of the config's `server.listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
}

/// Runs the demo on the listen address of `config`.
///
/// # Errors
/// The spool folder cannot be read, the processor cannot start, a batch is
/// refused, or the analysis fails.
pub fn run(args: DemoArgs, mut config: Config) -> anyhow::Result<()> {
    let lines = spool_lines(&args.spool)?;
    // Without --store, a scratch folder that is removed at exit.
    let (store_path, scratch) = match &args.store {
        Some(path) => (path.clone(), None),
        None => {
            let dir = std::env::temp_dir().join(format!("bitville-demo-{}", auth::random_token()));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            (dir.join("bitville.duckdb"), Some(dir))
        }
    };
    let token = auth::random_token();
    let admin = auth::random_token();
    config.store.path = store_path.clone();
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    config.server.udp_listen = String::new();
    config.tokens = vec![TokenConfig {
        token: token.clone(),
        project: PROJECT.to_owned(),
    }];
    config.admin_tokens = vec![admin.clone()];
    // The recording is dated; retention must not drop it whatever today is.
    config.retention.days = 36_500;
    config.limits.requests_per_minute = 0;
    // Recorded data is not news: nothing of it goes to a configured Graylog.
    config.gelf.outputs.clear();

    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        let processor = Processor::start(config)
            .await
            .context("cannot start the processor")?;
        let state = store_path.with_extension("shipper-state");
        let outcome = demo(
            &processor,
            &args.spool,
            lines,
            &state,
            &token,
            &admin,
            args.exit,
        )
        .await;
        processor
            .shutdown()
            .await
            .context("store checkpoint at shutdown failed")?;
        outcome
    });
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    } else {
        println!("the store stays in {}", store_path.display());
    }
    result
}

async fn demo(
    processor: &Processor,
    spool: &Path,
    lines: u64,
    state: &Path,
    token: &str,
    admin: &str,
    exit: bool,
) -> anyhow::Result<()> {
    let base = format!("http://{}", processor.http_addr());
    println!("processor: http on {base}, store on a fresh file");
    let width = layout::width();
    let started = Instant::now();
    let metrics = ship(spool, lines, state, &base, token).await?;
    let shipped = format!(
        "{} lines of {} shipped, {} duplicates, {} refused, in {:.1} s",
        Metrics::get(&metrics.lines_shipped_total),
        spool.display(),
        Metrics::get(&metrics.lines_duplicate_total),
        Metrics::get(&metrics.lines_rejected_total),
        started.elapsed().as_secs_f64()
    );
    layout::print_wrapped(&shipped, width, "shipper: ", "  ");
    println!();

    let store = processor.app().store.clone();
    let (found, report) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let reader = store.reader()?;
        let scope = Scope::All;
        let range = spikes::recent_range(&reader, &scope, 24)?;
        let found = spikes::find(&reader, &scope, range, &Detection::default())?;
        let report = match found.first() {
            Some(first) => {
                // The windows `report spikes` suggests, as the printed
                // command below asks for them.
                let params = WindowParams {
                    from: Some(first.report_from.clone()),
                    to: Some(first.report_to.clone()),
                    baseline_from: Some(first.baseline_from.clone()),
                    baseline_to: Some(first.baseline_to.clone()),
                    ..WindowParams::default()
                };
                Some(report::report(&reader, &scope, &params.frame()?)?)
            }
            None => None,
        };
        Ok((found, report))
    })
    .await
    .context("the analysis task failed")??;

    // The follow-up commands carry what they need to reach this processor.
    let asking = Asking(
        ["--url", &base, "--token", token]
            .map(str::to_owned)
            .to_vec(),
    );
    println!("Detected spikes (UTC)");
    print_spikes(&found, &asking);
    if let Some(report) = &report {
        println!();
        print_report(report);
    }
    if exit {
        return Ok(());
    }
    println!("\nServing until Ctrl-C. Look for yourself:");
    println!("  web UI:             {base}/ui/ (sign in with a token below)");
    println!("  project {PROJECT} token: {token}");
    println!("  admin token:        {admin}");
    println!("  processor report spikes --url {base} --token {token}");
    println!("  curl -H 'Authorization: Bearer {token}' {base}/v1/spikes");
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

/// Runs the shipper's engine over `spool` until it has shipped `lines`
/// lines; the spool is only read (no cleanup), its checkpoints go to `state`.
async fn ship(
    spool: &Path,
    lines: u64,
    state: &Path,
    base: &str,
    token: &str,
) -> anyhow::Result<Arc<Metrics>> {
    let mut config = EngineConfig::new(vec![spool.to_owned()], state.to_owned(), base, token);
    config.cleanup = false;
    config.batch_max_age = Duration::from_millis(200);
    let metrics = config.metrics.clone();
    let (stop, stopped) = bitville_daemon::Shutdown::channel();
    let engine = tokio::spawn(engine::run(config, stopped));
    let deadline = Instant::now() + SHIP_TIMEOUT;
    let done = loop {
        let handled = Metrics::get(&metrics.lines_shipped_total)
            + Metrics::get(&metrics.lines_quarantined_total);
        if handled >= lines {
            break Ok(());
        }
        if engine.is_finished() || Instant::now() > deadline {
            break Err(anyhow::anyhow!(
                "the shipper handled {handled} of {lines} lines of {} ({} failed batches)",
                spool.display(),
                Metrics::get(&metrics.batches_failed_total)
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.trigger();
    engine
        .await
        .context("the shipper task failed")?
        .context("the shipper stopped")?;
    done?;
    if Metrics::get(&metrics.lines_rejected_total) > 0 {
        bail!(
            "the processor refused {} lines of the recording",
            Metrics::get(&metrics.lines_rejected_total)
        );
    }
    Ok(metrics)
}

/// Counts the lines of the `*.ndjson` files of a spool folder.
fn spool_lines(dir: &Path) -> anyhow::Result<u64> {
    let mut lines = 0;
    for file in spool_files(dir)? {
        let bytes =
            std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        lines += bytes.iter().filter(|&&b| b == b'\n').count() as u64;
    }
    Ok(lines)
}

/// The `*.ndjson` files of a spool folder, in name order.
fn spool_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read spool folder {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "ndjson") {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("spool folder {} holds no .ndjson files", dir.display());
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_spool_folder_is_found_in_name_order() {
        let files = spool_files(Path::new(RECORDED)).unwrap();
        assert!(files.len() > 3, "{files:?}");
        assert!(files.windows(2).all(|w| w[0] < w[1]));
        assert!(spool_lines(Path::new(RECORDED)).unwrap() > 1000);
        let err = spool_files(Path::new("/nonexistent-spool"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent-spool"), "{err}");
    }
}
