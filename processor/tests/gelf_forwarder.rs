//! The forwarder over a real DuckDB store: it reads stored records after a
//! durable cursor, sends each kind once over UDP, TCP and HTTP, resumes
//! from its cursor after a restart, and catches up after a receiver outage
//! over TCP and HTTP with nothing lost.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use processor::gelf::Forwarder;
use processor::gelf::config::{EventKind, GelfConfig, OutputConfig, ProjectConfig, TransportKind};
use processor::gelf::forwarder::cursor_name;
use processor::gelf::receiver::{Addrs, Received, Receiver};
use processor::store::{Store, StoreConfig};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = manifest_dir().join("../fixtures/records").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A full request (its UPDATE takes 1402.7 ms: one slow_sql message at the 1000 ms threshold).
fn request(project: &str) -> Value {
    let mut r = fixture("request-full.json");
    r["id"] = uuid().into();
    r["correlation_id"] = uuid().into();
    r["project"] = project.into();
    r
}

fn record(name: &str, project: &str) -> Value {
    let mut r = fixture(name);
    r["id"] = uuid().into();
    r["project"] = project.into();
    r
}

async fn store_records(store: &Store, records: &[Value]) {
    let now = processor::store::now_micros();
    let raw: Vec<String> = records.iter().map(Value::to_string).collect();
    let prepared = records
        .iter()
        .zip(&raw)
        .map(|(r, raw)| {
            let kind =
                bitville_schemas::validate(r).unwrap_or_else(|e| panic!("fixture record: {e}"));
            processor::ingest::flatten::prepare(kind, r, raw, now).unwrap()
        })
        .collect();
    store.write(prepared).await.unwrap();
}

fn open_store(dir: &std::path::Path) -> Arc<Store> {
    Arc::new(Store::open(&StoreConfig::at(&dir.join("gelf.duckdb"))).unwrap())
}

fn config(outputs: Vec<OutputConfig>) -> GelfConfig {
    GelfConfig {
        outputs,
        slow_sql_ms: 1000.0,
        poll_interval_ms: 50,
        retry_initial_ms: 50,
        retry_max_ms: 400,
        batch_records: 7,
        ..GelfConfig::default()
    }
}

fn output(name: &str, transport: TransportKind, address: String) -> OutputConfig {
    OutputConfig {
        name: name.into(),
        transport,
        address,
        timeout_s: 5,
        ..OutputConfig::default()
    }
}

fn outputs(a: Addrs, udp: bool) -> Vec<OutputConfig> {
    let mut v = vec![
        output("tcp", TransportKind::Tcp, a.tcp.to_string()),
        output(
            "http",
            TransportKind::Http,
            format!("http://{}/gelf", a.http),
        ),
    ];
    if udp {
        v.push(output("udp", TransportKind::Udp, a.udp.to_string()));
    }
    v
}

/// The dedupe key of a message: correlation id (or record id) and event, plus the statement index.
fn key(m: &Value) -> String {
    let id = match m["_event"].as_str() {
        Some("pg_log") => m.get("_record_id"),
        _ => m.get("_correlation_id"),
    };
    let id = id.and_then(Value::as_str).unwrap_or("?");
    format!(
        "{id}/{}/{}",
        m["_event"].as_str().unwrap_or("?"),
        m["_sql_idx"]
    )
}

fn by_transport(got: &[Received]) -> BTreeMap<&'static str, Vec<String>> {
    let mut map: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for r in got {
        map.entry(r.transport).or_default().push(key(&r.message));
    }
    map
}

/// The keys the records should produce: request + slow_sql per full request
/// of a project that sends requests, one per pg_log event of interest.
fn expected(records: &[Value]) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for r in records {
        match (r["kind"].as_str(), r["project"].as_str()) {
            (Some("request"), Some("shop")) if r["record_type"] == "full" => {
                let c = r["correlation_id"].as_str().unwrap();
                keys.insert(format!("{c}/request/null"));
                keys.insert(format!("{c}/slow_sql/2"));
            }
            (Some("pg_log"), _) if r["class"] == "deadlock" => {
                let id = r["id"].as_str().unwrap();
                keys.insert(format!("{id}/pg_log/null"));
            }
            _ => {}
        }
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_each_kind_once_and_resumes_from_its_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let rx = Receiver::start(Addrs::loopback(), None, true)
        .await
        .unwrap();
    let mut load = record("host_metrics.json", "shop");
    load["ts"] = "2026-11-27T11:47:40.000000Z".into();
    let mut records = vec![load];
    records.extend((0..12).map(|_| request("shop")));
    records.extend((0..3).map(|_| record("pg_log-deadlock.json", "shop")));
    let mut checkpoint = record("pg_log-deadlock.json", "shop");
    checkpoint["class"] = "checkpoint".into();
    checkpoint["severity"] = "LOG".into();
    records.push(checkpoint);
    records.push(record("request-summary.json", "shop"));
    // Project "quiet" sends only pg_log: its requests stay home.
    records.extend((0..4).map(|_| request("quiet")));
    store_records(&store, &records).await;
    let want = expected(&records);

    let mut cfg = config(outputs(rx.addrs(), true));
    cfg.projects.insert(
        "quiet".into(),
        ProjectConfig {
            kinds: vec![EventKind::PgLog],
        },
    );
    let forwarder = Forwarder::start(store.clone(), cfg.clone()).await.unwrap();
    let n = want.len() as u64;
    assert!(
        rx.wait_for(3 * n, Duration::from_secs(30)).await,
        "got {} of {}",
        rx.count(),
        3 * n
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.violations().is_empty(), "{:?}", rx.violations());
    let got = rx.messages();
    for (transport, keys) in by_transport(&got) {
        assert_eq!(
            keys.iter().cloned().collect::<BTreeSet<_>>(),
            want,
            "{transport}"
        );
        assert_eq!(keys.len(), want.len(), "{transport}: each message once");
    }
    let sent_request = got
        .iter()
        .find(|r| r.message["_event"] == "request")
        .unwrap();
    assert_eq!(
        sent_request.message["_host_load1"], 187.4,
        "load of the host sample before the request"
    );
    for m in forwarder.metrics() {
        assert_eq!(m.sent.load(Ordering::Relaxed), n, "{} sent", m.name);
        assert_eq!(m.lag.load(Ordering::Relaxed), 0, "{} lag", m.name);
    }
    let mut out = bitville_daemon::metrics::Exposition::new("");
    processor::gelf::metrics::render(forwarder.metrics(), &mut out);
    let text = out.finish();
    assert!(
        text.contains(&format!(
            "bitville_gelf_messages_total{{output=\"tcp\",transport=\"tcp\",outcome=\"sent\"}} {n}"
        )),
        "{text}"
    );
    forwarder.stop().await;
    let reader = store.reader().unwrap();
    let max = reader.query_i64("SELECT max(seq) FROM records").unwrap();
    assert_eq!(
        reader.cursor(&cursor_name("tcp")).unwrap(),
        max,
        "cursor saved at the last record"
    );

    // A new forwarder on the same store starts after the saved cursor.
    let more: Vec<Value> = (0..3).map(|_| request("shop")).collect();
    store_records(&store, &more).await;
    let forwarder = Forwarder::start(store.clone(), cfg).await.unwrap();
    // The analysis's hook: a spike goes out on every output too.
    forwarder.spike(&processor::gelf::SpikeSummary {
        project: "shop".into(),
        host: "web-1".into(),
        start: 1_795_780_000_000_000,
        peak: 1_795_780_060_000_000,
        end: 1_795_780_300_000_000,
        metric: "load1".into(),
        peak_value: 48.0,
        baseline_value: 2.0,
        suspects: vec![processor::gelf::Suspect {
            kind: "sql".into(),
            name: "UPDATE stock".into(),
            score_s: 90.0,
            evidence: "seq scan".into(),
        }],
    });
    let more_n = expected(&more).len() as u64 + 1;
    assert!(rx.wait_for(3 * (n + more_n), Duration::from_secs(30)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    forwarder.stop().await;
    let got = rx.stop().await;
    assert_eq!(
        got.len() as u64,
        3 * (n + more_n),
        "nothing sent twice after the restart"
    );
    assert_eq!(
        got.iter()
            .filter(|r| r.message["_event"] == "spike")
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_up_after_an_outage_over_tcp_and_http() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let rx = Receiver::start(Addrs::loopback(), None, true)
        .await
        .unwrap();
    let addrs = rx.addrs();
    let forwarder = Forwarder::start(store.clone(), config(outputs(addrs, false)))
        .await
        .unwrap();
    let mut all = Vec::new();

    let batch: Vec<Value> = (0..20).map(|_| request("shop")).collect();
    store_records(&store, &batch).await;
    all.extend(batch);
    assert!(
        rx.wait_for(2 * expected(&all).len() as u64, Duration::from_secs(30))
            .await
    );
    let mut got = rx.stop().await;

    // Graylog is away: ingest goes on, the forwarder fails and retries.
    for _ in 0..4 {
        let batch: Vec<Value> = (0..10).map(|_| request("shop")).collect();
        store_records(&store, &batch).await;
        all.extend(batch);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Polled, not read once after the sleeps above: on a loaded machine the
    // outputs may not have tried yet (a fixed 1.2 s failed at load 13).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for m in forwarder.metrics() {
        while m.failed.load(Ordering::Relaxed) == 0 || m.lag.load(Ordering::Relaxed) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} counted no failures or no lag during the outage: failed {}, lag {}",
                m.name,
                m.failed.load(Ordering::Relaxed),
                m.lag.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let rx = Receiver::start(addrs, None, true).await.unwrap();
    let batch: Vec<Value> = (0..20).map(|_| request("shop")).collect();
    store_records(&store, &batch).await;
    all.extend(batch);
    let want = expected(&all);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now: Vec<Received> = got.iter().cloned().chain(rx.messages()).collect();
        let map = by_transport(&now);
        let complete = ["tcp", "http"].iter().all(|t| {
            map.get(t)
                .is_some_and(|k| k.iter().cloned().collect::<BTreeSet<_>>() == want)
        });
        if complete {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not caught up: {:?}",
            map.iter().map(|(t, k)| (t, k.len())).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    forwarder.stop().await;
    assert!(rx.violations().is_empty(), "{:?}", rx.violations());
    got.extend(rx.stop().await);
    for (transport, keys) in by_transport(&got) {
        let unique: BTreeSet<_> = keys.iter().cloned().collect();
        assert_eq!(unique, want, "{transport}: every message after dedupe");
        println!(
            "{transport}: {} messages, {} after dedupe",
            keys.len(),
            unique.len()
        );
    }
}

/// A load spike of 30 on an 8-CPU host (baseline 1) for three minutes, with
/// slow requests in it, followed by ten quiet minutes so that it has settled.
/// Issue 19: `bitville_gelf_lag_records` was set only when a batch was read
/// or delivered, so during an outage it froze and `/metrics` showed no
/// growing lag while Graylog was away. It follows the store while the
/// output retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_grows_while_an_output_retries() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    // A TCP port with nothing listening: every send fails and is retried.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let mut cfg = config(vec![output("down", TransportKind::Tcp, address)]);
    cfg.batch_records = 1000;
    let forwarder = Forwarder::start(store.clone(), cfg).await.unwrap();
    let lag = || forwarder.metrics()[0].lag.load(Ordering::Relaxed);
    let first: Vec<Value> = (0..3).map(|_| request("shop")).collect();
    store_records(&store, &first).await;
    let waited = wait_until(|| lag() == 3).await;
    assert!(waited, "lag {} after the first records", lag());
    // More records while the output is down: the lag grows with them.
    let more: Vec<Value> = (0..4).map(|_| request("shop")).collect();
    store_records(&store, &more).await;
    let waited = wait_until(|| lag() == 7).await;
    assert!(waited, "lag {} while retrying, 7 records behind", lag());
    forwarder.stop().await;
    store.shutdown().await.unwrap();
}

/// Polls `done` for up to 5 s.
async fn wait_until(done: impl Fn() -> bool) -> bool {
    for _ in 0..250 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

fn spike_records() -> Vec<Value> {
    let t0 = bitville_schemas::parse_ts("2026-11-20T10:00:00.000000Z").unwrap();
    let minute = 60_000_000;
    let mut records = Vec::new();
    for i in 0..(53 * 6) {
        let at = t0 + i * 10_000_000;
        let mut m = record("host_metrics.json", "shop");
        m["ts"] = bitville_schemas::format_micros(at).into();
        m["load1"] = Value::from(if (40 * minute..43 * minute).contains(&(at - t0)) {
            30.0
        } else {
            1.0
        });
        records.push(m);
    }
    for i in 0..20 {
        let mut r = request("shop");
        r["ts"] =
            bitville_schemas::format_micros(t0 + 40 * minute + 5_000_000 + i * 8_000_000).into();
        records.push(r);
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_each_settled_spike_once_with_its_suspects() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let rx = Receiver::start(Addrs::loopback(), None, true)
        .await
        .unwrap();
    store_records(&store, &spike_records()).await;
    let mut cfg = config(outputs(rx.addrs(), false));
    cfg.kinds = vec![EventKind::Spike];
    cfg.spike_interval_s = 1;
    let load_spikes = |got: &[Received]| {
        got.iter()
            .filter(|r| r.message["_metric"] == "load1")
            .cloned()
            .collect::<Vec<_>>()
    };

    let forwarder = Forwarder::start(store.clone(), cfg.clone()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while load_spikes(&rx.messages()).len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no load spike on both outputs: {:?}",
            rx.messages()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A few more looks must not send it again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    forwarder.stop().await;
    let got = rx.messages();
    let spikes = load_spikes(&got);
    assert_eq!(spikes.len(), 2, "one load spike per output: {spikes:?}");
    let m = &spikes[0].message;
    assert_eq!(m["_event"], "spike");
    assert_eq!(m["_project"], "shop");
    assert_eq!(m["host"], "web-1");
    assert_eq!(m["_peak_value"], 30.0);
    assert!(
        m["_suspect1"].as_str().is_some_and(|s| !s.is_empty()),
        "a spike with slow requests in it has suspects: {m}"
    );
    assert!(
        m["full_message"].as_str().unwrap().contains("Suspects"),
        "{m}"
    );
    assert!(rx.violations().is_empty(), "{:?}", rx.violations());

    // After a restart the saved spike cursor keeps it from going out again.
    let count = rx.count();
    let forwarder = Forwarder::start(store.clone(), cfg).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    forwarder.stop().await;
    assert_eq!(
        rx.count(),
        count,
        "spikes sent again after a restart: {:?}",
        &rx.messages()[count as usize..]
    );
    rx.stop().await;
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
