//! The report's SQL: each collector runs its queries and reads the rows by
//! column name into plain structs ([`Item`]s and figures), nothing scored.
//! A column that is missing or a number that does not parse is an error
//! ([`super::super::NamedRow`]), never a silent zero.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Value, json};

use super::{EventCount, HostFigures, Item, Settings, plan};
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
    /// What each endpoint's records say about their time and evidence:
    /// (window, baseline not yet scaled).
    pub times: HashMap<String, (EndpointTime, EndpointTime)>,
}

/// Sums over one endpoint's records in the window or the baseline, each
/// weighted by its `sampling_weight`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(in crate::analysis) struct EndpointTime {
    /// Requests.
    pub n: f64,
    /// Requests whose record carries a profile (full or compact).
    pub profiled: f64,
    /// Requests whose SQL the agent saw: all of them when any of the
    /// endpoint's records (in the window, or in the baseline) carries SQL, since the
    /// agent leaves the SQL section out of a record that ran none (a page
    /// served from a cache). Counting only the records with SQL made the
    /// one request in ten that rebuilt a cache stand for all ten.
    pub sql_seen: f64,
    /// Requests whose record carries its CPU time, and their request-seconds.
    pub cpu_known: f64,
    pub cpu_known_s: f64,
    /// PHP CPU seconds (user plus system) and user CPU seconds of those.
    pub cpu_s: f64,
    pub cpu_user_s: f64,
    /// SQL seconds as the agent measured them (a record without SQL ran none).
    pub sql_s: f64,
    /// Context switches of the requests whose record counts them: the
    /// process gave up the CPU (voluntary: I/O, SQL, sleep) or the kernel
    /// took it away (involuntary: the CPUs were busy).
    pub switches_voluntary: f64,
    pub switches_involuntary: f64,
}

/// One row of profile time: a stack (Excimer, root first, leaf last) or
/// the two ends of an xhprof edge, with the exclusive seconds of its last
/// frame, weighted by the records' sampling weights.
#[derive(Debug, Clone, Default, PartialEq)]
pub(in crate::analysis) struct ProfileRow {
    pub in_window: bool,
    pub endpoint: Option<String>,
    /// Root first; the time is the last frame's.
    pub frames: Vec<String>,
    pub seconds: f64,
    /// Profiled records with this row (weighted).
    pub requests: f64,
}

/// One request's executions of one statement shape over the N+1 threshold.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct LoopRow {
    pub in_window: bool,
    pub endpoint: String,
    pub weight: f64,
    pub fingerprint: String,
    pub sql: String,
    pub caller: String,
    pub caller_file: String,
    pub caller_line: i64,
    /// Executions and their total time in the request.
    pub count: f64,
    pub total_ms: f64,
    /// Executions of this shape stored in `request_sql`.
    pub stored: f64,
    /// From the first stored execution's start to the last one's end.
    pub stored_span_ms: Option<f64>,
    /// The request's wall time, SQL time and statement count.
    pub request_ms: f64,
    pub request_sql_ms: f64,
    pub request_sql_count: f64,
    /// Statements of the request that are not in `request_sql`.
    pub not_stored: f64,
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

/// What a host's swapping says and how its requests fared, for the
/// memory-pressure rule: (window, baseline not yet scaled) pairs.
#[derive(Debug, Clone, Default, PartialEq)]
pub(in crate::analysis) struct HostPressure {
    /// Bytes swapped in and out (the busiest sampler's count, since the
    /// shipper and pg-watch on one host both sample it).
    pub swap_io_bytes: (f64, f64),
    /// Per endpoint served on this host: its requests in the window and
    /// in the baseline.
    pub endpoints: BTreeMap<String, (Requests, Requests)>,
}

/// Requests (weighted) and their request-seconds.
pub(in crate::analysis) type Requests = (f64, f64);

/// Everything the ranking takes.
#[derive(Debug, Clone, Default)]
pub(super) struct Measured {
    pub endpoints: Endpoints,
    /// Functions already measured (tests); the profile rows are folded into more.
    pub functions: BTreeMap<String, Item>,
    pub profile: Vec<ProfileRow>,
    pub loops: Vec<LoopRow>,
    /// Executions of one shape in one request from which on it is an N+1.
    pub n_plus_one_min: f64,
    pub fingerprints: Fingerprints,
    pub waits: BTreeMap<String, WaitEvent>,
    pub locks: LockWaits,
    pub hosts: BTreeMap<String, HostPressure>,
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
    settings: &Settings,
) -> Result<Measured, AnalysisError> {
    let n_plus_one_min = f64::from(settings.n_plus_one_min.max(2));
    Ok(Measured {
        endpoints: endpoints(src, days, scope, frame)?,
        functions: BTreeMap::new(),
        profile: functions(src, days, scope, frame)?,
        loops: loops(src, days, scope, frame, n_plus_one_min)?,
        n_plus_one_min,
        fingerprints: fingerprints(src, days, scope, frame)?,
        waits: wait_events(src, days, scope, frame)?,
        locks: lock_waits(src, days, scope, frame)?,
        hosts: host_pressure(src, days, scope, frame)?,
    })
}

/// Each host's swapping and its endpoints' requests (see [`HostPressure`]).
fn host_pressure(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    frame: &Frame,
) -> Result<BTreeMap<String, HostPressure>, AnalysisError> {
    let mut out: BTreeMap<String, HostPressure> = BTreeMap::new();
    let swap = query_named(
        src,
        &format!(
            "SELECT host, w, max(io) AS io FROM (SELECT host, source, {w} AS w, \
             sum(coalesce(swap_in_bytes, 0) + coalesce(swap_out_bytes, 0)) AS io \
             FROM {t} WHERE {f}{s} GROUP BY ALL) GROUP BY ALL",
            t = days.table("host_metrics", frame.range()),
            w = frame.in_window("ts"),
            f = frame.filter("ts"),
            s = scope.clause("")
        ),
    )?;
    for r in swap.rows() {
        let h = out.entry(r.text("host")?).or_default();
        let io = r.num("io")?;
        if r.flag("w")? {
            h.swap_io_bytes.0 = io;
        } else {
            h.swap_io_bytes.1 = io;
        }
    }
    let requests = query_named(
        src,
        &format!(
            "SELECT host, {ENDPOINT_SQL} AS ep, {w} AS w, sum(coalesce(sampling_weight, 1)) AS n, \
             sum(coalesce(sampling_weight, 1) * duration_ms) / 1000.0 AS request_s \
             FROM {t} WHERE {f}{s} GROUP BY ALL",
            t = days.table("requests", frame.range()),
            w = frame.in_window("ts"),
            f = frame.filter("ts"),
            s = scope.clause("")
        ),
    )?;
    for r in requests.rows() {
        let Some(h) = out.get_mut(&r.text("host")?) else {
            continue; // no host figures: nothing to say about its memory
        };
        let e = h.endpoints.entry(r.text("ep")?).or_default();
        let pair = (r.num("n")?, r.num("request_s")?);
        if r.flag("w")? {
            e.0 = pair;
        } else {
            e.1 = pair;
        }
    }
    Ok(out)
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
             any_value(url) AS example_url, count(*) FILTER (WHERE status >= 500) AS errors, \
             sum(coalesce(sampling_weight, 1)) FILTER (WHERE profiler IS NOT NULL) AS profiled, \
             CASE WHEN count(sql_captured) > 0 THEN sum(coalesce(sampling_weight, 1)) ELSE 0 END AS sql_seen, \
             sum(coalesce(sampling_weight, 1)) FILTER (WHERE cpu_user_ms IS NOT NULL) AS cpu_known, \
             sum(coalesce(sampling_weight, 1) * duration_ms) FILTER (WHERE cpu_user_ms IS NOT NULL) / 1000.0 AS cpu_known_s, \
             sum(coalesce(sampling_weight, 1) * (cpu_user_ms + coalesce(cpu_system_ms, 0))) / 1000.0 AS cpu_s, \
             sum(coalesce(sampling_weight, 1) * cpu_user_ms) / 1000.0 AS cpu_user_s, \
             sum(coalesce(sampling_weight, 1) * coalesce(sql_total_ms, 0)) / 1000.0 AS sql_s, \
             sum(coalesce(sampling_weight, 1) * ctx_switches_voluntary) AS switches_voluntary, \
             sum(coalesce(sampling_weight, 1) * ctx_switches_involuntary) AS switches_involuntary \
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
        let time = EndpointTime {
            n: r.num("n")?,
            profiled: r.num("profiled")?,
            sql_seen: r.num("sql_seen")?,
            cpu_known: r.num("cpu_known")?,
            cpu_known_s: r.num("cpu_known_s")?,
            cpu_s: r.num("cpu_s")?,
            cpu_user_s: r.num("cpu_user_s")?,
            sql_s: r.num("sql_s")?,
            switches_voluntary: r.num("switches_voluntary")?,
            switches_involuntary: r.num("switches_involuntary")?,
        };
        let t = out.times.entry(ep.clone()).or_default();
        if w {
            t.0 = time;
        } else {
            t.1 = time;
        }
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

/// Profile time by stack: Excimer stacks (the leaf's exclusive time), and
/// xhprof edges as the callee's inclusive time (with its caller) minus the
/// time of the callee's own children; each weighted by its record's
/// sampling weight, so that the compact profiles of sampled records stand
/// for the requests they were sampled from. [`super::rank::fold_profile`]
/// turns them into functions.
pub(super) fn functions(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    frame: &Frame,
) -> Result<Vec<ProfileRow>, AnalysisError> {
    let (f, s, w) = (frame.filter("ts"), scope.clause(""), frame.in_window("ts"));
    let (profile, requests) = (
        days.table("request_profile", frame.range()),
        days.table("requests", frame.range()),
    );
    let rows = query_named(
        src,
        &format!(
            "WITH p AS (SELECT seq, {w} AS w, profiler, stack, function, caller, coalesce(wall_us, 0) AS x \
                FROM {profile} WHERE {f}{s}), \
             r AS (SELECT seq, {ENDPOINT_SQL} AS ep, coalesce(sampling_weight, 1) AS wt FROM {requests} \
                WHERE {f}{s} AND profiler IS NOT NULL), \
             x AS (SELECT seq, w, coalesce(stack, function) AS path, x FROM p \
                WHERE profiler = 'excimer' AND function IS NOT NULL \
                UNION ALL SELECT seq, w, coalesce(caller || ';', '') || function, x FROM p \
                WHERE profiler <> 'excimer' AND function IS NOT NULL \
                UNION ALL SELECT seq, w, caller, -x FROM p WHERE profiler <> 'excimer' AND caller IS NOT NULL) \
             SELECT path, w, r.ep AS ep, sum(coalesce(r.wt, 1) * x) / 1e6 AS seconds, \
             sum(coalesce(r.wt, 1)) AS requests \
             FROM x LEFT JOIN r USING (seq) GROUP BY ALL"
        ),
    )?;
    let mut out = Vec::new();
    for r in rows.rows() {
        out.push(ProfileRow {
            in_window: r.flag("w")?,
            endpoint: r.opt("ep")?.map(str::to_owned),
            frames: r.text("path")?.split(';').map(str::to_owned).collect(),
            seconds: r.num("seconds")?,
            requests: r.num("requests")?,
        });
    }
    Ok(out)
}

/// Requests that ran one statement shape at least `min` times, with what
/// the N+1 estimate needs: the shape's counts beyond the agent's cap, the
/// span of its stored executions, the request's SQL and wall time.
fn loops(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    frame: &Frame,
    min: f64,
) -> Result<Vec<LoopRow>, AnalysisError> {
    let (f, s) = (frame.filter("ts"), scope.clause(""));
    let (requests, shapes, statements) = (
        days.table("requests", frame.range()),
        days.table("request_fingerprints", frame.range()),
        days.table("request_sql", frame.range()),
    );
    let rows = query_named(
        src,
        &format!(
            "WITH fp AS (SELECT seq, fingerprint, any_value(sql) AS sql_text, sum(count) AS n, sum(total_ms) AS ms, \
                sum(coalesce(stored, 0)) AS n_stored, arg_max(caller, count) AS fn, arg_max(caller_file, count) AS file, \
                arg_max(caller_line, count) AS line FROM {shapes} WHERE {f}{s} AND fingerprint IS NOT NULL \
                GROUP BY seq, fingerprint HAVING sum(count) >= {min}), \
             r AS (SELECT seq, {w} AS w, {ENDPOINT_SQL} AS ep, coalesce(sampling_weight, 1) AS wt, duration_ms, \
                coalesce(sql_total_ms, 0) AS sql_ms, coalesce(sql_total_count, 0) AS sql_n, \
                coalesce(sql_not_stored, sql_dropped, 0) AS not_stored \
                FROM {requests} WHERE {f}{s} AND seq IN (SELECT seq FROM fp)), \
             span AS (SELECT seq, fingerprint, max(start_ms + duration_ms) - min(start_ms) AS span_ms \
                FROM {statements} WHERE {f}{s} AND seq IN (SELECT seq FROM fp) GROUP BY seq, fingerprint HAVING count(*) >= 2) \
             SELECT r.w AS w, r.ep AS ep, r.wt AS wt, fp.fingerprint AS fingerprint, fp.sql_text AS sql_text, \
                fp.fn AS fn, fp.file AS file, fp.line AS line, fp.n AS n, fp.ms AS ms, fp.n_stored AS n_stored, \
                span.span_ms AS span_ms, r.duration_ms AS request_ms, r.sql_ms AS sql_ms, r.sql_n AS sql_n, \
                r.not_stored AS not_stored \
             FROM fp JOIN r USING (seq) LEFT JOIN span USING (seq, fingerprint)",
            w = frame.in_window("ts"),
        ),
    )?;
    let mut out = Vec::new();
    for r in rows.rows() {
        out.push(LoopRow {
            in_window: r.flag("w")?,
            endpoint: r.text("ep")?,
            weight: r.num("wt")?,
            fingerprint: r.text("fingerprint")?,
            sql: r.text("sql_text")?,
            caller: r.text("fn")?,
            caller_file: r.text("file")?,
            caller_line: r.int("line")?,
            count: r.num("n")?,
            total_ms: r.num("ms")?,
            stored: r.num("n_stored")?,
            stored_span_ms: r.opt("span_ms")?.and_then(|v| v.parse().ok()),
            request_ms: r.num("request_ms")?,
            request_sql_ms: r.num("sql_ms")?,
            request_sql_count: r.num("sql_n")?,
            not_stored: r.num("not_stored")?,
        });
    }
    Ok(out)
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
    // Per-shape counts (every execution, beyond the agent's cap) where the
    // record has them; the stored statements otherwise (older agents).
    let shapes = days.table("request_fingerprints", frame.range());
    let php = query_named(
        src,
        &format!(
            "WITH r AS (SELECT seq, {ENDPOINT_SQL} AS ep, coalesce(sampling_weight, 1) AS wt FROM {requests} WHERE {f}{s}), \
             fr AS (SELECT seq, {w_rec} AS w, fingerprint, sum(total_ms) AS ms, sum(count) AS n, max(max_ms) AS mx, \
                arg_max(caller, count) AS caller FROM {shapes} WHERE {f}{s} AND fingerprint IS NOT NULL GROUP BY ALL), \
             qr AS (SELECT seq, {w} AS w, fingerprint, sum(duration_ms) AS ms, count(*) AS n, max(duration_ms) AS mx, \
                any_value(caller) AS caller FROM {statements} q \
                WHERE {qf}{qs} AND q.fingerprint IS NOT NULL AND seq NOT IN (SELECT seq FROM fr) GROUP BY ALL), \
             u AS (SELECT * FROM fr UNION ALL BY NAME SELECT * FROM qr) \
             SELECT u.fingerprint AS fingerprint, u.w AS w, r.ep AS ep, sum(r.wt * u.ms) / 1000.0 AS seconds, \
             sum(r.wt * u.n) AS calls, any_value(u.caller) AS top_caller, max(u.mx) AS longest_ms \
             FROM u JOIN r USING (seq) GROUP BY ALL",
            w = frame.in_window("q.ts"),
            w_rec = frame.in_window("ts"),
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
    let plans = query_named(
        src,
        &format!(
            "SELECT fingerprint, {w} AS w, arg_max(plan, duration_ms)::VARCHAR AS plan, \
             max(duration_ms) AS ms FROM {t} \
             WHERE {f}{s} AND fingerprint IS NOT NULL AND class = 'auto_explain' AND plan IS NOT NULL GROUP BY ALL",
            t = days.table("pg_log", frame.range()),
            w = frame.in_window("ts")
        ),
    )?;
    for r in plans.rows() {
        let Ok(plan) = serde_json::from_str::<Value>(&r.text("plan")?) else {
            continue;
        };
        if let Some(outline) = plan::outline(&plan) {
            let p = prefix(r.flag("w")?);
            let item = items.entry(r.text("fingerprint")?).or_default();
            item.note(&format!("{p}plan"), json!(outline));
            item.note(&format!("{p}plan_ms"), json!(round3(r.num("ms")?)));
        }
    }
    for item in items.values_mut() {
        let (now, before) = (
            item.evidence.get("plan"),
            item.evidence.get("baseline_plan"),
        );
        let changed = match (now, before) {
            (Some(now), Some(before)) => json!(now != before),
            (Some(_), None) => json!(
                "no plan logged in the baseline (its runs stayed under auto_explain.log_min_duration)"
            ),
            _ => continue,
        };
        item.note("plan_changed", changed);
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

/// Each host's figures in the window and the baseline. The shipper and
/// pg-watch on one host both sample it: each figure is the busiest
/// sampler's, never the two added up.
pub(super) fn hosts(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    frame: &Frame,
) -> Result<Vec<HostFigures>, AnalysisError> {
    let rows = query_named(
        src,
        &format!(
            "SELECT host, w, min(source) AS source_name, max(ncpu) AS ncpu_max, \
             max(load1) AS load1_max, max(cpu) AS cpu_pct_avg, max(iowait) AS iowait_pct_avg, \
             max(swap_used) AS swap_used_max, max(swap_io) AS swap_io \
             FROM (SELECT host, source, {w} AS w, max(ncpu) AS ncpu, max(load1) AS load1, \
             avg(cpu_user_pct + cpu_system_pct) AS cpu, avg(cpu_iowait_pct) AS iowait, \
             max(swap_used_bytes) AS swap_used, \
             sum(coalesce(swap_in_bytes, 0) + coalesce(swap_out_bytes, 0)) AS swap_io \
             FROM {t} WHERE {f}{s} GROUP BY ALL) GROUP BY ALL ORDER BY 1",
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
