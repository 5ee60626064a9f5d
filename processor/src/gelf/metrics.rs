//! Counters of the GELF outputs, in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

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

/// Appends the Prometheus text of every output to `out`.
pub fn render(outputs: &[std::sync::Arc<OutputMetrics>], out: &mut String) {
    if outputs.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "# HELP bitville_gelf_messages_total GELF messages by output and outcome: sent, failed (a send that failed; \
         retried over TCP and HTTP), dropped (given up: UDP failures, spikes over the queue), shortened (cut to 128 UDP chunks)."
    );
    let _ = writeln!(out, "# TYPE bitville_gelf_messages_total counter");
    for o in outputs {
        for (outcome, n) in [
            ("sent", &o.sent),
            ("failed", &o.failed),
            ("dropped", &o.dropped),
            ("shortened", &o.shortened),
        ] {
            let _ = writeln!(
                out,
                "bitville_gelf_messages_total{{output=\"{}\",transport=\"{}\",outcome=\"{outcome}\"}} {}",
                escape(&o.name),
                o.transport,
                n.load(Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP bitville_gelf_lag_records Stored records this output has not handled yet."
    );
    let _ = writeln!(out, "# TYPE bitville_gelf_lag_records gauge");
    for o in outputs {
        let _ = writeln!(
            out,
            "bitville_gelf_lag_records{{output=\"{}\"}} {}",
            escape(&o.name),
            o.lag.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP bitville_gelf_cursor The last store seq this output has handled (saved in the store's cursors table)."
    );
    let _ = writeln!(out, "# TYPE bitville_gelf_cursor gauge");
    for o in outputs {
        let _ = writeln!(
            out,
            "bitville_gelf_cursor{{output=\"{}\"}} {}",
            escape(&o.name),
            o.cursor.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP bitville_gelf_store_read_errors_total Failed reads of the store by this output (retried)."
    );
    let _ = writeln!(out, "# TYPE bitville_gelf_store_read_errors_total counter");
    for o in outputs {
        let _ = writeln!(
            out,
            "bitville_gelf_store_read_errors_total{{output=\"{}\"}} {}",
            escape(&o.name),
            o.read_errors.load(Ordering::Relaxed)
        );
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
        let mut text = String::new();
        render(&[m], &mut text);
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
