//! One SQL fingerprint over a window: its calls, total and mean time per
//! bucket as PHP measured them, the requests that ran it, its callers, its
//! pg_stat_statements figures, its log events, the plans auto_explain
//! logged for it, and the waits of the backends that ran it.
//!
//! PHP's figures count the captured statements: the agent captures SQL in
//! full records only (slow requests), so they are the statements of the
//! requests worth drilling into, not every call; pg_stat_statements beside
//! them counts every call on the server.

use serde::Serialize;
use serde_json::{Value, json};

use crate::analysis::{
    AnalysisError, ENDPOINT_SQL, Scope, Source, Window, format_time, query, quote, round3,
};

/// Figures per bucket, aligned on `t` (ms since epoch).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Buckets {
    pub t: Vec<i64>,
    pub calls: Vec<f64>,
    pub total_ms: Vec<f64>,
    pub mean_ms: Vec<f64>,
}

impl Buckets {
    fn push(&mut self, t_us: i64, calls: f64, total_ms: f64) {
        self.t.push(t_us / 1000);
        self.calls.push(calls);
        self.total_ms.push(round3(total_ms));
        self.mean_ms.push(if calls > 0.0 {
            round3(total_ms / calls)
        } else {
            0.0
        });
    }
}

/// Everything the fingerprint page shows.
#[derive(Debug, Clone, Serialize)]
pub struct FingerprintDetail {
    pub fingerprint: String,
    pub from: String,
    pub to: String,
    pub bucket_s: i64,
    /// Totals of the captured statements: calls, total_ms, mean_ms, max_ms, failed.
    pub php: Value,
    pub php_series: Buckets,
    /// Statement texts as sent, most frequent first.
    pub examples: Vec<Value>,
    pub callers: Vec<Value>,
    pub requests: Vec<Value>,
    /// pg_stat_statements sums over the window, and its queryids.
    pub pgss: Value,
    pub pgss_series: Buckets,
    pub logs: Vec<Value>,
    /// pg_activity samples of active backends running it, by wait event type.
    pub waits: Vec<Value>,
    /// The slowest plans auto_explain logged for it in the window (at most
    /// [`PLANS_SHOWN`]): `ts`, `duration_ms`, `plan` (auto_explain's JSON,
    /// or its text as a string) and its `outline`.
    pub plans: Vec<Value>,
}

/// Plans the fingerprint page shows at most.
pub const PLANS_SHOWN: usize = 3;

/// Reads a fingerprint's figures in a window.
///
/// # Errors
/// The fingerprint is empty, or a store query failed.
pub fn detail(
    src: &dyn Source,
    scope: &Scope,
    fingerprint: &str,
    window: Window,
    bucket_s: i64,
) -> Result<FingerprintDetail, AnalysisError> {
    if fingerprint.trim().is_empty() {
        return Err(AnalysisError::BadInput(
            "parameter fp (the SQL fingerprint) is missing".into(),
        ));
    }
    let bucket = bucket_s.max(1) * crate::analysis::SECOND;
    let (f, s, fp) = (window.filter("ts"), scope.clause(""), quote(fingerprint));
    let q = format!(
        "q AS (SELECT seq, epoch_us(ts) // {bucket} * {bucket} AS b, duration_ms, status, sql, caller, caller_file, caller_line \
         FROM request_sql WHERE {f}{s} AND fingerprint = {fp})"
    );

    let mut php_series = Buckets::default();
    let (mut calls, mut total, mut max, mut failed) = (0.0, 0.0, 0.0_f64, 0);
    for r in query(
        src,
        &format!(
            "WITH {q} SELECT b, count(*), sum(duration_ms), max(duration_ms), count(*) FILTER (WHERE status = 'failed') \
             FROM q GROUP BY b ORDER BY b"
        ),
    )? {
        php_series.push(r.i(0), r.f(1), r.f(2));
        calls += r.f(1);
        total += r.f(2);
        max = max.max(r.f(3));
        failed += r.i(4);
    }
    let php = json!({
        "calls": calls,
        "total_ms": round3(total),
        "mean_ms": if calls > 0.0 { round3(total / calls) } else { 0.0 },
        "max_ms": round3(max),
        "failed": failed,
    });

    let examples = query(
        src,
        &format!("WITH {q} SELECT sql, count(*) FROM q GROUP BY sql ORDER BY 2 DESC, 1 LIMIT 3"),
    )?
    .iter()
    .map(|r| json!({ "sql": r.s(0), "calls": r.i(1) }))
    .collect();
    let callers = query(
        src,
        &format!(
            "WITH {q} SELECT caller, caller_file, caller_line, count(*), sum(duration_ms) FROM q \
             GROUP BY ALL ORDER BY 5 DESC, 1 LIMIT 10"
        ),
    )?
    .iter()
    .map(|r| json!({ "caller": r.opt(0), "file": r.opt(1), "line": r.opt(2).and_then(|l| l.parse::<i64>().ok()), "calls": r.i(3), "total_ms": round3(r.f(4)) }))
    .collect();
    let requests = query(
        src,
        &format!(
            "WITH {q}, r AS (SELECT seq, epoch_us(ts) AS t, correlation_id, host, {ENDPOINT_SQL} AS ep, url, status, duration_ms \
                FROM requests WHERE {f}{s}) \
             SELECT r.correlation_id, r.t, r.host, r.ep, r.url, r.status, r.duration_ms, count(*), sum(q.duration_ms) \
             FROM q JOIN r USING (seq) GROUP BY ALL ORDER BY 9 DESC, 2 LIMIT 50"
        ),
    )?
    .iter()
    .map(|r| {
        json!({
            "correlation_id": r.s(0), "ts": format_time(r.i(1)), "host": r.s(2), "endpoint": r.s(3), "url": r.opt(4),
            "status": r.opt(5).and_then(|v| v.parse::<i64>().ok()), "duration_ms": round3(r.f(6)),
            "calls": r.i(7), "sql_ms": round3(r.f(8)),
        })
    })
    .collect();

    // pg-watch sends a statement's text only the first time it sees its
    // queryid, so later rows are found by the queryids of the named ones.
    let ids =
        format!("ids AS (SELECT DISTINCT queryid FROM pg_statements WHERE fingerprint = {fp}{s})");
    let pf = window.filter("interval_end");
    let mut pgss_series = Buckets::default();
    let mut sums = [0.0_f64; 6];
    for r in query(
        src,
        &format!(
            "WITH {ids}, p AS (SELECT * FROM pg_statements WHERE {pf}{s} AND (fingerprint = {fp} \
                OR (fingerprint IS NULL AND queryid IN (SELECT queryid FROM ids)))) \
             SELECT epoch_us(interval_end) // {bucket} * {bucket} AS b, sum(calls), sum(total_exec_time_ms), sum(rows), \
                sum(shared_blks_hit), sum(shared_blks_read), sum(temp_blks_written) \
             FROM p GROUP BY b ORDER BY b"
        ),
    )? {
        pgss_series.push(r.i(0), r.f(1), r.f(2));
        for (i, sum) in sums.iter_mut().enumerate() {
            *sum += r.f(i + 1);
        }
    }
    // As text: a queryid is a 64-bit hash, beyond what a JSON number keeps exactly in a browser.
    let queryids: Vec<String> = query(
        src,
        &format!("WITH {ids} SELECT queryid FROM ids ORDER BY 1 LIMIT 10"),
    )?
    .iter()
    .map(|r| r.s(0))
    .collect();
    let pgss = json!({
        "queryids": queryids,
        "calls": sums[0],
        "total_exec_time_ms": round3(sums[1]),
        "mean_exec_time_ms": if sums[0] > 0.0 { round3(sums[1] / sums[0]) } else { 0.0 },
        "rows": sums[2],
        "shared_blks_hit": sums[3],
        "shared_blks_read": sums[4],
        "temp_blks_written": sums[5],
    });
    let logs = query(
        src,
        &format!("SELECT class, count(*), sum(duration_ms) FROM pg_log WHERE {f}{s} AND fingerprint = {fp} GROUP BY 1 ORDER BY 2 DESC"),
    )?
    .iter()
    .map(|r| json!({ "class": r.s(0), "count": r.i(1), "total_ms": round3(r.f(2)) }))
    .collect();
    let waits = query(
        src,
        &format!(
            "SELECT coalesce(wait_event_type, 'CPU'), coalesce(wait_event, 'running'), count(*) FROM pg_activity \
             WHERE {f}{s} AND fingerprint = {fp} AND state = 'active' GROUP BY ALL ORDER BY 3 DESC LIMIT 10"
        ),
    )?
    .iter()
    .map(|r| json!({ "wait_event_type": r.s(0), "wait_event": r.s(1), "samples": r.i(2) }))
    .collect();

    let plans = query(
        src,
        &format!(
            "SELECT epoch_us(coalesce(log_time, ts)), duration_ms, CAST(plan AS VARCHAR) FROM pg_log \
             WHERE {f}{s} AND fingerprint = {fp} AND class = 'auto_explain' AND plan IS NOT NULL \
             ORDER BY duration_ms DESC NULLS LAST LIMIT {PLANS_SHOWN}"
        ),
    )?
    .iter()
    .map(|r| {
        let plan: Value = serde_json::from_str(&r.s(2)).unwrap_or_else(|_| Value::String(r.s(2)));
        json!({
            "ts": format_time(r.i(0)),
            "duration_ms": round3(r.f(1)),
            "outline": crate::analysis::report::plan::outline(&plan),
            "plan": plan,
        })
    })
    .collect();

    Ok(FingerprintDetail {
        fingerprint: fingerprint.to_owned(),
        from: format_time(window.from),
        to: format_time(window.to),
        bucket_s,
        php,
        php_series,
        examples,
        callers,
        requests,
        pgss,
        pgss_series,
        logs,
        waits,
        plans,
    })
}
