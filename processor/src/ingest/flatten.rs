//! Turns validated records into rows of the store's tables.
//!
//! This runs on the HTTP handlers' threads, before the single writer, so the
//! writer only appends. It knows the column order of each table
//! ([`crate::store::schema`]) and makes the store's input types
//! ([`crate::store::PreparedRecord`]), but nothing about DuckDB.

use std::borrow::Cow;

use bitville_schemas::read::{BackendIn, Fast, FastRecord, Int, PgActivityIn, read_value};
use bitville_schemas::{Kind, fingerprint};
use serde_json::Value;

use crate::store::schema::{self, TableId};
use crate::store::{Cell, PreparedRecord, Row};

/// Why a schema-valid record still cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlattenError {
    #[error("/ts: {0}")]
    BadTs(String),
    /// A kind that only the typed reader flattens, which refused the record.
    #[error("{0}")]
    NotRead(String),
}

/// Builds the rows of one validated record; `raw` is the line as received.
/// A kind that the fast reader covers (`pg_activity`) is read into its
/// typed record and flattened by [`prepare_fast`], the one way that kind is
/// flattened.
///
/// # Errors
/// The envelope `ts` cannot be parsed (the schema checks its shape only),
/// or the fast reader refuses a line of a kind it covers.
pub fn prepare<'a>(
    kind: Kind,
    record: &'a Value,
    raw: &'a str,
    ingested_at: i64,
) -> Result<PreparedRecord<'a>, FlattenError> {
    if kind == Kind::PgActivity {
        return match read_value(record) {
            Fast::Accepted(r) => prepare_fast(r, raw, ingested_at),
            Fast::Refused(reason) => Err(FlattenError::NotRead(reason)),
            Fast::NotCovered => Err(FlattenError::NotRead(format!(
                "the typed reader does not read this {kind} record"
            ))),
        };
    }
    let id = text(record, "id").unwrap_or_default();
    let ts_text = text(record, "ts").unwrap_or_default();
    let env = Envelope {
        project: text(record, "project").unwrap_or_default().into(),
        host: text(record, "host").unwrap_or("").into(),
        ts: parse_ts(ts_text)?,
    };
    let mut rows = env.records_row(id, kind, raw, ingested_at);
    match kind {
        Kind::Request => request_rows(&env, record, id, &mut rows),
        Kind::PgStatements => pg_statements_rows(&env, record, &mut rows),
        Kind::PgLog => pg_log_rows(&env, record, &mut rows),
        Kind::HostMetrics => host_metrics_rows(&env, record, &mut rows),
        Kind::PgActivity => unreachable!("read by the fast reader above"),
    }
    Ok(env.into_record(id.into(), kind, rows))
}

fn parse_ts(text: &str) -> Result<i64, FlattenError> {
    bitville_schemas::parse_ts(text).map_err(|e| FlattenError::BadTs(e.to_string()))
}

/// Builds the rows of a record the fast reader read and checked
/// ([`bitville_schemas::read`]), taking its strings over, without looking
/// any field up by name.
///
/// # Errors
/// The envelope `ts` cannot be parsed (the reader checks its shape only).
pub fn prepare_fast<'a>(
    record: FastRecord<'a>,
    raw: &'a str,
    ingested_at: i64,
) -> Result<PreparedRecord<'a>, FlattenError> {
    let kind = record.kind();
    match record {
        FastRecord::PgActivity(r) => {
            let PgActivityIn {
                envelope: e,
                server_version_num,
                sample_ms,
                backends,
            } = r;
            let env = Envelope {
                ts: parse_ts(&e.ts)?,
                project: e.project,
                host: e.host,
            };
            let mut rows = env.records_row(e.id.clone(), kind, raw, ingested_at);
            rows.reserve(backends.len());
            let sample = (server_version_num.as_i64(), sample_ms);
            for (idx, b) in backends.into_iter().enumerate() {
                rows.push(pg_activity_fast_row(&env, sample, idx, b));
            }
            Ok(env.into_record(e.id, kind, rows))
        }
    }
}

/// One backend of a `pg_activity` sample, as a row; `sample` is the
/// sample's server version and duration.
fn pg_activity_fast_row<'a>(
    env: &Envelope<'a>,
    (server_version_num, sample_ms): (i64, Option<f64>),
    idx: usize,
    b: BackendIn<'a>,
) -> Row<'a> {
    let i = |v: Option<Int>| v.map_or(Cell::Null, |v| Cell::Int(v.as_i64()));
    let t = |v: Option<Cow<'_, str>>| {
        v.as_deref()
            .and_then(parse_pg_ts)
            .map_or(Cell::Null, Cell::Ts)
    };
    let correlation = b.correlation_id.or_else(|| {
        b.application_name
            .as_deref()
            .and_then(fingerprint::parse_correlation_id)
            .map(Cow::Owned)
    });
    let fingerprint = b.query.as_deref().map(fingerprint::normalize);
    let query_start = t(b.query_start);
    let xact_start = t(b.xact_start);
    let mut c = env.start(TableId::PgActivity);
    c.extend([
        Cell::Int(server_version_num),
        sample_ms.map_or(Cell::Null, Cell::Float),
        Cell::Int(b.pid.as_i64()),
        i(b.leader_pid),
        i(b.datid),
        opt_text(b.datname),
        i(b.usesysid),
        opt_text(b.usename),
        opt_text(b.application_name),
        opt_text(correlation),
        opt_text(b.client_addr),
        opt_text(b.client_hostname),
        i(b.client_port),
        t(b.backend_start),
        xact_start.clone(),
        query_start.clone(),
        t(b.state_change),
        opt_text(b.wait_event_type),
        opt_text(b.wait_event),
        opt_text(b.state),
        opt_text(b.backend_xid),
        opt_text(b.backend_xmin),
        i(b.query_id),
        opt_text(b.query),
        opt_text(fingerprint),
        opt_text(b.backend_type),
        b.blocking_pids.map_or(Cell::Null, |p| {
            Cell::IntList(p.iter().map(|v| v.as_i64()).collect())
        }),
        elapsed_ms(&query_start, env.ts),
        elapsed_ms(&xact_start, env.ts),
        Cell::Int(idx as i64),
    ]);
    finish(TableId::PgActivity, c)
}

/// What an absent sub-object reads as: every field of it is then NULL.
const NULL: &Value = &Value::Null;

struct Envelope<'a> {
    project: Cow<'a, str>,
    host: Cow<'a, str>,
    ts: i64,
}

impl<'a> Envelope<'a> {
    /// The first four cells of every table: seq (placeholder), project, host, ts.
    fn start(&self, table: TableId) -> Vec<Cell<'a>> {
        let mut cells = Vec::with_capacity(table.table().columns.len());
        cells.extend([
            Cell::Null,
            Cell::Text(self.project.clone()),
            Cell::Text(self.host.clone()),
            Cell::Ts(self.ts),
        ]);
        cells
    }

    /// The record's rows so far: its `records` row, with the line as received.
    fn records_row(
        &self,
        id: impl Into<Cow<'a, str>>,
        kind: Kind,
        raw: &'a str,
        ingested_at: i64,
    ) -> Vec<Row<'a>> {
        let mut rec = self.start(TableId::Records);
        rec.extend([
            Cell::Text(id.into()),
            Cell::Text(kind.as_str().into()),
            Cell::Ts(ingested_at),
            Cell::Text(raw.into()),
        ]);
        vec![finish(TableId::Records, rec)]
    }

    fn into_record(self, id: Cow<'a, str>, kind: Kind, rows: Vec<Row<'a>>) -> PreparedRecord<'a> {
        PreparedRecord {
            id,
            kind,
            project: self.project,
            ts: self.ts,
            rows,
        }
    }
}

fn finish(table: TableId, cells: Vec<Cell<'_>>) -> Row<'_> {
    debug_assert_eq!(
        cells.len(),
        table.table().columns.len(),
        "row of {}",
        table.table().name
    );
    Row { table, cells }
}

fn request_rows<'a>(env: &Envelope<'a>, r: &'a Value, id: &'a str, rows: &mut Vec<Row<'a>>) {
    let http = r.get("http").unwrap_or(NULL);
    let runtime = r.get("runtime").unwrap_or(NULL);
    let res = r.get("resources").unwrap_or(NULL);
    let err = r.get("error").unwrap_or(NULL);
    let sql = r.get("sql").unwrap_or(NULL);
    let profile = r.get("profile").unwrap_or(NULL);
    let agent = r.get("agent").unwrap_or(NULL);
    let duration_ms = r.get("duration_ms").and_then(Value::as_f64).unwrap_or(0.0);
    // `as` saturates from f64 and the subtraction saturates too: flattening is
    // total whatever the number (the schema bounds it, this does not rely on it).
    let started_at = env.ts.saturating_sub(micros(duration_ms));
    let correlation = text(r, "correlation_id");
    let queries = sql
        .get("queries")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let stacks = profile
        .get("stacks")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let edges = profile
        .get("edges")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let profiler = text(profile, "profiler");
    let period_ms = profile.get("period_ms").and_then(Value::as_f64);

    let mut c = env.start(TableId::Requests);
    c.extend([
        Cell::Text(id.into()),
        opt_text(correlation),
        Cell::Ts(started_at),
        str_cell(r, "record_type"),
        float_cell(r, "sampling_weight"),
        Cell::Float(duration_ms),
        str_cell(http, "method"),
        str_cell(http, "url"),
        int_cell(http, "status"),
        str_cell(http, "route"),
        str_cell(http, "controller"),
        str_cell(http, "action"),
        str_cell(http, "client_ip"),
        str_cell(runtime, "sapi"),
        str_cell(runtime, "php_version"),
        int_cell(runtime, "pid"),
        str_cell(runtime, "agent_version"),
        float_cell(runtime, "threshold_ms"),
        int_cell(res, "memory_usage_bytes"),
        int_cell(res, "memory_peak_bytes"),
        float_cell(res, "cpu_user_ms"),
        float_cell(res, "cpu_system_ms"),
        int_cell(err, "type"),
        str_cell(err, "type_name"),
        str_cell(err, "message"),
        str_cell(err, "file"),
        int_cell(err, "line"),
        if sql.is_null() {
            Cell::Null
        } else {
            Cell::Int(queries.len() as i64)
        },
        int_cell(sql, "total_count"),
        int_cell(sql, "dropped"),
        float_cell(sql, "total_ms"),
        opt_text(profiler),
        period_ms.map_or(Cell::Null, Cell::Float),
        int_cell(profile, "total_samples"),
        if profile.is_null() {
            Cell::Null
        } else {
            Cell::Int((stacks.len() + edges.len()) as i64)
        },
        int_cell(profile, "dropped"),
        int_cell(profile, "dropped_samples"),
        float_cell(agent, "overhead_us"),
        int_cell(agent, "dropped_records"),
        Cell::Bool(r.get("trimmed").is_some_and(|t| !t.is_null())),
        json_cell(http, "headers"),
        json_cell(r, "context"),
        int_cell(sql, "not_stored"),
        int_cell(sql, "fingerprints_dropped"),
        float_cell(sql, "fingerprints_dropped_ms"),
        bool_cell(profile, "compact"),
        int_cell(profile, "agent_folded"),
        int_cell(res, "ctx_switches_voluntary"),
        int_cell(res, "ctx_switches_involuntary"),
    ]);
    rows.push(finish(TableId::Requests, c));

    let shapes = sql
        .get("fingerprints")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for (idx, f) in shapes.iter().enumerate() {
        let sql_text = f.get("sql").and_then(Value::as_str).unwrap_or("");
        let frame = f.get("frame").unwrap_or(NULL);
        let mut c = env.start(TableId::RequestFingerprints);
        c.extend([
            opt_text(correlation),
            Cell::Int(idx as i64),
            Cell::Text(sql_text.into()),
            Cell::Text(fingerprint::normalize(sql_text).into()),
            int_cell(f, "count"),
            float_cell(f, "total_ms"),
            float_cell(f, "max_ms"),
            int_cell(f, "stored"),
            str_cell(frame, "function"),
            str_cell(frame, "file"),
            int_cell(frame, "line"),
        ]);
        rows.push(finish(TableId::RequestFingerprints, c));
    }

    for (idx, q) in queries.iter().enumerate() {
        let sql_text = q.get("sql").and_then(Value::as_str).unwrap_or("");
        let fp: Cow<'_, str> = q
            .get("fingerprint")
            .and_then(Value::as_str)
            .map_or_else(|| fingerprint::normalize(sql_text).into(), Cow::Borrowed);
        let start_ms = q.get("start_ms").and_then(Value::as_f64).unwrap_or(0.0);
        let first_frame = q.get("frames").and_then(|f| f.get(0)).unwrap_or(NULL);
        let mut c = env.start(TableId::RequestSql);
        c.extend([
            opt_text(correlation),
            Cell::Int(idx as i64),
            Cell::Ts(started_at.saturating_add(micros(start_ms))),
            Cell::Float(start_ms),
            float_cell(q, "duration_ms"),
            Cell::Text(sql_text.into()),
            Cell::Text(fp),
            str_cell(q, "op"),
            str_cell(q, "source"),
            str_cell(q, "status"),
            str_cell(q, "error"),
            int_cell(q, "rows"),
            str_cell(first_frame, "function"),
            str_cell(first_frame, "file"),
            int_cell(first_frame, "line"),
            json_cell(q, "params"),
            json_cell(q, "frames"),
        ]);
        rows.push(finish(TableId::RequestSql, c));
    }

    for (idx, s) in stacks.iter().enumerate() {
        let frames: Vec<&str> = s
            .get("frames")
            .and_then(Value::as_array)
            .map(|f| f.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let samples = s.get("samples").and_then(Value::as_i64);
        let n = frames.len();
        let mut c = env.start(TableId::RequestProfile);
        c.extend([
            opt_text(correlation),
            Cell::Int(idx as i64),
            opt_text(profiler),
            Cell::Text(frames.join(";").into()),
            Cell::Int(n as i64),
            opt_text(frames.last().copied()),
            opt_text(n.checked_sub(2).map(|i| frames[i])),
            samples.map_or(Cell::Null, Cell::Int),
            match (samples, period_ms) {
                (Some(s), Some(p)) => Cell::Float(s as f64 * p * 1000.0),
                _ => Cell::Null,
            },
            Cell::Null,
            Cell::Null,
            Cell::Null,
        ]);
        rows.push(finish(TableId::RequestProfile, c));
    }
    for (idx, e) in edges.iter().enumerate() {
        let mut c = env.start(TableId::RequestProfile);
        c.extend([
            opt_text(correlation),
            Cell::Int((stacks.len() + idx) as i64),
            opt_text(profiler),
            Cell::Null,
            Cell::Null,
            str_cell(e, "callee"),
            str_cell(e, "caller"),
            Cell::Null,
            float_cell(e, "wt_us"),
            int_cell(e, "ct"),
            float_cell(e, "cpu_us"),
            int_cell(e, "mu"),
        ]);
        rows.push(finish(TableId::RequestProfile, c));
    }
}

fn pg_statements_rows<'a>(env: &Envelope<'a>, r: &'a Value, rows: &mut Vec<Row<'a>>) {
    let entries = r
        .get("entries")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for (idx, e) in entries.iter().enumerate() {
        let query = e.get("query").and_then(Value::as_str);
        let fp = text(e, "fingerprint")
            .map(Cow::Borrowed)
            .or_else(|| query.map(|q| fingerprint::normalize(q).into()));
        let mut c = env.start(TableId::PgStatements);
        c.extend([
            int_cell(r, "server_version_num"),
            str_cell(r, "extension_version"),
            ts_cell(r, "interval_start"),
            ts_cell(r, "interval_end"),
            int_cell(e, "queryid"),
            int_cell(e, "userid"),
            int_cell(e, "dbid"),
            bool_cell(e, "toplevel"),
            opt_text(query),
            opt_text(fp),
            int_cell(e, "calls"),
            float_cell(e, "total_exec_time_ms"),
            int_cell(e, "rows"),
            int_cell(e, "plans"),
            float_cell(e, "total_plan_time_ms"),
            int_cell(e, "shared_blks_hit"),
            int_cell(e, "shared_blks_read"),
            int_cell(e, "shared_blks_dirtied"),
            int_cell(e, "shared_blks_written"),
            int_cell(e, "local_blks_hit"),
            int_cell(e, "local_blks_read"),
            int_cell(e, "local_blks_dirtied"),
            int_cell(e, "local_blks_written"),
            int_cell(e, "temp_blks_read"),
            int_cell(e, "temp_blks_written"),
            float_cell(e, "blk_read_time_ms"),
            float_cell(e, "blk_write_time_ms"),
            int_cell(e, "wal_records"),
            int_cell(e, "wal_fpi"),
            int_cell(e, "wal_bytes"),
            int_cell(r, "evicted"),
            Cell::Int(idx as i64),
            int_cell(r, "dealloc"),
        ]);
        rows.push(finish(TableId::PgStatements, c));
    }
}

fn pg_log_rows<'a>(env: &Envelope<'a>, r: &'a Value, rows: &mut Vec<Row<'a>>) {
    let app = text(r, "application_name");
    let correlation = text(r, "correlation_id").map(Cow::Borrowed).or_else(|| {
        app.and_then(fingerprint::parse_correlation_id)
            .map(Cow::Owned)
    });
    let query = r.get("query").and_then(Value::as_str);
    let statement = r.get("statement").and_then(Value::as_str);
    let fp = query.or(statement).map(fingerprint::normalize);
    let lock = r.get("lock").unwrap_or(NULL);
    let temp = r.get("temp_file").unwrap_or(NULL);
    let source = r.get("source").unwrap_or(NULL);
    let class = text(r, "class");
    let mut c = env.start(TableId::PgLog);
    c.extend([
        ts_cell(r, "log_time"),
        str_cell(r, "format"),
        opt_text(class),
        str_cell(r, "severity"),
        str_cell(r, "sqlstate"),
        int_cell(r, "pid"),
        str_cell(r, "session_id"),
        int_cell(r, "session_line"),
        str_cell(r, "user"),
        str_cell(r, "database"),
        opt_text(app),
        opt_text(correlation),
        str_cell(r, "client"),
        str_cell(r, "backend_type"),
        int_cell(r, "query_id"),
        str_cell(r, "message"),
        str_cell(r, "detail"),
        str_cell(r, "hint"),
        str_cell(r, "context"),
        opt_text(statement),
        float_cell(r, "duration_ms"),
        opt_text(query),
        opt_text(fp),
        str_cell(r, "parameters"),
        json_cell(r, "plan"),
        str_cell(lock, "mode"),
        str_cell(lock, "object"),
        float_cell(lock, "waited_ms"),
        int_list_cell(lock, "holders"),
        int_list_cell(lock, "queue"),
        r.get("deadlock")
            .and_then(|d| d.get("processes"))
            .map_or(Cell::Null, |p| Cell::Text(p.to_string().into())),
        str_cell(temp, "path"),
        int_cell(temp, "size_bytes"),
        json_cell(r, "details"),
        str_cell(source, "file"),
        int_cell(source, "offset"),
        str_cell(r, "raw"),
        Cell::Bool(matches!(class, Some("lock_wait" | "deadlock"))),
    ]);
    rows.push(finish(TableId::PgLog, c));
}

fn host_metrics_rows<'a>(env: &Envelope<'a>, r: &'a Value, rows: &mut Vec<Row<'a>>) {
    let cpu = r.get("cpu").unwrap_or(NULL);
    let mem = r.get("memory").unwrap_or(NULL);
    let swap = r.get("swap").unwrap_or(NULL);
    let disk = r.get("disk").unwrap_or(NULL);
    let net = r.get("net").unwrap_or(NULL);
    let mut c = env.start(TableId::HostMetrics);
    c.extend([
        str_cell(r, "source"),
        float_cell(r, "interval_s"),
        int_cell(r, "ncpu"),
        float_cell(r, "load1"),
        float_cell(r, "load5"),
        float_cell(r, "load15"),
        float_cell(cpu, "user_pct"),
        float_cell(cpu, "system_pct"),
        float_cell(cpu, "iowait_pct"),
        float_cell(cpu, "steal_pct"),
        float_cell(cpu, "idle_pct"),
        int_cell(mem, "total_bytes"),
        int_cell(mem, "available_bytes"),
        int_cell(mem, "used_bytes"),
        int_cell(swap, "total_bytes"),
        int_cell(swap, "used_bytes"),
        int_cell(swap, "in_bytes"),
        int_cell(swap, "out_bytes"),
        int_cell(disk, "read_bytes"),
        int_cell(disk, "write_bytes"),
        int_cell(net, "rx_bytes"),
        int_cell(net, "tx_bytes"),
        int_cell(r, "procs_running"),
        int_cell(r, "procs_blocked"),
    ]);
    rows.push(finish(TableId::HostMetrics, c));
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Milliseconds to microseconds, saturating at the bounds of i64 (NaN is 0).
fn micros(ms: f64) -> i64 {
    (ms * 1000.0).round() as i64
}

fn opt_text<'a>(v: Option<impl Into<Cow<'a, str>>>) -> Cell<'a> {
    v.map_or(Cell::Null, |s| Cell::Text(s.into()))
}

fn str_cell<'a>(v: &'a Value, key: &str) -> Cell<'a> {
    opt_text(text(v, key))
}

/// Integers; values over i64 (u64 counters) are clamped rather than lost.
fn int_cell(v: &Value, key: &str) -> Cell<'static> {
    match v.get(key) {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|_| i64::MAX))
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map_or(Cell::Null, Cell::Int),
        _ => Cell::Null,
    }
}

fn float_cell(v: &Value, key: &str) -> Cell<'static> {
    v.get(key)
        .and_then(Value::as_f64)
        .map_or(Cell::Null, Cell::Float)
}

fn bool_cell(v: &Value, key: &str) -> Cell<'static> {
    v.get(key)
        .and_then(Value::as_bool)
        .map_or(Cell::Null, Cell::Bool)
}

/// A sub-value as JSON text; NULL when absent or null.
fn json_cell(v: &Value, key: &str) -> Cell<'static> {
    match v.get(key) {
        None | Some(Value::Null) => Cell::Null,
        Some(x) => Cell::Text(x.to_string().into()),
    }
}

fn int_list_cell(v: &Value, key: &str) -> Cell<'static> {
    match v.get(key).and_then(Value::as_array) {
        Some(items) => Cell::IntList(items.iter().filter_map(Value::as_i64).collect()),
        None => Cell::Null,
    }
}

fn ts_cell(v: &Value, key: &str) -> Cell<'static> {
    v.get(key)
        .and_then(Value::as_str)
        .and_then(parse_pg_ts)
        .map_or(Cell::Null, Cell::Ts)
}

fn elapsed_ms(start: &Cell<'_>, ts: i64) -> Cell<'static> {
    match start {
        Cell::Ts(s) => Cell::Float((ts - s) as f64 / 1000.0),
        _ => Cell::Null,
    }
}

/// Parses a timestamp as PostgreSQL or a writer printed it: RFC 3339, or
/// PostgreSQL's `2026-11-27 11:47:44.123+00` (space separator, short offset),
/// into microseconds since the epoch, UTC. `None` when it is neither.
pub fn parse_pg_ts(text: &str) -> Option<i64> {
    if let Ok(t) = bitville_schemas::parse_ts(text) {
        return Some(t);
    }
    let mut s = text.trim().to_owned();
    for zone in [" UTC", " GMT"] {
        if let Some(stripped) = s.strip_suffix(zone) {
            s = format!("{stripped}Z");
        }
    }
    if s.len() > 10 && s.as_bytes()[10] == b' ' {
        s.replace_range(10..11, "T");
    }
    // A bare offset such as +00 or -0530 gets its minutes and colon.
    if let Some(pos) = s.rfind(['+', '-']).filter(|p| *p > 18) {
        let offset = &s[pos + 1..];
        let fixed = match offset.len() {
            2 => format!("{offset}:00"),
            4 if !offset.contains(':') => format!("{}:{}", &offset[..2], &offset[2..]),
            _ => offset.to_owned(),
        };
        s.replace_range(pos + 1.., &fixed);
    } else if !s.ends_with('Z') && !s.ends_with('z') {
        s.push('Z');
    }
    bitville_schemas::parse_ts(&s).ok()
}

/// The number of columns in every table, for checks in tests.
pub fn column_count(table: TableId) -> usize {
    schema::TABLES[table as usize].columns.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(kind: &str) -> Value {
        json!({"v": 1, "kind": kind, "id": "1b4e28ba-2fa1-41d2-883f-0016d3cca427",
               "ts": "2026-11-27T11:47:44.123456Z", "project": "shop", "host": "web-1"})
    }

    fn merged(kind: &str, body: Value) -> Value {
        let mut r = env(kind);
        r.as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        r
    }

    fn check_shapes(p: &PreparedRecord) {
        for row in &p.rows {
            assert_eq!(row.cells.len(), column_count(row.table), "{:?}", row.table);
        }
    }

    /// A summary's per-shape SQL counts become `request_fingerprints` rows,
    /// normalized like `request_sql`, and its not-stored count and compact
    /// profile flag land on the request row.
    #[test]
    fn per_shape_sql_counts_become_fingerprint_rows() {
        let r = merged(
            "request",
            json!({
                "correlation_id": "2b4e28ba-2fa1-41d2-883f-0016d3cca427", "record_type": "summary",
                "sampling_weight": 10, "duration_ms": 120.0,
                "sql": {"queries": [], "not_stored": 400, "fingerprints": [
                    {"sql": "SELECT price FROM variants WHERE product_id = ?", "count": 400,
                     "total_ms": 40.0, "max_ms": 0.5, "stored": 0,
                     "frame": {"function": "ProductList::loadVariants", "file": "src/ProductList.php", "line": 41}}
                ]},
                "profile": {"profiler": "excimer", "period_ms": 10, "compact": true, "stacks": [
                    {"frames": ["main", "ProductList::loadVariants"], "samples": 3}
                ]}
            }),
        );
        let p = prepare(Kind::Request, &r, "{}", 0).unwrap();
        check_shapes(&p);
        let shapes: Vec<_> = p
            .rows
            .iter()
            .filter(|r| r.table == TableId::RequestFingerprints)
            .collect();
        assert_eq!(shapes.len(), 1);
        let table = TableId::RequestFingerprints.table();
        let cell = |name: &str| shapes[0].cells[table.position(name).unwrap()].clone();
        assert_eq!(
            cell("fingerprint"),
            Cell::Text("SELECT price FROM variants WHERE product_id = $1".into())
        );
        assert_eq!(cell("count"), Cell::Int(400));
        assert_eq!(
            cell("caller"),
            Cell::Text("ProductList::loadVariants".into())
        );
        assert_eq!(cell("caller_line"), Cell::Int(41));
        let req = p
            .rows
            .iter()
            .find(|r| r.table == TableId::Requests)
            .unwrap();
        let rt = TableId::Requests.table();
        assert_eq!(
            req.cells[rt.position("sql_not_stored").unwrap()],
            Cell::Int(400)
        );
        assert_eq!(
            req.cells[rt.position("profile_compact").unwrap()],
            Cell::Bool(true)
        );
    }

    #[test]
    fn a_request_becomes_one_row_per_statement_and_stack() {
        let r = merged(
            "request",
            json!({
                "correlation_id": "2b4e28ba-2fa1-41d2-883f-0016d3cca427", "record_type": "full",
                "sampling_weight": 1, "duration_ms": 250.0,
                "runtime": {"sapi": "fpm-fcgi", "php_version": "8.2.7", "pid": 42},
                "http": {"method": "GET", "url": "/checkout", "status": 200},
                "sql": {"queries": [
                    {"sql": "SELECT * FROM t WHERE id = 5", "start_ms": 10.0, "duration_ms": 3.5, "status": "ok",
                     "frames": [{"function": "Repo::find", "file": "a.php", "line": 7}]}
                ]},
                "profile": {"profiler": "excimer", "period_ms": 10, "stacks": [
                    {"frames": ["main", "Controller::run", "slow"], "samples": 20}
                ]}
            }),
        );
        let p = prepare(Kind::Request, &r, "{}", 0).unwrap();
        check_shapes(&p);
        let tables: Vec<_> = p.rows.iter().map(|r| r.table).collect();
        assert_eq!(
            tables,
            [
                TableId::Records,
                TableId::Requests,
                TableId::RequestSql,
                TableId::RequestProfile
            ]
        );
        let sql = &p.rows[2].cells;
        assert_eq!(sql[10], Cell::Text("SELECT * FROM t WHERE id = $1".into()));
        assert_eq!(
            sql[6],
            Cell::Ts(p.ts - 250_000 + 10_000),
            "statement start = request start + start_ms"
        );
        assert_eq!(sql[16], Cell::Text("Repo::find".into()));
        let prof = &p.rows[3].cells;
        assert_eq!(prof[7], Cell::Text("main;Controller::run;slow".into()));
        assert_eq!(prof[9], Cell::Text("slow".into()));
        assert_eq!(prof[10], Cell::Text("Controller::run".into()));
        assert_eq!(prof[12], Cell::Float(200_000.0), "20 samples of 10 ms");
    }

    /// Flattening is total: numbers past any schema bound saturate, never
    /// overflow (the dev profile checks overflow: this panicked before).
    #[test]
    fn numbers_past_every_bound_saturate_instead_of_panicking() {
        for (duration, start) in [(1e300, 1e300), (-1e300, 1e300), (f64::MAX, f64::MIN)] {
            let r = merged(
                "request",
                json!({
                    "duration_ms": duration,
                    "sql": {"queries": [{"sql": "SELECT 1", "start_ms": start}]}
                }),
            );
            let p = prepare(Kind::Request, &r, "{}", 0).unwrap();
            check_shapes(&p);
        }
    }

    #[test]
    fn pg_activity_parses_correlation_ids_and_postgres_timestamps() {
        let r = merged(
            "pg_activity",
            json!({"server_version_num": 150004, "backends": [
                {"pid": 7, "application_name": "bitville:2b4e28ba-2fa1-41d2-883f-0016d3cca427",
                 "query_start": "2026-11-27 11:47:43.123456+00", "query": "SELECT 1", "blocking_pids": [8, 9]},
                {"pid": 8}
            ]}),
        );
        let raw = r.to_string();
        let p = prepare(Kind::PgActivity, &r, &raw, 0).unwrap();
        check_shapes(&p);
        assert_eq!(p.rows.len(), 3);
        let b = &p.rows[1].cells;
        assert_eq!(
            b[13],
            Cell::Text("2b4e28ba-2fa1-41d2-883f-0016d3cca427".into())
        );
        assert_eq!(b[31], Cell::Float(1000.0), "query_ms");
        assert_eq!(b[30], Cell::IntList(vec![8, 9]));
    }

    #[test]
    fn other_kinds_fill_every_column() {
        let cases = [
            (
                Kind::HostMetrics,
                merged(
                    "host_metrics",
                    json!({"source": "shipper", "load1": 1, "load5": 1, "load15": 1}),
                ),
            ),
            (
                Kind::PgLog,
                merged(
                    "pg_log",
                    json!({"log_time": "2026-11-27 11:47:44 UTC", "format": "stderr",
                "class": "lock_wait", "message": "m", "lock": {"holders": [1]}}),
                ),
            ),
            (
                Kind::PgStatements,
                merged(
                    "pg_statements",
                    json!({"server_version_num": 1, "interval_start": "2026-11-27T11:00:00Z",
                "interval_end": "2026-11-27T11:01:00Z", "entries": [{"queryid": 1, "calls": 2, "total_exec_time_ms": 3.0, "query": "SELECT 2"}]}),
                ),
            ),
        ];
        for (kind, r) in cases {
            let p = prepare(kind, &r, "{}", 0).unwrap();
            check_shapes(&p);
            assert_eq!(p.rows.len(), 2, "{kind}");
        }
    }

    #[test]
    fn postgres_timestamp_forms_parse() {
        let z = bitville_schemas::parse_ts("2026-11-27T11:47:44.000000Z").unwrap();
        assert_eq!(parse_pg_ts("2026-11-27 11:47:44+00"), Some(z));
        assert_eq!(parse_pg_ts("2026-11-27 13:47:44+02:00"), Some(z));
        assert_eq!(parse_pg_ts("2026-11-27T11:47:44Z"), Some(z));
        assert_eq!(parse_pg_ts("2026-11-27 17:17:44+0530"), Some(z));
        assert_eq!(parse_pg_ts("2026-11-27 11:47:44"), Some(z));
        assert_eq!(parse_pg_ts("2026-11-27 11:47:44 UTC"), Some(z));
        assert_eq!(parse_pg_ts("yesterday"), None);
    }
}
