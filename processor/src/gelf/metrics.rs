//! Counters of the GELF outputs, in the Prometheus text format.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use bitville_daemon::metrics::{Exposition, Kind};

/// The counters of one output; atomics because the forwarder task writes
/// them while `/metrics` reads them.
#[derive(Debug, Default)]
pub struct OutputMetrics {
    pub name: String,
    pub transport: &'static str,
    /// Messages delivered (TCP, HTTP) or handed to the network (UDP).
    pub sent: AtomicU64,
    /// Message sends that failed: retried over TCP and HTTP, lost over UDP.
    pub failed: AtomicU64,
    /// Messages given up on for good: failed UDP sends (best effort) and
    /// spikes that found the output's queue full.
    pub dropped: AtomicU64,
    /// Messages cut to fit 128 UDP chunks.
    pub shortened: AtomicU64,
    /// Store read failures (retried).
    pub read_errors: AtomicU64,
    /// Stored records whose messages could not be built (a bug in the
    /// builder, logged with the record's seq): skipped, so that one record
    /// never stops the output.
    pub build_errors: AtomicU64,
    /// The last stored sequence number handled.
    pub cursor: AtomicI64,
    /// Records stored but not yet handled by this output.
    pub lag: AtomicI64,
}

impl OutputMetrics {
    pub fn new(name: &str, transport: &'static str) -> OutputMetrics {
        OutputMetrics {
            name: name.to_owned(),
            transport,
            ..OutputMetrics::default()
        }
    }
}

/// Appends the families of every output to `out`.
pub fn render(outputs: &[std::sync::Arc<OutputMetrics>], out: &mut Exposition) {
    if outputs.is_empty() {
        return;
    }
    out.family(
        "gelf_messages_total",
        "GELF messages by output and outcome: sent, failed (a send that failed; retried over \
         TCP and HTTP), dropped (given up: UDP failures, spikes over the queue), shortened (cut \
         to 128 UDP chunks).",
        Kind::Counter,
    );
    for o in outputs {
        for (outcome, n) in [
            ("sent", &o.sent),
            ("failed", &o.failed),
            ("dropped", &o.dropped),
            ("shortened", &o.shortened),
        ] {
            let labels = [
                ("output", o.name.as_str()),
                ("transport", o.transport),
                ("outcome", outcome),
            ];
            out.sample("gelf_messages_total", &labels, n.load(Ordering::Relaxed));
        }
    }
    type Read = fn(&OutputMetrics) -> i128;
    let per_output: [(&str, &str, Kind, Read); 4] = [
        (
            "gelf_lag_records",
            "Stored records this output has not handled yet.",
            Kind::Gauge,
            |o| o.lag.load(Ordering::Relaxed).into(),
        ),
        (
            "gelf_cursor",
            "The last store seq this output has handled (saved in the store's cursors table).",
            Kind::Gauge,
            |o| o.cursor.load(Ordering::Relaxed).into(),
        ),
        (
            "gelf_store_read_errors_total",
            "Failed reads of the store by this output (retried).",
            Kind::Counter,
            |o| o.read_errors.load(Ordering::Relaxed).into(),
        ),
        (
            "gelf_build_errors_total",
            "Stored records this output could not turn into messages (a bug, logged with the \
             record's seq): skipped so that the output goes on.",
            Kind::Counter,
            |o| o.build_errors.load(Ordering::Relaxed).into(),
        ),
    ];
    for (name, help, kind, read) in per_output {
        out.family(name, help, kind);
        for o in outputs {
            out.sample(name, &[("output", o.name.as_str())], read(o));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_per_output() {
        let m = std::sync::Arc::new(OutputMetrics::new("lan", "udp"));
        m.sent.fetch_add(3, Ordering::Relaxed);
        m.dropped.fetch_add(2, Ordering::Relaxed);
        m.lag.store(42, Ordering::Relaxed);
        let mut out = Exposition::new("");
        render(&[m], &mut out);
        let text = out.finish();
        assert!(
            text.contains(
                "bitville_gelf_messages_total{output=\"lan\",transport=\"udp\",outcome=\"sent\"} 3"
            ),
            "{text}"
        );
        assert!(text.contains("bitville_gelf_messages_total{output=\"lan\",transport=\"udp\",outcome=\"dropped\"} 2"), "{text}");
        assert!(
            text.contains("bitville_gelf_lag_records{output=\"lan\"} 42"),
            "{text}"
        );
    }
}
