//! The attribution rules: measured items in, ranked suspects out. Pure
//! functions with no store behind them (see the module doc of
//! [`super`] for the rules in words), so they are tested here on small
//! hand-made inputs.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Value, json};

use super::collect::{Endpoints, LockWaits, Measured, WaitEvent};
use super::{Item, Suspect, SuspectKind, TopEntry, Totals, is_database_frame};
use crate::analysis::round3;

/// At most this many suspects are reported.
const MAX_SUSPECTS: usize = 30;

/// Lock waits grouped by their root blocker's request endpoint (or its
/// statement when the blocker carries no correlation ID).
#[derive(Debug, Clone, Default)]
struct Locks {
    items: BTreeMap<String, Item>,
    /// Excess lock-wait seconds per waiting fingerprint.
    by_waiter_fingerprint: HashMap<String, f64>,
}

/// Groups lock waits by their blocker; `ratio` scales the baseline's
/// waits to the window's length.
fn locks(lock: &LockWaits, ratio: f64) -> Locks {
    let requests = &lock.requests;
    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    let mut by_fp: HashMap<String, f64> = HashMap::new();
    let mut examples: HashMap<String, BTreeSet<String>> = HashMap::new();
    for wait in &lock.waits {
        let blocker = wait
            .root
            .correlation_id
            .as_ref()
            .and_then(|id| requests.get(id));
        let key = match blocker {
            Some(req) => req.endpoint.clone(),
            None => format!(
                "(no request) {}",
                wait.root
                    .fingerprint
                    .clone()
                    .unwrap_or_else(|| format!("pid {}", wait.root.pid))
            ),
        };
        let waiter_ep = wait
            .waiter
            .correlation_id
            .as_ref()
            .and_then(|id| requests.get(id))
            .map(|r| r.endpoint.clone());
        let item = items.entry(key.clone()).or_default();
        item.add(wait.in_window, wait.seconds, waiter_ep);
        let sign = if wait.in_window { 1.0 } else { -ratio };
        *by_fp
            .entry(wait.waiter.fingerprint.clone().unwrap_or_default())
            .or_default() += sign * wait.seconds;
        if wait.in_window {
            if let Some(req) = blocker {
                item.note("blocker_url", json!(req.url));
                item.note("blocker_host", json!(req.host));
                let ids = examples.entry(key.clone()).or_default();
                if ids.len() < 5 {
                    ids.insert(req.correlation_id.clone());
                }
            }
            item.note("blocker_query", json!(wait.root.query));
            item.note("blocker_state", json!(wait.root.state));
            let xact = item
                .evidence
                .get("blocker_xact_ms_max")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            item.note(
                "blocker_xact_ms_max",
                json!(round3(xact.max(wait.root.xact_ms))),
            );
            let n = item
                .evidence
                .get("waiting_samples")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            item.note("waiting_samples", json!(n + 1));
            item.note("waiter_query", json!(wait.waiter.query));
        }
    }
    for (key, ids) in examples {
        if let Some(item) = items.get_mut(&key) {
            item.note("blocker_correlation_ids", json!(ids));
        }
    }
    Locks {
        items,
        by_waiter_fingerprint: by_fp,
    }
}

/// Adds a suspect when it explains anything.
fn push(
    suspects: &mut Vec<Suspect>,
    ratio: f64,
    kind: SuspectKind,
    name: &str,
    item: &Item,
    score: f64,
    endpoint: Option<String>,
) {
    if score > 1e-6 {
        suspects.push(Suspect {
            rank: 0,
            kind,
            name: name.to_owned(),
            score_s: score,
            share: 0.0,
            window_s: round3(item.w),
            baseline_s: round3(item.b * ratio),
            endpoint,
            evidence: item.evidence.clone(),
            spread: if item.w > 0.0 {
                item.by_endpoint
                    .iter()
                    .map(|(k, v)| (k.clone(), v / item.w))
                    .collect()
            } else {
                HashMap::new()
            },
        });
    }
}

/// Scores every measured item and ranks the suspects; `ratio` is the
/// window's length over the baseline's, `window_seconds` the window's length.
pub(super) fn rank(m: &Measured, ratio: f64, window_seconds: f64) -> (Vec<Suspect>, Totals) {
    let lock = locks(&m.locks, ratio);
    let mut suspects: Vec<Suspect> = Vec::new();

    let lock_total: f64 = lock.items.values().map(|i| i.excess(ratio).max(0.0)).sum();
    for (name, item) in &lock.items {
        push(
            &mut suspects,
            ratio,
            SuspectKind::LockBlocker,
            name,
            item,
            item.excess(ratio),
            item.main_endpoint(),
        );
    }

    // SQL: PHP's view when PHP saw the statement, the server's otherwise.
    let (php_sql, server_sql) = (&m.fingerprints.php, &m.fingerprints.server);
    let mut sql_raw_total = 0.0;
    let mut sql_suspects: BTreeSet<String> = BTreeSet::new();
    let names: BTreeSet<&String> = php_sql.keys().chain(server_sql.keys()).collect();
    for fp in names {
        let php = php_sql.get(fp).filter(|i| i.w > 0.0 || i.b > 0.0);
        let server = server_sql.get(fp);
        let Some(base) = php.or(server) else { continue };
        let mut item = base.clone();
        if let (Some(_), Some(s)) = (php, server) {
            item.evidence.extend(s.evidence.clone());
            item.note("pgss_seconds", json!(round3(s.w)));
            item.note("baseline_pgss_seconds", json!(round3(s.b * ratio)));
        }
        let raw = item.excess(ratio);
        sql_raw_total += raw.max(0.0);
        let lock_part = lock
            .by_waiter_fingerprint
            .get(fp)
            .copied()
            .unwrap_or(0.0)
            .max(0.0);
        if lock_part > 0.0 {
            item.note("lock_wait_seconds", json!(round3(lock_part)));
        }
        let score = raw - lock_part;
        if score > 0.0 {
            sql_suspects.insert(fp.clone());
        }
        push(
            &mut suspects,
            ratio,
            SuspectKind::SqlFingerprint,
            fp,
            &item,
            score,
            item.main_endpoint(),
        );
    }

    for (name, item) in &m.functions {
        let mut item = item.clone();
        let mut score = item.excess(ratio);
        if is_database_frame(name) {
            item.note(
                "note",
                json!("time waiting for the database driver; see the SQL suspects"),
            );
            score -= sql_raw_total;
        }
        push(
            &mut suspects,
            ratio,
            SuspectKind::PhpFunction,
            name,
            &item,
            score,
            item.main_endpoint(),
        );
    }

    for (
        event,
        WaitEvent {
            item,
            by_fingerprint,
        },
    ) in &m.waits
    {
        let score = if event.starts_with("Lock:") {
            item.excess(ratio) - lock_total
        } else {
            let explained: f64 = by_fingerprint
                .iter()
                .filter(|(fp, _)| sql_suspects.contains(*fp))
                .map(|(_, s)| s)
                .sum();
            let unexplained = if item.w > 0.0 {
                1.0 - explained / item.w
            } else {
                0.0
            };
            item.excess(ratio) * unexplained
        };
        let mut item = item.clone();
        let mut top: Vec<(&String, &f64)> = by_fingerprint.iter().collect();
        top.sort_by(|a, b| b.1.total_cmp(a.1));
        item.note(
            "top_fingerprints",
            json!(
                top.iter()
                    .take(3)
                    .map(|(fp, s)| json!({"fingerprint": fp, "seconds": round3(**s)}))
                    .collect::<Vec<_>>()
            ),
        );
        push(
            &mut suspects,
            ratio,
            SuspectKind::WaitEvent,
            event,
            &item,
            score,
            None,
        );
    }

    // Endpoints last: deeper suspects explain the latency of their endpoint.
    let mut explained: HashMap<String, f64> = HashMap::new();
    for s in &suspects {
        for (ep, part) in &s.spread {
            *explained.entry(ep.clone()).or_default() += s.score_s * part;
        }
    }
    let eps = &m.endpoints;
    let mut totals = Totals::default();
    for (ep, item) in &eps.items {
        let (n_w, n_b) = eps.counts.get(ep).copied().unwrap_or_default();
        let n_b = n_b * ratio;
        let (rs_w, rs_b) = (item.w, item.b * ratio);
        totals.requests += n_w;
        totals.baseline_requests += n_b;
        totals.request_seconds += rs_w;
        totals.baseline_request_seconds += rs_b;
        let mean_w = if n_w > 0.0 { rs_w / n_w } else { 0.0 };
        let mean_b = if n_b > 0.0 { rs_b / n_b } else { mean_w };
        let traffic = (n_w - n_b) * mean_b;
        let latency = n_w * (mean_w - mean_b);
        let unexplained = (latency - explained.get(ep).copied().unwrap_or(0.0)).max(0.0);
        let mut item = item.clone();
        item.note("requests", json!(round3(n_w)));
        item.note("baseline_requests", json!(round3(n_b)));
        item.note("rate_per_s", json!(round3(n_w / window_seconds)));
        item.note("baseline_rate_per_s", json!(round3(n_b / window_seconds)));
        item.note("mean_ms", json!(round3(mean_w * 1000.0)));
        item.note("baseline_mean_ms", json!(round3(mean_b * 1000.0)));
        item.note("traffic_excess_s", json!(round3(traffic)));
        item.note("latency_excess_s", json!(round3(latency)));
        push(
            &mut suspects,
            ratio,
            SuspectKind::Endpoint,
            ep,
            &item,
            traffic.max(0.0) + unexplained,
            Some(ep.clone()),
        );
    }
    totals.excess_request_seconds =
        round3(totals.request_seconds - totals.baseline_request_seconds);
    totals.requests = round3(totals.requests);
    totals.baseline_requests = round3(totals.baseline_requests);
    totals.request_seconds = round3(totals.request_seconds);
    totals.baseline_request_seconds = round3(totals.baseline_request_seconds);

    suspects.sort_by(|a, b| {
        b.score_s
            .total_cmp(&a.score_s)
            .then(a.kind.cmp(&b.kind))
            .then(a.name.cmp(&b.name))
    });
    suspects.truncate(MAX_SUSPECTS);
    let total = totals.excess_request_seconds;
    for (i, s) in suspects.iter_mut().enumerate() {
        s.rank = i + 1;
        s.share = if total > 0.0 {
            round3((s.score_s / total).min(1.0))
        } else {
            0.0
        };
        s.score_s = round3(s.score_s);
    }
    (suspects, totals)
}

/// Top entries of endpoints: their window request-seconds and requests.
pub(super) fn top_endpoints(eps: Endpoints) -> Vec<TopEntry> {
    eps.items
        .into_iter()
        .map(|(name, item)| {
            let count = eps.counts.get(&name).map_or(0.0, |c| c.0);
            TopEntry {
                name,
                seconds: item.w,
                count,
                evidence: item.evidence,
            }
        })
        .collect()
}

/// Top entries of measured items; `count_key` names the evidence that counts each.
pub(super) fn top_items(items: BTreeMap<String, Item>, count_key: &str) -> Vec<TopEntry> {
    items
        .into_iter()
        .map(|(name, item)| {
            let count = item
                .evidence
                .get(count_key)
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            TopEntry {
                name,
                seconds: item.w,
                count,
                evidence: item.evidence,
            }
        })
        .collect()
}

/// The `limit` (at least 1) entries with the most seconds, rounded; those
/// with none are left out.
pub(super) fn top_list(entries: Vec<TopEntry>, limit: usize) -> Vec<TopEntry> {
    let mut entries: Vec<TopEntry> = entries.into_iter().filter(|e| e.seconds > 0.0).collect();
    entries.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    entries.truncate(limit.max(1));
    for e in &mut entries {
        e.seconds = round3(e.seconds);
        e.count = round3(e.count);
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::correlation::{Backend, RequestRef, Wait};

    /// An item measured `w` seconds in the window and `b` in the baseline,
    /// all of the window's on `endpoint`.
    fn item(w: f64, b: f64, endpoint: &str) -> Item {
        let mut i = Item::default();
        i.add(true, w, Some(endpoint.to_owned()));
        i.add(false, b, Some(endpoint.to_owned()));
        i
    }

    /// An endpoint with `n` requests of `mean_s` each in the window and
    /// `n_b` of `mean_b_s` in the baseline.
    fn endpoint(
        m: &mut Measured,
        name: &str,
        (n, mean_s): (f64, f64),
        (n_b, mean_b_s): (f64, f64),
    ) {
        m.endpoints
            .items
            .insert(name.to_owned(), item(n * mean_s, n_b * mean_b_s, name));
        m.endpoints.counts.insert(name.to_owned(), (n, n_b));
    }

    fn backend(pid: i64, correlation_id: Option<&str>, fingerprint: Option<&str>) -> Backend {
        Backend {
            pid,
            correlation_id: correlation_id.map(str::to_owned),
            fingerprint: fingerprint.map(str::to_owned),
            ..Backend::default()
        }
    }

    fn find<'a>(suspects: &'a [Suspect], kind: SuspectKind, name: &str) -> Option<&'a Suspect> {
        suspects.iter().find(|s| s.kind == kind && s.name == name)
    }

    #[test]
    fn the_same_load_as_the_baseline_has_no_suspects() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /a", (10.0, 0.1), (10.0, 0.1));
        m.functions.insert("slow".into(), item(1.0, 1.0, "GET /a"));
        let (suspects, totals) = rank(&m, 1.0, 60.0);
        assert!(suspects.is_empty(), "{suspects:?}");
        assert_eq!(totals.excess_request_seconds, 0.0);
        assert_eq!(totals.requests, 10.0);
    }

    /// A slower function explains its endpoint's latency: the function ranks
    /// first with the whole excess, and the endpoint is not counted again.
    #[test]
    fn a_slower_function_takes_its_endpoints_latency() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /a", (10.0, 0.5), (10.0, 0.1));
        m.functions
            .insert("App\\Pricing::apply".into(), item(5.0, 1.0, "GET /a"));
        let (suspects, totals) = rank(&m, 1.0, 60.0);
        assert_eq!(totals.excess_request_seconds, 4.0);
        assert_eq!(suspects.len(), 1, "{suspects:?}");
        let s = &suspects[0];
        assert_eq!((s.rank, s.kind), (1, SuspectKind::PhpFunction));
        assert_eq!((s.score_s, s.share), (4.0, 1.0));
        assert_eq!(s.endpoint.as_deref(), Some("GET /a"));
    }

    /// More requests at the same latency: the endpoint itself is the cause.
    #[test]
    fn extra_traffic_ranks_its_endpoint() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /burst", (30.0, 0.1), (10.0, 0.1));
        endpoint(&mut m, "GET /calm", (10.0, 0.1), (10.0, 0.1));
        let (suspects, _) = rank(&m, 1.0, 60.0);
        assert_eq!(suspects.len(), 1, "{suspects:?}");
        assert_eq!(suspects[0].name, "GET /burst");
        assert_eq!(suspects[0].score_s, 2.0);
        assert_eq!(suspects[0].evidence["traffic_excess_s"], json!(2.0));
    }

    /// The baseline is scaled to the window's length before comparing.
    #[test]
    fn a_longer_baseline_is_scaled_to_the_window() {
        let mut m = Measured::default();
        // A 10-minute window against a 20-minute baseline: ratio 0.5.
        endpoint(&mut m, "GET /a", (10.0, 0.1), (20.0, 0.1));
        let (suspects, totals) = rank(&m, 0.5, 600.0);
        assert!(suspects.is_empty(), "{suspects:?}");
        assert_eq!(totals.baseline_requests, 10.0);
    }

    /// A driver frame's time is SQL time: the SQL suspects' excess is taken
    /// off it, so the statement ranks and the driver frame does not.
    #[test]
    fn a_database_driver_frame_gives_its_time_to_the_sql() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /a", (10.0, 0.4), (10.0, 0.1));
        m.functions
            .insert("PDOStatement::execute".into(), item(3.5, 0.5, "GET /a"));
        m.fingerprints.php.insert(
            "SELECT * FROM reviews WHERE p = ?".into(),
            item(3.2, 0.2, "GET /a"),
        );
        let (suspects, _) = rank(&m, 1.0, 60.0);
        assert_eq!(suspects[0].kind, SuspectKind::SqlFingerprint);
        assert_eq!(suspects[0].score_s, 3.0);
        assert!(
            find(&suspects, SuspectKind::PhpFunction, "PDOStatement::execute").is_none(),
            "{suspects:?}"
        );
    }

    /// pg_stat_statements stands in for a statement PHP did not see, and
    /// sits beside PHP's figures as evidence when it did.
    #[test]
    fn the_servers_view_fills_in_for_statements_php_did_not_see() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /a", (10.0, 0.1), (10.0, 0.1));
        m.fingerprints
            .server
            .insert("VACUUM ?".into(), item(2.0, 0.0, "-"));
        m.fingerprints
            .php
            .insert("SELECT ?".into(), item(1.5, 0.5, "GET /a"));
        m.fingerprints
            .server
            .insert("SELECT ?".into(), item(1.6, 0.6, "-"));
        let (suspects, _) = rank(&m, 1.0, 60.0);
        let vacuum = find(&suspects, SuspectKind::SqlFingerprint, "VACUUM ?").unwrap();
        assert_eq!(vacuum.score_s, 2.0);
        let select = find(&suspects, SuspectKind::SqlFingerprint, "SELECT ?").unwrap();
        assert_eq!(select.score_s, 1.0, "PHP's figures count, not the server's");
        assert_eq!(select.evidence["pgss_seconds"], json!(1.6));
    }

    /// Waiting behind a lock belongs to the blocker: the blocker's request
    /// ranks first, the waiter's statement keeps only its own time, and the
    /// Lock wait event adds nothing the blocker already explains.
    #[test]
    fn lock_waits_belong_to_the_blocking_request() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /checkout", (10.0, 0.6), (10.0, 0.1));
        let waiter_fp = "UPDATE stock SET n = n - ? WHERE id = ?";
        m.fingerprints
            .php
            .insert(waiter_fp.into(), item(5.5, 0.5, "GET /checkout"));
        let mut waits = BTreeMap::new();
        waits.insert(
            "Lock:transactionid".to_owned(),
            WaitEvent {
                item: item(4.0, 0.0, "-"),
                by_fingerprint: HashMap::from([(waiter_fp.to_owned(), 4.0)]),
            },
        );
        m.waits = waits;
        m.locks = LockWaits {
            waits: (0..4)
                .map(|_| Wait {
                    in_window: true,
                    seconds: 1.0,
                    waiter: backend(2, Some("w-1"), Some(waiter_fp)),
                    root: backend(1, Some("b-1"), Some("SELECT pg_sleep(?)")),
                })
                .collect(),
            requests: HashMap::from([
                (
                    "b-1".to_owned(),
                    RequestRef {
                        correlation_id: "b-1".into(),
                        endpoint: "POST /admin/reindex".into(),
                        url: "/admin/reindex".into(),
                        host: "web-1".into(),
                        duration_ms: 4000.0,
                    },
                ),
                (
                    "w-1".to_owned(),
                    RequestRef {
                        correlation_id: "w-1".into(),
                        endpoint: "GET /checkout".into(),
                        url: "/checkout".into(),
                        host: "web-1".into(),
                        duration_ms: 700.0,
                    },
                ),
            ]),
        };
        let (suspects, totals) = rank(&m, 1.0, 60.0);
        assert_eq!(totals.excess_request_seconds, 5.0);
        let first = &suspects[0];
        assert_eq!(
            (first.kind, first.name.as_str()),
            (SuspectKind::LockBlocker, "POST /admin/reindex")
        );
        assert_eq!((first.score_s, first.share), (4.0, 0.8));
        assert_eq!(first.endpoint.as_deref(), Some("GET /checkout"));
        assert_eq!(first.evidence["blocker_url"], json!("/admin/reindex"));
        assert_eq!(first.evidence["waiting_samples"], json!(4));
        let sql = find(&suspects, SuspectKind::SqlFingerprint, waiter_fp).unwrap();
        assert_eq!(sql.score_s, 1.0);
        assert_eq!(sql.evidence["lock_wait_seconds"], json!(4.0));
        assert!(find(&suspects, SuspectKind::WaitEvent, "Lock:transactionid").is_none());
        // The blocker and the statement explain the whole latency change.
        assert!(find(&suspects, SuspectKind::Endpoint, "GET /checkout").is_none());
    }

    /// A wait event keeps the part of its excess that no SQL suspect's
    /// statements spent.
    #[test]
    fn a_wait_event_keeps_what_no_sql_suspect_explains() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /a", (10.0, 0.1), (10.0, 0.1));
        m.fingerprints
            .php
            .insert("SELECT ?".into(), item(2.0, 0.0, "GET /a"));
        m.waits.insert(
            "IO:DataFileRead".into(),
            WaitEvent {
                item: item(4.0, 0.0, "-"),
                by_fingerprint: HashMap::from([
                    ("SELECT ?".to_owned(), 1.0),
                    ("UPDATE ?".to_owned(), 3.0),
                ]),
            },
        );
        let (suspects, _) = rank(&m, 1.0, 60.0);
        let io = find(&suspects, SuspectKind::WaitEvent, "IO:DataFileRead").unwrap();
        assert_eq!(io.score_s, 3.0);
        assert_eq!(
            io.evidence["top_fingerprints"][0]["fingerprint"],
            json!("UPDATE ?")
        );
    }

    /// Equal scores rank by kind, then by name; shares never pass 1; at
    /// most 30 suspects are kept.
    #[test]
    fn ranking_is_stable_and_bounded() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /a", (10.0, 0.2), (10.0, 0.1));
        for i in 0..40 {
            m.functions
                .insert(format!("f{i:02}"), item(2.0, 0.0, "GET /a"));
        }
        m.fingerprints
            .php
            .insert("SELECT ?".into(), item(2.0, 0.0, "GET /a"));
        let (suspects, totals) = rank(&m, 1.0, 60.0);
        assert_eq!(totals.excess_request_seconds, 1.0);
        assert_eq!(suspects.len(), MAX_SUSPECTS);
        assert_eq!(suspects[0].kind, SuspectKind::SqlFingerprint);
        assert_eq!(suspects[1].name, "f00");
        assert_eq!(suspects[2].name, "f01");
        assert!(suspects.iter().all(|s| s.share == 1.0));
        assert!(suspects.iter().enumerate().all(|(i, s)| s.rank == i + 1));
    }

    #[test]
    fn top_lists_drop_the_idle_and_keep_the_biggest() {
        let mut items = BTreeMap::new();
        items.insert("a".to_owned(), item(1.0, 0.0, "-"));
        items.insert("b".to_owned(), item(3.0, 0.0, "-"));
        items.insert("idle".to_owned(), item(0.0, 5.0, "-"));
        items.get_mut("b").unwrap().note("php_calls", json!(7.0));
        let top = top_list(top_items(items, "php_calls"), 5);
        let names: Vec<(&str, f64, f64)> = top
            .iter()
            .map(|e| (e.name.as_str(), e.seconds, e.count))
            .collect();
        assert_eq!(names, [("b", 3.0, 7.0), ("a", 1.0, 0.0)]);
        assert_eq!(top_list(top, 0).len(), 1, "a limit of 0 still shows one");
    }
}
