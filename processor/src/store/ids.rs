//! The dedupe set: every record id inside retention, in memory.
//!
//! A record is a duplicate when its project and id are stored already.
//! Before, each day schema had a `record_ids` table with a primary key,
//! paid on every insert and at every checkpoint. Now the writer keeps the
//! keys in memory (16 bytes an id, plus the hash table's own), per day so
//! retention drops a day's keys with its schema, and reads them from the
//! day tables' `records.id` column when the store opens. That column, in
//! the same transaction as the rest of the record, stays the durable truth:
//! a crash loses only the set, and the next start reads it back.
//!
//! A redelivered record carries the same `id` and `ts`, so it falls in the
//! same day; the set is keyed by day as `record_ids` was.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use duckdb::Connection;
use duckdb::arrow::array::{Array, StringArray};

use super::StoreError;
use super::schema::{self, quote_ident};

/// A record id as a number (the UUID's 128 bits).
pub type RecordKey = u128;

/// The ids stored per day and project.
#[derive(Debug, Default)]
pub struct IdSet {
    days: BTreeMap<i64, HashMap<Box<str>, HashSet<RecordKey>>>,
    len: usize,
}

/// What reading the set at start took, for the log and the benchmark.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadStats {
    pub ids: usize,
    pub days: usize,
    pub took: Duration,
}

impl IdSet {
    /// Parses a record id (a UUID, as the schemas require).
    ///
    /// # Errors
    /// The id is not a UUID: a record that did not pass the schemas.
    pub fn key(id: &str) -> Result<RecordKey, StoreError> {
        uuid::Uuid::try_parse(id)
            .map(|u| u.as_u128())
            .map_err(|e| StoreError::BadValue {
                op: "dedupe",
                message: format!("record id {id:?} is not a UUID: {e}"),
            })
    }

    pub fn contains(&self, day: i64, project: &str, key: RecordKey) -> bool {
        self.days
            .get(&day)
            .and_then(|p| p.get(project))
            .is_some_and(|ids| ids.contains(&key))
    }

    /// Adds a stored record's key; false when it was there already.
    pub fn insert(&mut self, day: i64, project: &str, key: RecordKey) -> bool {
        let projects = self.days.entry(day).or_default();
        let ids = match projects.get_mut(project) {
            Some(ids) => ids,
            None => projects.entry(project.into()).or_default(),
        };
        let new = ids.insert(key);
        self.len += usize::from(new);
        new
    }

    /// Forgets a day that retention dropped.
    pub fn drop_day(&mut self, day: i64) {
        if let Some(projects) = self.days.remove(&day) {
            self.len -= projects.values().map(HashSet::len).sum::<usize>();
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads the ids of the given days from their `records` tables.
    ///
    /// # Errors
    /// A query failed, or a stored id is not a UUID.
    pub fn load(
        conn: &Connection,
        days: impl IntoIterator<Item = i64>,
    ) -> Result<(IdSet, LoadStats), StoreError> {
        let started = Instant::now();
        let err = |e| StoreError::db("read record ids", e);
        let mut set = IdSet::default();
        let mut count = 0;
        for day in days {
            count += 1;
            let sql = format!(
                "SELECT project, id::VARCHAR FROM {}.records",
                quote_ident(&schema::day_schema(day))
            );
            let mut stmt = conn.prepare(&sql).map_err(err)?;
            for batch in stmt.query_arrow([]).map_err(err)? {
                let text = |i: usize| {
                    batch
                        .column(i)
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .cloned()
                        .ok_or_else(|| StoreError::BadValue {
                            op: "read record ids",
                            message: format!("column {i} of records is not text"),
                        })
                };
                let (projects, ids) = (text(0)?, text(1)?);
                for row in 0..batch.num_rows() {
                    if projects.is_null(row) || ids.is_null(row) {
                        continue;
                    }
                    let key = IdSet::key(ids.value(row))?;
                    set.insert(day, projects.value(row), key);
                }
            }
        }
        let stats = LoadStats {
            ids: set.len(),
            days: count,
            took: started.elapsed(),
        };
        Ok((set, stats))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";

    #[test]
    fn keys_are_per_day_and_project() {
        let mut set = IdSet::default();
        let k = IdSet::key(A).unwrap();
        assert!(set.insert(3, "shop", k));
        assert!(!set.insert(3, "shop", k));
        assert!(set.contains(3, "shop", k));
        assert!(!set.contains(3, "blog", k));
        assert!(!set.contains(4, "shop", k));
        assert!(set.insert(3, "blog", k));
        assert_eq!(set.len(), 2);
        set.drop_day(3);
        assert!(set.is_empty());
        assert!(IdSet::key("not-a-uuid").is_err());
    }
}
