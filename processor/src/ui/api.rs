//! The JSON routes the web UI needs beyond the analysis API, with the same
//! token rules (a project token reads only its project):
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /v1/ui/whoami` | `{"project": "shop"}` or `{"admin": true}`; 401 for an unknown token |
//! | `GET /v1/ui/facets?from&to` | first and last data time, hosts, endpoints and projects of the window |
//! | `GET /v1/ui/timeline?from&to&bucket_s` | per-host series ([`super::series::Timeline`]) |
//! | `GET /v1/ui/fingerprint?fp&from&to&bucket_s` | one SQL fingerprint ([`super::fingerprint::FingerprintDetail`]) |
//! | `GET /v1/ui/requests/{id}` | the analysis drill-down, each statement with its calling frames |

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::{fingerprint, series};
use crate::analysis::api::{ApiError, ApiState, Params, WindowParams, number, on_reader, scope};
use crate::analysis::{
    AnalysisError, ENDPOINT_SQL, Scope, Source, Window, format_time, query, quote, request, spikes,
};

/// The UI's data routes.
pub(crate) fn routes(state: ApiState) -> Router {
    Router::new()
        .route("/v1/ui/whoami", get(whoami_route))
        .route("/v1/ui/facets", get(facets_route))
        .route("/v1/ui/timeline", get(timeline_route))
        .route("/v1/ui/fingerprint", get(fingerprint_route))
        .route("/v1/ui/requests/{id}", get(request_route))
        .with_state(state)
}

async fn whoami_route(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let answer = match scope(&state, &headers, None)? {
        Scope::All => json!({ "admin": true }),
        Scope::Project(p) => json!({ "project": p }),
    };
    Ok(axum::Json(answer).into_response())
}

/// The caller's scope, the window, and the series' bucket: the one asked
/// for, but never so fine that the window holds more than
/// [`series::MAX_BUCKETS`]; by default the finest allowed.
fn series_params(
    state: &ApiState,
    headers: &HeaderMap,
    q: &Params,
) -> Result<(Scope, Window, i64), ApiError> {
    let p = WindowParams::from_query(q);
    let scope = scope(state, headers, p.project.as_deref())?;
    let window = p.window()?;
    let finest = series::bucket_for(&window);
    let bucket_s = number::<i64>(q, "bucket_s")?.map_or(finest, |b| b.max(finest));
    Ok((scope, window, bucket_s))
}

async fn facets_route(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Result<Response, ApiError> {
    let p = WindowParams::from_query(&q);
    let scope = scope(&state, &headers, p.project.as_deref())?;
    let given = match (&p.from, &p.to) {
        (None, None) => None,
        _ => Some(p.window()?),
    };
    let facets = on_reader(&state, move |src| facets(src, &scope, given)).await?;
    Ok(axum::Json(facets).into_response())
}

/// The data's first and last times, and what the window holds to filter on.
fn facets(src: &dyn Source, scope: &Scope, given: Option<Window>) -> Result<Value, AnalysisError> {
    let window = match given {
        Some(w) => w,
        None => match spikes::recent_range(src, scope, 24) {
            Ok(w) => w,
            Err(AnalysisError::NotFound(_)) => {
                return Ok(
                    json!({ "first": null, "last": null, "hosts": [], "endpoints": [], "projects": [] }),
                );
            }
            Err(e) => return Err(e),
        },
    };
    let s = scope.clause("");
    let span = query(
        src,
        &format!(
            "SELECT min(a), max(b) FROM (SELECT epoch_us(min(ts)) AS a, epoch_us(max(ts)) AS b FROM host_metrics WHERE true{s} \
             UNION ALL SELECT epoch_us(min(ts)), epoch_us(max(ts)) FROM requests WHERE true{s})"
        ),
    )?;
    let at = |i: usize| {
        span.first()
            .and_then(|r| r.opt(i))
            .and_then(|v| v.parse::<i64>().ok())
            .map(format_time)
    };
    let f = window.filter("ts");
    let list = |sql: String| -> Result<Vec<String>, AnalysisError> {
        Ok(query(src, &sql)?.iter().map(|r| r.s(0)).collect())
    };
    Ok(json!({
        "first": at(0),
        "last": at(1),
        "from": format_time(window.from),
        "to": format_time(window.to),
        "hosts": list(format!(
            "SELECT host FROM (SELECT DISTINCT host FROM host_metrics WHERE {f}{s} UNION SELECT DISTINCT host FROM requests WHERE {f}{s}) ORDER BY 1"
        ))?,
        "endpoints": list(format!("SELECT {ENDPOINT_SQL} AS ep FROM requests WHERE {f}{s} GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 200"))?,
        "projects": list(format!(
            "SELECT project FROM (SELECT DISTINCT project FROM host_metrics WHERE {f}{s} UNION SELECT DISTINCT project FROM requests WHERE {f}{s}) ORDER BY 1"
        ))?,
    }))
}

async fn timeline_route(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Result<Response, ApiError> {
    let (scope, window, bucket_s) = series_params(&state, &headers, &q)?;
    let t = on_reader(&state, move |src| {
        series::timeline(src, &scope, window, bucket_s)
    })
    .await?;
    Ok(axum::Json(t).into_response())
}

async fn fingerprint_route(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Result<Response, ApiError> {
    let (scope, window, bucket_s) = series_params(&state, &headers, &q)?;
    let fp = q.get("fp").cloned().unwrap_or_default();
    let d = on_reader(&state, move |src| {
        fingerprint::detail(src, &scope, &fp, window, bucket_s)
    })
    .await?;
    Ok(axum::Json(d).into_response())
}

async fn request_route(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<Params>,
) -> Result<Response, ApiError> {
    let scope = scope(&state, &headers, q.get("project").map(String::as_str))?;
    let d = on_reader(&state, move |src| request_with_frames(src, &scope, &id)).await?;
    Ok(axum::Json(d).into_response())
}

/// The drill-down of [`request::detail`], each statement with its calling
/// frames and the file and line of its caller, which the drill-down leaves out.
fn request_with_frames(src: &dyn Source, scope: &Scope, id: &str) -> Result<Value, AnalysisError> {
    let detail = request::detail(src, scope, id)?;
    let end = request::ended_at(&detail)
        .ok_or_else(|| AnalysisError::Answer(format!("request {id} has no end time")))?;
    let frames = query(
        src,
        &format!(
            "SELECT idx, frames::VARCHAR, caller_file, caller_line FROM request_sql WHERE {}{} AND correlation_id = {} ORDER BY idx",
            Window {
                from: end,
                to: end + 1
            }
            .filter("ts"),
            scope.clause(""),
            quote(&detail.correlation_id)
        ),
    )?;
    let mut out = serde_json::to_value(&detail)
        .map_err(|e| AnalysisError::Output(format!("request {id}: {e}")))?;
    if let Some(statements) = out.get_mut("sql").and_then(Value::as_array_mut) {
        for st in statements {
            let idx = st.get("idx").and_then(Value::as_i64);
            if let Some(r) = frames.iter().find(|r| Some(r.i(0)) == idx) {
                let parsed = r
                    .opt(1)
                    .and_then(|f| serde_json::from_str::<Value>(f).ok())
                    .unwrap_or(Value::Null);
                st["frames"] = parsed;
                st["caller_file"] = r.opt(2).map_or(Value::Null, |v| json!(v));
                st["caller_line"] = r
                    .opt(3)
                    .and_then(|v| v.parse::<i64>().ok())
                    .map_or(Value::Null, |v| json!(v));
            }
        }
    }
    Ok(out)
}
