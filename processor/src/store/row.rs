//! The store's input: one record's rows, in each table's column order.
//!
//! Ingest's flattening makes them (`crate::ingest::flatten`); the store
//! turns them into columns ([`super::Columns`]) and appends them. They live
//! here, beside the layout they follow, so that the store needs nothing of
//! ingest.

use bitville_schemas::Kind;

use super::schema::{DAY_MICROS, TableId};

/// One value of a row, in the column's order.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Text, and also UUID and JSON columns (DuckDB casts on append).
    Text(String),
    /// TIMESTAMP, microseconds since the epoch, UTC.
    Ts(i64),
    /// INTEGER[].
    IntList(Vec<i64>),
}

/// One row for one table. Column 0 is always `seq`, filled in by the writer.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub table: TableId,
    pub cells: Vec<Cell>,
}

/// A record ready for the writer: its dedupe key, its day, and its rows.
#[derive(Debug, Clone)]
pub struct PreparedRecord {
    pub id: String,
    pub kind: Kind,
    pub project: String,
    /// `ts` in microseconds since the epoch, UTC.
    pub ts: i64,
    pub rows: Vec<Row>,
}

impl PreparedRecord {
    /// The UTC day (days since the epoch) the record is stored under.
    pub fn day(&self) -> i64 {
        self.ts.div_euclid(DAY_MICROS)
    }
}
