//! `processor sql`: read-only SQL for admins, with a timeout and a row cap.
//!
//! A query is let through only when DuckDB's own parser says it is one
//! SELECT (`json_serialize_sql` serializes nothing else: no COPY, ATTACH,
//! INSTALL, SET, PRAGMA, CREATE, INSERT...), and when its parse tree reads
//! only tables by plain name and table functions from a short list, so it
//! cannot read a host file (`FROM 'x.csv'`, `read_text(...)`) either.
//! A store file opened by the CLI is also opened read-only with external
//! access off, as a second wall.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AnalysisError, Source, query, quote};

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
    walk(&tree)?;
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

fn walk(node: &Value) -> Result<(), AnalysisError> {
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
                    let name = map.get("table_name").and_then(Value::as_str).unwrap_or("");
                    let plain = !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !plain {
                        return Err(AnalysisError::Refused(format!(
                            "table {name:?} is not a table of the store"
                        )));
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
            map.values().try_for_each(walk)
        }
        Value::Array(items) => items.iter().try_for_each(walk),
        _ => Ok(()),
    }
}

/// Runs one checked SELECT with the limits. The timeout interrupts the
/// query where the connection allows it (a store file opened read-only);
/// on the running store's reader the caller bounds the wait instead.
///
/// # Errors
/// The query is refused, fails, or runs out of time.
pub fn run(src: &dyn Source, sql: &str, limits: SqlLimits) -> Result<SqlResult, AnalysisError> {
    let sql = check(src, sql)?;
    let started = Instant::now();
    let described = query(
        src,
        &format!("SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM ({sql}))"),
    )?;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let timer = src.interrupter().map(|handle| {
        let timeout = limits.timeout;
        std::thread::spawn(move || match rx.recv_timeout(timeout) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                handle.interrupt();
                true
            }
            _ => false,
        })
    });
    let result = src.rows(&format!(
        "SELECT * FROM ({sql}) LIMIT {}",
        limits.max_rows + 1
    ));
    drop(tx);
    let interrupted = timer.is_some_and(|t| t.join().unwrap_or(false));
    let mut rows = match result {
        Err(_) if interrupted => return Err(AnalysisError::Timeout(limits.timeout.as_secs())),
        other => other?.rows,
    };
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
        let conn = duckdb::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE requests (id INTEGER); INSERT INTO requests VALUES (1);")
            .unwrap();
        drop(conn);
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
