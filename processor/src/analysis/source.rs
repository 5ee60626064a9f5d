//! Where the analysis reads rows from: a [`crate::store::Reader`].
//!
//! Inside the running processor that is a connection of its own on the
//! store's database ([`crate::store::Store::reader`]). When no processor
//! runs, the command line opens the store file itself
//! ([`crate::store::Reader::open_read_only`]), read-only and without external
//! access, so nothing it runs can change the store or touch other files.
//! Either way only the store talks to DuckDB.
//!
//! The store's reader speaks text (every cell cast to `VARCHAR`); the
//! analysis queries aggregate inside DuckDB and bring back few rows, so the
//! text costs little.

use crate::store::{Interrupter, Reader, TextRows};

use super::AnalysisError;

/// A read connection to the store.
pub trait Source: Send {
    /// The rows of one SELECT, every cell as text (NULL as `None`), with the
    /// names of its columns.
    ///
    /// # Errors
    /// The query failed.
    fn rows(&self, sql: &str) -> Result<TextRows, AnalysisError>;

    /// A handle that stops the query running on this connection, when the
    /// connection offers one (every `store::Reader` does).
    fn interrupter(&self) -> Option<Interrupter> {
        None
    }

    /// Another connection to the same database, so that independent reads
    /// can run side by side; `None` when the source has only the one.
    fn fork(&self) -> Option<Box<dyn Source>> {
        None
    }
}

impl Source for Reader {
    fn rows(&self, sql: &str) -> Result<TextRows, AnalysisError> {
        Ok(self.query_text(sql)?)
    }

    fn interrupter(&self) -> Option<Interrupter> {
        Some(Reader::interrupter(self))
    }

    fn fork(&self) -> Option<Box<dyn Source>> {
        self.try_clone()
            .ok()
            .map(|r| Box::new(r) as Box<dyn Source>)
    }
}

/// One read of [`side_by_side`], given the connection to run on.
pub type Job<'a, T> = Box<dyn FnOnce(&dyn Source) -> T + Send + 'a>;

/// Runs `jobs` side by side, each on a connection of its own, when the
/// source can open more; otherwise one after another on `src`. Results
/// come back in the order of `jobs`.
pub fn side_by_side<'a, T: Send>(src: &dyn Source, jobs: Vec<Job<'a, T>>) -> Vec<T> {
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
