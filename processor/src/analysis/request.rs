//! The drill-down of one request: everything stored under its correlation
//! ID, its flame graph, and its inclusive and exclusive call table.
//!
//! The request row is found first (by correlation ID or record id); every
//! other query is then bounded by the request's own time span, so the
//! drill-down reads a few row groups whatever the store holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::correlation::{self, RequestRef};
use super::lock_tree::{self, LockTree, SampleRow};
use super::source::side_by_side;
use super::{
    AnalysisError, Days, ENDPOINT_SQL, Micros, SECOND, Scope, Source, Window, check_uuid,
    format_time, query, quote, round3,
};

/// One SQL statement of the request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Statement {
    pub idx: i64,
    pub start_ms: f64,
    pub duration_ms: f64,
    pub op: String,
    pub status: String,
    pub fingerprint: String,
    pub sql: String,
    pub caller: Option<String>,
    pub rows: Option<i64>,
    pub error: Option<String>,
    pub params: Option<String>,
}

/// One row of the call table. A sampling profiler (Excimer) counts samples,
/// not calls, and an instrumenting one (xhprof) the reverse, so each count
/// is there only for the profiler that measures it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Call {
    pub function: String,
    /// xhprof and tideways: the call count; `None` for Excimer.
    pub calls: Option<i64>,
    /// Excimer: the samples with this function on the stack; `None` for xhprof.
    pub samples: Option<i64>,
    pub inclusive_ms: f64,
    pub exclusive_ms: f64,
}

/// The request's profile: folded stacks (µs) and the call table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Profile {
    pub profiler: Option<String>,
    /// `frame;frame;leaf <µs>` lines, flame graph input.
    pub folded: Vec<String>,
    pub calls: Vec<Call>,
}

/// A backend of another request, in a lock relation with this one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Peer {
    pub pid: i64,
    pub correlation_id: Option<String>,
    pub url: Option<String>,
    pub endpoint: Option<String>,
    pub state: Option<String>,
    pub query: Option<String>,
    /// The normalized `query`, the key of the SQL fingerprint page.
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// One pg_activity sample of the request's backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActivitySample {
    pub ts: String,
    pub host: String,
    pub pid: i64,
    pub state: Option<String>,
    pub wait_event_type: Option<String>,
    pub wait_event: Option<String>,
    pub query: Option<String>,
    pub query_ms: f64,
    pub blocked_by: Vec<Peer>,
    pub blocking: Vec<Peer>,
}

/// Everything about one request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestDetail {
    pub correlation_id: String,
    pub request: BTreeMap<String, Value>,
    pub sql: Vec<Statement>,
    pub profile: Profile,
    pub activity: Vec<ActivitySample>,
    /// The whole lock chain of its backend: the root blockers and every
    /// backend queued behind them (empty when it took part in none).
    #[serde(default)]
    pub lock_tree: LockTree,
    pub logs: Vec<BTreeMap<String, Value>>,
}

const REQUEST_COLUMNS: [&str; 22] = [
    "id",
    "correlation_id",
    "project",
    "host",
    "record_type",
    "sampling_weight",
    "duration_ms",
    "method",
    "url",
    "status",
    "route",
    "controller",
    "action",
    "sapi",
    "pid",
    "cpu_user_ms",
    "cpu_system_ms",
    "memory_peak_bytes",
    "sql_total_count",
    "sql_total_ms",
    "profiler",
    "error_message",
];

/// Where a request's record is: enough to read everything else by zone
/// maps (`ts`) rather than by scanning for its id.
struct Located {
    /// `ts` (the request's end) and `seq` of the record.
    end: Micros,
    seq: i64,
    start: Micros,
    correlation_id: String,
}

/// One of the drill-down's independent reads.
enum Part {
    Request(BTreeMap<String, Value>),
    Sql(Vec<Statement>),
    Profile(Profile),
    Activity(Vec<ActivitySample>, LockTree),
    Logs(Vec<BTreeMap<String, Value>>),
}

/// One part of a drill-down, run on a connection of its own.
type Job<'a> = Box<dyn FnOnce(&dyn Source) -> Result<Part, AnalysisError> + Send + 'a>;

/// Loads the drill-down of a request by correlation ID or record id.
///
/// A narrow query over every day finds the record (see [`locate`]); the
/// five reads that follow (the row, its SQL, its profile, the database's
/// samples and its log lines) are each bounded by the record's `ts` and run
/// side by side on connections of their own, since each costs about the
/// same few ms of DuckDB's fixed per-query work.
///
/// # Errors
/// The id is not a UUID, no request of the scope has it, or a query failed.
pub fn detail(src: &dyn Source, scope: &Scope, id: &str) -> Result<RequestDetail, AnalysisError> {
    let id = check_uuid(id)?;
    let days = Days::load(src)?;
    let at = locate(src, &days, scope, &id)?
        .ok_or_else(|| AnalysisError::NotFound(format!("request {id}")))?;
    let (days, at) = (&days, &at);
    let jobs: Vec<Job<'_>> = vec![
        Box::new(move |src| request_row(src, days, at).map(Part::Request)),
        Box::new(move |src| statements(src, days, at).map(Part::Sql)),
        Box::new(move |src| profile(src, days, at).map(Part::Profile)),
        Box::new(move |src| {
            activity(src, days, scope, at).map(|(a, tree)| Part::Activity(a, tree))
        }),
        Box::new(move |src| logs(src, days, scope, at).map(Part::Logs)),
    ];
    let mut detail = RequestDetail {
        correlation_id: at.correlation_id.clone(),
        request: BTreeMap::new(),
        sql: Vec::new(),
        profile: Profile::default(),
        activity: Vec::new(),
        lock_tree: LockTree::default(),
        logs: Vec::new(),
    };
    for part in side_by_side(src, jobs) {
        match part? {
            Part::Request(r) => detail.request = r,
            Part::Sql(s) => detail.sql = s,
            Part::Profile(p) => detail.profile = p,
            Part::Activity(a, tree) => {
                detail.activity = a;
                detail.lock_tree = tree;
            }
            Part::Logs(l) => detail.logs = l,
        }
    }
    Ok(detail)
}

/// Finds the newest record of the scope whose correlation ID, or else
/// whose record id, is `id`. Each asks one column of every day table, in
/// one query planned once (asking day by day cost a query per day the id
/// is not in); the correlation ID, which links and the CLI carry, is asked
/// first, so the usual lookup reads one column of UUIDs rather than two.
fn locate(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    id: &str,
) -> Result<Option<Located>, AnalysisError> {
    for column in ["correlation_id", "id"] {
        let lookups: Vec<String> = days
            .newest_first()
            .map(|day| {
                format!(
                    "SELECT epoch_us(ts) AS t, seq, epoch_us(started_at) AS s, correlation_id FROM {} WHERE {column} = {}{}",
                    days.table("requests", day),
                    quote(id),
                    scope.clause("")
                )
            })
            .collect();
        if lookups.is_empty() {
            return Ok(None);
        }
        let rows = query(
            src,
            &format!(
                "SELECT * FROM ({}) ORDER BY t DESC, seq DESC LIMIT 1",
                lookups.join(" UNION ALL ")
            ),
        )?;
        if let Some(r) = rows.first() {
            return Ok(Some(Located {
                end: r.i(0),
                seq: r.i(1),
                start: r.i(2),
                correlation_id: r.s(3),
            }));
        }
    }
    Ok(None)
}

impl Located {
    /// The day table of `table` holding the record's rows, and the filter
    /// that picks them: its `ts` (so zone maps skip the rest) and its `seq`.
    fn rows_of(&self, days: &Days, table: &str) -> (String, String) {
        let record = Window {
            from: self.end,
            to: self.end + 1,
        };
        (
            days.table(table, record),
            format!("{} AND seq = {}", record.filter("ts"), self.seq),
        )
    }

    /// The database side's span: the request's own, plus a little slack.
    fn span(&self) -> Window {
        Window {
            from: self.start - SECOND,
            to: self.end + 2 * SECOND,
        }
    }
}

fn request_row(
    src: &dyn Source,
    days: &Days,
    at: &Located,
) -> Result<BTreeMap<String, Value>, AnalysisError> {
    let (table, same_record) = at.rows_of(days, "requests");
    let rows = query(
        src,
        &format!(
            "SELECT {ENDPOINT_SQL}, {} FROM {table} WHERE {same_record} LIMIT 1",
            REQUEST_COLUMNS.join(", ")
        ),
    )?;
    let r = rows
        .first()
        .ok_or_else(|| AnalysisError::NotFound(format!("request {}", at.correlation_id)))?;
    let mut request = BTreeMap::new();
    request.insert("endpoint".to_owned(), json!(r.s(0)));
    request.insert("ts".to_owned(), json!(format_time(at.end)));
    request.insert("started_at".to_owned(), json!(format_time(at.start)));
    for (i, c) in REQUEST_COLUMNS.iter().enumerate() {
        let v = r.opt(1 + i).map_or(Value::Null, |s| {
            s.parse::<i64>()
                .map(Value::from)
                .or_else(|_| s.parse::<f64>().map(Value::from))
                .unwrap_or_else(|_| json!(s))
        });
        request.insert((*c).to_owned(), v);
    }
    Ok(request)
}

fn statements(
    src: &dyn Source,
    days: &Days,
    at: &Located,
) -> Result<Vec<Statement>, AnalysisError> {
    let (table, same_record) = at.rows_of(days, "request_sql");
    let rows = query(
        src,
        &format!(
            "SELECT idx, start_ms, duration_ms, op, status, fingerprint, sql, caller, rows, error, params::VARCHAR \
             FROM {table} WHERE {same_record} ORDER BY idx"
        ),
    )?;
    Ok(rows
        .iter()
        .map(|r| Statement {
            idx: r.i(0),
            start_ms: r.f(1),
            duration_ms: r.f(2),
            op: r.s(3),
            status: r.s(4),
            fingerprint: r.s(5),
            sql: r.s(6),
            caller: r.opt(7).map(str::to_owned),
            rows: r.opt(8).and_then(|s| s.parse().ok()),
            error: r.opt(9).map(str::to_owned),
            params: r.opt(10).map(str::to_owned),
        })
        .collect())
}

fn profile(src: &dyn Source, days: &Days, at: &Located) -> Result<Profile, AnalysisError> {
    let (table, same_record) = at.rows_of(days, "request_profile");
    let rows = query(
        src,
        &format!(
            "SELECT profiler, stack, function, caller, coalesce(samples, 0), coalesce(wall_us, 0), coalesce(calls, 0) \
             FROM {table} WHERE {same_record} ORDER BY idx"
        ),
    )?;
    Ok(build_profile(
        &rows
            .iter()
            .map(|r| ProfileRow {
                profiler: r.s(0),
                stack: r.opt(1).map(str::to_owned),
                function: r.s(2),
                caller: r.opt(3).map(str::to_owned),
                samples: r.i(4),
                wall_us: r.f(5),
                calls: r.i(6),
            })
            .collect::<Vec<_>>(),
    ))
}

/// The request's log lines; a slow statement is logged when it ends, so
/// the span reaches a little past the request.
fn logs(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    at: &Located,
) -> Result<Vec<BTreeMap<String, Value>>, AnalysisError> {
    let span = at.span();
    let log_span = Window {
        from: span.from,
        to: span.to + 10 * SECOND,
    };
    let rows = query(
        src,
        &format!(
            "SELECT epoch_us(ts), class, severity, message, duration_ms, detail, fingerprint, lock_waited_ms FROM {} \
             WHERE {}{} AND correlation_id = {} ORDER BY ts",
            days.table("pg_log", log_span),
            log_span.filter("ts"),
            scope.clause(""),
            quote(&at.correlation_id)
        ),
    )?;
    Ok(rows
        .iter()
        .map(|r| {
            let mut m = BTreeMap::new();
            m.insert("ts".into(), json!(format_time(r.i(0))));
            for (i, k) in [
                "class",
                "severity",
                "message",
                "duration_ms",
                "detail",
                "fingerprint",
                "lock_waited_ms",
            ]
            .iter()
            .enumerate()
            {
                m.insert(
                    (*k).to_owned(),
                    r.opt(i + 1).map_or(Value::Null, |s| json!(s)),
                );
            }
            m
        })
        .collect())
}

/// The request's backend samples, with who blocked it and whom it blocked
/// (each peer resolved to its request when it carries a correlation ID),
/// and the whole lock tree those samples hold.
fn activity(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    at: &Located,
) -> Result<(Vec<ActivitySample>, LockTree), AnalysisError> {
    let (span, correlation_id) = (&at.span(), at.correlation_id.as_str());
    let rows = query(
        src,
        &format!(
            "SELECT seq, epoch_us(ts), host, pid, blocking_pids, correlation_id, state, wait_event_type, wait_event, query, query_ms, fingerprint \
             FROM {t} WHERE {f}{s} AND seq IN (SELECT seq FROM {t} WHERE {f}{s} AND correlation_id = {c}) \
             ORDER BY seq, pid",
            t = days.table("pg_activity", *span),
            f = span.filter("ts"),
            s = scope.clause(""),
            c = quote(correlation_id)
        ),
    )?;
    let ids: BTreeSet<String> = rows
        .iter()
        .filter_map(|r| r.opt(5).map(str::to_owned))
        .collect();
    let requests: HashMap<String, RequestRef> =
        correlation::requests_by_correlation(src, days, scope, &ids, *span)?;
    let peer = |r: &super::Row| {
        let cid = r.opt(5).map(str::to_owned);
        let req = cid.as_ref().and_then(|c| requests.get(c));
        Peer {
            pid: r.i(3),
            correlation_id: cid.clone(),
            url: req.map(|q| q.url.clone()),
            endpoint: req.map(|q| q.endpoint.clone()),
            state: r.opt(6).map(str::to_owned),
            query: r.opt(9).map(str::to_owned),
            fingerprint: r.opt(11).map(str::to_owned),
        }
    };
    let mut out = Vec::new();
    for mine in rows.iter().filter(|r| r.opt(5) == Some(correlation_id)) {
        let same: Vec<&super::Row> = rows
            .iter()
            .filter(|o| o.i(0) == mine.i(0) && o.i(3) != mine.i(3))
            .collect();
        let waits_on = mine.list(4);
        out.push(ActivitySample {
            ts: format_time(mine.i(1)),
            host: mine.s(2),
            pid: mine.i(3),
            state: mine.opt(6).map(str::to_owned),
            wait_event_type: mine.opt(7).map(str::to_owned),
            wait_event: mine.opt(8).map(str::to_owned),
            query: mine.opt(9).map(str::to_owned),
            query_ms: mine.f(10),
            blocked_by: same
                .iter()
                .filter(|o| waits_on.contains(&o.i(3)))
                .map(|o| peer(o))
                .collect(),
            blocking: same
                .iter()
                .filter(|o| o.list(4).contains(&mine.i(3)))
                .map(|o| peer(o))
                .collect(),
        });
    }
    let samples: Vec<SampleRow> = rows
        .iter()
        .map(|r| SampleRow {
            sample: r.i(0),
            ts: r.i(1),
            pid: r.i(3),
            blocking_pids: r.list(4),
            correlation_id: r.opt(5).map(str::to_owned),
            state: r.opt(6).map(str::to_owned),
            wait_event_type: r.opt(7).map(str::to_owned),
            wait_event: r.opt(8).map(str::to_owned),
            query: r.opt(9).map(str::to_owned),
            fingerprint: r.opt(11).map(str::to_owned),
        })
        .collect();
    let names = |cid: &str| {
        requests
            .get(cid)
            .map(|q| (q.endpoint.clone(), q.url.clone()))
    };
    let tree = lock_tree::build(&samples, correlation_id, &names);
    Ok((out, tree))
}

/// One stored profile row.
#[derive(Debug, Clone)]
pub struct ProfileRow {
    pub profiler: String,
    pub stack: Option<String>,
    pub function: String,
    pub caller: Option<String>,
    /// Excimer: the samples of this stack.
    pub samples: i64,
    pub wall_us: f64,
    pub calls: i64,
}

/// Folded stacks and the call table of a profile: Excimer stacks as they
/// are; xhprof edges as a tree from the root, each child's share of its
/// function's time split across that function's callers in proportion
/// (xhprof keeps caller==>callee pairs, not whole stacks).
pub fn build_profile(rows: &[ProfileRow]) -> Profile {
    let rows = &without_agent_frames(rows);
    let Some(first) = rows.first() else {
        return Profile::default();
    };
    let excimer = first.profiler == "excimer";
    let mut folded = Vec::new();
    let mut calls: BTreeMap<String, Call> = BTreeMap::new();
    if excimer {
        for r in rows {
            let Some(stack) = &r.stack else { continue };
            folded.push(format!("{stack} {}", r.wall_us.round() as i64));
            let frames: BTreeSet<&str> = stack.split(';').collect();
            for f in frames {
                let c = call(&mut calls, f);
                *c.samples.get_or_insert(0) += r.samples;
                c.inclusive_ms += r.wall_us / 1000.0;
            }
            let c = call(&mut calls, &r.function);
            c.exclusive_ms += r.wall_us / 1000.0;
        }
    } else {
        let mut children: HashMap<&str, Vec<&ProfileRow>> = HashMap::new();
        let mut inclusive: HashMap<&str, f64> = HashMap::new();
        for r in rows {
            *inclusive.entry(r.function.as_str()).or_default() += r.wall_us;
            if let Some(caller) = &r.caller {
                children.entry(caller.as_str()).or_default().push(r);
            }
            let c = call(&mut calls, &r.function);
            *c.calls.get_or_insert(0) += r.calls;
            c.inclusive_ms += r.wall_us / 1000.0;
            c.exclusive_ms += r.wall_us / 1000.0;
            if let Some(caller) = &r.caller {
                let p = call(&mut calls, caller);
                p.exclusive_ms -= r.wall_us / 1000.0;
            }
        }
        for root in rows.iter().filter(|r| r.caller.is_none()) {
            fold_edges(
                &root.function,
                root.wall_us,
                &mut vec![root.function.as_str()],
                &children,
                &inclusive,
                &mut folded,
            );
        }
    }
    let mut calls: Vec<Call> = calls.into_values().collect();
    for c in &mut calls {
        c.inclusive_ms = round3(c.inclusive_ms);
        c.exclusive_ms = round3(c.exclusive_ms.max(0.0));
    }
    calls.sort_by(|a, b| {
        b.exclusive_ms
            .total_cmp(&a.exclusive_ms)
            .then(a.function.cmp(&b.function))
    });
    Profile {
        profiler: Some(first.profiler.clone()),
        folded,
        calls,
    }
}

/// The rows with the agent's own frames (`BitvilleApm\...`) folded into
/// what they wrap and xhprof's recursion markers (`f@1`) folded into `f`:
/// an Excimer stack loses the agent's frames (its leaf time goes to the
/// frame below); an xhprof edge into an agent function is dropped and the
/// agent function's own edges start from its caller instead. Self-edges
/// left by the markers are dropped.
pub fn without_agent_frames(rows: &[ProfileRow]) -> Vec<ProfileRow> {
    use crate::analysis::report::{is_agent_frame, strip_recursion};
    let mut agent_parent: HashMap<String, String> = HashMap::new();
    for r in rows {
        let f = strip_recursion(&r.function);
        if is_agent_frame(f)
            && let Some(c) = &r.caller
        {
            agent_parent.insert(f.to_owned(), strip_recursion(c).to_owned());
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let mut r = r.clone();
        if let Some(stack) = &r.stack {
            let frames: Vec<&str> = stack
                .split(';')
                .map(strip_recursion)
                .filter(|f| !is_agent_frame(f))
                .collect();
            let Some(leaf) = frames.last() else { continue };
            r.function = (*leaf).to_owned();
            r.caller = frames.len().checked_sub(2).map(|i| frames[i].to_owned());
            r.stack = Some(frames.join(";"));
        } else {
            let f = strip_recursion(&r.function).to_owned();
            if is_agent_frame(&f) {
                continue;
            }
            let mut caller = r.caller.as_deref().map(|c| strip_recursion(c).to_owned());
            for _ in 0..8 {
                match caller.as_deref() {
                    Some(c) if is_agent_frame(c) => caller = agent_parent.get(c).cloned(),
                    _ => break,
                }
            }
            if caller.as_deref() == Some(f.as_str()) {
                continue;
            }
            r.function = f;
            r.caller = caller;
        }
        out.push(r);
    }
    out
}

fn call<'m>(calls: &'m mut BTreeMap<String, Call>, f: &str) -> &'m mut Call {
    calls.entry(f.to_owned()).or_insert_with(|| Call {
        function: f.to_owned(),
        calls: None,
        samples: None,
        inclusive_ms: 0.0,
        exclusive_ms: 0.0,
    })
}

fn fold_edges<'a>(
    function: &'a str,
    time_us: f64,
    path: &mut Vec<&'a str>,
    children: &HashMap<&'a str, Vec<&'a ProfileRow>>,
    inclusive: &HashMap<&'a str, f64>,
    out: &mut Vec<String>,
) {
    let total = inclusive.get(function).copied().unwrap_or(time_us).max(1.0);
    let share = (time_us / total).min(1.0);
    let mut children_us = 0.0;
    if path.len() < 64 {
        for &child in children.get(function).into_iter().flatten() {
            if path.contains(&child.function.as_str()) {
                continue;
            }
            let t = child.wall_us * share;
            children_us += t;
            path.push(child.function.as_str());
            fold_edges(&child.function, t, path, children, inclusive, out);
            path.pop();
        }
    }
    let own = (time_us - children_us).round() as i64;
    if own > 0 {
        out.push(format!("{} {own}", path.join(";")));
    }
}

/// The flame graph of a request's profile, as SVG.
///
/// # Errors
/// The profile is empty, or the renderer refused it.
pub fn flame_graph_svg(detail: &RequestDetail) -> Result<String, AnalysisError> {
    if detail.profile.folded.is_empty() {
        return Err(AnalysisError::NotFound(format!(
            "profile of request {}",
            detail.correlation_id
        )));
    }
    let mut options = inferno::flamegraph::Options::default();
    options.title = format!(
        "{} {}",
        detail
            .request
            .get("endpoint")
            .and_then(Value::as_str)
            .unwrap_or(""),
        detail
            .request
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or("")
    );
    options.subtitle = Some(format!(
        "correlation ID {} ({})",
        detail.correlation_id,
        detail.profile.profiler.as_deref().unwrap_or("")
    ));
    options.count_name = "µs".to_owned();
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(
        &mut options,
        detail.profile.folded.iter().map(String::as_str),
        &mut svg,
    )
    .map_err(|e| {
        AnalysisError::Output(format!(
            "flame graph of request {}: {e}",
            detail.correlation_id
        ))
    })?;
    String::from_utf8(svg)
        .map_err(|e| AnalysisError::Output(format!("flame graph is not UTF-8: {e}")))
}

/// How a request list is ordered. Every order ends on the correlation ID, so
/// that pages of one order never repeat or skip a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListSort {
    /// The most recent end first.
    #[default]
    Newest,
    Oldest,
    /// The longest duration first.
    Slowest,
    Fastest,
}

impl ListSort {
    /// Every order, by its name in the API.
    pub const ALL: [(&'static str, ListSort); 4] = [
        ("newest", ListSort::Newest),
        ("oldest", ListSort::Oldest),
        ("slowest", ListSort::Slowest),
        ("fastest", ListSort::Fastest),
    ];

    /// The order named `name` (as in `?sort=`).
    ///
    /// # Errors
    /// The name is not one of [`ListSort::ALL`].
    pub fn parse(name: &str) -> Result<ListSort, AnalysisError> {
        ListSort::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, sort)| *sort)
            .ok_or_else(|| {
                AnalysisError::BadInput(format!(
                    "parameter sort: {name:?} is not newest, oldest, slowest or fastest"
                ))
            })
    }

    fn order_by(self) -> &'static str {
        match self {
            ListSort::Newest => "ts DESC, correlation_id",
            ListSort::Oldest => "ts, correlation_id",
            ListSort::Slowest => "duration_ms DESC NULLS LAST, ts DESC, correlation_id",
            ListSort::Fastest => "duration_ms NULLS LAST, ts DESC, correlation_id",
        }
    }
}

/// The most requests one list answer holds.
pub const MAX_LIST_LIMIT: usize = 10_000;

/// A filterable list of requests, sorted and paged in the store (so the
/// slowest of a window are found however many requests it holds).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListFilter {
    pub host: Option<String>,
    pub endpoint: Option<String>,
    pub status: Option<i64>,
    pub min_ms: Option<f64>,
    /// At most this many (100 by default, at most [`MAX_LIST_LIMIT`]).
    pub limit: Option<usize>,
    #[serde(default)]
    pub sort: ListSort,
    /// Skip this many requests of the order first (paging).
    #[serde(default)]
    pub offset: usize,
}

impl ListFilter {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(100).clamp(1, MAX_LIST_LIMIT)
    }
}

/// One page of a request list, and where the next one starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestPage {
    pub requests: Vec<BTreeMap<String, Value>>,
    pub sort: ListSort,
    pub offset: usize,
    /// The `offset` of the next page; `None` on the last page.
    pub next_offset: Option<usize>,
}

/// One page of the requests of a window that match a filter.
///
/// # Errors
/// A store query failed.
pub fn page(
    src: &dyn Source,
    scope: &Scope,
    window: Window,
    filter: &ListFilter,
) -> Result<RequestPage, AnalysisError> {
    let limit = filter.limit();
    let mut requests = rows_of_list(src, scope, window, filter, limit + 1)?;
    let more = requests.len() > limit;
    requests.truncate(limit);
    Ok(RequestPage {
        next_offset: more.then_some(filter.offset + limit),
        requests,
        sort: filter.sort,
        offset: filter.offset,
    })
}

/// The requests of a window that match a filter, in the filter's order.
///
/// # Errors
/// A store query failed.
pub fn list(
    src: &dyn Source,
    scope: &Scope,
    window: Window,
    filter: &ListFilter,
) -> Result<Vec<BTreeMap<String, Value>>, AnalysisError> {
    rows_of_list(src, scope, window, filter, filter.limit())
}

fn rows_of_list(
    src: &dyn Source,
    scope: &Scope,
    window: Window,
    filter: &ListFilter,
    limit: usize,
) -> Result<Vec<BTreeMap<String, Value>>, AnalysisError> {
    let mut cond = format!("{}{}", window.filter("ts"), scope.clause(""));
    if let Some(h) = &filter.host {
        cond.push_str(&format!(" AND host = {}", quote(h)));
    }
    if let Some(e) = &filter.endpoint {
        cond.push_str(&format!(" AND {ENDPOINT_SQL} = {}", quote(e)));
    }
    if let Some(s) = filter.status {
        cond.push_str(&format!(" AND status = {s}"));
    }
    if let Some(m) = filter.min_ms.filter(|m| m.is_finite()) {
        cond.push_str(&format!(" AND duration_ms >= {m}"));
    }
    let rows = query(
        src,
        &format!(
            "SELECT epoch_us(ts), correlation_id, project, host, {ENDPOINT_SQL}, url, status, duration_ms, record_type, \
             sql_total_ms, profiler FROM {} WHERE {cond} ORDER BY {} LIMIT {limit} OFFSET {}",
            Days::load(src)?.table("requests", window),
            filter.sort.order_by(),
            filter.offset
        ),
    )?;
    let keys = [
        "correlation_id",
        "project",
        "host",
        "endpoint",
        "url",
        "status",
        "duration_ms",
        "record_type",
        "sql_total_ms",
        "profiler",
    ];
    Ok(rows
        .iter()
        .map(|r| {
            let mut m = BTreeMap::new();
            m.insert("ts".to_owned(), json!(format_time(r.i(0))));
            for (i, k) in keys.iter().enumerate() {
                let v = match *k {
                    "status" => r
                        .opt(i + 1)
                        .and_then(|s| s.parse::<i64>().ok())
                        .map_or(Value::Null, Value::from),
                    "duration_ms" | "sql_total_ms" => r
                        .opt(i + 1)
                        .and_then(|s| s.parse::<f64>().ok())
                        .map_or(Value::Null, Value::from),
                    _ => r.opt(i + 1).map_or(Value::Null, |s| json!(s)),
                };
                m.insert((*k).to_owned(), v);
            }
            m
        })
        .collect())
}

/// Micros of a request's end, for callers that only need the time.
pub fn ended_at(detail: &RequestDetail) -> Option<Micros> {
    detail
        .request
        .get("ts")
        .and_then(Value::as_str)
        .and_then(|t| bitville_schemas::parse_ts(t).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(caller: Option<&str>, callee: &str, us: f64, ct: i64) -> ProfileRow {
        ProfileRow {
            profiler: "xhprof".into(),
            stack: None,
            function: callee.into(),
            caller: caller.map(Into::into),
            samples: 0,
            wall_us: us,
            calls: ct,
        }
    }

    /// Flame graphs never show the agent: its frames fold into what they
    /// wrap, and `f@1` folds into `f`.
    #[test]
    fn flame_graphs_have_no_agent_frames_or_recursion_markers() {
        let rows = vec![
            edge(None, "main()", 1000.0, 1),
            edge(Some("main()"), "Repo::load", 800.0, 1),
            edge(
                Some("Repo::load"),
                "BitvilleApm\\PdoStatement::execute",
                700.0,
                3,
            ),
            edge(
                Some("BitvilleApm\\PdoStatement::execute"),
                "PDOStatement::execute",
                650.0,
                3,
            ),
            edge(Some("Repo::load"), "Repo::load@1", 50.0, 1),
        ];
        let p = build_profile(&rows);
        assert!(
            p.folded
                .iter()
                .all(|l| !l.contains("BitvilleApm") && !l.contains('@')),
            "{:?}",
            p.folded
        );
        assert!(
            p.folded
                .iter()
                .any(|l| l.starts_with("main();Repo::load;PDOStatement::execute ")),
            "{:?}",
            p.folded
        );
        assert!(p.calls.iter().all(|c| !c.function.contains("BitvilleApm")));
        let stack = ProfileRow {
            profiler: "excimer".into(),
            stack: Some("main();Repo::load;BitvilleApm\\PdoStatement::execute".into()),
            function: "BitvilleApm\\PdoStatement::execute".into(),
            caller: Some("Repo::load".into()),
            samples: 1,
            wall_us: 100.0,
            calls: 0,
        };
        let p = build_profile(&[stack]);
        assert_eq!(p.folded, ["main();Repo::load 100"]);
    }

    #[test]
    fn xhprof_edges_give_inclusive_and_exclusive_times() {
        let rows = vec![
            edge(None, "main()", 1000.0, 1),
            edge(Some("main()"), "a", 600.0, 2),
            edge(Some("main()"), "b", 300.0, 1),
            edge(Some("a"), "b", 200.0, 4),
        ];
        let p = build_profile(&rows);
        let get = |f: &str| p.calls.iter().find(|c| c.function == f).unwrap().clone();
        assert_eq!(
            (get("main()").inclusive_ms, get("main()").exclusive_ms),
            (1.0, 0.1)
        );
        assert_eq!((get("a").inclusive_ms, get("a").exclusive_ms), (0.6, 0.4));
        assert_eq!(
            (get("b").calls, get("b").inclusive_ms, get("b").exclusive_ms),
            (Some(5), 0.5, 0.5)
        );
        assert_eq!(get("b").samples, None, "xhprof counts calls, not samples");
        // The folded stacks add up to the root's inclusive time.
        let total: i64 = p
            .folded
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
            .sum();
        assert_eq!(total, 1000);
        assert!(
            p.folded.iter().any(|l| l.starts_with("main();a;b ")),
            "{:?}",
            p.folded
        );
    }

    /// Issue 22: the call table showed Excimer's stack counts as "calls".
    /// A sampling profiler counts samples: each function's count is the
    /// samples with it on the stack, and it has no call count at all.
    #[test]
    fn excimer_stacks_count_a_frame_once_per_stack_in_samples_not_calls() {
        let row = |stack: &str, us: f64| ProfileRow {
            profiler: "excimer".into(),
            stack: Some(stack.into()),
            function: stack.rsplit(';').next().unwrap().into(),
            caller: None,
            samples: (us / 10.0) as i64,
            wall_us: us,
            calls: 0,
        };
        let p = build_profile(&[row("main;f;g;f", 100.0), row("main;h", 50.0)]);
        let get = |f: &str| p.calls.iter().find(|c| c.function == f).unwrap().clone();
        assert_eq!((get("main").samples, get("main").calls), (Some(15), None));
        assert_eq!(
            get("f").samples,
            Some(10),
            "f twice in one stack: its samples once"
        );
        assert_eq!((get("f").inclusive_ms, get("f").exclusive_ms), (0.1, 0.1));
        assert_eq!(
            (get("main").inclusive_ms, get("main").exclusive_ms),
            (0.15, 0.0)
        );
        assert_eq!(p.folded, vec!["main;f;g;f 100", "main;h 50"]);
    }
}
