//! Ingest over real HTTP on loopback into a real DuckDB file: good batches,
//! every kind of bad input with its status and message, duplicates, limits.

mod common;

use common::*;
use serde_json::json;

/// Every bad input gets its status and message; after each, the server is up
/// and nothing stored before is lost.
#[test]
fn bad_input_of_every_kind_is_refused_clearly_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(test_config(dir.path()));
    let mut c = run.client();
    let now = now_micros();

    let good: Vec<_> = (0..20)
        .map(|i| pg_activity(&new_id(), now - i * 1000, "shop"))
        .collect();
    let r = c.post_ndjson(TOKEN, &ndjson(&good), false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"accepted": 20, "duplicates": 0, "rejected": []})
    );
    let stored = || run.count("SELECT count(*) FROM records");
    assert_eq!(stored(), 20);
    assert_eq!(
        run.count("SELECT count(*) FROM pg_activity"),
        60,
        "three backends per sample"
    );

    let one = ndjson(&[host_metrics(&new_id(), now, "shop")]);
    let gz = gzip(&one);
    type Check = Box<dyn Fn(&Response)>;
    let whole = |status: u16, needle: &'static str| -> Check {
        Box::new(move |r: &Response| {
            assert_eq!(r.status, status, "{}", r.text());
            let err = r.json()["error"].as_str().unwrap_or_default().to_owned();
            assert!(err.contains(needle), "error {err:?} lacks {needle:?}");
        })
    };
    let line = |needle: &'static str| -> Check {
        Box::new(move |r: &Response| {
            assert_eq!(r.status, 200, "{}", r.text());
            let v = r.json();
            assert_eq!(v["accepted"], 0, "{v}");
            let reason = v["rejected"][0]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(
                reason.contains(needle),
                "reason {reason:?} lacks {needle:?}"
            );
            assert_eq!(v["rejected"][0]["line"], 1);
        })
    };
    let mut wrong_type = host_metrics(&new_id(), now, "shop");
    wrong_type["load1"] = json!("high");
    let mut missing = host_metrics(&new_id(), now, "shop");
    missing.as_object_mut().unwrap().remove("load5");
    let mut unknown_kind = host_metrics(&new_id(), now, "shop");
    unknown_kind["kind"] = json!("weather");
    let mut future_v = host_metrics(&new_id(), now, "shop");
    future_v["v"] = json!(2);
    let bomb = gzip(&vec![b' '; 200 << 20]);
    let huge_line = {
        let mut l = b"{\"v\":1,\"kind\":\"pg_log\",\"message\":\"".to_vec();
        l.extend(std::iter::repeat_n(b'x', 100 << 20));
        l.extend_from_slice(b"\"}\n");
        l
    };

    let cases: Vec<(&str, &str, Vec<u8>, bool, Check)> = vec![
        (
            "truncated gzip",
            TOKEN,
            gz[..gz.len() / 2].to_vec(),
            true,
            whole(400, "not valid gzip"),
        ),
        (
            "gzip bomb",
            TOKEN,
            bomb,
            true,
            whole(413, "max_decompressed_bytes"),
        ),
        (
            "invalid UTF-8",
            TOKEN,
            b"{\"v\":1,\"kind\":\"\xff\xfe\"}\n".to_vec(),
            false,
            line("not valid UTF-8"),
        ),
        (
            "100 MiB line, plain",
            TOKEN,
            huge_line.clone(),
            false,
            whole(413, "max_body_bytes"),
        ),
        (
            "100 MiB line, gzip",
            TOKEN,
            gzip(&huge_line),
            true,
            line("over max_line_bytes"),
        ),
        (
            "wrong type",
            TOKEN,
            ndjson(&[wrong_type]),
            false,
            line("/load1"),
        ),
        (
            "missing field",
            TOKEN,
            ndjson(&[missing]),
            false,
            line("load5"),
        ),
        (
            "unknown kind",
            TOKEN,
            ndjson(&[unknown_kind]),
            false,
            line("unknown kind \"weather\""),
        ),
        (
            "future v",
            TOKEN,
            ndjson(&[future_v]),
            false,
            line("unsupported schema version 2"),
        ),
        (
            "wrong token",
            "no-such-token-0123456789",
            one.clone(),
            false,
            whole(401, "unknown token"),
        ),
        (
            "another project's record",
            OTHER_TOKEN,
            one.clone(),
            false,
            line("is not the token's project \"blog\""),
        ),
        (
            "empty body",
            TOKEN,
            Vec::new(),
            false,
            whole(400, "body is empty"),
        ),
        (
            "blank lines only",
            TOKEN,
            b"\n\n  \n".to_vec(),
            false,
            whole(400, "body is empty"),
        ),
        (
            "not JSON",
            TOKEN,
            b"hello\n".to_vec(),
            false,
            line("not JSON"),
        ),
    ];
    for (name, token, body, gz, check) in cases {
        let r = c.post_ndjson(token, &body, gz);
        eprintln!(
            "{name}: {} {}",
            r.status,
            r.text().chars().take(200).collect::<String>()
        );
        check(&r);
        assert_eq!(c.get("/healthz").status, 200, "server down after {name}");
        assert_eq!(stored(), 20, "records changed after {name}");
    }

    let r = c.request("POST", "/v1/ingest", &[], &one).unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "missing Authorization: Bearer token");

    // Not on the ingest port: /metrics names every project.
    assert_eq!(c.get("/metrics").status, 404);
    let metrics = run.metrics();
    assert!(
        metrics.contains(
            "bitville_records_total{project=\"shop\",kind=\"pg_activity\",outcome=\"accepted\"} 20"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("bitville_store_rows{table=\"pg_activity\"} 60"),
        "{metrics}"
    );
    assert!(
        metrics.contains("bitville_ingest_responses_total{status=\"413\"} 2"),
        "{metrics}"
    );
    run.stop();
}

/// Good lines of a mixed batch are stored, bad ones named by line; every
/// kind lands in its table with its join keys filled.
#[test]
fn mixed_batches_store_the_good_lines_in_every_table() {
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(test_config(dir.path()));
    let mut c = run.client();
    let now = now_micros();
    let req = big_request(&new_id(), now, "shop", 500, 100);
    let mut body = ndjson(&[req.clone(), pg_activity(&new_id(), now, "shop")]);
    body.extend_from_slice(b"{broken\n");
    body.extend(ndjson(&[host_metrics(&new_id(), now, "shop")]));
    let r = c.post_ndjson(TOKEN, &gzip(&body), true);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["accepted"], 3, "{v}");
    assert_eq!(v["rejected"][0]["line"], 3, "{v}");
    assert_eq!(run.count("SELECT count(*) FROM requests"), 1);
    assert_eq!(run.count("SELECT count(*) FROM request_sql"), 100);
    assert_eq!(run.count("SELECT count(*) FROM request_profile"), 500);
    assert_eq!(
        run.count("SELECT count(DISTINCT fingerprint) FROM request_sql"),
        1,
        "literals normalized away"
    );
    assert_eq!(
        run.count(&format!(
            "SELECT count(*) FROM request_sql s JOIN requests r USING (seq) WHERE r.correlation_id = '{}'",
            req["correlation_id"].as_str().unwrap()
        )),
        100
    );
    assert_eq!(
        run.count("SELECT count(*) FROM pg_activity WHERE correlation_id IS NOT NULL"),
        1
    );
    assert_eq!(
        run.count("SELECT count(*) FROM pg_activity WHERE list_contains(blocking_pids, 102)"),
        1
    );
    assert_eq!(
        run.count("SELECT count(*) FROM host_metrics WHERE load1 = 3.5"),
        1
    );
    assert_eq!(
        run.count("SELECT count(*) FROM records WHERE raw->>'$.kind' = kind"),
        3,
        "the original record is kept as JSON"
    );
    run.stop();
}

/// A record id stored once is a duplicate afterwards: in the same batch, in
/// a later batch, and after a restart of the processor on the same file.
#[test]
fn duplicates_are_stored_once_across_batches_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_micros();
    let records: Vec<_> = (0..50)
        .map(|i| host_metrics(&new_id(), now - i * 1_000_000, "shop"))
        .collect();
    let mut twice = records[..10].to_vec();
    twice.extend_from_slice(&records[..10]);

    let run = Running::start(test_config(dir.path()));
    let r = run.client().post_ndjson(TOKEN, &ndjson(&twice), false);
    assert_eq!(
        r.json(),
        json!({"accepted": 10, "duplicates": 10, "rejected": []})
    );
    let r = run
        .client()
        .post_ndjson(TOKEN, &ndjson(&records[..30]), false);
    assert_eq!(
        r.json(),
        json!({"accepted": 20, "duplicates": 10, "rejected": []})
    );
    run.stop();

    let run = Running::start(test_config(dir.path()));
    let r = run.client().post_ndjson(TOKEN, &ndjson(&records), false);
    assert_eq!(
        r.json(),
        json!({"accepted": 20, "duplicates": 30, "rejected": []})
    );
    assert_eq!(run.count("SELECT count(*) FROM records"), 50);
    assert_eq!(run.count("SELECT count(DISTINCT id) FROM records"), 50);
    assert_eq!(
        run.count("SELECT count(DISTINCT seq) FROM host_metrics"),
        50
    );
    run.stop();
}

/// Issue 19: the dedupe key was the id alone, across projects, so project
/// B's record was refused as a duplicate when project A had stored the same
/// id first. The key is the project and the id: each project's ids are its
/// own, in one batch (the direct append) and across batches (the staged
/// dedupe after a redelivery), before and after a restart.
#[test]
fn the_same_id_in_two_projects_is_stored_for_each() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_micros();
    let ids: Vec<String> = (0..3).map(|_| new_id()).collect();
    let of = |project: &str| -> Vec<_> {
        ids.iter()
            .map(|id| host_metrics(id, now, project))
            .collect()
    };
    let run = Running::start(test_config(dir.path()));
    let r = run.client().post_ndjson(TOKEN, &ndjson(&of("shop")), false);
    assert_eq!(
        r.json(),
        json!({"accepted": 3, "duplicates": 0, "rejected": []})
    );
    let r = run
        .client()
        .post_ndjson(OTHER_TOKEN, &ndjson(&of("blog")), false);
    assert_eq!(
        r.json(),
        json!({"accepted": 3, "duplicates": 0, "rejected": []})
    );
    // A redelivery to each project is a duplicate of its own first copy only.
    let r = run.client().post_ndjson(TOKEN, &ndjson(&of("shop")), false);
    assert_eq!(
        r.json(),
        json!({"accepted": 0, "duplicates": 3, "rejected": []})
    );
    run.stop();
    let run = Running::start(test_config(dir.path()));
    let mut mixed = of("blog");
    mixed.push(host_metrics(&new_id(), now, "blog"));
    let r = run
        .client()
        .post_ndjson(OTHER_TOKEN, &ndjson(&mixed), false);
    assert_eq!(
        r.json(),
        json!({"accepted": 1, "duplicates": 3, "rejected": []})
    );
    assert_eq!(
        run.count("SELECT count(*) FROM records WHERE project = 'shop'"),
        3
    );
    assert_eq!(
        run.count("SELECT count(*) FROM records WHERE project = 'blog'"),
        4
    );
    run.stop();
}

/// Issue 19: a record naming "project" twice was stored under the last
/// copy while its raw line said another project too. It is refused alone.
#[test]
fn a_record_naming_a_key_twice_is_refused_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(test_config(dir.path()));
    let good = host_metrics(&new_id(), now_micros(), "shop").to_string();
    let twice = good.replacen(
        r#""project":"shop""#,
        r#""project":"blog","project":"shop""#,
        1,
    );
    assert_ne!(twice, good, "the record has a project key to repeat");
    let body = format!("{twice}\n{good}\n");
    let r = run.client().post_ndjson(TOKEN, body.as_bytes(), false);
    let reply = r.json();
    assert_eq!(reply["accepted"], 1, "{reply}");
    assert_eq!(reply["rejected"][0]["line"], 1, "{reply}");
    assert!(
        reply["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains(r#"key "project" appears more than once"#),
        "{reply}"
    );
    run.stop();
}

/// Issue 19: a record older than retention was answered "accepted" and then
/// vanished at the next retention run. It is refused with the reason, by
/// the configured retention (7 days here), and a record inside it is kept.
#[test]
fn a_record_older_than_retention_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(test_config(dir.path()));
    let day = 86_400_000_000i64;
    let now = now_micros();
    let body = ndjson(&[
        host_metrics(&new_id(), now - 9 * day, "shop"),
        host_metrics(&new_id(), now - 6 * day, "shop"),
    ]);
    let reply = run.client().post_ndjson(TOKEN, &body, false).json();
    assert_eq!(reply["accepted"], 1, "{reply}");
    assert_eq!(reply["rejected"][0]["line"], 1, "{reply}");
    let reason = reply["rejected"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("older than the 7 days the store keeps (retention.days)"),
        "{reason}"
    );
    run.stop();
}

/// Over the per-client rate the answer is 429 with a Retry-After in seconds.
#[test]
fn rate_limit_answers_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.limits.requests_per_minute = 3;
    let run = Running::start(config);
    let mut c = run.client();
    let body = ndjson(&[host_metrics(&new_id(), now_micros(), "shop")]);
    for _ in 0..3 {
        assert_eq!(c.post_ndjson(TOKEN, &body, false).status, 200);
    }
    let r = c.post_ndjson(TOKEN, &body, false);
    assert_eq!(r.status, 429, "{}", r.text());
    let wait: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("over 3 requests per minute")
    );
    run.stop();
}

/// A batch over the record cap is refused whole with 413.
#[test]
fn too_many_records_is_413() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.limits.max_records_per_batch = 5;
    let run = Running::start(config);
    let now = now_micros();
    let records: Vec<_> = (0..6)
        .map(|_| host_metrics(&new_id(), now, "shop"))
        .collect();
    let r = run.client().post_ndjson(TOKEN, &ndjson(&records), false);
    assert_eq!(r.status, 413);
    assert_eq!(
        r.json()["error"],
        "batch has more than max_records_per_batch (5) records"
    );
    assert_eq!(run.count("SELECT count(*) FROM records"), 0);
    run.stop();
}

/// UDP: a good datagram is stored; bad ones are counted, never stored.
#[test]
fn udp_datagrams_are_checked_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(test_config(dir.path()));
    let udp = run.processor().udp_addr().expect("udp on");
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let rec = serde_json::to_string(&host_metrics(&new_id(), now_micros(), "shop")).unwrap();
    sock.send_to(format!("{TOKEN}\n{rec}").as_bytes(), udp)
        .unwrap();
    sock.send_to(format!("bad-token-0123456789abc\n{rec}").as_bytes(), udp)
        .unwrap();
    sock.send_to(format!("{OTHER_TOKEN}\n{rec}").as_bytes(), udp)
        .unwrap();
    sock.send_to(b"no newline at all", udp).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while run.count("SELECT count(*) FROM records") < 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(run.count("SELECT count(*) FROM records"), 1);
    let metrics = run.metrics();
    for needle in [
        "reason=\"token\"} 1",
        "reason=\"invalid\"} 1",
        "reason=\"no_token_line\"} 1",
    ] {
        assert!(metrics.contains(needle), "{needle} in {metrics}");
    }
    run.stop();
}

/// SIGHUP-style reload: a token added to the config works without a restart.
#[test]
fn reload_takes_new_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let run = Running::start(config.clone());
    let body = ndjson(&[host_metrics(&new_id(), now_micros(), "ops")]);
    let new_token = "new-token-0123456789abcdef";
    assert_eq!(
        run.client().post_ndjson(new_token, &body, false).status,
        401
    );
    let mut reloaded = config;
    reloaded.tokens.push(processor::config::TokenConfig {
        token: new_token.into(),
        project: "ops".into(),
    });
    run.processor().app().reload(&reloaded);
    let r = run.client().post_ndjson(new_token, &body, false);
    assert_eq!(r.json()["accepted"], 1, "{}", r.text());
    assert_eq!(run.client().get("/readyz").status, 200);
    run.stop();
}
