//! The log parsers against a real PostgreSQL 15 that writes stderr, csvlog and
//! jsonlog at once: every event class the issue names is produced for real
//! (lock wait, deadlock, slow statements over both protocols, error,
//! statement timeout, temporary file, auto_explain plans, checkpoint) and
//! found, parsed, in each of the three files.

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use bitville_schemas::records::{LogClass, PgLogRecord};
use common::Cluster;
use pg_watch::log::LogFormat;
use pg_watch::logs::{empty_record, fill_record, parser_for, to_record};
use pg_watch::tailer::{StartAt, Tailer};

const PREFIX: &str = "%m [%p] %q%u@%d %a %e ";
const CORRELATION: &str = "0d4f6a4e-2b7c-4f1e-9a53-3c1d2e4f5a6b";

/// What the scenario did, to find in the logs.
struct Scenario {
    cluster: Cluster,
    blocker_pid: i32,
    waiter_pid: i32,
}

fn scenario() -> &'static Scenario {
    static S: OnceLock<Scenario> = OnceLock::new();
    S.get_or_init(|| {
        let cluster = Cluster::start(&format!(
            "log_destination = 'stderr,csvlog,jsonlog'\nlog_line_prefix = '{PREFIX}'\n\
             log_min_duration_statement = 100\nlog_lock_waits = on\ndeadlock_timeout = '100ms'\n\
             log_temp_files = 0\nlog_checkpoints = on\nlog_connections = on\nlog_disconnections = on\n\
             auto_explain.log_min_duration = 100\n"
        ));
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let (blocker_pid, waiter_pid) = rt.block_on(produce(&cluster));
        // The logging collector writes asynchronously; wait for the last event.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let done = ["log", "csv", "json"].iter().all(|s| {
                cluster.files_in_log_dir(s).iter().any(|f| {
                    std::fs::read_to_string(f).is_ok_and(|t| t.contains("checkpoint complete") && t.contains("disconnection"))
                })
            });
            if done {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Scenario { cluster, blocker_pid, waiter_pid }
    })
}

async fn produce(cluster: &Cluster) -> (i32, i32) {
    let tagged = cluster.connect(&format!("bitville:{CORRELATION}")).await;
    tagged
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT g, 0 FROM generate_series(1, 10) g")
        .await
        .unwrap();
    // Slow statements: simple protocol, then extended with a parameter.
    tagged.simple_query("SELECT pg_sleep(0.15)").await.unwrap();
    tagged
        .query("SELECT pg_sleep($1::float8)", &[&0.15f64])
        .await
        .unwrap();
    // auto_explain in JSON (text plans come from the statements above).
    tagged
        .batch_execute("SET auto_explain.log_format = 'json'")
        .await
        .unwrap();
    tagged
        .simple_query("SELECT pg_sleep(0.12) AS json_plan")
        .await
        .unwrap();
    tagged
        .batch_execute("RESET auto_explain.log_format")
        .await
        .unwrap();
    // An error and a statement timeout.
    assert!(tagged.simple_query("SELECT 1/0").await.is_err());
    tagged
        .batch_execute("SET statement_timeout = 100")
        .await
        .unwrap();
    assert!(tagged.simple_query("SELECT pg_sleep(2)").await.is_err());
    tagged
        .batch_execute("RESET statement_timeout")
        .await
        .unwrap();
    // A temporary file: a sort that spills over 64 kB of work_mem.
    tagged
        .batch_execute("SET work_mem = '64kB'; SELECT count(*) FROM (SELECT g FROM generate_series(1, 100000) g ORDER BY g DESC) s; RESET work_mem")
        .await
        .unwrap();

    // A lock wait: the waiter blocks on the blocker's row lock past deadlock_timeout.
    let blocker = cluster.connect("blocker").await;
    let waiter = cluster.connect("waiter").await;
    let (blocker_pid, waiter_pid) = (backend_pid(&blocker).await, backend_pid(&waiter).await);
    blocker
        .batch_execute("BEGIN; UPDATE t SET v = 1 WHERE id = 1")
        .await
        .unwrap();
    let wait = tokio::spawn(async move {
        waiter
            .batch_execute("UPDATE t SET v = 2 WHERE id = 1")
            .await
            .unwrap();
        waiter
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    blocker.batch_execute("COMMIT").await.unwrap();
    let waiter = wait.await.unwrap();

    // A deadlock between the same two sessions.
    blocker
        .batch_execute("BEGIN; UPDATE t SET v = 3 WHERE id = 2")
        .await
        .unwrap();
    waiter
        .batch_execute("BEGIN; UPDATE t SET v = 3 WHERE id = 3")
        .await
        .unwrap();
    let first = tokio::spawn(async move {
        let r = blocker
            .batch_execute("UPDATE t SET v = 4 WHERE id = 3")
            .await;
        (blocker, r)
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = waiter
        .batch_execute("UPDATE t SET v = 4 WHERE id = 2")
        .await;
    let (blocker, first) = first.await.unwrap();
    assert!(
        first.is_err() != second.is_err(),
        "exactly one side of the deadlock fails"
    );
    blocker.batch_execute("ROLLBACK").await.unwrap();
    waiter.batch_execute("ROLLBACK").await.unwrap();

    tagged.batch_execute("CHECKPOINT").await.unwrap();
    drop((tagged, blocker, waiter));
    tokio::time::sleep(Duration::from_millis(200)).await;
    (blocker_pid, waiter_pid)
}

async fn backend_pid(c: &tokio_postgres::Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// Tails one format's files from the beginning and classifies every entry.
fn events(format: LogFormat, pattern: &str) -> Vec<PgLogRecord> {
    let s = scenario();
    let state = tempfile::tempdir().unwrap();
    let parser = parser_for(format, PREFIX).unwrap();
    let mut tailer = Tailer::open(
        &s.cluster.log_dir,
        pattern,
        parser,
        &state.path().join("ck.json"),
        StartAt::Beginning,
    )
    .unwrap();
    tailer.flush_after = Duration::ZERO;
    let mut records: Vec<PgLogRecord> = Vec::new();
    tailer
        .poll(|t| records.push(to_record(t, "shop", "db-1")))
        .unwrap();
    // The daemon fills one record entry after entry: nothing of an earlier
    // entry may stay in it, so each must equal the record made afresh.
    let state = tempfile::tempdir().unwrap();
    let parser = parser_for(format, PREFIX).unwrap();
    let mut tailer = Tailer::open(
        &s.cluster.log_dir,
        pattern,
        parser,
        &state.path().join("ck.json"),
        StartAt::Beginning,
    )
    .unwrap();
    tailer.flush_after = Duration::ZERO;
    let (mut reused, mut n) = (empty_record(format), 0);
    tailer
        .poll(|t| {
            fill_record(&mut reused, t, "shop", "db-1");
            assert_eq!(
                Some(&reused),
                records.get(n),
                "{format:?} record {n} filled into a used record"
            );
            n += 1;
        })
        .unwrap();
    assert_eq!(n, records.len());
    for r in &records {
        let value = serde_json::to_value(r).unwrap();
        if let Err(e) = bitville_schemas::validate(&value) {
            panic!("{format:?} record does not validate: {e}\n{value:#}");
        }
    }
    records
}

fn by_class(records: &[PgLogRecord]) -> HashMap<LogClass, Vec<&PgLogRecord>> {
    let mut m: HashMap<LogClass, Vec<&PgLogRecord>> = HashMap::new();
    for r in records {
        m.entry(r.event.class).or_default().push(r);
    }
    m
}

fn assert_every_event(format: LogFormat, pattern: &str) {
    let s = scenario();
    let records = events(format, pattern);
    let classes = by_class(&records);
    let get = |c: LogClass| classes.get(&c).cloned().unwrap_or_default();
    let dump = || {
        records
            .iter()
            .map(|r| format!("{:?}: {}", r.event.class, r.event.message))
            .collect::<Vec<_>>()
            .join("\n")
    };

    assert!(
        get(LogClass::Unparsed).is_empty(),
        "{format:?}: unparsed lines:\n{}",
        dump()
    );

    let slow = get(LogClass::SlowStatement);
    let simple = slow
        .iter()
        .find(|r| r.event.query.as_deref() == Some("SELECT pg_sleep(0.15)"))
        .unwrap_or_else(|| panic!("{format:?}: no simple slow statement\n{}", dump()));
    assert!(simple.event.duration_ms.unwrap() >= 150.0);
    assert_eq!(simple.event.correlation_id.as_deref(), Some(CORRELATION));
    let extended = slow
        .iter()
        .find(|r| {
            r.event.query.as_deref() == Some("SELECT pg_sleep($1::float8)")
                && r.event.message.contains("execute")
        })
        .unwrap_or_else(|| {
            panic!(
                "{format:?}: no extended-protocol slow statement\n{}",
                dump()
            )
        });
    assert_eq!(extended.event.parameters.as_deref(), Some("$1 = '0.15'"));
    assert!(extended.event.duration_ms.unwrap() >= 150.0);

    let plans = get(LogClass::AutoExplain);
    let text_plan = plans
        .iter()
        .find(|r| r.event.plan.as_ref().is_some_and(|p| p.is_string()))
        .expect("a text plan");
    assert!(
        text_plan
            .event
            .plan
            .as_ref()
            .unwrap()
            .as_str()
            .unwrap()
            .contains("Result"),
        "{:?}",
        text_plan.event.plan
    );
    let json_plan = plans
        .iter()
        .find(|r| r.event.plan.as_ref().is_some_and(|p| p.is_object()))
        .expect("a JSON plan");
    assert_eq!(
        json_plan.event.query.as_deref(),
        Some("SELECT pg_sleep(0.12) AS json_plan")
    );
    assert!(json_plan.event.plan.as_ref().unwrap()["Plan"]["Node Type"].is_string());

    let waits = get(LogClass::LockWait);
    let wait = waits
        .iter()
        .find(|r| r.event.pid == Some(s.waiter_pid as u32))
        .unwrap_or_else(|| panic!("{format:?}: no lock wait\n{}", dump()));
    let lock = wait.event.lock.as_ref().unwrap();
    assert_eq!(lock.mode.as_deref(), Some("ShareLock"));
    assert!(
        lock.object.as_deref().unwrap().starts_with("transaction "),
        "{lock:?}"
    );
    assert_eq!(lock.holders, vec![s.blocker_pid as u32]);
    assert!(lock.waited_ms.unwrap() >= 100.0);
    let acquired = get(LogClass::LockAcquired);
    assert!(
        acquired
            .iter()
            .any(|r| r.event.pid == Some(s.waiter_pid as u32)
                && r.event.lock.as_ref().unwrap().waited_ms.unwrap() >= 300.0)
    );

    let deadlocks = get(LogClass::Deadlock);
    assert_eq!(deadlocks.len(), 1, "{format:?}\n{}", dump());
    let d = &deadlocks[0].event;
    assert_eq!(d.sqlstate.as_deref(), Some("40P01"));
    let procs = &d.deadlock.as_ref().unwrap().processes;
    assert_eq!(procs.len(), 2);
    let mut pids: Vec<u32> = procs.iter().map(|p| p.pid).collect();
    pids.sort_unstable();
    let mut want = vec![s.blocker_pid as u32, s.waiter_pid as u32];
    want.sort_unstable();
    assert_eq!(pids, want);
    for p in procs {
        assert!(
            p.query
                .as_deref()
                .unwrap()
                .starts_with("UPDATE t SET v = 4"),
            "{p:?}"
        );
        assert!(
            p.blocked_by.is_some()
                && p.waits_for
                    .as_deref()
                    .unwrap()
                    .starts_with("ShareLock on transaction")
        );
    }

    let errors = get(LogClass::Error);
    let div = errors
        .iter()
        .find(|r| r.event.message == "division by zero")
        .expect("the division by zero");
    assert_eq!(div.event.sqlstate.as_deref(), Some("22012"));
    assert_eq!(div.event.statement.as_deref(), Some("SELECT 1/0"));
    let timeouts = get(LogClass::StatementTimeout);
    assert_eq!(timeouts.len(), 1);
    assert_eq!(timeouts[0].event.sqlstate.as_deref(), Some("57014"));
    assert_eq!(
        timeouts[0].event.statement.as_deref(),
        Some("SELECT pg_sleep(2)")
    );

    let temp = get(LogClass::TempFile);
    assert!(
        temp.iter()
            .any(|r| r.event.temp_file.as_ref().unwrap().size_bytes > 64 * 1024),
        "{format:?}\n{}",
        dump()
    );

    let checkpoints = get(LogClass::Checkpoint);
    let complete = checkpoints
        .iter()
        .find(|r| r.event.details.as_ref().unwrap()["phase"] == "complete")
        .expect("a completed checkpoint");
    assert!(complete.event.details.as_ref().unwrap()["buffers_written"].is_number());

    assert!(get(LogClass::Connection).iter().any(|r| {
        r.event
            .details
            .as_ref()
            .unwrap()
            .get("user")
            .is_some_and(|u| u == "postgres")
    }));
    assert!(
        get(LogClass::Disconnection)
            .iter()
            .any(|r| r.event.duration_ms.is_some())
    );
    // Every record has a log time in UTC and its source position.
    for r in &records {
        assert!(r.event.log_time.ends_with('Z'), "{}", r.event.log_time);
        assert_eq!(r.envelope.ts, r.event.log_time);
        assert!(r.event.source.is_some());
    }
}

#[test]
fn stderr_events_are_all_parsed() {
    assert_every_event(LogFormat::Stderr, "*.log");
}

#[test]
fn csvlog_events_are_all_parsed() {
    assert_every_event(LogFormat::Csvlog, "*.csv");
}

#[test]
fn jsonlog_events_are_all_parsed() {
    assert_every_event(LogFormat::Jsonlog, "*.json");
}

#[test]
fn the_three_formats_agree_on_the_events() {
    let count = |f, p| {
        let mut m: HashMap<String, usize> = HashMap::new();
        for r in events(f, p) {
            *m.entry(format!("{:?}", r.event.class)).or_default() += 1;
        }
        m
    };
    let stderr = count(LogFormat::Stderr, "*.log");
    assert_eq!(stderr, count(LogFormat::Csvlog, "*.csv"));
    assert_eq!(stderr, count(LogFormat::Jsonlog, "*.json"));
}
