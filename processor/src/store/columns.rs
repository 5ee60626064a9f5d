//! Rows to columns: each table's rows of a batch become one Arrow record
//! batch, which DuckDB takes a vector at a time, instead of every value
//! bound through the row appender (about four times slower).
//!
//! [`Columns::build`] runs on the thread that prepared the batch (an HTTP
//! handler's blocking task), not on the single writer: the writer is one
//! thread, so it only dedupes, numbers and appends, and the rest of the
//! work runs beside it.
//!
//! Each column is built from the table's declared SQL type, so a row whose
//! cell does not fit its column is a bug in ingest's flattening and reported as such
//! rather than stored wrong. UUID and JSON columns are sent as text: DuckDB
//! casts a whole vector at once when the appender's types differ.

use std::collections::BTreeMap;
use std::sync::Arc;

use bitville_schemas::Kind;
use duckdb::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Array, Int64Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder, UInt32Array,
};
use duckdb::arrow::compute::take;
use duckdb::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use duckdb::arrow::record_batch::RecordBatch;

use super::row::{Cell, PreparedRecord, Row};
use super::schema::{Table, TableId};

/// A cell that does not fit its column, or Arrow refusing the batch.
#[derive(Debug, thiserror::Error)]
pub enum ColumnError {
    #[error("{table}.{column}: a {cell} cell cannot go into a {sql_type} column")]
    Mismatch {
        table: &'static str,
        column: &'static str,
        sql_type: &'static str,
        cell: &'static str,
    },
    #[error("{table}: unknown column type {sql_type}")]
    UnknownType {
        table: &'static str,
        sql_type: &'static str,
    },
    #[error("{table}: {source}")]
    Arrow {
        table: &'static str,
        #[source]
        source: duckdb::arrow::error::ArrowError,
    },
}

/// The Arrow type each of the store's SQL types is sent as.
fn arrow_type(sql_type: &str) -> Option<DataType> {
    Some(match sql_type {
        "BIGINT" => DataType::Int64,
        "DOUBLE" => DataType::Float64,
        "BOOLEAN" => DataType::Boolean,
        "TIMESTAMP" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "VARCHAR" | "UUID" | "JSON" => DataType::Utf8,
        "BIGINT[]" => DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true))),
        _ => return None,
    })
}

fn cell_name(cell: &Cell) -> &'static str {
    match cell {
        Cell::Null => "null",
        Cell::Bool(_) => "boolean",
        Cell::Int(_) => "integer",
        Cell::Float(_) => "float",
        Cell::Text(_) => "text",
        Cell::Ts(_) => "timestamp",
        Cell::IntList(_) => "integer list",
    }
}

/// Builds one record batch of `rows`, all of them rows of `table`, in the
/// table's column order.
///
/// # Errors
/// A cell does not fit its column's type.
pub fn record_batch(table: &'static Table, rows: &[Row]) -> Result<RecordBatch, ColumnError> {
    let mut fields = Vec::with_capacity(table.columns.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(table.columns.len());
    for (i, column) in table.columns.iter().enumerate() {
        let data_type = arrow_type(column.sql_type).ok_or(ColumnError::UnknownType {
            table: table.name,
            sql_type: column.sql_type,
        })?;
        let cells = rows.iter().map(|r| &r.cells[i]);
        let mismatch = |cell: &Cell| ColumnError::Mismatch {
            table: table.name,
            column: column.name,
            sql_type: column.sql_type,
            cell: cell_name(cell),
        };
        // One column of a primitive or text type: NULL, or the cell kinds
        // the patterns name, or a mismatch.
        macro_rules! column {
            ($builder:expr, $($cell:pat => $value:expr),+) => {{
                let mut b = $builder;
                for cell in cells {
                    match cell {
                        Cell::Null => b.append_null(),
                        $($cell => b.append_value($value),)+
                        other => return Err(mismatch(other)),
                    }
                }
                Arc::new(b.finish()) as ArrayRef
            }};
        }
        let n = rows.len();
        let array: ArrayRef = match &data_type {
            DataType::Int64 => column!(Int64Builder::with_capacity(n), Cell::Int(v) => *v),
            DataType::Float64 => {
                column!(Float64Builder::with_capacity(n), Cell::Float(v) => *v, Cell::Int(v) => *v as f64)
            }
            DataType::Boolean => column!(BooleanBuilder::with_capacity(n), Cell::Bool(v) => *v),
            DataType::Timestamp(..) => {
                column!(TimestampMicrosecondBuilder::with_capacity(n), Cell::Ts(v) => *v)
            }
            DataType::Utf8 => {
                let bytes = rows
                    .iter()
                    .map(|r| match &r.cells[i] {
                        Cell::Text(s) => s.len(),
                        _ => 0,
                    })
                    .sum();
                column!(StringBuilder::with_capacity(n, bytes), Cell::Text(v) => v)
            }
            DataType::List(_) => {
                let mut b = ListBuilder::new(Int64Builder::new());
                for cell in cells {
                    match cell {
                        Cell::Null => b.append_null(),
                        Cell::IntList(v) => {
                            b.values().append_slice(v);
                            b.append(true);
                        }
                        other => return Err(mismatch(other)),
                    }
                }
                Arc::new(b.finish())
            }
            _ => {
                return Err(ColumnError::UnknownType {
                    table: table.name,
                    sql_type: column.sql_type,
                });
            }
        };
        fields.push(Field::new(column.name, data_type, true));
        arrays.push(array);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| ColumnError::Arrow {
        table: table.name,
        source: e,
    })
}

/// A batch's records in columns, ready for the writer.
#[derive(Debug)]
pub struct Columns {
    /// Each record's dedupe key, in arrival order.
    pub(super) records: Vec<RecordKey>,
    /// The rows of each day and table, in arrival order.
    pub(super) tables: Vec<TableRows>,
}

#[derive(Debug)]
pub(super) struct RecordKey {
    /// With `id`, the dedupe key: ids are unique per project only, so one
    /// project's id never makes another project's record a duplicate.
    pub project: String,
    pub id: String,
    pub day: i64,
    pub kind: Kind,
}

/// The rows of one batch for one day's table.
#[derive(Debug)]
pub(super) struct TableRows {
    pub day: i64,
    pub table: TableId,
    /// Column 0, `seq`, is a placeholder until [`TableRows::numbered`].
    batch: RecordBatch,
    /// The record (an index into [`Columns::records`]) of each row.
    record_of_row: Vec<u32>,
}

impl Columns {
    /// Groups the records' rows by day and table and builds their columns.
    ///
    /// # Errors
    /// A cell does not fit its column's type (a bug in `flatten`).
    pub fn build(records: Vec<PreparedRecord>) -> Result<Columns, ColumnError> {
        let mut groups: BTreeMap<(i64, TableId), (Vec<Row>, Vec<u32>)> = BTreeMap::new();
        let mut keys = Vec::with_capacity(records.len());
        for (i, record) in (0u32..).zip(records) {
            let day = record.day();
            for row in record.rows {
                let (rows, owners) = groups.entry((day, row.table)).or_default();
                rows.push(row);
                owners.push(i);
            }
            keys.push(RecordKey {
                project: record.project,
                id: record.id,
                day,
                kind: record.kind,
            });
        }
        let tables = groups
            .into_iter()
            .map(|((day, table), (rows, record_of_row))| {
                Ok(TableRows {
                    day,
                    table,
                    batch: record_batch(table.table(), &rows)?,
                    record_of_row,
                })
            })
            .collect::<Result<_, ColumnError>>()?;
        Ok(Columns {
            records: keys,
            tables,
        })
    }

    /// How many records the batch holds.
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    /// The kind of each record, in arrival order.
    pub fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        self.records.iter().map(|r| r.kind)
    }
}

impl TableRows {
    /// The rows whose record is stored, each numbered with its record's
    /// `seq` (`seq_of`, by record; `None`: a duplicate, left out). `None`
    /// when no row is left.
    ///
    /// # Errors
    /// Arrow refused to take the rows (it cannot: the indices are in range).
    pub(super) fn numbered(
        &self,
        seq_of: &[Option<i64>],
    ) -> Result<Option<RecordBatch>, ColumnError> {
        let arrow = |e: duckdb::arrow::error::ArrowError| ColumnError::Arrow {
            table: self.table.table().name,
            source: e,
        };
        let mut keep = Vec::with_capacity(self.record_of_row.len());
        let mut seq = Vec::with_capacity(self.record_of_row.len());
        for (row, owner) in (0u32..).zip(&self.record_of_row) {
            if let Some(s) = seq_of[*owner as usize] {
                keep.push(row);
                seq.push(s);
            }
        }
        if keep.is_empty() {
            return Ok(None);
        }
        let mut columns: Vec<ArrayRef> = if keep.len() == self.record_of_row.len() {
            self.batch.columns().to_vec()
        } else {
            let rows = UInt32Array::from(keep);
            self.batch
                .columns()
                .iter()
                .map(|c| take(c, &rows, None))
                .collect::<Result<_, _>>()
                .map_err(arrow)?
        };
        columns[0] = Arc::new(Int64Array::from(seq));
        RecordBatch::try_new(self.batch.schema(), columns)
            .map(Some)
            .map_err(arrow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::{TABLES, TableId};
    use duckdb::arrow::array::{Array, AsArray};
    use duckdb::arrow::datatypes::Int64Type;

    #[test]
    fn every_store_column_type_has_an_arrow_type() {
        for table in TABLES {
            for c in table.columns {
                assert!(
                    arrow_type(c.sql_type).is_some(),
                    "{}.{}: {}",
                    table.name,
                    c.name,
                    c.sql_type
                );
            }
        }
    }

    fn host_row(seq: Cell, load1: Cell) -> Row {
        let table = TableId::HostMetrics.table();
        let mut cells = vec![Cell::Null; table.columns.len()];
        cells[0] = seq;
        cells[table.position("load1").unwrap()] = load1;
        Row {
            table: TableId::HostMetrics,
            cells,
        }
    }

    #[test]
    fn rows_become_columns_in_table_order_with_nulls_kept() {
        let a = host_row(Cell::Int(7), Cell::Float(1.5));
        let b = host_row(Cell::Int(8), Cell::Null);
        let batch = record_batch(TableId::HostMetrics.table(), &[a, b]).unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(
            batch.num_columns(),
            TableId::HostMetrics.table().columns.len()
        );
        let seq = batch.column(0).as_primitive::<Int64Type>();
        assert_eq!((seq.value(0), seq.value(1)), (7, 8));
        let load = batch.column(TableId::HostMetrics.table().position("load1").unwrap());
        assert!(!load.is_null(0) && load.is_null(1));
    }

    #[test]
    fn a_cell_of_the_wrong_kind_is_named_not_stored() {
        let bad = host_row(Cell::Text("seven".into()), Cell::Null);
        let err = record_batch(TableId::HostMetrics.table(), &[bad])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "host_metrics.seq: a text cell cannot go into a BIGINT column"
        );
    }

    fn host_record(id: &str, ts: i64, load1: f64) -> PreparedRecord {
        let mut row = host_row(Cell::Null, Cell::Float(load1));
        row.cells[3] = Cell::Ts(ts);
        PreparedRecord {
            id: id.into(),
            kind: Kind::HostMetrics,
            project: "shop".into(),
            ts,
            rows: vec![row],
        }
    }

    #[test]
    fn rows_are_grouped_by_day_and_numbered_by_record_without_duplicates() {
        let day = crate::store::schema::DAY_MICROS;
        let records = vec![
            host_record("a", 10, 1.0),
            host_record("b", day + 10, 2.0),
            host_record("c", 20, 3.0),
        ];
        let columns = Columns::build(records).unwrap();
        assert_eq!(columns.len(), 3);
        assert_eq!(
            columns
                .tables
                .iter()
                .map(|t| (t.day, t.batch.num_rows()))
                .collect::<Vec<_>>(),
            [(0, 2), (1, 1)]
        );

        // Record "a" is a duplicate: its row goes, the others take their record's seq.
        let seq_of = [None, Some(41), Some(42)];
        let first = columns.tables[0].numbered(&seq_of).unwrap().unwrap();
        assert_eq!(first.num_rows(), 1);
        assert_eq!(first.column(0).as_primitive::<Int64Type>().value(0), 42);
        let load = first.column(TableId::HostMetrics.table().position("load1").unwrap());
        assert_eq!(
            load.as_primitive::<duckdb::arrow::datatypes::Float64Type>()
                .value(0),
            3.0
        );
        let second = columns.tables[1].numbered(&seq_of).unwrap().unwrap();
        assert_eq!(second.column(0).as_primitive::<Int64Type>().value(0), 41);
        assert!(
            columns.tables[0]
                .numbered(&[None, Some(1), None])
                .unwrap()
                .is_none(),
            "no row left"
        );
    }
}
