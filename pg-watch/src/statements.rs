//! pg_stat_statements snapshots and their deltas.
//!
//! Every interval pg-watch reads the counters (without query texts: the
//! text file can be large), subtracts the previous snapshot and reports the
//! entries that ran. The first snapshot is only a baseline; so is one taken
//! after a reset (a new `stats_reset` in pg_stat_statements_info from 1.9,
//! or any counter that went down before that), because subtracting across a
//! reset gives garbage. Texts are fetched only for queryids pg-watch has not
//! seen, and statements that carry pg-watch's own marker are left out.

use std::collections::{HashMap, HashSet};

use bitville_schemas::fingerprint::normalize;
use bitville_schemas::records::{PgStatementsRecord, StatementDelta};
use bitville_schemas::{Envelope, Kind};
use tokio_postgres::{Client, Row};

use crate::activity::MARKER;

/// The installed extension's version as (major, minor), `1.10` as (1, 10).
pub type ExtVersion = (u32, u32);

/// Parses `extversion` such as `1.10`.
pub fn parse_ext_version(text: &str) -> Option<ExtVersion> {
    let (a, b) = text.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Counters that are summed integers, in the order of [`INT_NAMES`].
const INT_NAMES: [&str; 16] = [
    "calls",
    "rows",
    "plans",
    "shared_blks_hit",
    "shared_blks_read",
    "shared_blks_dirtied",
    "shared_blks_written",
    "local_blks_hit",
    "local_blks_read",
    "local_blks_dirtied",
    "local_blks_written",
    "temp_blks_read",
    "temp_blks_written",
    "wal_records",
    "wal_fpi",
    "wal_bytes",
];
/// Counters in milliseconds.
const FLOAT_NAMES: [&str; 4] = [
    "total_exec_time",
    "total_plan_time",
    "blk_read_time",
    "blk_write_time",
];

/// The snapshot query for an extension version, in `schema`.
pub fn statements_query(schema: &str, ext: ExtVersion) -> String {
    let mut cols: Vec<String> = vec![
        "userid::int8 AS userid".into(),
        "dbid::int8 AS dbid".into(),
        "queryid".into(),
    ];
    if ext >= (1, 9) {
        cols.push("toplevel".into());
    }
    cols.extend(
        [
            "calls",
            "rows",
            "shared_blks_hit",
            "shared_blks_read",
            "shared_blks_dirtied",
            "shared_blks_written",
            "local_blks_hit",
            "local_blks_read",
            "local_blks_dirtied",
            "local_blks_written",
            "temp_blks_read",
            "temp_blks_written",
        ]
        .iter()
        .map(|c| format!("{c}::int8 AS {c}")),
    );
    if ext >= (1, 8) {
        cols.extend(
            ["total_exec_time", "total_plan_time"]
                .iter()
                .map(|c| format!("{c}::float8 AS {c}")),
        );
        cols.extend(
            ["plans", "wal_records", "wal_fpi", "wal_bytes"]
                .iter()
                .map(|c| format!("{c}::int8 AS {c}")),
        );
    } else {
        cols.push("total_time::float8 AS total_exec_time".into());
    }
    if ext >= (1, 11) {
        cols.push("(shared_blk_read_time + local_blk_read_time)::float8 AS blk_read_time".into());
        cols.push(
            "(shared_blk_write_time + local_blk_write_time)::float8 AS blk_write_time".into(),
        );
    } else {
        cols.push("blk_read_time::float8 AS blk_read_time".into());
        cols.push("blk_write_time::float8 AS blk_write_time".into());
    }
    format!(
        "{MARKER} SELECT {} FROM {}.pg_stat_statements(false)",
        cols.join(", "),
        quote_ident(schema)
    )
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An entry's identity: pg_stat_statements keys entries by these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryKey {
    pub userid: i64,
    pub dbid: i64,
    pub queryid: i64,
    pub toplevel: Option<bool>,
}

/// One entry's counters; `None` where the extension version lacks them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub ints: [Option<i64>; INT_NAMES.len()],
    pub floats: [Option<f64>; FLOAT_NAMES.len()],
}

impl Counters {
    pub fn calls(&self) -> i64 {
        self.ints[0].unwrap_or(0)
    }

    pub fn from_row(row: &Row) -> Self {
        let mut c = Counters::default();
        for (i, name) in INT_NAMES.iter().enumerate() {
            c.ints[i] = row.try_get::<_, Option<i64>>(*name).ok().flatten();
        }
        for (i, name) in FLOAT_NAMES.iter().enumerate() {
            c.floats[i] = row.try_get::<_, Option<f64>>(*name).ok().flatten();
        }
        c
    }
}

/// One snapshot of pg_stat_statements.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Record timestamp of when it was taken.
    pub at: String,
    pub entries: HashMap<EntryKey, Counters>,
    /// pg_stat_statements_info.stats_reset (1.9+), as text.
    pub stats_reset: Option<String>,
    pub dealloc: Option<i64>,
}

/// What comparing two snapshots gives.
#[derive(Debug, Clone, PartialEq)]
pub enum Comparison {
    /// No deltas: the first snapshot, or one after a reset.
    Baseline { reason: &'static str },
    Deltas {
        entries: Vec<(EntryKey, StatementDelta)>,
        evicted: u64,
        dealloc: Option<u64>,
    },
}

/// Compares the current snapshot with the previous one.
pub fn compare(prev: Option<&Snapshot>, cur: &Snapshot) -> Comparison {
    let Some(prev) = prev else {
        return Comparison::Baseline {
            reason: "first snapshot",
        };
    };
    if prev.stats_reset != cur.stats_reset {
        return Comparison::Baseline {
            reason: "pg_stat_statements_info.stats_reset changed",
        };
    }
    let went_down = cur.entries.iter().any(|(k, c)| {
        prev.entries.get(k).is_some_and(|p| {
            c.calls() < p.calls() || c.floats[0].unwrap_or(0.0) < p.floats[0].unwrap_or(0.0) - 1e-6
        })
    });
    if went_down {
        return Comparison::Baseline {
            reason: "counters went down (reset)",
        };
    }
    let zero = Counters::default();
    let mut entries = Vec::new();
    for (key, c) in &cur.entries {
        let p = prev.entries.get(key).unwrap_or(&zero);
        let calls = c.calls() - p.calls();
        if calls <= 0 {
            continue;
        }
        let di = |i: usize| c.ints[i].map(|v| (v - p.ints[i].unwrap_or(0)).max(0) as u64);
        let df = |i: usize| c.floats[i].map(|v| (v - p.floats[i].unwrap_or(0.0)).max(0.0));
        entries.push((
            *key,
            StatementDelta {
                queryid: key.queryid,
                userid: Some(key.userid as u32),
                dbid: Some(key.dbid as u32),
                toplevel: key.toplevel,
                query: None,
                fingerprint: None,
                calls: calls as u64,
                total_exec_time_ms: df(0).unwrap_or(0.0),
                rows: di(1),
                plans: di(2),
                total_plan_time_ms: df(1),
                shared_blks_hit: di(3),
                shared_blks_read: di(4),
                shared_blks_dirtied: di(5),
                shared_blks_written: di(6),
                local_blks_hit: di(7),
                local_blks_read: di(8),
                local_blks_dirtied: di(9),
                local_blks_written: di(10),
                temp_blks_read: di(11),
                temp_blks_written: di(12),
                blk_read_time_ms: df(2),
                blk_write_time_ms: df(3),
                wal_records: di(13),
                wal_fpi: di(14),
                wal_bytes: di(15),
            },
        ));
    }
    entries.sort_by_key(|(k, _)| (k.dbid, k.userid, k.queryid));
    let evicted = prev
        .entries
        .keys()
        .filter(|k| !cur.entries.contains_key(k))
        .count() as u64;
    let dealloc = match (prev.dealloc, cur.dealloc) {
        (Some(p), Some(c)) => Some((c - p).max(0) as u64),
        _ => None,
    };
    Comparison::Deltas {
        entries,
        evicted,
        dealloc,
    }
}

/// What pg-watch knows of a queryid's text.
#[derive(Debug, Clone)]
struct KnownText {
    text: String,
    fingerprint: String,
    /// The text went out in a record already; later records carry only the fingerprint.
    sent: bool,
}

/// Bounds the text cache (pg_stat_statements.max is 5000 by default).
const TEXT_CACHE_MAX: usize = 50_000;

/// Takes snapshots and turns them into pg_statements records.
pub struct StatementsCollector {
    server_version_num: u32,
    schema: String,
    ext_text: String,
    ext: ExtVersion,
    prev: Option<Snapshot>,
    texts: HashMap<i64, KnownText>,
    own: HashSet<i64>,
    /// The reason of the last baseline, for logs and tests.
    pub last_baseline: Option<&'static str>,
}

impl StatementsCollector {
    /// Finds the extension; `Ok(None)` when it is not installed in this database.
    ///
    /// # Errors
    /// The catalog query fails.
    pub async fn detect(
        client: &Client,
        server_version_num: u32,
    ) -> Result<Option<Self>, tokio_postgres::Error> {
        let row = client
            .query_opt(
                &format!(
                    "{MARKER} SELECT e.extversion, n.nspname::text FROM pg_extension e \
                     JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'"
                ),
                &[],
            )
            .await?;
        Ok(row.and_then(|r| {
            let ext_text: String = r.get(0);
            let schema: String = r.get(1);
            parse_ext_version(&ext_text)
                .map(|ext| Self::with_version(server_version_num, &schema, &ext_text, ext))
        }))
    }

    /// A collector for a known extension version and schema (tests use it on
    /// recorded column sets of older versions).
    pub fn with_version(
        server_version_num: u32,
        schema: &str,
        ext_text: &str,
        ext: ExtVersion,
    ) -> Self {
        StatementsCollector {
            server_version_num,
            schema: schema.to_owned(),
            ext_text: ext_text.to_owned(),
            ext,
            prev: None,
            texts: HashMap::new(),
            own: HashSet::new(),
            last_baseline: None,
        }
    }

    /// Reads one snapshot.
    ///
    /// # Errors
    /// A query fails.
    pub async fn snapshot(&self, client: &Client) -> Result<Snapshot, tokio_postgres::Error> {
        let at = bitville_schemas::format_ts(std::time::SystemTime::now());
        let rows = client
            .query(&statements_query(&self.schema, self.ext), &[])
            .await?;
        let mut entries = HashMap::with_capacity(rows.len());
        for row in &rows {
            let Some(queryid) = row.try_get::<_, Option<i64>>("queryid").ok().flatten() else {
                continue;
            };
            if self.own.contains(&queryid) {
                continue;
            }
            let key = EntryKey {
                userid: row.try_get("userid").unwrap_or(0),
                dbid: row.try_get("dbid").unwrap_or(0),
                queryid,
                toplevel: row.try_get::<_, Option<bool>>("toplevel").ok().flatten(),
            };
            entries.insert(key, Counters::from_row(row));
        }
        let (stats_reset, dealloc) = if self.ext >= (1, 9) {
            let info = client
                .query_one(
                    &format!(
                        "{MARKER} SELECT dealloc, stats_reset::text FROM {}.pg_stat_statements_info",
                        quote_ident(&self.schema)
                    ),
                    &[],
                )
                .await?;
            (
                info.get::<_, Option<String>>(1),
                info.get::<_, Option<i64>>(0),
            )
        } else {
            (None, None)
        };
        Ok(Snapshot {
            at,
            entries,
            stats_reset,
            dealloc,
        })
    }

    /// Fetches texts for queryids not seen before, and marks pg-watch's own.
    async fn learn_texts(
        &mut self,
        client: &Client,
        snapshot: &mut Snapshot,
    ) -> Result<(), tokio_postgres::Error> {
        let mut new_ids: Vec<i64> = snapshot
            .entries
            .keys()
            .map(|k| k.queryid)
            .filter(|q| !self.texts.contains_key(q))
            .collect();
        new_ids.sort_unstable();
        new_ids.dedup();
        if new_ids.is_empty() {
            return Ok(());
        }
        if self.texts.len() + new_ids.len() > TEXT_CACHE_MAX {
            self.texts.clear();
        }
        let rows = client
            .query(
                &format!(
                    "{MARKER} SELECT DISTINCT ON (queryid) queryid, query FROM {}.pg_stat_statements(true) WHERE queryid = ANY($1)",
                    quote_ident(&self.schema)
                ),
                &[&new_ids],
            )
            .await?;
        for row in rows {
            let queryid: i64 = row.get(0);
            let text: String = row.get::<_, Option<String>>(1).unwrap_or_default();
            if text.contains(MARKER) {
                self.own.insert(queryid);
                continue;
            }
            let fingerprint = normalize(&text);
            self.texts.insert(
                queryid,
                KnownText {
                    text,
                    fingerprint,
                    sent: false,
                },
            );
        }
        let own = &self.own;
        snapshot.entries.retain(|k, _| !own.contains(&k.queryid));
        Ok(())
    }

    /// Takes a snapshot and compares it with the previous one: a record when
    /// statements ran, `None` for a baseline or a quiet interval.
    ///
    /// # Errors
    /// A query fails; the previous snapshot is kept.
    pub async fn collect(
        &mut self,
        client: &Client,
        project: &str,
        host: &str,
    ) -> Result<Option<PgStatementsRecord>, tokio_postgres::Error> {
        let mut snapshot = self.snapshot(client).await?;
        self.learn_texts(client, &mut snapshot).await?;
        let comparison = compare(self.prev.as_ref(), &snapshot);
        let interval_start = self.prev.as_ref().map(|p| p.at.clone()).unwrap_or_default();
        let interval_end = snapshot.at.clone();
        self.prev = Some(snapshot);
        let (entries, evicted, dealloc) = match comparison {
            Comparison::Baseline { reason } => {
                tracing::info!(reason, "pg_stat_statements baseline");
                self.last_baseline = Some(reason);
                return Ok(None);
            }
            Comparison::Deltas {
                entries,
                evicted,
                dealloc,
            } => (entries, evicted, dealloc),
        };
        self.last_baseline = None;
        if entries.is_empty() && evicted == 0 {
            return Ok(None);
        }
        let entries = entries
            .into_iter()
            .map(|(_, mut d)| {
                if let Some(known) = self.texts.get_mut(&d.queryid) {
                    d.fingerprint = Some(known.fingerprint.clone());
                    if !known.sent {
                        d.query = Some(known.text.clone());
                        known.sent = true;
                    }
                }
                d
            })
            .collect();
        Ok(Some(PgStatementsRecord {
            envelope: Envelope::new(Kind::PgStatements, project, host),
            server_version_num: self.server_version_num,
            extension_version: Some(self.ext_text.clone()),
            interval_start,
            interval_end,
            entries,
            evicted: Some(evicted),
            dealloc,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(q: i64) -> EntryKey {
        EntryKey {
            userid: 10,
            dbid: 5,
            queryid: q,
            toplevel: Some(true),
        }
    }

    fn counters(calls: i64, ms: f64) -> Counters {
        let mut c = Counters::default();
        c.ints[0] = Some(calls);
        c.ints[1] = Some(calls * 2);
        c.floats[0] = Some(ms);
        c
    }

    fn snap(entries: &[(i64, i64, f64)], reset: &str) -> Snapshot {
        Snapshot {
            at: "2026-11-27T11:00:00.000000Z".into(),
            entries: entries
                .iter()
                .map(|(q, c, ms)| (key(*q), counters(*c, *ms)))
                .collect(),
            stats_reset: Some(reset.into()),
            dealloc: Some(0),
        }
    }

    #[test]
    fn deltas_new_entries_and_evictions() {
        let a = snap(&[(1, 10, 100.0), (2, 5, 50.0), (3, 1, 1.0)], "r0");
        assert!(matches!(compare(None, &a), Comparison::Baseline { .. }));
        let b = snap(&[(1, 15, 160.0), (2, 5, 50.0), (4, 2, 8.0)], "r0");
        let Comparison::Deltas {
            entries, evicted, ..
        } = compare(Some(&a), &b)
        else {
            panic!("expected deltas")
        };
        assert_eq!(evicted, 1);
        let by_id: HashMap<i64, &StatementDelta> =
            entries.iter().map(|(k, d)| (k.queryid, d)).collect();
        assert_eq!(by_id.len(), 2, "an entry with no new calls is left out");
        assert_eq!(by_id[&1].calls, 5);
        assert_eq!(by_id[&1].total_exec_time_ms, 60.0);
        assert_eq!(by_id[&1].rows, Some(10));
        assert_eq!(by_id[&4].calls, 2);
    }

    #[test]
    fn a_reset_starts_a_new_baseline() {
        let a = snap(&[(1, 10, 100.0)], "r0");
        let after_reset_info = snap(&[(1, 12, 120.0)], "r1");
        assert!(matches!(
            compare(Some(&a), &after_reset_info),
            Comparison::Baseline { .. }
        ));
        let mut went_down = snap(&[(1, 3, 30.0)], "r0");
        went_down.stats_reset = a.stats_reset.clone();
        assert!(matches!(
            compare(Some(&a), &went_down),
            Comparison::Baseline { .. }
        ));
    }

    #[test]
    fn queries_follow_the_extension_version() {
        let q14 = statements_query("public", (1, 4));
        assert!(
            q14.contains("total_time::float8 AS total_exec_time")
                && !q14.contains("toplevel")
                && !q14.contains("wal_bytes")
        );
        let q19 = statements_query("public", (1, 9));
        assert!(
            q19.contains("toplevel")
                && q19.contains("total_plan_time")
                && q19.contains("blk_read_time::float8")
        );
        let q111 = statements_query("public", (1, 11));
        assert!(q111.contains("shared_blk_read_time + local_blk_read_time"));
        assert_eq!(parse_ext_version("1.10"), Some((1, 10)));
    }
}
