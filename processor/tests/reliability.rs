//! Issue 19 over the wire: one bad line, one datagram, one large or slow
//! client must not stop the processor or take more than the limits allow.

mod common;

use std::time::{Duration, Instant};

use common::*;
use processor::ingest::PANIC_MARKER;

fn wait_for(run: &Running, sql: &str, n: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = run.count(sql);
        if got >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A line that cannot be flattened, or whose handling panics, is refused
/// alone with its line number; the batch is 200 and its good lines stored.
#[test]
fn a_line_that_panics_or_overflows_is_refused_alone() {
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(test_config(dir.path()));
    let now = now_micros();
    let mut huge_start = big_request(&new_id(), now, "shop", 1, 2);
    huge_start["sql"]["queries"][1]["start_ms"] = serde_json::json!(1e300);
    let mut huge_duration = big_request(&new_id(), now, "shop", 1, 1);
    huge_duration["duration_ms"] = serde_json::json!(1e300);
    let mut panics = host_metrics(&new_id(), now, "shop");
    panics["host"] = serde_json::json!(PANIC_MARKER);
    let good = [
        host_metrics(&new_id(), now, "shop"),
        big_request(&new_id(), now, "shop", 2, 2),
    ];
    let body = ndjson(&[
        good[0].clone(),
        huge_start,
        panics,
        huge_duration,
        good[1].clone(),
    ]);
    for gzip_it in [false, true] {
        let body = if gzip_it { gzip(&body) } else { body.clone() };
        let r = run.client().post_ndjson(TOKEN, &body, gzip_it);
        assert_eq!(r.status, 200, "{}", r.text());
        let reply = r.json();
        let rejected = reply["rejected"].as_array().unwrap();
        let lines: Vec<u64> = rejected
            .iter()
            .map(|x| x["line"].as_u64().unwrap())
            .collect();
        assert_eq!(lines, [2, 3, 4], "{reply}");
        assert!(
            rejected[0]["reason"].as_str().unwrap().contains("start_ms"),
            "{reply}"
        );
        assert!(
            rejected[1]["reason"]
                .as_str()
                .unwrap()
                .contains("internal error"),
            "{reply}"
        );
        assert!(
            rejected[2]["reason"]
                .as_str()
                .unwrap()
                .contains("duration_ms"),
            "{reply}"
        );
    }
    assert_eq!(run.count("SELECT count(*) FROM records"), 2);
    let metrics = run.client().get("/metrics").text();
    assert!(
        metrics.contains("bitville_ingest_line_panics_total 2"),
        "{metrics}"
    );
    assert_eq!(run.client().get("/healthz").status, 200);
    run.stop();
}

/// A datagram whose handling panics is counted; later datagrams are stored.
#[test]
fn a_panicking_datagram_does_not_end_the_udp_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(test_config(dir.path()));
    let udp = run.processor().udp_addr().expect("udp on");
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut bad = host_metrics(&new_id(), now_micros(), "shop");
    bad["host"] = serde_json::json!(PANIC_MARKER);
    let mut huge = big_request(&new_id(), now_micros(), "shop", 1, 1);
    huge["sql"]["queries"][0]["start_ms"] = serde_json::json!(1e300);
    for rec in [bad, huge] {
        sock.send_to(format!("{TOKEN}\n{rec}").as_bytes(), udp)
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let good = host_metrics(&new_id(), now_micros(), "shop");
    sock.send_to(format!("{TOKEN}\n{good}").as_bytes(), udp)
        .unwrap();
    assert_eq!(wait_for(&run, "SELECT count(*) FROM records", 1), 1);
    assert_eq!(run.client().get("/healthz").status, 200);
    run.stop();
}

/// A long-lived task that ends before shutdown makes /healthz and /readyz 503.
#[test]
fn a_dead_task_makes_healthz_and_readyz_503() {
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(test_config(dir.path()));
    assert_eq!(run.client().get("/healthz").status, 200);
    let task = {
        let _rt = run.rt.enter();
        run.processor()
            .spawn_watched("probe", async { panic!("a task dies") })
    };
    assert!(run.rt.block_on(task).is_err());
    for path in ["/healthz", "/readyz"] {
        let r = run.client().get(path);
        assert_eq!(r.status, 503, "{path}: {}", r.text());
        assert!(r.text().contains("probe"), "{}", r.text());
    }
    run.stop();
}
