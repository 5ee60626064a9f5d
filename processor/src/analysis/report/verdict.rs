//! The one-line verdict at the top of a spike report: what the first
//! suspect did, from its evidence. Built once here, carried in the report's
//! JSON (`verdict`), and printed as it is by the command line, the demo and
//! the web UI.

use serde_json::Value;

use super::{Suspect, SuspectKind, Totals};

/// The verdict of a report: no data, no suspect, or a sentence about the
/// first suspect (after a caveat when the baseline had no requests).
pub fn verdict(totals: &Totals, suspects: &[Suspect]) -> String {
    if totals.requests <= 0.0 {
        return "No data: the window has no requests.".to_owned();
    }
    let Some(first) = suspects.first() else {
        return "No suspect: the window carries no more load than its baseline.".to_owned();
    };
    let caveat = if totals.baseline_requests <= 0.0 {
        "No baseline data (every request-second of the window counts as excess). "
    } else {
        ""
    };
    format!("{caveat}{}", sentence(first))
}

/// Seconds as people read them: "806 s", "12.5 s", "0.35 s".
pub fn seconds(s: f64) -> String {
    let a = s.abs();
    if a >= 100.0 {
        format!("{s:.0} s")
    } else if a >= 10.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.2} s")
    }
}

/// One sentence about a suspect, by its kind.
fn sentence(s: &Suspect) -> String {
    let text = |k: &str| s.evidence.get(k).and_then(Value::as_str).map(str::to_owned);
    let number = |k: &str| s.evidence.get(k).and_then(Value::as_f64);
    let share = format!("{:.0} % of the excess", s.share * 100.0);
    let excess = seconds(s.score_s);
    let within = match &s.endpoint {
        Some(e) if *e != s.name => format!(", mostly in {e}"),
        _ => String::new(),
    };
    match s.kind {
        SuspectKind::LockBlocker => {
            let who = match text("blocker_url") {
                Some(url) => format!("{} ({url})", s.name),
                None => s.name.clone(),
            };
            let held = held_for(number("blocker_xact_ms_max"));
            let how = match (text("blocker_query"), text("blocker_state")) {
                (Some(q), Some(state)) => format!(" ({q}, {state}{held})"),
                (Some(q), None) => format!(" ({q}{held})"),
                _ => String::new(),
            };
            let waiters = text("waiter_query").unwrap_or_else(|| "other statements".to_owned());
            format!(
                "{who} held a lock{how}; {waiters} waited: {excess} of requests queued behind it ({share}{within})."
            )
        }
        SuspectKind::NPlusOne => format!("{}: {excess} of loop time ({share}{within}).", s.name),
        SuspectKind::SqlFingerprint => format!(
            "SQL {} took {excess} more than in the baseline ({share}{within}).",
            s.name
        ),
        SuspectKind::PhpFunction => format!(
            "PHP function {} took {excess} more than in the baseline ({share}{within}).",
            s.name
        ),
        SuspectKind::WaitEvent => format!(
            "Database wait {}: {excess} more backend time ({share}).",
            s.name
        ),
        SuspectKind::PhpCpu | SuspectKind::OffCpu | SuspectKind::HostMemory => {
            match text("summary") {
                Some(summary) => format!("{summary} ({share})."),
                None => format!("{}: {excess} ({share}).", s.name),
            }
        }
        SuspectKind::Endpoint => format!(
            "{} explains {excess} itself: traffic {}, latency {} ({share}).",
            s.name,
            seconds(number("traffic_excess_s").unwrap_or(0.0)),
            seconds(number("latency_excess_s").unwrap_or(0.0))
        ),
    }
}

fn held_for(ms: Option<f64>) -> String {
    ms.filter(|ms| *ms > 0.0)
        .map(|ms| format!(" up to {}", seconds(ms / 1000.0)))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn suspects(v: Value) -> Vec<Suspect> {
        serde_json::from_value(v).unwrap()
    }

    fn totals(baseline_requests: f64) -> Totals {
        Totals {
            requests: 100.0,
            baseline_requests,
            ..Totals::default()
        }
    }

    #[test]
    fn a_lock_blocker_says_what_held_what_and_what_waited() {
        let s = suspects(json!([{
            "rank": 1, "kind": "lock_blocker", "name": "POST stock-recount", "score_s": 806.0,
            "share": 1.0, "window_s": 806.0, "baseline_s": 0.0, "endpoint": "POST cart-add",
            "evidence": {
                "blocker_url": "/admin/stock/recount?sku=A-77",
                "blocker_query": "SELECT * FROM stock WHERE sku = $1 FOR UPDATE",
                "blocker_state": "idle in transaction", "blocker_xact_ms_max": 8000.0,
                "waiter_query": "UPDATE stock SET qty = qty - $1 WHERE sku = $2"
            }
        }]));
        assert_eq!(
            verdict(&totals(1690.0), &s),
            "POST stock-recount (/admin/stock/recount?sku=A-77) held a lock (SELECT * FROM stock \
             WHERE sku = $1 FOR UPDATE, idle in transaction up to 8.00 s); UPDATE stock SET qty = \
             qty - $1 WHERE sku = $2 waited: 806 s of requests queued behind it (100 % of the \
             excess, mostly in POST cart-add)."
        );
    }

    #[test]
    fn no_baseline_no_suspect_and_no_data_are_said_plainly() {
        let s = suspects(json!([{
            "rank": 1, "kind": "php_function", "name": "Hog::burn", "score_s": 35.0,
            "share": 0.9, "window_s": 35.0, "baseline_s": 0.0, "endpoint": "GET /export",
            "evidence": {}
        }]));
        let said = verdict(&totals(0.0), &s);
        assert!(said.starts_with("No baseline data"), "{said}");
        assert!(said.ends_with("PHP function Hog::burn took 35.0 s more than in the baseline (90 % of the excess, mostly in GET /export)."), "{said}");
        assert_eq!(
            verdict(&totals(10.0), &[]),
            "No suspect: the window carries no more load than its baseline."
        );
        let mut empty = totals(0.0);
        empty.requests = 0.0;
        assert_eq!(verdict(&empty, &[]), "No data: the window has no requests.");
    }

    #[test]
    fn seconds_read_as_people_read_them() {
        assert_eq!(seconds(806.2), "806 s");
        assert_eq!(seconds(12.46), "12.5 s");
        assert_eq!(seconds(0.349), "0.35 s");
    }
}
