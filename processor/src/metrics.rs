//! Counters for `/metrics`, in the Prometheus text format.
//!
//! Record counters are keyed by project and kind; the sets are small (a few
//! projects, five kinds), so a mutex-guarded map is cheaper than anything
//! cleverer. Refused lines whose project or kind cannot be read are counted
//! under `unknown`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bitville_daemon::metrics::{Exposition, Kind};

use crate::gelf::metrics::OutputMetrics;

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Accepted,
    Duplicate,
    Refused,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::Refused => "refused",
        }
    }
}

/// Upper bounds of the batch latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Every counter of the processor.
#[derive(Debug, Default)]
pub struct Metrics {
    records: Mutex<BTreeMap<(String, String, Outcome), u64>>,
    responses: Mutex<BTreeMap<u16, u64>>,
    batch_latency: Mutex<Histogram>,
    pub udp_received: AtomicU64,
    pub udp_queued: AtomicU64,
    udp_refused: Mutex<BTreeMap<&'static str, u64>>,
    /// Connections refused when accepted, by cap (`per_client`, `total`).
    connections_refused: Mutex<BTreeMap<&'static str, u64>>,
    /// Lines whose handling panicked (a bug): each was refused alone.
    pub line_panics: AtomicU64,
    pub retention_runs: AtomicU64,
    pub retention_failures: AtomicU64,
    pub retention_dropped_days: AtomicU64,
    /// The GELF outputs' counters, set once the forwarder has started.
    gelf_outputs: OnceLock<Vec<Arc<OutputMetrics>>>,
}

impl Metrics {
    pub fn record(&self, project: &str, kind: &str, outcome: Outcome, n: u64) {
        if n == 0 {
            return;
        }
        let mut map = self.records.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((project.to_owned(), kind.to_owned(), outcome))
            .or_default() += n;
    }

    pub fn response(&self, status: u16) {
        *self
            .responses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(status)
            .or_default() += 1;
    }

    pub fn batch_latency(&self, seconds: f64) {
        let mut h = self.batch_latency.lock().unwrap_or_else(|e| e.into_inner());
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// Registers the GELF outputs' counters for [`Metrics::render`]; only
    /// the first call counts (one forwarder per processor).
    pub fn set_gelf_outputs(&self, outputs: Vec<Arc<OutputMetrics>>) {
        let _ = self.gelf_outputs.set(outputs);
    }

    pub fn udp_refused(&self, reason: &'static str) {
        *self
            .udp_refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    pub fn connection_refused(&self, reason: &'static str) {
        *lock(&self.connections_refused).entry(reason).or_default() += 1;
    }

    /// A counter's value, for tests and logs.
    pub fn records_total(&self, project: &str, kind: &str, outcome: Outcome) -> u64 {
        let map = self.records.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(project.to_owned(), kind.to_owned(), outcome))
            .copied()
            .unwrap_or(0)
    }

    /// The Prometheus text, with the store's size and rows passed in.
    pub fn render(&self, store_bytes: u64, table_rows: &[(String, i64)], ready: bool) -> String {
        let mut out = Exposition::new("");
        out.family(
            "records_total",
            "Records received, by project, kind and outcome.",
            Kind::Counter,
        );
        for ((project, kind, outcome), n) in lock(&self.records).iter() {
            let labels = [
                ("project", project.as_str()),
                ("kind", kind.as_str()),
                ("outcome", outcome.as_str()),
            ];
            out.sample("records_total", &labels, n);
        }
        out.family(
            "ingest_responses_total",
            "Ingest responses by HTTP status.",
            Kind::Counter,
        );
        for (status, n) in lock(&self.responses).iter() {
            out.sample(
                "ingest_responses_total",
                &[("status", &status.to_string())],
                n,
            );
        }
        {
            let h = lock(&self.batch_latency);
            out.family(
                "batch_seconds",
                "Time from a batch's arrival to its durable commit.",
                Kind::Histogram,
            );
            for (bound, n) in LATENCY_BUCKETS.iter().zip(h.counts) {
                out.sample("batch_seconds_bucket", &[("le", &bound.to_string())], n);
            }
            out.sample("batch_seconds_bucket", &[("le", "+Inf")], h.count);
            out.sample("batch_seconds_sum", &[], h.sum);
            out.sample("batch_seconds_count", &[], h.count);
        }
        out.family(
            "udp_datagrams_total",
            "UDP datagrams by outcome: received, queued for the store, refused (by reason).",
            Kind::Counter,
        );
        let received = self.udp_received.load(Ordering::Relaxed);
        let queued = self.udp_queued.load(Ordering::Relaxed);
        out.sample("udp_datagrams_total", &[("outcome", "received")], received);
        out.sample("udp_datagrams_total", &[("outcome", "queued")], queued);
        for (reason, n) in lock(&self.udp_refused).iter() {
            let labels = [("outcome", "refused"), ("reason", reason)];
            out.sample("udp_datagrams_total", &labels, n);
        }
        out.family(
            "ingest_connections_refused_total",
            "Connections refused when accepted, by the cap they passed (per_client, total).",
            Kind::Counter,
        );
        for (reason, n) in lock(&self.connections_refused).iter() {
            out.sample("ingest_connections_refused_total", &[("reason", reason)], n);
        }
        out.single(
            "store_bytes",
            "Size of the store file and its WAL.",
            Kind::Gauge,
            store_bytes,
        );
        out.family(
            "store_rows",
            "Rows per table, all retained days.",
            Kind::Gauge,
        );
        for (table, n) in table_rows {
            out.sample("store_rows", &[("table", table)], n);
        }
        for (name, help, counter) in [
            (
                "ingest_line_panics_total",
                "Lines whose handling panicked (a bug); each was refused alone, never its batch.",
                &self.line_panics,
            ),
            (
                "retention_runs_total",
                "Retention runs.",
                &self.retention_runs,
            ),
            (
                "retention_failures_total",
                "Retention runs that failed (retried at the next).",
                &self.retention_failures,
            ),
            (
                "retention_dropped_days_total",
                "Expired days dropped.",
                &self.retention_dropped_days,
            ),
        ] {
            out.single(name, help, Kind::Counter, counter.load(Ordering::Relaxed));
        }
        if let Some(outputs) = self.gelf_outputs.get() {
            crate::gelf::metrics::render(outputs, &mut out);
        }
        out.single(
            "ready",
            "1 when the store's writer commits (as /readyz says).",
            Kind::Gauge,
            u8::from(ready),
        );
        out.finish()
    }
}

/// A poisoned counter map is still a good counter map.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.record("shop", "request", Outcome::Accepted, 3);
        m.record("shop", "request", Outcome::Accepted, 2);
        m.batch_latency(0.003);
        let text = m.render(1234, &[("requests".into(), 5)], true);
        assert!(
            text.contains(
                "bitville_records_total{project=\"shop\",kind=\"request\",outcome=\"accepted\"} 5"
            ),
            "{text}"
        );
        assert!(
            text.contains("bitville_batch_seconds_bucket{le=\"0.0025\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("bitville_batch_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(text.contains("bitville_store_bytes 1234"));
        assert!(text.contains("bitville_store_rows{table=\"requests\"} 5"));
        assert!(
            !text.contains("bitville_gelf"),
            "no GELF lines without outputs: {text}"
        );
    }

    #[test]
    fn renders_gelf_outputs_once_registered() {
        let m = Metrics::default();
        let output = Arc::new(OutputMetrics::new("graylog", "tcp"));
        output.sent.fetch_add(7, Ordering::Relaxed);
        m.set_gelf_outputs(vec![output]);
        let text = m.render(0, &[], true);
        assert!(text.contains("bitville_gelf_messages_total{output=\"graylog\",transport=\"tcp\",outcome=\"sent\"} 7"), "{text}");
    }
}
