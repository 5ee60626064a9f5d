//! pg-watch: the DB-host daemon of Bitville APM.
//!
//! - [`log`]: PostgreSQL log parsing (stderr with any prefix, csvlog, jsonlog) and event classes.
//! - [`tailer`]: checkpointed tailing of the log directory across rotation.
//! - [`activity`]: pg_stat_activity samples, columns by server version.
//! - [`statements`]: pg_stat_statements snapshots, deltas, reset detection.
pub mod activity;
pub mod log;
pub mod statements;
pub mod tailer;
