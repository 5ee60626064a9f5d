//! Ingest: records in over HTTP(S) and UDP, checked, flattened and handed
//! to the store.
//!
//! This module holds the HTTP side (`POST /v1/ingest`, `/healthz`,
//! `/readyz`, and `/metrics` on its own listener); its parts, one job each:
//! - [`auth`]: ingest tokens and their projects, compared in constant time.
//! - [`limits`]: per-client rate limiting and bounded gzip decoding.
//! - [`conn`]: connections: caps per client address and in all, header and
//!   body timeouts, and the serve loop that applies them.
//! - [`tls`]: the HTTPS listener (rustls) used when a certificate is configured.
//! - [`udp`]: the fire-and-forget UDP receiver.
//! - [`flatten`]: validated records to the store's rows (no DuckDB here).
//! - [`keys`]: finds a top-level key named twice (an ambiguous envelope).
//!
//! A batch goes through the layers in order, each refusing with its own
//! status: rate limit (429), token (401), body size (413), decompression
//! (400/413), record count (413), then per line: size, schema, project, time.
//! Refused lines come back with their line number; the rest are stored, and
//! the reply is sent only after the store committed them.

pub mod auth;
pub mod conn;
pub mod flatten;
pub mod keys;
pub mod limits;
pub mod tls;
pub mod udp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bitville_schemas::read::{Fast, FastRecord, read_fast};
use bitville_schemas::{IngestReply, Rejected};
use serde_json::json;

use crate::App;
use crate::config::Limits;
use crate::metrics::Outcome;
use crate::store::{Columns, ColumnsBuilder, PreparedRecord};
use limits::BodyError;
use tls::Peer;

/// The router of the processor's HTTP port.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/ingest", post(ingest))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(app)
}

/// The router of the metrics port (`server.metrics_listen`): `/metrics`
/// names every project with its counts, so it is kept off the port that
/// every client reaches. Health answers there too, for the same probes.
pub fn metrics_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(app)
}

/// A refusal of the whole batch.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(json!({ "error": self.message }))).into_response();
        if let Some(wait) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<BodyError> for Refusal {
    fn from(e: BodyError) -> Self {
        let status = match e {
            BodyError::TooLargeDecompressed(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BodyError::Empty | BodyError::BadGzip(_) => StatusCode::BAD_REQUEST,
        };
        Refusal::new(status, e.to_string())
    }
}

async fn ingest(
    State(app): State<Arc<App>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let result = ingest_inner(&app, peer, &headers, body).await;
    let resp = match result {
        Ok(reply) => {
            app.metrics.batch_latency(started.elapsed().as_secs_f64());
            (StatusCode::OK, axum::Json(reply)).into_response()
        }
        Err(refusal) => {
            tracing::debug!(
                "ingest from {peer} refused: {} {}",
                refusal.status,
                refusal.message
            );
            refusal.into_response()
        }
    };
    app.metrics.response(resp.status().as_u16());
    resp
}

async fn ingest_inner(
    app: &App,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<IngestReply, Refusal> {
    let (tokens, limits) = app.live();
    if let Err(wait) = app.rate.check(
        peer.ip(),
        limits.requests_per_minute,
        limits.rate_limit_clients,
        Instant::now(),
    ) {
        return Err(Refusal {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "client {} is over {} requests per minute; retry in {} s",
                peer.ip(),
                limits.requests_per_minute,
                wait.as_secs()
            ),
            retry_after: Some(wait),
        });
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| auth::bearer_token(h.as_bytes()))
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::UNAUTHORIZED,
                "missing Authorization: Bearer token",
            )
        })?;
    let project = tokens
        .project_of(token)
        .ok_or_else(|| Refusal::new(StatusCode::UNAUTHORIZED, "unknown token"))?
        .to_owned();

    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes) {
        return Err(too_large_body(limits.max_body_bytes));
    }
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
    {
        None => false,
        Some(e) if e == "gzip" || e == "x-gzip" => true,
        Some(e) if e == "identity" || e.is_empty() => false,
        Some(e) => return Err(BodyError::UnsupportedEncoding(e).into()),
    };
    let bytes = read_body(body, limits.max_body_bytes).await?;
    // Only now, with the whole body in: a client that stalls mid-body holds
    // its connection until body_timeout_s, never a slot others need.
    let _slot = app.slots.acquire().await.map_err(|_| {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "processor is shutting down",
        )
    })?;

    let arrival = app.arrival();
    let (rejected, records, panics) = {
        let limits = limits.clone();
        let project = project.clone();
        tokio::task::spawn_blocking(move || -> Result<_, Refusal> {
            // Decompressed and checked line by line: no copy of the body.
            let batch = if gzip {
                let decoder = flate2::read::MultiGzDecoder::new(&bytes[..]);
                let reader = std::io::BufReader::with_capacity(64 << 10, decoder);
                prepare_stream(reader, &project, &limits, arrival)?
            } else {
                prepare_batch(&bytes, &project, &limits, arrival)?
            };
            // The columns too are built here, not on the single writer.
            Ok((batch.rejected, batch.records, batch.panics))
        })
        .await
        .map_err(|e| {
            Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("batch preparation failed: {e}"),
            )
        })??
    };

    app.metrics
        .line_panics
        .fetch_add(panics, std::sync::atomic::Ordering::Relaxed);
    for r in &rejected {
        let (p, k) =
            r.1.as_ref()
                .map_or(("unknown", "unknown"), |(p, k)| (p.as_str(), k.as_str()));
        app.metrics.record(p, k, Outcome::Refused, 1);
    }
    let kinds: Vec<&'static str> = records.kinds().map(|k| k.as_str()).collect();
    let outcome = app
        .store
        .write_columns(records)
        .await
        .map_err(|e| Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: e.to_string(),
            retry_after: Some(Duration::from_secs(5)),
        })?;
    let mut accepted: u64 = 0;
    for (kind, stored) in kinds.iter().zip(&outcome.stored) {
        let o = if *stored {
            Outcome::Accepted
        } else {
            Outcome::Duplicate
        };
        accepted += u64::from(*stored);
        app.metrics.record(&project, kind, o, 1);
    }
    Ok(IngestReply {
        accepted,
        duplicates: outcome.stored.len() as u64 - accepted,
        rejected: rejected.into_iter().map(|r| r.0).collect(),
    })
}

/// Reads the whole body, at most `max` bytes, within the body timeout that
/// `conn::TimedBody` puts on every request.
///
/// # Errors
/// 413 over `max`, 408 when the client did not send it in time, 400 when
/// the connection broke or a chunk was malformed.
async fn read_body(body: Body, max: usize) -> Result<axum::body::Bytes, Refusal> {
    axum::body::to_bytes(body, max).await.map_err(|e| {
        // The limit fails with its own error type, the timeout with ours.
        let over_limit = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if over_limit {
            too_large_body(max)
        } else if let Some(timeout) = conn::BodyReadError::timeout_in(&e) {
            Refusal::new(StatusCode::REQUEST_TIMEOUT, timeout.to_string())
        } else {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("body could not be read: {e}"),
            )
        }
    })
}

fn too_large_body(max: usize) -> Refusal {
    Refusal::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("body exceeds max_body_bytes ({max} bytes)"),
    )
}

/// When a batch arrives, and so which record times the store takes: not
/// further ahead than `max_future_s`, not in a day that retention drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// Microseconds since the epoch, UTC.
    pub now: i64,
    /// `retention.days` at arrival.
    pub retention_days: u32,
}

/// A batch split into records to store, in columns, and lines refused (with
/// the project and kind of the refused line when they could be read, for
/// the metrics).
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Columns,
    pub rejected: Vec<(Rejected, Option<(String, String)>)>,
    /// Lines whose handling panicked (a bug), refused alone; for the metrics.
    pub panics: u64,
}

/// Splits an NDJSON body into lines and checks each: size, schema, project,
/// time; each accepted line's rows go into the batch's columns as soon as it
/// is read. Blank lines are skipped but still counted for line numbers.
///
/// # Errors
/// The body is empty, or has more records than `max_records_per_batch`.
pub fn prepare_batch(
    body: &[u8],
    project: &str,
    limits: &Limits,
    arrival: Arrival,
) -> Result<Batch, Refusal> {
    prepare_stream(body, project, limits, arrival)
}

/// [`prepare_batch`] over a stream (the gzip decoder): lines are read one at
/// a time and checked as they come, so the memory of a batch is one line
/// (at most `max_line_bytes`) plus the records kept, never a list of every
/// line. The stream is refused (413) as soon as it passes
/// `max_decompressed_bytes` or `max_records_per_batch`.
///
/// # Errors
/// The body is empty, too large, has too many records, or is bad gzip.
pub fn prepare_stream(
    mut body: impl std::io::BufRead,
    project: &str,
    limits: &Limits,
    arrival: Arrival,
) -> Result<Batch, Refusal> {
    let max_future = (limits.max_future_s as i64).saturating_mul(1_000_000);
    let mut columns = ColumnsBuilder::default();
    let mut rejected = Vec::new();
    let mut panics = 0;
    let mut line = Vec::new();
    let (mut total, mut count, mut number) = (0usize, 0usize, 0usize);
    loop {
        line.clear();
        let Some((len, read)) = read_line_bounded(&mut body, &mut line, limits.max_line_bytes)?
        else {
            break;
        };
        number += 1;
        total = total.saturating_add(read);
        if total > limits.max_decompressed_bytes {
            return Err(BodyError::TooLargeDecompressed(limits.max_decompressed_bytes).into());
        }
        let text = line.strip_suffix(b"\r").unwrap_or(&line);
        if text.trim_ascii().is_empty() && len <= limits.max_line_bytes {
            continue;
        }
        count += 1;
        if count > limits.max_records_per_batch {
            return Err(Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "batch has more than max_records_per_batch ({}) records",
                    limits.max_records_per_batch
                ),
            ));
        }
        let checked = if len > limits.max_line_bytes {
            Err(format!(
                "line is {len} bytes, over max_line_bytes ({})",
                limits.max_line_bytes
            ))
        } else {
            // The last wall: a panic in one line's handling (a bug) refuses
            // that line, never the batch.
            // A record reaches the columns whole or not at all: its rows are
            // checked against their tables before any is appended.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                check_line(text, project, limits, arrival, max_future, &mut columns)
            }))
            .unwrap_or_else(|_| {
                panics += 1;
                Err("line could not be flattened (internal error, reported)".to_owned())
            })
        };
        match checked {
            Ok(()) => {}
            Err(reason) => {
                let (id, labels) = if len > limits.max_line_bytes {
                    (None, None)
                } else {
                    line_identity(text, limits.max_line_bytes)
                };
                rejected.push((
                    Rejected {
                        line: number,
                        id,
                        reason,
                    },
                    labels,
                ));
            }
        }
    }
    if count == 0 {
        return Err(BodyError::Empty.into());
    }
    let records = columns.finish().map_err(|e| {
        Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("batch preparation failed: {e}"),
        )
    })?;
    Ok(Batch {
        records,
        rejected,
        panics,
    })
}

/// Reads one line (without its `\n`) into `buf`, keeping at most `max + 1`
/// bytes of it and skipping the rest; returns the line's whole length and
/// the bytes read (with the `\n`), or `None` at the end of the stream.
fn read_line_bounded(
    r: &mut impl std::io::BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<Option<(usize, usize)>, Refusal> {
    let mut len = 0usize;
    let mut any = false;
    loop {
        let chunk = r
            .fill_buf()
            .map_err(|e| Refusal::from(BodyError::BadGzip(e.to_string())))?;
        if chunk.is_empty() {
            return Ok(any.then_some((len, len)));
        }
        any = true;
        let (part, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        let room = (max + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&part[..part.len().min(room)]);
        len = len.saturating_add(part.len());
        let used = done.unwrap_or(chunk.len());
        r.consume(used);
        if done.is_some() {
            return Ok(Some((len, len.saturating_add(1))));
        }
    }
}

/// Tests only: a line holding this marker panics in its handling, to prove
/// that the walls around one line (HTTP) and one datagram (UDP) hold.
#[cfg(any(test, feature = "test-support"))]
pub const PANIC_MARKER: &str = "bitville-test-panic-8c1f03";

/// Checks one line and adds its record to `columns`.
fn check_line(
    line: &[u8],
    project: &str,
    limits: &Limits,
    arrival: Arrival,
    max_future: i64,
    columns: &mut ColumnsBuilder,
) -> Result<(), String> {
    let (now, max_line) = (arrival.now, limits.max_line_bytes);
    #[cfg(any(test, feature = "test-support"))]
    if line
        .windows(PANIC_MARKER.len())
        .any(|w| w == PANIC_MARKER.as_bytes())
    {
        panic!("test marker in line");
    }
    if line.len() > max_line {
        return Err(format!(
            "line is {} bytes, over max_line_bytes ({max_line})",
            line.len()
        ));
    }
    // The fast reader: one typed pass, no `Value` tree. It answers only
    // whether the schema accepts the line; a refused line's reason comes
    // from the schema validator, worded as always.
    match read_fast(line) {
        Fast::Accepted(record) => {
            if limits.strict_schema
                && let Some(reason) = slow_reason(line)
            {
                return Err(reason);
            }
            let prepared = check_fast(record, line, project, arrival, max_future)?;
            return add(columns, prepared);
        }
        Fast::Refused(short) => return Err(slow_reason(line).unwrap_or(short)),
        Fast::NotCovered => {}
    }
    let (kind, record) = bitville_schemas::validate_line(line).map_err(|e| e.to_string())?;
    if let Some(key) = keys::duplicate_top_level_key(line) {
        return Err(duplicate_key_reason(&key));
    }
    let record_project = record.get("project").and_then(|p| p.as_str()).unwrap_or("");
    if record_project != project {
        return Err(format!(
            "/project: {record_project:?} is not the token's project {project:?}"
        ));
    }
    // validate_line has checked UTF-8 already.
    let raw = std::str::from_utf8(line).map_err(|e| e.to_string())?;
    let prepared = flatten::prepare(kind, &record, raw, now).map_err(|e| e.to_string())?;
    let ts = record.get("ts").and_then(|t| t.as_str()).unwrap_or("?");
    check_time(prepared.ts, ts, arrival, max_future)?;
    add(columns, prepared)
}

/// Adds a checked record's rows to the columns. A row that does not fit its
/// table is a bug in flattening: that line is refused, the batch goes on.
fn add(columns: &mut ColumnsBuilder, prepared: PreparedRecord<'_>) -> Result<(), String> {
    columns.push(prepared).map_err(|e| {
        tracing::error!("ingest: a record does not fit the store's columns: {e}");
        format!("line could not be flattened (internal error, reported): {e}")
    })
}

fn duplicate_key_reason(key: &str) -> String {
    format!("/{key}: key {key:?} appears more than once; a record names each key once")
}

/// Why the schema validator refuses a line the fast reader refused, in its
/// own words; `None` when it accepts it (a key named twice below the top,
/// which the fast reader refuses too).
fn slow_reason(line: &[u8]) -> Option<String> {
    if let Err(e) = bitville_schemas::validate_line(line) {
        return Some(e.to_string());
    }
    keys::duplicate_top_level_key(line).map(|key| duplicate_key_reason(&key))
}

/// The checks after the schema, for a record the fast reader accepted:
/// project, then time, as for any other record.
fn check_fast<'a>(
    record: FastRecord<'a>,
    line: &'a [u8],
    project: &str,
    arrival: Arrival,
    max_future: i64,
) -> Result<PreparedRecord<'a>, String> {
    let env = record.envelope();
    if env.project != project {
        return Err(format!(
            "/project: {:?} is not the token's project {project:?}",
            env.project
        ));
    }
    // Borrowed from the line (a copy only if its text had escapes): the
    // record goes to prepare_fast, its ts text is for the message.
    let ts = env.ts.clone();
    // The fast reader has checked UTF-8 already.
    let raw = std::str::from_utf8(line).map_err(|e| e.to_string())?;
    let prepared = flatten::prepare_fast(record, raw, arrival.now).map_err(|e| e.to_string())?;
    check_time(prepared.ts, &ts, arrival, max_future)?;
    Ok(prepared)
}

/// `ts` (microseconds; `text` as the record wrote it) is neither too far
/// ahead of the arrival nor in a day that retention drops.
fn check_time(ts: i64, text: &str, arrival: Arrival, max_future: i64) -> Result<(), String> {
    if ts > arrival.now + max_future {
        return Err(format!(
            "/ts: {text} is more than {} s in the future",
            max_future / 1_000_000
        ));
    }
    if crate::retention::expired(ts, arrival.now, arrival.retention_days) {
        return Err(format!(
            "/ts: {text} is older than the {} days the store keeps (retention.days); \
             it would be dropped at the next retention run",
            arrival.retention_days
        ));
    }
    Ok(())
}

/// The id, project and kind of a refused line, when it is JSON at all.
fn line_identity(line: &[u8], max_line: usize) -> (Option<String>, Option<(String, String)>) {
    if line.len() > max_line {
        return (None, None);
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
        return (None, None);
    };
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let id = s("id");
    let labels = match (s("project"), s("kind")) {
        (Some(p), Some(k)) if bitville_schemas::Kind::ALL.iter().any(|x| x.as_str() == k) => {
            Some((p, k))
        }
        _ => None,
    };
    (id, labels)
}

/// 503 naming the long-lived tasks that ended, when any did.
fn ended_tasks(app: &App) -> Option<Response> {
    let ended = app.ended_tasks();
    (!ended.is_empty()).then(|| {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("task(s) ended: {}", ended.join(", ")),
        )
        .into_response()
    })
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    ended_tasks(&app).unwrap_or_else(|| "ok\n".into_response())
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if let Some(resp) = ended_tasks(&app) {
        return resp;
    }
    match tokio::time::timeout(Duration::from_secs(5), app.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(e)) => Refusal::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
        Err(_) => Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store did not answer within 5 s",
        )
        .into_response(),
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let store = app.store.clone();
    let rows = tokio::task::spawn_blocking(move || store.reader().and_then(|r| r.table_rows()))
        .await
        .ok()
        .and_then(Result::ok);
    let ready = rows.is_some();
    let text = app
        .metrics
        .render(app.store.file_bytes(), &rows.unwrap_or_default(), ready);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, project: &str) -> String {
        format!(
            r#"{{"v":1,"kind":"host_metrics","id":"{id}","ts":"2026-11-27T11:47:44.123456Z","project":"{project}","host":"h","source":"shipper","load1":1,"load5":1,"load15":1}}"#
        )
    }

    const ID: &str = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";

    fn now() -> i64 {
        bitville_schemas::parse_ts("2026-11-27T12:00:00.000000Z").unwrap()
    }

    fn arrival(now: i64) -> Arrival {
        Arrival {
            now,
            retention_days: 7,
        }
    }

    #[test]
    fn good_and_bad_lines_are_split_with_line_numbers() {
        let body = format!("{}\n\nnot json\n{}\n", line(ID, "shop"), line(ID, "blog"));
        let b = prepare_batch(body.as_bytes(), "shop", &Limits::default(), arrival(now())).unwrap();
        assert_eq!(b.records.len(), 1);
        assert_eq!(b.rejected.len(), 2);
        assert_eq!(b.rejected[0].0.line, 3);
        assert!(
            b.rejected[0].0.reason.starts_with("line is not JSON"),
            "{:?}",
            b.rejected[0]
        );
        assert_eq!(b.rejected[1].0.line, 4);
        assert_eq!(b.rejected[1].0.id.as_deref(), Some(ID));
        assert_eq!(
            b.rejected[1].0.reason,
            r#"/project: "blog" is not the token's project "shop""#
        );
    }

    /// Issue 19: `"project":"b", ..., "project":"a"` was stored as project
    /// `a` while its raw line also said `b`. It is refused, naming the key.
    #[test]
    fn a_record_that_names_a_key_twice_is_refused_alone() {
        let good = line(ID, "shop");
        let twice = good.replacen(
            r#""project":"shop""#,
            r#""project":"blog","project":"shop""#,
            1,
        );
        let body = format!("{twice}\n{good}\n");
        let b = prepare_batch(body.as_bytes(), "shop", &Limits::default(), arrival(now())).unwrap();
        assert_eq!(b.records.len(), 1);
        assert_eq!(b.rejected[0].0.line, 1);
        assert_eq!(
            b.rejected[0].0.reason,
            r#"/project: key "project" appears more than once; a record names each key once"#
        );
    }

    /// The fast reader picks `pg_activity` lines by their text: a record
    /// of another kind that holds that text is still the schema's to judge.
    #[test]
    fn a_record_holding_the_text_pg_activity_is_not_taken_for_one() {
        let host = line(ID, "shop").replace(r#""host":"h""#, r#""host":"pg_activity""#);
        let b = prepare_batch(host.as_bytes(), "shop", &Limits::default(), arrival(now())).unwrap();
        assert_eq!(b.records.len(), 1, "{:?}", b.rejected);
    }

    /// A `pg_activity` line that the fast reader's text hint misses (its
    /// kind written with an escape) goes through the schema validator and
    /// is stored all the same.
    #[test]
    fn a_sample_whose_kind_is_escaped_is_stored() {
        let line = format!(
            r#"{{"v":1,"kind":"pg\u005factivity","id":"{ID}","ts":"2026-11-27T11:47:44.123456Z","project":"shop","host":"db-1","server_version_num":160004,"backends":[{{"pid":42}}]}}"#
        );
        let b = prepare_batch(line.as_bytes(), "shop", &Limits::default(), arrival(now())).unwrap();
        assert_eq!(b.records.len(), 1, "{:?}", b.rejected);
        assert_eq!(
            b.records.kinds().collect::<Vec<_>>(),
            [bitville_schemas::Kind::PgActivity]
        );
    }

    /// Strict mode runs the schema validator on the fast reader's lines
    /// too; the answers and reasons are the same.
    #[test]
    fn strict_mode_gives_the_same_answers() {
        let good = format!(
            r#"{{"v":1,"kind":"pg_activity","id":"{ID}","ts":"2026-11-27T11:47:44.123456Z","project":"shop","host":"db-1","server_version_num":160004,"backends":[{{"pid":42}}]}}"#
        );
        let bad = good.replace(r#""pid":42"#, r#""pid":-42"#);
        let body = format!("{good}\n{bad}\n");
        for strict_schema in [false, true] {
            let limits = Limits {
                strict_schema,
                ..Limits::default()
            };
            let b = prepare_batch(body.as_bytes(), "shop", &limits, arrival(now())).unwrap();
            assert_eq!(b.records.len(), 1, "{:?}", b.rejected);
            assert_eq!(b.rejected[0].0.line, 2);
            assert!(
                b.rejected[0].0.reason.starts_with("/backends/0/pid: "),
                "{:?}",
                b.rejected[0].0.reason
            );
        }
    }

    #[test]
    fn empty_and_oversized_batches_are_refused_whole() {
        let err = prepare_batch(b"\n \n", "shop", &Limits::default(), arrival(now())).unwrap_err();
        assert_eq!(
            (err.status, err.message.as_str()),
            (StatusCode::BAD_REQUEST, "body is empty")
        );
        let limits = Limits {
            max_records_per_batch: 1,
            ..Limits::default()
        };
        let body = format!("{}\n{}\n", line(ID, "shop"), line(ID, "shop"));
        let err = prepare_batch(body.as_bytes(), "shop", &limits, arrival(now())).unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn long_lines_and_future_records_are_refused_alone() {
        let limits = Limits {
            max_line_bytes: 50,
            ..Limits::default()
        };
        let b =
            prepare_batch(line(ID, "shop").as_bytes(), "shop", &limits, arrival(now())).unwrap();
        assert!(
            b.rejected[0].0.reason.contains("over max_line_bytes (50)"),
            "{:?}",
            b.rejected
        );
        let early = bitville_schemas::parse_ts("2026-11-25T12:00:00.000000Z").unwrap();
        let b = prepare_batch(
            line(ID, "shop").as_bytes(),
            "shop",
            &Limits::default(),
            arrival(early),
        )
        .unwrap();
        assert!(
            b.rejected[0].0.reason.contains("in the future"),
            "{:?}",
            b.rejected
        );
    }
}
