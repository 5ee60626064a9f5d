//! The store's input: one record's rows, in each table's column order.
//!
//! Ingest's flattening makes them (`crate::ingest::flatten`); the store
//! turns them into columns ([`super::Columns`]) and appends them. They live
//! here, beside the layout they follow, so that the store needs nothing of
//! ingest.

use std::borrow::Cow;

use bitville_schemas::Kind;

use super::schema::{DAY_MICROS, TableId};

/// One value of a row, in the column's order. Text borrows from the line
/// (or its parsed tree) where it can: the columns copy it once, into Arrow.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Text, and also UUID and JSON columns (DuckDB casts on append).
    Text(Cow<'a, str>),
    /// TIMESTAMP, microseconds since the epoch, UTC.
    Ts(i64),
    /// INTEGER[].
    IntList(Vec<i64>),
}

/// One row for one table. Column 0 is always `seq`, filled in by the writer.
#[derive(Debug, Clone, PartialEq)]
pub struct Row<'a> {
    pub table: TableId,
    pub cells: Vec<Cell<'a>>,
}

/// A record ready for the columns ([`super::ColumnsBuilder`]): its dedupe
/// key, its day, and its rows, borrowing from the line they came from.
#[derive(Debug, Clone)]
pub struct PreparedRecord<'a> {
    pub id: Cow<'a, str>,
    pub kind: Kind,
    pub project: Cow<'a, str>,
    /// `ts` in microseconds since the epoch, UTC.
    pub ts: i64,
    pub rows: Vec<Row<'a>>,
}

impl PreparedRecord<'_> {
    /// The UTC day (days since the epoch) the record is stored under.
    pub fn day(&self) -> i64 {
        self.ts.div_euclid(DAY_MICROS)
    }
}
