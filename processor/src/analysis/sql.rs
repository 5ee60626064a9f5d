//! `processor sql`: read-only SQL for admins, with a timeout and a row cap.
//!
//! Two walls keep a query to the store's tables.
//!
//! The first is the database itself: the store is opened with external
//! access off and its configuration locked (`store`), for the running
//! processor and for a store file the CLI opens read-only alike, so DuckDB
//! refuses any file read or write, ATTACH, INSTALL or LOAD, and any SET that
//! would turn that back on, whatever the query looks like.
//!
//! The second is here: a query is let through only when DuckDB's own parser
//! says it is one SELECT (`json_serialize_sql` serializes nothing else: no
//! COPY, ATTACH, INSTALL, SET, PRAGMA, CREATE, INSERT...), when its parse
//! tree calls table functions from a short list only, and when every table
//! it names is a plain name in one of the store's schemas. DuckDB's
//! replacement scans read a file for a table name that looks like one
//! (`FROM 'x.csv'`, `FROM "/dir/x".csv`, a bare `x.csv`, `SUMMARIZE
//! "/dir/x".csv`); those names are refused here, with the name in the
//! message, before the database would refuse them too.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AnalysisError, Source, query, quote};
use crate::store::StoreError;

/// Table functions a query may call: generators and catalog views.
const ALLOWED_TABLE_FUNCTIONS: [&str; 10] = [
    "range",
    "generate_series",
    "unnest",
    "duckdb_tables",
    "duckdb_columns",
    "duckdb_views",
    "duckdb_schemas",
    "duckdb_functions",
    "json_each",
    "json_tree",
];

/// Scalar functions refused: they reach outside the store.
const REFUSED_FUNCTIONS: [&str; 4] = ["getenv", "read_text", "read_blob", "current_setting"];

/// The limits of one query.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SqlLimits {
    pub timeout: Duration,
    pub max_rows: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits {
            timeout: Duration::from_secs(30),
            max_rows: 10_000,
        }
    }
}

/// The answer to a query.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SqlResult {
    pub columns: Vec<String>,
    pub types: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    /// True when the query had more rows than the cap.
    pub truncated: bool,
    pub elapsed_ms: f64,
}

/// Refuses anything but one SELECT over the store's tables.
///
/// # Errors
/// The query is not one SELECT, calls a table function outside the list,
/// names a file as a table, or does not parse.
pub fn check(src: &dyn Source, sql: &str) -> Result<String, AnalysisError> {
    let sql = sql.trim().trim_end_matches(';').trim();
    if sql.is_empty() {
        return Err(AnalysisError::Refused("the query is empty".into()));
    }
    let rows = query(src, &format!("SELECT json_serialize_sql({})", quote(sql)))?;
    let text = rows.first().map(|r| r.s(0)).unwrap_or_default();
    let tree: Value = serde_json::from_str(&text)
        .map_err(|e| AnalysisError::Refused(format!("parse tree unreadable: {e}")))?;
    if tree.get("error").and_then(Value::as_bool) == Some(true) {
        return Err(AnalysisError::Refused(refusal(sql, &tree)));
    }
    let statements = tree
        .get("statements")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if statements != 1 {
        return Err(AnalysisError::Refused(format!(
            "only one statement is allowed; got {statements}"
        )));
    }
    walk(&tree, &Catalog::read(src)?)?;
    Ok(sql.to_owned())
}

/// Says why DuckDB's parser refused to serialize the query: a syntax
/// error (with DuckDB's message), more than one statement, or a statement
/// that is not a SELECT, named by its first keyword. The keywords only name
/// what was refused; what is let through is decided by the parse tree.
fn refusal(sql: &str, tree: &Value) -> String {
    let field = |k: &str| tree.get(k).and_then(Value::as_str).unwrap_or("");
    if field("error_type").eq_ignore_ascii_case("parser") {
        return format!("syntax error: {}", field("error_message"));
    }
    let keywords = statement_keywords(sql);
    match keywords.as_slice() {
        [one] => format!("only SELECT (read-only) statements are allowed; got {one}"),
        [] => "only SELECT (read-only) statements are allowed".to_owned(),
        many => format!(
            "only one statement is allowed, and only a SELECT; got {}: {}",
            many.len(),
            many.join(", ")
        ),
    }
}

/// The first keyword of each statement of `sql`, upper-cased: statements
/// split at semicolons outside quotes and comments.
fn statement_keywords(sql: &str) -> Vec<String> {
    let mut keywords = Vec::new();
    let mut current: Option<String> = None;
    let mut chars = sql.chars().peekable();
    let finish = |word: &mut Option<String>, keywords: &mut Vec<String>| {
        if let Some(w) = word.take() {
            keywords.push(w);
        }
    };
    let mut in_word = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                in_word = false;
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                in_word = false;
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                in_word = false;
                chars.next();
                let mut last = ' ';
                for d in chars.by_ref() {
                    if last == '*' && d == '/' {
                        break;
                    }
                    last = d;
                }
            }
            ';' => {
                in_word = false;
                finish(&mut current, &mut keywords);
            }
            c if c.is_ascii_alphabetic() && current.is_none() && !in_word => {
                current = Some(c.to_ascii_uppercase().to_string());
                in_word = true;
            }
            c if c.is_ascii_alphabetic() && in_word => {
                if let Some(w) = current.as_mut() {
                    w.push(c.to_ascii_uppercase());
                }
            }
            _ => in_word = false,
        }
    }
    finish(&mut current, &mut keywords);
    keywords
}

/// The store's databases and schemas, lower-cased (DuckDB folds unquoted
/// names): a table a query names must sit in one of them.
#[derive(Debug, Default)]
struct Catalog {
    databases: Vec<String>,
    schemas: Vec<String>,
}

impl Catalog {
    fn read(src: &dyn Source) -> Result<Catalog, AnalysisError> {
        let rows = query(
            src,
            "SELECT DISTINCT lower(database_name), lower(schema_name) FROM duckdb_schemas()",
        )?;
        let mut catalog = Catalog::default();
        for row in rows {
            catalog.databases.push(row.s(0));
            catalog.schemas.push(row.s(1));
        }
        Ok(catalog)
    }

    /// Why a table name is not one of the store's, if it is not: a file
    /// name, a path, or a schema or database the store does not have.
    fn refusal(&self, table: &Value) -> Option<String> {
        let part = |key: &str| table.get(key).and_then(Value::as_str).unwrap_or("");
        let (database, schema, name) = (
            part("catalog_name"),
            part("schema_name"),
            part("table_name"),
        );
        let full = [database, schema, name]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(".");
        let plain = |p: &str| p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let known =
            |list: &[String], p: &str| p.is_empty() || list.contains(&p.to_ascii_lowercase());
        let why = if name.is_empty() || ![database, schema, name].into_iter().all(plain) {
            "not a plain table name (a file name or path? admin SQL reads the store only)"
        } else if !known(&self.databases, database) {
            "its database is not the store"
        } else if !known(&self.schemas, schema) {
            "its schema is not one of the store's (a file name? admin SQL reads the store only)"
        } else {
            return None;
        };
        Some(format!("table {full:?} is refused: {why}"))
    }
}

fn walk(node: &Value, catalog: &Catalog) -> Result<(), AnalysisError> {
    match node {
        Value::Object(map) => {
            match map.get("type").and_then(Value::as_str) {
                Some("TABLE_FUNCTION") => {
                    let name = map
                        .get("function")
                        .and_then(|f| f.get("function_name"))
                        .and_then(Value::as_str)
                        .unwrap_or("?");
                    if !ALLOWED_TABLE_FUNCTIONS.contains(&name.to_ascii_lowercase().as_str()) {
                        return Err(AnalysisError::Refused(format!(
                            "table function {name} is not allowed (allowed: {})",
                            ALLOWED_TABLE_FUNCTIONS.join(", ")
                        )));
                    }
                }
                Some("BASE_TABLE") => {
                    if let Some(why) = catalog.refusal(node) {
                        return Err(AnalysisError::Refused(why));
                    }
                }
                _ => {}
            }
            if let Some(name) = map.get("function_name").and_then(Value::as_str)
                && REFUSED_FUNCTIONS.contains(&name.to_ascii_lowercase().as_str())
            {
                return Err(AnalysisError::Refused(format!(
                    "function {name} is not allowed"
                )));
            }
            map.values().try_for_each(|v| walk(v, catalog))
        }
        Value::Array(items) => items.iter().try_for_each(|v| walk(v, catalog)),
        _ => Ok(()),
    }
}

/// Interrupts the query running on a source when a timeout passes first.
struct Deadline {
    /// Dropped to tell the timer the query is over.
    done: Option<std::sync::mpsc::Sender<()>>,
    /// Answers true when it interrupted the query.
    timer: Option<std::thread::JoinHandle<bool>>,
}

impl Deadline {
    /// Starts the timer; a source that cannot be interrupted gets none.
    fn start(src: &dyn Source, timeout: Duration) -> Deadline {
        let (done, over) = std::sync::mpsc::channel::<()>();
        let timer = src.interrupter().map(|handle| {
            std::thread::spawn(move || match over.recv_timeout(timeout) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    handle.interrupt();
                    true
                }
                _ => false,
            })
        });
        Deadline {
            done: Some(done),
            timer,
        }
    }

    /// Stops the timer; true when it had interrupted the query.
    fn finish(mut self) -> bool {
        self.done.take();
        self.timer.take().is_some_and(|t| t.join().unwrap_or(false))
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        // The query ended without asking: stop the timer, do not wait for it.
        self.done.take();
    }
}

/// The error of a query the admin wrote, as a bad input (400) that says
/// what DuckDB found wrong, without the query the runner wrapped it in
/// (DuckDB's `LINE 1:` excerpt would show that wrapper, not theirs).
fn failed(e: AnalysisError) -> AnalysisError {
    match e {
        AnalysisError::Store(StoreError::Db { source, .. }) => {
            let text = source.to_string();
            let message = text.split("\nLINE ").next().unwrap_or(&text).trim();
            AnalysisError::BadInput(format!("query failed: {message}"))
        }
        other => other,
    }
}

/// Runs one checked SELECT with the limits. The query is wrapped with a
/// line break before the closing parenthesis, so that a trailing `-- comment`
/// ends there instead of swallowing the wrapper. When the timeout passes, the
/// query is interrupted on its connection, so it stops using CPU and
/// memory at once instead of running on after the caller gave up.
///
/// # Errors
/// The query is refused, fails, or runs out of time.
pub fn run(src: &dyn Source, sql: &str, limits: SqlLimits) -> Result<SqlResult, AnalysisError> {
    let sql = check(src, sql)?;
    let started = Instant::now();
    let deadline = Deadline::start(src, limits.timeout);
    let described = query(
        src,
        &format!("SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM ({sql}\n))"),
    );
    let result = described.and_then(|described| {
        let rows = src.rows(&format!(
            "SELECT * FROM ({sql}\n) LIMIT {}",
            limits.max_rows + 1
        ))?;
        Ok((described, rows))
    });
    let (described, rows) = match result {
        Err(_) if deadline.finish() => {
            return Err(AnalysisError::Timeout(limits.timeout.as_secs()));
        }
        other => other.map_err(failed)?,
    };
    let mut rows = rows.rows;
    let truncated = rows.len() > limits.max_rows;
    rows.truncate(limits.max_rows);
    Ok(SqlResult {
        columns: described.iter().map(|r| r.s(0)).collect(),
        types: described.iter().map(|r| r.s(1)).collect(),
        rows,
        truncated,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Reader;

    fn store() -> (tempfile::TempDir, Reader) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.duckdb");
        crate::store::file_from_sql(
            &path,
            &["CREATE TABLE requests (id INTEGER); INSERT INTO requests VALUES (1);"],
        )
        .unwrap();
        let file = Reader::open_read_only(&path).unwrap();
        (dir, file)
    }

    fn refused(src: &dyn Source, sql: &str) -> String {
        match check(src, sql) {
            Err(AnalysisError::Refused(message)) => message,
            other => panic!("{sql:?} was not refused: {other:?}"),
        }
    }

    /// Issue 22: every refusal read "only one SELECT is allowed", a syntax
    /// error included. Each says what was wrong with the query.
    #[test]
    fn refusals_say_what_was_wrong() {
        let (_dir, src) = store();
        let syntax = refused(&src, "SELEC count(*) FROM requests");
        assert!(syntax.starts_with("syntax error: "), "{syntax}");
        assert!(
            syntax.contains("SELEC"),
            "DuckDB's message is kept: {syntax}"
        );
        assert_eq!(
            refused(&src, "DELETE FROM requests"),
            "only SELECT (read-only) statements are allowed; got DELETE"
        );
        assert_eq!(
            refused(&src, "  -- tidy up\n/* now */ drop TABLE requests"),
            "only SELECT (read-only) statements are allowed; got DROP"
        );
        assert_eq!(
            refused(&src, "SELECT 1; SELECT 2"),
            "only one statement is allowed; got 2"
        );
        assert_eq!(
            refused(&src, "SELECT ';'; DELETE FROM requests"),
            "only one statement is allowed, and only a SELECT; got 2: SELECT, DELETE"
        );
        assert!(check(&src, "SELECT count(*) FROM requests;").is_ok());
    }
}
