//! Validation of records against their kind's JSON Schema.
//!
//! The envelope is checked by hand first, so the most common mistakes (no
//! `kind`, an unknown kind, a future `v`) get a direct message instead of a
//! schema error; then the kind's compiled schema checks the rest.

use std::sync::OnceLock;

use jsonschema::Validator;
use serde_json::Value;

use crate::{Kind, SCHEMA_VERSION};

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("line is not valid UTF-8 (at byte {0})")]
    NotUtf8(usize),
    #[error("line is not JSON: {0}")]
    NotJson(String),
    #[error("record is not a JSON object")]
    NotAnObject,
    #[error("/{0}: required field is missing")]
    MissingField(&'static str),
    #[error("/kind: unknown kind {0}")]
    UnknownKind(String),
    #[error("/v: unsupported schema version {0} (this build reads version {SCHEMA_VERSION})")]
    UnsupportedVersion(String),
    /// The record breaks its kind's schema; `path` is a JSON pointer.
    #[error("{path}: {reason}")]
    Schema { path: String, reason: String },
}

fn validators() -> &'static [Validator; 5] {
    static VALIDATORS: OnceLock<[Validator; 5]> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        Kind::ALL.map(|kind| {
            let schema: Value = serde_json::from_str(kind.schema_text())
                .unwrap_or_else(|e| panic!("{kind}.schema.json is not JSON: {e}"));
            jsonschema::draft202012::new(&schema)
                .unwrap_or_else(|e| panic!("{kind}.schema.json is not a valid schema: {e}"))
        })
    })
}

fn validator(kind: Kind) -> &'static Validator {
    let index = Kind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default();
    &validators()[index]
}

/// Checks a record against its kind's schema.
///
/// # Errors
/// The first reason the record is refused, naming the field by its JSON pointer.
pub fn validate(record: &Value) -> Result<Kind, RecordError> {
    let obj = record.as_object().ok_or(RecordError::NotAnObject)?;
    let v = obj.get("v").ok_or(RecordError::MissingField("v"))?;
    if v.as_u64() != Some(u64::from(SCHEMA_VERSION)) {
        return Err(RecordError::UnsupportedVersion(v.to_string()));
    }
    let kind = obj.get("kind").ok_or(RecordError::MissingField("kind"))?;
    let kind = kind
        .as_str()
        .and_then(|k| k.parse::<Kind>().ok())
        .ok_or_else(|| RecordError::UnknownKind(kind.to_string()))?;
    if let Some(error) = validator(kind).iter_errors(record).next() {
        let path = error.instance_path().to_string();
        return Err(RecordError::Schema {
            path: if path.is_empty() {
                "/".to_owned()
            } else {
                path
            },
            reason: error.to_string(),
        });
    }
    Ok(kind)
}

/// Parses one NDJSON line (without or with its newline) and validates it.
///
/// # Errors
/// The line is not UTF-8, not JSON, or the record breaks its schema.
pub fn validate_line(line: &[u8]) -> Result<(Kind, Value), RecordError> {
    let text = std::str::from_utf8(line).map_err(|e| RecordError::NotUtf8(e.valid_up_to()))?;
    let record: Value =
        serde_json::from_str(text).map_err(|e| RecordError::NotJson(e.to_string()))?;
    let kind = validate(&record)?;
    Ok((kind, record))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn host_metrics() -> Value {
        json!({
            "v": 1, "kind": "host_metrics", "id": "1b4e28ba-2fa1-41d2-883f-0016d3cca427",
            "ts": "2026-11-27T11:47:44.123456Z", "project": "shop", "host": "web-1",
            "source": "shipper", "load1": 1.5, "load5": 1.0, "load15": 0.5
        })
    }

    #[test]
    fn a_minimal_record_is_accepted() {
        assert_eq!(validate(&host_metrics()), Ok(Kind::HostMetrics));
    }

    #[test]
    fn a_wrong_type_names_the_field_path() {
        let mut r = host_metrics();
        r["cpu"] = json!({"user_pct": "high"});
        let err = validate(&r).unwrap_err().to_string();
        assert!(err.starts_with("/cpu/user_pct: "), "{err}");
        assert!(err.contains("\"high\""), "{err}");
    }

    #[test]
    fn an_unknown_field_is_refused() {
        let mut r = host_metrics();
        r["load_one"] = json!(1);
        let err = validate(&r).unwrap_err().to_string();
        assert!(err.contains("load_one"), "{err}");
    }

    #[test]
    fn invalid_utf8_is_refused_with_its_position() {
        assert_eq!(validate_line(b"{\"v\":\xff}"), Err(RecordError::NotUtf8(5)));
    }
}
