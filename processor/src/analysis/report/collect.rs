//! The report's SQL: each collector runs its queries and reads the rows by
//! column name into plain structs ([`Item`]s and figures), nothing scored.
//! A column that is missing or a number that does not parse is an error
//! ([`super::super::NamedRow`]), never a silent zero.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Value, json};

use super::{EventCount, HostFigures, Item};
use crate::analysis::correlation::{self, RequestRef, Wait};
use crate::analysis::{
    AnalysisError, Days, ENDPOINT_SQL, Frame, SECOND, Scope, Source, Window, format_time,
    query_named, round3,
};

/// Request-seconds and request counts per endpoint.
#[derive(Debug, Clone, Default)]
pub(super) struct Endpoints {
    /// Request-seconds per endpoint, with its percentiles and errors as evidence.
    pub items: BTreeMap<String, Item>,
    /// Requests (weighted) per endpoint: (window, baseline not yet scaled).
    pub counts: HashMap<String, (f64, f64)>,
}

/// SQL time per fingerprint, as PHP measured it and as the server did.
#[derive(Debug, Clone, Default)]
pub(super) struct Fingerprints {
    /// PHP's view (with slow-statement log figures as evidence).
    pub php: BTreeMap<String, Item>,
    /// pg_stat_statements deltas.
    pub server: BTreeMap<String, Item>,
}

/// Backend-seconds of one wait event, and the window's part of them per
/// fingerprint of the statement that waited.
#[derive(Debug, Clone, Default)]
pub(super) struct WaitEvent {
    pub item: Item,
    pub by_fingerprint: HashMap<String, f64>,
}

/// Samples of backends waiting on locks, and the requests of the backends
/// involved (by correlation ID).
#[derive(Debug, Clone, Default)]
pub(super) struct LockWaits {
    pub waits: Vec<Wait>,
    pub requests: HashMap<String, RequestRef>,
}

/// Everything the ranking takes.
#[derive(Debug, Clone, Default)]
pub(super) struct Measured {
    pub endpoints: Endpoints,
    pub functions: BTreeMap<String, Item>,
    pub fingerprints: Fingerprints,
    pub waits: BTreeMap<String, WaitEvent>,
    pub locks: LockWaits,
}

/// Runs every collector the ranking needs.
///
/// # Errors
/// A store query failed, or its answer could not be read.
pub(super) fn measure(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    frame: &Frame,
) -> Result<Measured, AnalysisError> {
    Ok(Measured {
        endpoints: endpoints(src, days, scope, frame)?,
        functions: functions(src, days, scope, frame)?,
        fingerprints: fingerprints(src, days, scope, frame)?,
        waits: wait_events(src, days, scope, frame)?,
        locks: lock_waits(src, days, scope, frame)?,
    })
}

/// `""` for the window's rows, `"baseline_"` for the baseline's: the prefix
/// of their evidence keys.
fn prefix(in_window: bool) -> &'static str {
    if in_window { "" } else { "baseline_" }
}

pub(super) fn endpoints(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    frame: &Frame,
) -> Result<Endpoints, AnalysisError> {
    let rows = query_named(
        src,
        &format!(
            "SELECT {ENDPOINT_SQL} AS ep, {w} AS w, sum(coalesce(sampling_weight, 1)) AS n, \
             sum(coalesce(sampling_weight, 1) * duration_ms) / 1000.0 AS request_s, \
             quantile_cont(duration_ms, 0.5) AS p50_ms, quantile_cont(duration_ms, 0.95) AS p95_ms, \
             any_value(url) AS example_url, count(*) FILTER (WHERE status >= 500) AS errors \
             FROM {t} WHERE {f}{s} GROUP BY ALL",
            t = days.table("requests", frame.range()),
            w = frame.in_window("ts"),
            f = frame.filter("ts"),
            s = scope.clause("")
        ),
    )?;
    let mut out = Endpoints::default();
    for r in rows.rows() {
        let (ep, w) = (r.text("ep")?, r.flag("w")?);
        let item = out.items.entry(ep.clone()).or_default();
        item.add(w, r.num("request_s")?, Some(ep.clone()));
        let c = out.counts.entry(ep).or_default();
        if w {
            c.0 += r.num("n")?;
            item.note("example_url", json!(r.text("example_url")?));
        } else {
            c.1 += r.num("n")?;
        }
        let p = prefix(w);
        item.note(&format!("{p}p50_ms"), json!(round3(r.num("p50_ms")?)));
        item.note(&format!("{p}p95_ms"), json!(round3(r.num("p95_ms")?)));
        item.note(&format!("{p}errors"), json!(r.int("errors")?));
    }
    Ok(out)
}

/// Exclusive time per function: Excimer leaf rows, and xhprof edges as the
/// callee's inclusive time minus the time of the callee's own children.
pub(super) fn functions(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    frame: &Frame,
) -> Result<BTreeMap<String, Item>, AnalysisError> {
    let (f, s, w) = (frame.filter("ts"), scope.clause(""), frame.in_window("ts"));
    let (profile, requests) = (
        days.table("request_profile", frame.range()),
        days.table("requests", frame.range()),
    );
    let rows = query_named(
        src,
        &format!(
            "WITH p AS (SELECT seq, {w} AS w, profiler, function, caller, coalesce(wall_us, 0) AS x \
                FROM {profile} WHERE {f}{s}), \
             r AS (SELECT seq, {ENDPOINT_SQL} AS ep FROM {requests} WHERE {f}{s} AND profiler IS NOT NULL), \
             x AS (SELECT seq, w, function AS fn, x FROM p WHERE function IS NOT NULL \
                UNION ALL SELECT seq, w, caller, -x FROM p WHERE profiler <> 'excimer' AND caller IS NOT NULL) \
             SELECT fn, w, r.ep AS ep, sum(x) / 1e6 AS seconds, count(DISTINCT seq) AS requests \
             FROM x LEFT JOIN r USING (seq) GROUP BY ALL"
        ),
    )?;
    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    for r in rows.rows() {
        let w = r.flag("w")?;
        let item = items.entry(r.text("fn")?).or_default();
        item.add(w, r.num("seconds")?, r.opt("ep")?.map(str::to_owned));
        if w {
            let n = item
                .evidence
                .get("requests")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            item.note("requests", json!(n + r.int("requests")?));
        }
    }
    Ok(items)
}

/// SQL time per fingerprint as PHP measured it, and pg_stat_statements
/// deltas and slow-statement log durations beside it.
pub(super) fn fingerprints(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    frame: &Frame,
) -> Result<Fingerprints, AnalysisError> {
    let (f, s) = (frame.filter("ts"), scope.clause(""));
    let (requests, statements) = (
        days.table("requests", frame.range()),
        days.table("request_sql", frame.range()),
    );
    let php = query_named(
        src,
        &format!(
            "WITH r AS (SELECT seq, {ENDPOINT_SQL} AS ep, coalesce(sampling_weight, 1) AS wt FROM {requests} WHERE {f}{s}) \
             SELECT q.fingerprint AS fingerprint, {w} AS w, r.ep AS ep, sum(r.wt * q.duration_ms) / 1000.0 AS seconds, \
             sum(r.wt) AS calls, any_value(q.caller) AS top_caller, max(q.duration_ms) AS longest_ms \
             FROM {statements} q JOIN r USING (seq) \
             WHERE {qf}{qs} AND q.fingerprint IS NOT NULL GROUP BY ALL",
            w = frame.in_window("q.ts"),
            qf = frame.filter("q.ts"),
            qs = scope.clause("q.")
        ),
    )?;
    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    for r in php.rows() {
        let w = r.flag("w")?;
        let item = items.entry(r.text("fingerprint")?).or_default();
        item.add(w, r.num("seconds")?, r.opt("ep")?.map(str::to_owned));
        let key = if w { "php_calls" } else { "baseline_php_calls" };
        let n = item
            .evidence
            .get(key)
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        item.note(key, json!(n + r.num("calls")?));
        if w {
            item.note("caller", json!(r.text("top_caller")?));
            let max = item
                .evidence
                .get("max_ms")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            item.note("max_ms", json!(round3(max.max(r.num("longest_ms")?))));
        }
    }
    let pf = frame.filter("interval_end");
    // pg-watch stamps a pg_statements record at the end of its interval;
    // an hour either side covers any clock skew between the two.
    let around = Window {
        from: frame.range().from - 3600 * SECOND,
        to: frame.range().to + 3600 * SECOND,
    };
    let deltas = days.table("pg_statements", around);
    let pgss = query_named(
        src,
        &format!(
            "WITH s AS (SELECT * FROM {deltas} WHERE {pf}{s}), \
             names AS (SELECT queryid, any_value(fingerprint) AS fp FROM pg_statements \
                WHERE fingerprint IS NOT NULL{s} AND queryid IN (SELECT queryid FROM s WHERE fingerprint IS NULL) GROUP BY queryid) \
             SELECT coalesce(s.fingerprint, names.fp, 'queryid ' || s.queryid) AS fp_name, {w} AS w, \
             sum(total_exec_time_ms) / 1000.0 AS seconds, sum(calls) AS n_calls, \
             sum(temp_blks_written) AS n_temp_blks_written, sum(shared_blks_read) AS n_shared_blks_read \
             FROM s LEFT JOIN names USING (queryid) GROUP BY ALL",
            w = frame.in_window("interval_end"),
        ),
    )?;
    let mut server: BTreeMap<String, Item> = BTreeMap::new();
    for r in pgss.rows() {
        let w = r.flag("w")?;
        let item = server.entry(r.text("fp_name")?).or_default();
        item.add(w, r.num("seconds")?, None);
        let p = prefix(w);
        item.note(&format!("{p}pgss_calls"), json!(r.num("n_calls")?));
        item.note(
            &format!("{p}pgss_temp_blks_written"),
            json!(r.num("n_temp_blks_written")?),
        );
        item.note(
            &format!("{p}pgss_shared_blks_read"),
            json!(r.num("n_shared_blks_read")?),
        );
    }
    let logs = query_named(
        src,
        &format!(
            "SELECT fingerprint, {w} AS w, count(*) AS events, sum(duration_ms) / 1000.0 AS seconds, \
             sum(temp_file_bytes) AS temp_bytes FROM {t} \
             WHERE {f}{s} AND fingerprint IS NOT NULL AND class IN ('slow_statement', 'auto_explain', 'temp_file') GROUP BY ALL",
            t = days.table("pg_log", frame.range()),
            w = frame.in_window("ts")
        ),
    )?;
    for r in logs.rows() {
        let p = prefix(r.flag("w")?);
        let item = items.entry(r.text("fingerprint")?).or_default();
        item.note(&format!("{p}log_events"), json!(r.int("events")?));
        item.note(&format!("{p}log_seconds"), json!(round3(r.num("seconds")?)));
        item.note(&format!("{p}temp_file_bytes"), json!(r.num("temp_bytes")?));
    }
    Ok(Fingerprints { php: items, server })
}

/// Backend-seconds per wait event of active client backends, split by the
/// fingerprint of the statement that waited.
fn wait_events(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    frame: &Frame,
) -> Result<BTreeMap<String, WaitEvent>, AnalysisError> {
    let dt = correlation::sample_seconds(src, days, scope, frame)?;
    let rows = query_named(
        src,
        &format!(
            "SELECT host, {w} AS w, coalesce(wait_event_type, 'CPU') || ':' || coalesce(wait_event, 'running') AS wait_name, \
             coalesce(fingerprint, '') AS waiter_fp, count(*) AS samples FROM {t} WHERE {f}{s} AND state = 'active' \
             AND coalesce(backend_type, 'client backend') = 'client backend' GROUP BY ALL",
            t = days.table("pg_activity", frame.range()),
            w = frame.in_window("ts"),
            f = frame.filter("ts"),
            s = scope.clause("")
        ),
    )?;
    let mut out: BTreeMap<String, WaitEvent> = BTreeMap::new();
    for r in rows.rows() {
        let w = r.flag("w")?;
        let seconds = r.num("samples")? * dt.get(&(r.text("host")?, w)).copied().unwrap_or(1.0);
        let event = out.entry(r.text("wait_name")?).or_default();
        event.item.add(w, seconds, None);
        if w {
            *event
                .by_fingerprint
                .entry(r.text("waiter_fp")?)
                .or_default() += seconds;
        }
    }
    Ok(out)
}

/// Lock waits with their root blockers, and the requests of both sides.
fn lock_waits(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    frame: &Frame,
) -> Result<LockWaits, AnalysisError> {
    let waits: Vec<Wait> = correlation::lock_waits(src, days, scope, frame)?;
    let ids: BTreeSet<String> = waits
        .iter()
        .flat_map(|w| {
            [
                w.root.correlation_id.clone(),
                w.waiter.correlation_id.clone(),
            ]
        })
        .flatten()
        .collect();
    let around = Window {
        from: frame.baseline.from,
        to: frame.window.to,
    };
    let requests = correlation::requests_by_correlation(src, days, scope, &ids, around)?;
    Ok(LockWaits { waits, requests })
}

/// Each host's figures in the window and the baseline.
pub(super) fn hosts(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    frame: &Frame,
) -> Result<Vec<HostFigures>, AnalysisError> {
    let rows = query_named(
        src,
        &format!(
            "SELECT host, {w} AS w, any_value(source) AS source_name, max(ncpu) AS ncpu_max, \
             max(load1) AS load1_max, avg(cpu_user_pct + cpu_system_pct) AS cpu_pct_avg, \
             avg(cpu_iowait_pct) AS iowait_pct_avg, max(swap_used_bytes) AS swap_used_max, \
             sum(coalesce(swap_in_bytes, 0) + coalesce(swap_out_bytes, 0)) AS swap_io \
             FROM {t} WHERE {f}{s} GROUP BY ALL ORDER BY 1",
            t = days.table("host_metrics", frame.range()),
            w = frame.in_window("ts"),
            f = frame.filter("ts"),
            s = scope.clause("")
        ),
    )?;
    let mut out: BTreeMap<String, HostFigures> = BTreeMap::new();
    for r in rows.rows() {
        let host = r.text("host")?;
        let h = match out.entry(host.clone()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(HostFigures {
                host,
                source: r.text("source_name")?,
                ncpu: r.num("ncpu_max")?,
                load1_max: 0.0,
                baseline_load1_max: 0.0,
                cpu_pct: 0.0,
                baseline_cpu_pct: 0.0,
                iowait_pct: 0.0,
                baseline_iowait_pct: 0.0,
                swap_used_bytes: 0.0,
                baseline_swap_used_bytes: 0.0,
                swap_io_bytes: 0.0,
                baseline_swap_io_bytes: 0.0,
            }),
        };
        let (load, cpu, io, swap, swap_io) = (
            r.num("load1_max")?,
            round3(r.num("cpu_pct_avg")?),
            round3(r.num("iowait_pct_avg")?),
            r.num("swap_used_max")?,
            r.num("swap_io")?,
        );
        if r.flag("w")? {
            (
                h.load1_max,
                h.cpu_pct,
                h.iowait_pct,
                h.swap_used_bytes,
                h.swap_io_bytes,
            ) = (load, cpu, io, swap, swap_io);
        } else {
            (
                h.baseline_load1_max,
                h.baseline_cpu_pct,
                h.baseline_iowait_pct,
                h.baseline_swap_used_bytes,
                h.baseline_swap_io_bytes,
            ) = (load, cpu, io, swap, swap_io);
        }
    }
    Ok(out.into_values().collect())
}

/// PostgreSQL log events of note, with a few deadlocks as examples.
pub(super) fn events(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    frame: &Frame,
) -> Result<Vec<EventCount>, AnalysisError> {
    let (f, s) = (frame.filter("ts"), scope.clause(""));
    let t = days.table("pg_log", frame.range());
    let rows = query_named(
        src,
        &format!(
            "SELECT class, {w} AS w, count(*) AS n, sum(coalesce(temp_file_bytes, 0)) AS bytes FROM {t} WHERE {f}{s} AND class IN \
             ('deadlock', 'lock_wait', 'temp_file', 'checkpoint', 'statement_timeout', 'cancel', 'error', 'fatal', 'panic', 'autovacuum') \
             GROUP BY ALL ORDER BY 1",
            w = frame.in_window("ts")
        ),
    )?;
    let mut out: BTreeMap<String, EventCount> = BTreeMap::new();
    for r in rows.rows() {
        let class = r.text("class")?;
        let e = out.entry(class.clone()).or_insert_with(|| EventCount {
            class,
            count: 0.0,
            baseline_count: 0.0,
            bytes: 0.0,
            examples: Vec::new(),
        });
        if r.flag("w")? {
            e.count = r.num("n")?;
            e.bytes = r.num("bytes")?;
        } else {
            e.baseline_count = r.num("n")?;
        }
    }
    if out.get("deadlock").is_some_and(|e| e.count > 0.0) {
        let rows = query_named(
            src,
            &format!(
                "SELECT epoch_us(ts) AS ts_us, host, correlation_id, detail FROM {t} WHERE {}{s} AND class = 'deadlock' ORDER BY ts LIMIT 5",
                frame.window.filter("ts")
            ),
        )?;
        let examples = rows
            .rows()
            .map(|r| {
                Ok(json!({
                    "ts": format_time(r.int("ts_us")?),
                    "host": r.text("host")?,
                    "correlation_id": r.opt("correlation_id")?,
                    "detail": r.opt("detail")?,
                }))
            })
            .collect::<Result<Vec<Value>, AnalysisError>>()?;
        if let Some(e) = out.get_mut("deadlock") {
            e.examples = examples;
        }
    }
    Ok(out.into_values().collect())
}
