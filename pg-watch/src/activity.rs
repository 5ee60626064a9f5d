//! pg_stat_activity sampling, with columns for the server's version.
//!
//! One query per sample returns every backend that is not idle (idle in
//! transaction included). `pg_blocking_pids()` takes the lock manager's
//! partition locks, so it runs only for backends that wait on a Lock: the
//! `CASE` evaluates it for those rows alone.

use std::time::{Instant, SystemTime};

use bitville_schemas::records::{Backend, PgActivityRecord};
use bitville_schemas::{Envelope, Kind, format_micros};
use time::OffsetDateTime;
use tokio_postgres::{Client, Row, Statement};

/// The comment that starts every query pg-watch sends: its own backend and
/// statements are recognized by it and left out of what it reports.
pub const MARKER: &str = "/* bitville-pg-watch */";

/// The sampling query for a server version (`server_version_num`).
pub fn activity_query(server_version_num: u32) -> String {
    let mut cols = vec![
        "datid::int8 AS datid",
        "datname::text AS datname",
        "pid",
        "usesysid::int8 AS usesysid",
        "usename::text AS usename",
        "application_name",
        "client_addr::text AS client_addr",
        "client_hostname",
        "client_port",
        "backend_start",
        "xact_start",
        "query_start",
        "state_change",
        "wait_event_type",
        "wait_event",
        "state",
        "backend_xid::text AS backend_xid",
        "backend_xmin::text AS backend_xmin",
        "query",
    ];
    if server_version_num >= 100_000 {
        cols.push("backend_type");
    }
    if server_version_num >= 130_000 {
        cols.push("leader_pid");
    }
    if server_version_num >= 140_000 {
        cols.push("query_id");
    }
    cols.push("CASE WHEN wait_event_type = 'Lock' THEN pg_blocking_pids(pid) END AS blocking_pids");
    format!(
        "{MARKER} SELECT {} FROM pg_stat_activity \
         WHERE pid <> pg_backend_pid() AND state IS NOT NULL AND state <> 'idle' \
         AND left(coalesce(query, ''), {}) <> '{MARKER}'",
        cols.join(", "),
        MARKER.len()
    )
}

/// Samples pg_stat_activity on one connection, the statement prepared once.
pub struct ActivitySampler {
    server_version_num: u32,
    statement: Option<Statement>,
}

impl ActivitySampler {
    pub fn new(server_version_num: u32) -> Self {
        ActivitySampler {
            server_version_num,
            statement: None,
        }
    }

    /// Takes one sample.
    ///
    /// # Errors
    /// The query fails (connection lost, statement timeout).
    pub async fn sample(
        &mut self,
        client: &Client,
        project: &str,
        host: &str,
    ) -> Result<PgActivityRecord, tokio_postgres::Error> {
        let statement = match &self.statement {
            Some(s) => s.clone(),
            None => {
                let s = client
                    .prepare(&activity_query(self.server_version_num))
                    .await?;
                self.statement = Some(s.clone());
                s
            }
        };
        let mut envelope = Envelope::new(Kind::PgActivity, project, host);
        envelope.ts = bitville_schemas::format_ts(SystemTime::now());
        let started = Instant::now();
        let rows = client.query(&statement, &[]).await?;
        let sample_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(PgActivityRecord {
            envelope,
            server_version_num: self.server_version_num,
            sample_ms: Some(sample_ms),
            backends: rows.iter().map(backend_from_row).collect(),
        })
    }
}

/// A column the server lacks (older version) reads as `None`.
fn col<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, name: &str) -> Option<T> {
    row.try_get::<_, Option<T>>(name).ok().flatten()
}

fn ts_col(row: &Row, name: &str) -> Option<String> {
    col::<OffsetDateTime>(row, name)
        .map(|t| format_micros((t.unix_timestamp_nanos() / 1000) as i64))
}

/// Maps one row; public for the version-adaptation tests.
pub fn backend_from_row(row: &Row) -> Backend {
    let application_name: Option<String> = col(row, "application_name");
    Backend {
        datid: col::<i64>(row, "datid").map(|v| v as u32),
        datname: col(row, "datname"),
        pid: col(row, "pid").unwrap_or(0),
        leader_pid: col(row, "leader_pid"),
        usesysid: col::<i64>(row, "usesysid").map(|v| v as u32),
        usename: col(row, "usename"),
        correlation_id: application_name
            .as_deref()
            .and_then(bitville_schemas::fingerprint::parse_correlation_id),
        application_name,
        client_addr: col(row, "client_addr"),
        client_hostname: col(row, "client_hostname"),
        client_port: col(row, "client_port"),
        backend_start: ts_col(row, "backend_start"),
        xact_start: ts_col(row, "xact_start"),
        query_start: ts_col(row, "query_start"),
        state_change: ts_col(row, "state_change"),
        wait_event_type: col(row, "wait_event_type"),
        wait_event: col(row, "wait_event"),
        state: col(row, "state"),
        backend_xid: col(row, "backend_xid"),
        backend_xmin: col(row, "backend_xmin"),
        query_id: col(row, "query_id"),
        query: col(row, "query"),
        backend_type: col(row, "backend_type"),
        blocking_pids: col(row, "blocking_pids"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_follow_the_version() {
        let q96 = activity_query(90_624);
        assert!(
            !q96.contains("backend_type")
                && !q96.contains("leader_pid")
                && !q96.contains("query_id")
        );
        let q12 = activity_query(120_000);
        assert!(q12.contains("backend_type") && !q12.contains("leader_pid"));
        let q17 = activity_query(170_002);
        assert!(q17.contains("leader_pid") && q17.contains("query_id"));
        assert!(q17.starts_with(MARKER));
    }
}
