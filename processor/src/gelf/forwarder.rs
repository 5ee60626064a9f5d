//! The forwarder: one task per output reads the store after its durable
//! cursor, builds messages and sends them, never touching the ingest path.
//!
//! **Architecture invariant:** the forwarder only reads the store (with a
//! connection of its own) and saves its cursor through the store's writer;
//! ingest never waits for it, so a slow or absent Graylog never slows ingest.
//! Over TCP and HTTP a batch is retried with backoff until it is through and
//! only then does the cursor move, so an outage is caught up from where it
//! stopped (within retention; delivery is at least once). UDP is best effort:
//! a failed datagram is counted and not retried.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::batch::{Batch, read_batch};
use super::build::{SpikeSummary, record_messages, spike_message};
use super::config::{EventKind, GelfConfig, OutputConfig, TransportKind};
use super::message::Message;
use super::metrics::OutputMetrics;
use super::transport::{SendError, Transport};
use crate::store::{Reader, Store, StoreError};

/// Spike messages waiting per output; more are dropped and counted.
const SPIKE_QUEUE: usize = 64;

/// Told the name of a forwarder task (`gelf:<output>`, `gelf:spikes`) that
/// ended, returned or panicked, before [`Forwarder::stop`]: the processor
/// makes `/healthz` and `/readyz` answer 503 naming it.
pub type OnEnded = Arc<dyn Fn(&str) + Send + Sync>;

/// The running outputs. Dropping it does not stop them: call [`Forwarder::stop`].
/// Shared by reference (`&self` everywhere), so it can live in the
/// processor's shared state beside the store.
#[derive(Debug)]
pub struct Forwarder {
    config: Arc<GelfConfig>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    spikes: Vec<mpsc::Sender<(String, Message)>>,
    metrics: Vec<Arc<OutputMetrics>>,
    stop: watch::Sender<bool>,
}

impl Forwarder {
    /// Starts one task per configured output. With no outputs nothing runs.
    ///
    /// # Errors
    /// An output cannot be set up (an address that does not resolve, an
    /// unreadable CA file): the config is wrong, so the processor should not start.
    pub async fn start(store: Arc<Store>, config: GelfConfig) -> Result<Forwarder, SendError> {
        Self::start_watched(store, config, Arc::new(|_: &str| {})).await
    }

    /// [`Forwarder::start`], with `on_ended` told of every task that ends
    /// before [`Forwarder::stop`] (a panic while building or sending, say).
    ///
    /// # Errors
    /// As [`Forwarder::start`].
    pub async fn start_watched(
        store: Arc<Store>,
        config: GelfConfig,
        on_ended: OnEnded,
    ) -> Result<Forwarder, SendError> {
        let config = Arc::new(config);
        let (stop, _) = watch::channel(false);
        let mut forwarder = Forwarder {
            config: config.clone(),
            tasks: std::sync::Mutex::new(Vec::new()),
            spikes: Vec::new(),
            metrics: Vec::new(),
            stop,
        };
        // Every output is set up before any task starts, so a bad one leaves nothing running.
        let mut transports = Vec::with_capacity(config.outputs.len());
        for output in &config.outputs {
            transports.push(Transport::new(output).await?);
        }
        for (output, transport) in config.outputs.iter().zip(transports) {
            let metrics = Arc::new(OutputMetrics::new(
                &output.name,
                transport_name(output.transport),
            ));
            let (spike_tx, spike_rx) = mpsc::channel(SPIKE_QUEUE);
            let task = Output {
                store: store.clone(),
                config: config.clone(),
                output: output.clone(),
                transport,
                metrics: metrics.clone(),
                spikes: spike_rx,
                stop: forwarder.stop.subscribe(),
                position: None,
            };
            let watched = watch_task(
                cursor_name(&output.name),
                task.run(),
                forwarder.stop.subscribe(),
                on_ended.clone(),
            );
            forwarder
                .tasks
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .push(watched);
            forwarder.spikes.push(spike_tx);
            forwarder.metrics.push(metrics);
        }
        if !config.outputs.is_empty() && config.anyone_sends(EventKind::Spike) {
            let queue = SpikeQueue {
                config: config.clone(),
                senders: forwarder.spikes.clone(),
                metrics: forwarder.metrics.clone(),
            };
            let task = super::spikes::run(
                store,
                config.clone(),
                move |s| queue.push(s),
                forwarder.stop.subscribe(),
            );
            let watched = watch_task(
                "gelf:spikes".to_owned(),
                task,
                forwarder.stop.subscribe(),
                on_ended,
            );
            forwarder
                .tasks
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .push(watched);
        }
        Ok(forwarder)
    }

    /// The counters of each output, for `/metrics` ([`super::metrics::render`]).
    pub fn metrics(&self) -> &[Arc<OutputMetrics>] {
        &self.metrics
    }

    /// The hook for the analysis: queues a detected spike on every output
    /// whose config sends spikes for its project. Never waits; a full queue
    /// drops the spike and counts it.
    pub fn spike(&self, spike: &SpikeSummary) {
        push_spike(&self.config, &self.spikes, &self.metrics, spike);
    }

    /// Stops every output after its current send (a batch not yet through is
    /// sent again at the next start) and waits for them.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Spawns `task` and tells `on_ended` its name when it returns or unwinds
/// before the forwarder was stopped (a drop guard sees both).
fn watch_task(
    name: String,
    task: impl std::future::Future<Output = ()> + Send + 'static,
    stop: watch::Receiver<bool>,
    on_ended: OnEnded,
) -> JoinHandle<()> {
    struct Guard {
        name: String,
        stop: watch::Receiver<bool>,
        on_ended: OnEnded,
    }
    impl Drop for Guard {
        fn drop(&mut self) {
            if !*self.stop.borrow() {
                (self.on_ended)(&self.name);
            }
        }
    }
    tokio::spawn(async move {
        let _guard = Guard {
            name,
            stop,
            on_ended,
        };
        task.await;
    })
}

/// Queues a spike's message on every output when its project sends spikes;
/// a full queue drops it and counts the drop.
fn push_spike(
    config: &GelfConfig,
    senders: &[mpsc::Sender<(String, Message)>],
    metrics: &[Arc<OutputMetrics>],
    spike: &SpikeSummary,
) {
    if !config.sends(&spike.project, EventKind::Spike) {
        return;
    }
    let message = spike_message(spike, config.full_message_top);
    for (tx, m) in senders.iter().zip(metrics) {
        if tx
            .try_send((spike.project.clone(), message.clone()))
            .is_err()
        {
            m.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What the spike watcher task holds to queue spikes like [`Forwarder::spike`].
struct SpikeQueue {
    config: Arc<GelfConfig>,
    senders: Vec<mpsc::Sender<(String, Message)>>,
    metrics: Vec<Arc<OutputMetrics>>,
}

impl SpikeQueue {
    fn push(&self, spike: &SpikeSummary) {
        push_spike(&self.config, &self.senders, &self.metrics, spike);
    }
}

fn transport_name(t: TransportKind) -> &'static str {
    match t {
        TransportKind::Udp => "udp",
        TransportKind::Tcp => "tcp",
        TransportKind::Http => "http",
    }
}

/// The cursor name of an output in the store's `cursors` table.
pub fn cursor_name(output: &str) -> String {
    format!("gelf:{output}")
}

struct Output {
    store: Arc<Store>,
    config: Arc<GelfConfig>,
    output: OutputConfig,
    transport: Transport,
    metrics: Arc<OutputMetrics>,
    spikes: mpsc::Receiver<(String, Message)>,
    stop: watch::Receiver<bool>,
    /// The `seq` this output has handled up to, once read from its cursor.
    position: Option<i64>,
}

impl Output {
    async fn run(mut self) {
        let name = cursor_name(&self.output.name);
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        let mut reader: Option<Reader> = None;
        let mut cursor: Option<i64> = None;
        let mut read_delay = self.initial_delay();
        loop {
            if *self.stop.borrow() {
                break;
            }
            while let Ok((_, m)) = self.spikes.try_recv() {
                if !self.deliver(vec![m]).await {
                    return;
                }
            }
            let from = cursor;
            let saved_as = name.clone();
            let config = self.config.clone();
            let taken = reader.take();
            let store = self.store.clone();
            let read = tokio::task::spawn_blocking(move || {
                let r = match taken {
                    Some(r) => r,
                    None => store.reader()?,
                };
                let result = (|| {
                    let c = match from {
                        Some(c) => c,
                        None => r.cursor(&saved_as)?,
                    };
                    read_batch(&r, c, &config).map(|b| (c, b))
                })();
                Ok::<_, StoreError>((r, result))
            })
            .await;
            let (c, batch) = match read {
                Ok(Ok((r, Ok((c, batch))))) => {
                    reader = Some(r);
                    (c, batch)
                }
                failed => {
                    let why = match failed {
                        Ok(Ok((r, Err(e)))) => {
                            reader = Some(r);
                            e.to_string()
                        }
                        Ok(Err(e)) => e.to_string(),
                        Err(e) => e.to_string(),
                        Ok(Ok((_, Ok(_)))) => unreachable!("handled above"),
                    };
                    self.metrics.read_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "gelf output {}: reading the store failed, retrying in {read_delay:?}: {why}",
                        self.output.name
                    );
                    if !self.pause(read_delay).await {
                        break;
                    }
                    read_delay = self.next_delay(read_delay);
                    continue;
                }
            };
            read_delay = self.initial_delay();
            cursor = Some(c);
            self.position = Some(c);
            self.metrics.cursor.store(c, Ordering::Relaxed);
            self.metrics
                .lag
                .store((batch.max - c).max(0), Ordering::Relaxed);
            if batch.next == c {
                // Caught up: wait for new records, a spike, or the stop.
                let woke = tokio::select! {
                    _ = tokio::time::sleep(poll) => None,
                    spike = self.spikes.recv() => spike,
                    _ = self.stop.wait_for(|s| *s) => break,
                };
                if let Some((_, m)) = woke
                    && !self.deliver(vec![m]).await
                {
                    break;
                }
                continue;
            }
            let (next, max) = (batch.next, batch.max);
            if !self.deliver(self.messages(batch)).await {
                break;
            }
            let now = crate::store::now_micros();
            if let Err(e) = self
                .store
                .set_cursor(&cursor_name(&self.output.name), next, now)
                .await
            {
                // The batch goes again after a restart: duplicates, never a loss.
                tracing::warn!(
                    "gelf output {}: cannot save cursor {next}: {e}",
                    self.output.name
                );
            }
            cursor = Some(next);
            self.position = Some(next);
            self.metrics.cursor.store(next, Ordering::Relaxed);
            self.metrics
                .lag
                .store((max - next).max(0), Ordering::Relaxed);
        }
    }

    fn messages(&self, batch: Batch) -> Vec<Message> {
        #[cfg(any(test, feature = "test-support"))]
        if batch
            .records
            .iter()
            .any(|(_, r, _)| r["host"] == super::build::TASK_PANIC_MARKER)
        {
            panic!("test marker: the output task dies");
        }
        let mut messages = Vec::new();
        for (seq, record, load) in &batch.records {
            // A record the builder cannot handle is a bug, but it must cost
            // that record only: left to unwind, it would end the output
            // task, and after a restart the output would stop at the same
            // record again, forwarding nothing more.
            let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                record_messages(record, &self.config, *load)
            }));
            match built {
                Ok(built) => messages.extend(built.into_iter().map(|(_, m)| m)),
                Err(_) => {
                    self.metrics.build_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        "gelf output {}: building the messages of stored record seq {seq} panicked (a bug); the record is skipped",
                        self.output.name
                    );
                }
            }
        }
        messages
    }

    /// Sends until everything is through (TCP, HTTP) or tried once (UDP).
    /// False when stopped before that.
    async fn deliver(&mut self, messages: Vec<Message>) -> bool {
        // A batch whose records all stay home (kinds a project does not
        // send) has nothing to send: no connection, no failure to retry.
        if messages.is_empty() {
            return true;
        }
        let mut done = vec![false; messages.len()];
        let mut delay = self.initial_delay();
        let mut failures = 0u32;
        loop {
            let before = done.iter().filter(|d| **d).count();
            let result = self.transport.send(&messages, &mut done).await;
            let now_done = done.iter().filter(|d| **d).count();
            let m = &self.metrics;
            match result {
                Ok(sent) => {
                    m.sent.fetch_add(sent.delivered, Ordering::Relaxed);
                    m.failed.fetch_add(sent.dropped, Ordering::Relaxed);
                    m.dropped.fetch_add(sent.dropped, Ordering::Relaxed);
                    m.shortened.fetch_add(sent.shortened, Ordering::Relaxed);
                    if failures > 0 {
                        tracing::info!(
                            "gelf output {}: delivering again after {failures} failed attempts",
                            self.output.name
                        );
                    }
                    return true;
                }
                Err(e) => {
                    m.sent
                        .fetch_add((now_done - before) as u64, Ordering::Relaxed);
                    m.failed
                        .fetch_add((messages.len() - now_done) as u64, Ordering::Relaxed);
                    failures += 1;
                    // One line per outage, then quiet until it is over.
                    if failures == 1 {
                        tracing::warn!(
                            "{e}; retrying with backoff up to {} ms",
                            self.config.retry_max_ms
                        );
                    }
                }
            }
            // Records keep arriving during an outage: the lag says so.
            self.refresh_lag();
            if !self.pause(delay).await {
                return false;
            }
            delay = self.next_delay(delay);
        }
    }

    /// Sets the lag from the store's newest `seq` and this output's
    /// position, without reading the store.
    fn refresh_lag(&self) {
        if let Some(position) = self.position {
            let behind = (self.store.last_seq() - position).max(0);
            self.metrics.lag.store(behind, Ordering::Relaxed);
        }
    }

    /// Sleeps unless stopped first; false when stopped.
    async fn pause(&mut self, delay: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = self.stop.wait_for(|s| *s) => false,
        }
    }

    fn initial_delay(&self) -> Duration {
        Duration::from_millis(self.config.retry_initial_ms)
    }

    fn next_delay(&self, d: Duration) -> Duration {
        (d * 2).min(Duration::from_millis(self.config.retry_max_ms))
    }
}
