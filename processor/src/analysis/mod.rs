//! Spike analysis: finds load spikes and ranks their suspects, with evidence.
//!
//! Modules, one job each:
//! - [`source`]: where rows come from: the store's [`crate::store::Reader`], on the
//!   running store or on a store file opened read-only when no processor runs.
//! - [`spikes`]: detection of load and concurrency spikes per host.
//! - [`correlation`]: lock trees (waiter to root blocker to its request).
//! - [`report`]: the window report: suspects ranked by their share of the
//!   excess load against a baseline window ([`Frame`] holds the two), and the top lists.
//! - [`request`]: the drill-down of one correlation ID, its flame graph and call table.
//! - [`lock_tree`]: the whole lock chain around one request's backend, root
//!   blockers first, for its drill-down.
//! - [`sql`]: the read-only SQL runner for admins (timeout, row cap, no file access).
//! - [`api`]: the HTTP JSON API; `api::scope` turns a request's token into
//!   the [`Scope`] every query filters on.
//!
//! The `report` and `sql` subcommands that print these answers are the
//! binary's (`src/cli/`), not this library's.
//!
//! **Architecture invariant:** every query here filters on a time range
//! first (`ts` columns are in ingest order, so DuckDB's zone maps skip the
//! rest of the seven days) and on the caller's project; time bounds are
//! computed in Rust and written as plain `TIMESTAMP` literals, since the
//! bundled DuckDB has no ICU.

pub mod api;
pub mod correlation;
pub mod lock_tree;
pub mod report;
pub mod request;
pub mod source;
pub mod spikes;
pub mod sql;

use serde::{Deserialize, Serialize};

pub use source::Source;

use crate::store::{StoreError, TextRows, schema};

/// Microseconds since the Unix epoch, UTC.
pub type Micros = i64;

pub const SECOND: Micros = 1_000_000;

/// Why an analysis could not answer.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// The store could not answer; its error (DuckDB's below it) is the source.
    #[error("store query failed: {0}")]
    Store(#[from] StoreError),
    /// The store answered, but not in the shape the query asked for (a
    /// column missing, a number that does not parse, a row without a field
    /// it must have).
    #[error("store answer: {0}")]
    Answer(String),
    /// An answer could not be turned into its output (JSON, a flame graph).
    #[error("{0}")]
    Output(String),
    #[error("{0}")]
    BadInput(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("query refused: {0}")]
    Refused(String),
    #[error("query stopped after {0} s (timeout)")]
    Timeout(u64),
}

/// Whose data a caller may read: one project, or all of them (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    Project(String),
    All,
}

impl Scope {
    /// ` AND <prefix>project = '...'` for a project, nothing for all.
    pub fn clause(&self, prefix: &str) -> String {
        match self {
            Scope::Project(p) => format!(" AND {prefix}project = {}", quote(p)),
            Scope::All => String::new(),
        }
    }

    /// Narrows an admin scope to one project when the caller asks for one;
    /// a project scope stays what it is, whatever is asked.
    pub fn narrowed(self, asked: Option<&str>) -> Scope {
        match (self, asked) {
            (Scope::All, Some(p)) if !p.is_empty() => Scope::Project(p.to_owned()),
            (scope, _) => scope,
        }
    }
}

/// A half-open time range `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub from: Micros,
    pub to: Micros,
}

impl Window {
    /// # Errors
    /// `to` is not after `from`.
    pub fn new(from: Micros, to: Micros) -> Result<Window, AnalysisError> {
        if to <= from {
            return Err(AnalysisError::BadInput(format!(
                "window {} .. {}: the end is not after the start",
                format_time(from),
                format_time(to)
            )));
        }
        Ok(Window { from, to })
    }

    pub fn seconds(&self) -> f64 {
        (self.to - self.from) as f64 / SECOND as f64
    }

    /// The window of the same length that ends where this one starts.
    pub fn before(&self) -> Window {
        Window {
            from: 2 * self.from - self.to,
            to: self.from,
        }
    }

    /// `col >= from AND col < to` with literals.
    pub fn filter(&self, col: &str) -> String {
        format!(
            "{col} >= {} AND {col} < {}",
            ts_literal(self.from),
            ts_literal(self.to)
        )
    }
}

/// A window and the baseline it is compared with (the baseline ends at or
/// before the window's start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub window: Window,
    pub baseline: Window,
}

impl Frame {
    /// # Errors
    /// The baseline does not end at or before the window's start.
    pub fn new(window: Window, baseline: Window) -> Result<Frame, AnalysisError> {
        if baseline.to > window.from {
            return Err(AnalysisError::BadInput(format!(
                "baseline {} .. {} must end at or before the window's start {}",
                format_time(baseline.from),
                format_time(baseline.to),
                format_time(window.from)
            )));
        }
        Ok(Frame { window, baseline })
    }

    /// The window against the window of the same length just before it.
    pub fn before(window: Window) -> Frame {
        Frame {
            window,
            baseline: window.before(),
        }
    }

    /// Window length over baseline length: scales baseline sums to the window.
    pub fn ratio(&self) -> f64 {
        self.window.seconds() / self.baseline.seconds()
    }

    /// Rows in the baseline or the window. The outer bounds come first so
    /// that DuckDB prunes row groups by their min/max.
    pub fn filter(&self, col: &str) -> String {
        format!(
            "{col} >= {lo} AND {col} < {hi} AND ({col} < {bto} OR {col} >= {wfrom})",
            lo = ts_literal(self.baseline.from),
            hi = ts_literal(self.window.to),
            bto = ts_literal(self.baseline.to),
            wfrom = ts_literal(self.window.from)
        )
    }

    /// The baseline's start to the window's end: every row [`Frame::filter`] keeps.
    pub fn range(&self) -> Window {
        Window {
            from: self.baseline.from.min(self.window.from),
            to: self.window.to,
        }
    }

    /// True for rows of the window (given [`Frame::filter`]).
    pub fn in_window(&self, col: &str) -> String {
        format!("({col} >= {})", ts_literal(self.window.from))
    }
}

/// The UTC days the store holds (its day schemas), so that a query names
/// only the day tables its time range touches.
///
/// The `main` views union every day, and DuckDB binds and optimizes every
/// branch of a view for each query: with seven days, planning a query on the
/// `requests` view took 10 to 25 ms in the analysis benchmark, while scanning
/// an hour of it took about 1 ms. A report runs a dozen queries and a
/// drill-down six, so they read the day tables of their range instead.
#[derive(Debug, Clone, Default)]
pub struct Days(Vec<i64>);

impl Days {
    /// Lists the day schemas of the store.
    ///
    /// # Errors
    /// The catalog query failed.
    pub fn load(src: &dyn Source) -> Result<Days, AnalysisError> {
        let rows = query(
            src,
            "SELECT schema_name FROM duckdb_schemas() WHERE database_name = current_database() AND schema_name LIKE 'd________'",
        )?;
        let mut days: Vec<i64> = rows
            .iter()
            .filter_map(|r| schema::parse_day_schema(&r.s(0)))
            .collect();
        days.sort_unstable();
        days.dedup();
        Ok(Days(days))
    }

    /// Each day as a window, newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = Window> + '_ {
        self.0.iter().rev().map(|d| Window {
            from: d * schema::DAY_MICROS,
            to: (d + 1) * schema::DAY_MICROS,
        })
    }

    /// A `FROM` item for `table` holding every row whose `ts` is in `range`:
    /// the one day table, a union of the days the range touches, or the
    /// empty template table when the store has none of those days. A row is
    /// stored in the day of its `ts`, so nothing in the range is missed.
    pub fn table(&self, table: &str, range: Window) -> String {
        let (first, last) = (
            schema::day_of_micros(range.from),
            schema::day_of_micros(range.to - 1),
        );
        let names: Vec<String> = self
            .0
            .iter()
            .filter(|d| (first..=last).contains(*d))
            .map(|d| format!("{}.{table}", schema::day_schema(*d)))
            .collect();
        match names.as_slice() {
            [] => format!("{}.{table}", schema::quote_ident(schema::TEMPLATE_SCHEMA)),
            [one] => one.clone(),
            _ => format!(
                "(SELECT * FROM {})",
                names.join(" UNION ALL SELECT * FROM ")
            ),
        }
    }
}

/// A SQL string literal.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A DuckDB `TIMESTAMP` literal (UTC) for microseconds since the epoch.
pub fn ts_literal(micros: Micros) -> String {
    format!(
        "TIMESTAMP '{}'",
        format_time(micros).trim_end_matches('Z').replace('T', " ")
    )
}

/// `2026-11-27T11:47:44.123456Z`.
pub fn format_time(micros: Micros) -> String {
    bitville_schemas::format_micros(micros)
}

/// Parses a time the way people type it: RFC 3339 (`2026-11-27T11:00:00Z`),
/// the same with a space and no zone (taken as UTC), a date alone, or Unix
/// seconds.
///
/// # Errors
/// None of those shapes fits.
pub fn parse_time(text: &str) -> Result<Micros, AnalysisError> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) && t.len() <= 11 {
        return t
            .parse::<i64>()
            .map(|s| s * SECOND)
            .map_err(|e| AnalysisError::BadInput(format!("time {t:?}: {e}")));
    }
    let mut s = t.replacen(' ', "T", 1);
    if s.len() == 10 {
        s.push_str("T00:00:00");
    }
    if s.len() == 16 {
        s.push_str(":00");
    }
    let has_zone = s.ends_with('Z')
        || s.get(19..)
            .is_some_and(|rest| rest.contains('+') || rest.contains('-'));
    if !has_zone {
        s.push('Z');
    }
    bitville_schemas::parse_ts(&s).map_err(|_| {
        AnalysisError::BadInput(format!(
            "time {t:?} is not RFC 3339, `YYYY-MM-DD HH:MM[:SS]` (UTC) or Unix seconds"
        ))
    })
}

/// A UUID check before an ID goes into a query.
///
/// # Errors
/// The text is not a UUID.
pub fn check_uuid(text: &str) -> Result<String, AnalysisError> {
    uuid::Uuid::parse_str(text.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| AnalysisError::BadInput(format!("id {text:?} is not a UUID")))
}

/// One result row with cells as text, with lenient typed getters: the
/// analysis asks for numbers it computed itself, so NULL and unparsable
/// both read as zero.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Option<String>>);

impl Row {
    pub fn f(&self, i: usize) -> f64 {
        self.opt(i).and_then(|s| s.parse().ok()).unwrap_or(0.0)
    }
    pub fn i(&self, i: usize) -> i64 {
        self.opt(i).and_then(|s| s.parse().ok()).unwrap_or(0)
    }
    pub fn s(&self, i: usize) -> String {
        self.opt(i).unwrap_or_default().to_owned()
    }
    pub fn opt(&self, i: usize) -> Option<&str> {
        self.0.get(i).and_then(|c| c.as_deref())
    }
    /// A `BIGINT[]` cell as DuckDB prints it (`[1, 2]`).
    pub fn list(&self, i: usize) -> Vec<i64> {
        self.opt(i)
            .map(|s| {
                s.trim_matches(|c| c == '[' || c == ']')
                    .split(',')
                    .filter_map(|x| x.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Runs a query on a source and wraps its rows.
///
/// # Errors
/// The query failed.
pub fn query(src: &dyn Source, sql: &str) -> Result<Vec<Row>, AnalysisError> {
    Ok(src.rows(sql)?.rows.into_iter().map(Row).collect())
}

/// The rows of a query, read by column name: a column that is missing or a
/// number that does not parse is an error, never a silent zero.
#[derive(Debug, Clone, Default)]
pub struct Named(TextRows);

impl Named {
    /// A table from column names and rows of text cells (tests make them by hand).
    pub fn new(columns: &[&str], rows: Vec<Vec<Option<&str>>>) -> Named {
        Named(TextRows {
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: rows
                .into_iter()
                .map(|r| r.into_iter().map(|c| c.map(str::to_owned)).collect())
                .collect(),
        })
    }

    pub fn rows(&self) -> impl Iterator<Item = NamedRow<'_>> {
        self.0.rows.iter().map(|cells| NamedRow {
            columns: &self.0.columns,
            cells,
        })
    }
}

/// Runs a query on a source, for reading its rows by column name.
///
/// # Errors
/// The query failed.
pub fn query_named(src: &dyn Source, sql: &str) -> Result<Named, AnalysisError> {
    Ok(Named(src.rows(sql)?))
}

/// One row of a [`Named`] result.
#[derive(Debug, Clone, Copy)]
pub struct NamedRow<'a> {
    columns: &'a [String],
    cells: &'a [Option<String>],
}

impl NamedRow<'_> {
    /// The cell of a column, `None` for NULL.
    ///
    /// # Errors
    /// The result has no such column.
    pub fn opt(&self, column: &str) -> Result<Option<&str>, AnalysisError> {
        let i = self
            .columns
            .iter()
            .position(|c| c == column)
            .ok_or_else(|| {
                AnalysisError::Answer(format!("no column {column:?} among {:?}", self.columns))
            })?;
        Ok(self.cells.get(i).and_then(|c| c.as_deref()))
    }

    /// A text cell, NULL as the empty string.
    ///
    /// # Errors
    /// The result has no such column.
    pub fn text(&self, column: &str) -> Result<String, AnalysisError> {
        Ok(self.opt(column)?.unwrap_or_default().to_owned())
    }

    /// A number; NULL (a sum over no rows) reads as 0.
    ///
    /// # Errors
    /// The column is missing or its value is not a number.
    pub fn num(&self, column: &str) -> Result<f64, AnalysisError> {
        self.parsed(column, "a number")
            .map(Option::unwrap_or_default)
    }

    /// An integer; NULL reads as 0.
    ///
    /// # Errors
    /// The column is missing or its value is not an integer.
    pub fn int(&self, column: &str) -> Result<i64, AnalysisError> {
        self.parsed(column, "an integer")
            .map(Option::unwrap_or_default)
    }

    /// A BOOLEAN cell.
    ///
    /// # Errors
    /// The column is missing, NULL, or not `true` or `false`.
    pub fn flag(&self, column: &str) -> Result<bool, AnalysisError> {
        match self.opt(column)? {
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            other => Err(AnalysisError::Answer(format!(
                "column {column:?}: {other:?} is not true or false"
            ))),
        }
    }

    fn parsed<T: std::str::FromStr>(
        &self,
        column: &str,
        what: &str,
    ) -> Result<Option<T>, AnalysisError> {
        self.opt(column)?
            .map(|text| {
                text.parse::<T>().map_err(|_| {
                    AnalysisError::Answer(format!("column {column:?}: {text:?} is not {what}"))
                })
            })
            .transpose()
    }
}

/// The SQL expression naming a request's endpoint: method and route, or the
/// path without its query string when there is no route.
pub const ENDPOINT_SQL: &str = "coalesce(method, upper(sapi), '-') || ' ' || coalesce(route, nullif(split_part(url, '?', 1), ''), '-')";

/// Rounds for display and JSON (three decimals is a millisecond of seconds).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_the_shapes_people_type() {
        let z = parse_time("2026-11-27T11:00:00Z").unwrap();
        assert_eq!(parse_time("2026-11-27 11:00:00").unwrap(), z);
        assert_eq!(parse_time("2026-11-27 11:00").unwrap(), z);
        assert_eq!(parse_time("2026-11-27T13:00:00+02:00").unwrap(), z);
        assert_eq!(parse_time(&(z / SECOND).to_string()).unwrap(), z);
        assert_eq!(parse_time("2026-11-27").unwrap(), z - 11 * 3600 * SECOND);
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn literals_are_plain_utc_timestamps_and_quotes_are_escaped() {
        assert_eq!(
            ts_literal(parse_time("2026-11-27T11:00:00Z").unwrap()),
            "TIMESTAMP '2026-11-27 11:00:00.000000'"
        );
        assert_eq!(quote("a'b"), "'a''b'");
        assert_eq!(
            Scope::Project("x'y".into()).clause("r."),
            " AND r.project = 'x''y'"
        );
        assert_eq!(Scope::All.clause(""), "");
    }

    #[test]
    fn a_project_scope_cannot_be_widened_or_moved() {
        assert_eq!(
            Scope::Project("a".into()).narrowed(Some("b")),
            Scope::Project("a".into())
        );
        assert_eq!(Scope::All.narrowed(Some("b")), Scope::Project("b".into()));
        assert_eq!(Scope::All.narrowed(None), Scope::All);
    }

    #[test]
    fn windows_refuse_to_run_backwards_and_know_their_baseline() {
        assert!(Window::new(10, 10).is_err());
        let w = Window::new(100, 160).unwrap();
        assert_eq!(w.before(), Window { from: 40, to: 100 });
    }

    #[test]
    fn named_rows_refuse_missing_columns_and_values_that_do_not_parse() {
        let t = Named::new(
            &["n", "x", "w", "name"],
            vec![
                vec![Some("3"), None, Some("true"), Some("GET /")],
                vec![Some("three"), Some("1e3"), Some("yes"), None],
            ],
        );
        let rows: Vec<NamedRow<'_>> = t.rows().collect();
        assert_eq!(rows[0].int("n").unwrap(), 3);
        assert_eq!(rows[0].num("x").unwrap(), 0.0, "NULL reads as 0");
        assert!(rows[0].flag("w").unwrap());
        assert_eq!(rows[0].text("name").unwrap(), "GET /");
        assert!(matches!(
            rows[0].num("missing"),
            Err(AnalysisError::Answer(_))
        ));
        assert!(matches!(rows[1].int("n"), Err(AnalysisError::Answer(_))));
        assert_eq!(rows[1].num("x").unwrap(), 1000.0);
        assert!(rows[1].flag("w").is_err());
        assert_eq!(rows[1].opt("name").unwrap(), None);
    }

    #[test]
    fn rows_read_lists_and_nulls_leniently() {
        let r = Row(vec![Some("[1, 22]".into()), None, Some("2.5".into())]);
        assert_eq!(r.list(0), vec![1, 22]);
        assert_eq!(r.f(1), 0.0);
        assert_eq!(r.f(2), 2.5);
        assert!(check_uuid("nope").is_err());
    }
}
