//! The whole daemon against a real cluster: records reach a stand-in ingest
//! endpoint through the spool and the shipper engine, every one of them
//! valid, and /healthz and /metrics answer.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use common::Cluster;
use pg_watch::config::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_flow_from_postgres_to_the_ingest_api() {
    let cluster = Cluster::start(
        "log_destination = 'stderr'\nlog_line_prefix = '%m [%p] %q%u@%d %a '\nlog_min_duration_statement = 0\n",
    );
    cluster.psql("CREATE EXTENSION pg_stat_statements");

    // A minimal ingest endpoint that keeps every line it is sent.
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/v1/ingest",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let store = store.clone();
                async move {
                    let gzip = headers.get("content-encoding").is_some_and(|v| v == "gzip");
                    let text = if gzip {
                        let mut out = String::new();
                        std::io::Read::read_to_string(
                            &mut flate2::read::GzDecoder::new(&body[..]),
                            &mut out,
                        )
                        .unwrap();
                        out
                    } else {
                        String::from_utf8_lossy(&body).into_owned()
                    };
                    let n = text.lines().count();
                    store
                        .lock()
                        .unwrap()
                        .extend(text.lines().map(str::to_owned));
                    axum::Json(serde_json::json!({"accepted": n, "duplicates": 0, "rejected": []}))
                }
            },
        ),
    );
    let ingest = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ingest_addr = ingest.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(ingest, app).await });

    let status_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"project = "shop"
host = "db-1"
spool_dir = "{spool}"
state_dir = "{state}"
[postgres]
conninfo = "host=127.0.0.1 port={port} user=postgres dbname=postgres"
[activity]
interval_ms = 200
[statements]
interval_s = 1
[logs]
directory = "{logs}"
log_line_prefix = "%m [%p] %q%u@%d %a "
start_at = "beginning"
poll_interval_ms = 100
flush_after_ms = 200
[host_metrics]
interval_s = 1
[ship]
processor_url = "http://{ingest_addr}"
token = "t0ken"
[http]
listen = "127.0.0.1:{status_port}"
"#,
        spool = dir.path().join("spool").display(),
        state = dir.path().join("state").display(),
        port = cluster.port,
        logs = cluster.log_dir.display(),
    );
    let config = Config::parse(&toml, std::path::Path::new("test.toml")).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(pg_watch::app::run(
        config,
        None,
        bitville_daemon::Shutdown::on(async move {
            let _ = stop_rx.await;
        }),
    ));

    let app = cluster
        .connect("bitville:7c9e6679-7425-40de-944b-e07fc1f90ae7")
        .await;
    let busy = tokio::spawn(async move {
        for _ in 0..3 {
            app.simple_query("SELECT pg_sleep(0.4)").await.unwrap();
        }
    });
    let kinds = |r: &Mutex<Vec<String>>| {
        let mut k: Vec<String> = r
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| v["kind"].as_str().unwrap_or("").to_owned())
            .collect();
        k.sort();
        k.dedup();
        k
    };
    let want = ["host_metrics", "pg_activity", "pg_log", "pg_statements"];
    let mut ok = false;
    for _ in 0..150 {
        if want.iter().all(|w| kinds(&received).iter().any(|k| k == w)) {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    busy.await.unwrap();
    assert!(ok, "kinds received: {:?}", kinds(&received));

    let http = |path: &'static str| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", status_port))
            .await
            .unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let health = http("/healthz").await;
    assert!(
        health.starts_with("HTTP/1.0 200") && health.contains("\"postgres\":\"up\""),
        "{health}"
    );
    let metrics = http("/metrics").await;
    assert!(
        metrics.contains("bitville_pgwatch_activity_samples_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("bitville_shipper_lines_shipped_total"),
        "{metrics}"
    );

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), daemon)
        .await
        .expect("drains in time")
        .unwrap()
        .unwrap();
    let lines = received.lock().unwrap().clone();
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Err(e) = bitville_schemas::validate(&v) {
            panic!("invalid record: {e}\n{v:#}");
        }
    }
    let tagged = lines
        .iter()
        .filter(|l| {
            l.contains("\"kind\":\"pg_activity\"")
                && l.contains("7c9e6679-7425-40de-944b-e07fc1f90ae7")
        })
        .count();
    assert!(tagged > 0, "a tagged backend in the activity samples");
    let host = lines
        .iter()
        .find(|l| l.contains("\"kind\":\"host_metrics\""))
        .unwrap();
    assert!(host.contains("\"pg-watch\""), "{host}");
}
