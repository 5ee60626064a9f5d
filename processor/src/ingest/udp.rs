//! The UDP receiver: one datagram is `<token>\n<one JSON record>`.
//!
//! Fire-and-forget: nothing is answered, so every refusal is a counter
//! (`bitville_udp_datagrams_total{outcome="refused",reason=...}`). Records go
//! to the writer's queue without waiting; when the queue is full the
//! datagram is dropped and counted, so UDP never slows HTTP ingest.

use std::sync::Arc;

use tokio::net::UdpSocket;

use crate::App;
use crate::metrics::Outcome;

/// Receives until `shutdown` resolves.
pub async fn serve(
    app: Arc<App>,
    socket: UdpSocket,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut buf = vec![0u8; 65_536];
    tokio::pin!(shutdown);
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            () = &mut shutdown => return,
        };
        let n = match received {
            Ok((n, _peer)) => n,
            Err(e) => {
                tracing::warn!("udp receive failed: {e}");
                continue;
            }
        };
        app.metrics
            .udp_received
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // One datagram at a time, each behind its own wall: a panic while
        // handling one (a bug) is counted and the receiver goes on.
        let datagram = &buf[..n];
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handle_datagram(&app, datagram);
        }))
        .is_err()
        {
            app.metrics.udp_refused("panic");
        }
    }
}

/// Checks one datagram and queues its record; counts why it was refused otherwise.
pub fn handle_datagram(app: &App, datagram: &[u8]) {
    let Some(split) = datagram.iter().position(|b| *b == b'\n') else {
        app.metrics.udp_refused("no_token_line");
        return;
    };
    let (token, record) = (datagram[..split].trim_ascii(), &datagram[split + 1..]);
    let (tokens, limits) = app.live();
    let Some(project) = tokens.project_of(token).map(str::to_owned) else {
        app.metrics.udp_refused("token");
        return;
    };
    let record = record.strip_suffix(b"\n").unwrap_or(record);
    let batch = match super::prepare_batch(record, &project, &limits, app.arrival()) {
        Ok(b) => b,
        Err(_) => {
            app.metrics.udp_refused("empty");
            return;
        }
    };
    app.metrics
        .line_panics
        .fetch_add(batch.panics, std::sync::atomic::Ordering::Relaxed);
    if batch.records.len() != 1 || !batch.rejected.is_empty() {
        app.metrics.udp_refused("invalid");
        app.metrics.record(&project, "unknown", Outcome::Refused, 1);
        return;
    }
    if app.store.write_detached(batch.records) {
        app.metrics
            .udp_queued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    } else {
        app.metrics.udp_refused("queue_full");
    }
}
