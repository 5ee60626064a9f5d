//! The record contract holds: every fixture validates against its schema and
//! reads into its typed record, each kind's schema carries the envelope
//! verbatim, and broken records are refused for the stated reason.

use std::path::{Path, PathBuf};

use bitville_schemas::{
    HostMetricsRecord, Kind, PgActivityRecord, PgLogRecord, PgStatementsRecord, RecordError,
    RequestRecord, validate, validate_line,
};
use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    manifest_dir().join("../fixtures")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Reads a validated record into its typed form, so the Rust types and the
/// schemas cannot drift apart unnoticed.
fn read_typed(kind: Kind, record: &Value) -> Result<(), serde_json::Error> {
    let r = record.clone();
    match kind {
        Kind::Request => serde_json::from_value::<RequestRecord>(r).map(drop),
        Kind::HostMetrics => serde_json::from_value::<HostMetricsRecord>(r).map(drop),
        Kind::PgActivity => serde_json::from_value::<PgActivityRecord>(r).map(drop),
        Kind::PgStatements => serde_json::from_value::<PgStatementsRecord>(r).map(drop),
        Kind::PgLog => serde_json::from_value::<PgLogRecord>(r).map(drop),
    }
}

#[test]
fn every_fixture_record_validates_and_reads_into_its_type() {
    let mut seen = std::collections::BTreeSet::new();
    let dir = fixtures().join("records");
    for entry in std::fs::read_dir(&dir).expect("fixtures/records") {
        let path = entry.expect("dir entry").path();
        let record = read_json(&path);
        let kind = validate(&record).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        read_typed(kind, &record).unwrap_or_else(|e| panic!("{}: typed read: {e}", path.display()));
        seen.insert(kind);
    }
    assert_eq!(
        seen.len(),
        Kind::ALL.len(),
        "a fixture for every kind, found {seen:?}"
    );
}

#[test]
fn every_spool_fixture_line_validates() {
    let mut kinds = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(fixtures().join("spool")).expect("fixtures/spool") {
        let path = entry.expect("dir entry").path();
        let text = std::fs::read(&path).expect("spool fixture");
        assert!(
            text.ends_with(b"\n"),
            "{}: last line has no newline",
            path.display()
        );
        for (n, line) in text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            let (kind, record) =
                validate_line(line).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), n + 1));
            read_typed(kind, &record)
                .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), n + 1));
            kinds.insert(kind);
        }
    }
    assert!(
        kinds.len() >= 3,
        "spool fixtures mix kinds, found {kinds:?}"
    );
}

#[test]
fn each_kind_schema_repeats_the_envelope_verbatim() {
    let envelope = read_json(&manifest_dir().join("envelope.schema.json"));
    for kind in Kind::ALL {
        let schema: Value = serde_json::from_str(kind.schema_text()).expect("schema JSON");
        for field in ["v", "id", "ts", "project", "host"] {
            assert_eq!(
                schema["properties"][field], envelope["properties"][field],
                "{kind}.schema.json: envelope field {field} differs from envelope.schema.json"
            );
        }
        assert_eq!(schema["properties"]["kind"]["const"], kind.as_str());
        for field in envelope["required"].as_array().expect("required") {
            assert!(
                schema["required"]
                    .as_array()
                    .expect("required")
                    .contains(field),
                "{kind}.schema.json does not require {field}"
            );
        }
    }
}

fn valid_request() -> Value {
    read_json(&fixtures().join("records/request-full.json"))
}

fn refusal(record: &Value) -> String {
    validate(record)
        .expect_err("record must be refused")
        .to_string()
}

#[test]
fn a_missing_field_is_refused_with_its_name() {
    let mut r = valid_request();
    r.as_object_mut().unwrap().remove("correlation_id");
    let msg = refusal(&r);
    assert!(
        msg.starts_with("/: ") && msg.contains("\"correlation_id\" is a required property"),
        "{msg}"
    );

    let mut r = valid_request();
    r.as_object_mut().unwrap().remove("kind");
    assert_eq!(refusal(&r), "/kind: required field is missing");
}

#[test]
fn a_wrong_type_is_refused_with_the_field_path() {
    let mut r = valid_request();
    r["sql"]["queries"][2]["duration_ms"] = json!("1402.7");
    let msg = refusal(&r);
    assert!(msg.starts_with("/sql/queries/2/duration_ms: "), "{msg}");
    assert!(msg.contains("is not of type \"number\""), "{msg}");

    let mut r = valid_request();
    r["ts"] = json!("2026-11-27 11:47:44");
    assert!(refusal(&r).starts_with("/ts: "), "{}", refusal(&r));
}

#[test]
fn an_unknown_kind_is_refused() {
    let mut r = valid_request();
    r["kind"] = json!("requests");
    assert_eq!(refusal(&r), "/kind: unknown kind \"requests\"");
    r["kind"] = json!(7);
    assert_eq!(refusal(&r), "/kind: unknown kind 7");
}

#[test]
fn an_unsupported_version_is_refused() {
    let mut r = valid_request();
    r["v"] = json!(2);
    assert_eq!(
        refusal(&r),
        "/v: unsupported schema version 2 (this build reads version 1)"
    );
}

#[test]
fn a_field_the_schema_does_not_know_is_refused() {
    // Writers add a field by changing the schema first (DESIGN.md), so an
    // unknown field is a writer bug, not something to store silently.
    let mut r = valid_request();
    r["http"]["cookies"] = json!({"sid": "x"});
    let msg = refusal(&r);
    assert!(
        msg.starts_with("/http: ") && msg.contains("cookies"),
        "{msg}"
    );
}

#[test]
fn a_record_of_another_kind_body_is_refused_by_that_kinds_schema() {
    let mut r = valid_request();
    r["kind"] = json!("pg_log");
    assert!(refusal(&r).contains("required property"), "{}", refusal(&r));
}

#[test]
fn lines_that_are_not_records_say_why() {
    assert!(matches!(
        validate_line(b"not json"),
        Err(RecordError::NotJson(_))
    ));
    assert_eq!(validate_line(b"[1,2]"), Err(RecordError::NotAnObject));
    assert_eq!(validate_line(b"{}"), Err(RecordError::MissingField("v")));
}

/// The package's folder as `cargo test` names it when the test runs: a test
/// binary reused from another clone with the same target folder would keep
/// that clone's folder in `env!`.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    )
}

/// Every number node of every schema: (schema, JSON pointer, node).
fn number_nodes() -> Vec<(String, String, Value)> {
    fn walk(schema: &str, node: &Value, at: String, out: &mut Vec<(String, String, Value)>) {
        match node {
            Value::Object(map) => {
                let types: Vec<&str> = match map.get("type") {
                    Some(Value::String(t)) => vec![t.as_str()],
                    Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
                    _ => Vec::new(),
                };
                // Free-form maps (headers, context) hold the application's
                // values as they are; they are stored as JSON, never summed.
                let numeric = types.iter().any(|t| *t == "number" || *t == "integer");
                if numeric && !types.iter().any(|t| *t == "string" || *t == "object") {
                    out.push((schema.to_owned(), at.clone(), node.clone()));
                }
                for (k, v) in map {
                    walk(schema, v, format!("{at}/{k}"), out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(schema, v, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for kind in Kind::ALL {
        let schema: Value = serde_json::from_str(kind.schema_text()).expect("schema JSON");
        walk(kind.as_str(), &schema, String::new(), &mut out);
    }
    out
}

// A schema-valid 1e300 once overflowed ingest's arithmetic (a 500 that
// wedged the shipper) and poisoned every report of its window: every number
// the contract accepts has bounds that the store holds and the analysis sums.
#[test]
fn every_number_in_every_schema_is_bounded() {
    let nodes = number_nodes();
    assert!(nodes.len() > 100, "found only {} numbers", nodes.len());
    for (schema, at, node) in nodes {
        let (Some(min), Some(max)) = (node["minimum"].as_f64(), node["maximum"].as_f64()) else {
            panic!("{schema}.schema.json{at}: a number needs a minimum and a maximum");
        };
        assert!(
            min >= -9.3e18 && max <= 9.3e18 && min < max,
            "{schema}.schema.json{at}: bounds {min}..{max}"
        );
    }
}

#[test]
fn a_number_over_its_bound_is_refused_with_the_field_path() {
    let mut r = valid_request();
    r["sql"]["queries"][0]["start_ms"] = json!(1e300);
    let msg = refusal(&r);
    assert!(
        msg.starts_with("/sql/queries/0/start_ms: ") && msg.contains("maximum"),
        "{msg}"
    );
    let mut r = valid_request();
    r["duration_ms"] = json!(1e300);
    assert!(refusal(&r).starts_with("/duration_ms: "), "{}", refusal(&r));
}
