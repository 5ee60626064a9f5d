//! Bitville APM shipper: tails NDJSON spool files with checkpoints and ships
//! every line to the processor, whatever fails. Its [`engine`] is also the
//! tail-and-ship engine of pg-watch.
//!
//! Modules, from the disk to the wire:
//! - [`spool`]: spool file names, the spool-full flag, [`spool::SpoolWriter`].
//! - [`host_metrics`]: [`host_metrics::HostSampler`], host metrics from /proc.
//! - [`fingerprint`]: file identity (device, inode, checksum of the head).
//! - [`tailer`]: [`tailer::TailedFile`], reading lines from byte offsets.
//! - [`watcher`]: wake-ups from file system events.
//! - [`envelope`]: the record-envelope check of each line.
//! - [`quarantine`]: where bad or refused lines go, with the reason.
//! - [`batcher`]: batches by size and age, and the positions they acknowledge.
//! - [`ship`]: [`ship::Shipper`], the POST to `/v1/ingest` and its outcomes.
//! - [`backoff`], [`breaker`]: retry delays and the circuit breaker.
//! - [`checkpoint`]: [`checkpoint::Checkpointer`], positions that survive crashes.
//! - [`cleanup`], [`spool_cap`]: when files are deleted, when the spool is full.
//! - [`metrics`]: counters and gauges, rendered for Prometheus.
//! - [`engine`]: [`engine::EngineConfig`] and [`engine::run`], tying it together.
//! - [`config`]: the shipper's TOML configuration.
//! - [`check`]: `--check-config`, every problem on its own line.
//! - [`status`]: what `/healthz`, `/readyz` and `/metrics` say (served by `bitville_daemon::status`).
//! - [`app`]: the daemon: engine, status server and reload on SIGHUP.

pub mod app;
pub mod backoff;
pub mod batcher;
pub mod breaker;
pub mod check;
pub mod checkpoint;
pub mod cleanup;
pub mod config;
pub mod engine;
pub mod envelope;
pub mod fingerprint;
pub mod host_metrics;
pub mod metrics;
pub mod quarantine;
pub mod ship;
pub mod spool;
pub mod spool_cap;
pub mod status;
pub mod tailer;
pub mod watcher;
