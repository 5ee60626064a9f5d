//! The whole processor with a `[gelf]` config: a slow request posted to
//! `/v1/ingest` is stored, then forwarded from the store to a local GELF
//! receiver (the project's own, standing in for Graylog, which cannot be
//! installed here) over TCP, HTTP and UDP. While the receiver is away, ingest
//! goes on and /metrics shows the failures and the lag; once it is back, TCP
//! and HTTP catch up with every message and UDP (best effort) does not resend.
//! A restarted processor resumes after its saved cursors.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use processor::gelf::receiver::{Addrs, Received, Receiver};
use serde_json::Value;

/// A kept slow request (1834.5 ms, one statement of 1402.7 ms) stored now.
fn slow_request() -> Value {
    let path = manifest_dir().join("../fixtures/records/request-full.json");
    let mut r: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    r["id"] = new_id().into();
    r["correlation_id"] = new_id().into();
    r["ts"] = ts(now_micros()).into();
    r
}

fn config_text(dir: &std::path::Path, a: Addrs) -> String {
    format!(
        r#"{}
[gelf]
slow_sql_ms = 1000
poll_interval_ms = 50
retry_initial_ms = 50
retry_max_ms = 400

[[gelf.outputs]]
name = "graylog-tcp"
transport = "tcp"
address = "{}"
timeout_s = 5

[[gelf.outputs]]
name = "graylog-http"
transport = "http"
address = "http://{}/gelf"
timeout_s = 5

[[gelf.outputs]]
name = "graylog-udp"
transport = "udp"
address = "{}"
"#,
        test_config_text(dir),
        a.tcp,
        a.http,
        a.udp
    )
}

/// What each stored request must become: its request message and one slow_sql message.
fn expected(requests: &[Value]) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for r in requests {
        let c = r["correlation_id"].as_str().unwrap();
        keys.insert(format!("{c}/request"));
        keys.insert(format!("{c}/slow_sql"));
    }
    keys
}

/// Messages of one transport, deduplicated by correlation id and event.
fn keys(got: &[Received], transport: &str) -> BTreeSet<String> {
    got.iter()
        .filter(|r| r.transport == transport)
        .map(|r| {
            format!(
                "{}/{}",
                r.message["_correlation_id"].as_str().unwrap_or("?"),
                r.message["_event"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// The value of one `/metrics` line, such as `bitville_gelf_lag_records{output="graylog-tcp"}`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn outcome(output: &str, transport: &str, outcome: &str) -> String {
    format!(
        "bitville_gelf_messages_total{{output=\"{output}\",transport=\"{transport}\",outcome=\"{outcome}\"}}"
    )
}

fn lag(output: &str) -> String {
    format!("bitville_gelf_lag_records{{output=\"{output}\"}}")
}

/// Polls until `done` holds, failing with `what` after `timeout`.
fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Posts records one batch each and returns the slowest answer.
fn post(client: &mut Client, records: &[Value]) -> Duration {
    let mut slowest = Duration::ZERO;
    for r in records {
        let started = Instant::now();
        let resp = client.post_ndjson(TOKEN, &ndjson(std::slice::from_ref(r)), false);
        slowest = slowest.max(started.elapsed());
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.json()["accepted"], 1, "{}", resp.text());
    }
    slowest
}

#[test]
fn processor_forwards_stored_slow_requests_to_a_local_receiver_standing_in_for_graylog_and_catches_up()
 {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let rx = rt
        .block_on(Receiver::start(Addrs::loopback(), None, true))
        .unwrap();
    let addrs = rx.addrs();
    let text = config_text(dir.path(), addrs);
    let config =
        processor::config::Config::parse(&text, std::path::Path::new("gelf.toml")).unwrap();
    assert_eq!(config.gelf.outputs.len(), 3);
    let running = Running::start(config.clone());
    let mut client = running.client();

    // One slow request: stored, then forwarded on every output.
    let first = vec![slow_request()];
    post(&mut client, &first);
    let want = expected(&first);
    wait_until(
        Duration::from_secs(30),
        "the first request on every transport",
        || {
            let got = rx.messages();
            ["tcp", "http", "udp"].iter().all(|t| keys(&got, t) == want)
        },
    );
    let got = rx.messages();
    let request = got
        .iter()
        .find(|r| r.transport == "tcp" && r.message["_event"] == "request")
        .unwrap();
    let m = &request.message;
    assert_eq!(
        m["short_message"],
        "POST /checkout?coupon=[REDACTED]&step=2 1835 ms 200"
    );
    assert_eq!(m["_project"], "shop");
    assert_eq!(m["_route"], "checkout-submit");
    assert!(
        m["full_message"].as_str().unwrap().contains("UPDATE stock"),
        "{m}"
    );
    assert!(rx.violations().is_empty(), "{:?}", rx.violations());
    let metrics = running.metrics();
    for (output, transport) in [
        ("graylog-tcp", "tcp"),
        ("graylog-http", "http"),
        ("graylog-udp", "udp"),
    ] {
        assert_eq!(
            metric(&metrics, &outcome(output, transport, "sent")),
            Some(2.0),
            "{output}: {metrics}"
        );
        assert_eq!(
            metric(&metrics, &lag(output)),
            Some(0.0),
            "{output}: {metrics}"
        );
    }

    // Graylog goes away. Ingest must not notice; the forwarder fails, retries, and falls behind.
    let before_outage = rt.block_on(rx.stop());
    let during: Vec<Value> = (0..5).map(|_| slow_request()).collect();
    let slowest = post(&mut client, &during);
    assert!(
        slowest < Duration::from_secs(5),
        "ingest waited {slowest:?} while the receiver was away"
    );
    wait_until(
        Duration::from_secs(30),
        "failures and lag on /metrics during the outage",
        || {
            let text = running.metrics();
            let udp_handled = ["sent", "dropped"]
                .iter()
                .filter_map(|o| metric(&text, &outcome("graylog-udp", "udp", o)))
                .sum::<f64>();
            udp_handled >= 12.0
                && [("graylog-tcp", "tcp"), ("graylog-http", "http")]
                    .iter()
                    .all(|(o, t)| {
                        metric(&text, &outcome(o, t, "failed")).is_some_and(|n| n > 0.0)
                            && metric(&text, &lag(o)).is_some_and(|n| n > 0.0)
                    })
        },
    );

    // Back on the same ports: TCP and HTTP catch up with everything, once after dedupe.
    let rx = rt.block_on(Receiver::start(addrs, None, true)).unwrap();
    let after: Vec<Value> = (0..2).map(|_| slow_request()).collect();
    post(&mut client, &after);
    let all: Vec<Value> = first.iter().chain(&during).chain(&after).cloned().collect();
    let want_all = expected(&all);
    let delivered = |transport: &str| {
        let got: Vec<Received> = before_outage.iter().cloned().chain(rx.messages()).collect();
        keys(&got, transport)
    };
    wait_until(
        Duration::from_secs(60),
        "TCP and HTTP caught up after the outage",
        || delivered("tcp") == want_all && delivered("http") == want_all,
    );
    // UDP is best effort: what went out during the outage is lost, not sent again.
    wait_until(
        Duration::from_secs(30),
        "UDP carries the requests after the outage",
        || expected(&after).is_subset(&delivered("udp")),
    );
    assert!(
        expected(&during).is_disjoint(&delivered("udp")),
        "UDP resent messages of the outage"
    );
    wait_until(Duration::from_secs(10), "lag back to 0", || {
        let text = running.metrics();
        ["graylog-tcp", "graylog-http", "graylog-udp"]
            .iter()
            .all(|o| metric(&text, &lag(o)) == Some(0.0))
    });
    running.stop();
    assert!(rx.violations().is_empty(), "{:?}", rx.violations());

    // A restarted processor resumes after its saved cursors: nothing goes out twice.
    let count = rx.count();
    let running = Running::start(config);
    let mut client = running.client();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        rx.count(),
        count,
        "a restarted processor sent stored messages again"
    );
    let metrics = running.metrics();
    assert_eq!(
        metric(&metrics, &outcome("graylog-tcp", "tcp", "sent")),
        Some(0.0),
        "{metrics}"
    );
    let last = vec![slow_request()];
    post(&mut client, &last);
    wait_until(
        Duration::from_secs(30),
        "a request stored after the restart",
        || {
            let got = rx.messages();
            ["tcp", "http"]
                .iter()
                .all(|t| expected(&last).is_subset(&keys(&got, t)))
        },
    );
    running.stop();
    rt.block_on(rx.stop());
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
