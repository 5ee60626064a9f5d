//! The shipper daemon: the status server, the engine, and a reload of the
//! configuration on SIGHUP (the engine drains and checkpoints, then starts
//! again with the new configuration; a bad new file is refused and the
//! running configuration stays).

use std::future::Future;
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};

use crate::config::{ConfigError, ConfigSource};
use crate::engine::{self, EngineError};
use crate::metrics::Metrics;

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

/// Runs the daemon until `shutdown` completes.
///
/// # Errors
/// A bad configuration at start, a status port that cannot be bound, or an
/// engine that stops on its own.
pub async fn run(source: ConfigSource, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
    let metrics = Arc::new(Metrics::default());
    let mut config = source.load()?;
    let mut engine_config = config.to_engine(metrics.clone())?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| AppError::Listen {
            addr: config.listen.clone(),
            source,
        })?;
    tracing::info!("status server on http://{}/metrics", config.listen);
    let (status_stop, status_stopped) = tokio::sync::oneshot::channel::<()>();
    let status = tokio::spawn(crate::status::serve(
        listener,
        metrics.clone(),
        "shipper",
        async move {
            let _ = status_stopped.await;
        },
    ));
    let mut hangup = signal(SignalKind::hangup()).map_err(AppError::Signal)?;
    tokio::pin!(shutdown);
    let result = 'outer: loop {
        let (stop_engine, engine_stopped) = tokio::sync::oneshot::channel::<()>();
        tracing::info!(
            "shipping {:?} to {}",
            engine_config.spool_dirs,
            engine_config.processor_url
        );
        let engine = engine::run(engine_config.clone(), async move {
            let _ = engine_stopped.await;
        });
        tokio::pin!(engine);
        loop {
            tokio::select! {
                r = &mut engine => break 'outer r.map_err(AppError::from),
                () = &mut shutdown => {
                    let _ = stop_engine.send(());
                    break 'outer engine.await.map_err(AppError::from);
                }
                _ = hangup.recv() => {
                    match source.load().and_then(|c| c.to_engine(metrics.clone()).map(|e| (c, e))) {
                        Ok((new, new_engine)) => {
                            if new.listen != config.listen {
                                tracing::warn!("listen changed to {}: it takes effect at the next restart", new.listen);
                            }
                            tracing::info!("SIGHUP: configuration reloaded, restarting the engine");
                            let _ = stop_engine.send(());
                            if let Err(e) = engine.await {
                                break 'outer Err(e.into());
                            }
                            config = new;
                            engine_config = new_engine;
                            break;
                        }
                        Err(e) => tracing::error!("SIGHUP: {e}; keeping the running configuration"),
                    }
                }
            }
        }
    };
    let _ = status_stop.send(());
    let _ = status.await;
    result
}
