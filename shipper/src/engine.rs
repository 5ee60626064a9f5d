//! The tail-and-ship engine: [`EngineConfig`] and [`run`].
//!
//! One task owns every tailed file, the open batch and the checkpoint, and
//! sends one batch at a time, so lines of a file reach the processor in
//! file order and an acknowledgement moves positions that nothing else
//! touches. The spool is the buffer: while the processor is away the engine
//! stops reading and keeps scanning, so the spool cap still works.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bitville_daemon::Shutdown;
use bytes::Bytes;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::batcher::{Batch, Batcher, FileKey};
use crate::breaker::CircuitBreaker;
use crate::checkpoint::{CheckpointError, Checkpointer, FileCheckpoint};
use crate::cleanup::{self, Cleanup, CleanupInput};
use crate::envelope::EnvelopeCheck;
use crate::fingerprint::{FileId, Fingerprinter};
use crate::host_metrics::HostSampler;
use crate::metrics::Metrics;
use crate::quarantine::Quarantine;
use crate::ship::{IngestReply, SendOutcome, ShipError, Shipper};
use crate::spool::{SpoolName, SpoolWriter, utc_hour};
use crate::spool_cap::{FlagChange, SpoolCap};
use crate::tailer::{Flow, LineEvent, PollOutcome, Presence, TailedFile};
use crate::watcher::Watcher;

/// Retry, breaker and timeout settings of the HTTP side.
#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// First retry delay; doubles per failure, with jitter.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Failures in a row that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker waits before one probe.
    pub breaker_cooldown: Duration,
    /// A request slower than this fails (and is retried).
    pub request_timeout: Duration,
    /// 500s in a row on one batch after which it is split to find a line
    /// the processor cannot take (see [`SendOutcome::Failed`]).
    pub poison_after: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            poison_after: 3,
        }
    }
}

/// The host-metrics sampler that writes into a spool the engine ships.
#[derive(Debug, Clone)]
pub struct HostMetricsConfig {
    /// `"shipper"` or `"pg-watch"`, the record's `source`.
    pub source: &'static str,
    pub project: String,
    pub host: String,
    pub interval: Duration,
    /// Spool directory written with writer name `host`.
    pub spool_dir: PathBuf,
}

/// Everything the engine needs. [`EngineConfig::new`] fills the defaults.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Directories holding spool files; each is watched and scanned.
    pub spool_dirs: Vec<PathBuf>,
    /// Checkpoints and quarantine live here, never in a spool directory.
    pub state_dir: PathBuf,
    /// The processor's base URL (the engine posts to `/v1/ingest`).
    pub processor_url: String,
    /// Bearer token of the project.
    pub token: String,
    /// A batch closes at this many uncompressed bytes.
    pub batch_max_bytes: usize,
    /// A batch closes this long after its first line.
    pub batch_max_age: Duration,
    /// gzip level, 1 (fast) to 9.
    pub compression_level: u32,
    /// Longer lines are skipped and counted.
    pub max_line_bytes: usize,
    /// Spool-full flag above this many bytes per spool directory.
    pub spool_max_bytes: u64,
    /// The quarantine file rotates at this size.
    pub quarantine_max_bytes: u64,
    /// Periodic scan, whatever the watcher says.
    pub scan_interval: Duration,
    /// A partial last line this old belongs to a dead writer and is skipped.
    pub fragment_idle: Duration,
    /// A finished file must be untouched this long before deletion.
    pub cleanup_grace: Duration,
    /// Delete finished files (off for spools someone else cleans).
    pub cleanup: bool,
    /// Checkpoints are written at most this often (and on shutdown).
    pub checkpoint_interval: Duration,
    /// On shutdown, the batch in flight gets this long to be acknowledged.
    pub drain_timeout: Duration,
    pub retry: RetryConfig,
    pub host_metrics: Option<HostMetricsConfig>,
    /// Shared with `/metrics`.
    pub metrics: Arc<Metrics>,
}

impl EngineConfig {
    /// A configuration with the documented defaults.
    pub fn new(
        spool_dirs: Vec<PathBuf>,
        state_dir: PathBuf,
        processor_url: &str,
        token: &str,
    ) -> EngineConfig {
        EngineConfig {
            spool_dirs,
            state_dir,
            processor_url: processor_url.to_owned(),
            token: token.to_owned(),
            batch_max_bytes: 1 << 20,
            batch_max_age: Duration::from_secs(1),
            compression_level: 1,
            max_line_bytes: 1 << 20,
            spool_max_bytes: 2 << 30,
            quarantine_max_bytes: 64 << 20,
            scan_interval: Duration::from_secs(1),
            fragment_idle: Duration::from_secs(60),
            cleanup_grace: Duration::from_secs(120),
            cleanup: true,
            checkpoint_interval: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(5),
            retry: RetryConfig::default(),
            host_metrics: None,
            metrics: Arc::new(Metrics::default()),
        }
    }

    /// Checks the values that would make the engine misbehave.
    ///
    /// # Errors
    /// The first bad value, named.
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |m: &str| Err(EngineError::Config(m.to_owned()));
        if self.spool_dirs.is_empty() {
            return bad("spool_dirs is empty");
        }
        if self.spool_dirs.iter().any(|d| d == &self.state_dir) {
            return bad("state_dir must not be a spool directory");
        }
        if self.token.trim().is_empty() {
            return bad("token is empty");
        }
        if self.batch_max_bytes == 0 || self.max_line_bytes == 0 {
            return bad("batch_max_bytes and max_line_bytes must be above 0");
        }
        if !(1..=9).contains(&self.compression_level) {
            return bad("compression_level must be 1 to 9");
        }
        if self.scan_interval.is_zero() || self.scan_interval > Duration::from_secs(2) {
            return bad("scan_interval must be above 0 and at most 2 s");
        }
        if self.retry.poison_after == 0 {
            return bad("retry.poison_after_failures must be above 0");
        }
        Shipper::new(&self.processor_url, &self.token, self.retry.request_timeout)?;
        Ok(())
    }
}

/// Errors that stop the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Ship(#[from] ShipError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs the engine until `shutdown` fires, then sends the open batch
/// (for at most `drain_timeout`), writes the checkpoint and returns.
///
/// # Errors
/// A bad configuration or a state directory that cannot be created; every
/// later failure (a file, a request, a checkpoint write) is logged, counted
/// and retried.
pub async fn run(config: EngineConfig, shutdown: Shutdown) -> Result<(), EngineError> {
    config.validate()?;
    for dir in config.spool_dirs.iter().chain([&config.state_dir]) {
        std::fs::create_dir_all(dir).map_err(|source| EngineError::Dir {
            path: dir.clone(),
            source,
        })?;
    }
    let _sampler = config
        .host_metrics
        .clone()
        .map(|h| AbortOnDrop(tokio::spawn(sample_host(h, config.metrics.clone()))));
    let (watcher, warnings) = Watcher::new(&config.spool_dirs);
    for w in warnings {
        tracing::warn!("{w}");
    }
    let mut stop = Stop {
        signal: shutdown,
        deadline: None,
        grace: config.drain_timeout,
    };
    let mut engine = Engine::new(config)?;
    engine.scan(Instant::now());
    let mut next_scan = Instant::now() + engine.cfg.scan_interval;
    while !stop.requested() {
        let now = Instant::now();
        let more = engine.fill(now);
        if engine.batcher.is_due(now.into_std()) || (!more && engine.batcher.only_skips()) {
            let batch = engine.batcher.take();
            engine.deliver(batch, &mut stop, &mut next_scan).await;
        }
        engine.maybe_checkpoint(false);
        if Instant::now() >= next_scan {
            engine.scan(Instant::now());
            next_scan = Instant::now() + engine.cfg.scan_interval;
        }
        if more {
            tokio::task::yield_now().await;
            continue;
        }
        let mut deadline = next_scan;
        if let Some(d) = engine.batcher.deadline() {
            deadline = deadline.min(Instant::from_std(d));
        }
        if engine.dirty {
            deadline = deadline.min(engine.last_save + engine.cfg.checkpoint_interval);
        }
        stop.wait(&watcher, deadline).await;
    }
    if !engine.batcher.is_empty() {
        let batch = engine.batcher.take();
        engine.deliver(batch, &mut stop, &mut next_scan).await;
    }
    engine.maybe_checkpoint(true);
    tracing::info!("engine stopped, checkpoint written");
    Ok(())
}

/// Aborts a background task when dropped, so that no sampler outlives the
/// engine that owns it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The shutdown signal and, once it fired, the deadline for draining.
struct Stop {
    signal: Shutdown,
    deadline: Option<Instant>,
    grace: Duration,
}

impl Stop {
    fn requested(&self) -> bool {
        self.deadline.is_some()
    }

    /// Waits for the watcher or `until`, returning early on shutdown.
    async fn wait(&mut self, watcher: &Watcher, until: Instant) {
        if self.deadline.is_some() {
            return;
        }
        tokio::select! {
            () = self.signal.recv() => self.deadline = Some(Instant::now() + self.grace),
            () = watcher.wait(until) => {}
        }
    }

    /// Sleeps until `until`, or until the drain deadline after shutdown.
    async fn sleep_until(&mut self, until: Instant) {
        match self.deadline {
            Some(d) => tokio::time::sleep_until(until.min(d)).await,
            None => tokio::select! {
                () = self.signal.recv() => self.deadline = Some(Instant::now() + self.grace),
                () = tokio::time::sleep_until(until) => {}
            },
        }
    }

    /// Runs `fut`; `None` when the drain deadline passed first.
    async fn bounded<T>(&mut self, fut: impl Future<Output = T>) -> Option<T> {
        tokio::pin!(fut);
        loop {
            match self.deadline {
                Some(d) => return tokio::time::timeout_at(d, fut).await.ok(),
                None => tokio::select! {
                    r = &mut fut => return Some(r),
                    () = self.signal.recv() => self.deadline = Some(Instant::now() + self.grace),
                },
            }
        }
    }

    fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// The state of one engine run.
struct Engine {
    cfg: EngineConfig,
    metrics: Arc<Metrics>,
    files: BTreeMap<FileKey, TailedFile>,
    by_id: HashMap<FileId, FileKey>,
    next_key: FileKey,
    /// Checkpoints loaded at start and not yet matched to a file.
    saved: HashMap<FileId, FileCheckpoint>,
    checkpointer: Checkpointer,
    quarantine: Quarantine,
    batcher: Batcher,
    shipper: Shipper,
    backoff: Backoff,
    breaker: CircuitBreaker,
    caps: Vec<SpoolCap>,
    scratch: Vec<u8>,
    dirty: bool,
    last_save: Instant,
    /// When the processor last acknowledged a batch.
    last_ack: Option<Instant>,
    /// Where the next fill starts, so every file gets its turn.
    round_robin: FileKey,
    warned: HashSet<PathBuf>,
}

impl Engine {
    fn new(cfg: EngineConfig) -> Result<Engine, EngineError> {
        let checkpointer = Checkpointer::new(&cfg.state_dir);
        let (saved, warning) = checkpointer.load_or_start_over();
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        let shipper = Shipper::new(&cfg.processor_url, &cfg.token, cfg.retry.request_timeout)?;
        let caps = cfg
            .spool_dirs
            .iter()
            .map(|d| SpoolCap::new(d, cfg.spool_max_bytes))
            .collect();
        Ok(Engine {
            metrics: cfg.metrics.clone(),
            files: BTreeMap::new(),
            by_id: HashMap::new(),
            next_key: 1,
            saved: saved.into_iter().map(|c| (c.id, c)).collect(),
            quarantine: Quarantine::new(&cfg.state_dir, cfg.quarantine_max_bytes),
            batcher: Batcher::new(cfg.batch_max_bytes, cfg.batch_max_age),
            backoff: Backoff::new(cfg.retry.backoff_base, cfg.retry.backoff_max),
            breaker: CircuitBreaker::new(cfg.retry.breaker_failures, cfg.retry.breaker_cooldown),
            checkpointer,
            shipper,
            caps,
            scratch: Vec::new(),
            dirty: false,
            last_save: Instant::now(),
            last_ack: None,
            round_robin: 0,
            warned: HashSet::new(),
            cfg,
        })
    }

    /// Reads lines into the open batch until it is full or every file is at
    /// its end; true when it stopped with more to read.
    fn fill(&mut self, now: Instant) -> bool {
        let keys: Vec<FileKey> = self
            .files
            .range(self.round_robin..)
            .chain(self.files.range(..self.round_robin))
            .map(|(k, _)| *k)
            .collect();
        let std_now = now.into_std();
        let (files, batcher, quarantine, metrics, scratch, cfg, dirty) = (
            &mut self.files,
            &mut self.batcher,
            &mut self.quarantine,
            &self.metrics,
            &mut self.scratch,
            &self.cfg,
            &mut self.dirty,
        );
        for key in keys {
            if batcher.is_full() {
                self.round_robin = key;
                return true;
            }
            let Some(file) = files.get_mut(&key) else {
                continue;
            };
            // Checked before every read, not only at scans: reading a
            // rewritten file at the old offset would ship its lines out of
            // order.
            *dirty |= check_truncation(file, std_now, metrics);
            let (path, generation) = (file.path.clone(), file.generation);
            let outcome = file.poll(
                std_now,
                cfg.max_line_bytes,
                cfg.batch_max_bytes,
                scratch,
                &mut |event| {
                    match event {
                        LineEvent::Line { bytes, start, end } => {
                            Metrics::add(&metrics.lines_read_total, 1);
                            Metrics::add(&metrics.bytes_read_total, end - start);
                            match EnvelopeCheck::check(bytes) {
                                Ok(()) => batcher.push(std_now, key, generation, bytes, start, end),
                                Err(reason) => {
                                    Metrics::add(&metrics.lines_quarantined_total, 1);
                                    if let Err(e) = quarantine.put(&path, start, &reason.0, bytes) {
                                        tracing::error!(
                                            "{e}; line at {}:{start} dropped",
                                            path.display()
                                        );
                                    }
                                    batcher.advance(std_now, key, generation, end);
                                }
                            }
                        }
                        LineEvent::OverCap { start, end } => {
                            Metrics::add(&metrics.lines_overcap_total, 1);
                            tracing::warn!(
                                "{}:{start}: line of {} bytes is over the cap, skipped",
                                path.display(),
                                end - start
                            );
                            batcher.advance(std_now, key, generation, end);
                        }
                    }
                    if batcher.is_full() {
                        Flow::Stop
                    } else {
                        Flow::Continue
                    }
                },
            );
            match outcome {
                Ok(PollOutcome::Stopped | PollOutcome::Budget) => {
                    // The next batch starts with the next file, so one
                    // file's backlog cannot starve the others.
                    self.round_robin = key + 1;
                    return true;
                }
                Ok(PollOutcome::Eof) => {}
                Err(e) => tracing::warn!("reading {}: {e}", path.display()),
            }
        }
        false
    }

    /// Sends `batch` until it is acknowledged, splitting it when the
    /// processor refuses it whole; gives up only at the drain deadline.
    async fn deliver(&mut self, batch: Batch, stop: &mut Stop, next_scan: &mut Instant) {
        if batch.lines.is_empty() {
            self.apply(&batch, &IngestReply::default());
            return;
        }
        let mut queue = VecDeque::from([batch]);
        // When this delivery first met a 500: a line that still fails alone
        // after the processor stored something since then is poison; when
        // nothing was stored since, the processor itself is failing.
        let mut failing_since: Option<Instant> = None;
        while let Some(batch) = queue.pop_front() {
            let body = Bytes::from(batch.compress(self.cfg.compression_level));
            let mut failures = 0;
            loop {
                if stop.expired() {
                    tracing::warn!(
                        "drain deadline passed, batch of {} lines abandoned (it is sent again on restart)",
                        batch.lines.len()
                    );
                    return;
                }
                if let Some(until) = self.breaker.wait_until(Instant::now().into_std()) {
                    self.set_breaker_gauge();
                    self.pause_until(Instant::from_std(until), stop, next_scan)
                        .await;
                    continue;
                }
                self.set_breaker_gauge();
                let Some(outcome) = stop.bounded(self.shipper.send(body.clone())).await else {
                    continue;
                };
                match outcome {
                    SendOutcome::Acked(reply) => {
                        self.last_ack = Some(Instant::now());
                        self.breaker.on_success();
                        self.backoff.reset();
                        self.set_breaker_gauge();
                        self.apply(&batch, &reply);
                        break;
                    }
                    SendOutcome::TooLarge | SendOutcome::Refused { .. }
                        if batch.lines.len() > 1 =>
                    {
                        Metrics::add(&self.metrics.batches_failed_total, 1);
                        let mid = batch.lines.len() / 2;
                        tracing::warn!(
                            "processor refused a batch of {} lines whole ({outcome:?}), splitting it",
                            batch.lines.len()
                        );
                        queue.push_front(batch.slice(mid..batch.lines.len(), true));
                        queue.push_front(batch.slice(0..mid, false));
                        break;
                    }
                    SendOutcome::TooLarge | SendOutcome::Refused { .. } => {
                        Metrics::add(&self.metrics.batches_failed_total, 1);
                        let reason = match &outcome {
                            SendOutcome::Refused { reason } => {
                                format!("processor refused the line: {reason}")
                            }
                            _ => "processor refused the line as too large".to_owned(),
                        };
                        self.quarantine_line(&batch, 0, &reason);
                        self.apply(
                            &batch,
                            &IngestReply {
                                rejected: Vec::new(),
                                ..IngestReply::default()
                            },
                        );
                        break;
                    }
                    SendOutcome::Failed { reason }
                        if failures + 1 >= self.cfg.retry.poison_after =>
                    {
                        Metrics::add(&self.metrics.batches_failed_total, 1);
                        let since = *failing_since.get_or_insert_with(Instant::now);
                        let n = batch.lines.len();
                        if n > 1 {
                            tracing::warn!(
                                "processor failed {} times on a batch of {n} lines ({reason}), \
                                 splitting it to find a line it cannot take",
                                failures + 1
                            );
                            let mid = n / 2;
                            queue.push_front(batch.slice(mid..n, true));
                            queue.push_front(batch.slice(0..mid, false));
                            break;
                        }
                        if self.last_ack.is_some_and(|t| t > since) {
                            Metrics::add(&self.metrics.lines_poisoned_total, 1);
                            let reason = format!(
                                "processor failed on this line {} times while it stored \
                                 others: {reason}",
                                failures + 1
                            );
                            self.quarantine_line(&batch, 0, &reason);
                            self.apply(&batch, &IngestReply::default());
                            break;
                        }
                        failures += 1;
                        self.retry_later(&batch, &reason, None, stop, next_scan)
                            .await;
                    }
                    SendOutcome::Failed { reason } => {
                        Metrics::add(&self.metrics.batches_failed_total, 1);
                        failing_since.get_or_insert_with(Instant::now);
                        failures += 1;
                        self.retry_later(&batch, &reason, None, stop, next_scan)
                            .await;
                    }
                    SendOutcome::Retry { reason, after } => {
                        Metrics::add(&self.metrics.batches_failed_total, 1);
                        self.retry_later(&batch, &reason, after, stop, next_scan)
                            .await;
                    }
                }
            }
        }
    }

    /// A failed attempt: tells the breaker, logs, and waits out the backoff
    /// (or the processor's `Retry-After`, when longer).
    async fn retry_later(
        &mut self,
        batch: &Batch,
        reason: &str,
        after: Option<Duration>,
        stop: &mut Stop,
        next_scan: &mut Instant,
    ) {
        self.breaker.on_failure(Instant::now().into_std());
        self.set_breaker_gauge();
        let delay = self.backoff.next_delay().max(after.unwrap_or_default());
        tracing::warn!(
            "sending {} lines to {}: {reason}; retrying in {delay:?}",
            batch.lines.len(),
            self.shipper.url()
        );
        self.pause_until(Instant::now() + delay, stop, next_scan)
            .await;
    }

    /// Waits without reading, still scanning so that the spool cap and the
    /// gauges stay current while the processor is away.
    async fn pause_until(&mut self, until: Instant, stop: &mut Stop, next_scan: &mut Instant) {
        loop {
            let now = Instant::now();
            if now >= until || stop.expired() {
                return;
            }
            if now >= *next_scan {
                self.scan(now);
                self.maybe_checkpoint(false);
                *next_scan = now + self.cfg.scan_interval;
            }
            stop.sleep_until(until.min(*next_scan)).await;
        }
    }

    fn set_breaker_gauge(&self) {
        Metrics::set(&self.metrics.breaker_state, self.breaker.state().gauge());
    }

    fn quarantine_line(&mut self, batch: &Batch, i: usize, reason: &str) {
        let line = &batch.lines[i];
        let path = self
            .files
            .get(&line.file)
            .map_or_else(|| PathBuf::from("(forgotten file)"), |f| f.path.clone());
        Metrics::add(&self.metrics.lines_quarantined_total, 1);
        if let Err(e) = self
            .quarantine
            .put(&path, line.file_offset, reason, batch.line(i))
        {
            tracing::error!(
                "{e}; line at {}:{} dropped",
                path.display(),
                line.file_offset
            );
        }
    }

    /// An acknowledged batch: quarantine the refused lines, move positions.
    fn apply(&mut self, batch: &Batch, reply: &IngestReply) {
        for r in &reply.rejected {
            if (1..=batch.lines.len()).contains(&r.line) {
                Metrics::add(&self.metrics.lines_rejected_total, 1);
                self.quarantine_line(batch, r.line - 1, &format!("processor: {}", r.reason));
            }
        }
        if !batch.lines.is_empty() {
            Metrics::add(&self.metrics.batches_shipped_total, 1);
            Metrics::add(&self.metrics.lines_shipped_total, batch.lines.len() as u64);
            Metrics::add(&self.metrics.bytes_shipped_total, batch.raw.len() as u64);
            Metrics::add(&self.metrics.lines_duplicate_total, reply.duplicates);
        }
        for (key, (generation, pos)) in &batch.advances {
            if let Some(f) = self.files.get_mut(key) {
                f.ack(*generation, *pos);
            }
        }
        self.dirty = true;
    }

    /// Writes the checkpoint when due, or now when `force`.
    fn maybe_checkpoint(&mut self, force: bool) {
        if !self.dirty || (!force && self.last_save.elapsed() < self.cfg.checkpoint_interval) {
            return;
        }
        if let Err(e) = self.quarantine.sync() {
            tracing::error!("{e}");
        }
        let snapshot: Vec<FileCheckpoint> = self
            .files
            .values()
            .map(|f| FileCheckpoint {
                path: f.path.clone(),
                id: f.id,
                head: f.head,
                offset: f.acked_pos(),
            })
            .chain(self.saved.values().cloned())
            .collect();
        match self.checkpointer.save(&snapshot) {
            Ok(()) => {
                self.dirty = false;
                Metrics::add(&self.metrics.checkpoints_written_total, 1);
            }
            Err(e) => tracing::error!("{e}; retrying at the next acknowledgement"),
        }
        self.last_save = Instant::now();
    }

    /// Finds new, moved and removed files, handles truncation, dead writers'
    /// fragments and cleanup, updates the spool cap and the gauges.
    fn scan(&mut self, now: Instant) {
        let std_now = now.into_std();
        let wall = SystemTime::now();
        let mut seen = HashSet::new();
        let mut spool_bytes = 0;
        for i in 0..self.cfg.spool_dirs.len() {
            let dir = self.cfg.spool_dirs[i].clone();
            let bytes = self.scan_dir(&dir, std_now, &mut seen);
            match self.caps[i].update(bytes) {
                Ok(Some(FlagChange::Raised)) => tracing::warn!(
                    "spool {} holds {bytes} bytes, over its cap: spool-full flag raised",
                    dir.display()
                ),
                Ok(Some(FlagChange::Lowered)) => tracing::info!(
                    "spool {} holds {bytes} bytes: spool-full flag lowered",
                    dir.display()
                ),
                Ok(None) => {}
                Err(e) => tracing::error!("spool-full flag in {}: {e}", dir.display()),
            }
            spool_bytes += bytes;
        }
        Metrics::set(&self.metrics.spool_bytes, spool_bytes);
        // Checkpoints of files that no scan found belong to deleted files.
        self.saved.clear();
        let current_hour = utc_hour(wall);
        let mut forget = Vec::new();
        for (key, f) in self.files.iter_mut() {
            if !seen.contains(key) {
                if f.presence == Presence::Linked {
                    f.presence = Presence::Unlinked { since: std_now };
                }
            } else {
                f.presence = Presence::Linked;
            }
            self.dirty |= check_truncation(f, std_now, &self.metrics);
            if let Some((from, to)) = f.skip_fragment(std_now, self.cfg.fragment_idle) {
                Metrics::add(&self.metrics.fragments_skipped_total, 1);
                tracing::warn!(
                    "{}:{from}: partial line of {} bytes from a writer that stopped, skipped",
                    f.path.display(),
                    to - from
                );
                self.batcher.advance(std_now, *key, f.generation, to);
            }
            let untouched_for = f
                .modified()
                .ok()
                .and_then(|m| wall.duration_since(m).ok())
                .unwrap_or_default();
            let hour = f
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(SpoolName::parse)
                .map(|n| n.hour);
            let input = CleanupInput {
                fully_acked: f.fully_acked(),
                state: f.state,
                presence: f.presence,
                hour,
                current_hour,
                untouched_for,
            };
            match cleanup::decide(input, std_now, self.cfg.cleanup_grace) {
                Cleanup::Delete if self.cfg.cleanup => forget.push((*key, true)),
                Cleanup::Forget => forget.push((*key, false)),
                Cleanup::Delete | Cleanup::Keep => {}
            }
        }
        for (key, delete) in forget {
            let Some(f) = self.files.remove(&key) else {
                continue;
            };
            self.by_id.remove(&f.id);
            self.dirty = true;
            if delete {
                // Delete only what is still the same file at that path.
                let same = std::fs::symlink_metadata(&f.path)
                    .is_ok_and(|m| Fingerprinter::file_id(&m) == f.id);
                if same {
                    match std::fs::remove_file(&f.path) {
                        Ok(()) => {
                            Metrics::add(&self.metrics.files_cleaned_total, 1);
                            tracing::info!(
                                "{} shipped and acknowledged, deleted",
                                f.path.display()
                            );
                        }
                        Err(e) => tracing::warn!("deleting {}: {e}", f.path.display()),
                    }
                }
            }
        }
        let lag_bytes: u64 = self.files.values().map(TailedFile::lag_bytes).sum();
        let lag_secs = self
            .files
            .values()
            .filter_map(TailedFile::behind_since)
            .map(|t| std_now.saturating_duration_since(t).as_secs())
            .max()
            .unwrap_or(0);
        Metrics::set(&self.metrics.lag_bytes, lag_bytes);
        Metrics::set(&self.metrics.lag_seconds, lag_secs);
        Metrics::set(&self.metrics.files_tracked, self.files.len() as u64);
        Metrics::set(
            &self.metrics.spool_full,
            u64::from(self.caps.iter().any(SpoolCap::raised)),
        );
    }

    /// Tracks the spool files of `dir`; returns the bytes they hold.
    fn scan_dir(
        &mut self,
        dir: &Path,
        now: std::time::Instant,
        seen: &mut HashSet<FileKey>,
    ) -> u64 {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                if self.warned.insert(dir.to_owned()) {
                    tracing::warn!("reading spool directory {}: {e}", dir.display());
                }
                return 0;
            }
        };
        let mut bytes = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if SpoolName::parse(name).is_none() {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            bytes += meta.len();
            let id = Fingerprinter::file_id(&meta);
            if let Some(key) = self.by_id.get(&id) {
                seen.insert(*key);
                if let Some(f) = self.files.get_mut(key) {
                    f.path = path;
                }
                continue;
            }
            match self.open_file(path.clone(), id, now) {
                Ok(key) => {
                    seen.insert(key);
                }
                Err(e) => {
                    if self.warned.insert(path.clone()) {
                        tracing::warn!("opening spool file {}: {e}", path.display());
                    }
                }
            }
        }
        bytes
    }

    fn open_file(
        &mut self,
        path: PathBuf,
        id: FileId,
        now: std::time::Instant,
    ) -> std::io::Result<FileKey> {
        let file = std::fs::File::open(&path)?;
        let offset = match self.saved.remove(&id) {
            Some(cp) if Fingerprinter::matches(&file, cp.head)? => cp.offset,
            _ => 0,
        };
        let tailed = TailedFile::open(path, file, offset, now)?;
        let key = self.next_key;
        self.next_key += 1;
        self.by_id.insert(tailed.id, key);
        self.files.insert(key, tailed);
        Ok(key)
    }
}

/// Starts `file` over when it was truncated or replaced; true if it was.
fn check_truncation(file: &mut TailedFile, now: std::time::Instant, metrics: &Metrics) -> bool {
    match file.detect_truncation(now) {
        Ok(true) => {
            Metrics::add(&metrics.truncations_total, 1);
            tracing::warn!(
                "{} was truncated or replaced, reading it again from the start",
                file.path.display()
            );
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::warn!("checking {}: {e}", file.path.display());
            false
        }
    }
}

/// Writes a host-metrics record every interval into the engine's spool.
async fn sample_host(cfg: HostMetricsConfig, metrics: Arc<Metrics>) {
    let mut writer = match SpoolWriter::open(&cfg.spool_dir, "host") {
        Ok(w) => w,
        Err(e) => {
            tracing::error!("host metrics disabled: {e}");
            return;
        }
    };
    let mut sampler = HostSampler::new(cfg.source);
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let line = match sampler
            .sample(&cfg.project, &cfg.host)
            .and_then(|v| serde_json::to_vec(&v).map_err(std::io::Error::other))
        {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("sampling host metrics: {e}");
                continue;
            }
        };
        match writer.append(&line) {
            Ok(true) => Metrics::add(&metrics.host_samples_total, 1),
            Ok(false) => Metrics::add(&metrics.host_samples_dropped_total, 1),
            Err(e) => {
                Metrics::add(&metrics.host_samples_dropped_total, 1);
                tracing::warn!("writing host metrics: {e}");
            }
        }
    }
}
