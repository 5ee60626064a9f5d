//! The status server: `/healthz` and Prometheus `/metrics` on a local port.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// Serves `/healthz` and `/metrics` (metric names prefixed `prefix_`) on
/// `listener` until `shutdown` completes.
///
/// # Errors
/// The server fails to accept connections.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    prefix: &'static str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(
                |State((m, prefix)): State<(Arc<Metrics>, &'static str)>| async move {
                    (
                        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
                        m.render(prefix),
                    )
                        .into_response()
                },
            ),
        )
        .with_state((metrics, prefix));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
