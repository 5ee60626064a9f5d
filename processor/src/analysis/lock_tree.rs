//! The whole lock chain around one request's backend: from the backends at
//! its root (the blockers that waited on nobody) down through every backend
//! waiting on them, merged over the samples where the request took part.
//!
//! `pg_blocking_pids()` names only the next link, and that link is often
//! another waiter queued in front: a waiter's page that shows only it never
//! reaches the transaction that held the lock. Here each sample's links are
//! followed to their root, and the root's tree is drawn with counts, so a
//! trimmed level says "5 of 9".

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::{Micros, format_time};

/// Children shown per node, and roots shown: the first seen, in time order
/// (the request's own path is always kept).
pub const LOCK_TREE_WIDTH: usize = 8;
/// Levels below a root; deeper waiters are counted but not listed.
pub const LOCK_TREE_DEPTH: usize = 6;

/// One backend of one pg_activity sample, as the tree needs it.
#[derive(Debug, Clone, Default)]
pub struct SampleRow {
    /// The sample (`seq` of its record).
    pub sample: i64,
    pub ts: Micros,
    pub pid: i64,
    pub blocking_pids: Vec<i64>,
    pub correlation_id: Option<String>,
    pub state: Option<String>,
    pub wait_event_type: Option<String>,
    pub wait_event: Option<String>,
    pub query: Option<String>,
    pub fingerprint: Option<String>,
}

/// A backend in the lock tree, with the backends waiting on it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockNode {
    pub pid: i64,
    pub correlation_id: Option<String>,
    /// The request this backend served, when its correlation ID names one.
    pub endpoint: Option<String>,
    pub url: Option<String>,
    pub state: Option<String>,
    pub wait_event_type: Option<String>,
    pub wait_event: Option<String>,
    pub query: Option<String>,
    /// The normalized `query`, the key of the SQL fingerprint page.
    pub fingerprint: Option<String>,
    /// True for the backend of the request the tree is drawn for.
    pub this_request: bool,
    pub first_seen: String,
    pub last_seen: String,
    /// Samples it was seen in at this place of the tree.
    pub samples: usize,
    /// Backends that waited on it directly, first seen first, at most
    /// [`LOCK_TREE_WIDTH`] (and the request's own path).
    pub waiters: Vec<LockNode>,
    /// All backends that waited on it directly, shown or not.
    pub waiters_total: usize,
    /// All backends below it, at any depth, shown or not.
    pub below_total: usize,
}

/// The lock chains a request took part in: the root blockers, each with
/// its tree of waiters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LockTree {
    /// The backends at the root, first seen first, at most [`LOCK_TREE_WIDTH`].
    pub roots: Vec<LockNode>,
    /// All root backends seen, shown or not.
    pub roots_total: usize,
}

/// The request a correlation ID names: its endpoint and URL.
pub type Names<'a> = dyn Fn(&str) -> Option<(String, String)> + 'a;

/// A node while the samples are merged.
struct Acc {
    key: (i64, Option<String>),
    row: SampleRow,
    first: Micros,
    last: Micros,
    samples: usize,
    children: Vec<Acc>,
}

impl Acc {
    fn new(row: &SampleRow) -> Acc {
        Acc {
            key: (row.pid, row.correlation_id.clone()),
            row: row.clone(),
            first: row.ts,
            last: row.ts,
            samples: 0,
            children: Vec::new(),
        }
    }

    /// Merges one sample's subtree under `pid` into this node.
    fn merge(&mut self, pid: i64, sample: &Sample<'_>, path: &mut BTreeSet<i64>, depth: usize) {
        let row = sample.rows[&pid];
        self.first = self.first.min(row.ts);
        self.last = self.last.max(row.ts);
        self.samples += 1;
        // The latest sample says what the backend is doing now.
        if row.ts >= self.row.ts {
            self.row = row.clone();
        }
        if depth >= LOCK_TREE_DEPTH {
            return;
        }
        path.insert(pid);
        for waiter in sample.waiters_of(pid) {
            if path.contains(&waiter) {
                continue; // a deadlock's cycle: drawn once
            }
            let w = sample.rows[&waiter];
            let key = (w.pid, w.correlation_id.clone());
            let at = match self.children.iter().position(|c| c.key == key) {
                Some(i) => i,
                None => {
                    self.children.push(Acc::new(w));
                    self.children.len() - 1
                }
            };
            self.children[at].merge(waiter, sample, path, depth + 1);
        }
        path.remove(&pid);
    }

    fn holds(&self, me: &str) -> bool {
        self.row.correlation_id.as_deref() == Some(me) || self.children.iter().any(|c| c.holds(me))
    }

    fn below(&self) -> usize {
        self.children.iter().map(|c| 1 + c.below()).sum()
    }

    fn finish(mut self, me: &str, names: &Names<'_>) -> LockNode {
        let waiters_total = self.children.len();
        let below_total = self.below();
        let children = keep_first(std::mem::take(&mut self.children), me);
        let named = self.row.correlation_id.as_deref().and_then(names);
        LockNode {
            pid: self.row.pid,
            this_request: self.row.correlation_id.as_deref() == Some(me),
            correlation_id: self.row.correlation_id,
            endpoint: named.as_ref().map(|n| n.0.clone()),
            url: named.map(|n| n.1),
            state: self.row.state,
            wait_event_type: self.row.wait_event_type,
            wait_event: self.row.wait_event,
            query: self.row.query,
            fingerprint: self.row.fingerprint,
            first_seen: format_time(self.first),
            last_seen: format_time(self.last),
            samples: self.samples,
            waiters: children.into_iter().map(|c| c.finish(me, names)).collect(),
            waiters_total,
            below_total,
        }
    }
}

/// The first [`LOCK_TREE_WIDTH`] nodes by first sight, plus any that holds
/// the request's own backend, in time order.
fn keep_first(mut nodes: Vec<Acc>, me: &str) -> Vec<Acc> {
    nodes.sort_by_key(|n| (n.first, n.key.0));
    let mut kept = Vec::new();
    for (i, n) in nodes.into_iter().enumerate() {
        if i < LOCK_TREE_WIDTH || n.holds(me) {
            kept.push(n);
        }
    }
    kept
}

/// One sample's backends by pid.
struct Sample<'a> {
    rows: HashMap<i64, &'a SampleRow>,
}

impl Sample<'_> {
    /// The backends of the sample that wait on `pid` directly.
    fn waiters_of(&self, pid: i64) -> Vec<i64> {
        let mut out: Vec<i64> = self
            .rows
            .values()
            .filter(|r| r.blocking_pids.contains(&pid))
            .map(|r| r.pid)
            .collect();
        out.sort_unstable();
        out
    }

    /// The blockers `pid` waits on that the sample holds.
    fn blockers_of(&self, pid: i64) -> Vec<i64> {
        self.rows[&pid]
            .blocking_pids
            .iter()
            .copied()
            .filter(|p| self.rows.contains_key(p) && *p != pid)
            .collect()
    }

    /// The roots above `pid`: the backends its chain of blockers ends at.
    /// In a deadlock's cycle no backend waits on nobody; the blockers met
    /// on the cycle are its roots then.
    fn roots_of(&self, pid: i64) -> Vec<i64> {
        let mut seen = BTreeSet::from([pid]);
        let mut todo = self.blockers_of(pid);
        let direct = todo.clone();
        let mut roots = BTreeSet::new();
        while let Some(p) = todo.pop() {
            if !seen.insert(p) {
                continue;
            }
            let up = self.blockers_of(p);
            if up.is_empty() {
                roots.insert(p);
            }
            todo.extend(up);
        }
        if roots.is_empty() {
            return direct;
        }
        roots.into_iter().collect()
    }
}

/// The lock tree of the request `me` over the given samples (each sample
/// whole: every backend of it, not only the request's).
pub fn build(rows: &[SampleRow], me: &str, names: &Names<'_>) -> LockTree {
    let mut by_sample: HashMap<i64, Vec<&SampleRow>> = HashMap::new();
    for r in rows {
        by_sample.entry(r.sample).or_default().push(r);
    }
    let mut samples: Vec<(i64, Vec<&SampleRow>)> = by_sample.into_iter().collect();
    samples.sort_by_key(|(seq, rows)| (rows.first().map_or(0, |r| r.ts), *seq));
    let mut roots: Vec<Acc> = Vec::new();
    for (_, rows) in &samples {
        let sample = Sample {
            rows: rows.iter().map(|r| (r.pid, *r)).collect(),
        };
        let Some(mine) = rows
            .iter()
            .find(|r| r.correlation_id.as_deref() == Some(me))
        else {
            continue;
        };
        let tops = if sample.blockers_of(mine.pid).is_empty() {
            if sample.waiters_of(mine.pid).is_empty() {
                continue; // in no lock relation in this sample
            }
            vec![mine.pid]
        } else {
            sample.roots_of(mine.pid)
        };
        for top in tops {
            let row = sample.rows[&top];
            let key = (row.pid, row.correlation_id.clone());
            let at = match roots.iter().position(|c| c.key == key) {
                Some(i) => i,
                None => {
                    roots.push(Acc::new(row));
                    roots.len() - 1
                }
            };
            roots[at].merge(top, &sample, &mut BTreeSet::new(), 0);
        }
    }
    let roots_total = roots.len();
    LockTree {
        roots: keep_first(roots, me)
            .into_iter()
            .map(|r| r.finish(me, names))
            .collect(),
        roots_total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sample: i64, pid: i64, waits_on: &[i64], cid: &str, fp: &str) -> SampleRow {
        SampleRow {
            sample,
            ts: sample * 1_000_000,
            pid,
            blocking_pids: waits_on.to_vec(),
            correlation_id: Some(cid.to_owned()),
            state: Some(
                if waits_on.is_empty() {
                    "idle in transaction"
                } else {
                    "active"
                }
                .to_owned(),
            ),
            query: Some(format!("{fp} ({pid})")),
            fingerprint: Some(fp.to_owned()),
            ..SampleRow::default()
        }
    }

    fn names(cid: &str) -> Option<(String, String)> {
        Some((format!("GET /{cid}"), format!("/{cid}?x=1")))
    }

    /// A waiter's page showed only the next link: the waiter queued in
    /// front of it. The tree reaches the blocker at the root, and lists the
    /// others queued behind it.
    #[test]
    fn a_waiter_behind_a_waiter_reaches_the_root_blocker() {
        // 10 holds the lock; 11 waits on 10; 12 (this request) waits on 11.
        let rows = vec![
            row(1, 10, &[], "blocker", "SELECT ... FOR UPDATE"),
            row(1, 11, &[10], "first", "UPDATE stock"),
            row(1, 12, &[11], "me", "UPDATE stock"),
            row(1, 13, &[], "bystander", "SELECT 1"),
        ];
        let tree = build(&rows, "me", &names);
        assert_eq!(tree.roots_total, 1);
        let root = &tree.roots[0];
        assert_eq!(
            (root.pid, root.endpoint.as_deref()),
            (10, Some("GET /blocker"))
        );
        assert_eq!(root.fingerprint.as_deref(), Some("SELECT ... FOR UPDATE"));
        assert_eq!((root.waiters_total, root.below_total), (1, 2));
        let next = &root.waiters[0];
        assert_eq!((next.pid, next.this_request), (11, false));
        assert_eq!(next.waiters[0].pid, 12);
        assert!(next.waiters[0].this_request);
    }

    #[test]
    fn a_wide_level_is_trimmed_in_time_order_keeping_the_request_itself() {
        // Waiters on 1 join one a sample; only the last sample holds this
        // request, as the twelfth waiter (by pid).
        let mut rows = Vec::new();
        for s in 1..=12 {
            rows.push(row(s, 1, &[], "blocker", "LOCK"));
            for w in 1..=s {
                let cid = if w == 12 {
                    "me".to_owned()
                } else {
                    format!("w{w}")
                };
                rows.push(row(s, 100 + w, &[1], &cid, "UPDATE"));
            }
        }
        let tree = build(&rows, "me", &names);
        let root = &tree.roots[0];
        assert_eq!(root.waiters_total, 12);
        assert_eq!(root.samples, 1, "only samples where the request took part");
        let shown: Vec<i64> = root.waiters.iter().map(|w| w.pid).collect();
        assert_eq!(shown, [101, 102, 103, 104, 105, 106, 107, 108, 112]);
        assert!(root.waiters.last().unwrap().this_request);

        // Over several samples of the request, the first seen come first.
        let mut rows = Vec::new();
        for s in 1..=12 {
            rows.push(row(s, 1, &[], "blocker", "LOCK"));
            rows.push(row(s, 99, &[1], "me", "UPDATE"));
            for w in (1..=s).rev() {
                rows.push(row(s, 200 - w, &[1], &format!("w{w}"), "UPDATE"));
            }
        }
        let root = &build(&rows, "me", &names).roots[0];
        assert_eq!((root.waiters_total, root.samples), (13, 12));
        let shown: Vec<i64> = root.waiters.iter().map(|w| w.pid).collect();
        assert_eq!(shown, [99, 199, 198, 197, 196, 195, 194, 193]);
    }

    #[test]
    fn the_blockers_over_time_are_the_roots_first_seen_first_and_a_blocker_is_its_own_root() {
        let rows = vec![
            row(1, 20, &[], "second-blocker", "B"),
            row(2, 10, &[], "first-blocker", "A"),
            row(2, 30, &[10], "me", "W"),
            row(3, 20, &[], "second-blocker", "B"),
            row(3, 30, &[20], "me", "W"),
            row(4, 30, &[], "me", "W"),
            row(4, 31, &[30], "other", "W"),
        ];
        let tree = build(&rows, "me", &names);
        let roots: Vec<i64> = tree.roots.iter().map(|r| r.pid).collect();
        assert_eq!(roots, [10, 20, 30]);
        assert_eq!(
            tree.roots[1].first_seen,
            format_time(3_000_000),
            "seen from the request's samples"
        );
        assert!(tree.roots[2].this_request);
        assert_eq!(tree.roots[2].waiters[0].pid, 31);
        // A request in no lock relation has no tree.
        assert_eq!(build(&rows[..1], "second-blocker", &names).roots_total, 0);
    }

    #[test]
    fn a_deadlock_cycle_is_drawn_once_from_the_request_s_blocker() {
        let rows = vec![row(1, 1, &[2], "me", "A"), row(1, 2, &[1], "other", "B")];
        let tree = build(&rows, "me", &names);
        assert_eq!(tree.roots_total, 1);
        assert_eq!(tree.roots[0].pid, 2);
        assert_eq!(tree.roots[0].waiters[0].pid, 1);
        assert!(tree.roots[0].waiters[0].waiters.is_empty());
    }
}
