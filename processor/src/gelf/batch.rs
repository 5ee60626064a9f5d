//! Reads what to forward from the store, after a durable cursor.
//!
//! The cursor is the last `seq` an output handled (see the store's `seq`
//! column: it only grows, and one writer commits in order, so every row
//! below the highest visible `seq` is already visible). Each read scans at
//! most `scan_window` sequence numbers, picks the records that can make a
//! message (full requests, pg_log events of interest) and stops at
//! `batch_records` or `batch_bytes`, so memory and query cost stay bounded
//! however far behind an outage left the output.

use std::collections::HashMap;

use serde_json::Value;

use super::build::PG_LOG_CLASSES;
use super::config::GelfConfig;
use crate::store::{Reader, StoreError};

/// Records to turn into messages, and where the cursor goes once they are sent.
#[derive(Debug, Default)]
pub struct Batch {
    /// `(seq, record, host load1)` in `seq` order.
    pub records: Vec<(i64, Value, Option<f64>)>,
    /// The cursor after this batch (past skipped records too).
    pub next: i64,
    /// The highest stored `seq` when read: `max - cursor` is the lag.
    pub max: i64,
}

/// The next batch after `cursor`.
///
/// # Errors
/// A store query failed.
pub fn read_batch(reader: &Reader, cursor: i64, config: &GelfConfig) -> Result<Batch, StoreError> {
    let max = reader.query_i64("SELECT max(seq) FROM main.records")?;
    if max <= cursor {
        return Ok(Batch {
            records: Vec::new(),
            next: cursor,
            max,
        });
    }
    let hi = max.min(cursor.saturating_add(config.scan_window));
    let classes = PG_LOG_CLASSES
        .iter()
        .map(|c| format!("'{c}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let wanted = format!(
        "seq > {cursor} AND seq <= {hi} AND (\
           seq IN (SELECT seq FROM main.requests WHERE seq > {cursor} AND seq <= {hi} AND record_type = 'full') \
           OR seq IN (SELECT seq FROM main.pg_log WHERE seq > {cursor} AND seq <= {hi} \
                      AND (class IN ({classes}) OR upper(severity) IN ('ERROR', 'FATAL', 'PANIC'))))"
    );
    let sizes = reader.query_strings(&format!(
        "SELECT seq, strlen(raw::VARCHAR) FROM main.records WHERE {wanted} ORDER BY seq"
    ))?;
    let mut next = hi;
    let (mut count, mut bytes) = (0usize, 0usize);
    for row in &sizes {
        let seq = cell_i64(row, 0)?;
        let len = usize::try_from(cell_i64(row, 1)?).unwrap_or(0);
        // A single record larger than the byte budget still goes, alone.
        if count > 0 && (count >= config.batch_records || bytes + len > config.batch_bytes) {
            next = seq - 1;
            break;
        }
        count += 1;
        bytes += len;
    }
    if count == 0 {
        return Ok(Batch {
            records: Vec::new(),
            next,
            max,
        });
    }
    let rows = reader.query_strings(&format!(
        "SELECT seq, raw::VARCHAR FROM main.records WHERE {wanted} AND seq <= {next} ORDER BY seq"
    ))?;
    let mut records = Vec::with_capacity(rows.len());
    for row in &rows {
        let seq = cell_i64(row, 0)?;
        let raw = row.get(1).and_then(Option::as_deref).unwrap_or("null");
        match serde_json::from_str::<Value>(raw) {
            Ok(v) => records.push((seq, v, None)),
            // Stored records were validated on ingest; one that does not parse
            // now is skipped, not retried for ever.
            Err(e) => tracing::warn!("gelf: stored record seq {seq} is not JSON, skipped: {e}"),
        }
    }
    attach_host_load(reader, &mut records)?;
    Ok(Batch { records, next, max })
}

/// Sets each request's load1: the latest host_metrics sample of its project
/// and host in the 10 minutes before it.
fn attach_host_load(
    reader: &Reader,
    records: &mut [(i64, Value, Option<f64>)],
) -> Result<(), StoreError> {
    const WINDOW_US: i64 = 600_000_000;
    let requests: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].1["kind"] == "request")
        .collect();
    let ts = |v: &Value| {
        v["ts"]
            .as_str()
            .and_then(|t| bitville_schemas::parse_ts(t).ok())
    };
    let times: Vec<i64> = requests.iter().filter_map(|&i| ts(&records[i].1)).collect();
    let (Some(lo), Some(hi)) = (times.iter().min(), times.iter().max()) else {
        return Ok(());
    };
    let mut hosts: Vec<String> = requests
        .iter()
        .filter_map(|&i| records[i].1["host"].as_str())
        .map(sql_string)
        .collect();
    hosts.sort();
    hosts.dedup();
    let rows = reader.query_strings(&format!(
        "SELECT project, host, epoch_us(ts), load1 FROM main.host_metrics \
         WHERE ts >= {} AND ts <= {} AND host IN ({}) AND load1 IS NOT NULL ORDER BY ts",
        timestamp_literal(lo - WINDOW_US),
        timestamp_literal(*hi),
        hosts.join(", ")
    ))?;
    let mut samples: HashMap<(&str, &str), Vec<(i64, f64)>> = HashMap::new();
    for row in &rows {
        let (Some(Some(p)), Some(Some(h))) = (row.first(), row.get(1)) else {
            continue;
        };
        let (Ok(t), Some(load)) = (
            cell_i64(row, 2),
            row.get(3).and_then(|c| c.as_deref()?.parse::<f64>().ok()),
        ) else {
            continue;
        };
        samples
            .entry((p.as_str(), h.as_str()))
            .or_default()
            .push((t, load));
    }
    for &i in &requests {
        let v = &records[i].1;
        let (Some(p), Some(h), Some(t)) = (v["project"].as_str(), v["host"].as_str(), ts(v)) else {
            continue;
        };
        let found = samples.get(&(p, h)).and_then(|s| {
            s.iter()
                .rev()
                .find(|(st, _)| *st <= t && *st >= t - WINDOW_US)
        });
        records[i].2 = found.map(|(_, load)| *load);
    }
    Ok(())
}

fn cell_i64(row: &[Option<String>], i: usize) -> Result<i64, StoreError> {
    row.get(i)
        .and_then(Option::as_deref)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| StoreError::BadValue {
            op: "gelf read",
            message: format!("column {i} is not an integer: {:?}", row.get(i)),
        })
}

fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A DuckDB TIMESTAMP literal (UTC, no time zone) for microseconds since the epoch.
pub fn timestamp_literal(micros: i64) -> String {
    let text = bitville_schemas::format_micros(micros);
    format!(
        "TIMESTAMP '{}'",
        text.trim_end_matches('Z').replace('T', " ")
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamp_literal_is_plain_utc() {
        assert_eq!(
            super::timestamp_literal(1_795_780_064_123_456),
            "TIMESTAMP '2026-11-27 11:47:44.123456'"
        );
    }
}
