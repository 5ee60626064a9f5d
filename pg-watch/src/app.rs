//! The pg-watch process: the status server, the daemon, and a reload of the
//! configuration on SIGHUP (the daemon stops its writers, drains its spool
//! and starts again with the new configuration; a bad new file is refused
//! and the running configuration stays). The metrics and the status server
//! live as long as the process, so a reload does not reset the counters.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use bitville_daemon::Shutdown;
use bitville_daemon::reload::{self, Hangups};
use bitville_daemon::status::{self, Health, Status};

use crate::config::Config;
use crate::daemon::{self, Metrics, SUBSYSTEM};

/// What pg-watch says on its status port.
#[derive(Debug)]
struct PgWatchStatus {
    metrics: Arc<Metrics>,
    engine: Arc<shipper::metrics::Metrics>,
}

impl Status for PgWatchStatus {
    fn metrics(&self) -> String {
        self.metrics.render(SUBSYSTEM) + &self.engine.render(shipper::metrics::SUBSYSTEM)
    }

    /// Alive whether PostgreSQL is up or not (pg-watch reconnects on its
    /// own); the connection is shown beside the status.
    fn health(&self) -> Health {
        let mut health = Health::default();
        let up = self.metrics.pg_up.load(Ordering::Relaxed) == 1;
        health.detail("postgres", if up { "up" } else { "down" });
        health
    }
}

/// Runs pg-watch with `config` until `shutdown` fires; SIGHUP reads `path`
/// again (with no path, SIGHUP is logged and ignored).
///
/// # Errors
/// The status port cannot be bound, or the daemon fails to start or stops
/// with an error.
pub async fn run(config: Config, path: Option<PathBuf>, shutdown: Shutdown) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let engine = Arc::new(shipper::metrics::Metrics::default());
    let listen = config.http.listen.clone();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("http.listen {listen}"))?;
    let (status_stop, status_stopped) = Shutdown::channel();
    let router = status::router(Arc::new(PgWatchStatus {
        metrics: metrics.clone(),
        engine: engine.clone(),
    }));
    let server = tokio::spawn(status::serve(listener, router, status_stopped));
    let hangups = Hangups::new().context("SIGHUP handler")?;
    let load = || -> anyhow::Result<Config> {
        let path = path.as_ref().context("no config file to reload")?;
        let new = Config::load(path)?;
        if new.http.listen != listen {
            tracing::warn!(
                "http.listen changed to {}: it takes effect at the next restart",
                new.http.listen
            );
        }
        Ok(new)
    };
    let result = reload::restart_on_hangup(
        config,
        hangups,
        load,
        |config, stop| daemon::run(config, metrics.clone(), engine.clone(), stop),
        shutdown,
    )
    .await;
    status_stop.trigger();
    let _ = server.await;
    result
}
