//! The daemon: database sampling, log tailing and the shipper engine, tied
//! together until shutdown.
//!
//! Every part writes records into pg-watch's own spool through one
//! [`SpoolWriter`]; the shipper engine tails that spool and ships it, so a
//! processor outage loses nothing. On shutdown the writers stop first, then
//! the engine drains what they wrote.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bitville_daemon::Shutdown;
use serde::Serialize;
use shipper::engine::{EngineConfig, HostMetricsConfig};
use shipper::spool::SpoolWriter;
use tokio_postgres::{Client, NoTls};

use crate::activity::{ActivitySampler, MARKER};
use crate::config::Config;
use crate::logs::LogWatcher;
use crate::statements::StatementsCollector;

bitville_daemon::counters! {
    /// pg-watch's own counters and gauges, rendered as `bitville_pgwatch_*`.
    pub struct Metrics {
        /// 1 while the PostgreSQL connection is up.
        pg_up: gauge,
        /// Failed connection attempts.
        pg_connect_failures_total: counter,
        /// Lost connections and failed queries.
        pg_errors_total: counter,
        /// pg_stat_activity samples taken.
        activity_samples_total: counter,
        /// What the last activity sample cost, in microseconds.
        activity_last_sample_us: gauge,
        /// pg_statements records written.
        statements_records_total: counter,
        /// Baselines taken (first snapshot and resets).
        statements_baselines_total: counter,
        /// pg_log records written.
        log_records_total: counter,
        /// Log lines pg-watch could not parse, kept as raw events.
        log_unparsed_total: counter,
        /// Bytes of the log files not read yet (a backlog is read without
        /// pause until it is gone).
        log_lag_bytes: gauge,
        /// Records appended to the spool.
        records_written_total: counter,
        /// Records dropped because the spool is full.
        records_dropped_total: counter,
        /// Records that could not be written (disk errors).
        spool_errors_total: counter,
    }
}

/// The subsystem of pg-watch's own metric names: `bitville_pgwatch_*`.
pub const SUBSYSTEM: &str = "pgwatch";

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The spool writer shared by the sampling and log parts.
#[derive(Clone)]
struct Spool {
    writer: Arc<Mutex<SpoolWriter>>,
    metrics: Arc<Metrics>,
}

impl Spool {
    /// Appends one record; `false` when it was dropped or not written.
    fn write(&self, record: &impl Serialize) -> bool {
        let line = match serde_json::to_vec(record) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "record cannot be serialized");
                return false;
            }
        };
        let result = match self.writer.lock() {
            Ok(mut w) => w.append(&line),
            Err(poisoned) => poisoned.into_inner().append(&line),
        };
        match result {
            Ok(true) => {
                inc(&self.metrics.records_written_total);
                true
            }
            Ok(false) => {
                inc(&self.metrics.records_dropped_total);
                false
            }
            Err(e) => {
                inc(&self.metrics.spool_errors_total);
                tracing::error!(error = %e, "record not written to the spool");
                false
            }
        }
    }
}

/// Runs pg-watch until `shutdown` fires, then drains. `metrics` and
/// `engine_metrics` outlive a run, so a reload keeps the counters.
///
/// # Errors
/// The spool, the log tailers or the engine cannot start.
pub async fn run(
    config: Config,
    metrics: Arc<Metrics>,
    engine_metrics: Arc<shipper::metrics::Metrics>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("state_dir {}", config.state_dir.display()))?;
    let writer = SpoolWriter::open(&config.spool_dir, "pg-watch")
        .with_context(|| format!("spool_dir {}", config.spool_dir.display()))?;
    let spool = Spool {
        writer: Arc::new(Mutex::new(writer)),
        metrics: metrics.clone(),
    };
    // The writers stop first, then the engine drains what they wrote.
    let (stop_writers, writers_stopped) = Shutdown::channel();

    let db = tokio::spawn(db_loop(
        config.clone(),
        spool.clone(),
        writers_stopped.clone(),
    ));
    let logs = if config.logs.enabled {
        let watcher =
            LogWatcher::open(&config.logs, &config.state_dir).map_err(anyhow::Error::msg)?;
        let (cfg, spool, stop) = (config.clone(), spool.clone(), writers_stopped.clone());
        Some(tokio::task::spawn_blocking(move || {
            log_loop(watcher, &cfg, &spool, &stop)
        }))
    } else {
        None
    };

    let (stop_engine, engine_stopped) = Shutdown::channel();
    let engine = if config.ship.enabled {
        let token = config.token().context("ship token")?;
        let mut ec = EngineConfig::new(
            vec![config.spool_dir.clone()],
            config.state_dir.join("shipper"),
            &config.ship.processor_url,
            &token,
        );
        ec.metrics = engine_metrics;
        if config.host_metrics.enabled {
            ec.host_metrics = Some(HostMetricsConfig {
                source: "pg-watch",
                project: config.project.clone(),
                host: config.host.clone(),
                interval: Duration::from_secs(config.host_metrics.interval_s),
                spool_dir: config.spool_dir.clone(),
            });
        }
        Some(tokio::spawn(shipper::engine::run(ec, engine_stopped)))
    } else {
        None
    };

    let mut shutdown = shutdown;
    shutdown.recv().await;
    tracing::info!("shutting down: stopping the writers, then draining the spool");
    stop_writers.trigger();
    let _ = db.await;
    if let Some(l) = logs {
        let _ = l.await;
    }
    stop_engine.trigger();
    if let Some(e) = engine {
        e.await
            .context("shipper engine task")?
            .context("shipper engine")?;
    }
    Ok(())
}

/// Connects with pg-watch's application name and statement timeout (also
/// what `--check-config` connects with, so it sees what the daemon will).
pub(crate) async fn connect(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let mut pg: tokio_postgres::Config = config.postgres.conninfo.parse()?;
    if let (None, Some(password)) = (pg.get_password(), &config.postgres.password) {
        pg.password(password);
    }
    pg.application_name("bitville-pg-watch");
    pg.options(format!(
        "-c statement_timeout={}",
        config.postgres.statement_timeout_ms
    ));
    pg.connect_timeout(Duration::from_millis(config.postgres.connect_timeout_ms));
    let (client, connection) = pg.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// Keeps one connection, reconnecting with exponential backoff; a server
/// that is down is logged and counted, never fatal.
async fn db_loop(config: Config, spool: Spool, mut stop: Shutdown) {
    if !config.activity.enabled && !config.statements.enabled {
        return;
    }
    let m = spool.metrics.clone();
    let min = Duration::from_millis(config.postgres.reconnect_min_ms);
    let max = Duration::from_millis(config.postgres.reconnect_max_ms);
    let mut backoff = min;
    loop {
        if stop.is_shutdown() {
            return;
        }
        match connect(&config).await {
            Ok(client) => {
                backoff = min;
                m.pg_up.store(1, Ordering::Relaxed);
                tracing::info!("connected to PostgreSQL");
                let result = session(&config, &client, &spool, &mut stop).await;
                m.pg_up.store(0, Ordering::Relaxed);
                match result {
                    Ok(()) => return,
                    Err(e) => {
                        inc(&m.pg_errors_total);
                        tracing::warn!(error = %e, "PostgreSQL session failed, reconnecting");
                    }
                }
            }
            Err(e) => {
                inc(&m.pg_connect_failures_total);
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot connect to PostgreSQL");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            () = stop.recv() => return,
        }
        backoff = (backoff * 2).min(max);
    }
}

/// Samples on one connection until it fails (`Err`) or pg-watch stops (`Ok`).
async fn session(
    config: &Config,
    client: &Client,
    spool: &Spool,
    stop: &mut Shutdown,
) -> Result<(), tokio_postgres::Error> {
    let m = &spool.metrics;
    let version: i32 = client
        .query_one(
            &format!("{MARKER} SELECT current_setting('server_version_num')::int"),
            &[],
        )
        .await?
        .get(0);
    let version = version as u32;
    let mut sampler = ActivitySampler::new(version);
    let mut collector = if config.statements.enabled {
        let c = StatementsCollector::detect(client, version).await?;
        if c.is_none() {
            tracing::warn!(
                "pg_stat_statements is not installed in this database: no statement deltas"
            );
        }
        c
    } else {
        None
    };
    let mut activity_tick = tokio::time::interval(config.activity_interval());
    activity_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut statements_tick = tokio::time::interval(config.statements_interval());
    statements_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = stop.recv() => return Ok(()),
            _ = activity_tick.tick(), if config.activity.enabled => {
                let record = sampler.sample(client, &config.project, &config.host).await?;
                inc(&m.activity_samples_total);
                m.activity_last_sample_us.store((record.sample_ms.unwrap_or(0.0) * 1000.0) as u64, Ordering::Relaxed);
                spool.write(&record);
            }
            _ = statements_tick.tick(), if collector.is_some() => {
                if let Some(c) = collector.as_mut() {
                    match c.collect(client, &config.project, &config.host).await? {
                        Some(record) => {
                            inc(&m.statements_records_total);
                            spool.write(&record);
                        }
                        None if c.last_baseline.is_some() => inc(&m.statements_baselines_total),
                        None => {}
                    }
                }
            }
        }
    }
}

/// How long the log loop reads a backlog before it checks for shutdown
/// and records its progress; it goes on without sleeping while more waits.
const LOG_CATCH_UP_SLICE: Duration = Duration::from_secs(1);

fn log_loop(mut watcher: LogWatcher, config: &Config, spool: &Spool, stop: &Shutdown) {
    let interval = Duration::from_millis(config.logs.poll_interval_ms);
    let m = &spool.metrics;
    loop {
        let stopping = stop.is_shutdown();
        let polled = watcher.catch_up(
            &config.project,
            &config.host,
            |r| spool.write(r),
            LOG_CATCH_UP_SLICE,
            || stop.is_shutdown(),
        );
        m.log_records_total
            .fetch_add(polled.records, Ordering::Relaxed);
        m.log_unparsed_total
            .fetch_add(polled.unparsed, Ordering::Relaxed);
        m.log_lag_bytes
            .store(polled.pending_bytes, Ordering::Relaxed);
        if stopping {
            return;
        }
        if polled.pending_bytes == 0 || polled.stalled {
            std::thread::sleep(interval);
        }
    }
}
