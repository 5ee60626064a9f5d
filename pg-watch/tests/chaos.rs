//! The chaos test of pg-watch: the real binary is killed with SIGKILL again
//! and again while a client keeps a real PostgreSQL server logging, then it
//! runs to the end and stops on SIGTERM. Every statement the server logged
//! reaches the ingest endpoint, and after dedupe by record id (as the
//! processor stores them) each is there exactly once: a restart re-reads
//! from its checkpoint with the same position-derived ids, never new ones.
//!
//! The processor's and the shipper's own kill loops are
//! `processor/tests/crash.rs` and `shipper/tests/sigkill.rs`.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Cluster;

/// Statements the writer runs (each one logged line).
const STATEMENTS: u64 = 2500;
/// SIGKILLs while the writer runs.
const KILLS: usize = 10;

/// One pg_log line as the stand-in ingest endpoint kept it.
#[derive(Debug, Clone)]
struct Got {
    id: String,
    /// The writer's statement number, when the event is one of its statements.
    statement: Option<u64>,
}

/// The ingest endpoint on its own thread and runtime: keeps every pg_log
/// line it is sent and answers like the processor.
fn start_receiver(got: Arc<Mutex<Vec<Got>>>) -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/v1/ingest",
                axum::routing::post(
                    move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                        let got = got.clone();
                        async move {
                            let mut text = String::new();
                            if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
                                flate2::read::GzDecoder::new(&body[..])
                                    .read_to_string(&mut text)
                                    .unwrap();
                            } else {
                                text = String::from_utf8_lossy(&body).into_owned();
                            }
                            let mut n = 0;
                            let mut kept = got.lock().unwrap();
                            for line in text.lines() {
                                n += 1;
                                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                                if v["kind"] != "pg_log" {
                                    continue;
                                }
                                kept.push(Got {
                                    id: v["id"].as_str().unwrap().to_owned(),
                                    statement: statement_number(&v["message"]),
                                });
                            }
                            axum::Json(
                                serde_json::json!({"accepted": n, "duplicates": 0, "rejected": []}),
                            )
                        }
                    },
                ),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// `n` of a logged `SELECT 'chaos-n'`.
fn statement_number(message: &serde_json::Value) -> Option<u64> {
    let text = message.as_str()?;
    let start = text.find("'chaos-")? + "'chaos-".len();
    let len = text[start..].find('\'')?;
    text[start..start + len].parse().ok()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The running binary; killed when dropped, so a failing test leaves no
/// daemon behind.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(config: &std::path::Path) -> Daemon {
    Daemon(
        Command::new(env!("CARGO_BIN_EXE_pg-watch"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the pg-watch binary"),
    )
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::Write;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn sigkill_in_a_loop_while_postgres_logs_loses_no_event_and_repeats_none() {
    let cluster = Cluster::start(
        "log_destination = 'stderr'\nlog_line_prefix = '%m [%p] %q%u@%d %a '\n\
         log_min_duration_statement = 0\n",
    );
    let got: Arc<Mutex<Vec<Got>>> = Arc::default();
    let ingest = start_receiver(got.clone());
    let status_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pg-watch.toml");
    std::fs::write(
        &config,
        format!(
            r#"project = "shop"
host = "db-1"
spool_dir = "{spool}"
state_dir = "{state}"
[postgres]
conninfo = "host=127.0.0.1 port={port} user=postgres dbname=postgres"
[activity]
enabled = false
[statements]
enabled = false
[logs]
directory = "{logs}"
log_line_prefix = "%m [%p] %q%u@%d %a "
start_at = "beginning"
poll_interval_ms = 50
flush_after_ms = 200
[host_metrics]
enabled = false
[ship]
processor_url = "http://{ingest}"
token = "t0ken"
[http]
listen = "127.0.0.1:{status_port}"
"#,
            spool = dir.path().join("spool").display(),
            state = dir.path().join("state").display(),
            port = cluster.port,
            logs = cluster.log_dir.display(),
        ),
    )
    .unwrap();

    // The writer: one logged statement at a time, paced to span the kills.
    let written = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (conninfo, written, done) = (cluster.conninfo("chaos"), written.clone(), done.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                for n in 0..STATEMENTS {
                    client
                        .simple_query(&format!("SELECT 'chaos-{n}'"))
                        .await
                        .unwrap();
                    written.fetch_add(1, Ordering::Relaxed);
                    if n % 50 == 0 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            });
            done.store(true, Ordering::Relaxed);
        })
    };

    let mut kills = 0;
    let mut pace = 0u64;
    while kills < KILLS || !done.load(Ordering::Relaxed) {
        let child = spawn(&config);
        // Between 150 and 650 ms: some kills land while it reads, some while it ships.
        pace = (pace * 7 + 3) % 11;
        std::thread::sleep(Duration::from_millis(150 + 50 * pace));
        drop(child); // SIGKILL
        kills += 1;
    }
    writer.join().expect("the writer ran every statement");
    assert_eq!(written.load(Ordering::Relaxed), STATEMENTS);

    // The last run: it catches up, shows no lag, and stops on SIGTERM.
    let mut daemon = spawn(&config);
    let statements_seen = |got: &[Got]| {
        got.iter()
            .filter_map(|g| g.statement)
            .collect::<HashSet<u64>>()
            .len() as u64
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while statements_seen(&got.lock().unwrap()) < STATEMENTS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // The lag is set after each read; it reaches 0 once everything is read.
    let lag_zero =
        || http_get(status_port, "/metrics").contains("\nbitville_pgwatch_log_lag_bytes 0\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lag_zero() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = http_get(status_port, "/metrics");
    assert!(
        lag_zero(),
        "caught up, the lag is 0 in /metrics:\n{metrics}"
    );
    unsafe { libc::kill(daemon.0.id() as i32, libc::SIGTERM) };
    let status = daemon.0.wait().unwrap();
    assert!(status.success(), "pg-watch exited with {status} on SIGTERM");

    let got = got.lock().unwrap().clone();
    let unique: HashSet<&str> = got.iter().map(|g| g.id.as_str()).collect();
    // After dedupe by id, each statement must be one record: two ids for one
    // statement would be stored twice.
    let mut ids_per_statement: HashMap<u64, HashSet<&str>> = HashMap::new();
    for g in &got {
        if let Some(n) = g.statement {
            ids_per_statement.entry(n).or_default().insert(&g.id);
        }
    }
    let missing = (0..STATEMENTS)
        .filter(|n| !ids_per_statement.contains_key(n))
        .count();
    let twice = ids_per_statement
        .values()
        .filter(|ids| ids.len() > 1)
        .count();
    println!(
        "pg-watch chaos: {kills} kills, {STATEMENTS} statements logged, {} pg_log lines delivered, \
         {} after dedupe, {missing} missing, {twice} stored twice",
        got.len(),
        unique.len()
    );
    assert_eq!(missing, 0, "logged statements lost");
    assert_eq!(twice, 0, "statements that would be stored twice");
    assert!(
        ids_per_statement.keys().all(|n| *n < STATEMENTS),
        "an event that was never logged arrived"
    );
}
