//! The single writer: groups waiting batches into one transaction, dedupes
//! record ids, numbers the new records' rows and appends each table's rows
//! through one DuckDB Appender per table (their Arrow columns were built
//! before they reached this thread, [`super::columns`]), commits, then
//! replies.
//!
//! Dedupe is in memory ([`super::ids::IdSet`]): the keys of every stored
//! record inside retention, read from the day tables' `records.id` when the
//! store opens and added after each commit. A redelivered record carries
//! the same `id` and `ts`, so it falls in the same day, and its key is
//! found there; DuckDB keeps no index for it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use duckdb::arrow::record_batch::RecordBatch;
use duckdb::{Appender, Connection};
use tokio::sync::mpsc;

use super::columns::Columns;
use super::ids::IdSet;
use super::schema::{
    self, DAY_MICROS, STORE_SCHEMA_VERSION, TABLES, TEMPLATE_SCHEMA, TableId, quote_ident,
};
use super::{Msg, Reply, StoreConfig, StoreError};

/// What a write did: `stored[i]` is false when record `i` was a duplicate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteOutcome {
    pub stored: Vec<bool>,
    /// Seconds the group's transaction took, for the batch latency metric.
    pub commit_seconds: f64,
}

/// What a retention run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub dropped_days: Vec<String>,
    pub kept_days: usize,
    /// Store file plus WAL after the checkpoint.
    pub file_bytes: u64,
}

pub(super) struct Writer {
    conn: Connection,
    path: std::path::PathBuf,
    /// Day schemas that exist, as days since the epoch.
    days: BTreeSet<i64>,
    next_seq: i64,
    /// `next_seq - 1` after each commit, for readers that need the newest
    /// `seq` without a query (the GELF lag while an output is retrying).
    last_seq: Arc<AtomicI64>,
    max_records: usize,
    /// The dedupe set: what is stored, by day, project and id.
    ids: IdSet,
}

type Job = (Columns, Option<Reply<WriteOutcome>>);

impl Writer {
    /// Sets up the layout (creating or upgrading it) and reads the state the
    /// writer keeps in memory: the day schemas and the next `seq`.
    pub(super) fn start(conn: Connection, options: &StoreConfig) -> Result<Writer, StoreError> {
        let mut w = Writer {
            conn,
            path: options.path.clone(),
            days: BTreeSet::new(),
            next_seq: 1,
            last_seq: Arc::default(),
            max_records: options.max_records_per_commit.max(1),
            ids: IdSet::default(),
        };
        w.set_up_layout()?;
        w.publish_seq();
        Ok(w)
    }

    /// Reads the dedupe set from the store (every day schema's ids); done
    /// by the writer thread before it takes its first batch.
    pub(super) fn load_ids(&mut self) -> Result<(), StoreError> {
        let (ids, stats) = IdSet::load(&self.conn, self.days.iter().copied())?;
        tracing::info!(
            "dedupe set: {} record ids of {} days read in {:.0} ms",
            stats.ids,
            stats.days,
            stats.took.as_secs_f64() * 1000.0
        );
        self.ids = ids;
        Ok(())
    }

    /// The newest committed `seq`, as [`Writer::publish_seq`] last set it.
    pub(super) fn last_seq(&self) -> Arc<AtomicI64> {
        self.last_seq.clone()
    }

    fn publish_seq(&self) {
        self.last_seq.store(self.next_seq - 1, Ordering::Relaxed);
    }

    pub(super) fn connection(&self) -> &Connection {
        &self.conn
    }

    fn exec(&self, op: &'static str, sql: &str) -> Result<(), StoreError> {
        self.conn
            .execute_batch(sql)
            .map_err(|e| StoreError::db(op, e))
    }

    fn set_up_layout(&mut self) -> Result<(), StoreError> {
        self.exec("begin", "BEGIN")?;
        let result = self.set_up_layout_in_txn();
        match result {
            Ok(()) => self.exec("commit layout", "COMMIT"),
            Err(e) => {
                let _ = self.exec("rollback", "ROLLBACK");
                Err(e)
            }
        }
    }

    fn set_up_layout_in_txn(&mut self) -> Result<(), StoreError> {
        for ddl in schema::META_DDL {
            self.exec("create bookkeeping tables", ddl)?;
        }
        let version: Option<String> = self
            .conn
            .query_row(
                "SELECT max(value) FROM main.store_meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| StoreError::db("read layout version", e))?;
        let version = match version {
            None => {
                self.exec(
                    "write layout version",
                    &format!(
                        "INSERT INTO main.store_meta VALUES ('schema_version', '{STORE_SCHEMA_VERSION}'), ('seq_floor', '1')"
                    ),
                )?;
                STORE_SCHEMA_VERSION
            }
            Some(v) => v.parse::<i64>().map_err(|e| StoreError::BadValue {
                op: "read layout version",
                message: format!("schema_version {v:?} is not an integer: {e}"),
            })?,
        };
        if version > STORE_SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
                supported: STORE_SCHEMA_VERSION,
            });
        }
        self.exec(
            "create template",
            &format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                quote_ident(TEMPLATE_SCHEMA)
            ),
        )?;
        for table in TABLES {
            self.exec("create template tables", &table.create_sql(TEMPLATE_SCHEMA))?;
        }
        self.days = self.existing_days()?;
        if version < STORE_SCHEMA_VERSION {
            self.upgrade(version)?;
        }
        self.replace_views()?;
        let floor: i64 = self
            .conn
            .query_row(
                "SELECT coalesce(max(TRY_CAST(value AS BIGINT)), 1) FROM main.store_meta WHERE key = 'seq_floor'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| StoreError::db("read seq floor", e))?;
        let max_seq: Option<i64> = self
            .conn
            .query_row("SELECT max(seq) FROM main.records", [], |r| r.get(0))
            .map_err(|e| StoreError::db("read last seq", e))?;
        self.next_seq = floor.max(max_seq.unwrap_or(0) + 1);
        Ok(())
    }

    /// Brings an older layout up to this processor's, applied to the
    /// template and to every day schema before the version is written.
    /// Version 2 adds five columns at the end of
    /// `requests` (the appenders fill columns by position, and `ADD COLUMN`
    /// appends) and the `request_fingerprints` table; version 3 keys each
    /// day's `record_ids` on project and id, and adds two more `requests`
    /// columns (the context switches; every column added since version 1 is
    /// added when missing); version 4 drops `record_ids`.
    fn upgrade(&self, from: i64) -> Result<(), StoreError> {
        // Each step can run again after a crash part-way (the version is
        // written last), so no transaction is needed around DDL.
        if from < 3 {
            self.add_columns_and_tables()?;
        }
        if from < 4 {
            self.drop_record_ids()?;
        }
        self.exec(
            "write layout version",
            &format!(
                "UPDATE main.store_meta SET value = '{STORE_SCHEMA_VERSION}' WHERE key = 'schema_version'"
            ),
        )
    }

    /// Version 4: the days' `record_ids` tables go (dedupe is in memory,
    /// read from `records`).
    fn drop_record_ids(&self) -> Result<(), StoreError> {
        for day in &self.days {
            let name = quote_ident(&schema::day_schema(*day));
            self.exec(
                "drop record ids",
                &format!("DROP TABLE IF EXISTS {name}.record_ids"),
            )?;
        }
        Ok(())
    }

    /// Versions 2 and 3: the `requests` columns added since version 1 (each
    /// only when missing) and `request_fingerprints`.
    fn add_columns_and_tables(&self) -> Result<(), StoreError> {
        let mut schemas: Vec<String> = vec![TEMPLATE_SCHEMA.to_owned()];
        schemas.extend(self.days.iter().map(|d| schema::day_schema(*d)));
        for name in &schemas {
            for col in schema::requests_added_since_v1() {
                self.exec(
                    "add request columns",
                    &format!(
                        "ALTER TABLE {}.requests ADD COLUMN IF NOT EXISTS {} {}",
                        quote_ident(name),
                        quote_ident(col.name),
                        col.sql_type
                    ),
                )?;
            }
            self.exec(
                "create fingerprint tables",
                &TableId::RequestFingerprints.table().create_sql(name),
            )?;
        }
        Ok(())
    }

    fn existing_days(&self) -> Result<BTreeSet<i64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT schema_name FROM duckdb_schemas() WHERE database_name = current_database()",
            )
            .map_err(|e| StoreError::db("list day schemas", e))?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| StoreError::db("list day schemas", e))?;
        let mut days = BTreeSet::new();
        for name in names {
            let name = name.map_err(|e| StoreError::db("list day schemas", e))?;
            if let Some(day) = schema::parse_day_schema(&name) {
                days.insert(day);
            }
        }
        Ok(days)
    }

    fn replace_views(&self) -> Result<(), StoreError> {
        let schemas: Vec<String> = self.days.iter().map(|d| schema::day_schema(*d)).collect();
        for table in TABLES {
            self.exec("replace views", &schema::view_sql(table, &schemas))?;
        }
        Ok(())
    }

    /// Creates a day schema in its own transaction, so that a failed batch
    /// never leaves the in-memory list of days wrong.
    pub(super) fn ensure_day(&mut self, day: i64) -> Result<(), StoreError> {
        if self.days.contains(&day) {
            return Ok(());
        }
        let name = schema::day_schema(day);
        self.exec("begin", "BEGIN")?;
        self.days.insert(day);
        let result = (|| {
            self.exec(
                "create day",
                &format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(&name)),
            )?;
            for table in TABLES {
                self.exec("create day tables", &table.create_sql(&name))?;
            }
            self.exec(
                "record day",
                &format!(
                    "INSERT INTO main.store_days VALUES (DATE '1970-01-01' + {day}::INTEGER, '{name}', TIMESTAMP '1970-01-01' + to_microseconds({}))",
                    now_micros()
                ),
            )?;
            self.replace_views()?;
            self.exec("commit day", "COMMIT")
        })();
        if let Err(e) = result {
            let _ = self.exec("rollback", "ROLLBACK");
            self.days.remove(&day);
            return Err(e);
        }
        Ok(())
    }

    /// The writer loop: runs until `Shutdown` or until every sender is gone.
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut pending: Option<Msg> = None;
        loop {
            let msg = match pending.take() {
                Some(m) => m,
                None => match rx.blocking_recv() {
                    Some(m) => m,
                    None => break,
                },
            };
            match msg {
                Msg::Write { records, reply } => {
                    let mut count = records.len();
                    let mut group: Vec<Job> = vec![(records, reply)];
                    while count < self.max_records {
                        match rx.try_recv() {
                            Ok(Msg::Write { records, reply }) => {
                                count += records.len();
                                group.push((records, reply));
                            }
                            Ok(other) => {
                                pending = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.write_group(group);
                }
                Msg::Retention { cutoff, now, reply } => {
                    let _ = reply.send(self.retention(cutoff, now));
                }
                Msg::Checkpoint { reply } => {
                    let _ = reply.send(self.exec("checkpoint", "CHECKPOINT"));
                }
                Msg::Ping { reply } => {
                    let _ = reply.send(self.exec("ping", "BEGIN; SELECT 1; COMMIT"));
                }
                Msg::SetCursor {
                    name,
                    seq,
                    now,
                    reply,
                } => {
                    let _ = reply.send(self.set_cursor(&name, seq, now));
                }
                Msg::Shutdown { reply } => {
                    // Later messages were sent after shutdown began; they
                    // get WriterGone when the receiver drops.
                    let _ = reply.send(self.exec("checkpoint", "CHECKPOINT"));
                    return;
                }
            }
        }
        if let Err(e) = self.exec("checkpoint", "CHECKPOINT") {
            tracing::warn!("final checkpoint failed (the WAL keeps the data): {e}");
        }
    }

    fn write_group(&mut self, group: Vec<Job>) {
        let started = Instant::now();
        let (batches, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        match self.commit_group(batches) {
            Ok(flags) => {
                let commit_seconds = started.elapsed().as_secs_f64();
                for (stored, reply) in flags.into_iter().zip(replies) {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(WriteOutcome {
                            stored,
                            commit_seconds,
                        }));
                    }
                }
            }
            Err(e) => {
                tracing::error!("{e}");
                let e = std::sync::Arc::new(e);
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Err(StoreError::Write(e.clone())));
                }
            }
        }
    }

    /// One transaction for a group of batches. Returns, per batch and
    /// record, whether the record was stored (false: a duplicate).
    fn commit_group(&mut self, batches: Vec<Columns>) -> Result<Vec<Vec<bool>>, StoreError> {
        // Stored before, or earlier in the group: the first copy wins.
        let mut seen: HashSet<(i64, &str, u128)> = HashSet::new();
        let mut candidate: Vec<Vec<bool>> = Vec::with_capacity(batches.len());
        for b in &batches {
            let mut flags = Vec::with_capacity(b.records.len());
            for r in &b.records {
                let key = IdSet::key(&r.id)?;
                flags.push(
                    !self.ids.contains(r.day, &r.project, key)
                        && seen.insert((r.day, r.project.as_str(), key)),
                );
            }
            candidate.push(flags);
        }
        let days: BTreeSet<i64> = batches
            .iter()
            .flat_map(|b| &b.records)
            .map(|r| r.day)
            .collect();
        for day in &days {
            self.ensure_day(*day)?;
        }

        self.exec("begin", "BEGIN")?;
        let result = self.append_group(&batches, &candidate);
        match result {
            Ok((flags, next_seq)) => match self.exec("commit", "COMMIT") {
                Ok(()) => {
                    self.next_seq = next_seq;
                    self.publish_seq();
                    // Only what is committed joins the set.
                    for (day, project, key) in seen {
                        self.ids.insert(day, project, key);
                    }
                    Ok(flags)
                }
                Err(e) => {
                    let _ = self.exec("rollback", "ROLLBACK");
                    Err(e)
                }
            },
            Err(e) => {
                let _ = self.exec("rollback", "ROLLBACK");
                Err(e)
            }
        }
    }

    /// Appends the rows of the group's new records (the `candidate`s),
    /// numbering them with `seq` in arrival order. Returns the stored flags
    /// and the next free `seq`.
    fn append_group(
        &self,
        batches: &[Columns],
        candidate: &[Vec<bool>],
    ) -> Result<(Vec<Vec<bool>>, i64), StoreError> {
        let build = StoreError::Columns;
        let mut next_seq = self.next_seq;
        let mut flags = Vec::with_capacity(batches.len());
        // Each day's table gets one appender for the whole group.
        let mut tables: BTreeMap<(i64, TableId), Vec<RecordBatch>> = BTreeMap::new();
        for (batch, cand) in batches.iter().zip(candidate) {
            let seq_of: Vec<Option<i64>> = batch
                .records
                .iter()
                .zip(cand)
                .map(|(_, &c)| {
                    if !c {
                        return None;
                    }
                    let seq = next_seq;
                    next_seq += 1;
                    Some(seq)
                })
                .collect();
            for rows in &batch.tables {
                if let Some(numbered) = rows.numbered(&seq_of).map_err(build)? {
                    tables
                        .entry((rows.day, rows.table))
                        .or_default()
                        .push(numbered);
                }
            }
            flags.push(seq_of.iter().map(Option::is_some).collect());
        }
        for ((day, table), rows) in tables {
            append(
                self.conn
                    .appender_to_db(table.table().name, &schema::day_schema(day)),
                rows,
                "append",
            )?;
        }
        Ok((flags, next_seq))
    }

    fn retention(&mut self, cutoff: i64, now: i64) -> Result<RetentionOutcome, StoreError> {
        let expired: Vec<i64> = self
            .days
            .iter()
            .copied()
            .filter(|d| (d + 1) * DAY_MICROS <= cutoff)
            .collect();
        if !expired.is_empty() {
            self.exec("begin", "BEGIN")?;
            let result = (|| {
                for d in &expired {
                    self.days.remove(d);
                }
                // Views first: they must not name a schema that is gone.
                self.replace_views()?;
                for d in &expired {
                    let name = schema::day_schema(*d);
                    self.exec(
                        "drop day",
                        &format!("DROP SCHEMA IF EXISTS {} CASCADE", quote_ident(&name)),
                    )?;
                    self.exec(
                        "forget day",
                        &format!("DELETE FROM main.store_days WHERE schema_name = '{name}'"),
                    )?;
                }
                // Keep seq growing even if every day is dropped.
                self.exec(
                    "save seq floor",
                    &format!(
                        "UPDATE main.store_meta SET value = '{}' WHERE key = 'seq_floor'",
                        self.next_seq
                    ),
                )?;
                self.exec("commit retention", "COMMIT")
            })();
            if let Err(e) = result {
                let _ = self.exec("rollback", "ROLLBACK");
                for d in &expired {
                    self.days.insert(*d);
                }
                return Err(e);
            }
            for d in &expired {
                self.ids.drop_day(*d);
            }
        }
        // The checkpoint is what hands the dropped days' blocks back to the
        // free list; without it the file keeps growing.
        self.exec("checkpoint", "CHECKPOINT")?;
        let file_bytes = super::file_bytes(&self.path);
        self.exec(
            "record retention run",
            &format!(
                "INSERT INTO main.retention_runs VALUES (TIMESTAMP '1970-01-01' + to_microseconds({now}), \
                 TIMESTAMP '1970-01-01' + to_microseconds({cutoff}), {}, {file_bytes})",
                expired.len()
            ),
        )?;
        Ok(RetentionOutcome {
            dropped_days: expired.iter().map(|d| schema::day_schema(*d)).collect(),
            kept_days: self.days.len(),
            file_bytes,
        })
    }

    fn set_cursor(&self, name: &str, seq: i64, now: i64) -> Result<(), StoreError> {
        self.exec("begin", "BEGIN")?;
        let result = (|| {
            self.conn
                .execute("DELETE FROM main.cursors WHERE name = ?", [name])
                .map_err(|e| StoreError::db("save cursor", e))?;
            self.conn
                .execute(
                    "INSERT INTO main.cursors VALUES (?, ?, TIMESTAMP '1970-01-01' + to_microseconds(?))",
                    duckdb::params![name, seq, now],
                )
                .map_err(|e| StoreError::db("save cursor", e))?;
            self.exec("commit cursor", "COMMIT")
        })();
        if result.is_err() {
            let _ = self.exec("rollback", "ROLLBACK");
        }
        result
    }
}

/// Appends Arrow batches through a freshly opened appender and flushes it,
/// so that a refused row (a primary key, a cast) is reported here and not
/// lost in the appender's drop.
fn append(
    appender: duckdb::Result<Appender<'_>>,
    batches: impl IntoIterator<Item = RecordBatch>,
    op: &'static str,
) -> Result<(), StoreError> {
    let err = |e| StoreError::db(op, e);
    let mut app = appender.map_err(err)?;
    for batch in batches {
        app.append_record_batch(batch).map_err(err)?;
    }
    app.flush().map_err(err)
}

/// Now in microseconds since the epoch.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
