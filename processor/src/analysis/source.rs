//! Where the analysis reads rows from.
//!
//! Inside the running processor that is a [`crate::store::Reader`]: a
//! connection of its own on the store's database, the read API the store
//! offers (every cell as text). When no processor runs, the CLI opens the
//! store file itself with [`StoreFile`], read-only and without external
//! access, so nothing it runs can change the store or touch other files.
//!
//! Both speak text because the store's reader does; the analysis queries
//! aggregate inside DuckDB and bring back few rows, so the text costs little.

use std::path::Path;
use std::sync::Arc;

use super::AnalysisError;

/// A read connection to the store.
pub trait Source: Send {
    /// The rows of one SELECT, every cell as text (NULL as `None`).
    ///
    /// # Errors
    /// The query failed.
    fn rows(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, AnalysisError>;

    /// A handle that stops the query running on this connection, when the
    /// connection offers one (the store's reader does not, yet).
    fn interrupter(&self) -> Option<Arc<duckdb::InterruptHandle>> {
        None
    }

    /// Another connection to the same database, so that independent reads
    /// can run side by side; `None` when the source has only the one.
    fn fork(&self) -> Option<Box<dyn Source>> {
        None
    }
}

impl Source for crate::store::Reader {
    fn rows(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, AnalysisError> {
        self.query_strings(sql)
            .map_err(|e| AnalysisError::Query(e.to_string()))
    }

    fn fork(&self) -> Option<Box<dyn Source>> {
        self.try_clone()
            .ok()
            .map(|r| Box::new(r) as Box<dyn Source>)
    }
}

/// Runs `jobs` side by side, each on a connection of its own, when the
/// source can open more; otherwise one after another on `src`. Results
/// come back in the order of `jobs`.
pub fn side_by_side<'a, T: Send>(
    src: &dyn Source,
    jobs: Vec<Box<dyn FnOnce(&dyn Source) -> T + Send + 'a>>,
) -> Vec<T> {
    let forks: Option<Vec<Box<dyn Source>>> = jobs.iter().skip(1).map(|_| src.fork()).collect();
    let Some(forks) = forks else {
        return jobs.into_iter().map(|job| job(src)).collect();
    };
    let mut jobs = jobs.into_iter();
    let Some(first) = jobs.next() else {
        return Vec::new();
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .zip(forks)
            .map(|(job, fork)| scope.spawn(move || job(fork.as_ref())))
            .collect();
        let mut out = vec![first(src)];
        // A job that panicked takes the caller down with it, as it would
        // have had it run on this thread.
        out.extend(
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))),
        );
        out
    })
}

/// A store file opened directly, read-only, for the CLI when no processor runs.
pub struct StoreFile {
    conn: duckdb::Connection,
}

impl StoreFile {
    /// Opens a store file read-only, with external access and extension
    /// autoloading off: queries can read the store's tables and nothing else.
    ///
    /// # Errors
    /// The file is missing, not a DuckDB file, or locked by a running processor.
    pub fn open_read_only(path: &Path) -> Result<StoreFile, AnalysisError> {
        if !path.exists() {
            return Err(AnalysisError::NotFound(format!(
                "store file {}",
                path.display()
            )));
        }
        let fail = |e: duckdb::Error| {
            AnalysisError::Query(format!(
                "cannot open store {} read-only: {e}",
                path.display()
            ))
        };
        let config = duckdb::Config::default()
            .access_mode(duckdb::AccessMode::ReadOnly)
            .and_then(|c| c.enable_autoload_extension(false))
            .and_then(|c| c.enable_external_access(false))
            .map_err(fail)?;
        let conn = duckdb::Connection::open_with_flags(path, config).map_err(fail)?;
        Ok(StoreFile { conn })
    }
}

impl Source for StoreFile {
    fn rows(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, AnalysisError> {
        let q = |e: duckdb::Error| AnalysisError::Query(e.to_string());
        let wrapped = format!("SELECT COLUMNS(*)::VARCHAR FROM ({sql})");
        let mut stmt = self.conn.prepare(&wrapped).map_err(q)?;
        let mut rows = stmt.query([]).map_err(q)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(q)? {
            let n = row.as_ref().column_count();
            let mut cells = Vec::with_capacity(n);
            for i in 0..n {
                cells.push(row.get::<_, Option<String>>(i).map_err(q)?);
            }
            out.push(cells);
        }
        Ok(out)
    }

    fn interrupter(&self) -> Option<Arc<duckdb::InterruptHandle>> {
        Some(self.conn.interrupt_handle())
    }

    fn fork(&self) -> Option<Box<dyn Source>> {
        self.conn
            .try_clone()
            .ok()
            .map(|conn| Box::new(StoreFile { conn }) as Box<dyn Source>)
    }
}
