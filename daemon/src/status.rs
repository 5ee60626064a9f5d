//! The status routes every daemon serves: `/healthz` (the process and its
//! tasks are alive), `/readyz` (it can do its job now) and Prometheus
//! `/metrics`. The shipper and pg-watch serve them on their own local port
//! ([`serve`]); the processor merges [`router`] into its HTTP server.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::Shutdown;

/// What a daemon says about itself.
pub trait Status: Send + Sync + 'static {
    /// The text exposition of every metric (see [`crate::metrics`]).
    fn metrics(&self) -> String;

    /// Liveness: a problem here means the process should be restarted.
    fn health(&self) -> Health {
        Health::default()
    }

    /// Readiness: a problem here means it cannot do its job right now.
    fn ready(&self) -> Health {
        self.health()
    }
}

/// The answer of `/healthz` or `/readyz`: `200 {"status":"ok", ...}`, or
/// `503 {"status":"failing","problems":[...], ...}` when there is a problem.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Health {
    /// One line per problem; empty when all is well.
    pub problems: Vec<String>,
    /// Facts shown beside the status (`"postgres": "up"`).
    pub details: Vec<(&'static str, String)>,
}

impl Health {
    pub fn problem(&mut self, line: impl Into<String>) -> &mut Self {
        self.problems.push(line.into());
        self
    }

    pub fn detail(&mut self, key: &'static str, value: impl Into<String>) -> &mut Self {
        self.details.push((key, value.into()));
        self
    }

    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl IntoResponse for Health {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::new();
        let ok = self.is_ok();
        body.insert("status".into(), (if ok { "ok" } else { "failing" }).into());
        if !ok {
            body.insert("problems".into(), self.problems.into());
        }
        for (key, value) in self.details {
            body.insert(key.into(), value.into());
        }
        let code = if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (code, axum::Json(serde_json::Value::Object(body))).into_response()
    }
}

/// The three routes over `status`.
pub fn router<S: Status>(status: Arc<S>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|State(s): State<Arc<S>>| async move { s.health() }),
        )
        .route(
            "/readyz",
            get(|State(s): State<Arc<S>>| async move { s.ready() }),
        )
        .route(
            "/metrics",
            get(|State(s): State<Arc<S>>| async move {
                ([(CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics()).into_response()
            }),
        )
        .with_state(status)
}

/// Serves `router` on `listener` until `shutdown` fires.
///
/// # Errors
/// The server fails to accept connections.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.wait())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Health);

    impl Status for Fixed {
        fn metrics(&self) -> String {
            "bitville_x 1\n".to_owned()
        }
        fn health(&self) -> Health {
            self.0.clone()
        }
    }

    async fn get(router: Router, path: &str) -> (u16, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = Shutdown::channel();
        let server = tokio::spawn(serve(listener, router, shutdown));
        let reply = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        let status = reply.status().as_u16();
        let body = reply.text().await.unwrap();
        trigger.trigger();
        server.await.unwrap().unwrap();
        (status, body)
    }

    #[tokio::test]
    async fn health_is_json_and_a_problem_is_a_503() {
        let mut ok = Health::default();
        ok.detail("postgres", "up");
        let (code, body) = get(router(Arc::new(Fixed(ok))), "/healthz").await;
        let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        assert_eq!(code, 200);
        assert_eq!(
            json(&body),
            serde_json::json!({"status": "ok", "postgres": "up"})
        );

        let mut bad = Health::default();
        bad.problem("task udp stopped: panicked");
        let (code, body) = get(router(Arc::new(Fixed(bad))), "/readyz").await;
        assert_eq!(code, 503);
        assert_eq!(
            json(&body),
            serde_json::json!({"status": "failing", "problems": ["task udp stopped: panicked"]})
        );
        let (code, body) = get(router(Arc::new(Fixed(Health::default()))), "/metrics").await;
        assert_eq!((code, body.as_str()), (200, "bitville_x 1\n"));
    }
}
