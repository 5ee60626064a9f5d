//! The timeline's series, per host and time bucket: load average and CPU
//! (host_metrics), request rate, concurrency and latency percentiles
//! (requests), and active database backends by wait event type
//! (pg_activity).
//!
//! Percentiles are weighted by `sampling_weight`: the agent keeps every slow
//! request but only one in ten fast ones, so an unweighted median would sit
//! among the slow ones and overstate the latency a user saw.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analysis::{AnalysisError, Micros, SECOND, Scope, Source, Window, query, round3};

/// At most this many buckets per series: about one per two pixels of a
/// laptop-wide chart.
pub const MAX_BUCKETS: i64 = 360;

/// Bucket sizes a timeline uses, in seconds: round numbers people read.
const NICE_BUCKETS_S: [i64; 15] = [
    10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
];

/// The smallest round bucket (never under the 10 s host sampling interval)
/// that keeps a window within [`MAX_BUCKETS`].
pub fn bucket_for(window: &Window) -> i64 {
    let seconds = (window.to - window.from + SECOND - 1) / SECOND;
    NICE_BUCKETS_S
        .iter()
        .copied()
        .find(|b| (seconds + b - 1) / b <= MAX_BUCKETS)
        .unwrap_or(86400)
}

/// The series of one host (one project's host, for admins reading all projects).
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostSeries {
    pub project: String,
    pub host: String,
    /// `[ms since epoch, load1]`, the bucket's highest sample.
    pub load: Vec<(i64, f64)>,
    /// `[ms, user + system CPU %]`, the bucket's mean.
    pub cpu: Vec<(i64, f64)>,
    pub ncpu: Option<i64>,
    /// Request buckets, every bucket of the window (no requests: rate 0, no percentiles).
    pub requests: RequestSeries,
    /// Active client backends (mean per sample) by wait event type, `CPU` when running.
    pub waits: WaitSeries,
}

/// Request series, aligned on `t` (ms since epoch).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestSeries {
    pub t: Vec<i64>,
    /// Requests per second (weighted).
    pub rate: Vec<f64>,
    /// Requests in flight, mean over the bucket (request-seconds per second).
    pub concurrency: Vec<f64>,
    pub p50_ms: Vec<Option<f64>>,
    pub p95_ms: Vec<Option<f64>>,
}

/// Wait series, aligned on `t` (the buckets that have pg_activity samples).
#[derive(Debug, Clone, Default, Serialize)]
pub struct WaitSeries {
    pub t: Vec<i64>,
    pub by_type: BTreeMap<String, Vec<f64>>,
}

/// The whole timeline answer.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub from: String,
    pub to: String,
    pub bucket_s: i64,
    pub hosts: Vec<HostSeries>,
}

/// Reads every series of a window.
///
/// # Errors
/// A store query failed.
pub fn timeline(
    src: &dyn Source,
    scope: &Scope,
    window: Window,
    bucket_s: i64,
) -> Result<Timeline, AnalysisError> {
    let bucket = bucket_s.max(1) * SECOND;
    let (f, s) = (window.filter("ts"), scope.clause(""));
    let b = format!("epoch_us(ts) // {bucket} * {bucket}");
    let mut hosts: BTreeMap<(String, String), HostSeries> = BTreeMap::new();

    let load = query(
        src,
        &format!(
            "SELECT project, host, {b} AS b, max(load1), avg(coalesce(cpu_user_pct, 0) + coalesce(cpu_system_pct, 0)), max(ncpu) \
             FROM host_metrics WHERE {f}{s} GROUP BY ALL ORDER BY 1, 2, 3"
        ),
    )?;
    for r in load {
        let h = host(&mut hosts, r.s(0), r.s(1));
        if r.opt(3).is_some() {
            h.load.push((r.i(2) / 1000, r.f(3)));
        }
        h.cpu.push((r.i(2) / 1000, round3(r.f(4))));
        h.ncpu = r.opt(5).and_then(|n| n.parse().ok()).or(h.ncpu);
    }

    // Weighted percentiles: the first duration whose cumulative weight
    // reaches the share of the bucket's total weight.
    let reqs = query(
        src,
        &format!(
            "WITH r AS (SELECT project, host, {b} AS b, duration_ms AS d, coalesce(sampling_weight, 1) AS w \
                FROM requests WHERE {f}{s} AND duration_ms IS NOT NULL), \
             c AS (SELECT *, sum(w) OVER (PARTITION BY project, host, b ORDER BY d ROWS UNBOUNDED PRECEDING) AS cw, \
                sum(w) OVER (PARTITION BY project, host, b) AS tw FROM r) \
             SELECT project, host, b, any_value(tw), sum(w * d) / 1000.0, min(d) FILTER (WHERE cw >= 0.5 * tw), \
                min(d) FILTER (WHERE cw >= 0.95 * tw) FROM c GROUP BY ALL ORDER BY 1, 2, 3"
        ),
    )?;
    let first = window.from.div_euclid(bucket) * bucket;
    let buckets: Vec<Micros> = (0..)
        .map(|i| first + i * bucket)
        .take_while(|t| *t < window.to)
        .collect();
    let mut by_host: BTreeMap<(String, String), BTreeMap<Micros, &crate::analysis::Row>> =
        BTreeMap::new();
    for r in &reqs {
        by_host
            .entry((r.s(0), r.s(1)))
            .or_default()
            .insert(r.i(2), r);
    }
    let secs = bucket_s.max(1) as f64;
    for ((project, name), rows) in by_host {
        let h = host(&mut hosts, project, name);
        for t in &buckets {
            let r = rows.get(t);
            h.requests.t.push(t / 1000);
            h.requests
                .rate
                .push(r.map_or(0.0, |r| round3(r.f(3) / secs)));
            h.requests
                .concurrency
                .push(r.map_or(0.0, |r| round3(r.f(4) / secs)));
            h.requests.p50_ms.push(
                r.and_then(|r| r.opt(5))
                    .and_then(|v| v.parse().ok())
                    .map(round3),
            );
            h.requests.p95_ms.push(
                r.and_then(|r| r.opt(6))
                    .and_then(|v| v.parse().ok())
                    .map(round3),
            );
        }
    }

    // Mean active client backends per sample: the samples of a bucket are
    // counted over every row, so a sample with nobody active counts as zero.
    let waits = query(
        src,
        &format!(
            "WITH a AS (SELECT project, host, {b} AS b, seq, state, backend_type, wait_event_type FROM pg_activity WHERE {f}{s}), \
             n AS (SELECT project, host, b, count(DISTINCT seq) AS samples FROM a GROUP BY ALL) \
             SELECT n.project, n.host, n.b, coalesce(a.wait_event_type, 'CPU'), count(a.seq) / any_value(n.samples) \
             FROM n LEFT JOIN a ON a.project = n.project AND a.host = n.host AND a.b = n.b AND a.state = 'active' \
                AND coalesce(a.backend_type, 'client backend') = 'client backend' \
             GROUP BY ALL ORDER BY 1, 2, 3"
        ),
    )?;
    // (project, host) -> bucket -> (wait class, active backends).
    type WaitRows = BTreeMap<(String, String), BTreeMap<Micros, Vec<(String, f64)>>>;
    let mut wait_rows = WaitRows::new();
    for r in &waits {
        wait_rows
            .entry((r.s(0), r.s(1)))
            .or_default()
            .entry(r.i(2))
            .or_default()
            .push((r.s(3), r.f(4)));
    }
    for ((project, name), per_bucket) in wait_rows {
        let types: std::collections::BTreeSet<String> = per_bucket
            .values()
            .flatten()
            .filter(|(_, v)| *v > 0.0)
            .map(|(t, _)| t.clone())
            .collect();
        let h = host(&mut hosts, project, name);
        for (t, entries) in &per_bucket {
            h.waits.t.push(t / 1000);
            for ty in &types {
                let v = entries
                    .iter()
                    .find(|(k, _)| k == ty)
                    .map_or(0.0, |(_, v)| round3(*v));
                h.waits.by_type.entry(ty.clone()).or_default().push(v);
            }
        }
    }

    Ok(Timeline {
        from: crate::analysis::format_time(window.from),
        to: crate::analysis::format_time(window.to),
        bucket_s,
        hosts: hosts.into_values().collect(),
    })
}

/// The series of a project's host, made empty on first use.
fn host(
    hosts: &mut BTreeMap<(String, String), HostSeries>,
    project: String,
    name: String,
) -> &mut HostSeries {
    hosts
        .entry((project.clone(), name.clone()))
        .or_insert_with(|| HostSeries {
            project,
            host: name,
            ..HostSeries::default()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Reader;

    #[test]
    fn buckets_are_round_and_never_finer_than_host_sampling() {
        let w = |s: i64| Window::new(0, s * SECOND).unwrap();
        assert_eq!(bucket_for(&w(60)), 10);
        assert_eq!(bucket_for(&w(900)), 10);
        assert_eq!(bucket_for(&w(3600)), 10, "an hour is 360 buckets of 10 s");
        assert_eq!(bucket_for(&w(3601)), 15);
        assert_eq!(bucket_for(&w(86400)), 300);
        assert_eq!(bucket_for(&w(7 * 86400)), 1800);
        assert!(bucket_for(&w(7 * 86400)) * MAX_BUCKETS >= 7 * 86400);
    }

    /// A DuckDB file with just the columns the timeline reads, opened the
    /// way the CLI opens a store (read-only).
    fn store_with(sql: &[&str]) -> (tempfile::TempDir, Reader) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.duckdb");
        let tables = "CREATE TABLE host_metrics (project VARCHAR, host VARCHAR, ts TIMESTAMP, load1 DOUBLE, cpu_user_pct DOUBLE, cpu_system_pct DOUBLE, ncpu BIGINT);
             CREATE TABLE requests (project VARCHAR, host VARCHAR, ts TIMESTAMP, duration_ms DOUBLE, sampling_weight DOUBLE);
             CREATE TABLE pg_activity (project VARCHAR, host VARCHAR, ts TIMESTAMP, seq BIGINT, state VARCHAR, backend_type VARCHAR, wait_event_type VARCHAR);";
        crate::store::file_from_sql(&path, &[&[tables], sql].concat()).unwrap();
        let file = Reader::open_read_only(&path).unwrap();
        (dir, file)
    }

    #[test]
    fn percentiles_count_each_sampled_request_for_its_weight() {
        // Nine fast requests sampled one in ten (weight 10) and one slow one
        // kept whole: 91 requests, of which one is slow. Unweighted, the p50
        // of the ten rows would be 10 ms and the p95 1000 ms; weighted, the
        // slow one is about 1 % of the traffic, under the p95.
        let mut rows: Vec<String> = (0..9)
            .map(|i| {
                format!(
                    "('shop', 'web-1', TIMESTAMP '2026-11-27 10:00:0{i}', {}, 10)",
                    10 + i
                )
            })
            .collect();
        rows.push("('shop', 'web-1', TIMESTAMP '2026-11-27 10:00:09', 1000, 1)".into());
        rows.push("('blog', 'web-9', TIMESTAMP '2026-11-27 10:00:01', 5, 1)".into());
        let insert = format!("INSERT INTO requests VALUES {}", rows.join(", "));
        let (_dir, src) = store_with(&[&insert]);
        let from = crate::analysis::parse_time("2026-11-27T10:00:00Z").unwrap();
        let window = Window::new(from, from + 20 * SECOND).unwrap();
        let t = timeline(&src, &Scope::Project("shop".into()), window, 10).unwrap();
        assert_eq!(
            t.hosts.len(),
            1,
            "another project's host is not in the answer"
        );
        let r = &t.hosts[0].requests;
        assert_eq!(
            r.t,
            vec![from / 1000, from / 1000 + 10_000],
            "every bucket of the window is there"
        );
        assert_eq!(r.rate, vec![9.1, 0.0]);
        assert_eq!(r.p50_ms[0], Some(14.0));
        assert_eq!(r.p95_ms[0], Some(18.0));
        assert_eq!(r.p50_ms[1], None);
        // 9 * 10 * (10..=18 mean 14) ms + 1000 ms over 10 s.
        assert!(
            (r.concurrency[0] - (90.0 * 14.0 + 1000.0) / 1000.0 / 10.0).abs() < 1e-3,
            "{:?}",
            r.concurrency
        );
    }

    #[test]
    fn waits_are_mean_active_backends_per_sample_by_type() {
        let (_dir, src) = store_with(&[
            "INSERT INTO pg_activity VALUES
              ('shop', 'db-1', TIMESTAMP '2026-11-27 10:00:00', 1, 'active', 'client backend', 'Lock'),
              ('shop', 'db-1', TIMESTAMP '2026-11-27 10:00:00', 1, 'active', 'client backend', 'Lock'),
              ('shop', 'db-1', TIMESTAMP '2026-11-27 10:00:00', 1, 'active', 'client backend', NULL),
              ('shop', 'db-1', TIMESTAMP '2026-11-27 10:00:02', 2, 'idle', 'client backend', 'Client'),
              ('shop', 'db-1', TIMESTAMP '2026-11-27 10:00:02', 2, 'active', 'autovacuum worker', NULL),
              ('shop', 'db-1', TIMESTAMP '2026-11-27 10:00:12', 3, 'idle', 'client backend', 'Client')",
            "INSERT INTO host_metrics VALUES ('shop', 'db-1', TIMESTAMP '2026-11-27 10:00:05', 3.5, 20, 5, 4)",
        ]);
        let from = crate::analysis::parse_time("2026-11-27T10:00:00Z").unwrap();
        let t = timeline(
            &src,
            &Scope::All,
            Window::new(from, from + 20 * SECOND).unwrap(),
            10,
        )
        .unwrap();
        let h = &t.hosts[0];
        assert_eq!(h.waits.t.len(), 2);
        // Two samples in the first bucket: two Lock waiters and one running, over two samples.
        assert_eq!(h.waits.by_type["Lock"], vec![1.0, 0.0]);
        assert_eq!(h.waits.by_type["CPU"], vec![0.5, 0.0]);
        assert_eq!(
            h.waits.by_type.len(),
            2,
            "idle backends and autovacuum are not active client backends"
        );
        assert_eq!(h.load, vec![(from / 1000, 3.5)]);
        assert_eq!(h.cpu, vec![(from / 1000, 25.0)]);
        assert_eq!(h.ncpu, Some(4));
        assert!(h.requests.t.is_empty());
    }
}
