//! The analysis API over real HTTP: a recorded spike ingested through
//! `POST /v1/ingest` of a processor on port 0, then read through the
//! analysis router with project and admin tokens.

mod common;

#[path = "../examples/spike_fixture.rs"]
mod spike_fixture;

use common::{Client, OTHER_TOKEN, Running, TOKEN, gzip, test_config_text};
use serde_json::Value;
use spike_fixture::{BASELINE_S, DEFAULT_START, SECOND, SPIKE_S};

const ADMIN: &str = "admin-token-0123456789abcdef";

fn t(micros: i64) -> String {
    bitville_schemas::format_micros(micros)
}

fn get(c: &mut Client, token: &str, path: &str) -> common::Response {
    c.request(
        "GET",
        path,
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    )
    .expect("GET")
}

#[test]
fn api_reports_the_recorded_spike_to_its_project_only() {
    let dir = tempfile::tempdir().unwrap();
    // Keep the dated fixture whatever today's date: retention would drop it.
    let text = format!(
        "admin_tokens = [\"{ADMIN}\"]\n{}\n[retention]\ndays = 36500\n",
        test_config_text(dir.path())
    );
    let config =
        processor::config::Config::parse(&text, std::path::Path::new("test.toml")).expect("config");
    let running = Running::start(config);

    let mut ingest = running.client();
    for (_, ndjson) in spike_fixture::generate("lock_contention", DEFAULT_START) {
        let lines: Vec<&str> = ndjson.lines().collect();
        for chunk in lines.chunks(1000) {
            let body = chunk.join("\n") + "\n";
            let resp = ingest.post_ndjson(TOKEN, &gzip(body.as_bytes()), true);
            assert_eq!(resp.status, 200, "{}", resp.text());
            assert!(
                resp.json()["rejected"].as_array().unwrap().is_empty(),
                "{}",
                resp.text()
            );
        }
    }

    // The processor serves the analysis on its own port, next to ingest.
    let mut c = running.client();

    let (from, to) = (
        DEFAULT_START + BASELINE_S * SECOND,
        DEFAULT_START + (BASELINE_S + SPIKE_S) * SECOND,
    );
    let report_path = format!(
        "/v1/report?from={}&to={}&baseline_from={}&baseline_to={}",
        t(from),
        t(to),
        t(DEFAULT_START),
        t(from)
    );

    let resp = get(&mut c, TOKEN, &report_path);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let report = resp.json();
    assert_eq!(
        report["suspects"][0]["kind"], "lock_blocker",
        "{:#}",
        report["suspects"][0]
    );
    assert_eq!(
        report["suspects"][0]["evidence"]["blocker_url"],
        spike_fixture::LOCK_BLOCKER_URL
    );
    // The report says what happened in one line, built once for every
    // client (the CLI, the demo and the web UI each wrote their own before).
    let verdict = report["verdict"].as_str().unwrap_or_default();
    assert!(
        verdict.starts_with(&format!(
            "POST stock-recount ({}) held a lock",
            spike_fixture::LOCK_BLOCKER_URL
        )),
        "{verdict}"
    );
    // An empty project's report says so instead of naming a suspect.
    let empty = get(&mut c, OTHER_TOKEN, &report_path).json();
    assert_eq!(empty["verdict"], "No data: the window has no requests.");

    // Another project's token sees an empty store; asking for "shop" does not help it.
    let resp = get(&mut c, OTHER_TOKEN, &format!("{report_path}&project=shop"));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["suspects"].as_array().map(Vec::len), Some(0));
    // The admin sees it, and may narrow to a project.
    assert_eq!(
        get(&mut c, ADMIN, &report_path).json()["suspects"][0]["kind"],
        "lock_blocker"
    );
    assert_eq!(
        get(&mut c, ADMIN, &format!("{report_path}&project=blog")).json()["suspects"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );

    // Without a token, with a bad one, or with a bad window: clear refusals.
    assert_eq!(c.get(&report_path).status, 401);
    assert_eq!(get(&mut c, "nope", &report_path).status, 401);
    let bad = get(
        &mut c,
        TOKEN,
        &format!("/v1/report?from={}&to={}", t(to), t(from)),
    );
    assert_eq!(bad.status, 400);
    assert!(
        bad.json()["error"]
            .as_str()
            .unwrap()
            .contains("not after the start"),
        "{}",
        bad.text()
    );

    let spikes = get(&mut c, TOKEN, "/v1/spikes").json();
    assert!(
        spikes["spikes"].as_array().is_some_and(|s| !s.is_empty()),
        "{spikes:#}"
    );

    let top = get(
        &mut c,
        TOKEN,
        &format!("/v1/top?from={}&to={}&by=sql&limit=3", t(from), t(to)),
    )
    .json();
    assert_eq!(top["entries"].as_array().map(Vec::len), Some(3), "{top:#}");

    let list = get(
        &mut c,
        TOKEN,
        &format!(
            "/v1/requests?from={}&to={}&min_ms=2000&limit=3",
            t(from),
            t(to)
        ),
    )
    .json();
    let id = list["requests"][0]["correlation_id"]
        .as_str()
        .expect("a slow request")
        .to_owned();
    let detail = get(&mut c, TOKEN, &format!("/v1/requests/{id}"));
    assert_eq!(detail.status, 200, "{}", detail.text());
    assert_eq!(
        get(&mut c, OTHER_TOKEN, &format!("/v1/requests/{id}")).status,
        404
    );
    let svg = get(&mut c, TOKEN, &format!("/v1/requests/{id}/flamegraph.svg"));
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    assert!(svg.text().contains("<svg"));

    // SQL: admins only, SELECT only.
    let sql = |c: &mut Client, token: &str, q: &str| {
        let body = serde_json::to_vec(&serde_json::json!({ "query": q })).unwrap();
        let auth = format!("Bearer {token}");
        c.request(
            "POST",
            "/v1/sql",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            &body,
        )
        .unwrap()
    };
    let ok = sql(&mut c, ADMIN, "SELECT count(*) AS n FROM pg_activity");
    assert_eq!(ok.status, 200, "{}", ok.text());
    let n: i64 = ok.json()["rows"][0][0].as_str().unwrap().parse().unwrap();
    assert!(n > 100);
    assert_eq!(sql(&mut c, TOKEN, "SELECT 1").status, 403);
    let refused = sql(&mut c, ADMIN, "DELETE FROM requests");
    assert_eq!(refused.status, 400, "{}", refused.text());
    let after: Value = sql(&mut c, ADMIN, "SELECT count(*) FROM requests").json();
    assert_ne!(after["rows"][0][0], "0");

    // The binary's `report` and `sql` ask the same API over HTTP (reqwest);
    // a refusal comes back as the server's message.
    let url = format!("http://{}", running.addr());
    let cli = |token: &str, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_processor"))
            .args(args)
            .args(["--url", &url, "--token", token, "--json"])
            .env_remove("BITVILLE_PROCESSOR_CONFIG")
            .output()
            .expect("run processor")
    };
    let out = cli(
        TOKEN,
        &[
            "report",
            "spike",
            "--from",
            &t(from),
            "--to",
            &t(to),
            "--baseline-from",
            &t(DEFAULT_START),
            "--baseline-to",
            &t(from),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(printed["suspects"], report["suspects"]);
    let out = cli(ADMIN, &["sql", "SELECT count(*) AS n FROM pg_activity"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON result");
    // `sql --json` prints a count as a JSON number, not as its text.
    assert_eq!(printed["rows"][0][0].as_i64(), Some(n), "{printed}");
    let out = cli(TOKEN, &["sql", "SELECT 1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/v1/sql: HTTP 403"), "{stderr}");

    running.stop();
}
