//! Issue 19 over the wire: admin SQL (`POST /v1/sql`) reads the store's
//! tables and nothing else, and a query that runs too long stops, on time
//! and at shutdown.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::json;

const ADMIN: &str = "admin-token-0123456789abcdef";

fn admin_config(dir: &Path) -> processor::config::Config {
    let mut config = test_config(dir);
    config.admin_tokens = vec![ADMIN.to_owned()];
    config
}

/// `POST /v1/sql` with the admin token.
fn sql(client: &mut Client, query: &str, timeout_s: u64) -> Response {
    let body = json!({ "query": query, "timeout_s": timeout_s }).to_string();
    let auth = format!("Bearer {ADMIN}");
    client
        .request(
            "POST",
            "/v1/sql",
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
        .expect("sql request")
}

/// A file that is removed when the test ends, pass or fail.
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Issue 19, item 5: DuckDB's replacement scans turned table names that
/// look like files into file reads while the processor ran with external
/// access on, and the parser wall checked only function names. Every way
/// in is refused with a message now, and plain SELECTs on the store work.
#[test]
fn admin_sql_cannot_reach_host_files() {
    const CANARY: &str = "canary-7f3a9c";
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(admin_config(dir.path()));
    let d = dir.path().display();
    std::fs::write(dir.path().join("secret.csv"), format!("a\n{CANARY}\n")).unwrap();
    std::fs::write(
        dir.path().join("x.json"),
        format!("{{\"a\":\"{CANARY}\"}}\n"),
    )
    .unwrap();
    // A bare `name.csv` is read relative to the working directory.
    let stem = format!("bitville_canary_{}", uuid::Uuid::new_v4().simple());
    let bare = Removed(std::env::current_dir().unwrap().join(format!("{stem}.csv")));
    std::fs::write(&bare.0, format!("a\n{CANARY}\n")).unwrap();

    let r = run.client().post_ndjson(
        TOKEN,
        &ndjson(&[host_metrics(&new_id(), now_micros(), "shop")]),
        false,
    );
    assert_eq!(r.status, 200, "{}", r.text());

    let attempts = [
        format!("SELECT * FROM \"{d}/secret\".csv"),
        format!("SELECT * FROM '{d}/*.json'"),
        format!("SELECT * FROM {stem}.csv"),
        // The parser lets this name through (schema main, plain name);
        // the database refuses the file scan it would become.
        "SELECT * FROM main.csv".to_owned(),
        format!("SUMMARIZE \"{d}/secret\".csv"),
        format!("SUMMARIZE SELECT * FROM '{d}/secret.csv'"),
        format!("SELECT * FROM read_csv('{d}/secret.csv')"),
        format!("SELECT * FROM read_text('{d}/secret.csv')"),
        format!("SELECT (SELECT count(*) FROM '{d}/secret.csv') AS n FROM records"),
        "SET enable_external_access = true".to_owned(),
        "RESET enable_external_access".to_owned(),
        "SET lock_configuration = false".to_owned(),
        format!("COPY records TO '{d}/out.csv'"),
        format!("ATTACH '{d}/other.duckdb' AS other"),
        "INSTALL httpfs".to_owned(),
        "LOAD httpfs".to_owned(),
    ];
    let mut client = run.client();
    for query in &attempts {
        let r = sql(&mut client, query, 5);
        let text = r.text();
        assert_eq!(r.status, 400, "{query}: {text}");
        let error = r.json()["error"].as_str().unwrap_or_default().to_owned();
        eprintln!("{query}\n  -> {error}");
        assert!(
            [
                "refused",
                "only one SELECT",
                "not allowed",
                "disabled by configuration"
            ]
            .iter()
            .any(|word| error.contains(word)),
            "{query}: the message says why: {error}"
        );
        assert!(
            !text.contains(CANARY),
            "{query}: a host file was read: {text}"
        );
    }
    assert!(!dir.path().join("out.csv").exists(), "COPY wrote a file");
    assert!(
        !dir.path().join("other.duckdb").exists(),
        "ATTACH made a file"
    );

    // Ordinary reads of the store still work.
    for (query, expected) in [
        ("SELECT count(*) AS n FROM records", "1"),
        (
            "SELECT count(*) AS n FROM main.host_metrics WHERE project = 'shop'",
            "1",
        ),
        (
            "WITH x AS (SELECT kind FROM records) SELECT kind FROM x",
            "host_metrics",
        ),
    ] {
        let r = sql(&mut client, query, 5);
        assert_eq!(r.status, 200, "{query}: {}", r.text());
        assert_eq!(r.json()["rows"][0][0], expected, "{query}: {}", r.text());
    }
    let r = sql(&mut client, "SUMMARIZE records", 5);
    assert_eq!(r.status, 200, "{}", r.text());
    run.stop();
}
