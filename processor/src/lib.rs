//! The Bitville APM processor: receives records, stores each exactly once in
//! DuckDB, keeps them for a retention period, and forwards what matters to
//! Graylog as GELF.
//!
//! Modules, one job each:
//! - [`config`]: the TOML config, its defaults and checks.
//! - [`check`]: `--check-config`'s checks beyond parsing (paths, TLS files, GELF outputs).
//! - [`ingest`]: records in: the HTTP routes (`/v1/ingest`, `/healthz`, `/readyz`,
//!   `/metrics`), tokens, limits, TLS, UDP, and flattening into the store's rows.
//! - [`store`]: the only module that talks to DuckDB: layout, single writer, readers.
//! - [`retention`]: drops expired days on a timer.
//! - [`metrics`]: counters in the Prometheus text format.
//! - [`analysis`]: spike detection, ranked reports, drill-down, the `/v1/` read API.
//! - [`ui`]: the web UI (embedded page and its data routes), with the analysis.
//! - [`gelf`]: forwards stored records to Graylog as GELF, after a durable cursor.
//!
//! The command line beyond serving (`report`, `sql`, `demo`) is the binary's
//! own (`src/cli/`): nothing in this library prints.
//!
//! [`Processor::start`] binds the sockets, opens the store and starts the
//! tasks (the GELF forwarder among them); [`Processor::shutdown`] drains
//! them, saves the forwarder's cursors and checkpoints the store.

pub mod analysis;
pub mod check;
pub mod config;
pub mod gelf;
pub mod ingest;
pub mod metrics;
pub mod retention;
pub mod store;
pub mod ui;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bitville_daemon::Trigger;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::config::{Config, Limits, RetentionConfig, TokenConfig};
use crate::ingest::auth::Tokens;
use crate::ingest::{auth, limits, tls, udp};
use crate::store::{Store, StoreError};

/// The project of the development token made when the config has none.
pub const DEV_PROJECT: &str = "demo";

/// Why the processor could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Gelf(#[from] gelf::transport::SendError),
}

/// Settings that SIGHUP replaces.
#[derive(Debug, Clone)]
struct Live {
    tokens: Arc<Tokens>,
    /// Read every project; never ingest.
    admin: Arc<Tokens>,
    limits: Arc<Limits>,
    retention: RetentionConfig,
    analysis: analysis::report::Settings,
}

/// State shared by the HTTP handlers, the UDP receiver and retention.
#[derive(Debug)]
pub struct App {
    pub store: Arc<Store>,
    live: RwLock<Live>,
    pub rate: limits::RateLimiter,
    /// Bounds the batches being decoded and stored at once (memory); taken
    /// only once a batch's body is in, so a stalled client never holds one.
    pub slots: Semaphore,
    /// Open connections per client address and in all (`[limits]` caps).
    pub connections: Arc<ingest::conn::Connections>,
    pub metrics: metrics::Metrics,
    /// Added to the wall clock; lets tests move time without waiting.
    clock_offset_micros: AtomicI64,
    dev_token: Option<String>,
    /// The long-lived tasks that ended (returned or panicked) before
    /// shutdown: /healthz and /readyz answer 503 naming them.
    ended_tasks: std::sync::Mutex<Vec<String>>,
    /// Set once shutdown began: tasks ending then are not a problem.
    stopping: std::sync::atomic::AtomicBool,
}

impl App {
    /// The long-lived tasks that ended before shutdown (empty when healthy).
    pub fn ended_tasks(&self) -> Vec<String> {
        self.ended_tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Marks `name` ended unless the processor is stopping; called by the
    /// guard of [`watched`] (and of the GELF forwarder's tasks) when the
    /// task returns or unwinds.
    fn task_ended(&self, name: &str) {
        if !self.stopping.load(Ordering::SeqCst) {
            tracing::error!("task {name} ended before shutdown");
            self.ended_tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(name.to_owned());
        }
    }

    /// The current tokens and limits.
    pub fn live(&self) -> (Arc<Tokens>, Arc<Limits>) {
        let live = self.live.read().unwrap_or_else(|e| e.into_inner());
        (live.tokens.clone(), live.limits.clone())
    }

    /// The current admin tokens (their "project" is `*`).
    pub fn admin_tokens(&self) -> Arc<Tokens> {
        self.live
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .admin
            .clone()
    }

    /// The spike report's settings in force.
    pub fn analysis(&self) -> analysis::report::Settings {
        self.live.read().unwrap_or_else(|e| e.into_inner()).analysis
    }

    pub fn retention(&self) -> RetentionConfig {
        self.live
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .retention
            .clone()
    }

    /// Now, in microseconds since the epoch (UTC), plus the test offset.
    pub fn now(&self) -> i64 {
        store::now_micros() + self.clock_offset_micros.load(Ordering::Relaxed)
    }

    /// Now, with the retention in force: what a batch arriving now is
    /// checked against.
    pub fn arrival(&self) -> ingest::Arrival {
        ingest::Arrival {
            now: self.now(),
            retention_days: self.retention().days,
        }
    }

    /// Moves the processor's clock (tests of retention).
    pub fn advance_clock(&self, micros: i64) {
        self.clock_offset_micros
            .fetch_add(micros, Ordering::Relaxed);
    }

    /// Takes tokens, limits and retention from a new config (SIGHUP). The
    /// development token stays when the new config still lists none.
    pub fn reload(&self, config: &Config) {
        *self.live.write().unwrap_or_else(|e| e.into_inner()) =
            Live::of(config, self.dev_token.as_deref());
    }
}

impl Live {
    fn of(config: &Config, dev_token: Option<&str>) -> Live {
        let tokens = match (config.tokens.is_empty(), dev_token) {
            (true, Some(token)) => vec![TokenConfig {
                token: token.to_owned(),
                project: DEV_PROJECT.to_owned(),
            }],
            _ => config.tokens.clone(),
        };
        let admin = config.admin_tokens.iter().map(|t| TokenConfig {
            token: t.clone(),
            project: "*".to_owned(),
        });
        Live {
            tokens: Arc::new(Tokens::new(tokens)),
            admin: Arc::new(Tokens::new(admin.collect())),
            limits: Arc::new(config.limits.clone()),
            retention: config.retention.clone(),
            analysis: config.analysis,
        }
    }
}

/// A running processor.
#[derive(Debug)]
pub struct Processor {
    app: Arc<App>,
    http_addr: SocketAddr,
    metrics_addr: SocketAddr,
    udp_addr: Option<SocketAddr>,
    shutdown: Trigger,
    https: bool,
    http_task: JoinHandle<()>,
    other_tasks: Vec<JoinHandle<()>>,
    /// Reads the store after its cursors and sends to Graylog; with no
    /// `[[gelf.outputs]]` it runs nothing.
    gelf: gelf::Forwarder,
    grace: Duration,
}

impl Processor {
    /// Opens the store, binds the sockets and starts serving.
    ///
    /// # Errors
    /// A socket cannot be bound or the store cannot be opened.
    pub async fn start(config: Config) -> Result<Processor, StartError> {
        let options = config.store.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(&options))
            .await
            .map_err(|e| StoreError::Thread {
                op: "open",
                source: Box::new(e),
            })??;
        let dev_token = config.tokens.is_empty().then(auth::random_token);
        let app = Arc::new(App {
            store: Arc::new(store),
            live: RwLock::new(Live::of(&config, dev_token.as_deref())),
            rate: limits::RateLimiter::new(),
            slots: Semaphore::new(config.limits.max_concurrent_batches),
            connections: Arc::default(),
            metrics: metrics::Metrics::default(),
            clock_offset_micros: AtomicI64::new(0),
            dev_token,
            ended_tasks: std::sync::Mutex::new(Vec::new()),
            stopping: std::sync::atomic::AtomicBool::new(false),
        });

        // Dropped with an error below, it stops the tasks already started.
        let shutdown = Trigger::new();
        let stopped = |t: &Trigger| t.subscribe().wait();

        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.server.listen.to_string(),
                source,
            })?;
        let http_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.server.listen.to_string(),
            source,
        })?;
        let tls = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
            _ => None,
        };
        let http_task =
            match tls {
                Some(tls_config) => {
                    let listener = tls::TlsListener::new(listener, tls_config, app.clone())
                        .map_err(|source| StartError::Bind {
                            addr: config.server.listen.to_string(),
                            source,
                        })?;
                    spawn_http(listener, app.clone(), stopped(&shutdown))
                }
                None => spawn_http(
                    ingest::conn::PlainListener::new(listener, app.clone()),
                    app.clone(),
                    stopped(&shutdown),
                ),
            };

        let mut other_tasks = Vec::new();
        let (metrics_addr, metrics_task) = spawn_metrics(
            config.server.metrics_addr(),
            app.clone(),
            stopped(&shutdown),
        )
        .await?;
        other_tasks.push(metrics_task);
        let mut udp_addr = None;
        if !config.server.udp_listen.is_empty() {
            let socket = tokio::net::UdpSocket::bind(&config.server.udp_listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.server.udp_listen.clone(),
                    source,
                })?;
            udp_addr = socket.local_addr().ok();
            other_tasks.push(tokio::spawn(watched(
                app.clone(),
                "udp",
                udp::serve(app.clone(), socket, stopped(&shutdown)),
            )));
        }
        other_tasks.push(tokio::spawn(watched(
            app.clone(),
            "retention",
            retention::serve(app.clone(), stopped(&shutdown)),
        )));

        // Last, so that no forwarder task outlives a failed start: the tasks
        // above stop on their own when `shutdown` is dropped with the error.
        // The forwarder reads the store, never the ingest path (see `gelf`).
        // Its tasks (one per output, and the spike watcher) are watched like
        // the ones above: one that ends before shutdown makes /healthz 503.
        let watcher = app.clone();
        let gelf = gelf::Forwarder::start_watched(
            app.store.clone(),
            config.gelf.clone(),
            Arc::new(move |name: &str| watcher.task_ended(name)),
        )
        .await?;
        app.metrics.set_gelf_outputs(gelf.metrics().to_vec());

        Ok(Processor {
            app,
            http_addr,
            metrics_addr,
            udp_addr,
            shutdown,
            https: config.server.tls_cert.is_some(),
            http_task,
            other_tasks,
            gelf,
            grace: Duration::from_secs(config.server.shutdown_grace_s),
        })
    }

    /// Tests only: runs `task` watched like the processor's own long-lived
    /// tasks, so a test can end one and see /healthz and /readyz report it.
    #[cfg(any(test, feature = "test-support"))]
    pub fn spawn_watched(
        &self,
        name: &'static str,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<()> {
        tokio::spawn(watched(self.app.clone(), name, task))
    }

    /// True when the HTTP port speaks TLS.
    pub fn https(&self) -> bool {
        self.https
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where `/metrics` is served (`server.metrics_listen`).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    /// The random token made for project `demo` when the config lists none.
    pub fn dev_token(&self) -> Option<&str> {
        self.app.dev_token.as_deref()
    }

    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// The GELF forwarder: its per-output counters, and the hook that
    /// queues a detected spike ([`gelf::Forwarder::spike`]).
    pub fn gelf(&self) -> &gelf::Forwarder {
        &self.gelf
    }

    /// Stops accepting, interrupts running queries (admin SQL, reports),
    /// lets in-flight batches finish (up to the grace
    /// period), stops the GELF forwarder (each output's cursor is saved
    /// after its last delivered batch), then checkpoints the store and stops
    /// its writer.
    ///
    /// # Errors
    /// The final checkpoint failed; the data is in the WAL all the same.
    pub async fn shutdown(self) -> Result<(), StoreError> {
        self.app.stopping.store(true, Ordering::SeqCst);
        self.shutdown.trigger();
        // Queries (admin SQL, reports) are stopped, not waited for: one can
        // run for its whole timeout, and a blocking thread still running a
        // query would hold the process after main returns.
        let stopped = self.app.store.interrupt_readers();
        if stopped > 0 {
            tracing::info!("stopped the queries of {stopped} reader(s)");
        }
        let mut http_task = self.http_task;
        if tokio::time::timeout(self.grace, &mut http_task)
            .await
            .is_err()
        {
            tracing::warn!(
                "in-flight requests did not finish within {:?}; closing them",
                self.grace
            );
            http_task.abort();
        }
        for task in self.other_tasks {
            let _ = task.await;
        }
        // Before the store: the forwarder saves its cursors through the writer.
        self.gelf.stop().await;
        self.app.store.shutdown().await
    }
}

/// Serves the router on a listener (plain TCP or TLS) until `shutdown`,
/// with the connection caps and timeouts of `ingest::conn`.
fn spawn_http<L>(
    listener: L,
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> JoinHandle<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let router = ingest::router(app.clone())
        .merge(analysis::api::router(
            app.clone(),
            analysis::sql::SqlLimits::default(),
        ))
        .merge(ui::router(app.clone()));
    let server = ingest::conn::serve(listener, app.clone(), router, shutdown);
    tokio::spawn(watched(app, "http", server))
}

/// Binds the metrics port and serves `/metrics` (plain HTTP) until `shutdown`.
///
/// # Errors
/// The address cannot be bound.
async fn spawn_metrics(
    addr: SocketAddr,
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, JoinHandle<()>), StartError> {
    let bind_err = |source| StartError::Bind {
        addr: addr.to_string(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_err)?;
    let bound = listener.local_addr().map_err(bind_err)?;
    let listener = ingest::conn::PlainListener::new(listener, app.clone());
    let server = ingest::conn::serve(
        listener,
        app.clone(),
        ingest::metrics_router(app.clone()),
        shutdown,
    );
    Ok((bound, tokio::spawn(watched(app, "metrics", server))))
}

/// Runs a long-lived task and records it as ended in `app` when it returns
/// or panics before shutdown (a drop guard sees both).
async fn watched<F: std::future::Future<Output = ()>>(app: Arc<App>, name: &'static str, task: F) {
    struct Guard(Arc<App>, &'static str);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.task_ended(self.1);
        }
    }
    let _guard = Guard(app, name);
    task.await;
}
