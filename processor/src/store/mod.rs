//! The DuckDB store: the only module that talks to DuckDB.
//!
//! **Architecture invariant:** one writer thread owns the writing connection
//! ([`writer`]); everything that changes the file goes through its queue, so
//! there is never more than one write transaction and ingest batches can be
//! grouped into one commit. Readers open their own connections ([`Store::reader`]);
//! when no processor runs, a [`Reader`] opens the store file itself, read-only
//! ([`Reader::open_read_only`]).
//!
//! Durability: a batch's reply is sent only after its transaction committed,
//! and DuckDB syncs its write-ahead log on commit, so an acknowledged record
//! survives SIGKILL and is replayed from the WAL when the file is opened
//! again. DuckDB checkpoints the WAL into the file once it passes
//! `checkpoint_threshold`, after retention, and at shutdown.

mod columns;
pub mod ids;
mod row;
pub mod schema;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use duckdb::Connection;
use tokio::sync::{mpsc, oneshot};

pub use crate::config::StoreConfig;
pub use columns::{ColumnError, Columns, ColumnsBuilder};
pub use row::{Cell, PreparedRecord, Row};

pub use writer::{RetentionOutcome, WriteOutcome, now_micros};

/// Why the store could not do something.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create store folder {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open store {path}: {source}")]
    Open {
        path: PathBuf,
        source: duckdb::Error,
    },
    #[error("store {path}: layout version {found} is newer than this processor's {supported}")]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// DuckDB refused `op`; its error is the source.
    #[error("store {op}: {source}")]
    Db {
        op: &'static str,
        #[source]
        source: duckdb::Error,
    },
    /// A value the store keeps for itself (such as the layout version) or a
    /// reader's cell is not what the processor wrote.
    #[error("store {op}: {message}")]
    BadValue { op: &'static str, message: String },
    /// Rows that do not fit their table's columns: a bug in the flattening.
    #[error("store build columns: {0}")]
    Columns(#[from] ColumnError),
    /// The writer thread (or the task opening the store) could not run.
    #[error("store {op}: {source}")]
    Thread {
        op: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The transaction of a group of batches failed; every batch of the
    /// group gets the one error.
    #[error("store write: {0}")]
    Write(#[source] std::sync::Arc<StoreError>),
    #[error("store writer has stopped")]
    WriterGone,
    #[error("store file {path} does not exist")]
    Missing { path: PathBuf },
    /// Shutdown began: running queries were stopped and no reader opens.
    #[error("store is shutting down: no new queries")]
    Closing,
}

impl StoreError {
    fn db(op: &'static str, source: duckdb::Error) -> StoreError {
        StoreError::Db { op, source }
    }
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A message to the writer thread.
enum Msg {
    /// Store records; `reply` is `None` for fire-and-forget (UDP).
    Write {
        records: Columns,
        reply: Option<Reply<WriteOutcome>>,
    },
    /// Drop whole days that ended at or before `cutoff` (micros since epoch).
    Retention {
        cutoff: i64,
        now: i64,
        reply: Reply<RetentionOutcome>,
    },
    Checkpoint {
        reply: Reply<()>,
    },
    /// Proves the writer is alive and the file takes a transaction.
    Ping {
        reply: Reply<()>,
    },
    SetCursor {
        name: String,
        seq: i64,
        now: i64,
        reply: Reply<()>,
    },
    /// Finish the queue, checkpoint, stop.
    Shutdown {
        reply: Reply<()>,
    },
}

/// The open store: a handle to the writer thread and a connection to clone readers from.
pub struct Store {
    path: PathBuf,
    tx: mpsc::Sender<Msg>,
    /// Connections are not `Sync`; readers are cloned from this one.
    base: Mutex<Connection>,
    /// The readers open on this store, so that shutdown can stop their queries.
    readers: Arc<Readers>,
    /// The newest committed `seq`, published by the writer.
    last_seq: Arc<std::sync::atomic::AtomicI64>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store file, upgrades its layout, and starts the writer.
    ///
    /// # Errors
    /// The folder or file cannot be created or opened, the file is from a
    /// newer processor, or its layout cannot be set up.
    pub fn open(options: &StoreConfig) -> Result<Store, StoreError> {
        if let Some(dir) = options.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let conn = open_connection(options)?;
        let mut writer = writer::Writer::start(conn, options)?;
        writer.load_ids()?;
        let base = writer
            .connection()
            .try_clone()
            .map_err(|source| StoreError::Open {
                path: options.path.clone(),
                source,
            })?;
        let last_seq = writer.last_seq();
        let (tx, rx) = mpsc::channel(options.queue_batches.max(1));
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Thread {
                op: "start writer",
                source: Box::new(e),
            })?;
        Ok(Store {
            path: options.path.clone(),
            tx,
            base: Mutex::new(base),
            readers: Arc::default(),
            last_seq,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The newest committed `seq` (0 for an empty store), without a query:
    /// `last_seq() - cursor` is how far a reader of the records is behind.
    pub fn last_seq(&self) -> i64 {
        self.last_seq.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores records and returns once they are committed (or found to be
    /// duplicates). `stored[i]` is false when record `i` was a duplicate.
    ///
    /// # Errors
    /// The transaction failed (nothing of the batch is stored) or the writer stopped.
    pub async fn write(
        &self,
        records: Vec<PreparedRecord<'_>>,
    ) -> Result<WriteOutcome, StoreError> {
        self.write_columns(Columns::build(records)?).await
    }

    /// [`Store::write`] of records whose columns the caller built, off the
    /// async threads (the HTTP handlers do it beside the flattening).
    ///
    /// # Errors
    /// The transaction failed (nothing of the batch is stored) or the writer stopped.
    pub async fn write_columns(&self, records: Columns) -> Result<WriteOutcome, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Write {
                records,
                reply: Some(reply),
            })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Queues records without waiting (UDP). False when the queue is full
    /// or the writer stopped: the caller counts a drop.
    pub fn write_detached(&self, records: Columns) -> bool {
        self.tx
            .try_send(Msg::Write {
                records,
                reply: None,
            })
            .is_ok()
    }

    /// Drops every day that ended at or before `cutoff`, then checkpoints so
    /// their blocks can be reused. `now` is recorded in `retention_runs`.
    ///
    /// # Errors
    /// The transaction failed or the writer stopped.
    pub async fn enforce_retention(
        &self,
        cutoff: i64,
        now: i64,
    ) -> Result<RetentionOutcome, StoreError> {
        self.ask(|reply| Msg::Retention { cutoff, now, reply })
            .await
    }

    /// Checkpoints the WAL into the file.
    ///
    /// # Errors
    /// DuckDB refused the checkpoint or the writer stopped.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        self.ask(|reply| Msg::Checkpoint { reply }).await
    }

    /// Readiness: the writer answers and a transaction can commit.
    ///
    /// # Errors
    /// The writer stopped or the file does not take a transaction.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.ask(|reply| Msg::Ping { reply }).await
    }

    /// Saves a named read cursor (the last `seq` a reader handled).
    ///
    /// # Errors
    /// The transaction failed or the writer stopped.
    pub async fn set_cursor(&self, name: &str, seq: i64, now: i64) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.ask(|reply| Msg::SetCursor {
            name,
            seq,
            now,
            reply,
        })
        .await
    }

    /// Finishes the queued writes, checkpoints, and stops the writer.
    ///
    /// # Errors
    /// The final checkpoint failed (the data is safe in the WAL all the same).
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        let result = self.ask(|reply| Msg::Shutdown { reply }).await;
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        result
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Msg) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// A read connection of its own.
    ///
    /// # Errors
    /// DuckDB could not open another connection.
    /// DuckDB could not open another connection, or shutdown began.
    pub fn reader(&self) -> Result<Reader, StoreError> {
        let base = self.base.lock().unwrap_or_else(|e| e.into_inner());
        let conn = base
            .try_clone()
            .map_err(|e| StoreError::db("open reader", e))?;
        let registration = self.readers.register(conn.interrupt_handle())?;
        Ok(Reader {
            conn,
            registration: Some(registration),
        })
    }

    /// Stops the query running on every reader of the store and refuses
    /// new readers, so that shutdown never waits for a long query (an
    /// admin's SQL, a report): each fails at once with an interrupt error.
    /// Returns how many readers were open.
    pub fn interrupt_readers(&self) -> usize {
        self.readers.close()
    }

    /// Bytes of the store file plus its WAL.
    pub fn file_bytes(&self) -> u64 {
        file_bytes(&self.path)
    }
}

/// Bytes of a store file plus its WAL.
pub fn file_bytes(path: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = path.as_os_str().to_owned();
    wal.push(".wal");
    size(path) + size(Path::new(&wal))
}

fn open_connection(options: &StoreConfig) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: options.path.clone(),
        source,
    };
    // External access off for the whole database: the processor reads and
    // writes only its own file (and WAL), so no query on any connection,
    // admin SQL above all, can read, write or attach a host file, install or
    // load an extension. The configuration is then locked, so that no
    // connection can turn it back on.
    let open = {
        let (path, memory, threads) = (
            options.path.clone(),
            options.memory_limit.clone(),
            i64::from(options.threads),
        );
        move || {
            let config = duckdb::Config::default()
                .enable_autoload_extension(false)
                .and_then(|c| c.enable_external_access(false))
                .and_then(|c| c.max_memory(&memory))
                .and_then(|c| c.threads(threads))?;
            Connection::open_with_flags(path, config)
        }
    };
    // DuckDB's worker threads take the name of the thread that opens the
    // database: opened here, they show as `duckdb` in `top -H` and in
    // profiles, apart from the HTTP handlers and the writer.
    let conn = std::thread::Builder::new()
        .name("duckdb".into())
        .spawn(open)
        .map_err(|e| StoreError::Thread {
            op: "open the store",
            source: Box::new(e),
        })?
        .join()
        .map_err(|_| StoreError::Thread {
            op: "open the store",
            source: "the opening thread panicked".into(),
        })?
        .map_err(open_err)?;
    conn.execute_batch(&format!(
        "SET checkpoint_threshold = '{}'; SET lock_configuration = true",
        options.checkpoint_threshold.replace('\'', "")
    ))
    .map_err(open_err)?;
    Ok(conn)
}

/// The readers open on a running store, by their interrupt handles.
#[derive(Default)]
struct Readers {
    state: Mutex<ReadersState>,
}

#[derive(Default)]
struct ReadersState {
    next: u64,
    live: HashMap<u64, Arc<duckdb::InterruptHandle>>,
    /// Set by [`Readers::close`]: shutdown began.
    closed: bool,
}

impl Readers {
    fn register(
        self: &Arc<Self>,
        handle: Arc<duckdb::InterruptHandle>,
    ) -> Result<Registration, StoreError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.closed {
            return Err(StoreError::Closing);
        }
        state.next += 1;
        let id = state.next;
        state.live.insert(id, handle);
        Ok(Registration {
            readers: self.clone(),
            id,
        })
    }

    /// Interrupts every live reader and refuses new ones; returns how many
    /// were live.
    fn close(&self) -> usize {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.closed = true;
        state.live.values().for_each(|h| h.interrupt());
        state.live.len()
    }
}

/// A reader's place in [`Readers`], given back when the reader is dropped.
struct Registration {
    readers: Arc<Readers>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut state = self.readers.state.lock().unwrap_or_else(|e| e.into_inner());
        state.live.remove(&self.id);
    }
}

/// A read connection. Queries for the analysis and the forwarder belong in
/// this module too, so that only the store talks to DuckDB.
pub struct Reader {
    conn: Connection,
    /// On the running store: the entry that lets shutdown interrupt this
    /// reader's query ([`Store::interrupt_readers`]). `None` for a store
    /// file opened read-only, which no shutdown waits for.
    registration: Option<Registration>,
}

/// The rows of a query with every cell as text (NULL as `None`), and the
/// names of its columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextRows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// Stops the query running on a reader's connection, from another thread.
#[derive(Clone)]
pub struct Interrupter(std::sync::Arc<duckdb::InterruptHandle>);

impl Interrupter {
    /// Stops the running query, which then fails; nothing when none runs.
    pub fn interrupt(&self) {
        self.0.interrupt();
    }
}

impl Reader {
    /// Opens a store file directly, read-only, with external access and
    /// extension autoloading off and the configuration locked: queries can
    /// read the store's tables and nothing else, and cannot change the file. For the command line when
    /// no processor runs (a running processor holds the file's lock).
    ///
    /// # Errors
    /// The file is missing, is not a DuckDB file, or is locked by a running processor.
    pub fn open_read_only(path: &Path) -> Result<Reader, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing {
                path: path.to_owned(),
            });
        }
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let config = duckdb::Config::default()
            .access_mode(duckdb::AccessMode::ReadOnly)
            .and_then(|c| c.enable_autoload_extension(false))
            .and_then(|c| c.enable_external_access(false))
            .map_err(open_err)?;
        let conn = Connection::open_with_flags(path, config).map_err(open_err)?;
        conn.execute_batch("SET lock_configuration = true")
            .map_err(open_err)?;
        Ok(Reader {
            conn,
            registration: None,
        })
    }

    /// Another connection to the same database.
    ///
    /// # Errors
    /// DuckDB could not open one, or the store's shutdown began.
    pub fn try_clone(&self) -> Result<Reader, StoreError> {
        let conn = self
            .conn
            .try_clone()
            .map_err(|e| StoreError::db("open reader", e))?;
        let registration = self
            .registration
            .as_ref()
            .map(|r| r.readers.register(conn.interrupt_handle()))
            .transpose()?;
        Ok(Reader { conn, registration })
    }

    /// A handle that stops the query running on this connection from
    /// another thread (the SQL timeout).
    pub fn interrupter(&self) -> Interrupter {
        Interrupter(self.conn.interrupt_handle())
    }

    /// One BIGINT (or NULL as 0) from a query, such as `SELECT count(*) FROM requests`.
    ///
    /// # Errors
    /// The query failed.
    pub fn query_i64(&self, sql: &str) -> Result<i64, StoreError> {
        self.conn
            .query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
            .map(Option::unwrap_or_default)
            .map_err(|e| StoreError::db("query", e))
    }

    /// The rows of a query, every column cast to text (NULL as `None`).
    ///
    /// # Errors
    /// The query failed.
    pub fn query_strings(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, StoreError> {
        self.query_text(sql).map(|t| t.rows)
    }

    /// The rows of a query, every column cast to text (NULL as `None`),
    /// with the columns' names: the one row reader of the store.
    ///
    /// # Errors
    /// The query failed.
    pub fn query_text(&self, sql: &str) -> Result<TextRows, StoreError> {
        // The line break ends a trailing `-- comment` of `sql` before `)`.
        let wrapped = format!("SELECT COLUMNS(*)::VARCHAR FROM ({sql}\n)");
        let q = |e| StoreError::db("query", e);
        let mut stmt = self.conn.prepare(&wrapped).map_err(q)?;
        let mut rows = stmt.query([]).map_err(q)?;
        let columns = rows.as_ref().map(|s| s.column_names()).unwrap_or_default();
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(q)? {
            let mut cells = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                cells.push(row.get::<_, Option<String>>(i).map_err(q)?);
            }
            out.push(cells);
        }
        Ok(TextRows { columns, rows: out })
    }

    /// Rows per data table, summed over the day schemas (DuckDB's own
    /// estimate, which is exact for append-only tables and costs no scan).
    ///
    /// # Errors
    /// The catalog query failed.
    pub fn table_rows(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let sql = format!(
            "SELECT table_name, sum(estimated_size)::BIGINT FROM duckdb_tables() \
             WHERE schema_name LIKE 'd________' AND table_name IN ({}) GROUP BY table_name ORDER BY table_name",
            schema::TABLES
                .iter()
                .map(|t| format!("'{}'", t.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(|e| StoreError::db("table rows", e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| StoreError::db("table rows", e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::db("table rows", e))
    }

    /// The saved position of a named cursor, 0 when never saved.
    ///
    /// # Errors
    /// The query failed.
    pub fn cursor(&self, name: &str) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT max(seq) FROM main.cursors WHERE name = ?",
                [name],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map(Option::unwrap_or_default)
            .map_err(|e| StoreError::db("read cursor", e))
    }
}

/// Tests only: makes a DuckDB file from SQL statements (tables with just
/// the columns a test needs), so that tests elsewhere need not open DuckDB
/// themselves.
///
/// # Errors
/// The file cannot be made or a statement fails.
#[cfg(test)]
pub fn file_from_sql(path: &Path, statements: &[&str]) -> Result<(), StoreError> {
    let conn = Connection::open(path).map_err(|e| StoreError::db("test file", e))?;
    statements
        .iter()
        .try_for_each(|sql| conn.execute_batch(sql))
        .map_err(|e| StoreError::db("test file", e))
}

/// Helpers for the benchmarks, kept here because only this module talks to
/// DuckDB: the ingest benchmark's baseline, and bulk loading of generated
/// data for the analysis benchmark. Compiled for tests and examples only
/// (the `test-support` feature).
#[cfg(any(test, feature = "test-support"))]
pub mod bench {
    use std::path::Path;
    use std::time::Instant;

    use super::{StoreConfig, StoreError, open_connection, schema, writer::Writer};

    /// A store opened for bulk loading generated data with plain SQL
    /// (`INSERT ... SELECT` from `range()`), thousands of times faster than
    /// records through ingest. The layout, the day schemas and the views are
    /// made by the writer's own code, so the file is a real store; what goes
    /// into the day tables is the caller's business (rows in `ts` order, a
    /// `seq` per record).
    pub struct BulkLoad {
        writer: Writer,
    }

    impl BulkLoad {
        /// Opens (or creates) the store file and sets up its layout, without
        /// starting the writer thread.
        ///
        /// # Errors
        /// The file cannot be opened or its layout set up.
        pub fn open(options: &StoreConfig) -> Result<BulkLoad, StoreError> {
            if let Some(dir) = options.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                    path: dir.to_owned(),
                    source,
                })?;
            }
            let conn = open_connection(options)?;
            Ok(BulkLoad {
                writer: Writer::start(conn, options)?,
            })
        }

        /// Creates the day schema of a day (days since the epoch) with its
        /// tables, and adds it to the views; returns the schema's name.
        ///
        /// # Errors
        /// The DDL failed.
        pub fn ensure_day(&mut self, day: i64) -> Result<String, StoreError> {
            self.writer.ensure_day(day)?;
            Ok(schema::day_schema(day))
        }

        /// Runs SQL statements on the loading connection.
        ///
        /// # Errors
        /// A statement failed; the error names `what`.
        pub fn execute(&self, what: &'static str, sql: &str) -> Result<(), StoreError> {
            self.writer
                .connection()
                .execute_batch(sql)
                .map_err(|e| StoreError::db(what, e))
        }

        /// One BIGINT (NULL as 0) from a query.
        ///
        /// # Errors
        /// The query failed.
        pub fn query_i64(&self, sql: &str) -> Result<i64, StoreError> {
            self.writer
                .connection()
                .query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
                .map(Option::unwrap_or_default)
                .map_err(|e| StoreError::db("query", e))
        }

        /// A value of `store_meta`, such as the parameters a generator wrote.
        ///
        /// # Errors
        /// The query failed.
        pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
            self.writer
                .connection()
                .query_row(
                    "SELECT max(value) FROM main.store_meta WHERE key = ?",
                    [key],
                    |r| r.get(0),
                )
                .map_err(|e| StoreError::db("read store_meta", e))
        }

        /// Sets a value of `store_meta`.
        ///
        /// # Errors
        /// The statement failed.
        pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
            let conn = self.writer.connection();
            conn.execute("DELETE FROM main.store_meta WHERE key = ?", [key])
                .and_then(|_| {
                    conn.execute("INSERT INTO main.store_meta VALUES (?, ?)", [key, value])
                })
                .map(|_| ())
                .map_err(|e| StoreError::db("write store_meta", e))
        }
    }

    /// Loads an NDJSON file into a fresh DuckDB file with DuckDB's own
    /// reader (`read_ndjson`, one table, types inferred), the way a user
    /// would without the processor. Returns the rows and the seconds taken.
    ///
    /// # Errors
    /// DuckDB could not open the file or read the NDJSON.
    pub fn direct_ndjson_load(db: &Path, ndjson: &Path) -> Result<(i64, f64), StoreError> {
        let conn = baseline_db(db)?;
        let started = Instant::now();
        conn.execute_batch(&format!(
            "CREATE TABLE t AS SELECT * FROM {}; CHECKPOINT;",
            read_ndjson(ndjson)
        ))
        .map_err(|e| StoreError::db("baseline load", e))?;
        let seconds = started.elapsed().as_secs_f64();
        Ok((baseline_rows(&conn)?, seconds))
    }

    /// [`direct_ndjson_load`] one file at a time, each in its own
    /// transaction (`INSERT INTO ... SELECT * FROM read_ndjson`), as the
    /// processor commits a batch: DuckDB's own loader with the processor's
    /// commits, WAL and checkpoints, into the table it infers (one row per
    /// record). Returns the rows and the seconds taken.
    ///
    /// # Errors
    /// DuckDB could not open a file or read the NDJSON.
    pub fn direct_ndjson_load_batched(
        db: &Path,
        batches: &[std::path::PathBuf],
        checkpoint_threshold: &str,
    ) -> Result<(i64, f64), StoreError> {
        let conn = baseline_db(db)?;
        conn.execute_batch(&format!(
            "SET checkpoint_threshold = '{}'",
            checkpoint_threshold.replace('\'', "")
        ))
        .map_err(|e| StoreError::db("baseline settings", e))?;
        let started = Instant::now();
        for (i, file) in batches.iter().enumerate() {
            let sql = if i == 0 {
                format!("CREATE TABLE t AS SELECT * FROM {}", read_ndjson(file))
            } else {
                format!("INSERT INTO t BY NAME SELECT * FROM {}", read_ndjson(file))
            };
            conn.execute_batch(&sql)
                .map_err(|e| StoreError::db("baseline load", e))?;
        }
        let seconds = started.elapsed().as_secs_f64();
        Ok((baseline_rows(&conn)?, seconds))
    }

    /// A fresh DuckDB file for a baseline load.
    fn baseline_db(db: &Path) -> Result<duckdb::Connection, StoreError> {
        let _ = std::fs::remove_file(db);
        duckdb::Connection::open(db).map_err(|e| StoreError::db("open baseline", e))
    }

    fn baseline_rows(conn: &duckdb::Connection) -> Result<i64, StoreError> {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
            .map_err(|e| StoreError::db("baseline count", e))
    }

    /// DuckDB's NDJSON reader over `file`, for records up to 100 MiB.
    fn read_ndjson(file: &Path) -> String {
        let path = file.display().to_string().replace('\'', "''");
        format!("read_ndjson('{path}', maximum_object_size = 104857600)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The analysis benchmark fills day tables with plain SQL: the store
    /// opened afterwards must see those rows through its views, and the
    /// generator's parameters must survive for its cache check.
    #[test]
    fn bulk_loaded_days_are_part_of_the_views() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            path: dir.path().join("bulk.duckdb"),
            ..StoreConfig::default()
        };
        {
            let mut load = bench::BulkLoad::open(&config).unwrap();
            let day = schema::days_from_civil(2026, 11, 20);
            let name = load.ensure_day(day).unwrap();
            assert_eq!(name, "d20261120");
            load.execute("insert", &format!("INSERT INTO {name}.requests (seq, project, ts) VALUES (7, 'shop', TIMESTAMP '2026-11-20 10:00:00')")).unwrap();
            assert_eq!(load.meta("bench_params").unwrap(), None);
            load.set_meta("bench_params", "a").unwrap();
            load.set_meta("bench_params", "b").unwrap();
        }
        let load = bench::BulkLoad::open(&config).unwrap();
        assert_eq!(load.meta("bench_params").unwrap().as_deref(), Some("b"));
        drop(load);
        let store = Store::open(&config).unwrap();
        let reader = store.reader().unwrap();
        assert_eq!(
            reader
                .query_i64("SELECT sum(seq) FROM main.requests")
                .unwrap(),
            7
        );
    }

    /// A layout-1 store (no `request_fingerprints`, no new `requests`
    /// columns) gains them on open, in the template and in every day.
    #[test]
    fn a_layout_1_store_is_upgraded_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            path: dir.path().join("v1.duckdb"),
            ..StoreConfig::default()
        };
        {
            let mut load = bench::BulkLoad::open(&config).unwrap();
            let day = load
                .ensure_day(schema::days_from_civil(2026, 11, 20))
                .unwrap();
            for s in [day.as_str(), schema::TEMPLATE_SCHEMA] {
                let s = schema::quote_ident(s);
                for c in schema::requests_added_since_v1() {
                    let c = c.name;
                    load.execute("v1", &format!("ALTER TABLE {s}.requests DROP COLUMN {c}"))
                        .unwrap();
                }
                load.execute("v1", &format!("DROP TABLE {s}.request_fingerprints"))
                    .unwrap();
            }
            load.execute("v1", "DROP VIEW main.request_fingerprints")
                .unwrap();
            load.execute(
                "v1",
                &format!("INSERT INTO {day}.requests (seq, project, ts) VALUES (7, 'shop', TIMESTAMP '2026-11-20 10:00:00')"),
            )
            .unwrap();
            load.execute(
                "v1",
                "UPDATE main.store_meta SET value = '1' WHERE key = 'schema_version'",
            )
            .unwrap();
        }
        let store = Store::open(&config).unwrap();
        let reader = store.reader().unwrap();
        assert_eq!(
            reader
                .query_i64("SELECT count(*) FROM main.requests WHERE sql_not_stored IS NULL AND profile_compact IS NULL")
                .unwrap(),
            1
        );
        assert_eq!(
            reader
                .query_i64("SELECT count(*) FROM main.request_fingerprints")
                .unwrap(),
            0
        );
        assert_eq!(
            reader
                .query_i64(
                    "SELECT max(value)::BIGINT FROM main.store_meta WHERE key = 'schema_version'"
                )
                .unwrap(),
            schema::STORE_SCHEMA_VERSION
        );
    }

    /// A layout-2 store (dedupe on the id alone, in `record_ids`) is
    /// upgraded at open: `record_ids` goes, and the ids its days' `records`
    /// hold are duplicates for their project only (layout 3's rule, kept by
    /// the in-memory set of layout 4).
    #[test]
    fn a_layout_2_store_dedupes_from_its_records_after_the_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::at(&dir.path().join("v2.duckdb"));
        let id = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";
        {
            let mut load = bench::BulkLoad::open(&config).unwrap();
            let day = load
                .ensure_day(schema::days_from_civil(2026, 11, 20))
                .unwrap();
            load.execute(
                "v2",
                &format!(
                    "INSERT INTO {day}.records (seq, project, host, ts, id, kind, ingested_at, raw) VALUES \
                     (1, 'shop', 'h', TIMESTAMP '2026-11-20 10:00:00', '{id}', 'host_metrics', TIMESTAMP '2026-11-20 10:00:01', '{{}}'); \
                     CREATE TABLE {day}.record_ids (id UUID PRIMARY KEY); \
                     INSERT INTO {day}.record_ids VALUES ('{id}'); \
                     UPDATE main.store_meta SET value = '2' WHERE key = 'schema_version'"
                ),
            )
            .unwrap();
        }
        let store = Store::open(&config).unwrap();
        let reader = store.reader().unwrap();
        let left = reader
            .query_text(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'record_ids'",
            )
            .unwrap();
        assert_eq!(left.rows, [[Some("0".to_owned())]]);
        let line = |project: &str| {
            let line = format!(
                r#"{{"v":1,"kind":"host_metrics","id":"{id}","ts":"2026-11-20T10:00:00.000000Z","project":"{project}","host":"h","source":"shipper","load1":1,"load5":1,"load15":1}}"#
            );
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            (line, value)
        };
        let lines = [line("shop"), line("blog")];
        let records = lines
            .iter()
            .map(|(line, value)| {
                crate::ingest::flatten::prepare(bitville_schemas::Kind::HostMetrics, value, line, 0)
                    .unwrap()
            })
            .collect();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let outcome = rt.block_on(store.write(records)).unwrap();
        assert_eq!(outcome.stored, [false, true]);
        rt.block_on(store.shutdown()).unwrap();
    }

    /// The one row reader names the columns of the query it ran (the
    /// analysis reads cells by those names), every cell as text.
    #[test]
    fn the_reader_names_its_columns_on_the_store_and_on_a_store_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            path: dir.path().join("r.duckdb"),
            ..StoreConfig::default()
        };
        let sql = "SELECT 1.5 AS seconds, NULL::BIGINT AS n, (1 < 2) AS w, 'a''b' AS name";
        let store = Store::open(&config).unwrap();
        let rows = store.reader().unwrap().query_text(sql).unwrap();
        let expected = TextRows {
            columns: ["seconds", "n", "w", "name"].map(str::to_owned).to_vec(),
            rows: vec![vec![
                Some("1.5".to_owned()),
                None,
                Some("true".to_owned()),
                Some("a'b".to_owned()),
            ]],
        };
        assert_eq!(rows, expected);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(store.shutdown()).unwrap();
        drop(store);

        let file = Reader::open_read_only(&config.path).unwrap();
        assert_eq!(file.query_text(sql).unwrap(), expected);
        assert!(matches!(
            Reader::open_read_only(&dir.path().join("none.duckdb")),
            Err(StoreError::Missing { .. })
        ));
    }

    /// The first wall of admin SQL, without the parser's: every connection
    /// of the running store refuses host files, ATTACH, INSTALL and any
    /// change of configuration, and the store still writes and reads.
    #[test]
    fn the_store_refuses_host_files_and_configuration_changes() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret.csv");
        std::fs::write(&secret, "a\n1\n").unwrap();
        let d = dir.path().display();
        let store = Store::open(&StoreConfig::at(&dir.path().join("s.duckdb"))).unwrap();
        let reader = store.reader().unwrap();
        let file_reads = [
            format!("SELECT * FROM \"{d}/secret\".csv"),
            format!("SELECT * FROM '{d}/*.csv'"),
            format!("SUMMARIZE \"{d}/secret\".csv"),
            format!("SELECT * FROM read_csv('{}')", secret.display()),
            format!("COPY (SELECT 1) TO '{d}/out.csv'"),
            format!("ATTACH '{d}/other.duckdb' AS other"),
            "INSTALL httpfs".to_owned(),
        ];
        for sql in &file_reads {
            let e = reader.conn.execute_batch(sql).expect_err(sql).to_string();
            assert!(e.contains("disabled by configuration"), "{sql}: {e}");
        }
        for sql in [
            "SET enable_external_access = true",
            "RESET enable_external_access",
            "SET lock_configuration = false",
        ] {
            let e = reader.conn.execute_batch(sql).expect_err(sql).to_string();
            assert!(e.contains("configuration has been locked"), "{sql}: {e}");
        }
        assert!(!dir.path().join("out.csv").exists());
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(store.checkpoint()).unwrap();
        assert_eq!(
            reader
                .query_i64("SELECT count(*) FROM main.records")
                .unwrap(),
            0
        );
        rt.block_on(store.shutdown()).unwrap();
    }

    /// Shutdown stops a query that would run for hours, and no reader
    /// opens after it.
    #[test]
    fn interrupting_the_readers_stops_their_queries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&StoreConfig::at(&dir.path().join("i.duckdb"))).unwrap());
        let reader = store.reader().unwrap();
        let forever = std::thread::spawn(move || {
            reader.query_i64("SELECT count(*) FROM range(1000000000000) a WHERE a.range % 7 = 3")
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        let started = std::time::Instant::now();
        assert_eq!(store.interrupt_readers(), 1);
        let result = forever.join().unwrap();
        assert!(result.is_err(), "{result:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(store.reader(), Err(StoreError::Closing)));
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(store.shutdown()).unwrap();
    }

    /// A new day's `records.raw` is stored with zstd, which DuckDB would not
    /// pick for it; the other columns keep DuckDB's own choice.
    #[test]
    fn raw_json_is_compressed_with_zstd() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            path: dir.path().join("z.duckdb"),
            ..StoreConfig::default()
        };
        let mut load = bench::BulkLoad::open(&config).unwrap();
        let name = load
            .ensure_day(schema::days_from_civil(2026, 11, 20))
            .unwrap();
        load.execute(
            "insert",
            &format!(
                "INSERT INTO {name}.records (seq, project, host, ts, id, kind, ingested_at, raw) \
                 SELECT i, 'shop', 'db-1', TIMESTAMP '2026-11-20 10:00:00', uuid(), 'pg_activity', TIMESTAMP '2026-11-20 10:00:01', \
                 ('{{\"host\":\"db-1\",\"n\":' || i || ',\"query\":\"SELECT * FROM orders WHERE id = ' || i || '\"}}')::JSON \
                 FROM range(50000) r(i)"
            ),
        )
        .unwrap();
        load.execute("checkpoint", "CHECKPOINT").unwrap();
        drop(load);
        let conn = Connection::open(&config.path).unwrap();
        let compression = |column: &str| -> Vec<String> {
            let sql = format!(
                "SELECT DISTINCT compression FROM pragma_storage_info('{name}.records') \
                 WHERE column_name = '{column}' AND segment_type <> 'VALIDITY'"
            );
            let mut stmt = conn.prepare(&sql).unwrap();
            stmt.query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(compression("raw"), vec!["ZSTD".to_owned()]);
        assert!(
            !compression("kind").contains(&"ZSTD".to_owned()),
            "{:?}",
            compression("kind")
        );
    }

    /// The measurement behind the day schemas: 14 days of steady inserts
    /// with 7 kept, once with DELETE + CHECKPOINT on one table and once with
    /// a table per day dropped + CHECKPOINT. Run by hand:
    /// `cargo test --workspace --lib space_reclaim -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement that prints file sizes, run by hand"]
    fn space_reclaim_delete_versus_drop() {
        let dir = tempfile::tempdir().unwrap();
        for mode in ["delete", "drop"] {
            let path = dir.path().join(format!("{mode}.duckdb"));
            let conn = duckdb::Connection::open(&path).unwrap();
            let fill = |day: i64| {
                format!(
                    "SELECT {day} AS day, i AS n, md5(i::VARCHAR || '{day}') || md5(i::VARCHAR) || md5('{day}' || i::VARCHAR) AS payload \
                     FROM range(300000) r(i)"
                )
            };
            if mode == "delete" {
                conn.execute_batch("CREATE TABLE t (day BIGINT, n BIGINT, payload VARCHAR)")
                    .unwrap();
            }
            let mut sizes = Vec::new();
            for day in 0..14i64 {
                if mode == "delete" {
                    conn.execute_batch(&format!("INSERT INTO t {}", fill(day)))
                        .unwrap();
                    conn.execute_batch(&format!(
                        "DELETE FROM t WHERE day <= {}; CHECKPOINT;",
                        day - 7
                    ))
                    .unwrap();
                } else {
                    conn.execute_batch(&format!("CREATE TABLE t{day} AS {}", fill(day)))
                        .unwrap();
                    if day >= 7 {
                        conn.execute_batch(&format!("DROP TABLE t{}; CHECKPOINT;", day - 7))
                            .unwrap();
                    } else {
                        conn.execute_batch("CHECKPOINT").unwrap();
                    }
                }
                sizes.push(super::file_bytes(&path) / 1024);
            }
            println!(
                "{mode:>6}: KiB per day {sizes:?}; day 14 / day 7 = {:.2}",
                sizes[13] as f64 / sizes[6] as f64
            );
        }
    }
}
