//! Plumbing that every Bitville APM daemon shares, and nothing else: the
//! shipper, pg-watch and the processor each build on it, and none of them
//! imports another daemon for it.
//!
//! - [`check`]: `--check-config` findings, access checks, token files and the processor probe.
//! - [`host`]: the host name records carry by default.
//! - [`metrics`]: the Prometheus text exposition under the one `bitville_` namespace.
//! - [`status`]: the `/healthz`, `/readyz` and `/metrics` routes and their server.
//! - [`shutdown`]: [`Shutdown`], the one stop signal every task listens to.
//! - [`reload`]: the SIGHUP reload loop.

pub mod check;
pub mod host;
pub mod metrics;
pub mod reload;
pub mod shutdown;
pub mod status;

pub use shutdown::{Shutdown, Trigger};
