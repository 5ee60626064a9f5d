//! GELF output to Graylog, where users keep and search their data beyond
//! the store's retention.
//!
//! Modules, one job each:
//! - [`config`]: the `[gelf]` config section (outputs, kinds per project, batching, backoff).
//! - [`message`]: one GELF 1.1 message, built valid, and [`message::check`], the rules a receiver checks.
//! - [`build`]: stored records (and spikes) to messages.
//! - [`batch`]: reads the store after an output's durable cursor, bounded in rows and bytes.
//! - [`udp`]: compression and chunking; [`transport`]: UDP, TCP (optionally TLS) and HTTP(S) senders.
//! - [`forwarder`]: one task per output: read, build, send with retries, move the cursor.
//! - [`spikes`]: hands each settled spike the analysis detects to the outputs, once.
//! - [`metrics`]: sent, failed, shortened and lag per output, in the Prometheus text format.
//! - `receiver`: the project's own GELF receiver (UDP, TCP, HTTP), for tests and the benchmark
//!   only (the `test-support` feature).
//!
//! **Architecture invariant:** the forwarder reads only the store, never the
//! ingest path, so Graylog's speed or absence never touches ingest.

pub mod batch;
pub mod build;
pub mod config;
pub mod forwarder;
pub mod message;
pub mod metrics;
#[cfg(any(test, feature = "test-support"))]
pub mod receiver;
pub mod spikes;
pub mod transport;
pub mod udp;

pub use build::{SpikeSummary, Suspect};
pub use config::{EventKind, GelfConfig, OutputConfig};
pub use forwarder::Forwarder;
pub use message::Message;
