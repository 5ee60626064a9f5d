//! Data-driven spike scenarios against real DuckDB: the recorded spikes of
//! `examples/spike_fixture.rs` (the same generator that writes
//! `fixtures/spike/`) are stored through the processor's store, and the
//! report must rank the planted cause first. These are not yet the live
//! scenario harness (PHP, nginx, PostgreSQL, shipper and pg-watch running
//! for real); that one comes later and must pass the same assertions.

#[path = "../examples/spike_fixture.rs"]
mod spike_fixture;

use std::path::Path;
use std::sync::Arc;

use processor::analysis::report::{Report, SuspectKind};
use processor::analysis::spikes::{Detection, Signal};
use processor::analysis::{Frame, Scope, Source, Window, report, spikes, sql};
use processor::config::StoreConfig;
use processor::ingest::flatten;
use processor::store::{ColumnsBuilder, Reader, Store};
use spike_fixture::{BASELINE_S, DEFAULT_START, SECOND, SPIKE_S};

/// Stores every record of a generated scenario, in batches, as ingest would.
fn load(
    store: &Store,
    rt: &tokio::runtime::Runtime,
    files: &std::collections::BTreeMap<String, String>,
) -> usize {
    let mut batch = ColumnsBuilder::default();
    let mut n = 0;
    let mut write = |batch: ColumnsBuilder| {
        n += batch.len();
        let columns = batch.finish().expect("columns built");
        rt.block_on(store.write_columns(columns))
            .expect("batch stored");
    };
    for text in files.values() {
        for line in text.lines() {
            let (kind, value) = bitville_schemas::validate_line(line.as_bytes())
                .expect("generated record is valid");
            let record =
                flatten::prepare(kind, &value, line, DEFAULT_START).expect("record flattens");
            batch.push(record).expect("record fits the columns");
            if batch.len() == 2000 {
                write(std::mem::take(&mut batch));
            }
        }
    }
    write(batch);
    n
}

fn store_config(path: &Path) -> StoreConfig {
    StoreConfig {
        path: path.to_owned(),
        ..StoreConfig::default()
    }
}

/// An empty store file `name` in `dir`, with the runtime its writer needs.
fn fresh_store(name: &str, dir: &Path) -> (tokio::runtime::Runtime, Arc<Store>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let store = Arc::new(
        Store::open(&store_config(&dir.join(format!("{name}.duckdb")))).expect("store opens"),
    );
    (rt, store)
}

/// A scenario in a fresh store: the runtime and the store.
fn scenario_store(name: &str, dir: &Path) -> (tokio::runtime::Runtime, Arc<Store>) {
    let (rt, store) = fresh_store(name, dir);
    let n = load(&store, &rt, &spike_fixture::generate(name, DEFAULT_START));
    assert!(n > 500, "scenario {name} has only {n} records");
    (rt, store)
}

/// The known spike window against the ten minutes before it.
fn known_frame() -> Frame {
    let from = DEFAULT_START + BASELINE_S * SECOND;
    Frame::new(
        Window::new(from, from + SPIKE_S * SECOND).unwrap(),
        Window::new(DEFAULT_START, from).unwrap(),
    )
    .unwrap()
}

fn report_of(name: &str) -> (Report, Vec<spikes::Spike>) {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = scenario_store(name, dir.path());
    let reader = store.reader().expect("reader");
    let scope = Scope::Project("shop".into());
    let r = report::report(&reader, &scope, &known_frame()).expect("report");
    let range = Window::new(DEFAULT_START, DEFAULT_START + 900 * SECOND).unwrap();
    let found = spikes::find(&reader, &scope, range, &Detection::default()).expect("spikes");
    drop(reader);
    rt.block_on(store.shutdown()).expect("store shuts down");
    let top: Vec<String> = r
        .suspects
        .iter()
        .take(5)
        .map(|s| format!("{:?} {} {:.1}s", s.kind, s.name, s.score_s))
        .collect();
    eprintln!("{name}: top suspects {top:#?}\nspikes {found:#?}");
    (r, found)
}

/// A detected spike overlaps the planted one.
fn assert_detected(found: &[spikes::Spike], signal: Signal, host: Option<&str>) {
    let (from, to) = (
        DEFAULT_START + BASELINE_S * SECOND,
        DEFAULT_START + (BASELINE_S + SPIKE_S) * SECOND,
    );
    assert!(
        found.iter().any(|s| s.signal == signal
            && host.is_none_or(|h| s.host == h)
            && s.start_us < to
            && s.end_us > from),
        "no {signal:?} spike on {host:?} overlaps the planted one: {found:#?}"
    );
}

#[test]
fn data_driven_cpu_heavy_function_is_ranked_first() {
    let (r, found) = report_of("cpu_function");
    let first = &r.suspects[0];
    assert_eq!(
        (first.kind, first.name.as_str()),
        (SuspectKind::PhpFunction, spike_fixture::CPU_FUNCTION),
        "{first:#?}"
    );
    assert_eq!(first.endpoint.as_deref(), Some("GET search"));
    assert!(
        first.share > 0.5,
        "the function explains most of the excess: {first:#?}"
    );
    assert_detected(&found, Signal::Load, Some("web-1"));
}

#[test]
fn data_driven_slow_sql_fingerprint_is_ranked_first() {
    let (r, found) = report_of("slow_sql");
    let first = &r.suspects[0];
    let fingerprint = bitville_schemas::fingerprint::normalize(spike_fixture::SLOW_SQL);
    assert_eq!(
        (first.kind, first.name.as_str()),
        (SuspectKind::SqlFingerprint, fingerprint.as_str()),
        "{first:#?}"
    );
    // pg_stat_statements and the slow-statement log back PHP's figure.
    assert!(
        first
            .evidence
            .get("pgss_seconds")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0)
            > 100.0,
        "{first:#?}"
    );
    assert!(
        first
            .evidence
            .get("log_events")
            .and_then(|v| v.as_i64())
            .unwrap_or(0)
            > 100,
        "{first:#?}"
    );
    // The driver frame that waited for it is not blamed.
    assert!(
        !r.suspects
            .iter()
            .take(3)
            .any(|s| s.name == "PDOStatement::execute"),
        "{:#?}",
        &r.suspects[..3]
    );
    assert_detected(&found, Signal::Load, Some("db-1"));
}

#[test]
fn data_driven_lock_contention_ranks_the_blocking_request_url_first() {
    let (r, found) = report_of("lock_contention");
    let first = &r.suspects[0];
    assert_eq!(first.kind, SuspectKind::LockBlocker, "{first:#?}");
    assert_eq!(first.name, "POST stock-recount");
    let url = first
        .evidence
        .get("blocker_url")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    assert_eq!(url, spike_fixture::LOCK_BLOCKER_URL, "{first:#?}");
    // The queue behind the blocker is more than the window's excess; the
    // share says "all of it", never more.
    assert!(
        first.share > 0.5 && first.share <= 1.0,
        "share {}",
        first.share
    );
    // The statement that waited is not blamed for the wait.
    let waiter = bitville_schemas::fingerprint::normalize(
        "UPDATE stock SET qty = qty - :qty WHERE sku = :sku",
    );
    let waiter_score = r
        .suspects
        .iter()
        .find(|s| s.name == waiter)
        .map_or(0.0, |s| s.score_s);
    assert!(
        waiter_score < 0.25 * first.score_s,
        "the waiting statement keeps {waiter_score} s of {}",
        first.score_s
    );
    assert!(
        r.events
            .iter()
            .any(|e| e.class == "lock_wait" && e.count > 10.0),
        "{:#?}",
        r.events
    );
    assert_detected(&found, Signal::Concurrency, Some("web-1"));
}

#[test]
fn data_driven_traffic_burst_ranks_the_cheap_endpoint_first() {
    let (r, found) = report_of("traffic_burst");
    let first = &r.suspects[0];
    assert_eq!(
        (first.kind, first.name.as_str()),
        (SuspectKind::Endpoint, spike_fixture::BURST_ENDPOINT),
        "{first:#?}"
    );
    let rate = first
        .evidence
        .get("rate_per_s")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    let base = first
        .evidence
        .get("baseline_rate_per_s")
        .and_then(|v| v.as_f64())
        .unwrap_or(f64::MAX);
    assert!(rate > 20.0 * base, "rate {rate}/s against {base}/s");
    assert_detected(&found, Signal::Concurrency, Some("web-1"));
    // A burst is a rise of the request rate too, which cheap requests show
    // even when their time in PHP barely moves the requests in flight.
    assert_detected(&found, Signal::Rate, Some("web-1"));
}

/// A host that swaps is a spike of its own (the request signals may not
/// tell a uniform slowdown from noise), and the baseline its report gets
/// leaves out an earlier swapping incident found in the lookback before
/// the asked range, and stays inside the data.
#[test]
fn swapping_is_a_spike_and_an_earlier_incident_stays_out_of_its_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = fresh_store("swap", dir.path());
    let at = |s: i64| DEFAULT_START + s * SECOND;
    // Every 2 s for 900 s; 8 MiB/s of swapping at 560..600 s (before the
    // asked range) and at 700..800 s (inside it).
    let swapping = |s: i64| (560..600).contains(&s) || (700..800).contains(&s);
    // Two samplers on the host (the shipper and pg-watch), as in a
    // single-host install: they must count once.
    let mut text = String::new();
    for s in (0..900).step_by(2) {
        let io: u64 = if swapping(s) { 8 << 20 } else { 0 };
        for source in ["shipper", "pg-watch"] {
            let record = serde_json::json!({"v": 1, "kind": "host_metrics", "id": uuid::Uuid::new_v4().to_string(),
                "ts": processor::analysis::format_time(at(s)), "project": "shop", "host": "web-1", "source": source,
                "interval_s": 2, "ncpu": 2, "load1": 0.5, "load5": 0.5, "load15": 0.5,
                "swap": {"total_bytes": 1u64 << 30, "used_bytes": 1u64 << 28, "in_bytes": io, "out_bytes": io},
                "procs_running": 1, "procs_blocked": 0});
            text.push_str(&record.to_string());
            text.push('\n');
        }
    }
    load(
        &store,
        &rt,
        &[("host".to_owned(), text)].into_iter().collect(),
    );
    let reader = store.reader().unwrap();
    let range = Window::new(at(680), at(900)).unwrap();
    let found = spikes::find(
        &reader,
        &Scope::Project("shop".into()),
        range,
        &Detection::default(),
    )
    .expect("spikes");
    let swap: Vec<&spikes::Spike> = found.iter().filter(|s| s.signal == Signal::Swap).collect();
    assert_eq!(swap.len(), 1, "one swap spike in the range: {found:#?}");
    let spike = swap[0];
    assert_eq!(spike.host, "web-1");
    assert!(
        (spike.start_us - at(700)).abs() <= 10 * SECOND
            && (spike.end_us - at(800)).abs() <= 10 * SECOND,
        "{spike:#?}"
    );
    let t = |text: &str| processor::analysis::parse_time(text).unwrap();
    let (from, to) = (t(&spike.baseline_from), t(&spike.baseline_to));
    // Before the earlier incident (and a bucket past its end), not across it.
    assert!(
        to <= at(630),
        "the baseline {from}..{to} contains the earlier incident: {spike:#?}"
    );
    assert!(
        from >= DEFAULT_START,
        "the baseline begins before the data: {spike:#?}"
    );
    assert!(to - from >= 90 * SECOND, "{spike:#?}");
    // The report's host figures: 50 samples of 16 MiB in the window, once.
    let frame = Frame::new(
        Window::new(at(700), at(800)).unwrap(),
        Window::new(from, to).unwrap(),
    )
    .unwrap();
    let r = report::report(&reader, &Scope::Project("shop".into()), &frame).expect("report");
    assert_eq!(r.hosts.len(), 1, "{:#?}", r.hosts);
    assert_eq!(
        r.hosts[0].swap_io_bytes,
        50.0 * f64::from(16u32 << 20),
        "{:#?}",
        r.hosts
    );
    drop(reader);
    rt.block_on(store.shutdown()).expect("store shuts down");
}

/// One pg_activity sample in a quiet window stands for one sampling
/// interval (read from the busy samples before the window, else pg-watch's
/// default), never for the whole window: a backend caught once is not a
/// wait of the window's length.
#[test]
fn one_sample_in_a_quiet_window_is_not_a_wait_of_the_windows_length() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = fresh_store("sparse", dir.path());
    let at = |ms: i64| DEFAULT_START + ms * 1000;
    let sample = |t: i64, wait: Option<&str>| {
        let mut backend = serde_json::json!({"pid": 101, "datname": "shop", "usename": "app", "state": "active",
            "query": "SELECT count(*) FROM orders"});
        if let Some(w) = wait {
            backend["wait_event_type"] = "LWLock".into();
            backend["wait_event"] = w.into();
        }
        serde_json::json!({"v": 1, "kind": "pg_activity", "id": uuid::Uuid::new_v4().to_string(),
            "ts": processor::analysis::format_time(at(t)), "project": "shop", "host": "db-1",
            "server_version_num": 150004, "sample_ms": 0.8, "backends": [backend]})
        .to_string()
    };
    // Ten busy samples 500 ms apart half an hour before; then, in the
    // window (600..625 s), one sample with a waiting backend.
    let mut text = String::new();
    for i in 0..10 {
        text.push_str(&sample(i * 500, None));
        text.push('\n');
    }
    text.push_str(&sample(610_000, Some("pg_stat_statements")));
    text.push('\n');
    load(
        &store,
        &rt,
        &[("db".to_owned(), text)].into_iter().collect(),
    );
    let reader = store.reader().unwrap();
    let frame = Frame::new(
        Window::new(at(600_000), at(625_000)).unwrap(),
        Window::new(at(570_000), at(595_000)).unwrap(),
    )
    .unwrap();
    let r = report::report(&reader, &Scope::Project("shop".into()), &frame).expect("report");
    let wait = r
        .suspects
        .iter()
        .find(|s| s.kind == SuspectKind::WaitEvent && s.name == "LWLock:pg_stat_statements");
    assert!(
        wait.is_some_and(|w| (w.score_s - 0.5).abs() < 1e-6),
        "one sample at a 500 ms interval is 0.5 s of waiting: {:#?}",
        r.suspects
    );
    drop(reader);
    rt.block_on(store.shutdown()).expect("store shuts down");
}

/// A page served from a cache runs no SQL, and the agent leaves the SQL
/// section out of its record: the one request in ten that rebuilt the
/// cache does not stand for all ten (the SQL time is what was measured,
/// not ten times it).
#[test]
fn records_without_sql_ran_none_and_do_not_scale_the_sql_up() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = fresh_store("cache", dir.path());
    let at = |ms: i64| DEFAULT_START + ms * 1000;
    let request = |t: i64, ms: f64, sql_ms: Option<f64>| {
        let mut r = serde_json::json!({"v": 1, "kind": "request", "id": uuid::Uuid::new_v4().to_string(),
            "ts": processor::analysis::format_time(at(t)), "project": "shop", "host": "web-1",
            "correlation_id": uuid::Uuid::new_v4().to_string(), "record_type": "summary", "sampling_weight": 1, "duration_ms": ms,
            "http": {"method": "GET", "url": "/catalog", "status": 200, "route": "catalog"},
            "runtime": {"sapi": "fpm-fcgi", "php_version": "8.2.26", "pid": 4000, "agent_version": "0.1.0", "threshold_ms": 500},
            "resources": {"memory_peak_bytes": 6_291_456, "cpu_user_ms": 1.0, "cpu_system_ms": 0.5}});
        if let Some(q) = sql_ms {
            r["sql"] = serde_json::json!({"queries": [], "total_count": 1, "dropped": 0, "total_ms": q, "not_stored": 1,
                "fingerprints": [{"sql": "SELECT count(*) FROM orders", "count": 1, "total_ms": q, "max_ms": q, "stored": 0}]});
        }
        r.to_string()
    };
    // Baseline (0..20 s): ten cache hits of 2 ms. Window (20..40 s): ten
    // requests, one of which rebuilt the cache with 900 ms of SQL.
    let mut text = String::new();
    for i in 0..10 {
        text.push_str(&request(i * 2000, 2.0, None));
        text.push('\n');
        let rebuild = i == 4;
        text.push_str(&request(
            20_000 + i * 2000,
            if rebuild { 950.0 } else { 2.0 },
            rebuild.then_some(900.0),
        ));
        text.push('\n');
    }
    load(
        &store,
        &rt,
        &[("web".to_owned(), text)].into_iter().collect(),
    );
    let reader = store.reader().unwrap();
    let frame = Frame::new(
        Window::new(at(20_000), at(40_000)).unwrap(),
        Window::new(at(0), at(20_000)).unwrap(),
    )
    .unwrap();
    let r = report::report(&reader, &Scope::Project("shop".into()), &frame).expect("report");
    let first = &r.suspects[0];
    assert_eq!(first.kind, SuspectKind::SqlFingerprint, "{:#?}", r.suspects);
    assert!(
        (first.score_s - 0.9).abs() < 0.01,
        "the SQL measured was 0.9 s: {:#?}",
        r.suspects
    );
    drop(reader);
    rt.block_on(store.shutdown()).expect("store shuts down");
}

#[test]
fn another_project_sees_nothing_of_the_spike() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = scenario_store("lock_contention", dir.path());
    let reader = store.reader().unwrap();
    let r = report::report(&reader, &Scope::Project("blog".into()), &known_frame()).unwrap();
    assert!(r.suspects.is_empty() && r.hosts.is_empty(), "{r:#?}");
    assert_eq!(r.totals.requests, 0.0);
    let range = Window::new(DEFAULT_START, DEFAULT_START + 900 * SECOND).unwrap();
    assert!(
        spikes::find(
            &reader,
            &Scope::Project("blog".into()),
            range,
            &Detection::default()
        )
        .unwrap()
        .is_empty()
    );
    drop(reader);
    rt.block_on(store.shutdown()).unwrap();
}

#[test]
fn drill_down_shows_who_blocked_a_request_and_draws_its_flame_graph() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = scenario_store("lock_contention", dir.path());
    let reader = store.reader().unwrap();
    let scope = Scope::Project("shop".into());
    let filter = processor::analysis::request::ListFilter {
        endpoint: Some("POST checkout-submit".into()),
        min_ms: Some(2000.0),
        limit: Some(5),
        ..Default::default()
    };
    let list =
        processor::analysis::request::list(&reader, &scope, known_frame().window, &filter).unwrap();
    assert!(!list.is_empty(), "no slow checkout in the spike");
    let id = list[0]["correlation_id"].as_str().unwrap().to_owned();
    let started = std::time::Instant::now();
    let d = processor::analysis::request::detail(&reader, &scope, &id).unwrap();
    eprintln!("drill-down took {:?}", started.elapsed());
    assert!(d.sql.iter().any(|s| s.duration_ms > 1000.0), "{:#?}", d.sql);
    let blockers: Vec<_> = d
        .activity
        .iter()
        .flat_map(|a| a.blocked_by.iter())
        .collect();
    assert!(!blockers.is_empty(), "no blocker in {:#?}", d.activity);
    // Directly or through the first waiter, the chain ends at the recount request.
    let top = processor::analysis::report::report(&reader, &scope, &known_frame()).unwrap();
    assert_eq!(
        top.suspects[0].evidence["blocker_url"],
        spike_fixture::LOCK_BLOCKER_URL
    );
    assert!(
        d.profile
            .calls
            .iter()
            .any(|c| c.function == "PDOStatement::execute" && c.exclusive_ms > 1000.0)
    );
    let svg = processor::analysis::request::flame_graph_svg(&d).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("PDOStatement::execute"),
        "{}",
        &svg[..200.min(svg.len())]
    );
    // Its record id opens the same request.
    let record_id = d.request["id"].as_str().unwrap().to_owned();
    assert_ne!(record_id, id);
    let by_record = processor::analysis::request::detail(&reader, &scope, &record_id).unwrap();
    assert_eq!(
        (by_record.correlation_id.as_str(), by_record.sql.len()),
        (id.as_str(), d.sql.len())
    );
    // The other project cannot open it.
    assert!(
        processor::analysis::request::detail(&reader, &Scope::Project("blog".into()), &id).is_err()
    );
    drop(reader);
    rt.block_on(store.shutdown()).unwrap();
}

#[test]
fn sql_runner_reads_the_store_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = scenario_store("traffic_burst", dir.path());
    let path = store.path().to_owned();
    rt.block_on(store.shutdown()).unwrap();
    drop(store);
    let file = Reader::open_read_only(&path).expect("store opens read-only");
    let limits = sql::SqlLimits {
        timeout: std::time::Duration::from_secs(2),
        max_rows: 5,
    };

    let r = sql::run(
        &file,
        "SELECT route, count(*) AS n FROM requests GROUP BY route ORDER BY n DESC;",
        limits,
    )
    .unwrap();
    assert_eq!(r.columns, vec!["route", "n"]);
    assert_eq!(r.rows[0][0].as_deref(), Some("stock-status"));
    let r = sql::run(&file, "SELECT * FROM range(100)", limits).unwrap();
    assert_eq!((r.rows.len(), r.truncated), (5, true));

    let secret = dir.path().join("secret.csv");
    std::fs::write(&secret, "a,b\n1,2\n").unwrap();
    let refused = [
        "CREATE TABLE x (a INT)".to_owned(),
        "DROP TABLE main.cursors".to_owned(),
        "INSERT INTO cursors VALUES ('x', 1, now())".to_owned(),
        format!(
            "COPY requests TO '{}'",
            dir.path().join("out.csv").display()
        ),
        format!("SELECT * FROM read_csv('{}')", secret.display()),
        format!("SELECT * FROM '{}'", secret.display()),
        format!(
            "ATTACH '{}' AS other",
            dir.path().join("other.duckdb").display()
        ),
        "SELECT 1; SELECT 2".to_owned(),
        "INSTALL httpfs".to_owned(),
        "SET enable_external_access = true".to_owned(),
        "PRAGMA version".to_owned(),
    ];
    for q in &refused {
        let e = sql::run(&file, q, limits).expect_err(q);
        assert!(
            matches!(e, processor::analysis::AnalysisError::Refused(_)),
            "{q}: {e}"
        );
    }
    assert!(!dir.path().join("out.csv").exists() && !dir.path().join("other.duckdb").exists());

    let started = std::time::Instant::now();
    let e = sql::run(&file, "SELECT count(*) FROM range(1000000000000) a", limits)
        .expect_err("a huge query times out");
    assert!(
        matches!(e, processor::analysis::AnalysisError::Timeout(2)),
        "{e}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));

    // The report reads the same file without a processor.
    let r = report::report(&file as &dyn Source, &Scope::All, &known_frame()).unwrap();
    assert_eq!(r.suspects[0].name, spike_fixture::BURST_ENDPOINT);
}

#[test]
fn committed_fixture_matches_the_generator() {
    let root = manifest_dir().join("../fixtures/spike");
    {
        let name = spike_fixture::RECORDED;
        for (file, text) in spike_fixture::generate(name, DEFAULT_START) {
            let path = root.join(name).join(&file);
            let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!("{}: {e} (run the spike_fixture example)", path.display())
            });
            assert!(
                committed == text,
                "{} differs from the generator's output; run the spike_fixture example",
                path.display()
            );
        }
    }
}

/// The package's folder as `cargo test` names it when the test runs: a test
/// binary reused from another clone with the same target folder would keep
/// that clone's folder in `env!`.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    )
}
