//! The record contract of Bitville APM.
//!
//! Every record that crosses a process boundary (PHP agent to spool, spool to
//! processor, pg-watch to processor) is one JSON object described by a JSON
//! Schema in this crate's folder, one schema per [`Kind`]. This crate is the
//! only place that defines wire types.
//!
//! - [`validate`] and [`validate_line`]: check a record against its kind's
//!   schema, with the field path and the reason when it is refused.
//! - [`Envelope`], [`Kind`], [`new_record_id`], [`format_ts`], [`parse_ts`]:
//!   the fields every record carries.
//! - [`read`]: the fast reader, one line straight into a typed record that
//!   borrows its strings, with the schema's checks written beside the types.
//! - [`records`]: typed records that mirror the schemas, for code that reads
//!   bodies (the processor, pg-watch).
//! - [`fingerprint`]: normalized SQL text and correlation IDs, the join keys
//!   between PHP, pg_stat_statements and the PostgreSQL log.
//! - [`ingest`]: the processor's reply to a batch ([`IngestReply`], [`Rejected`]).
//! - [`valid_project`]: the envelope's project name rule.

pub mod fingerprint;
pub mod ingest;
pub mod read;
pub mod records;
mod timestamp;
mod validate;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use ingest::{IngestReply, Rejected};
pub use records::{
    HostMetricsRecord, PgActivityRecord, PgLogRecord, PgStatementsRecord, RequestRecord,
};
pub use timestamp::{Micros, TimestampError, format_micros, format_ts, parse_ts};
pub use validate::{RecordError, validate, validate_line};

/// The record contract's version, the value of every record's `v`.
pub const SCHEMA_VERSION: u32 = 1;

/// The kind of a record; it selects the schema for the record's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Request,
    HostMetrics,
    PgActivity,
    PgStatements,
    PgLog,
}

impl Kind {
    /// Every kind, in a stable order.
    pub const ALL: [Kind; 5] = [
        Kind::Request,
        Kind::HostMetrics,
        Kind::PgActivity,
        Kind::PgStatements,
        Kind::PgLog,
    ];

    /// The name used on the wire and in schema file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::HostMetrics => "host_metrics",
            Kind::PgActivity => "pg_activity",
            Kind::PgStatements => "pg_statements",
            Kind::PgLog => "pg_log",
        }
    }

    /// The JSON Schema text for this kind, as shipped in `schemas/<kind>.schema.json`.
    pub fn schema_text(self) -> &'static str {
        match self {
            Kind::Request => include_str!("../request.schema.json"),
            Kind::HostMetrics => include_str!("../host_metrics.schema.json"),
            Kind::PgActivity => include_str!("../pg_activity.schema.json"),
            Kind::PgStatements => include_str!("../pg_statements.schema.json"),
            Kind::PgLog => include_str!("../pg_log.schema.json"),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the record kinds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown kind {0:?}")]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

/// The fields every record carries (`schemas/envelope.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    pub kind: Kind,
    /// UUID v4, unique per record: the dedupe key.
    pub id: String,
    /// RFC 3339 in UTC with microseconds.
    pub ts: String,
    pub project: String,
    pub host: String,
}

impl Envelope {
    /// An envelope for a record made now, with a fresh id.
    pub fn new(kind: Kind, project: &str, host: &str) -> Self {
        Envelope {
            v: SCHEMA_VERSION,
            kind,
            id: new_record_id(),
            ts: format_ts(std::time::SystemTime::now()),
            project: project.to_owned(),
            host: host.to_owned(),
        }
    }
}

/// The envelope's project name rule (`project` in
/// `schemas/envelope.schema.json`: `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`), for
/// names that come from elsewhere than a record, such as tokens in a config.
pub fn valid_project(p: &str) -> bool {
    let b = p.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A fresh record id: a lowercase UUID v4.
pub fn new_record_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_follow_the_envelope_pattern() {
        assert!(valid_project("shop"));
        assert!(valid_project("a.b_c-9"));
        assert!(valid_project(&"x".repeat(64)));
        assert!(!valid_project(""));
        assert!(!valid_project("-shop"));
        assert!(!valid_project("shop/1"));
        assert!(!valid_project(&"x".repeat(65)));
    }

    #[test]
    fn kind_names_round_trip_and_unknown_names_are_refused() {
        for kind in Kind::ALL {
            assert_eq!(kind.as_str().parse::<Kind>(), Ok(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert_eq!(
            "requests".parse::<Kind>().unwrap_err().to_string(),
            r#"unknown kind "requests""#
        );
    }

    #[test]
    fn new_envelope_validates_as_an_envelope() {
        let env = Envelope::new(Kind::HostMetrics, "shop", "web-1");
        assert_eq!(env.id.len(), 36);
        assert_eq!(env.id.as_bytes()[14], b'4');
        assert!(parse_ts(&env.ts).is_ok(), "{}", env.ts);
    }
}
