//! The window report: suspects ranked by their share of the excess load.
//!
//! The unit is the request-second (a request in flight for one second).
//! The excess is the window's request-seconds minus the baseline's, scaled
//! to the window's length. Each suspect gets the excess it explains:
//!
//! - a lock blocker: the seconds backends waited behind it (root of the lock
//!   tree), named by the blocker's request (endpoint and URL);
//! - a SQL fingerprint: its excess time in PHP (or in pg_stat_statements when
//!   PHP did not see it), minus the part spent waiting on locks (that part
//!   belongs to the blocker);
//! - a PHP function: its excess exclusive time (Excimer leaf samples, xhprof
//!   inclusive minus children); a database driver frame such as
//!   `PDOStatement::execute` is waiting for SQL, so the SQL excess is taken off;
//! - a database wait event: its excess backend-seconds not spent in a SQL
//!   suspect's statements;
//! - an endpoint: the excess of its extra traffic at baseline latency, plus
//!   the excess of its latency change that no deeper suspect explains.
//!
//! A deeper suspect explains the endpoint where most of its time was spent,
//! so an endpoint ranks first only when its traffic (or something unseen)
//! is the cause. Host figures and database events (deadlocks, temp files,
//! checkpoints) come beside the ranking as context.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::correlation::{self, Wait};
use super::{
    AnalysisError, Days, ENDPOINT_SQL, Frame, Scope, Source, Window, format_time, query, round3,
};

/// What kind of cause a suspect is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuspectKind {
    LockBlocker,
    SqlFingerprint,
    PhpFunction,
    WaitEvent,
    Endpoint,
}

impl SuspectKind {
    pub fn label(self) -> &'static str {
        match self {
            SuspectKind::LockBlocker => "lock",
            SuspectKind::SqlFingerprint => "sql",
            SuspectKind::PhpFunction => "function",
            SuspectKind::WaitEvent => "db wait",
            SuspectKind::Endpoint => "endpoint",
        }
    }
}

/// One ranked suspect.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Suspect {
    pub rank: usize,
    pub kind: SuspectKind,
    pub name: String,
    /// Excess request-seconds this suspect explains.
    pub score_s: f64,
    /// `score_s` over the window's total excess, at most 1. A suspect can
    /// explain more than the excess (the request-seconds queued behind a lock
    /// blocker count whole, while the baseline had its own waits, which the
    /// excess nets out); `score_s` keeps the full figure.
    pub share: f64,
    /// Its own measure in the window and in the baseline (scaled to the window's length).
    pub window_s: f64,
    pub baseline_s: f64,
    /// The endpoint where most of its window time was spent.
    pub endpoint: Option<String>,
    pub evidence: BTreeMap<String, Value>,
    /// The share of its window time per endpoint, which the endpoints'
    /// latency change is explained by.
    #[serde(skip)]
    spread: HashMap<String, f64>,
}

/// Totals of the window against the baseline.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Totals {
    pub requests: f64,
    pub baseline_requests: f64,
    pub request_seconds: f64,
    pub baseline_request_seconds: f64,
    pub excess_request_seconds: f64,
}

/// A host's figures in the window and the baseline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostFigures {
    pub host: String,
    pub source: String,
    pub ncpu: f64,
    pub load1_max: f64,
    pub baseline_load1_max: f64,
    pub cpu_pct: f64,
    pub baseline_cpu_pct: f64,
    pub iowait_pct: f64,
    pub baseline_iowait_pct: f64,
    pub swap_used_bytes: f64,
    pub baseline_swap_used_bytes: f64,
    pub swap_io_bytes: f64,
    pub baseline_swap_io_bytes: f64,
}

/// PostgreSQL log events of note in the window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventCount {
    pub class: String,
    pub count: f64,
    pub baseline_count: f64,
    pub bytes: f64,
    pub examples: Vec<Value>,
}

/// The report of one window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    pub baseline_from: String,
    pub baseline_to: String,
    pub totals: Totals,
    pub suspects: Vec<Suspect>,
    pub hosts: Vec<HostFigures>,
    pub events: Vec<EventCount>,
}

/// One measured thing (an endpoint, a function, a fingerprint, a wait
/// event) in the window and the baseline, before scoring.
#[derive(Debug, Clone, Default)]
struct Item {
    w: f64,
    b: f64,
    by_endpoint: HashMap<String, f64>,
    evidence: BTreeMap<String, Value>,
}

impl Item {
    fn add(&mut self, in_window: bool, x: f64, endpoint: Option<String>) {
        if in_window {
            self.w += x;
            if let Some(ep) = endpoint {
                *self.by_endpoint.entry(ep).or_default() += x;
            }
        } else {
            self.b += x;
        }
    }

    fn excess(&self, ratio: f64) -> f64 {
        self.w - self.b * ratio
    }

    fn main_endpoint(&self) -> Option<String> {
        self.by_endpoint
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(k, _)| k.clone())
    }

    fn note(&mut self, key: &str, value: Value) {
        self.evidence.insert(key.to_owned(), value);
    }
}

/// Frames that are a PHP process waiting on the database driver: their
/// exclusive time is SQL time, which the SQL suspects already hold. The
/// agent's own PDO subclasses (`BitvilleApm\Pdo`, `BitvilleApm\PdoStatement`)
/// are the driver as the application sees it: Excimer shows the wrapper, not
/// the internal method it calls, as the frame that waited.
pub fn is_database_frame(function: &str) -> bool {
    const PREFIXES: [&str; 8] = [
        "PDO::",
        "PDOStatement::",
        "BitvilleApm\\Pdo::",
        "BitvilleApm\\PdoStatement::",
        "pg_",
        "Phalcon\\Db\\",
        "mysqli",
        "Doctrine\\DBAL\\",
    ];
    PREFIXES.iter().any(|p| function.starts_with(p))
}

fn is_w(r: &super::Row, i: usize) -> bool {
    r.s(i) == "true"
}

struct Endpoints {
    items: BTreeMap<String, Item>,
    counts: HashMap<String, (f64, f64)>,
}

fn endpoints(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    frame: &Frame,
) -> Result<Endpoints, AnalysisError> {
    let rows = query(
        src,
        &format!(
            "SELECT {ENDPOINT_SQL} AS ep, {w} AS w, sum(coalesce(sampling_weight, 1)), \
             sum(coalesce(sampling_weight, 1) * duration_ms) / 1000.0, quantile_cont(duration_ms, 0.5), \
             quantile_cont(duration_ms, 0.95), any_value(url), count(*) FILTER (WHERE status >= 500) \
             FROM {t} WHERE {f}{s} GROUP BY ALL",
            t = days.table("requests", frame.range()),
            w = frame.in_window("ts"),
            f = frame.filter("ts"),
            s = scope.clause("")
        ),
    )?;
    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    let mut counts: HashMap<String, (f64, f64)> = HashMap::new();
    for r in rows {
        let (ep, w) = (r.s(0), is_w(&r, 1));
        let item = items.entry(ep.clone()).or_default();
        item.add(w, r.f(3), Some(ep.clone()));
        let c = counts.entry(ep).or_default();
        let prefix = if w { "" } else { "baseline_" };
        if w {
            c.0 += r.f(2);
            item.note("example_url", json!(r.s(6)));
        } else {
            c.1 += r.f(2);
        }
        item.note(&format!("{prefix}p50_ms"), json!(round3(r.f(4))));
        item.note(&format!("{prefix}p95_ms"), json!(round3(r.f(5))));
        item.note(&format!("{prefix}errors"), json!(r.i(7)));
    }
    Ok(Endpoints { items, counts })
}

/// Exclusive time per function: Excimer leaf rows, and xhprof edges as the
/// callee's inclusive time minus the time of the callee's own children.
fn functions(
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
    let rows = query(
        src,
        &format!(
            "WITH p AS (SELECT seq, {w} AS w, profiler, function, caller, coalesce(wall_us, 0) AS x \
                FROM {profile} WHERE {f}{s}), \
             r AS (SELECT seq, {ENDPOINT_SQL} AS ep FROM {requests} WHERE {f}{s} AND profiler IS NOT NULL), \
             x AS (SELECT seq, w, function AS fn, x FROM p WHERE function IS NOT NULL \
                UNION ALL SELECT seq, w, caller, -x FROM p WHERE profiler <> 'excimer' AND caller IS NOT NULL) \
             SELECT fn, w, r.ep, sum(x) / 1e6, count(DISTINCT seq) FROM x LEFT JOIN r USING (seq) GROUP BY ALL"
        ),
    )?;
    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    for r in rows {
        let item = items.entry(r.s(0)).or_default();
        item.add(is_w(&r, 1), r.f(3), r.opt(2).map(str::to_owned));
        if is_w(&r, 1) {
            let n = item
                .evidence
                .get("requests")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            item.note("requests", json!(n + r.i(4)));
        }
    }
    Ok(items)
}

/// SQL time per fingerprint as PHP measured it, and pg_stat_statements
/// deltas and slow-statement log durations beside it.
fn fingerprints(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    frame: &Frame,
) -> Result<(BTreeMap<String, Item>, BTreeMap<String, Item>), AnalysisError> {
    let (f, s) = (frame.filter("ts"), scope.clause(""));
    let (requests, statements) = (
        days.table("requests", frame.range()),
        days.table("request_sql", frame.range()),
    );
    let php = query(
        src,
        &format!(
            "WITH r AS (SELECT seq, {ENDPOINT_SQL} AS ep, coalesce(sampling_weight, 1) AS wt FROM {requests} WHERE {f}{s}) \
             SELECT q.fingerprint, {w}, r.ep, sum(r.wt * q.duration_ms) / 1000.0, sum(r.wt), any_value(q.caller), \
             max(q.duration_ms) FROM {statements} q JOIN r USING (seq) \
             WHERE {qf}{qs} AND q.fingerprint IS NOT NULL GROUP BY ALL",
            w = frame.in_window("q.ts"),
            qf = frame.filter("q.ts"),
            qs = scope.clause("q.")
        ),
    )?;
    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    for r in php {
        let w = is_w(&r, 1);
        let item = items.entry(r.s(0)).or_default();
        item.add(w, r.f(3), r.opt(2).map(str::to_owned));
        let key = if w { "php_calls" } else { "baseline_php_calls" };
        let n = item
            .evidence
            .get(key)
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        item.note(key, json!(n + r.f(4)));
        if w {
            item.note("caller", json!(r.s(5)));
            let max = item
                .evidence
                .get("max_ms")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            item.note("max_ms", json!(round3(max.max(r.f(6)))));
        }
    }
    let pf = frame.filter("interval_end");
    // pg-watch stamps a pg_statements record at the end of its interval;
    // an hour either side covers any clock skew between the two.
    let around = Window {
        from: frame.range().from - 3600 * super::SECOND,
        to: frame.range().to + 3600 * super::SECOND,
    };
    let deltas = days.table("pg_statements", around);
    let pgss = query(
        src,
        &format!(
            "WITH s AS (SELECT * FROM {deltas} WHERE {pf}{s}), \
             names AS (SELECT queryid, any_value(fingerprint) AS fp FROM pg_statements \
                WHERE fingerprint IS NOT NULL{s} AND queryid IN (SELECT queryid FROM s WHERE fingerprint IS NULL) GROUP BY queryid) \
             SELECT coalesce(s.fingerprint, names.fp, 'queryid ' || s.queryid), {w}, sum(total_exec_time_ms) / 1000.0, \
             sum(calls), sum(temp_blks_written), sum(shared_blks_read) FROM s LEFT JOIN names USING (queryid) GROUP BY ALL",
            w = frame.in_window("interval_end"),
        ),
    )?;
    let mut server: BTreeMap<String, Item> = BTreeMap::new();
    for r in pgss {
        let w = is_w(&r, 1);
        let item = server.entry(r.s(0)).or_default();
        item.add(w, r.f(2), None);
        let p = if w { "" } else { "baseline_" };
        item.note(&format!("{p}pgss_calls"), json!(r.f(3)));
        item.note(&format!("{p}pgss_temp_blks_written"), json!(r.f(4)));
        item.note(&format!("{p}pgss_shared_blks_read"), json!(r.f(5)));
    }
    let logs = query(
        src,
        &format!(
            "SELECT fingerprint, {w}, count(*), sum(duration_ms) / 1000.0, sum(temp_file_bytes) FROM {t} \
             WHERE {f}{s} AND fingerprint IS NOT NULL AND class IN ('slow_statement', 'auto_explain', 'temp_file') GROUP BY ALL",
            t = days.table("pg_log", frame.range()),
            w = frame.in_window("ts")
        ),
    )?;
    for r in logs {
        let p = if is_w(&r, 1) { "" } else { "baseline_" };
        let item = items.entry(r.s(0)).or_default();
        item.note(&format!("{p}log_events"), json!(r.i(2)));
        item.note(&format!("{p}log_seconds"), json!(round3(r.f(3))));
        item.note(&format!("{p}temp_file_bytes"), json!(r.f(4)));
    }
    Ok((items, server))
}

/// Backend-seconds per wait event of active client backends, split by the
/// fingerprint of the statement that waited.
fn wait_events(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    frame: &Frame,
) -> Result<BTreeMap<String, (Item, HashMap<String, f64>)>, AnalysisError> {
    let dt = correlation::sample_seconds(src, days, scope, frame)?;
    let rows = query(
        src,
        &format!(
            "SELECT host, {w}, coalesce(wait_event_type, 'CPU') || ':' || coalesce(wait_event, 'running'), \
             coalesce(fingerprint, ''), count(*) FROM {t} WHERE {f}{s} AND state = 'active' \
             AND coalesce(backend_type, 'client backend') = 'client backend' GROUP BY ALL",
            t = days.table("pg_activity", frame.range()),
            w = frame.in_window("ts"),
            f = frame.filter("ts"),
            s = scope.clause("")
        ),
    )?;
    let mut out: BTreeMap<String, (Item, HashMap<String, f64>)> = BTreeMap::new();
    for r in rows {
        let w = is_w(&r, 1);
        let seconds = r.f(4) * dt.get(&(r.s(0), w)).copied().unwrap_or(1.0);
        let (item, by_fp) = out.entry(r.s(2)).or_default();
        item.add(w, seconds, None);
        if w {
            *by_fp.entry(r.s(3)).or_default() += seconds;
        }
    }
    Ok(out)
}

/// Lock waits grouped by their root blocker's request endpoint (or its
/// statement when the blocker carries no correlation ID).
struct Locks {
    items: BTreeMap<String, Item>,
    /// Excess lock-wait seconds per waiting fingerprint.
    by_waiter_fingerprint: HashMap<String, f64>,
}

fn locks(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    frame: &Frame,
) -> Result<Locks, AnalysisError> {
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
    let ratio = frame.ratio();
    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    let mut by_fp: HashMap<String, f64> = HashMap::new();
    let mut examples: HashMap<String, BTreeSet<String>> = HashMap::new();
    for wait in &waits {
        let blocker = wait
            .root
            .correlation_id
            .as_ref()
            .and_then(|id| requests.get(id));
        let key = match blocker {
            Some(req) => req.endpoint.clone(),
            None => format!(
                "(no request) {}",
                wait.root
                    .fingerprint
                    .clone()
                    .unwrap_or_else(|| format!("pid {}", wait.root.pid))
            ),
        };
        let waiter_ep = wait
            .waiter
            .correlation_id
            .as_ref()
            .and_then(|id| requests.get(id))
            .map(|r| r.endpoint.clone());
        let item = items.entry(key.clone()).or_default();
        item.add(wait.in_window, wait.seconds, waiter_ep);
        let sign = if wait.in_window { 1.0 } else { -ratio };
        *by_fp
            .entry(wait.waiter.fingerprint.clone().unwrap_or_default())
            .or_default() += sign * wait.seconds;
        if wait.in_window {
            if let Some(req) = blocker {
                item.note("blocker_url", json!(req.url));
                item.note("blocker_host", json!(req.host));
                let ids = examples.entry(key.clone()).or_default();
                if ids.len() < 5 {
                    ids.insert(req.correlation_id.clone());
                }
            }
            item.note("blocker_query", json!(wait.root.query));
            item.note("blocker_state", json!(wait.root.state));
            let xact = item
                .evidence
                .get("blocker_xact_ms_max")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            item.note(
                "blocker_xact_ms_max",
                json!(round3(xact.max(wait.root.xact_ms))),
            );
            let n = item
                .evidence
                .get("waiting_samples")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            item.note("waiting_samples", json!(n + 1));
            item.note("waiter_query", json!(wait.waiter.query));
        }
    }
    for (key, ids) in examples {
        if let Some(item) = items.get_mut(&key) {
            item.note("blocker_correlation_ids", json!(ids));
        }
    }
    Ok(Locks {
        items,
        by_waiter_fingerprint: by_fp,
    })
}

fn hosts(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    frame: &Frame,
) -> Result<Vec<HostFigures>, AnalysisError> {
    let rows = query(
        src,
        &format!(
            "SELECT host, {w}, any_value(source), max(ncpu), max(load1), avg(cpu_user_pct + cpu_system_pct), \
             avg(cpu_iowait_pct), max(swap_used_bytes), sum(coalesce(swap_in_bytes, 0) + coalesce(swap_out_bytes, 0)) \
             FROM {t} WHERE {f}{s} GROUP BY ALL ORDER BY 1",
            t = days.table("host_metrics", frame.range()),
            w = frame.in_window("ts"),
            f = frame.filter("ts"),
            s = scope.clause("")
        ),
    )?;
    let mut out: BTreeMap<String, HostFigures> = BTreeMap::new();
    for r in rows {
        let h = out.entry(r.s(0)).or_insert_with(|| HostFigures {
            host: r.s(0),
            source: r.s(2),
            ncpu: r.f(3),
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
        });
        let (load, cpu, io, swap, swap_io) =
            (r.f(4), round3(r.f(5)), round3(r.f(6)), r.f(7), r.f(8));
        if is_w(&r, 1) {
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

fn events(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    frame: &Frame,
) -> Result<Vec<EventCount>, AnalysisError> {
    let (f, s) = (frame.filter("ts"), scope.clause(""));
    let t = days.table("pg_log", frame.range());
    let rows = query(
        src,
        &format!(
            "SELECT class, {w}, count(*), sum(coalesce(temp_file_bytes, 0)) FROM {t} WHERE {f}{s} AND class IN \
             ('deadlock', 'lock_wait', 'temp_file', 'checkpoint', 'statement_timeout', 'cancel', 'error', 'fatal', 'panic', 'autovacuum') \
             GROUP BY ALL ORDER BY 1",
            w = frame.in_window("ts")
        ),
    )?;
    let mut out: BTreeMap<String, EventCount> = BTreeMap::new();
    for r in rows {
        let e = out.entry(r.s(0)).or_insert_with(|| EventCount {
            class: r.s(0),
            count: 0.0,
            baseline_count: 0.0,
            bytes: 0.0,
            examples: Vec::new(),
        });
        if is_w(&r, 1) {
            e.count = r.f(2);
            e.bytes = r.f(3);
        } else {
            e.baseline_count = r.f(2);
        }
    }
    if out.get("deadlock").is_some_and(|e| e.count > 0.0) {
        let rows = query(
            src,
            &format!(
                "SELECT epoch_us(ts), host, correlation_id, detail FROM {t} WHERE {}{s} AND class = 'deadlock' ORDER BY ts LIMIT 5",
                frame.window.filter("ts")
            ),
        )?;
        if let Some(e) = out.get_mut("deadlock") {
            e.examples = rows
                .iter()
                .map(|r| json!({"ts": format_time(r.i(0)), "host": r.s(1), "correlation_id": r.opt(2), "detail": r.opt(3)}))
                .collect();
        }
    }
    Ok(out.into_values().collect())
}

/// The report of a window against its baseline.
///
/// # Errors
/// A store query failed.
pub fn report(src: &dyn Source, scope: &Scope, frame: &Frame) -> Result<Report, AnalysisError> {
    let ratio = frame.ratio();
    let days = Days::load(src)?;
    let eps = endpoints(src, &days, scope, frame)?;
    let funcs = functions(src, &days, scope, frame)?;
    let (php_sql, server_sql) = fingerprints(src, &days, scope, frame)?;
    let waits = wait_events(src, &days, scope, frame)?;
    let lock = locks(src, &days, scope, frame)?;

    let mut suspects: Vec<Suspect> = Vec::new();
    let push = |suspects: &mut Vec<Suspect>,
                kind: SuspectKind,
                name: &str,
                item: &Item,
                score: f64,
                endpoint: Option<String>| {
        if score > 1e-6 {
            suspects.push(Suspect {
                rank: 0,
                kind,
                name: name.to_owned(),
                score_s: score,
                share: 0.0,
                window_s: round3(item.w),
                baseline_s: round3(item.b * ratio),
                endpoint,
                evidence: item.evidence.clone(),
                spread: if item.w > 0.0 {
                    item.by_endpoint
                        .iter()
                        .map(|(k, v)| (k.clone(), v / item.w))
                        .collect()
                } else {
                    HashMap::new()
                },
            });
        }
    };

    let lock_total: f64 = lock.items.values().map(|i| i.excess(ratio).max(0.0)).sum();
    for (name, item) in &lock.items {
        push(
            &mut suspects,
            SuspectKind::LockBlocker,
            name,
            item,
            item.excess(ratio),
            item.main_endpoint(),
        );
    }

    // SQL: PHP's view when PHP saw the statement, the server's otherwise.
    let mut sql_raw_total = 0.0;
    let mut sql_suspects: BTreeSet<String> = BTreeSet::new();
    let names: BTreeSet<&String> = php_sql.keys().chain(server_sql.keys()).collect();
    for fp in names {
        let php = php_sql.get(fp).filter(|i| i.w > 0.0 || i.b > 0.0);
        let server = server_sql.get(fp);
        let Some(base) = php.or(server) else { continue };
        let mut item = base.clone();
        if let (Some(_), Some(s)) = (php, server) {
            item.evidence.extend(s.evidence.clone());
            item.note("pgss_seconds", json!(round3(s.w)));
            item.note("baseline_pgss_seconds", json!(round3(s.b * ratio)));
        }
        let raw = item.excess(ratio);
        sql_raw_total += raw.max(0.0);
        let lock_part = lock
            .by_waiter_fingerprint
            .get(fp)
            .copied()
            .unwrap_or(0.0)
            .max(0.0);
        if lock_part > 0.0 {
            item.note("lock_wait_seconds", json!(round3(lock_part)));
        }
        let score = raw - lock_part;
        if score > 0.0 {
            sql_suspects.insert(fp.clone());
        }
        push(
            &mut suspects,
            SuspectKind::SqlFingerprint,
            fp,
            &item,
            score,
            item.main_endpoint(),
        );
    }

    for (name, item) in &funcs {
        let mut item = item.clone();
        let mut score = item.excess(ratio);
        if is_database_frame(name) {
            item.note(
                "note",
                json!("time waiting for the database driver; see the SQL suspects"),
            );
            score -= sql_raw_total;
        }
        push(
            &mut suspects,
            SuspectKind::PhpFunction,
            name,
            &item,
            score,
            item.main_endpoint(),
        );
    }

    for (event, (item, by_fp)) in &waits {
        let score = if event.starts_with("Lock:") {
            item.excess(ratio) - lock_total
        } else {
            let explained: f64 = by_fp
                .iter()
                .filter(|(fp, _)| sql_suspects.contains(*fp))
                .map(|(_, s)| s)
                .sum();
            let unexplained = if item.w > 0.0 {
                1.0 - explained / item.w
            } else {
                0.0
            };
            item.excess(ratio) * unexplained
        };
        let mut item = item.clone();
        let mut top: Vec<(&String, &f64)> = by_fp.iter().collect();
        top.sort_by(|a, b| b.1.total_cmp(a.1));
        item.note(
            "top_fingerprints",
            json!(
                top.iter()
                    .take(3)
                    .map(|(fp, s)| json!({"fingerprint": fp, "seconds": round3(**s)}))
                    .collect::<Vec<_>>()
            ),
        );
        push(
            &mut suspects,
            SuspectKind::WaitEvent,
            event,
            &item,
            score,
            None,
        );
    }

    // Endpoints last: deeper suspects explain the latency of their endpoint.
    let mut explained: HashMap<String, f64> = HashMap::new();
    for s in &suspects {
        for (ep, part) in &s.spread {
            *explained.entry(ep.clone()).or_default() += s.score_s * part;
        }
    }
    let mut totals = Totals::default();
    for (ep, item) in &eps.items {
        let (n_w, n_b) = eps.counts.get(ep).copied().unwrap_or_default();
        let n_b = n_b * ratio;
        let (rs_w, rs_b) = (item.w, item.b * ratio);
        totals.requests += n_w;
        totals.baseline_requests += n_b;
        totals.request_seconds += rs_w;
        totals.baseline_request_seconds += rs_b;
        let mean_w = if n_w > 0.0 { rs_w / n_w } else { 0.0 };
        let mean_b = if n_b > 0.0 { rs_b / n_b } else { mean_w };
        let traffic = (n_w - n_b) * mean_b;
        let latency = n_w * (mean_w - mean_b);
        let unexplained = (latency - explained.get(ep).copied().unwrap_or(0.0)).max(0.0);
        let mut item = item.clone();
        item.note("requests", json!(round3(n_w)));
        item.note("baseline_requests", json!(round3(n_b)));
        item.note("rate_per_s", json!(round3(n_w / frame.window.seconds())));
        item.note(
            "baseline_rate_per_s",
            json!(round3(n_b / frame.window.seconds())),
        );
        item.note("mean_ms", json!(round3(mean_w * 1000.0)));
        item.note("baseline_mean_ms", json!(round3(mean_b * 1000.0)));
        item.note("traffic_excess_s", json!(round3(traffic)));
        item.note("latency_excess_s", json!(round3(latency)));
        push(
            &mut suspects,
            SuspectKind::Endpoint,
            ep,
            &item,
            traffic.max(0.0) + unexplained,
            Some(ep.clone()),
        );
    }
    totals.excess_request_seconds =
        round3(totals.request_seconds - totals.baseline_request_seconds);
    totals.requests = round3(totals.requests);
    totals.baseline_requests = round3(totals.baseline_requests);
    totals.request_seconds = round3(totals.request_seconds);
    totals.baseline_request_seconds = round3(totals.baseline_request_seconds);

    suspects.sort_by(|a, b| {
        b.score_s
            .total_cmp(&a.score_s)
            .then(a.kind.cmp(&b.kind))
            .then(a.name.cmp(&b.name))
    });
    suspects.truncate(30);
    let total = totals.excess_request_seconds;
    for (i, s) in suspects.iter_mut().enumerate() {
        s.rank = i + 1;
        s.share = if total > 0.0 {
            round3((s.score_s / total).min(1.0))
        } else {
            0.0
        };
        s.score_s = round3(s.score_s);
    }

    Ok(Report {
        from: format_time(frame.window.from),
        to: format_time(frame.window.to),
        baseline_from: format_time(frame.baseline.from),
        baseline_to: format_time(frame.baseline.to),
        totals,
        suspects,
        hosts: hosts(src, &days, scope, frame)?,
        events: events(src, &days, scope, frame)?,
    })
}

/// What a top list ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TopBy {
    Endpoints,
    Sql,
    Functions,
}

/// One entry of a top list: where the time of the window went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopEntry {
    pub name: String,
    pub seconds: f64,
    pub count: f64,
    pub evidence: BTreeMap<String, Value>,
}

/// A top entry from a measured item; `count_key` names the evidence that counts it.
fn top_entry(name: String, item: Item, count_key: &str) -> TopEntry {
    let count = item
        .evidence
        .get(count_key)
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    TopEntry {
        name,
        seconds: item.w,
        count,
        evidence: item.evidence,
    }
}

/// The biggest consumers of time in a window, without a baseline.
///
/// # Errors
/// A store query failed.
pub fn top(
    src: &dyn Source,
    scope: &Scope,
    window: Window,
    by: TopBy,
    limit: usize,
) -> Result<Vec<TopEntry>, AnalysisError> {
    // The same collectors as the report, over an empty baseline.
    let frame = Frame {
        window,
        baseline: Window {
            from: window.from,
            to: window.from,
        },
    };
    let days = Days::load(src)?;
    let entries: Vec<TopEntry> = match by {
        TopBy::Endpoints => {
            let eps = endpoints(src, &days, scope, &frame)?;
            eps.items
                .into_iter()
                .map(|(name, item)| {
                    let count = eps.counts.get(&name).map_or(0.0, |c| c.0);
                    TopEntry {
                        name,
                        seconds: item.w,
                        count,
                        evidence: item.evidence,
                    }
                })
                .collect()
        }
        TopBy::Sql => fingerprints(src, &days, scope, &frame)?
            .0
            .into_iter()
            .map(|(n, i)| top_entry(n, i, "php_calls"))
            .collect(),
        TopBy::Functions => functions(src, &days, scope, &frame)?
            .into_iter()
            .map(|(n, i)| top_entry(n, i, "requests"))
            .collect(),
    };
    let mut entries: Vec<TopEntry> = entries.into_iter().filter(|e| e.seconds > 0.0).collect();
    entries.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    entries.truncate(limit.max(1));
    for e in &mut entries {
        e.seconds = round3(e.seconds);
        e.count = round3(e.count);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_driver_frames_are_recognised() {
        assert!(is_database_frame("PDOStatement::execute"));
        assert!(is_database_frame("pg_query_params"));
        assert!(is_database_frame("BitvilleApm\\PdoStatement::execute"));
        assert!(is_database_frame("BitvilleApm\\Pdo::query"));
        assert!(!is_database_frame("BitvilleApm\\Profiler::stop"));
        assert!(!is_database_frame("App\\Pricing::applyRules"));
    }

    #[test]
    fn an_item_scales_its_baseline_and_names_its_main_endpoint() {
        let mut i = Item::default();
        i.add(true, 3.0, Some("GET /a".into()));
        i.add(true, 5.0, Some("GET /b".into()));
        i.add(false, 2.0, Some("GET /a".into()));
        assert_eq!(i.excess(2.0), 4.0);
        assert_eq!(i.main_endpoint().as_deref(), Some("GET /b"));
    }
}
