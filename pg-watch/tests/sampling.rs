//! Activity samples and statement deltas against a real PostgreSQL 15, and
//! the version adaptation on recorded column sets of older servers.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use bitville_schemas::Kind;
use common::Cluster;
use pg_watch::activity::{ActivitySampler, MARKER};
use pg_watch::statements::StatementsCollector;

const CORRELATION: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

fn cluster() -> &'static Cluster {
    static C: OnceLock<Cluster> = OnceLock::new();
    C.get_or_init(|| {
        let c = Cluster::start("pg_stat_statements.track = top\n");
        c.psql("CREATE EXTENSION pg_stat_statements; CREATE TABLE acct (id int PRIMARY KEY, v int); INSERT INTO acct VALUES (1, 0)");
        c
    })
}

fn validate(value: &serde_json::Value, kind: Kind) {
    match bitville_schemas::validate(value) {
        Ok(k) => assert_eq!(k, kind),
        Err(e) => panic!("record does not validate: {e}\n{value:#}"),
    }
}

#[tokio::test]
async fn tagged_and_blocked_backends_show_up_with_their_id_and_blocker() {
    let c = cluster();
    let tagged = c.connect(&format!("bitville:{CORRELATION}")).await;
    let blocker = c.connect("blocker").await;
    let waiter = c.connect("waiter").await;
    let blocker_pid: i32 = blocker
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let waiter_pid: i32 = waiter
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let sleeping =
        tokio::spawn(async move { tagged.simple_query("SELECT pg_sleep(3)").await.map(|_| ()) });
    blocker
        .batch_execute("BEGIN; UPDATE acct SET v = v + 1 WHERE id = 1")
        .await
        .unwrap();
    let waiting = tokio::spawn(async move {
        waiter
            .batch_execute("UPDATE acct SET v = v + 1 WHERE id = 1")
            .await
    });

    let watcher = c.connect("bitville-pg-watch").await;
    let version: i32 = watcher
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .unwrap()
        .get(0);
    let mut sampler = ActivitySampler::new(version as u32);
    let mut found = None;
    for _ in 0..40 {
        let record = sampler.sample(&watcher, "shop", "db-1").await.unwrap();
        let has_tagged = record
            .backends
            .iter()
            .any(|b| b.correlation_id.as_deref() == Some(CORRELATION));
        let has_blocked = record
            .backends
            .iter()
            .any(|b| b.pid == waiter_pid && b.blocking_pids.is_some());
        if has_tagged && has_blocked {
            found = Some(record);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let record = found.expect("a sample with the tagged and the blocked backend");
    validate(&serde_json::to_value(&record).unwrap(), Kind::PgActivity);
    let tagged = record
        .backends
        .iter()
        .find(|b| b.correlation_id.as_deref() == Some(CORRELATION))
        .unwrap();
    assert_eq!(tagged.query.as_deref(), Some("SELECT pg_sleep(3)"));
    assert_eq!(tagged.state.as_deref(), Some("active"));
    assert!(tagged.query_start.as_deref().unwrap().ends_with('Z'));
    let blocked = record
        .backends
        .iter()
        .find(|b| b.pid == waiter_pid)
        .unwrap();
    assert_eq!(blocked.wait_event_type.as_deref(), Some("Lock"));
    assert_eq!(blocked.blocking_pids.as_deref(), Some(&[blocker_pid][..]));
    let holder = record
        .backends
        .iter()
        .find(|b| b.pid == blocker_pid)
        .expect("the idle-in-transaction blocker");
    assert_eq!(holder.state.as_deref(), Some("idle in transaction"));
    assert_eq!(
        holder.blocking_pids, None,
        "pg_blocking_pids runs only for Lock waits"
    );
    assert!(
        record
            .backends
            .iter()
            .all(|b| !b.query.as_deref().unwrap_or("").starts_with(MARKER)),
        "pg-watch's own query is left out"
    );
    assert!(record.sample_ms.unwrap() >= 0.0);

    blocker.batch_execute("COMMIT").await.unwrap();
    waiting.await.unwrap().unwrap();
    sleeping.await.unwrap().unwrap();
}

#[tokio::test]
async fn statement_deltas_survive_a_reset() {
    let c = cluster();
    let app = c.connect("app").await;
    let watcher = c.connect("bitville-pg-watch").await;
    let mut collector = StatementsCollector::detect(&watcher, 150_000)
        .await
        .unwrap()
        .expect("pg_stat_statements installed");
    let run = |n: usize, tag: &'static str| {
        let app = &app;
        async move {
            for i in 0..n {
                app.query(
                    &format!("SELECT count(*) FROM acct WHERE v >= $1 /* {tag} */"),
                    &[&(i as i32)],
                )
                .await
                .unwrap();
            }
        }
    };
    let find = |r: &bitville_schemas::records::PgStatementsRecord, tag: &str| {
        r.entries
            .iter()
            .find(|e| {
                e.fingerprint.as_deref().is_some_and(|f| f.contains("acct"))
                    && e.query.as_deref().is_none_or(|q| q.contains(tag))
            })
            .cloned()
    };

    assert!(
        collector
            .collect(&watcher, "shop", "db-1")
            .await
            .unwrap()
            .is_none(),
        "the first snapshot is a baseline"
    );
    run(5, "a").await;
    let r = collector
        .collect(&watcher, "shop", "db-1")
        .await
        .unwrap()
        .expect("deltas");
    validate(&serde_json::to_value(&r).unwrap(), Kind::PgStatements);
    let e = find(&r, "a").expect("the statement's entry");
    assert_eq!(e.calls, 5);
    assert!(
        e.query
            .as_deref()
            .unwrap()
            .contains("SELECT count(*) FROM acct"),
        "the text goes out once, when new"
    );
    assert!(
        r.entries
            .iter()
            .all(|e| !e.query.as_deref().unwrap_or("").contains(MARKER)),
        "pg-watch's own statements are left out"
    );
    assert_eq!(r.extension_version.as_deref(), Some("1.10"));

    run(2, "a").await;
    let r = collector
        .collect(&watcher, "shop", "db-1")
        .await
        .unwrap()
        .expect("deltas");
    let e = find(&r, "a").unwrap();
    assert_eq!(e.calls, 2);
    assert_eq!(e.query, None, "the text is not sent again");

    app.batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .unwrap();
    run(3, "a").await;
    assert!(
        collector
            .collect(&watcher, "shop", "db-1")
            .await
            .unwrap()
            .is_none(),
        "a reset starts a new baseline"
    );
    assert_eq!(
        collector.last_baseline,
        Some("pg_stat_statements_info.stats_reset changed")
    );
    run(4, "a").await;
    let r = collector
        .collect(&watcher, "shop", "db-1")
        .await
        .unwrap()
        .expect("deltas after the reset");
    assert_eq!(find(&r, "a").unwrap().calls, 4);
}

/// Reads a fixture's `column[ = expression]` lines.
fn columns(name: &str) -> Vec<(String, String)> {
    let path = manifest_dir().join("tests/fixtures").join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(" = ") {
            Some((c, expr)) => (c.trim().to_owned(), expr.trim().to_owned()),
            None => (l.trim().to_owned(), l.trim().to_owned()),
        })
        .collect()
}

fn select_list(cols: &[(String, String)]) -> String {
    cols.iter()
        .map(|(c, e)| format!("{e} AS {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test]
async fn activity_queries_run_on_older_column_sets() {
    let c = cluster();
    let client = c.connect("fixture").await;
    for (version, fixture) in [
        (90_600u32, "pg_stat_activity.90600.columns"),
        (120_000, "pg_stat_activity.120000.columns"),
    ] {
        let schema = format!("pg{version}");
        let cols = columns(fixture);
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
                 CREATE VIEW {schema}.pg_stat_activity AS SELECT {} FROM pg_catalog.pg_stat_activity;
                 SET search_path = {schema}, pg_catalog",
                select_list(&cols)
            ))
            .await
            .unwrap();
        let other = c.connect(&format!("bitville:{CORRELATION}")).await;
        let busy =
            tokio::spawn(
                async move { other.simple_query("SELECT pg_sleep(0.5)").await.map(|_| ()) },
            );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut sampler = ActivitySampler::new(version);
        let record = sampler
            .sample(&client, "shop", "db-1")
            .await
            .unwrap_or_else(|e| panic!("{version}: {e}"));
        busy.await.unwrap().unwrap();
        validate(&serde_json::to_value(&record).unwrap(), Kind::PgActivity);
        let b = record
            .backends
            .iter()
            .find(|b| b.correlation_id.as_deref() == Some(CORRELATION))
            .expect("the busy backend");
        assert_eq!(b.backend_type.is_some(), version >= 100_000, "{version}");
        assert_eq!(b.query_id, None);
        client.batch_execute("RESET search_path").await.unwrap();
    }
}

#[tokio::test]
async fn statements_queries_run_on_older_extension_versions() {
    let c = cluster();
    let client = c.connect("fixture").await;
    for (ext, text, fixture) in [
        ((1, 4), "1.4", "pg_stat_statements.1.4.columns"),
        ((1, 11), "1.11", "pg_stat_statements.1.11.columns"),
    ] {
        let schema = format!("pgss_{}", text.replace('.', "_"));
        let cols = columns(fixture);
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
                 CREATE VIEW {schema}.v AS SELECT {} FROM public.pg_stat_statements(true);
                 CREATE FUNCTION {schema}.pg_stat_statements(showtext boolean) RETURNS SETOF {schema}.v
                   LANGUAGE sql AS 'SELECT * FROM {schema}.v';
                 {info}",
                select_list(&cols),
                // The info view exists from 1.9 on.
                info = if ext >= (1, 9) {
                    format!("CREATE VIEW {schema}.pg_stat_statements_info AS SELECT * FROM public.pg_stat_statements_info;")
                } else {
                    String::new()
                }
            ))
            .await
            .unwrap();
        let mut collector = StatementsCollector::with_version(90_600, &schema, text, ext);
        let snap = collector
            .snapshot(&client)
            .await
            .unwrap_or_else(|e| panic!("{text}: {e:?}"));
        assert!(!snap.entries.is_empty(), "{text}");
        assert!(
            collector
                .collect(&client, "shop", "db-1")
                .await
                .unwrap()
                .is_none()
        );
        client
            .simple_query("SELECT count(*) FROM acct")
            .await
            .unwrap();
        let r = collector
            .collect(&client, "shop", "db-1")
            .await
            .unwrap()
            .expect("deltas");
        validate(&serde_json::to_value(&r).unwrap(), Kind::PgStatements);
        let e = r
            .entries
            .iter()
            .find(|e| e.fingerprint.as_deref().is_some_and(|f| f.contains("acct")))
            .expect("the acct count");
        assert_eq!(e.calls, 1);
        assert_eq!(e.toplevel.is_some(), ext >= (1, 9), "{text}");
        assert_eq!(e.wal_bytes.is_some(), ext >= (1, 8), "{text}");
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
