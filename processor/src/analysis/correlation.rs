//! Correlation across record kinds: lock trees from pg_activity samples,
//! and requests looked up by correlation ID.
//!
//! A waiting backend's `blocking_pids` name backends of the same sample
//! (same `seq`). Following them to a backend that waits on nobody gives the
//! root blocker; its `correlation_id` (from `bitville:<uuid>` in
//! `application_name`) names the request that holds the lock, and so its URL.

use std::collections::{BTreeSet, HashMap};

use super::{
    AnalysisError, Days, ENDPOINT_SQL, Frame, Micros, SECOND, Scope, Source, Window, query,
    query_named, quote,
};

/// One backend of one pg_activity sample.
#[derive(Debug, Clone, Default)]
pub struct Backend {
    pub seq: i64,
    pub host: String,
    pub ts: Micros,
    pub pid: i64,
    pub blocking: Vec<i64>,
    pub correlation_id: Option<String>,
    pub fingerprint: Option<String>,
    pub query: Option<String>,
    pub state: Option<String>,
    pub xact_ms: f64,
}

/// One sample of a backend waiting behind a root blocker.
#[derive(Debug, Clone)]
pub struct Wait {
    pub in_window: bool,
    /// The time this sample stands for (the host's sampling interval).
    pub seconds: f64,
    pub waiter: Backend,
    pub root: Backend,
}

/// A request's identity for evidence.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RequestRef {
    pub correlation_id: String,
    pub endpoint: String,
    pub url: String,
    pub host: String,
    pub duration_ms: f64,
}

/// Seconds each pg_activity sample stands for, per (host, in window).
///
/// pg-watch sends no sample when no backend is busy, so a quiet stretch has
/// few samples and its length over their count would make each one stand
/// for seconds: a lock wait caught in one of them would count many times
/// over. The sampling interval is read from the gaps between a host's
/// consecutive samples instead (their 10th percentile: the interval itself,
/// as most busy samples follow each other). A host with too few samples in
/// the frame to tell (a database that was mostly idle) is read over the
/// hour before it, and failing that is taken at pg-watch's default interval
/// (1 s): never the window's length over its count, which made the one
/// sample of a quiet window stand for the whole window.
///
/// # Errors
/// The store query failed.
pub fn sample_seconds(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    frame: &Frame,
) -> Result<HashMap<(String, bool), f64>, AnalysisError> {
    let t = days.table("pg_activity", frame.range());
    let (f, s) = (frame.filter("ts"), scope.clause(""));
    let counts = query_named(
        src,
        &format!(
            "SELECT DISTINCT host, {w} AS w FROM {t} WHERE {f}{s}",
            w = frame.in_window("ts"),
        ),
    )?;
    let intervals = |range: Window| -> Result<HashMap<String, f64>, AnalysisError> {
        let gaps = query_named(
            src,
            &format!(
                "SELECT host, quantile_cont(gap_s, 0.1) AS interval_s, count(*) AS gaps FROM ( \
                 SELECT host, epoch(ts) - epoch(lag(ts) OVER (PARTITION BY host ORDER BY ts)) AS gap_s \
                 FROM (SELECT DISTINCT host, seq, ts FROM {t} WHERE {f}{s})) \
                 WHERE gap_s > 0 GROUP BY ALL",
                t = days.table("pg_activity", range),
                f = range.filter("ts"),
            ),
        )?;
        let mut interval = HashMap::new();
        for r in gaps.rows() {
            if r.num("gaps")? >= 3.0 {
                interval.insert(r.text("host")?, r.num("interval_s")?.clamp(0.01, 60.0));
            }
        }
        Ok(interval)
    };
    let mut interval = intervals(frame.range())?;
    let mut out = HashMap::new();
    for r in counts.rows() {
        let (host, w) = (r.text("host")?, r.flag("w")?);
        if !interval.contains_key(&host) {
            let before = Window {
                from: frame.range().from - 3600 * SECOND,
                to: frame.range().to,
            };
            let wider = intervals(before)?;
            let dt = wider.get(&host).copied().unwrap_or(DEFAULT_SAMPLE_S);
            interval.insert(host.clone(), dt);
        }
        out.insert((host.clone(), w), interval[&host]);
    }
    Ok(out)
}

/// pg-watch's default sampling interval (`[activity] interval_ms`).
const DEFAULT_SAMPLE_S: f64 = 1.0;

/// Every sample of a backend waiting on a lock in the frame, with its root blocker.
///
/// # Errors
/// A store query failed.
pub fn lock_waits(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    frame: &Frame,
) -> Result<Vec<Wait>, AnalysisError> {
    let rows = query(
        src,
        &format!(
            "SELECT seq, host, epoch_us(ts), pid, blocking_pids, correlation_id, fingerprint, query, state, xact_ms, {w} \
             FROM {t} WHERE {f}{s} AND seq IN \
             (SELECT seq FROM {t} WHERE {f}{s} AND len(blocking_pids) > 0) ORDER BY seq",
            t = days.table("pg_activity", frame.range()),
            w = frame.in_window("ts"),
            f = frame.filter("ts"),
            s = scope.clause("")
        ),
    )?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let dt = sample_seconds(src, days, scope, frame)?;
    let mut waits = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let seq = rows[i].i(0);
        let mut sample: HashMap<i64, Backend> = HashMap::new();
        let in_window = rows[i].s(10) == "true";
        while i < rows.len() && rows[i].i(0) == seq {
            let r = &rows[i];
            let b = Backend {
                seq,
                host: r.s(1),
                ts: r.i(2),
                pid: r.i(3),
                blocking: r.list(4),
                correlation_id: r.opt(5).map(str::to_owned),
                fingerprint: r.opt(6).map(str::to_owned),
                query: r.opt(7).map(str::to_owned),
                state: r.opt(8).map(str::to_owned),
                xact_ms: r.f(9),
            };
            sample.insert(b.pid, b);
            i += 1;
        }
        for waiter in sample.values().filter(|b| !b.blocking.is_empty()) {
            if let Some(root) = root_blocker(&sample, waiter.pid) {
                let seconds = dt
                    .get(&(waiter.host.clone(), in_window))
                    .copied()
                    .unwrap_or(1.0);
                waits.push(Wait {
                    in_window,
                    seconds,
                    waiter: waiter.clone(),
                    root: sample[&root].clone(),
                });
            }
        }
    }
    Ok(waits)
}

/// Follows `blocking_pids` from `pid` to a backend of the sample that waits
/// on nobody in the sample. Cycles (deadlocks) and blockers missing from the
/// sample end at the last backend seen.
pub fn root_blocker(sample: &HashMap<i64, Backend>, pid: i64) -> Option<i64> {
    let mut seen = BTreeSet::new();
    let mut current = pid;
    loop {
        seen.insert(current);
        let next = sample
            .get(&current)?
            .blocking
            .iter()
            .copied()
            .find(|p| sample.contains_key(p) && !seen.contains(p));
        match next {
            Some(p) => current = p,
            None if current == pid => {
                return sample
                    .get(&pid)?
                    .blocking
                    .iter()
                    .copied()
                    .find(|p| sample.contains_key(p));
            }
            None => return Some(current),
        }
    }
}

/// Requests by correlation ID, looked up around a window (a request's
/// record is written when it ends, which can be well after the window).
///
/// # Errors
/// A store query failed.
pub fn requests_by_correlation(
    src: &dyn Source,
    days: &Days,
    scope: &Scope,
    ids: &BTreeSet<String>,
    around: Window,
) -> Result<HashMap<String, RequestRef>, AnalysisError> {
    let mut out = HashMap::new();
    let range = Window {
        from: around.from - 600 * SECOND,
        to: around.to + 3600 * SECOND,
    };
    let ids: Vec<&String> = ids
        .iter()
        .filter(|id| uuid::Uuid::parse_str(id).is_ok())
        .collect();
    for chunk in ids.chunks(500) {
        let list = chunk
            .iter()
            .map(|id| quote(id))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = query(
            src,
            &format!(
                "SELECT correlation_id, {ENDPOINT_SQL}, url, host, duration_ms FROM {} \
                 WHERE {}{} AND correlation_id IN ({list})",
                days.table("requests", range),
                range.filter("ts"),
                scope.clause("")
            ),
        )?;
        for r in rows {
            out.insert(
                r.s(0),
                RequestRef {
                    correlation_id: r.s(0),
                    endpoint: r.s(1),
                    url: r.s(2),
                    host: r.s(3),
                    duration_ms: r.f(4),
                },
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(pid: i64, blocking: &[i64]) -> (i64, Backend) {
        (
            pid,
            Backend {
                pid,
                blocking: blocking.to_vec(),
                ..Backend::default()
            },
        )
    }

    #[test]
    fn the_root_blocker_is_found_through_a_chain() {
        let sample: HashMap<_, _> = [b(1, &[2]), b(2, &[3]), b(3, &[]), b(4, &[3])]
            .into_iter()
            .collect();
        assert_eq!(root_blocker(&sample, 1), Some(3));
        assert_eq!(root_blocker(&sample, 4), Some(3));
    }

    #[test]
    fn cycles_and_missing_blockers_end_without_looping() {
        let sample: HashMap<_, _> = [b(1, &[2]), b(2, &[1]), b(5, &[99])].into_iter().collect();
        assert!(matches!(root_blocker(&sample, 1), Some(2)));
        assert_eq!(root_blocker(&sample, 5), None);
    }
}
