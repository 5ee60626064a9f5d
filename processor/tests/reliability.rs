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
    let metrics = run.metrics();
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

/// Issue 19, item 4: four connections with a valid token that sent their
/// headers and stopped took every ingest slot, and nothing timed out, so
/// every shipper waited for as long as they stayed open. Now a slot is
/// taken only once a body is in, headers and bodies have timeouts, and one
/// address holds at most `max_connections_per_client` connections.
#[test]
fn stalled_clients_time_out_without_blocking_others() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.limits.header_timeout_s = 1;
    config.limits.body_timeout_s = 2;
    config.limits.max_connections_per_client = 4;
    let run = Running::start(config);
    let addr = run.addr();
    let started = Instant::now();

    // Four with a valid token, headers sent, the body begun and never finished.
    let partial = ndjson(&[host_metrics(&new_id(), now_micros(), "shop")]);
    let body_stalled: Vec<_> = (0..4)
        .map(|_| {
            let mut s = connect_from(&run.rt, [127, 0, 0, 1], addr);
            write!(
                s,
                "POST /v1/ingest HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 100000\r\n\r\n"
            )
            .unwrap();
            s.write_all(&partial).unwrap();
            s
        })
        .collect();
    // Four from another address whose headers never end.
    let header_stalled: Vec<_> = (0..4)
        .map(|_| {
            let mut s = connect_from(&run.rt, [127, 0, 0, 3], addr);
            s.write_all(b"POST /v1/ingest HTTP/1.1\r\nHost: t\r\nAuthoriz")
                .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));

    // A fifth connection from the first address is refused at once, saying why.
    let mut fifth = std::io::BufReader::new(connect_from(&run.rt, [127, 0, 0, 1], addr));
    let refused = read_response(&mut fifth).expect("an answer to the fifth connection");
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert!(
        refused.text().contains("max_connections_per_client"),
        "{}",
        refused.text()
    );

    // A good client elsewhere is stored promptly, long before any timeout.
    let batch_started = Instant::now();
    let good = ndjson(&[host_metrics(&new_id(), now_micros(), "shop")]);
    let mut client = Client::over(addr, connect_from(&run.rt, [127, 0, 0, 2], addr));
    let r = client.post_ndjson(TOKEN, &good, false);
    let took = batch_started.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["accepted"], 1, "{}", r.text());
    assert!(
        took < Duration::from_millis(900),
        "the good batch took {took:?}"
    );

    // The stalled ones are closed after their timeouts: the body ones with
    // a 408 that names the limit, the header ones without an answer.
    for s in body_stalled {
        let mut reader = std::io::BufReader::new(s);
        let r = read_response(&mut reader).expect("a 408 to a stalled body");
        let at = started.elapsed();
        assert_eq!(r.status, 408, "{}", r.text());
        assert!(r.text().contains("body_timeout_s"), "{}", r.text());
        assert!(
            (Duration::from_secs(2)..Duration::from_secs(4)).contains(&at),
            "stalled body answered after {at:?}"
        );
        assert_eq!(reader.read(&mut [0; 16]).unwrap_or(0), 0, "then closed");
    }
    for mut s in header_stalled {
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        let at = started.elapsed();
        assert!(
            at < Duration::from_secs(4),
            "stalled header closed after {at:?}"
        );
        assert!(
            !String::from_utf8_lossy(&rest).contains(" 200 "),
            "{}",
            String::from_utf8_lossy(&rest)
        );
    }

    // Their places are given back: the first address is served again.
    let deadline = Instant::now() + Duration::from_secs(5);
    let app = run.processor().app().clone();
    while app.connections.open_from([127, 0, 0, 1].into()) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let again = ndjson(&[host_metrics(&new_id(), now_micros(), "shop")]);
    let mut client = Client::over(addr, connect_from(&run.rt, [127, 0, 0, 1], addr));
    assert_eq!(client.post_ndjson(TOKEN, &again, false).status, 200);
    assert_eq!(run.count("SELECT count(*) FROM records"), 2);
    let metrics = run.metrics();
    assert!(
        metrics.contains("bitville_ingest_connections_refused_total{reason=\"per_client\"} 1"),
        "{metrics}"
    );
    run.stop();
}

/// A processor with one GELF output, `graylog-udp`, sending uncompressed
/// datagrams to the returned socket (read timeout 10 s).
fn with_gelf_over_udp(dir: &std::path::Path) -> (Running, std::net::UdpSocket) {
    let graylog = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    graylog
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let text = format!(
        "{}\n[gelf]\npoll_interval_ms = 50\n\n[[gelf.outputs]]\nname = \"graylog-udp\"\n\
         transport = \"udp\"\naddress = \"{}\"\ncompression = \"none\"\n",
        test_config_text(dir),
        graylog.local_addr().unwrap()
    );
    let config =
        processor::config::Config::parse(&text, std::path::Path::new("gelf.toml")).unwrap();
    (Running::start(config), graylog)
}

/// Issue 19: the GELF output tasks were not watched, so an output whose
/// task died left `/healthz` at 200 while nothing reached Graylog. A
/// stored record that makes the output task panic (a test marker) now
/// makes /healthz and /readyz 503 naming the output's task.
#[test]
fn a_dead_gelf_output_task_makes_healthz_and_readyz_503() {
    let dir = tempfile::tempdir().unwrap();
    // Graylog's place: a socket nobody reads (UDP needs no answer).
    let (run, _graylog) = with_gelf_over_udp(dir.path());
    let good = big_request(&new_id(), now_micros(), "shop", 1, 1);
    let r = run
        .client()
        .post_ndjson(TOKEN, &ndjson(std::slice::from_ref(&good)), false);
    assert_eq!(r.json()["accepted"], 1, "{}", r.text());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(run.client().get("/healthz").status, 200, "a good record");

    let mut bad = big_request(&new_id(), now_micros(), "shop", 1, 1);
    bad["host"] = serde_json::json!(processor::gelf::build::TASK_PANIC_MARKER);
    let r = run.client().post_ndjson(TOKEN, &ndjson(&[bad]), false);
    assert_eq!(r.json()["accepted"], 1, "{}", r.text());
    let deadline = Instant::now() + Duration::from_secs(10);
    while run.client().get("/healthz").status == 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for path in ["/healthz", "/readyz"] {
        let r = run.client().get(path);
        assert_eq!(r.status, 503, "{path}: {}", r.text());
        assert!(r.text().contains("gelf:graylog-udp"), "{}", r.text());
    }
    run.stop();
}

/// A stored record whose messages cannot be built (a bug in the builder:
/// here a test marker that panics) cost the whole output: the panic ended
/// its task, and after a restart it stopped at the same record again. Now
/// that record is skipped and counted, and the records after it are sent.
#[test]
fn a_record_the_gelf_builder_cannot_handle_is_skipped_and_the_output_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (run, graylog) = with_gelf_over_udp(dir.path());
    let mut bad = big_request(&new_id(), now_micros(), "shop", 1, 1);
    bad["host"] = serde_json::json!(processor::gelf::build::PANIC_MARKER);
    let mut after = big_request(&new_id(), now_micros(), "shop", 1, 1);
    after["host"] = serde_json::json!("web-after-the-bad-one");
    let r = run
        .client()
        .post_ndjson(TOKEN, &ndjson(&[bad, after]), false);
    assert_eq!(r.json()["accepted"], 2, "{}", r.text());
    let mut buf = vec![0u8; 65_536];
    let n = graylog
        .recv(&mut buf)
        .expect("the record after the bad one is forwarded");
    let message: serde_json::Value =
        serde_json::from_slice(&buf[..n]).expect("an uncompressed GELF message");
    assert_eq!(message["host"], "web-after-the-bad-one", "{message}");
    let metrics = run.metrics();
    assert!(
        metrics.contains("bitville_gelf_build_errors_total{output=\"graylog-udp\"} 1"),
        "{metrics}"
    );
    assert_eq!(run.client().get("/healthz").status, 200);
    run.stop();
}
