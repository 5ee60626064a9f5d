//! Gets the spike report of a window from the running processor.
//!
//! First through its HTTP API (`GET /v1/report`); when the processor's router
//! does not serve that route (404), the processor is stopped, its store file
//! opened read-only and the analysis library asked directly, as
//! `processor report spike` does when no processor runs; then the processor
//! is started again on the same store and port.

use processor::analysis::report::Report;
use processor::analysis::{AnalysisError, Frame, Scope, format_time, report};
use processor::store::Reader;

use super::{PROJECT, Stack, TOKEN, http_get, wait_ready};

/// Where a report came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Api,
    StoreFile,
}

/// The report of `frame` for the scenarios' project.
///
/// # Errors
/// The API answered an error, or the store could not be read.
pub fn spike_report(stack: &mut Stack, frame: &Frame) -> Result<(Report, Via), String> {
    let path = format!(
        "/v1/report?from={}&to={}&baseline_from={}&baseline_to={}",
        format_time(frame.window.from),
        format_time(frame.window.to),
        format_time(frame.baseline.from),
        format_time(frame.baseline.to)
    );
    match http_get(&stack.processor_addr, &path, Some(TOKEN))? {
        (200, body) => {
            let r = serde_json::from_str(&body)
                .map_err(|e| format!("GET {path}: not a report ({e}): {body:.300}"))?;
            Ok((r, Via::Api))
        }
        (404, _) => from_store_file(stack, frame).map(|r| (r, Via::StoreFile)),
        (status, body) => Err(format!("GET {path}: {status} {body:.300}")),
    }
}

fn from_store_file(stack: &mut Stack, frame: &Frame) -> Result<Report, String> {
    match stack.processor.stop() {
        Some(status) if status.success() => {}
        other => {
            return Err(format!(
                "processor did not stop cleanly ({other:?}):\n{}",
                stack.processor.log_tail(20)
            ));
        }
    }
    let result = Reader::open_read_only(&stack.store_path)
        .map_err(AnalysisError::from)
        .and_then(|src| report::report(&src, &Scope::Project(PROJECT.to_owned()), frame))
        .map_err(|e| format!("report from {}: {e}", stack.store_path.display()));
    let addr = stack.processor_addr.clone();
    stack.processor.start()?;
    wait_ready(&mut stack.processor, &addr)?;
    result
}

/// The ranking as a table, for the test output.
pub fn table(r: &Report, rows: usize) -> String {
    let mut out = format!(
        "  window {} .. {} against {} .. {}\n  requests {} (baseline {}), request-seconds {} (baseline {}), excess {}\n",
        r.from,
        r.to,
        r.baseline_from,
        r.baseline_to,
        r.totals.requests,
        r.totals.baseline_requests,
        r.totals.request_seconds,
        r.totals.baseline_request_seconds,
        r.totals.excess_request_seconds
    );
    for s in r.suspects.iter().take(rows) {
        let name: String = s.name.chars().take(90).collect();
        out.push_str(&format!(
            "  {:>2}. {:<8} {:>8.3} s {:>6.1}%  {}  [window {:.3} s, baseline {:.3} s]\n",
            s.rank,
            s.kind.label(),
            s.score_s,
            s.share * 100.0,
            name,
            s.window_s,
            s.baseline_s
        ));
    }
    out
}
