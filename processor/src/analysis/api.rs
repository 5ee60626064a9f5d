//! The HTTP JSON API of the analysis, served on the processor's port.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /v1/spikes?from&to&hours&factor&level&merge_gap_s&lookback_s&bucket_s` | detected spikes ([`super::spikes::Spike`]) |
//! | `GET /v1/report?from&to&baseline_from&baseline_to` | the window report ([`super::report::Report`]) |
//! | `GET /v1/top?from&to&by=endpoints\|sql\|functions&limit` | a top list |
//! | `GET /v1/requests?from&to&host&endpoint&status&min_ms&sort&limit&offset` | one page of requests, sorted in the store (`sort`: newest, oldest, slowest, fastest), with `next_offset` |
//! | `GET /v1/requests/{id}` | the drill-down of a correlation ID (or record id) |
//! | `GET /v1/requests/{id}/flamegraph.svg` | its flame graph |
//! | `POST /v1/sql` `{"query", "max_rows", "timeout_s"}` | read-only SQL, admin tokens only |
//!
//! Every route takes `Authorization: Bearer <token>`. A project token reads
//! only its project (a `project` parameter cannot widen or move it); an admin
//! token reads all projects, or the one named by `project`. Times are RFC 3339,
//! `YYYY-MM-DD HH:MM[:SS]` (UTC) or Unix seconds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::request::{ListFilter, ListSort};
use super::spikes::Detection;
use super::sql::SqlLimits;
use super::{
    AnalysisError, Frame, Scope, Source, Window, parse_time, report, request, spikes, sql,
};
use crate::App;
use crate::ingest::auth::bearer_token;

/// What the analysis routes share (the web UI's data routes too).
#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) app: Arc<App>,
    sql_limits: SqlLimits,
}

impl ApiState {
    pub(crate) fn new(app: Arc<App>, sql_limits: SqlLimits) -> ApiState {
        ApiState { app, sql_limits }
    }
}

/// The analysis routes. The config's admin tokens read every project and
/// may use `/v1/sql`; a project token reads its project only.
pub fn router(app: Arc<App>, sql_limits: SqlLimits) -> Router {
    Router::new()
        .route("/v1/spikes", get(spikes_route))
        .route("/v1/report", get(report_route))
        .route("/v1/top", get(top_route))
        .route("/v1/requests", get(requests_route))
        .route("/v1/requests/{id}", get(request_route))
        .route("/v1/requests/{id}/flamegraph.svg", get(flame_route))
        .route("/v1/sql", post(sql_route))
        .with_state(ApiState::new(app, sql_limits))
}

/// An error answer: status and `{"error": "..."}`.
pub(crate) struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<AnalysisError> for ApiError {
    fn from(e: AnalysisError) -> Self {
        let status = match &e {
            AnalysisError::BadInput(_) | AnalysisError::Refused(_) => StatusCode::BAD_REQUEST,
            AnalysisError::NotFound(_) => StatusCode::NOT_FOUND,
            AnalysisError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            AnalysisError::Store(_) | AnalysisError::Answer(_) | AnalysisError::Output(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError(status, e.to_string())
    }
}

/// Who is asking: admin tokens first, then the project tokens of the config.
pub(crate) fn scope(
    state: &ApiState,
    headers: &HeaderMap,
    project: Option<&str>,
) -> Result<Scope, ApiError> {
    let unauthorized = || {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or unknown bearer token".into(),
        )
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| bearer_token(h.as_bytes()))
        .ok_or_else(unauthorized)?;
    if state.app.admin_tokens().project_of(token).is_some() {
        return Ok(Scope::All.narrowed(project));
    }
    let (tokens, _) = state.app.live();
    tokens
        .project_of(token)
        .map(|p| Scope::Project(p.to_owned()))
        .ok_or_else(unauthorized)
}

/// Runs a blocking analysis on a reader of the store.
pub(crate) async fn on_reader<T: Send + 'static>(
    state: &ApiState,
    work: impl FnOnce(&dyn Source) -> Result<T, AnalysisError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = state.app.store.clone();
    tokio::task::spawn_blocking(move || {
        let reader = store.reader()?;
        work(&reader)
    })
    .await
    .map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("analysis task failed: {e}"),
        )
    })?
    .map_err(ApiError::from)
}

/// Time parameters shared by the routes.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct WindowParams {
    pub from: Option<String>,
    pub to: Option<String>,
    pub baseline_from: Option<String>,
    pub baseline_to: Option<String>,
    pub project: Option<String>,
}

impl WindowParams {
    /// The window `[from, to)`; both are required.
    ///
    /// # Errors
    /// A bound is missing or unreadable, or the window runs backwards.
    pub fn window(&self) -> Result<Window, AnalysisError> {
        let need = |v: &Option<String>, name: &str| {
            v.as_deref()
                .ok_or_else(|| AnalysisError::BadInput(format!("parameter {name} is missing")))
                .and_then(parse_time)
        };
        Window::new(need(&self.from, "from")?, need(&self.to, "to")?)
    }

    /// The window and its baseline: the given one, or the same length just before.
    ///
    /// # Errors
    /// As [`WindowParams::window`], or the baseline is bad.
    pub fn frame(&self) -> Result<Frame, AnalysisError> {
        let window = self.window()?;
        match (&self.baseline_from, &self.baseline_to) {
            (Some(f), Some(t)) => Frame::new(window, Window::new(parse_time(f)?, parse_time(t)?)?),
            (None, None) => Ok(Frame::before(window)),
            _ => Err(AnalysisError::BadInput(
                "give both baseline_from and baseline_to, or neither".into(),
            )),
        }
    }
}

/// Query parameters as given; numbers are parsed here so that a bad one
/// gets a message naming it.
pub(crate) type Params = HashMap<String, String>;

impl WindowParams {
    pub(crate) fn from_query(q: &Params) -> WindowParams {
        let get = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
        WindowParams {
            from: get("from"),
            to: get("to"),
            baseline_from: get("baseline_from"),
            baseline_to: get("baseline_to"),
            project: get("project"),
        }
    }
}

pub(crate) fn number<T: std::str::FromStr>(
    q: &Params,
    key: &str,
) -> Result<Option<T>, AnalysisError> {
    match q.get(key).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            AnalysisError::BadInput(format!("parameter {key}: {v:?} is not a number"))
        }),
    }
}

async fn spikes_route(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Result<Response, ApiError> {
    let p = WindowParams::from_query(&q);
    let scope = scope(&state, &headers, p.project.as_deref())?;
    let hours: i64 = number(&q, "hours")?.unwrap_or(24);
    let mut d = Detection::default();
    d.factor = number(&q, "factor")?.unwrap_or(d.factor);
    d.level = number(&q, "level")?.or(d.level);
    d.merge_gap_s = number(&q, "merge_gap_s")?.unwrap_or(d.merge_gap_s).max(0);
    d.lookback_s = number(&q, "lookback_s")?
        .unwrap_or(d.lookback_s)
        .clamp(10, 7 * 86_400);
    d.bucket_s = number(&q, "bucket_s")?.unwrap_or(d.bucket_s).clamp(1, 3600);
    let found = on_reader(&state, move |src| {
        let range = match (&p.from, &p.to) {
            (None, None) => spikes::recent_range(src, &scope, hours.clamp(1, 24 * 31))?,
            _ => p.window()?,
        };
        Ok(json!({ "from": super::format_time(range.from), "to": super::format_time(range.to), "spikes": spikes::find(src, &scope, range, &d)? }))
    })
    .await?;
    Ok(axum::Json(found).into_response())
}

async fn report_route(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Result<Response, ApiError> {
    let p = WindowParams::from_query(&q);
    let scope = scope(&state, &headers, p.project.as_deref())?;
    let frame = p.frame()?;
    let settings = state.app.analysis();
    let r = on_reader(&state, move |src| {
        report::report_with(src, &scope, &frame, &settings)
    })
    .await?;
    Ok(axum::Json(r).into_response())
}

async fn top_route(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Result<Response, ApiError> {
    let p = WindowParams::from_query(&q);
    let scope = scope(&state, &headers, p.project.as_deref())?;
    let window = p.window()?;
    let by = match q.get("by").filter(|v| !v.is_empty()) {
        None => report::TopBy::Endpoints,
        Some(v) => <report::TopBy as clap::ValueEnum>::from_str(v, true).map_err(|_| {
            AnalysisError::BadInput(format!(
                "parameter by: {v:?} is not endpoints, sql or functions"
            ))
        })?,
    };
    let limit = number(&q, "limit")?.unwrap_or(20);
    let top = on_reader(&state, move |src| {
        report::top(src, &scope, window, by, limit)
    })
    .await?;
    Ok(axum::Json(json!({ "by": by, "entries": top })).into_response())
}

async fn requests_route(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Result<Response, ApiError> {
    let p = WindowParams::from_query(&q);
    let scope = scope(&state, &headers, p.project.as_deref())?;
    let window = p.window()?;
    let filter = ListFilter {
        host: q.get("host").cloned(),
        endpoint: q.get("endpoint").cloned(),
        status: number(&q, "status")?,
        min_ms: number(&q, "min_ms")?,
        limit: number(&q, "limit")?,
        sort: match q.get("sort").filter(|v| !v.is_empty()) {
            Some(name) => ListSort::parse(name)?,
            None => ListSort::default(),
        },
        offset: list_offset(&q)?,
    };
    let page = on_reader(&state, move |src| {
        request::page(src, &scope, window, &filter)
    })
    .await?;
    Ok(axum::Json(page).into_response())
}

/// Pages deeper than this are refused: nobody reads that far, and the
/// store would still have to sort everything before it.
const MAX_LIST_OFFSET: usize = 1_000_000;

fn list_offset(q: &Params) -> Result<usize, AnalysisError> {
    let offset: usize = number(q, "offset")?.unwrap_or(0);
    if offset > MAX_LIST_OFFSET {
        return Err(AnalysisError::BadInput(format!(
            "parameter offset: {offset} is over {MAX_LIST_OFFSET}"
        )));
    }
    Ok(offset)
}

async fn request_route(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<Params>,
) -> Result<Response, ApiError> {
    let scope = scope(&state, &headers, q.get("project").map(String::as_str))?;
    let d = on_reader(&state, move |src| request::detail(src, &scope, &id)).await?;
    Ok(axum::Json(d).into_response())
}

async fn flame_route(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<Params>,
) -> Result<Response, ApiError> {
    let scope = scope(&state, &headers, q.get("project").map(String::as_str))?;
    let svg = on_reader(&state, move |src| {
        request::flame_graph_svg(&request::detail(src, &scope, &id)?)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

/// How long past a query's timeout `POST /v1/sql` waits for the
/// interrupted query to end before it answers 408 all the same.
const SQL_BACKSTOP: Duration = Duration::from_secs(5);

/// The body of `POST /v1/sql`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SqlBody {
    pub query: String,
    pub max_rows: Option<usize>,
    pub timeout_s: Option<u64>,
}

async fn sql_route(
    State(state): State<ApiState>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<SqlBody>,
) -> Result<Response, ApiError> {
    if scope(&state, &headers, None)? != Scope::All {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "SQL needs an admin token".into(),
        ));
    }
    let limits = SqlLimits {
        max_rows: body
            .max_rows
            .unwrap_or(state.sql_limits.max_rows)
            .min(state.sql_limits.max_rows),
        timeout: body
            .timeout_s
            .map_or(state.sql_limits.timeout, Duration::from_secs)
            .min(state.sql_limits.timeout),
    };
    // `sql::run` interrupts the query at its timeout; this bound is only a
    // backstop, a little later, should the interrupt not be heard.
    let work = on_reader(&state, move |src| sql::run(src, &body.query, limits));
    match tokio::time::timeout(limits.timeout + SQL_BACKSTOP, work).await {
        Ok(result) => Ok(axum::Json(result?).into_response()),
        Err(_) => Err(AnalysisError::Timeout(limits.timeout.as_secs()).into()),
    }
}
