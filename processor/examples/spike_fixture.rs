//! Generates the recorded spikes in `fixtures/spike/`: spool files of every
//! record kind (PHP requests, host metrics of the web and database hosts,
//! pg_activity samples, pg_stat_statements deltas, PostgreSQL log events)
//! for ten minutes of baseline, three minutes of spike with a known cause,
//! and two minutes after.
//!
//! ```sh
//! cargo run -p processor --example spike_fixture -- fixtures/spike
//! ```
//!
//! The output is deterministic (a seeded generator), so the committed files
//! can be checked against it. The analysis tests include this file and call
//! [`generate`] directly.
//!
//! The model is small but follows the parts' real behaviour: the agent
//! writes a full record (profile, SQL) for requests of 500 ms or more and a
//! summary for one in ten faster ones (`sampling_weight` 10); each PHP worker
//! keeps one database connection tagged `bitville:<correlation id>`; pg-watch
//! samples pg_stat_activity every 2 s and pg_stat_statements every minute;
//! PostgreSQL logs statements of 500 ms or more and lock waits over 1 s; the
//! load averages follow the runnable work with the kernel's one-minute decay.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// The scenarios and the cause each one plants.
pub const SCENARIOS: [&str; 4] = ["cpu_function", "slow_sql", "lock_contention", "traffic_burst"];
/// The cause of `cpu_function`.
pub const CPU_FUNCTION: &str = "App\\Search\\Ranker::score";
/// The statement of `slow_sql` (as PHP sends it).
pub const SLOW_SQL: &str = "SELECT * FROM reviews WHERE product_id = :id ORDER BY created_at DESC LIMIT 20";
/// The URL of the request that holds the lock in `lock_contention`.
pub const LOCK_BLOCKER_URL: &str = "/admin/stock/recount?sku=A-77";
/// The endpoint of `traffic_burst`.
pub const BURST_ENDPOINT: &str = "GET stock-status";

pub const PROJECT: &str = "shop";
pub const SECOND: i64 = 1_000_000;
pub const BASELINE_S: i64 = 600;
pub const SPIKE_S: i64 = 180;
pub const AFTER_S: i64 = 120;
const THRESHOLD_MS: f64 = 500.0;
const SAMPLE_EVERY: u64 = 10;
const PERIOD_MS: f64 = 10.0;

/// 2026-11-27T10:00:00Z, the default start.
pub const DEFAULT_START: i64 = 1_795_783_200 * SECOND;

/// xorshift64*: small, seeded, the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// `x` varied by ±`spread` (a fraction).
    fn vary(&mut self, x: f64, spread: f64) -> f64 {
        x * (1.0 + spread * (2.0 * self.unit() - 1.0))
    }
    fn uuid(&mut self) -> String {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next().to_le_bytes());
        b[8..].copy_from_slice(&self.next().to_le_bytes());
        uuid::Builder::from_random_bytes(b).into_uuid().to_string()
    }
}

fn ts(micros: i64) -> String {
    bitville_schemas::format_micros(micros)
}

/// One statement of a request: its text, start offset and duration.
#[derive(Clone)]
struct Stmt {
    sql: &'static str,
    op: &'static str,
    start_ms: f64,
    ms: f64,
    /// Waiting for this lock holder's backend pid.
    blocked_by: Option<usize>,
    caller: &'static str,
}

/// One simulated request.
struct Req {
    route: &'static str,
    method: &'static str,
    url: String,
    controller: &'static str,
    start: i64,
    ms: f64,
    worker: usize,
    cid: String,
    stmts: Vec<Stmt>,
    /// PHP time by leaf function (ms).
    php: Vec<(&'static str, f64)>,
    cpu_ms: f64,
}

impl Req {
    fn end(&self) -> i64 {
        self.start + (self.ms * 1000.0) as i64
    }
    fn backend_pid(&self) -> i64 {
        31000 + self.worker as i64
    }
}

/// An endpoint of the little shop.
struct Endpoint {
    route: &'static str,
    method: &'static str,
    path: &'static str,
    controller: &'static str,
    rate: f64,
}

const ENDPOINTS: [Endpoint; 5] = [
    Endpoint { route: "product-show", method: "GET", path: "/products/", controller: "ProductController::showAction", rate: 3.0 },
    Endpoint { route: "cart-add", method: "POST", path: "/cart/add", controller: "CartController::addAction", rate: 1.5 },
    Endpoint { route: "search", method: "GET", path: "/search?q=[REDACTED]", controller: "SearchController::indexAction", rate: 2.0 },
    Endpoint { route: "checkout-submit", method: "POST", path: "/checkout", controller: "CheckoutController::submitAction", rate: 0.8 },
    Endpoint { route: "stock-status", method: "GET", path: "/api/stock-status", controller: "StockController::statusAction", rate: 0.2 },
];

fn in_spike(t: i64, start: i64) -> bool {
    t >= start + BASELINE_S * SECOND && t < start + (BASELINE_S + SPIKE_S) * SECOND
}

/// The requests of a scenario, in start order.
fn requests(scenario: &str, start: i64, rng: &mut Rng) -> Vec<Req> {
    let end = start + (BASELINE_S + SPIKE_S + AFTER_S) * SECOND;
    let spike_from = start + BASELINE_S * SECOND;
    // Lock intervals of the blocker (lock_contention): every 20 s of the spike, held 8 s.
    let locks: Vec<(i64, i64)> = if scenario == "lock_contention" {
        (0..SPIKE_S / 20).map(|k| (spike_from + k * 20 * SECOND + 5_000, spike_from + k * 20 * SECOND + 8 * SECOND)).collect()
    } else {
        Vec::new()
    };
    let mut reqs = Vec::new();
    for ep in &ENDPOINTS {
        let mut t = start + (rng.unit() * 1e6) as i64;
        while t < end {
            let spike = in_spike(t, start);
            let rate = if scenario == "traffic_burst" && spike && ep.route == "stock-status" { 100.0 } else { ep.rate };
            reqs.push(build(scenario, ep, t, spike, &locks, rng));
            t += (rng.vary(1.0 / rate, 0.5) * 1e6) as i64;
        }
    }
    if scenario == "lock_contention" {
        for &(l0, l1) in &locks {
            let ms = (l1 - l0) as f64 / 1000.0 + 12.0;
            reqs.push(Req {
                route: "stock-recount",
                method: "POST",
                url: LOCK_BLOCKER_URL.to_owned(),
                controller: "Admin\\StockController::recountAction",
                start: l0 - 5_000,
                ms,
                worker: 0,
                cid: rng.uuid(),
                stmts: vec![
                    Stmt { sql: "BEGIN", op: "begin", start_ms: 3.0, ms: 0.2, blocked_by: None, caller: "App\\Admin\\StockCounter::recount" },
                    Stmt { sql: "SELECT * FROM stock WHERE sku = :sku FOR UPDATE", op: "query", start_ms: 4.0, ms: 1.0, blocked_by: None, caller: "App\\Admin\\StockCounter::recount" },
                    Stmt { sql: "UPDATE stock SET qty = :qty WHERE sku = :sku", op: "execute", start_ms: ms - 8.0, ms: 1.0, blocked_by: None, caller: "App\\Admin\\StockCounter::recount" },
                    Stmt { sql: "COMMIT", op: "commit", start_ms: ms - 6.0, ms: 0.5, blocked_by: None, caller: "App\\Admin\\StockCounter::recount" },
                ],
                php: vec![("App\\Admin\\StockCounter::recount", ms - 10.0)],
                cpu_ms: 300.0,
            });
        }
    }
    reqs.sort_by_key(|r| r.start);
    assign_workers(&mut reqs);
    reqs
}

fn build(scenario: &str, ep: &Endpoint, t: i64, spike: bool, locks: &[(i64, i64)], rng: &mut Rng) -> Req {
    let caller = ep.controller;
    let mut php: Vec<(&'static str, f64)> = Vec::new();
    let mut queries: Vec<(&'static str, &'static str, f64)> = Vec::new();
    // CPU contention slows everything a little when the web host is busy.
    let contention = match scenario {
        "cpu_function" | "traffic_burst" if spike => 1.25,
        _ => 1.0,
    };
    match ep.route {
        "product-show" => {
            php.push(("App\\View::render", rng.vary(18.0, 0.3) * contention));
            queries.push(("SELECT id, name, price FROM products WHERE id = :id", "execute", rng.vary(1.5, 0.3)));
            let slow = scenario == "slow_sql" && spike;
            queries.push((SLOW_SQL, "execute", if slow { rng.vary(900.0, 0.3) } else { rng.vary(2.0, 0.3) }));
        }
        "cart-add" => {
            php.push(("App\\Cart::add", rng.vary(40.0, 0.3) * contention));
            queries.push(("UPDATE carts SET qty = qty + :qty WHERE id = :cart", "execute", rng.vary(2.0, 0.3)));
            if scenario == "lock_contention" {
                queries.push(("UPDATE stock SET qty = qty - :qty WHERE sku = :sku", "execute", rng.vary(2.0, 0.3)));
            }
        }
        "search" => {
            php.push(("App\\View::render", rng.vary(30.0, 0.3) * contention));
            let heavy = if scenario == "cpu_function" && spike { rng.vary(1600.0, 0.2) } else { rng.vary(60.0, 0.3) };
            php.push((CPU_FUNCTION, heavy * contention));
            queries.push(("SELECT id, name FROM products WHERE name ILIKE :q LIMIT 20", "execute", rng.vary(15.0, 0.3)));
        }
        "checkout-submit" => {
            php.push(("App\\Checkout::submit", rng.vary(60.0, 0.3) * contention));
            queries.push(("BEGIN", "begin", 0.2));
            queries.push(("UPDATE stock SET qty = qty - :qty WHERE sku = :sku", "execute", rng.vary(3.0, 0.3)));
            queries.push(("INSERT INTO orders (cart_id, total) VALUES (:cart, :total)", "execute", rng.vary(2.0, 0.3)));
            queries.push(("COMMIT", "commit", 0.5));
        }
        _ => {
            php.push(("App\\Stock::status", rng.vary(10.0, 0.3) * contention));
            queries.push(("SELECT qty FROM stock WHERE sku = :sku", "execute", rng.vary(0.6, 0.3)));
        }
    }
    // Statements run one after another, PHP time between them.
    let php_total: f64 = php.iter().map(|(_, ms)| ms).sum();
    let gap = php_total / (queries.len() as f64 + 1.0);
    let mut at = gap;
    let mut stmts = Vec::new();
    for (sql, op, mut ms) in queries {
        let begins = t + (at * 1000.0) as i64;
        let mut blocked_by = None;
        if sql.starts_with("UPDATE stock SET qty = qty -") {
            if let Some((i, &(_, l1))) = locks.iter().enumerate().find(|(_, (l0, l1))| begins >= *l0 && begins < *l1) {
                ms += (l1 - begins) as f64 / 1000.0;
                blocked_by = Some(i);
            }
        }
        stmts.push(Stmt { sql, op, start_ms: at, ms, blocked_by, caller });
        at += ms + gap;
    }
    let url = if ep.path.ends_with('/') { format!("{}{}", ep.path, 1 + rng.next() % 500) } else { ep.path.to_owned() };
    Req {
        route: ep.route,
        method: ep.method,
        url,
        controller: ep.controller,
        start: t,
        ms: at,
        worker: 0,
        cid: rng.uuid(),
        stmts,
        cpu_ms: php_total * 0.9,
        php,
    }
}

/// Gives each request a PHP-FPM worker free at its start (worker 0 is the
/// blocker's, kept apart so its backend is stable).
fn assign_workers(reqs: &mut [Req]) {
    let mut free_at: Vec<i64> = vec![i64::MIN; 200];
    for r in reqs.iter_mut() {
        if r.route == "stock-recount" {
            continue;
        }
        let w = (1..free_at.len()).find(|&w| free_at[w] <= r.start).unwrap_or(1);
        free_at[w] = r.end();
        r.worker = w;
    }
}

fn request_record(r: &Req, id: String, weight: u64) -> Value {
    let full = r.ms >= THRESHOLD_MS;
    let mut rec = json!({
        "v": 1, "kind": "request", "id": id, "ts": ts(r.end()), "project": PROJECT, "host": "web-1",
        "correlation_id": r.cid, "record_type": if full { "full" } else { "summary" },
        "sampling_weight": weight, "duration_ms": (r.ms * 1000.0).round() / 1000.0,
        "http": {"method": r.method, "url": r.url, "status": 200, "route": r.route,
                 "controller": r.controller.split("::").next(), "action": r.controller.split("::").nth(1)},
        "runtime": {"sapi": "fpm-fcgi", "php_version": "8.2.26", "pid": 4000 + r.worker, "agent_version": "0.1.0", "threshold_ms": THRESHOLD_MS},
        "resources": {"memory_peak_bytes": 6_291_456, "cpu_user_ms": (r.cpu_ms * 10.0).round() / 10.0, "cpu_system_ms": 2.0},
        "sql": {"queries": [], "total_count": r.stmts.len(), "dropped": 0,
                "total_ms": (r.stmts.iter().map(|s| s.ms).sum::<f64>() * 1000.0).round() / 1000.0}
    });
    if full {
        rec["sql"]["queries"] = r
            .stmts
            .iter()
            .map(|s| {
                json!({"sql": s.sql, "op": s.op, "source": "phalcon", "start_ms": (s.start_ms * 1000.0).round() / 1000.0,
                       "duration_ms": (s.ms * 1000.0).round() / 1000.0, "status": "ok", "rows": 1,
                       "frames": [{"file": "/srv/app/src/App.php", "line": 42, "function": s.caller}]})
            })
            .collect();
        let base = ["{main}", "Phalcon\\Mvc\\Application::handle", r.controller];
        let mut stacks: Vec<Value> = Vec::new();
        for (f, ms) in &r.php {
            let frames: Vec<&str> = if *f == r.controller { base.to_vec() } else { base.iter().copied().chain([*f]).collect() };
            stacks.push(json!({"frames": frames, "samples": (ms / PERIOD_MS).round().max(1.0) as u64}));
        }
        let sql_ms: f64 = r.stmts.iter().map(|s| s.ms).sum();
        let frames: Vec<&str> = base.iter().copied().chain(["PDOStatement::execute"]).collect();
        stacks.push(json!({"frames": frames, "samples": (sql_ms / PERIOD_MS).round().max(1.0) as u64}));
        let total: u64 = stacks.iter().map(|s| s["samples"].as_u64().unwrap_or(0)).sum();
        rec["profile"] = json!({"profiler": "excimer", "period_ms": PERIOD_MS, "total_samples": total, "stacks": stacks, "dropped": 0, "dropped_samples": 0});
    }
    rec
}

/// Postgres-side text: named placeholders as `$n`.
fn server_text(sql: &str) -> String {
    let mut out = String::new();
    let mut n = 0;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            while chars.peek().is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_') {
                chars.next();
            }
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

fn queryid(text: &str) -> i64 {
    // FNV-1a: stable across runs, like a real queryid is for one server.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h as i64
}

/// The spool files of one scenario: file name to NDJSON text.
///
/// # Panics
/// A generated record does not match its schema (a bug in this generator).
pub fn generate(scenario: &str, start: i64) -> BTreeMap<String, String> {
    assert!(SCENARIOS.contains(&scenario), "unknown scenario {scenario}");
    let seed = 0x9E37_79B9_7F4A_7C15 ^ queryid(scenario) as u64;
    let mut rng = Rng(seed | 1);
    let reqs = requests(scenario, start, &mut rng);
    let end = start + (BASELINE_S + SPIKE_S + AFTER_S) * SECOND;
    let hour = |t: i64| {
        let s = ts(t);
        format!("{}{}{}{}", &s[0..4], &s[5..7], &s[8..10], &s[11..13])
    };
    let mut files: BTreeMap<String, Vec<(i64, Value)>> = BTreeMap::new();
    let mut put = |writer: &str, pid: u32, t: i64, v: Value| {
        files.entry(format!("{writer}.{}.{pid}.ndjson", hour(t))).or_default().push((t, v));
    };

    // PHP: full records for slow requests, one in ten of the others.
    let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &reqs {
        if r.end() >= end {
            continue;
        }
        let n = seen.entry(r.route).or_default();
        *n += 1;
        let full = r.ms >= THRESHOLD_MS;
        if full || *n % SAMPLE_EVERY == 0 {
            let id = rng.uuid();
            put("php", 4000 + r.worker as u32, r.end(), request_record(r, id, if full { 1 } else { SAMPLE_EVERY }));
        }
    }

    // pg_activity every 2 s: the backends running a statement at that instant.
    let mut t = start;
    while t < end {
        let mut backends = Vec::new();
        for r in reqs.iter().filter(|r| r.start <= t && r.end() > t) {
            let into_ms = (t - r.start) as f64 / 1000.0;
            let running = r.stmts.iter().find(|s| s.start_ms <= into_ms && into_ms < s.start_ms + s.ms);
            let in_xact = r.route == "stock-recount" && into_ms > 3.0;
            let (state, query, wait) = match running {
                Some(s) => ("active", server_text(s.sql), s.blocked_by),
                None if in_xact => ("idle in transaction", server_text("SELECT * FROM stock WHERE sku = :sku FOR UPDATE"), None),
                None => continue,
            };
            let slow_io = scenario == "slow_sql" && running.is_some_and(|s| s.sql == SLOW_SQL && s.ms > 100.0);
            let (wtype, wevent) = match (wait, slow_io) {
                (Some(_), _) => (json!("Lock"), json!("transactionid")),
                (None, true) => (json!("IO"), json!("DataFileRead")),
                (None, false) if state == "idle in transaction" => (json!("Client"), json!("ClientRead")),
                _ => (Value::Null, Value::Null),
            };
            let query_start = r.start + (running.map_or(4.0, |s| s.start_ms) * 1000.0) as i64;
            backends.push(json!({
                "pid": r.backend_pid(), "datname": "shop", "usename": "app", "application_name": format!("bitville:{}", r.cid),
                "client_addr": "10.0.0.11", "backend_start": ts(start - 3600 * SECOND), "xact_start": ts(r.start),
                "query_start": ts(query_start), "state_change": ts(query_start), "wait_event_type": wtype, "wait_event": wevent,
                "state": state, "query": query, "backend_type": "client backend",
                "blocking_pids": if wait.is_some() { json!([31000]) } else { Value::Null },
            }));
        }
        // Later lock waiters queue behind the first one (a tuple lock), a chain the analysis follows.
        let waiting: Vec<usize> =
            backends.iter().enumerate().filter(|(_, b)| b["wait_event_type"] == "Lock").map(|(i, _)| i).collect();
        if let Some((&first, rest)) = waiting.split_first() {
            let first_pid = backends[first]["pid"].clone();
            for &i in rest {
                backends[i]["blocking_pids"] = json!([first_pid]);
            }
        }
        backends.push(json!({"pid": 30990, "backend_type": "checkpointer", "state": Value::Null, "datname": Value::Null}));
        let id = rng.uuid();
        put("pg-watch", 812, t, json!({"v": 1, "kind": "pg_activity", "id": id, "ts": ts(t), "project": PROJECT, "host": "db-1",
                                        "server_version_num": 150010, "sample_ms": 0.9, "backends": backends}));
        t += 2 * SECOND;
    }

    // pg_stat_statements deltas every minute, text sent the first time only.
    let mut named: std::collections::BTreeSet<i64> = std::collections::BTreeSet::new();
    let mut t0 = start;
    while t0 < end {
        let t1 = t0 + 60 * SECOND;
        let mut by: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for r in &reqs {
            for s in &r.stmts {
                let done = r.start + ((s.start_ms + s.ms) * 1000.0) as i64;
                if done >= t0 && done < t1 && !matches!(s.op, "begin" | "commit") {
                    let e = by.entry(server_text(s.sql)).or_default();
                    e.0 += 1.0;
                    e.1 += (s.ms - 0.3).max(0.05);
                }
            }
        }
        let entries: Vec<Value> = by
            .iter()
            .map(|(text, (calls, ms))| {
                let id = queryid(text);
                let first = named.insert(id);
                json!({"queryid": id, "userid": 16385, "dbid": 16384, "toplevel": true,
                       "query": if first { json!(text) } else { Value::Null },
                       "calls": *calls as u64, "total_exec_time_ms": (ms * 1000.0).round() / 1000.0, "rows": *calls as u64,
                       "shared_blks_read": if text.contains("reviews") && *ms > 10_000.0 { 50_000 } else { 10 }})
            })
            .collect();
        let id = rng.uuid();
        put("pg-watch", 812, t1, json!({"v": 1, "kind": "pg_statements", "id": id, "ts": ts(t1), "project": PROJECT, "host": "db-1",
                                         "server_version_num": 150010, "extension_version": "1.10", "interval_start": ts(t0),
                                         "interval_end": ts(t1), "entries": entries, "evicted": 0, "dealloc": 0}));
        t0 = t1;
    }

    // PostgreSQL log: slow statements, and lock waits past deadlock_timeout (1 s).
    for r in reqs.iter().filter(|r| r.end() < end) {
        for s in &r.stmts {
            let begins = r.start + (s.start_ms * 1000.0) as i64;
            let done = begins + (s.ms * 1000.0) as i64;
            let text = server_text(s.sql);
            let common = |class: &str, at: i64, message: String| {
                json!({"v": 1, "kind": "pg_log", "ts": ts(at), "project": PROJECT, "host": "db-1",
                       "log_time": ts(at), "format": "csvlog", "class": class, "severity": "LOG", "pid": r.backend_pid(),
                       "user": "app", "database": "shop", "application_name": format!("bitville:{}", r.cid),
                       "correlation_id": r.cid, "message": message})
            };
            if s.blocked_by.is_some() && s.ms > 1000.0 {
                let at = begins + SECOND;
                let mut rec = common("lock_wait", at, format!("process {} still waiting for ShareLock on transaction 918273 after 1000.112 ms", r.backend_pid()));
                rec["lock"] = json!({"mode": "ShareLock", "object": "transaction 918273", "waited_ms": 1000.112, "holders": [31000], "queue": [r.backend_pid()]});
                rec["statement"] = json!(text);
                rec["id"] = json!(rng.uuid());
                put("pg-watch", 812, at, rec);
            }
            if s.ms >= THRESHOLD_MS {
                let mut rec = common("slow_statement", done, format!("duration: {:.3} ms  execute <unnamed>: {text}", s.ms));
                rec["duration_ms"] = json!((s.ms * 1000.0).round() / 1000.0);
                rec["query"] = json!(text);
                rec["id"] = json!(rng.uuid());
                put("pg-watch", 812, done, rec);
            }
        }
    }

    // Host metrics every 10 s, load following runnable work with a one-minute decay.
    for (host, source, ncpu, pid) in [("web-1", "shipper", 4u32, 640u32), ("db-1", "pg-watch", 4, 812)] {
        let mut load = 0.6;
        let mut t = start;
        while t < end {
            let window: Vec<&Req> = reqs.iter().filter(|r| r.start < t && r.end() > t - 10 * SECOND).collect();
            let (runnable, iowait) = if host == "web-1" {
                let cpu_s: f64 = window.iter().map(|r| r.cpu_ms / 1000.0 * overlap(r, t)).sum();
                (cpu_s / 10.0 + 0.4, 0.5)
            } else {
                let db_s: f64 = window
                    .iter()
                    .flat_map(|r| r.stmts.iter().filter(|s| s.blocked_by.is_none()).map(move |s| s.ms / 1000.0 * overlap(r, t)))
                    .sum();
                let io = if scenario == "slow_sql" && in_spike(t, start) { 35.0 } else { 1.0 };
                (db_s / 10.0 + 0.3, io)
            };
            load = runnable + (load - runnable) * (-10.0f64 / 60.0).exp();
            let busy = (runnable / f64::from(ncpu) * 100.0).min(97.0);
            let id = rng.uuid();
            put(
                if host == "web-1" { "host" } else { "pg-watch" },
                pid,
                t,
                json!({"v": 1, "kind": "host_metrics", "id": id, "ts": ts(t), "project": PROJECT, "host": host, "source": source,
                       "interval_s": 10, "ncpu": ncpu, "load1": (load * 100.0).round() / 100.0,
                       "load5": (load * 50.0).round() / 100.0, "load15": (load * 30.0).round() / 100.0,
                       "cpu": {"user_pct": (busy * 0.85 * 10.0).round() / 10.0, "system_pct": (busy * 0.15 * 10.0).round() / 10.0,
                               "iowait_pct": iowait, "steal_pct": 0.0, "idle_pct": ((100.0 - busy - iowait).max(0.0) * 10.0).round() / 10.0},
                       "memory": {"total_bytes": 8_589_934_592u64, "available_bytes": 4_294_967_296u64, "used_bytes": 4_294_967_296u64},
                       "swap": {"total_bytes": 2_147_483_648u64, "used_bytes": 0, "in_bytes": 0, "out_bytes": 0},
                       "procs_running": runnable.round() as u64, "procs_blocked": 0}),
            );
            t += 10 * SECOND;
        }
    }

    files
        .into_iter()
        .map(|(name, mut recs)| {
            recs.sort_by_key(|(t, _)| *t);
            let mut text = String::new();
            for (_, v) in recs {
                if let Err(e) = bitville_schemas::validate(&v) {
                    panic!("generated {} record is invalid: {e}\n{v}", v["kind"]);
                }
                text.push_str(&v.to_string());
                text.push('\n');
            }
            (name, text)
        })
        .collect()
}

/// The part of a request's time that falls in the 10 s before `t`.
fn overlap(r: &Req, t: i64) -> f64 {
    let lo = r.start.max(t - 10 * SECOND);
    let hi = r.end().min(t);
    if hi <= lo || r.ms <= 0.0 { 0.0 } else { (hi - lo) as f64 / (r.ms * 1000.0) }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let out = std::path::PathBuf::from(args.next().unwrap_or_else(|| "fixtures/spike".into()));
    for scenario in SCENARIOS {
        let dir = out.join(scenario);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("spike_fixture: cannot create {}: {e}", dir.display());
            std::process::exit(1);
        }
        for (name, text) in generate(scenario, DEFAULT_START) {
            let path = dir.join(&name);
            if let Err(e) = std::fs::write(&path, text) {
                eprintln!("spike_fixture: cannot write {}: {e}", path.display());
                std::process::exit(1);
            }
        }
        println!("{}", dir.display());
    }
}
