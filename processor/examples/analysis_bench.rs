//! Analysis benchmark: a store with seven days of a shop's data, and how long
//! the spike analysis takes on it.
//!
//! ```sh
//! cargo run --example analysis_bench                  # the issue's sizes (cached after the first run)
//! cargo run --example analysis_bench -- --scale 0.05  # a quick run
//! cargo run --example analysis_bench -- --fresh       # generate the store again
//! ```
//!
//! The generator fills a fresh store inside DuckDB with `INSERT ... SELECT`
//! over `range()`, with hash-based pseudo-random values: at scale 1, one
//! million requests, about ten million SQL statements, four million profile
//! stacks and twenty million pg_activity rows, in the day schemas the
//! processor's own writer creates ([`processor::store::bench::BulkLoad`]).
//! The model (see [`ENDPOINTS`] and [`TEMPLATES`]):
//!
//! - requests follow a daily curve (busiest around 14:00 UTC), spread over
//!   ten endpoints by weight, served round-robin by PHP-FPM workers on two web
//!   hosts, each worker with one PostgreSQL backend tagged with the request's
//!   correlation ID (`bitville:<uuid>`), kept after the request as the agent
//!   leaves it;
//! - each request runs its endpoint's statements (about ten), with a slow
//!   tail, and has an Excimer profile (its endpoint's functions, plus the
//!   database driver frame holding the SQL time);
//! - pg-watch samples every backend every 2 s (active backends show the
//!   running statement, idle ones the last request's application_name),
//!   sends pg_stat_statements deltas every minute, and the log has slow
//!   statements (500 ms or more), temp files and checkpoints;
//! - host metrics every 10 s for the two web hosts and the database host;
//! - one planted spike: on the fourth day from 14:20 to 14:35 UTC the reviews
//!   query of the product page ([`SLOW_SQL`]) takes about a second instead of
//!   three milliseconds, the database host's load climbs, and the report of
//!   that hour must rank this fingerprint first.
//!
//! The store file is cached next to the build (`--dir` to choose) and reused
//! when it was made with the same parameters. The timings then run through
//! the processor's own store reader (default `[store]` settings), as the HTTP
//! API does, on several hours: the spike hour, and ordinary hours on other
//! days, one of them across a day boundary. Each is printed with its ratio to
//! the bare scans of the same rows measured in the same run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use processor::analysis::report::{self, SuspectKind};
use processor::analysis::spikes::{self, Detection};
use processor::analysis::{Frame, Scope, Source, Window, format_time, request};
use processor::store::bench::BulkLoad;
use processor::store::schema::days_from_civil;
use processor::store::{Store, StoreConfig};

/// Bumped whenever the generated data changes, so a cached file is not reused.
const GENERATOR_VERSION: u32 = 1;
const SECOND: i64 = 1_000_000;
const HOUR: i64 = 3600 * SECOND;
const DAY: i64 = 24 * HOUR;
const DAYS: i64 = 7;
const PROJECT: &str = "shop";

/// The issue's sizes at scale 1.
const REQUESTS: f64 = 1_000_000.0;
const ACTIVITY_ROWS: f64 = 20_000_000.0;
const SQL_ROWS: f64 = 10_000_000.0;
/// pg-watch's pg_stat_activity sampling period.
const SAMPLE_S: i64 = 2;
/// Background backends in every sample (checkpointer and friends).
const BACKGROUND: [&str; 4] = [
    "checkpointer",
    "background writer",
    "walwriter",
    "autovacuum launcher",
];

/// The targets of the issue.
const REPORT_TARGET_S: f64 = 2.0;
const DRILL_TARGET_S: f64 = 0.1;

/// The planted spike: day index, start and end (seconds into that day).
const SPIKE_DAY: i64 = 3;
const SPIKE_FROM_S: i64 = 14 * 3600 + 20 * 60;
const SPIKE_TO_S: i64 = 14 * 3600 + 35 * 60;
/// The statement that turns slow during the spike (template index 1).
const SLOW_SQL: &str =
    "SELECT * FROM reviews WHERE product_id = :id ORDER BY created_at DESC LIMIT 20";
const SLOW_TEMPLATE: usize = 1;
/// The endpoint it slows (index in [`ENDPOINTS`]).
const SLOW_ENDPOINT: usize = 0;

/// A SQL statement as the application sends it, what it usually costs, and
/// the PHP function that runs it.
struct Template {
    sql: &'static str,
    op: &'static str,
    ms: f64,
    caller: &'static str,
}

const fn t(sql: &'static str, op: &'static str, ms: f64, caller: &'static str) -> Template {
    Template {
        sql,
        op,
        ms,
        caller,
    }
}

const TEMPLATES: [Template; 24] = [
    t(
        "SELECT * FROM products WHERE id = :id",
        "query",
        0.8,
        "App\\Catalog\\ProductRepository::find",
    ),
    t(
        SLOW_SQL,
        "query",
        3.0,
        "App\\Catalog\\ReviewRepository::latest",
    ),
    t(
        "SELECT p.* FROM products p JOIN related r ON r.related_id = p.id WHERE r.product_id = :id LIMIT 8",
        "query",
        2.0,
        "App\\Catalog\\ProductRepository::related",
    ),
    t(
        "SELECT qty FROM stock WHERE sku = :sku",
        "query",
        0.5,
        "App\\Stock\\StockService::available",
    ),
    t(
        "SELECT * FROM categories WHERE id = :id",
        "query",
        0.4,
        "App\\Catalog\\CategoryRepository::find",
    ),
    t(
        "SELECT id, name, price FROM products WHERE category_id = :cat ORDER BY rank LIMIT 48 OFFSET :off",
        "query",
        6.0,
        "App\\Catalog\\ProductRepository::byCategory",
    ),
    t(
        "SELECT id FROM products WHERE search_vector @@ plainto_tsquery(:q) LIMIT 100",
        "query",
        18.0,
        "App\\Search\\SearchService::query",
    ),
    t(
        "SELECT * FROM carts WHERE session_id = :sid",
        "query",
        0.6,
        "App\\Cart\\CartRepository::forSession",
    ),
    t(
        "INSERT INTO cart_items (cart_id, product_id, qty) VALUES (:c, :p, :q)",
        "execute",
        1.2,
        "App\\Cart\\CartRepository::add",
    ),
    t(
        "UPDATE carts SET updated_at = now() WHERE id = :id",
        "execute",
        0.9,
        "App\\Cart\\CartRepository::touch",
    ),
    t(
        "SELECT * FROM cart_items WHERE cart_id = :c",
        "query",
        0.7,
        "App\\Cart\\CartRepository::items",
    ),
    t("BEGIN", "begin", 0.1, "App\\Checkout\\OrderService::place"),
    t(
        "INSERT INTO orders (customer_id, total) VALUES (:c, :t) RETURNING id",
        "query",
        2.0,
        "App\\Checkout\\OrderService::place",
    ),
    t(
        "INSERT INTO order_items (order_id, product_id, qty, price) VALUES (:o, :p, :q, :pr)",
        "execute",
        1.0,
        "App\\Checkout\\OrderService::addItem",
    ),
    t(
        "UPDATE stock SET qty = qty - :q WHERE sku = :sku",
        "execute",
        1.5,
        "App\\Stock\\StockService::reserve",
    ),
    t(
        "COMMIT",
        "commit",
        1.0,
        "App\\Checkout\\OrderService::place",
    ),
    t(
        "SELECT * FROM sessions WHERE id = :sid",
        "query",
        0.3,
        "App\\Http\\SessionHandler::read",
    ),
    t(
        "UPDATE sessions SET data = :d, updated_at = now() WHERE id = :sid",
        "execute",
        0.8,
        "App\\Http\\SessionHandler::write",
    ),
    t(
        "SELECT * FROM customers WHERE email = :e",
        "query",
        0.6,
        "App\\Auth\\Login::attempt",
    ),
    t(
        "SELECT * FROM orders WHERE customer_id = :c ORDER BY created_at DESC LIMIT 20",
        "query",
        4.0,
        "App\\Account\\OrderHistory::list",
    ),
    t(
        "SELECT * FROM banners WHERE active AND now() BETWEEN starts_at AND ends_at",
        "query",
        0.9,
        "App\\Home\\Banners::current",
    ),
    t(
        "SELECT id, name, price FROM products WHERE featured ORDER BY rank LIMIT 12",
        "query",
        2.5,
        "App\\Home\\Featured::list",
    ),
    t(
        "SELECT sku, qty FROM stock WHERE sku IN (:s1, :s2, :s3)",
        "query",
        0.8,
        "App\\Stock\\StockService::many",
    ),
    t(
        "SELECT * FROM translations WHERE locale = :l AND key = :k",
        "query",
        0.2,
        "App\\I18n\\Translator::get",
    ),
];

/// An endpoint of the shop: its share of the traffic, its PHP time, its
/// statements (cycled for as many as a request runs) and where its PHP
/// time goes (exclusive shares).
struct Endpoint {
    method: &'static str,
    route: &'static str,
    /// `{id}` is replaced by a number.
    path: &'static str,
    controller: &'static str,
    weight: f64,
    php_ms: f64,
    statements: f64,
    sql: &'static [usize],
    functions: &'static [(&'static str, f64)],
}

const VIEW: (&str, f64) = ("Phalcon\\Mvc\\View::render", 0.4);
const ENDPOINTS: [Endpoint; 10] = [
    Endpoint {
        method: "GET",
        route: "product-show",
        path: "/products/{id}",
        controller: "ProductController::showAction",
        weight: 0.28,
        php_ms: 35.0,
        statements: 12.0,
        sql: &[16, 0, 4, 1, 2, 3, 23, 23, 23, 23, 17],
        functions: &[
            VIEW,
            ("App\\Catalog\\PriceCalculator::apply", 0.35),
            ("App\\Catalog\\ProductPresenter::toArray", 0.25),
        ],
    },
    Endpoint {
        method: "GET",
        route: "search",
        path: "/search?q=[REDACTED]",
        controller: "SearchController::indexAction",
        weight: 0.14,
        php_ms: 70.0,
        statements: 12.0,
        sql: &[16, 6, 0, 0, 0, 0, 0, 0, 0, 0, 23, 17],
        functions: &[
            VIEW,
            ("App\\Search\\Ranker::score", 0.5),
            ("App\\Search\\Highlighter::mark", 0.1),
        ],
    },
    Endpoint {
        method: "GET",
        route: "category-list",
        path: "/c/{id}",
        controller: "CategoryController::listAction",
        weight: 0.16,
        php_ms: 30.0,
        statements: 9.0,
        sql: &[16, 4, 5, 22, 23, 23, 23, 17],
        functions: &[VIEW, ("App\\Catalog\\Facets::build", 0.6)],
    },
    Endpoint {
        method: "POST",
        route: "cart-add",
        path: "/cart/add",
        controller: "CartController::addAction",
        weight: 0.07,
        php_ms: 20.0,
        statements: 7.0,
        sql: &[16, 7, 0, 3, 8, 9, 17],
        functions: &[
            ("App\\Cart\\CartService::add", 0.7),
            ("App\\Http\\Middleware::handle", 0.3),
        ],
    },
    Endpoint {
        method: "GET",
        route: "cart-show",
        path: "/cart",
        controller: "CartController::showAction",
        weight: 0.08,
        php_ms: 18.0,
        statements: 9.0,
        sql: &[16, 7, 10, 0, 0, 0, 22, 17],
        functions: &[VIEW, ("App\\Cart\\Totals::compute", 0.6)],
    },
    Endpoint {
        method: "POST",
        route: "checkout-submit",
        path: "/checkout",
        controller: "CheckoutController::submitAction",
        weight: 0.03,
        php_ms: 90.0,
        statements: 13.0,
        sql: &[16, 7, 10, 11, 12, 13, 13, 13, 14, 14, 14, 15, 17],
        functions: &[
            ("App\\Checkout\\OrderService::place", 0.5),
            ("App\\Payment\\Gateway::authorize", 0.5),
        ],
    },
    Endpoint {
        method: "GET",
        route: "home",
        path: "/",
        controller: "IndexController::indexAction",
        weight: 0.12,
        php_ms: 25.0,
        statements: 11.0,
        sql: &[16, 20, 21, 23, 23, 23, 23, 23, 17],
        functions: &[VIEW, ("App\\Home\\Featured::decorate", 0.6)],
    },
    Endpoint {
        method: "GET",
        route: "stock-status",
        path: "/api/stock-status",
        controller: "StockController::statusAction",
        weight: 0.06,
        php_ms: 8.0,
        statements: 4.0,
        sql: &[22, 22],
        functions: &[("App\\Api\\JsonResponder::send", 1.0)],
    },
    Endpoint {
        method: "POST",
        route: "login",
        path: "/login",
        controller: "AuthController::loginAction",
        weight: 0.03,
        php_ms: 60.0,
        statements: 3.0,
        sql: &[16, 18, 17],
        functions: &[
            ("App\\Auth\\PasswordHasher::verify", 0.9),
            ("App\\Http\\Middleware::handle", 0.1),
        ],
    },
    Endpoint {
        method: "GET",
        route: "account-orders",
        path: "/account/orders",
        controller: "AccountController::ordersAction",
        weight: 0.03,
        php_ms: 30.0,
        statements: 9.0,
        sql: &[16, 19, 0, 0, 0, 0, 0, 17],
        functions: &[VIEW, ("App\\Account\\OrderPresenter::list", 0.6)],
    },
];

/// The leaf of the database driver in every profile: it holds the SQL time.
const DB_FRAME: (&str, &str) = ("Phalcon\\Db\\Adapter\\Pdo::query", "PDOStatement::execute");
const STACK_ROOT: &str = "index.php;Phalcon\\Mvc\\Application::handle";

/// Relative traffic of an hour of the day (UTC): a quiet night, a peak at 14:00.
fn hour_weight(h: i64) -> f64 {
    0.35 + 0.65 * (-((h as f64 - 14.0) / 5.0).powi(2)).exp()
}

/// What a run is asked to do.
struct Args {
    scale: f64,
    dir: PathBuf,
    fresh: bool,
    drill_downs: usize,
    runs: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let default_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("analysis-bench");
    let mut a = Args {
        scale: 1.0,
        dir: default_dir,
        fresh: false,
        drill_downs: 10,
        runs: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--scale" => {
                a.scale = value("--scale")?
                    .parse()
                    .context("--scale is not a number")?
            }
            "--dir" => a.dir = PathBuf::from(value("--dir")?),
            "--fresh" => a.fresh = true,
            "--drill-downs" => {
                a.drill_downs = value("--drill-downs")?
                    .parse()
                    .context("--drill-downs is not a count")?
            }
            "--runs" => a.runs = value("--runs")?.parse().context("--runs is not a count")?,
            "-h" | "--help" => {
                println!(
                    "analysis_bench [--scale F (1.0)] [--dir DIR] [--fresh] [--drill-downs N (10)] [--runs N (3)]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    ensure!(
        a.scale > 0.0 && a.scale <= 20.0,
        "--scale {} is outside 0 .. 20",
        a.scale
    );
    ensure!(a.runs >= 1, "--runs must be at least 1");
    Ok(a)
}

/// The sizes a scale gives.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    requests_per_day: i64,
    /// Backends in every pg_activity sample (background ones included).
    backends: i64,
}

impl Sizes {
    fn of(scale: f64) -> Sizes {
        let per_day = (REQUESTS * scale / DAYS as f64).round() as i64;
        let samples_per_day = (DAY / (SAMPLE_S * SECOND)) as f64;
        let backends = (ACTIVITY_ROWS * scale / DAYS as f64 / samples_per_day).ceil() as i64;
        Sizes {
            requests_per_day: per_day.max(100),
            backends: backends.max(BACKGROUND.len() as i64 + 4),
        }
    }

    fn workers(&self) -> i64 {
        self.backends - BACKGROUND.len() as i64
    }
}

/// The first day of the data: 2026-11-20 (UTC).
fn first_day() -> i64 {
    days_from_civil(2026, 11, 20)
}

fn spike_window() -> Window {
    let day0 = (first_day() + SPIKE_DAY) * DAY;
    Window {
        from: day0 + SPIKE_FROM_S * SECOND,
        to: day0 + SPIKE_TO_S * SECOND,
    }
}

fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The static tables of the model (templates, endpoints, their statement
/// lists and profile stacks) and the hash macros, on the loading connection.
fn model_sql() -> String {
    let tpl: Vec<String> = TEMPLATES
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let fp = bitville_schemas::fingerprint::normalize(t.sql);
            format!(
                "({i}, {}, {}, {}, {}, {})",
                sql_text(t.sql),
                sql_text(&fp),
                sql_text(t.op),
                t.ms,
                sql_text(t.caller)
            )
        })
        .collect();
    let eps: Vec<String> = ENDPOINTS
        .iter()
        .enumerate()
        .map(|(i, e)| {
            format!(
                "({i}, {}, {}, {}, {}, {}, {}, {}, {})",
                sql_text(e.method),
                sql_text(e.route),
                sql_text(e.path),
                sql_text(e.controller),
                e.php_ms,
                e.statements,
                e.sql.len(),
                e.functions.len() + 1
            )
        })
        .collect();
    let ep_stmt: Vec<String> = ENDPOINTS
        .iter()
        .enumerate()
        .flat_map(|(i, e)| {
            e.sql
                .iter()
                .enumerate()
                .map(move |(j, t)| format!("({i}, {j}, {t})"))
        })
        .collect();
    let ep_fn: Vec<String> = ENDPOINTS
        .iter()
        .enumerate()
        .flat_map(|(i, e)| {
            let base = format!("{STACK_ROOT};{}", e.controller);
            let mut rows: Vec<String> = e
                .functions
                .iter()
                .enumerate()
                .map(|(j, (f, share))| {
                    format!(
                        "({i}, {j}, {}, {}, {}, 4, {share}, false)",
                        sql_text(&format!("{base};{f}")),
                        sql_text(f),
                        sql_text(e.controller)
                    )
                })
                .collect();
            rows.push(format!(
                "({i}, {}, {}, {}, {}, 5, 0, true)",
                e.functions.len(),
                sql_text(&format!("{base};{};{}", DB_FRAME.0, DB_FRAME.1)),
                sql_text(DB_FRAME.1),
                sql_text(DB_FRAME.0)
            ));
            rows
        })
        .collect();
    format!(
        "CREATE OR REPLACE TEMP MACRO bench_u(k, salt) AS (hash(k, salt) % 1000000007)::DOUBLE / 1000000007.0;
         CREATE OR REPLACE TEMP MACRO bench_uuid(k, salt) AS printf('%016x%016x',
             (hash(k, salt) & 18446744073709490175::UBIGINT) | 16384::UBIGINT,
             (hash(k, salt, 1) & 4611686018427387903::UBIGINT) | 9223372036854775808::UBIGINT)::UUID;
         CREATE OR REPLACE TEMP TABLE tpl (tpl INTEGER, sql VARCHAR, fingerprint VARCHAR, op VARCHAR, ms DOUBLE, caller VARCHAR);
         INSERT INTO tpl VALUES {};
         CREATE OR REPLACE TEMP TABLE eps (ep INTEGER, method VARCHAR, route VARCHAR, path VARCHAR, controller VARCHAR,
             php_ms DOUBLE, statements DOUBLE, n_sql INTEGER, n_fn INTEGER);
         INSERT INTO eps VALUES {};
         CREATE OR REPLACE TEMP TABLE ep_stmt (ep INTEGER, j INTEGER, tpl INTEGER);
         INSERT INTO ep_stmt VALUES {};
         CREATE OR REPLACE TEMP TABLE ep_fn (ep INTEGER, j INTEGER, stack VARCHAR, function VARCHAR, caller VARCHAR,
             depth INTEGER, share DOUBLE, db BOOLEAN);
         INSERT INTO ep_fn VALUES {};",
        tpl.join(", "),
        eps.join(", "),
        ep_stmt.join(", "),
        ep_fn.join(", ")
    )
}

/// The endpoint of a request from a uniform draw, by cumulative weight.
fn endpoint_case(u: &str) -> String {
    let total: f64 = ENDPOINTS.iter().map(|e| e.weight).sum();
    let mut acc = 0.0;
    let mut sql = String::from("CASE");
    for (i, e) in ENDPOINTS.iter().enumerate().take(ENDPOINTS.len() - 1) {
        acc += e.weight / total;
        sql.push_str(&format!(" WHEN {u} < {acc} THEN {i}"));
    }
    sql.push_str(&format!(" ELSE {} END", ENDPOINTS.len() - 1));
    sql
}

/// The SQL that fills one day schema. `i` is the day's index (0..7), which
/// keeps keys and `seq` numbers apart between days.
fn day_sql(schema: &str, i: i64, day: i64, sizes: Sizes) -> String {
    let d = day * DAY;
    let weights: Vec<f64> = (0..24).map(hour_weight).collect();
    let sum: f64 = weights.iter().sum();
    let mut n0 = 0i64;
    let mut hours = Vec::new();
    for (h, w) in weights.iter().enumerate() {
        let c = ((sizes.requests_per_day as f64) * w / sum).round() as i64;
        hours.push(format!("({h}, {c}, {n0})"));
        n0 += c;
    }
    let spike = spike_window();
    let (s0, s1) = (spike.from, spike.to);
    let key = i * 100_000_000;
    let seq = 1 + i * 100_000_000;
    let (w, k) = (sizes.workers(), sizes.backends);
    let nbg = BACKGROUND.len();
    let samples = DAY / (SAMPLE_S * SECOND);
    let step = SAMPLE_S * SECOND;
    let background: Vec<String> = BACKGROUND
        .iter()
        .enumerate()
        .map(|(j, b)| format!("({j}, '{b}')"))
        .collect();
    let ep_case = endpoint_case("bench_u(key, 2)");
    format!(
        "
CREATE OR REPLACE TEMP TABLE hours (h BIGINT, c BIGINT, n0 BIGINT);
INSERT INTO hours VALUES {hours};

-- Requests before their SQL: endpoint, worker, start, PHP time, statement count.
CREATE OR REPLACE TEMP TABLE r0 AS
SELECT n, key, start_us, ep, {nbg} + n % {w} AS backend,
       e.php_ms * (0.4 + 1.2 * bench_u(key, 3)) * CASE WHEN bench_u(key, 4) < 0.01 THEN 8 ELSE 1 END AS php_ms,
       greatest(1, round(e.statements * (0.6 + 0.9 * bench_u(key, 5))))::INTEGER AS k, e.n_sql
FROM (
  SELECT n, key, {d} + h * {HOUR} + ((i + bench_u(key, 1)) * {HOUR} / c)::BIGINT AS start_us, {ep_case} AS ep
  FROM (SELECT h, c, n0 + i AS n, {key} + n0 + i AS key, i FROM (SELECT h, c, n0, unnest(range(c)) AS i FROM hours))
) JOIN eps e USING (ep);

-- Statement durations; the planted spike slows the reviews query of the product page.
CREATE OR REPLACE TEMP TABLE s0 AS
SELECT r.n, r.i, es.tpl,
  CASE WHEN es.tpl = {SLOW_TEMPLATE} AND r.ep = {SLOW_ENDPOINT} AND r.start_us >= {s0} AND r.start_us < {s1}
       THEN 700 + 900 * bench_u(r.key * 64 + r.i, 7)
       ELSE t.ms * (0.3 + 1.4 * bench_u(r.key * 64 + r.i, 7)) * CASE WHEN bench_u(r.key * 64 + r.i, 8) < 0.0005 THEN 300 ELSE 1 END
  END AS dur_ms
FROM (SELECT n, key, ep, start_us, n_sql, unnest(range(k)) AS i FROM r0) r
JOIN ep_stmt es ON es.ep = r.ep AND es.j = r.i % r.n_sql
JOIN tpl t ON t.tpl = es.tpl;

-- Requests complete: duration is PHP time plus SQL time; ts is the end.
-- Requests that would end after midnight belong to the next day: left out.
CREATE OR REPLACE TEMP TABLE r1 AS
SELECT r0.*, coalesce(a.sql_ms, 0) AS sql_ms, php_ms + coalesce(a.sql_ms, 0) AS dur_ms,
       start_us + ((php_ms + coalesce(a.sql_ms, 0)) * 1000)::BIGINT AS end_us,
       {seq} + n AS seq, bench_uuid(key, 8) AS cid, bench_uuid(key, 9) AS id,
       CASE WHEN backend % 2 = 0 THEN 'web-1' ELSE 'web-2' END AS host
FROM r0 LEFT JOIN (SELECT n, sum(dur_ms) AS sql_ms FROM s0 GROUP BY n) a USING (n)
WHERE start_us + ((php_ms + coalesce(a.sql_ms, 0)) * 1000)::BIGINT < {d} + {DAY};

-- Statements placed in time: PHP time spread between them.
CREATE OR REPLACE TEMP TABLE s2 AS
SELECT *, req_start_us + (start_ms * 1000)::BIGINT AS st_us, req_start_us + ((start_ms + dur_ms) * 1000)::BIGINT AS en_us
FROM (
  SELECT s.n, s.i, s.tpl, s.dur_ms, r.seq, r.cid, r.host, r.backend, r.end_us, r.start_us AS req_start_us, r.key,
         r.php_ms * (s.i + 1) / (r.k + 1) + coalesce(sum(s.dur_ms) OVER (PARTITION BY s.n ORDER BY s.i
             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS start_ms
  FROM s0 s JOIN r1 r USING (n)
);

INSERT INTO {schema}.requests BY NAME
SELECT seq, '{PROJECT}' AS project, host, make_timestamp(end_us) AS ts, id, cid AS correlation_id,
       make_timestamp(start_us) AS started_at, 'full' AS record_type, 1.0 AS sampling_weight, dur_ms AS duration_ms,
       e.method, replace(e.path, '{{id}}', (hash(key, 6) % 5000)::VARCHAR) AS url,
       CASE WHEN bench_u(key, 10) < 0.003 THEN 500 WHEN e.method = 'POST' THEN 302 ELSE 200 END AS status,
       e.route, split_part(e.controller, '::', 1) AS controller, split_part(e.controller, '::', 2) AS action,
       '10.1.' || (hash(key, 11) % 250)::VARCHAR || '.' || (hash(key, 12) % 250)::VARCHAR AS client_ip,
       'fpm-fcgi' AS sapi, '8.2.26' AS php_version, 20000 + backend AS pid, '0.1.0' AS agent_version,
       0.0 AS threshold_ms, (2000000 + hash(key, 13) % 6000000)::BIGINT AS memory_usage_bytes,
       (4000000 + hash(key, 14) % 12000000)::BIGINT AS memory_peak_bytes,
       r1.php_ms * 0.8 AS cpu_user_ms, r1.php_ms * 0.05 AS cpu_system_ms,
       CASE WHEN bench_u(key, 10) < 0.003 THEN 'Uncaught PDOException: SQLSTATE[40P01] deadlock detected' END AS error_message,
       k AS sql_captured, k AS sql_total_count, 0 AS sql_dropped, sql_ms AS sql_total_ms,
       'excimer' AS profiler, 10.0 AS profile_period_ms, round(dur_ms / 10)::BIGINT AS profile_total_samples,
       e.n_fn AS profile_items, 0 AS profile_dropped, 0 AS profile_dropped_samples,
       40 + 30 * bench_u(key, 15) AS agent_overhead_us, 0 AS agent_dropped_records, false AS trimmed
FROM r1 JOIN eps e USING (ep) ORDER BY end_us;

INSERT INTO {schema}.request_sql BY NAME
SELECT seq, '{PROJECT}' AS project, host, make_timestamp(end_us) AS ts, cid AS correlation_id, i AS idx,
       make_timestamp(st_us) AS started_at, start_ms, dur_ms AS duration_ms, t.sql, t.fingerprint, t.op,
       'phalcon' AS source, 'ok' AS status,
       CASE WHEN t.op = 'query' THEN (hash(key, i, 16) % 40)::BIGINT ELSE 1 END AS rows,
       t.caller, '/srv/shop/src/' || replace(split_part(t.caller, '::', 1), '\\', '/') || '.php' AS caller_file,
       (20 + hash(t.tpl) % 200)::BIGINT AS caller_line
FROM s2 JOIN tpl t USING (tpl) ORDER BY end_us, i;

INSERT INTO {schema}.request_profile BY NAME
SELECT seq, '{PROJECT}' AS project, host, make_timestamp(end_us) AS ts, cid AS correlation_id, f.j AS idx,
       'excimer' AS profiler, f.stack, f.depth, f.function, f.caller,
       round(x / 10000)::BIGINT AS samples, x AS wall_us
FROM (SELECT r.*, f.* EXCLUDE (ep), CASE WHEN f.db THEN r.sql_ms ELSE r.php_ms * f.share END * 1000 AS x
      FROM r1 r JOIN ep_fn f USING (ep)) f
ORDER BY end_us, idx;

-- pg_activity: every backend every {SAMPLE_S} s. A PHP worker's backend shows its running
-- statement (active), or idle with the last request's application_name.
CREATE OR REPLACE TEMP TABLE act AS
SELECT DISTINCT ON (g, backend) g, backend, tpl, st_us, dur_ms
FROM (SELECT *, unnest(range(((st_us - {d} + {step} - 1) // {step}), ((en_us - {d}) // {step}) + 1)) AS g FROM s2)
WHERE g < {samples}
ORDER BY g, backend, st_us DESC;

CREATE OR REPLACE TEMP TABLE grid AS
SELECT g, b, {d} + g * {step} AS t FROM range({samples}) a(g), range({k}) c(b);

INSERT INTO {schema}.pg_activity BY NAME
SELECT {seq} + 20000000 + gr.g AS seq, '{PROJECT}' AS project, 'db-1' AS host, make_timestamp(gr.t) AS ts,
       150010 AS server_version_num, 1.5 + bench_u(gr.g, 20) AS sample_ms,
       CASE WHEN gr.b < {nbg} THEN 100 + gr.b ELSE 31000 + gr.b END AS pid,
       CASE WHEN gr.b >= {nbg} THEN 16384 END AS datid, CASE WHEN gr.b >= {nbg} THEN 'shop' END AS datname,
       CASE WHEN gr.b >= {nbg} THEN 16385 END AS usesysid, CASE WHEN gr.b >= {nbg} THEN 'shop' END AS usename,
       CASE WHEN gr.b >= {nbg} THEN coalesce('bitville:' || r.cid::VARCHAR, '') ELSE '' END AS application_name,
       r.cid AS correlation_id,
       CASE WHEN gr.b >= {nbg} THEN CASE WHEN gr.b % 2 = 0 THEN '10.0.0.11' ELSE '10.0.0.12' END END AS client_addr,
       CASE WHEN gr.b >= {nbg} THEN 40000 + gr.b END AS client_port,
       make_timestamp({d} - 3600000000) AS backend_start,
       CASE WHEN a.tpl IS NOT NULL THEN make_timestamp(a.st_us) END AS xact_start,
       make_timestamp(coalesce(a.st_us, r.end_us)) AS query_start,
       make_timestamp(coalesce(a.st_us, r.end_us)) AS state_change,
       CASE WHEN a.tpl = {SLOW_TEMPLATE} AND a.dur_ms > 500 THEN 'IO'
            WHEN a.tpl IS NOT NULL AND bench_u(gr.g * 1000 + gr.b, 21) < 0.2 THEN 'IO'
            WHEN a.tpl IS NULL AND gr.b >= {nbg} THEN 'Client' END AS wait_event_type,
       CASE WHEN a.tpl = {SLOW_TEMPLATE} AND a.dur_ms > 500 THEN 'DataFileRead'
            WHEN a.tpl IS NOT NULL AND bench_u(gr.g * 1000 + gr.b, 21) < 0.2 THEN 'DataFileRead'
            WHEN a.tpl IS NULL AND gr.b >= {nbg} THEN 'ClientRead'
            WHEN gr.b < {nbg} THEN 'BgWriterHibernate' END AS wait_event,
       CASE WHEN a.tpl IS NOT NULL THEN 'active' WHEN gr.b >= {nbg} THEN 'idle' END AS state,
       CASE WHEN a.tpl IS NOT NULL THEN (hash(a.tpl) >> 1)::BIGINT END AS query_id,
       t.fingerprint AS query, t.fingerprint AS fingerprint,
       coalesce(bg.name, 'client backend') AS backend_type,
       CASE WHEN a.tpl IS NOT NULL THEN (gr.t - a.st_us) / 1000.0 END AS query_ms,
       CASE WHEN a.tpl IS NOT NULL THEN (gr.t - a.st_us) / 1000.0 END AS xact_ms,
       gr.b AS backend_idx
FROM grid gr
ASOF LEFT JOIN (SELECT backend, start_us, end_us, cid FROM r1) r ON gr.b = r.backend AND gr.t >= r.start_us
LEFT JOIN act a ON a.g = gr.g AND a.backend = gr.b
LEFT JOIN tpl t ON t.tpl = a.tpl
LEFT JOIN (VALUES {background}) bg(b, name) ON bg.b = gr.b
ORDER BY gr.g, gr.b;

-- Host metrics every 10 s; the database host's load climbs during the planted spike.
INSERT INTO {schema}.host_metrics BY NAME
SELECT {seq} + 30000000 + g * 3 + hi AS seq, '{PROJECT}' AS project, host, make_timestamp(t) AS ts, source,
       10.0 AS interval_s, ncpu, load1, load1 * 0.8 AS load5, load1 * 0.6 AS load15,
       least(95, load1 / ncpu * 60) AS cpu_user_pct, least(95, load1 / ncpu * 60) * 0.15 AS cpu_system_pct,
       CASE WHEN extra > 0 AND hi = 2 THEN 25 * extra / 14 ELSE 0.5 + bench_u(g * 3 + hi, 33) END AS cpu_iowait_pct,
       0.0 AS cpu_steal_pct, greatest(0, 100 - least(95, load1 / ncpu * 60) * 1.15) AS cpu_idle_pct,
       ncpu * 4294967296 AS mem_total_bytes, ncpu * 2147483648 AS mem_available_bytes, ncpu * 2147483648 AS mem_used_bytes,
       8589934592 AS swap_total_bytes, 0 AS swap_used_bytes, 0 AS swap_in_bytes, 0 AS swap_out_bytes,
       (hash(g, hi, 34) % 50000000)::BIGINT AS disk_read_bytes, (hash(g, hi, 35) % 80000000)::BIGINT AS disk_write_bytes,
       (hash(g, hi, 36) % 30000000)::BIGINT AS net_rx_bytes, (hash(g, hi, 37) % 90000000)::BIGINT AS net_tx_bytes,
       round(load1)::BIGINT AS procs_running, 0 AS procs_blocked
FROM (
  SELECT *, ncpu * 0.3 * (0.35 + 0.65 * exp(-pow((g * 10 / 3600.0 - 14) / 5, 2))) * (0.85 + 0.3 * bench_u(g * 3 + hi, 31))
            + extra * CASE WHEN hi = 2 THEN 1 ELSE 0.15 END AS load1
  FROM (
    SELECT g, hi, host, source, ncpu, {d} + g * 10000000 + hi * 1000 AS t,
      CASE WHEN {d} + g * 10000000 >= {s0} AND {d} + g * 10000000 < {s1}
             THEN 14 * (1 - exp(-({d} + g * 10000000 - {s0}) / 60000000.0))
           WHEN {d} + g * 10000000 >= {s1} AND {d} + g * 10000000 < {s1} + 600000000
             THEN 14 * (1 - exp(-({s1} - {s0}) / 60000000.0)) * exp(-({d} + g * 10000000 - {s1}) / 60000000.0)
           ELSE 0 END AS extra
    FROM range(8640) a(g), (VALUES (0, 'web-1', 'shipper', 8), (1, 'web-2', 'shipper', 8), (2, 'db-1', 'pg-watch', 16)) h(hi, host, source, ncpu)
  )
) ORDER BY t;

-- pg_stat_statements deltas every minute; pg-watch sends the text the first time it sees a queryid.
INSERT INTO {schema}.pg_statements BY NAME
SELECT {seq} + 40000000 + m AS seq, '{PROJECT}' AS project, 'db-1' AS host, make_timestamp({d} + (m + 1) * 60000000) AS ts,
       150010 AS server_version_num, '1.10' AS extension_version,
       make_timestamp({d} + m * 60000000) AS interval_start, make_timestamp({d} + (m + 1) * 60000000) AS interval_end,
       (hash(tpl) >> 1)::BIGINT AS queryid, 16385 AS userid, 16384 AS dbid, true AS toplevel,
       CASE WHEN m = first_m THEN fingerprint END AS query, CASE WHEN m = first_m THEN fingerprint END AS fingerprint,
       calls, total_ms AS total_exec_time_ms, calls * 3 AS rows, calls AS plans, calls * 0.02 AS total_plan_time_ms,
       calls * 12 AS shared_blks_hit, (total_ms / 5)::BIGINT AS shared_blks_read, 0 AS shared_blks_dirtied, 0 AS shared_blks_written,
       0 AS temp_blks_read, 0 AS temp_blks_written, total_ms * 0.1 AS blk_read_time_ms, 0.0 AS blk_write_time_ms,
       0 AS wal_records, 0 AS wal_fpi, 0 AS wal_bytes, 0 AS evicted,
       row_number() OVER (PARTITION BY m ORDER BY tpl) - 1 AS entry_idx
FROM (
  SELECT *, min(m) OVER (PARTITION BY tpl) AS first_m
  FROM (SELECT (en_us - {d}) // 60000000 AS m, tpl, count(*) AS calls, sum(dur_ms) * 0.95 AS total_ms FROM s2 GROUP BY ALL)
  JOIN tpl USING (tpl)
  WHERE m < 1439
) ORDER BY m, entry_idx;

-- The PostgreSQL log: slow statements (500 ms or more), some temp files, checkpoints every 5 minutes.
INSERT INTO {schema}.pg_log BY NAME
SELECT {seq} + 50000000 + row_number() OVER (ORDER BY t, pid) AS seq, '{PROJECT}' AS project, 'db-1' AS host,
       make_timestamp(t) AS ts, make_timestamp(t) AS log_time, 'stderr' AS format, class, 'LOG' AS severity, '00000' AS sqlstate,
       pid, application_name, correlation_id, message, duration_ms, query, fingerprint, temp_file_bytes,
       details::JSON AS details, 'postgresql-' || strftime(make_timestamp(t), '%a') || '.log' AS source_file,
       (hash(t) % 100000000)::BIGINT AS source_offset, false AS lock_wait
FROM (
  SELECT en_us AS t, 31000 + backend AS pid, 'slow_statement' AS class, 'bitville:' || cid::VARCHAR AS application_name,
         cid AS correlation_id, 'duration: ' || round(dur_ms, 3) || ' ms  statement: ' || t.fingerprint AS message,
         dur_ms AS duration_ms, t.fingerprint AS query, t.fingerprint, NULL::BIGINT AS temp_file_bytes, NULL AS details
  FROM s2 JOIN tpl t USING (tpl) WHERE dur_ms >= 500
  UNION ALL
  SELECT en_us, 31000 + backend, 'temp_file', 'bitville:' || cid::VARCHAR, cid,
         'temporary file: path \"base/pgsql_tmp/pgsql_tmp' || n || '.0\", size 8388608', NULL, t.fingerprint, t.fingerprint, 8388608, NULL
  FROM s2 JOIN tpl t USING (tpl) WHERE tpl = 6 AND bench_u(key * 64 + i, 40) < 0.02
  UNION ALL
  SELECT {d} + m * 300000000 + 30000000, 90, 'checkpoint', '', NULL, 'checkpoint complete: wrote ' || (hash(m, 41) % 5000) || ' buffers',
         NULL, NULL, NULL, NULL, '{{\"buffers_written\": ' || (hash(m, 41) % 5000) || '}}'
  FROM range(288) c(m)
);

-- One records row per record (envelope only: the raw JSON is a stub here) and its dedupe id.
INSERT INTO {schema}.records BY NAME
SELECT seq, '{PROJECT}' AS project, host, ts, coalesce(id, bench_uuid(seq, 50)) AS id, kind,
       ts + INTERVAL 2 SECOND AS ingested_at, ('{{\"v\":1,\"kind\":\"' || kind || '\",\"bench\":true}}')::JSON AS raw
FROM (
  SELECT seq, host, ts, id, 'request' AS kind FROM {schema}.requests
  UNION ALL SELECT seq, any_value(host), any_value(ts), NULL, 'pg_activity' FROM {schema}.pg_activity GROUP BY seq
  UNION ALL SELECT seq, host, ts, NULL, 'host_metrics' FROM {schema}.host_metrics
  UNION ALL SELECT seq, any_value(host), any_value(ts), NULL, 'pg_statements' FROM {schema}.pg_statements GROUP BY seq
  UNION ALL SELECT seq, host, ts, NULL, 'pg_log' FROM {schema}.pg_log
) ORDER BY ts, seq;
",
        hours = hours.join(", "),
        background = background.join(", "),
    )
}

/// Counts of the generated rows, summed over the day schemas.
fn counts(load: &BulkLoad) -> anyhow::Result<Vec<(&'static str, i64)>> {
    let mut out = Vec::new();
    for table in [
        "requests",
        "request_sql",
        "request_profile",
        "pg_activity",
        "pg_statements",
        "pg_log",
        "host_metrics",
        "records",
    ] {
        out.push((
            table,
            load.query_i64(&format!("SELECT count(*) FROM main.{table}"))?,
        ));
    }
    Ok(out)
}

fn params_key(scale: f64) -> String {
    format!(
        "generator={GENERATOR_VERSION} scale={scale} days={DAYS} first_day={}",
        first_day()
    )
}

/// Makes the store file, or reuses it when it was made with the same parameters.
fn ensure_store(args: &Args) -> anyhow::Result<PathBuf> {
    let path = args
        .dir
        .join(format!("analysis-bench-scale{}.duckdb", args.scale));
    let key = params_key(args.scale);
    let config = StoreConfig {
        path: path.clone(),
        memory_limit: "6GB".into(),
        threads: 2,
        ..StoreConfig::default()
    };
    if path.exists() && !args.fresh {
        let load = BulkLoad::open(&config)
            .with_context(|| format!("open cached store {}", path.display()))?;
        if load.meta("bench_params")?.as_deref() == Some(key.as_str()) {
            println!("reusing {} ({key})", path.display());
            return Ok(path);
        }
        println!(
            "{} was made with other parameters or not finished: generating again",
            path.display()
        );
    }
    for p in [path.clone(), wal_path(&path)] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("remove old store {}", p.display())),
        }
    }
    let sizes = Sizes::of(args.scale);
    println!(
        "generating {} ({key}): {} requests a day, {} backends per pg_activity sample",
        path.display(),
        sizes.requests_per_day,
        sizes.backends
    );
    let started = Instant::now();
    let mut load =
        BulkLoad::open(&config).with_context(|| format!("create store {}", path.display()))?;
    load.execute("model tables", &model_sql())?;
    for i in 0..DAYS {
        let day = first_day() + i;
        let t0 = Instant::now();
        let schema = load.ensure_day(day)?;
        load.execute(
            "fill day",
            &format!("BEGIN; {} COMMIT;", day_sql(&schema, i, day, sizes)),
        )
        .with_context(|| format!("fill {schema}"))?;
        println!("  {schema} filled in {:.1} s", t0.elapsed().as_secs_f64());
    }
    load.execute("checkpoint", "CHECKPOINT")?;
    let counts = counts(&load)?;
    for (table, n) in &counts {
        println!("  {table:<16} {n:>12} rows");
    }
    let get = |name: &str| counts.iter().find(|(t, _)| *t == name).map_or(0, |c| c.1) as f64;
    ensure!(
        get("requests") >= 0.99 * REQUESTS * args.scale,
        "too few requests generated"
    );
    ensure!(
        get("request_sql") >= SQL_ROWS * args.scale,
        "too few SQL rows generated"
    );
    ensure!(
        get("pg_activity") >= ACTIVITY_ROWS * args.scale,
        "too few pg_activity rows generated"
    );
    load.set_meta("bench_params", &key)?;
    load.execute("checkpoint", "CHECKPOINT")?;
    drop(load);
    println!(
        "generated in {:.0} s, {:.0} MiB",
        started.elapsed().as_secs_f64(),
        processor::store::file_bytes(&path) as f64 / (1 << 20) as f64
    );
    Ok(path)
}

fn wal_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".wal");
    PathBuf::from(s)
}

/// Times of repeated runs of one operation.
struct Timing {
    runs: Vec<f64>,
}

impl Timing {
    fn max(&self) -> f64 {
        self.runs.iter().copied().fold(0.0, f64::max)
    }
    fn median(&self) -> f64 {
        let mut v = self.runs.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
}

fn time<T>(runs: usize, mut f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<(T, Timing)> {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let t0 = Instant::now();
        last = Some(f()?);
        times.push(t0.elapsed().as_secs_f64());
    }
    let value = last.context("no run")?;
    Ok((value, Timing { runs: times }))
}

/// The bare scans the report's reads are measured against: a count and a
/// sum over the frame's rows of the three big tables.
fn bare_scans(src: &dyn Source, frame: &Frame, runs: usize) -> anyhow::Result<Timing> {
    let range = Window {
        from: frame.baseline.from,
        to: frame.window.to,
    };
    let f = range.filter("ts");
    let sqls = [
        format!("SELECT count(*), sum(duration_ms) FROM requests WHERE {f}"),
        format!("SELECT count(*), sum(duration_ms) FROM request_sql WHERE {f}"),
        format!("SELECT count(*), sum(query_ms) FROM pg_activity WHERE {f}"),
    ];
    let (_, t) = time(runs, || {
        for sql in &sqls {
            src.rows(sql)?;
        }
        Ok(())
    })?;
    Ok(t)
}

struct Line {
    hour: String,
    what: String,
    timing: Timing,
    baseline: f64,
    target: Option<f64>,
}

fn print_line(l: &Line) {
    let verdict = match l.target {
        Some(t) if l.timing.max() < t => format!("PASS (< {:.0} ms)", t * 1000.0),
        Some(t) => format!("MISS (< {:.0} ms)", t * 1000.0),
        None => String::new(),
    };
    println!(
        "{:<24} {:<34} {:>4} {:>9.1} {:>9.1} {:>9.1} {:>7.1} {}",
        l.hour,
        l.what,
        l.timing.runs.len(),
        l.timing.runs[0] * 1000.0,
        l.timing.median() * 1000.0,
        l.timing.max() * 1000.0,
        l.timing.median() / l.baseline.max(1e-9),
        verdict
    );
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let path = ensure_store(&args)?;

    // The processor's own store with its default [store] settings, read as the API reads it.
    let config = StoreConfig {
        path: path.clone(),
        ..StoreConfig::default()
    };
    let store = Store::open(&config).with_context(|| format!("open store {}", path.display()))?;
    let reader = store.reader()?;
    let src: &dyn Source = &reader;
    let scope = Scope::Project(PROJECT.to_owned());
    println!(
        "store {}: {:.0} MiB; [store] memory_limit {}, threads {}; load average {}",
        path.display(),
        processor::store::file_bytes(&path) as f64 / (1 << 20) as f64,
        config.memory_limit,
        config.threads,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    let spike = spike_window();
    let spike_hour = spike.from - spike.from % HOUR;
    let d0 = first_day() * DAY;
    let hours: Vec<(i64, &str)> = vec![
        (spike_hour, "spike"),
        (d0 + DAY, "00:00, across days"),
        (d0 + 2 * DAY + 9 * HOUR, "morning"),
        (d0 + 5 * DAY + 18 * HOUR, "evening"),
        (d0 + 6 * DAY + 23 * HOUR, "last hour"),
    ];
    println!(
        "\n{:<24} {:<34} {:>4} {:>9} {:>9} {:>9} {:>7} verdict (on the slowest run)",
        "hour (UTC)", "operation", "runs", "first ms", "median ms", "max ms", "x bare"
    );
    let mut lines = Vec::new();
    let mut misses = 0;
    for (hour_from, label) in &hours {
        let window = Window::new(*hour_from, hour_from + HOUR)?;
        let frame = Frame::before(window);
        let name = format!("{} {label}", &format_time(*hour_from)[5..13]);
        let bare = bare_scans(src, &frame, args.runs)?;
        let base = bare.median();
        let mut push = |what: String, timing: Timing, target: Option<f64>| {
            let l = Line {
                hour: name.clone(),
                what,
                timing,
                baseline: base,
                target,
            };
            print_line(&l);
            if l.target.is_some_and(|t| l.timing.max() >= t) {
                misses += 1;
            }
            lines.push(l);
        };
        push(
            "bare scans, 3 tables x 2 h".into(),
            Timing {
                runs: bare.runs.clone(),
            },
            None,
        );

        let day_from = hour_from - hour_from % DAY;
        let (found, t) = time(args.runs, || {
            Ok(spikes::find(
                src,
                &scope,
                Window::new(day_from, day_from + DAY)?,
                &Detection::default(),
            )?)
        })?;
        push(
            format!("spike detection, the day ({} found)", found.len()),
            t,
            None,
        );
        if *label == "spike" {
            let hit = found
                .iter()
                .any(|s| s.host == "db-1" && s.start_us < spike.to && s.end_us > spike.from);
            ensure!(
                hit,
                "spike detection missed the planted spike on db-1: {found:?}"
            );
        }

        let (rep, t) = time(args.runs, || Ok(report::report(src, &scope, &frame)?))?;
        push(
            format!("spike report ({:.0} requests)", rep.totals.requests),
            t,
            Some(REPORT_TARGET_S),
        );
        if *label == "spike" {
            let first = rep
                .suspects
                .first()
                .context("the spike report has no suspects")?;
            let expected = bitville_schemas::fingerprint::normalize(SLOW_SQL);
            ensure!(
                first.kind == SuspectKind::SqlFingerprint && first.name == expected,
                "the planted cause is not ranked first: first is {:?} {:?} (share {})",
                first.kind,
                first.name,
                first.share
            );
            println!(
                "{:<24} planted cause ranked first: {} {:?}, share {:.2}",
                "",
                first.kind.label(),
                first.name,
                first.share
            );
        }

        // Drill-downs: random requests of the hour, and its slowest one.
        let ids = src.rows(&format!(
            "(SELECT correlation_id FROM requests WHERE {f} ORDER BY duration_ms DESC LIMIT 1) UNION ALL \
             (SELECT correlation_id FROM requests WHERE {f} ORDER BY hash(seq) LIMIT {n})",
            f = window.filter("ts"),
            n = args.drill_downs
        ))?;
        let mut all = Vec::new();
        for (k, id) in ids
            .rows
            .iter()
            .filter_map(|r| r.first().cloned().flatten())
            .enumerate()
        {
            let (detail, t) = time(args.runs, || Ok(request::detail(src, &scope, &id)?))?;
            let captured = detail
                .request
                .get("sql_total_count")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(-1);
            ensure!(
                detail.sql.len() as i64 == captured,
                "drill-down {id}: {} statements, the request says {captured}",
                detail.sql.len()
            );
            ensure!(
                !detail.profile.folded.is_empty(),
                "drill-down {id}: no profile"
            );
            if k == 0 && *label == "spike" {
                ensure!(
                    !detail.activity.is_empty(),
                    "drill-down {id}: the spike's slowest request has no pg_activity samples"
                );
            }
            all.extend(t.runs);
        }
        push(
            format!("request drill-down ({} ids)", ids.rows.len()),
            Timing { runs: all },
            Some(DRILL_TARGET_S),
        );
    }
    drop(reader);
    tokio::runtime::Builder::new_current_thread()
        .build()?
        .block_on(store.shutdown())?;
    println!(
        "\n{} of {} timed operations missed their target",
        misses,
        lines.iter().filter(|l| l.target.is_some()).count()
    );
    Ok(())
}
