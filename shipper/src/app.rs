//! The shipper daemon: the status server, the engine, and a reload of the
//! configuration on SIGHUP (the engine drains and checkpoints, then starts
//! again with the new configuration; a bad new file is refused and the
//! running configuration stays). The metrics live as long as the process,
//! so a reload does not reset the counters.

use std::sync::Arc;

use bitville_daemon::Shutdown;
use bitville_daemon::reload::{self, Hangups};
use bitville_daemon::status;

use crate::config::{ConfigError, ConfigSource};
use crate::engine::{self, EngineError};
use crate::metrics::Metrics;
use crate::status::EngineStatus;

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("status server on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("installing the SIGHUP handler: {0}")]
    Signal(std::io::Error),
}

/// Runs the daemon until `shutdown` fires.
///
/// # Errors
/// A bad configuration at start, a status port that cannot be bound, or an
/// engine that stops on its own.
pub async fn run(source: ConfigSource, shutdown: Shutdown) -> Result<(), AppError> {
    let metrics = Arc::new(Metrics::default());
    let config = source.load()?;
    let engine_config = config.to_engine(metrics.clone())?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| AppError::Listen {
            addr: config.listen.clone(),
            source,
        })?;
    tracing::info!("status server on http://{}/metrics", config.listen);
    let (status_stop, status_stopped) = Shutdown::channel();
    let router = status::router(Arc::new(EngineStatus(metrics.clone())));
    let status = tokio::spawn(status::serve(listener, router, status_stopped));
    let hangups = Hangups::new().map_err(AppError::Signal)?;
    let listen = config.listen.clone();
    let result = reload::restart_on_hangup(
        engine_config,
        hangups,
        || {
            let new = source.load()?;
            if new.listen != listen {
                tracing::warn!(
                    "listen changed to {}: it takes effect at the next restart",
                    new.listen
                );
            }
            new.to_engine(metrics.clone())
        },
        |engine_config, stop| {
            tracing::info!(
                "shipping {:?} to {}",
                engine_config.spool_dirs,
                engine_config.processor_url
            );
            async move {
                engine::run(engine_config, stop)
                    .await
                    .map_err(AppError::from)
            }
        },
        shutdown,
    )
    .await;
    status_stop.trigger();
    let _ = status.await;
    result
}
