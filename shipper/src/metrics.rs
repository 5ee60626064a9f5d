//! [`Metrics`]: the engine's counters and gauges, shared with the `/metrics`
//! endpoint and rendered in the Prometheus text format as
//! `bitville_shipper_*` (see [`bitville_daemon::metrics`]).

use std::sync::atomic::{AtomicU64, Ordering};

bitville_daemon::counters! {
    /// Counters and gauges of one engine, rendered as `bitville_shipper_*`
    /// (in pg-watch too, which runs the same engine).
    pub struct Metrics {
        /// Complete lines read from spool files.
        lines_read_total: counter,
        /// Bytes of complete lines read from spool files, newlines included.
        bytes_read_total: counter,
        /// Lines the processor acknowledged (accepted or duplicate).
        lines_shipped_total: counter,
        /// Uncompressed bytes of acknowledged batches.
        bytes_shipped_total: counter,
        /// Batches acknowledged with a 2xx.
        batches_shipped_total: counter,
        /// Batch attempts that failed (transport error or non-2xx status).
        batches_failed_total: counter,
        /// Lines the processor reported as duplicates it already had.
        lines_duplicate_total: counter,
        /// Lines the processor refused one by one; they go to quarantine.
        lines_rejected_total: counter,
        /// Lines written to the quarantine file (no valid envelope, or refused).
        lines_quarantined_total: counter,
        /// Lines quarantined because the processor failed on them (500) again
        /// and again while it stored the lines around them.
        lines_poisoned_total: counter,
        /// Lines longer than the line cap, skipped.
        lines_overcap_total: counter,
        /// Partial last lines of writers that died mid-line, skipped once idle.
        fragments_skipped_total: counter,
        /// Files found shorter than the position already read.
        truncations_total: counter,
        /// Spool files deleted after every line was acknowledged.
        files_cleaned_total: counter,
        /// Checkpoint files written.
        checkpoints_written_total: counter,
        /// Host-metrics samples written to the spool.
        host_samples_total: counter,
        /// Host-metrics samples dropped (spool full or write error).
        host_samples_dropped_total: counter,
        /// Spool files being tailed.
        files_tracked: gauge,
        /// Bytes in spool files not yet acknowledged.
        lag_bytes: gauge,
        /// Seconds the oldest unacknowledged data has waited.
        lag_seconds: gauge,
        /// Bytes of spool files in the spool directories.
        spool_bytes: gauge,
        /// 1 while the spool-full flag is raised in some spool directory.
        spool_full: gauge,
        /// Circuit breaker: 0 closed, 1 open, 2 half-open (probing).
        breaker_state: gauge,
    }
}

/// The subsystem of the engine's metric names: `bitville_shipper_*`.
pub const SUBSYSTEM: &str = "shipper";

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets a gauge.
    pub fn set(gauge: &AtomicU64, v: u64) {
        gauge.store(v, Ordering::Relaxed);
    }

    /// Reads a metric.
    pub fn get(metric: &AtomicU64) -> u64 {
        metric.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_lists_every_metric_with_help_and_type() {
        let m = Metrics::default();
        Metrics::add(&m.lines_read_total, 3);
        Metrics::set(&m.breaker_state, 1);
        let text = m.render(SUBSYSTEM);
        assert!(
            text.contains("# TYPE bitville_shipper_lines_read_total counter\nbitville_shipper_lines_read_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP bitville_shipper_breaker_state Circuit breaker: 0 closed"),
            "{text}"
        );
        assert!(text.contains("bitville_shipper_breaker_state 1\n"));
        assert_eq!(text.lines().filter(|l| l.starts_with("# TYPE")).count(), 23);
    }
}
