//! Rows to columns: each table's rows of a batch become one Arrow record
//! batch, which DuckDB takes a vector at a time, instead of every value
//! bound through the row appender (about four times slower).
//!
//! [`ColumnsBuilder`] runs on the thread that prepares the batch (an HTTP
//! handler's blocking task), not on the single writer: the writer is one
//! thread, so it only dedupes, numbers and appends, and the rest of the
//! work runs beside it. Each record's rows go into the builders as its
//! line is accepted, their text copied once, from the line into Arrow.
//!
//! Each column is built from the table's declared SQL type, so a row whose
//! cell does not fit its column is a bug in ingest's flattening: its record
//! is refused, never stored wrong. UUID columns are sent as 16 bytes (Arrow's
//! `arrow.uuid` extension type), so DuckDB does not parse their text again;
//! JSON columns are sent as text.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bitville_schemas::Kind;
use duckdb::arrow::array::{
    ArrayRef, BooleanBuilder, FixedSizeBinaryBuilder, Float64Builder, Int64Array, Int64Builder,
    LargeListBuilder, LargeStringBuilder, TimestampMicrosecondBuilder, UInt32Array,
};
use duckdb::arrow::compute::take;
use duckdb::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use duckdb::arrow::record_batch::RecordBatch;

use super::row::{Cell, PreparedRecord, Row};
use super::schema::{Column, Table, TableId};

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
    #[error("{table}: a row of {cells} cells for {columns} columns")]
    Width {
        table: &'static str,
        cells: usize,
        columns: usize,
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

const UUID_BYTES: i32 = 16;

/// The Arrow type each of the store's SQL types is sent as.
fn arrow_type(sql_type: &str) -> Option<DataType> {
    Some(match sql_type {
        "BIGINT" => DataType::Int64,
        "DOUBLE" => DataType::Float64,
        "BOOLEAN" => DataType::Boolean,
        "TIMESTAMP" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "UUID" => DataType::FixedSizeBinary(UUID_BYTES),
        // 64-bit offsets: a batch's text in one column may pass 2 GiB
        // (`max_decompressed_bytes` has no ceiling), which 32-bit offsets
        // cannot hold.
        "VARCHAR" | "JSON" => DataType::LargeUtf8,
        "BIGINT[]" => DataType::LargeList(Arc::new(Field::new_list_field(DataType::Int64, true))),
        _ => return None,
    })
}

fn cell_name(cell: &Cell<'_>) -> &'static str {
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

/// One column being built, by the Arrow type its SQL type is sent as.
enum ColumnBuilder {
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMicrosecondBuilder),
    Text(LargeStringBuilder),
    /// A UUID, from its text.
    Uuid(FixedSizeBinaryBuilder),
    IntList(LargeListBuilder<Int64Builder>),
}

impl ColumnBuilder {
    fn new(data_type: &DataType) -> Option<ColumnBuilder> {
        Some(match data_type {
            DataType::Int64 => ColumnBuilder::Int(Int64Builder::new()),
            DataType::Float64 => ColumnBuilder::Float(Float64Builder::new()),
            DataType::Boolean => ColumnBuilder::Bool(BooleanBuilder::new()),
            DataType::Timestamp(..) => ColumnBuilder::Ts(TimestampMicrosecondBuilder::new()),
            DataType::LargeUtf8 => ColumnBuilder::Text(LargeStringBuilder::new()),
            DataType::FixedSizeBinary(UUID_BYTES) => {
                ColumnBuilder::Uuid(FixedSizeBinaryBuilder::new(UUID_BYTES))
            }
            DataType::LargeList(_) => {
                ColumnBuilder::IntList(LargeListBuilder::new(Int64Builder::new()))
            }
            _ => return None,
        })
    }

    /// Whether `cell` can go into this column (NULL goes anywhere; an
    /// integer into a DOUBLE column too; text that is a UUID into a UUID
    /// column).
    fn fits(&self, cell: &Cell<'_>) -> bool {
        if let (ColumnBuilder::Uuid(_), Cell::Text(t)) = (self, cell) {
            return uuid::Uuid::try_parse(t).is_ok();
        }
        matches!(
            (self, cell),
            (_, Cell::Null)
                | (ColumnBuilder::Int(_), Cell::Int(_))
                | (ColumnBuilder::Float(_), Cell::Float(_) | Cell::Int(_))
                | (ColumnBuilder::Bool(_), Cell::Bool(_))
                | (ColumnBuilder::Ts(_), Cell::Ts(_))
                | (ColumnBuilder::Text(_), Cell::Text(_))
                | (ColumnBuilder::IntList(_), Cell::IntList(_))
        )
    }

    /// Appends a cell that [`ColumnBuilder::fits`]; any other is NULL.
    fn append(&mut self, cell: &Cell<'_>) {
        match (self, cell) {
            (ColumnBuilder::Int(b), Cell::Int(v)) => b.append_value(*v),
            (ColumnBuilder::Float(b), Cell::Float(v)) => b.append_value(*v),
            (ColumnBuilder::Float(b), Cell::Int(v)) => b.append_value(*v as f64),
            (ColumnBuilder::Bool(b), Cell::Bool(v)) => b.append_value(*v),
            (ColumnBuilder::Ts(b), Cell::Ts(v)) => b.append_value(*v),
            (ColumnBuilder::Text(b), Cell::Text(v)) => b.append_value(v),
            (ColumnBuilder::Uuid(b), Cell::Text(v)) => match uuid::Uuid::try_parse(v) {
                Ok(id) => b
                    .append_value(id.as_bytes())
                    .unwrap_or_else(|_| b.append_null()),
                Err(_) => b.append_null(),
            },
            (ColumnBuilder::IntList(b), Cell::IntList(v)) => {
                b.values().append_slice(v);
                b.append(true);
            }
            (ColumnBuilder::Int(b), _) => b.append_null(),
            (ColumnBuilder::Float(b), _) => b.append_null(),
            (ColumnBuilder::Bool(b), _) => b.append_null(),
            (ColumnBuilder::Ts(b), _) => b.append_null(),
            (ColumnBuilder::Text(b), _) => b.append_null(),
            (ColumnBuilder::Uuid(b), _) => b.append_null(),
            (ColumnBuilder::IntList(b), _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Int(b) => Arc::new(b.finish()),
            ColumnBuilder::Float(b) => Arc::new(b.finish()),
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::Ts(b) => Arc::new(b.finish()),
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
            ColumnBuilder::Uuid(b) => Arc::new(b.finish()),
            ColumnBuilder::IntList(b) => Arc::new(b.finish()),
        }
    }
}

/// One table's rows being built into columns, with the record each row
/// belongs to.
struct TableBuilder {
    table: &'static Table,
    schema: Arc<Schema>,
    columns: Vec<ColumnBuilder>,
    record_of_row: Vec<u32>,
}

impl TableBuilder {
    fn new(table: &'static Table) -> Result<TableBuilder, ColumnError> {
        let unknown = |c: &Column| ColumnError::UnknownType {
            table: table.name,
            sql_type: c.sql_type,
        };
        let mut fields = Vec::with_capacity(table.columns.len());
        let mut columns = Vec::with_capacity(table.columns.len());
        for c in table.columns {
            let data_type = arrow_type(c.sql_type).ok_or_else(|| unknown(c))?;
            columns.push(ColumnBuilder::new(&data_type).ok_or_else(|| unknown(c))?);
            let field = Field::new(c.name, data_type, true);
            fields.push(if c.sql_type == "UUID" {
                field.with_metadata(HashMap::from([(
                    "ARROW:extension:name".to_owned(),
                    "arrow.uuid".to_owned(),
                )]))
            } else {
                field
            });
        }
        Ok(TableBuilder {
            table,
            schema: Arc::new(Schema::new(fields)),
            columns,
            record_of_row: Vec::new(),
        })
    }

    /// Whether every cell of `row` fits its column; nothing is appended.
    fn check(&self, row: &Row<'_>) -> Result<(), ColumnError> {
        if row.cells.len() != self.columns.len() {
            return Err(ColumnError::Width {
                table: self.table.name,
                cells: row.cells.len(),
                columns: self.columns.len(),
            });
        }
        for ((cell, builder), column) in row.cells.iter().zip(&self.columns).zip(self.table.columns)
        {
            if !builder.fits(cell) {
                return Err(ColumnError::Mismatch {
                    table: self.table.name,
                    column: column.name,
                    sql_type: column.sql_type,
                    cell: cell_name(cell),
                });
            }
        }
        Ok(())
    }

    /// Appends a row that passed [`TableBuilder::check`].
    fn append(&mut self, row: &Row<'_>, record: u32) {
        for (cell, builder) in row.cells.iter().zip(&mut self.columns) {
            builder.append(cell);
        }
        self.record_of_row.push(record);
    }

    fn finish(mut self) -> Result<(RecordBatch, Vec<u32>), ColumnError> {
        let arrays = self.columns.iter_mut().map(ColumnBuilder::finish).collect();
        let batch = RecordBatch::try_new(self.schema, arrays).map_err(|e| ColumnError::Arrow {
            table: self.table.name,
            source: e,
        })?;
        Ok((batch, self.record_of_row))
    }
}

/// A batch's records in columns, ready for the writer.
#[derive(Debug, Default)]
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

/// A batch's columns while its records come in, one at a time: each
/// record's rows go straight into the Arrow builders of their day's tables,
/// so a record's text is copied once, from its line into the column.
#[derive(Default)]
pub struct ColumnsBuilder {
    records: Vec<RecordKey>,
    tables: BTreeMap<(i64, TableId), TableBuilder>,
}

impl ColumnsBuilder {
    /// Adds a record's rows. Every row is checked against its table before
    /// any is appended, so a record that does not fit (a bug in ingest's
    /// flattening) is refused whole and the columns stay as they were.
    ///
    /// # Errors
    /// A row does not fit its table's columns.
    pub fn push(&mut self, record: PreparedRecord<'_>) -> Result<(), ColumnError> {
        let day = record.day();
        for row in &record.rows {
            let table = match self.tables.entry((day, row.table)) {
                Entry::Occupied(t) => t.into_mut(),
                Entry::Vacant(v) => v.insert(TableBuilder::new(row.table.table())?),
            };
            table.check(row)?;
        }
        let owner = u32::try_from(self.records.len()).unwrap_or(u32::MAX);
        for row in &record.rows {
            if let Some(table) = self.tables.get_mut(&(day, row.table)) {
                table.append(row, owner);
            }
        }
        self.records.push(RecordKey {
            project: record.project.into_owned(),
            id: record.id.into_owned(),
            day,
            kind: record.kind,
        });
        Ok(())
    }

    /// How many records have been added.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record has been added.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The columns, one record batch per day and table.
    ///
    /// # Errors
    /// Arrow refused a table's columns (they are built to its schema).
    pub fn finish(self) -> Result<Columns, ColumnError> {
        let tables = self
            .tables
            .into_iter()
            .filter(|(_, b)| !b.record_of_row.is_empty())
            .map(|((day, table), b)| {
                let (batch, record_of_row) = b.finish()?;
                Ok(TableRows {
                    day,
                    table,
                    batch,
                    record_of_row,
                })
            })
            .collect::<Result<_, ColumnError>>()?;
        Ok(Columns {
            records: self.records,
            tables,
        })
    }
}

impl Columns {
    /// Groups the records' rows by day and table and builds their columns.
    ///
    /// # Errors
    /// A cell does not fit its column's type (a bug in `flatten`).
    pub fn build(records: Vec<PreparedRecord<'_>>) -> Result<Columns, ColumnError> {
        let mut b = ColumnsBuilder::default();
        for r in records {
            b.push(r)?;
        }
        b.finish()
    }

    /// How many records the batch holds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
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

    /// One record batch of `rows`, all of them rows of `table`.
    fn record_batch(table: &'static Table, rows: &[Row<'_>]) -> Result<RecordBatch, ColumnError> {
        let mut b = TableBuilder::new(table)?;
        for row in rows {
            b.check(row)?;
            b.append(row, 0);
        }
        b.finish().map(|(batch, _)| batch)
    }

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

    fn host_row(seq: Cell<'static>, load1: Cell<'static>) -> Row<'static> {
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

    fn host_record(id: &str, ts: i64, load1: f64) -> PreparedRecord<'_> {
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

    /// A record whose row does not fit (here: text that is no UUID in a
    /// UUID column, which DuckDB would refuse for the whole transaction)
    /// is refused alone, before any of its rows is appended.
    #[test]
    fn a_record_that_does_not_fit_is_refused_whole_and_the_rest_stay() {
        let records = TableId::Records.table();
        let row = |id: &'static str| {
            let mut cells = vec![Cell::Null; records.columns.len()];
            cells[records.position("id").unwrap()] = Cell::Text(id.into());
            Row {
                table: TableId::Records,
                cells,
            }
        };
        let record = |id: &'static str| PreparedRecord {
            rows: vec![host_row(Cell::Null, Cell::Float(1.0)), row(id)],
            ..host_record(id, 10, 1.0)
        };
        let mut b = ColumnsBuilder::default();
        let err = b.push(record("not-a-uuid")).unwrap_err().to_string();
        assert_eq!(err, "records.id: a text cell cannot go into a UUID column");
        b.push(record("1b4e28ba-2fa1-41d2-883f-0016d3cca427"))
            .unwrap();
        let columns = b.finish().unwrap();
        assert_eq!(columns.len(), 1);
        let rows: Vec<_> = columns.tables.iter().map(|t| t.batch.num_rows()).collect();
        assert_eq!(
            rows,
            [1, 1],
            "one row in each table, none of the refused record"
        );
        let ids = &columns
            .tables
            .iter()
            .find(|t| t.table == TableId::Records)
            .unwrap()
            .batch;
        let id = ids
            .column(records.position("id").unwrap())
            .as_fixed_size_binary();
        assert_eq!(
            uuid::Uuid::from_slice(id.value(0)).unwrap().to_string(),
            "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
        );
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
