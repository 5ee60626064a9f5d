//! Real spikes with known causes: the proof that the spike report names the
//! cause, first overall, on the window that detection found.
//!
//! One stack serves every scenario (see `scenario/mod.rs`): PostgreSQL,
//! the PHP application under php-fpm and nginx with the agent, its upstream
//! services, the shipper tailing the agent's spool, pg-watch sampling the
//! cluster and tailing its logs, and the processor, all real binaries on
//! loopback. The agent runs with the settings a user gets by default
//! (`threshold_ms = 500`, `sample_rate = 0.1`, `profiler = auto`), and each
//! scenario runs twice: with that profiler and with profiling off, where the
//! cause must then be named by its kind ("PHP CPU in GET /report").
//!
//! The stack warms up once with the steady traffic alone; then each run is
//! a baseline load, then the same load plus one known cause. Then
//! `GET /v1/spikes` must find the spike (start and end within
//! [`TOLERANCE`] of the truth), and the report of the detected window
//! against the baseline detection suggests must rank the true cause first
//! of all suspects (one scenario says why this host cannot make its spike
//! big enough for detection, and is then judged on the generator's window). Every run adds a row to the table printed at the end
//! (and written to `$BITVILLE_ARTIFACTS/scenarios.txt` when that is set).
//!
//! Run: `cargo build --workspace && cargo test --workspace --test scenarios -- --nocapture`
//! (php8.2-fpm, php-excimer, php-pgsql, nginx, postgresql and
//! postgresql-contrib installed). Without PHP or PostgreSQL a run by hand
//! says so and returns; under `.ci/test` (`BITVILLE_REQUIRE_ALL=1`) it fails.

mod scenario;

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use processor::analysis::report::{Report, Suspect, SuspectKind};
use processor::analysis::spikes::{Signal, Spike};
use processor::analysis::{Frame, Micros, SECOND, Window, format_time, parse_time};
use scenario::load::{self, Client};
use scenario::report::{spike_report, table};
use scenario::web::Profiling;
use scenario::{Stack, TOKEN, http_get, tools};

const BASELINE: Duration = Duration::from_secs(25);
/// The steady traffic alone, once, before the first scenario.
const WARM_UP: Duration = Duration::from_secs(30);
const SPIKE: Duration = Duration::from_secs(20);
/// How far the detected start and end may be from the truth.
const TOLERANCE: Micros = 10 * SECOND;
/// Detection compressed to the scenarios' time scale: they follow each
/// other about 35 s apart, closer than the default gap (60 s) under which
/// detection makes one incident of a recurring cause (production incidents
/// this close would be reported as one), and each brings its own steady
/// traffic, so the baseline a point is compared with is the last minute's
/// (the scenario's own baseline load), not the last half hour's, in
/// buckets of 5 s so that a 25 s baseline holds enough of them.
const DETECTION: &str = "merge_gap_s=10&lookback_s=60&bucket_s=5";

/// The shared stack, started by the first scenario and stopped at exit; the
/// lock also runs the scenarios one at a time (their loads would mix).
static STACK: Mutex<Option<Result<Stack, String>>> = Mutex::new(None);
/// One row per scenario run, printed at exit.
static TABLE: Mutex<Vec<Row>> = Mutex::new(Vec::new());

extern "C" fn at_exit() {
    let taken = STACK.lock().unwrap_or_else(PoisonError::into_inner).take();
    drop(taken);
    let rows = std::mem::take(&mut *TABLE.lock().unwrap_or_else(PoisonError::into_inner));
    if rows.is_empty() {
        return;
    }
    let text = render_table(&rows);
    println!("\n{text}");
    if let Some(dir) = std::env::var_os("BITVILLE_ARTIFACTS") {
        let dir = std::path::PathBuf::from(dir);
        let path = dir.join("scenarios.txt");
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &text)) {
            eprintln!("scenario table not written to {}: {e}", path.display());
        }
    }
}

/// Runs `f` on the shared stack, or prints why the scenarios cannot run here.
fn with_stack(name: &str, f: impl FnOnce(&mut Stack)) {
    let Some(tools) = bitville_testkit::require(&format!("scenario {name}"), tools()) else {
        return;
    };
    let mut guard = STACK.lock().unwrap_or_else(PoisonError::into_inner);
    if guard.is_none() {
        let started = Stack::start(&tools).inspect(|stack| {
            // A server that has been serving: compiled scripts in opcache,
            // pools of workers, and a minute of quiet history behind the
            // first scenario's baseline for detection to compare with.
            let _warmed = load::run(&stack.base_url(), &baseline_clients(), WARM_UP);
        });
        *guard = Some(started);
        // SAFETY: registers a plain function once; it only takes the stack
        // out of its mutex and drops it (stopping the children), then prints.
        unsafe { libc::atexit(at_exit) };
    }
    let stack = match guard.as_mut() {
        Some(Ok(stack)) => stack,
        Some(Err(e)) => panic!("the scenario stack did not start: {e}"),
        None => unreachable!("set above"),
    };
    if let Err(e) = stack.check_alive() {
        panic!("the scenario stack is broken: {e}");
    }
    f(stack);
}

fn now_micros() -> Micros {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as Micros)
}

/// The steady traffic of every baseline, which goes on during the spikes.
fn baseline_clients() -> Vec<Client> {
    vec![
        Client::new(
            &[
                "/home",
                "/product?id={n}",
                "/ping",
                "/checkout?sku=cold",
                "/report?rounds=20000",
            ],
            150,
        ),
        Client::new(
            &["/product?id={n}", "/home", "/checkout?sku=hot", "/ping"],
            150,
        ),
    ]
}

/// The true cause of a scenario's spike: the suspect that must rank first.
struct Cause {
    kind: SuspectKind,
    what: &'static str,
    is: fn(&Suspect) -> bool,
}

/// One public scenario.
struct Scenario {
    name: &'static str,
    /// Clients added to the baseline traffic in both windows.
    steady: Vec<Client>,
    /// Clients added in the spike window only.
    cause: Vec<Client>,
    /// What changes at the spike's start (`true`) and is undone at its end.
    change: fn(&mut Stack, bool) -> Result<(), String>,
    with_profiler: Cause,
    without_profiler: Cause,
}

fn no_change(_: &mut Stack, _: bool) -> Result<(), String> {
    Ok(())
}

/// What one run found.
struct Row {
    scenario: &'static str,
    profiling: Profiling,
    /// The detected spike against the truth, or why there is none.
    detected: Result<(Spike, Micros, Micros), String>,
    /// The true cause's overall rank and share in the detected window's report.
    rank: Option<(usize, f64)>,
    top: Vec<String>,
    failure: Option<String>,
}

impl Row {
    fn detected_text(&self) -> String {
        match &self.detected {
            Ok((s, truth_from, truth_to)) => format!(
                "{} {}..{} ({:+.0} s, {:+.0} s)",
                signal_label(s.signal),
                &s.start[11..19.min(s.start.len())],
                &s.end[11..19.min(s.end.len())],
                (s.start_us - truth_from) as f64 / SECOND as f64,
                (s.end_us - truth_to) as f64 / SECOND as f64
            ),
            Err(e) => format!("not detected: {e}"),
        }
    }
}

fn signal_label(s: Signal) -> &'static str {
    match s {
        Signal::Load => "load",
        Signal::Concurrency => "concurrency",
        Signal::Rate => "rate",
        Signal::Swap => "swap",
    }
}

fn render_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "Scenario table (rank of the true cause among all suspects of the detected window's report)\n",
    );
    out.push_str(&format!(
        "{:<34} {:<14} {:<46} {:>4} {:>6}  {}\n",
        "scenario",
        "profiling",
        "detected (start, end against the truth)",
        "rank",
        "share",
        "top three"
    ));
    for r in rows {
        let (rank, share) = r.rank.map_or(("-".to_owned(), "-".to_owned()), |(k, s)| {
            (k.to_string(), format!("{:.0}%", s * 100.0))
        });
        out.push_str(&format!(
            "{:<34} {:<14} {:<46} {:>4} {:>6}  {}\n",
            r.scenario,
            r.profiling.label(),
            r.detected_text(),
            rank,
            share,
            r.top.join(" | ")
        ));
    }
    out
}

/// Runs the scenario with the profiler `auto` picks and with none, then
/// fails with every run's problem if any run missed.
fn check(s: Scenario) {
    with_stack(s.name, |stack| {
        let mut failures = Vec::new();
        for profiling in [Profiling::Auto, Profiling::Off] {
            println!("\n=== scenario {} ({})", s.name, profiling.label());
            let row = run(stack, &s, profiling);
            if let Some(f) = &row.failure {
                println!("  FAILED: {f}");
                failures.push(format!("{} ({}): {f}", s.name, profiling.label()));
            }
            TABLE
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(row);
        }
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    });
}

/// One run: the loads, the detection, the report of the detected window.
fn run(stack: &mut Stack, s: &Scenario, profiling: Profiling) -> Row {
    let mut row = Row {
        scenario: s.name,
        profiling,
        detected: Err("not run".into()),
        rank: None,
        top: Vec::new(),
        failure: None,
    };
    if let Err(e) = stack.web.set_profiling(profiling) {
        row.failure = Some(e);
        return row;
    }
    let (truth, load_end) = match drive(stack, s) {
        Ok(t) => t,
        Err(e) => {
            row.failure = Some(e);
            return row;
        }
    };
    if let Err(e) = stack.wait_stored(load_end) {
        row.failure = Some(format!("records did not reach the store: {e}"));
        return row;
    }
    row.detected = detect(stack, truth);
    let frame = match &row.detected {
        Ok((spike, _, _)) => frame_of(spike),
        Err(e) => {
            row.failure = Some(format!("the spike was not detected: {e}"));
            return row;
        }
    };
    let report = match frame.and_then(|f| spike_report(stack, &f)) {
        Ok((report, _)) => report,
        Err(e) => {
            row.failure = Some(format!("no report: {e}"));
            return row;
        }
    };
    println!("  detected: {}", row.detected_text());
    println!("  report of the detected window:\n{}", table(&report, 8));
    let cause = match profiling {
        Profiling::Auto => &s.with_profiler,
        Profiling::Off => &s.without_profiler,
    };
    row.top = report
        .suspects
        .iter()
        .take(3)
        .map(|x| {
            format!(
                "{} {} {:.0}%",
                x.kind.label(),
                short(&x.name),
                x.share * 100.0
            )
        })
        .collect();
    let found = report
        .suspects
        .iter()
        .find(|x| x.kind == cause.kind && (cause.is)(x));
    row.rank = found.map(|x| (x.rank, x.share));
    row.failure = judge(&report, cause, found);
    if row.failure.is_none()
        && let Some(x) = found
    {
        println!(
            "  the cause, first: {} {} {:.0}%, evidence {:?}",
            x.kind.label(),
            x.name,
            x.share * 100.0,
            x.evidence
        );
    }
    row
}

/// Why the report misses the cause, if it does.
fn judge(report: &Report, cause: &Cause, found: Option<&Suspect>) -> Option<String> {
    let problem = match found {
        None => format!(
            "{} ({}) is not among the suspects",
            cause.what,
            cause.kind.label()
        ),
        Some(x) if x.rank != 1 => format!("{} is ranked {}, not first", cause.what, x.rank),
        Some(_) => return None,
    };
    Some(format!("{problem}:\n{}", table(report, 12)))
}

fn short(name: &str) -> String {
    let flat: String = name.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 48 {
        format!("{}…", flat.chars().take(47).collect::<String>())
    } else {
        flat
    }
}

/// The baseline window, then the spike window with the scenario's change;
/// returns the spike's true window and when the load ended.
fn drive(stack: &mut Stack, s: &Scenario) -> Result<(Window, Instant), String> {
    let base = stack.base_url();
    let crashes_before = stack.web.crashes().len();
    let mut every_window = baseline_clients();
    every_window.extend(s.steady.iter().cloned());
    let baseline = load::run(&base, &every_window, BASELINE);
    (s.change)(stack, true)?;
    let s0 = now_micros();
    let mut spike_clients = every_window;
    spike_clients.extend(s.cause.iter().cloned());
    let spike = load::run(&base, &spike_clients, SPIKE);
    let s1 = now_micros();
    let load_end = Instant::now();
    (s.change)(stack, false)?;
    println!("  load, baseline window:\n{baseline}  load, spike window:\n{spike}");
    let crashes: Vec<String> = stack
        .web
        .crashes()
        .into_iter()
        .skip(crashes_before)
        .collect();
    if !crashes.is_empty() {
        return Err(format!(
            "{} PHP worker(s) died on a signal with the agent on:\n{}",
            crashes.len(),
            crashes.join("\n")
        ));
    }
    let failures = baseline.failures() + spike.failures();
    if failures > 0 {
        println!("  {failures} request(s) did not answer 200");
    }
    Ok((Window::new(s0, s1).map_err(|e| e.to_string())?, load_end))
}

/// The spike `GET /v1/spikes` found over the run, within the tolerance of
/// `truth`, with the truth's bounds.
fn detect(stack: &Stack, truth: Window) -> Result<(Spike, Micros, Micros), String> {
    let range = Window {
        from: truth.from - BASELINE.as_micros() as Micros,
        to: truth.to + 15 * SECOND,
    };
    let path = format!(
        "/v1/spikes?from={}&to={}&{DETECTION}",
        format_time(range.from),
        format_time(range.to)
    );
    let body = match http_get(&stack.processor_addr, &path, Some(TOKEN))? {
        (200, body) => body,
        (status, body) => return Err(format!("GET {path}: {status} {body:.300}")),
    };
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("GET {path}: {e}"))?;
    let spikes: Vec<Spike> = serde_json::from_value(v["spikes"].clone())
        .map_err(|e| format!("GET {path}: not spikes: {e}"))?;
    // Every spike of the range, with the baseline each would be reported
    // against: what a failure needs to be read (an earlier incident left
    // out of a baseline shows here).
    println!(
        "  spikes found over {} .. {}:",
        format_time(range.from),
        format_time(range.to)
    );
    for s in &spikes {
        println!(
            "    {} {} .. {}, baseline {} .. {}",
            signal_label(s.signal),
            s.start,
            s.end,
            s.baseline_from,
            s.baseline_to
        );
    }
    let overlap = |s: &Spike| (s.end_us.min(truth.to) - s.start_us.max(truth.from)).max(0);
    let close = |s: &Spike| {
        (s.start_us - truth.from).abs() <= TOLERANCE && (s.end_us - truth.to).abs() <= TOLERANCE
    };
    let best = spikes
        .iter()
        .filter(|s| overlap(s) > 0)
        .max_by_key(|s| (close(s), s.signal != Signal::Load, overlap(s)));
    match best {
        Some(s) if close(s) => Ok((s.clone(), truth.from, truth.to)),
        Some(s) => Err(format!(
            "the nearest spike ({} {} .. {}) is {:+.0} s / {:+.0} s from the truth ({} .. {})",
            signal_label(s.signal),
            s.start,
            s.end,
            (s.start_us - truth.from) as f64 / SECOND as f64,
            (s.end_us - truth.to) as f64 / SECOND as f64,
            format_time(truth.from),
            format_time(truth.to)
        )),
        None => Err(format!(
            "no spike overlaps the truth ({} .. {}); found: {}",
            format_time(truth.from),
            format_time(truth.to),
            spikes
                .iter()
                .map(|s| format!("{} {}..{}", signal_label(s.signal), s.start, s.end))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The report window and baseline that detection suggests for `spike`.
fn frame_of(spike: &Spike) -> Result<Frame, String> {
    let t = |text: &str| parse_time(text).map_err(|e| format!("{text:?}: {e}"));
    let window = Window::new(t(&spike.report_from)?, t(&spike.report_to)?);
    let baseline = Window::new(t(&spike.baseline_from)?, t(&spike.baseline_to)?);
    window
        .and_then(|w| Frame::new(w, baseline?))
        .map_err(|e| format!("the suggested windows of {spike:?}: {e}"))
}

fn named(kind: SuspectKind, what: &'static str, is: fn(&Suspect) -> bool) -> Cause {
    Cause { kind, what, is }
}

#[test]
fn cpu_a_cpu_heavy_php_function() {
    // The report runs in the baseline too, small (the baseline clients ask
    // for 20,000 rounds); the spike is users asking for big ones, each
    // request well under the agent's 500 ms threshold. A few big ones in the
    // baseline as well made its mean latency depend on which of a dozen
    // requests the 10 % sampling kept, and without a profiler the endpoint's
    // traffic then outweighed its CPU in one run of four.
    let heavy = "/report?rounds=1500000";
    check(Scenario {
        name: "cpu: crunchNumbers on GET /report",
        steady: Vec::new(),
        cause: Client::new(&[heavy], 0).times(3),
        change: no_change,
        with_profiler: named(
            SuspectKind::PhpFunction,
            "App\\Reports::crunchNumbers",
            |s| s.name == "App\\Reports::crunchNumbers",
        ),
        without_profiler: named(SuspectKind::PhpCpu, "PHP CPU in GET /report", |s| {
            s.name == "PHP CPU in GET /report"
        }),
    });
}

fn is_orders_lookup(s: &Suspect) -> bool {
    s.name.contains("FROM orders WHERE customer_email")
}

#[test]
fn sql_a_sequential_scan() {
    check(Scenario {
        name: "sql: orders.customer_email scan",
        steady: Vec::new(),
        cause: Client::new(&["/search?email=user{n}@example.com"], 0).times(3),
        change: no_change,
        with_profiler: named(
            SuspectKind::SqlFingerprint,
            "the unindexed orders lookup",
            is_orders_lookup,
        ),
        without_profiler: named(
            SuspectKind::SqlFingerprint,
            "the unindexed orders lookup",
            is_orders_lookup,
        ),
    });
}

fn is_recount(s: &Suspect) -> bool {
    s.name == "GET /admin/recount"
        && s.evidence
            .get("blocker_url")
            .and_then(|v| v.as_str())
            .is_some_and(|u| u.starts_with("/admin/recount"))
}

#[test]
fn lock_a_request_holding_a_hot_row() {
    let mut cause = vec![Client::new(&["/admin/recount?sku=hot&hold_s=2"], 200)];
    cause.extend(Client::new(&["/checkout?sku=hot"], 0).times(5));
    check(Scenario {
        name: "lock: /admin/recount holds stock",
        steady: Vec::new(),
        cause,
        change: no_change,
        with_profiler: named(
            SuspectKind::LockBlocker,
            "GET /admin/recount, with its URL",
            is_recount,
        ),
        without_profiler: named(
            SuspectKind::LockBlocker,
            "GET /admin/recount, with its URL",
            is_recount,
        ),
    });
}

fn is_ping(s: &Suspect) -> bool {
    s.name == "GET /ping"
}

#[test]
fn burst_traffic_on_a_cheap_endpoint() {
    check(Scenario {
        name: "burst: GET /ping in a tight loop",
        steady: Vec::new(),
        cause: Client::new(&["/ping"], 0).times(8),
        change: no_change,
        with_profiler: named(SuspectKind::Endpoint, "GET /ping", is_ping),
        without_profiler: named(SuspectKind::Endpoint, "GET /ping", is_ping),
    });
}

fn is_variants_loop(s: &Suspect) -> bool {
    s.name.contains("FROM variants WHERE product_id")
        && s.name.contains("ProductList::loadVariants")
}

#[test]
fn n_plus_one_a_query_per_product() {
    check(Scenario {
        name: "n+1: 400 variant lookups",
        steady: Vec::new(),
        cause: Client::new(&["/products?page={n}"], 0).times(3),
        change: no_change,
        with_profiler: named(
            SuspectKind::NPlusOne,
            "the variants loop in ProductList::loadVariants",
            is_variants_loop,
        ),
        without_profiler: named(
            SuspectKind::NPlusOne,
            "the variants loop in ProductList::loadVariants",
            is_variants_loop,
        ),
    });
}

fn is_catalog_query(s: &Suspect) -> bool {
    s.name.contains("JOIN products")
}

/// After the spike, the catalog is read once so the next baseline finds it
/// cached, as it was before the purges.
fn warm_catalog(stack: &mut Stack, on: bool) -> Result<(), String> {
    if on {
        return Ok(());
    }
    let addr = stack.base_url().trim_start_matches("http://").to_owned();
    match http_get(&addr, "/catalog", None)? {
        (200, _) => Ok(()),
        (status, body) => Err(format!(
            "GET /catalog to warm the cache: {status} {body:.200}"
        )),
    }
}

#[test]
fn stampede_a_purged_cache() {
    // The catalog is read all the time and served from its cache; in the
    // spike a script purges the cache every second, and each purge sends
    // every reader to the database with the same expensive query at once.
    check(Scenario {
        name: "stampede: catalog cache purged",
        steady: Client::new(&["/catalog"], 50).times(4),
        cause: vec![Client::new(&["/admin/cache/purge"], 1000)],
        change: warm_catalog,
        with_profiler: named(
            SuspectKind::SqlFingerprint,
            "the catalog's summary query",
            is_catalog_query,
        ),
        without_profiler: named(
            SuspectKind::SqlFingerprint,
            "the catalog's summary query",
            is_catalog_query,
        ),
    });
}

fn slow_rates(stack: &mut Stack, on: bool) -> Result<(), String> {
    let delay = if on { 300 } else { 5 };
    stack
        .upstream
        .set_delay("/rates", Duration::from_millis(delay));
    Ok(())
}

#[test]
fn external_call_the_rates_service_slows_down() {
    check(Scenario {
        name: "external: rates service at 300 ms",
        steady: Client::new(&["/shipping?sku=s{n}"], 20).times(3),
        cause: Vec::new(),
        change: slow_rates,
        with_profiler: named(
            SuspectKind::PhpFunction,
            "the function that calls the rates service",
            |s| s.name == "App\\Upstream::get" || s.name == "App\\Shipping::fetchRates",
        ),
        without_profiler: named(
            SuspectKind::OffCpu,
            "off-CPU outside SQL in GET /shipping",
            |s| s.name == "off-CPU outside SQL in GET /shipping",
        ),
    });
}

fn slow_payments(stack: &mut Stack, on: bool) -> Result<(), String> {
    let delay = if on { 1500 } else { 10 };
    stack
        .upstream
        .set_delay("/payment", Duration::from_millis(delay));
    Ok(())
}

fn is_pay(s: &Suspect) -> bool {
    s.name == "GET /pay"
}

#[test]
fn lock_held_while_calling_out() {
    // /pay locks the stock row, calls the payment provider, then updates
    // and commits; when the provider slows down, checkouts queue on the row.
    check(Scenario {
        name: "lock+call: /pay holds stock",
        steady: {
            let mut c = vec![Client::new(&["/pay?sku=hot"], 300)];
            c.extend(Client::new(&["/checkout?sku=hot"], 100).times(4));
            c
        },
        cause: Vec::new(),
        change: slow_payments,
        with_profiler: named(SuspectKind::LockBlocker, "GET /pay", is_pay),
        without_profiler: named(SuspectKind::LockBlocker, "GET /pay", is_pay),
    });
}

fn flip_plans(stack: &mut Stack, on: bool) -> Result<(), String> {
    // A configuration change makes random reads look a thousand times
    // dearer: the planner gives up the index. New sessions (one per PHP
    // request) take the new setting at once.
    let sql = if on {
        "ALTER DATABASE postgres SET random_page_cost = 1000"
    } else {
        "ALTER DATABASE postgres RESET random_page_cost"
    };
    stack.pg.psql_command(sql).map(drop)
}

fn is_invoices_with_plan(s: &Suspect) -> bool {
    s.name.contains("FROM invoices WHERE customer_id")
        && s.evidence
            .get("plan")
            .is_some_and(|p| p.to_string().contains("Seq Scan"))
}

#[test]
fn plan_flip_the_planner_leaves_the_index() {
    // Six users paging through invoices, each reading a page for 100 ms.
    // With a 20 ms pause their own traffic, starting with the baseline
    // window, rose as much as the flip on a loaded host (clients that wait
    // for each answer slow down with it) and the two were one spike; with
    // three users the flip (a 9 ms lookup becoming an 80 ms scan on an idle
    // host) raised the requests in flight by less than one.
    check(Scenario {
        name: "plan flip: invoices by customer",
        steady: Client::new(&["/invoices?customer={n}"], 100).times(6),
        cause: Vec::new(),
        change: flip_plans,
        with_profiler: named(
            SuspectKind::SqlFingerprint,
            "the invoices lookup, with its new plan",
            is_invoices_with_plan,
        ),
        without_profiler: named(
            SuspectKind::SqlFingerprint,
            "the invoices lookup, with its new plan",
            is_invoices_with_plan,
        ),
    });
}

/// php-fpm restarted inside a memory cgroup with a hungry neighbour, and
/// back outside after.
fn press_memory(stack: &mut Stack, on: bool) -> Result<(), String> {
    if !on {
        let (swapped_in, swapped_out) = scenario::memory::swapped_pages();
        println!("  swapped since boot: {swapped_in} pages in, {swapped_out} out");
        let back = stack.web.fpm.restart_in(None);
        stack.pressure = None;
        return back.and_then(|()| stack.web.wait_answering());
    }
    let pressure = scenario::memory::Pressure::start(stack.dir.path())?;
    stack.web.fpm.restart_in(Some(&pressure.procs()))?;
    stack.pressure = Some(pressure);
    stack.web.wait_answering()
}

fn is_memory_pressure(s: &Suspect) -> bool {
    s.name.starts_with("memory pressure on ")
}

#[test]
fn memory_the_host_swaps() {
    // A batch job beside the PHP workers wants more memory than the host
    // gives them: the kernel swaps, and every request slows down.
    check(Scenario {
        name: "memory: the host swaps",
        steady: Client::new(&["/product?id={n}", "/home"], 100).times(12),
        cause: Vec::new(),
        change: press_memory,
        with_profiler: named(
            SuspectKind::HostMemory,
            "memory pressure on the web host",
            is_memory_pressure,
        ),
        without_profiler: named(
            SuspectKind::HostMemory,
            "memory pressure on the web host",
            is_memory_pressure,
        ),
    });
}
