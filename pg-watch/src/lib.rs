//! pg-watch: the DB-host daemon of Bitville APM.
//!
//! - [`config`]: the TOML configuration.
//! - [`check`]: `--check-config`, every problem with the config, PostgreSQL and the processor on its own line.
//! - [`app`]: the process: status server (`/healthz`, `/readyz`, `/metrics`), daemon, reload on SIGHUP.
//! - [`daemon`]: sampling, tailing and the shipper engine tied together until shutdown.
//! - [`log`]: PostgreSQL log parsing (stderr with any prefix, csvlog, jsonlog) and event classes.
//! - [`tailer`]: checkpointed tailing of the log directory across rotation.
//! - [`logs`]: tailers and classification into pg_log records.
//! - [`activity`]: pg_stat_activity samples, columns by server version.
//! - [`statements`]: pg_stat_statements snapshots, deltas, reset detection.
pub mod activity;
pub mod app;
pub mod check;
pub mod config;
pub mod daemon;
pub mod log;
pub mod logs;
pub mod statements;
pub mod tailer;
