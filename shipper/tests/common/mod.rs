//! Shared helpers of the shipper's integration tests: a real HTTP receiver
//! on port 0 that speaks the ingest API (and answers /healthz) and records
//! what it stores, and record lines that carry their file and sequence
//! number.
#![allow(dead_code)]

use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 with the ingest reply.
    Ok,
    /// 503, as a processor that is not ready.
    Down,
    /// Stores the batch, then answers only after this long (past the
    /// shipper's request timeout, so it retries and sends duplicates).
    Slow(Duration),
    /// 429 with Retry-After: 0.
    TooMany,
    /// 500.
    Error,
    /// 413 for batches of more than this many lines.
    MaxLines(usize),
    /// 500 for any batch with a line that has a `poison` field (a record
    /// that crashes the processor), the normal reply otherwise.
    Poison,
}

/// One stored line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: String,
    /// The test's file slot and epoch, and the line's sequence number.
    pub file: u64,
    pub epoch: u64,
    pub n: u64,
}

#[derive(Debug)]
pub struct ReceiverState {
    pub mode: Mutex<Mode>,
    pub stored: Mutex<Vec<Stored>>,
    pub requests: Mutex<u64>,
    pub bad_auth: Mutex<u64>,
}

/// The receiver, running on its own thread and runtime so that sync tests
/// (which kill processes) and async tests can use it alike.
pub struct Receiver {
    pub addr: SocketAddr,
    pub state: Arc<ReceiverState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub const TOKEN: &str = "test-token";

impl Receiver {
    pub fn start() -> Receiver {
        let state = Arc::new(ReceiverState {
            mode: Mutex::new(Mode::Ok),
            stored: Mutex::new(Vec::new()),
            requests: Mutex::new(0),
            bad_auth: Mutex::new(0),
        });
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app_state = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new()
                    .route("/v1/ingest", post(ingest))
                    .route("/healthz", axum::routing::get(|| async { "ok\n" }))
                    .with_state(app_state);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx.recv().unwrap();
        Receiver {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    pub fn stored(&self) -> Vec<Stored> {
        self.state.stored.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        // Slow handlers may still sleep; do not wait for them.
        drop(self.thread.take());
    }
}

async fn ingest(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    *state.requests.lock().unwrap() += 1;
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        *state.bad_auth.lock().unwrap() += 1;
        return (StatusCode::UNAUTHORIZED, "{\"error\":\"unknown token\"}").into_response();
    }
    let mode = *state.mode.lock().unwrap();
    match mode {
        Mode::Down => {
            return (StatusCode::SERVICE_UNAVAILABLE, "{\"error\":\"not ready\"}").into_response();
        }
        Mode::TooMany => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "0")],
                "{\"error\":\"slow down\"}",
            )
                .into_response();
        }
        Mode::Error => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "{\"error\":\"boom\"}").into_response();
        }
        Mode::Ok | Mode::Slow(_) | Mode::MaxLines(_) | Mode::Poison => {}
    }
    let mut text = String::new();
    if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .is_err()
        {
            return (StatusCode::BAD_REQUEST, "{\"error\":\"bad gzip\"}").into_response();
        }
    } else {
        text = String::from_utf8_lossy(&body).into_owned();
    }
    if let Mode::MaxLines(max) = mode
        && text.lines().count() > max
    {
        return (StatusCode::PAYLOAD_TOO_LARGE, "{\"error\":\"too large\"}").into_response();
    }
    if mode == Mode::Poison && text.lines().any(|l| l.contains("\"poison\"")) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "{\"error\":\"panicked\"}",
        )
            .into_response();
    }
    let mut rejected = Vec::new();
    let mut accepted = 0;
    {
        let mut stored = state.stored.lock().unwrap();
        for (i, line) in text.lines().enumerate() {
            let v: serde_json::Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(e) => {
                    rejected.push(
                        serde_json::json!({"line": i + 1, "id": null, "reason": e.to_string()}),
                    );
                    continue;
                }
            };
            if v.get("reject").is_some() {
                rejected.push(serde_json::json!({"line": i + 1, "id": v["id"], "reason": "/reject: refused by the test"}));
                continue;
            }
            accepted += 1;
            stored.push(Stored {
                id: v["id"].as_str().unwrap_or_default().to_owned(),
                file: v["test_file"].as_u64().unwrap_or(u64::MAX),
                epoch: v["test_epoch"].as_u64().unwrap_or(0),
                n: v["test_n"].as_u64().unwrap_or(u64::MAX),
            });
        }
    }
    if let Mode::Slow(d) = mode {
        tokio::time::sleep(d).await;
    }
    let reply = serde_json::json!({"accepted": accepted, "duplicates": 0, "rejected": rejected});
    (StatusCode::OK, reply.to_string()).into_response()
}

/// A valid record line for file slot `file`, epoch `epoch`, number `n`,
/// padded with a body of about `pad` bytes.
pub fn record(file: u64, epoch: u64, n: u64, pad: usize) -> String {
    let id = format!("{:08x}-{:04x}-4000-8000-{:012x}", file, epoch, n);
    format!(
        r#"{{"v":1,"kind":"request","id":"{id}","ts":"2026-11-27T11:47:44.123456Z","project":"shop","host":"web-1","test_file":{file},"test_epoch":{epoch},"test_n":{n},"pad":"{}"}}"#,
        "x".repeat(pad)
    )
}

/// An engine configuration with test-sized intervals: fast scans, batches,
/// checkpoints and retries, short cleanup grace and fragment timeout.
pub fn fast_config(
    spool: &std::path::Path,
    state: &std::path::Path,
    url: &str,
) -> shipper::engine::EngineConfig {
    let mut c =
        shipper::engine::EngineConfig::new(vec![spool.to_owned()], state.to_owned(), url, TOKEN);
    c.batch_max_age = Duration::from_millis(20);
    c.scan_interval = Duration::from_millis(50);
    c.checkpoint_interval = Duration::from_millis(50);
    c.cleanup_grace = Duration::from_millis(200);
    c.fragment_idle = Duration::from_millis(300);
    c.drain_timeout = Duration::from_secs(1);
    c.retry = shipper::engine::RetryConfig {
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(50),
        breaker_failures: 3,
        breaker_cooldown: Duration::from_millis(100),
        request_timeout: Duration::from_millis(500),
        poison_after: 3,
    };
    c
}
