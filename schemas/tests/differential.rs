//! The fast reader and the JSON Schema agree on every line.
//!
//! `read::read_fast` decides accept or refuse with typed records and checks
//! written beside them; the schemas in this folder stay the contract. This
//! test runs both over every fixture line, generated records, and a corpus
//! of mutations of them (wrong types, missing and extra fields, numbers past
//! each bound, bad timestamps, oversize strings, invalid escapes, keys named
//! twice), and fails on the first line where they disagree.
//!
//! The reference is the JSON Schema validator (`validate_line`) plus the
//! rule that no object names a key twice: the validator reads a `Value`,
//! which keeps the last copy of a key, so it cannot see that.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;

use bitville_schemas::read::{Fast, read_fast};
use bitville_schemas::validate_line;
use proptest::prelude::*;
use serde::Deserializer;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// Every line of every NDJSON file under `fixtures/`, and each record file
/// of `fixtures/records/` as one line.
fn fixture_lines() -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    let mut dirs = vec![fixtures()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("fixtures") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "ndjson") {
                let text = std::fs::read(&path).expect("fixture");
                lines.extend(
                    text.split(|b| *b == b'\n')
                        .filter(|l| !l.trim_ascii().is_empty())
                        .map(<[u8]>::to_vec),
                );
            } else if path.extension().is_some_and(|e| e == "json")
                && path.parent().is_some_and(|p| p.ends_with("records"))
            {
                let text = std::fs::read_to_string(&path).expect("fixture");
                let v: Value = serde_json::from_str(&text).expect("fixture JSON");
                lines.push(serde_json::to_vec(&v).expect("JSON"));
            }
        }
    }
    lines
}

/// What the contract says of a line: accepted or refused.
fn contract_accepts(line: &[u8]) -> bool {
    validate_line(line).is_ok() && no_key_twice(line)
}

/// The fast reader's answer, `None` when it does not cover the line.
fn fast_accepts(line: &[u8]) -> Option<bool> {
    match read_fast(line) {
        Fast::Accepted(_) => Some(true),
        Fast::Refused(_) => Some(false),
        Fast::NotCovered => None,
    }
}

/// Panics, showing the line and both answers, where they disagree.
fn assert_agree(line: &[u8]) -> bool {
    let Some(fast) = fast_accepts(line) else {
        return false;
    };
    let contract = contract_accepts(line);
    assert_eq!(
        fast,
        contract,
        "the fast reader {} and the schema {} line\n{}\nfast: {:?}\nschema: {:?}",
        if fast { "accepts" } else { "refuses" },
        if contract { "accepts" } else { "refuses" },
        String::from_utf8_lossy(line),
        read_fast(line),
        validate_line(line).err(),
    );
    true
}

/// True when no object in the line names a key twice (or it is not JSON).
fn no_key_twice(line: &[u8]) -> bool {
    let mut de = serde_json::Deserializer::from_slice(line);
    NoKeyTwice.deserialize(&mut de).is_ok()
}

#[derive(Clone, Copy)]
struct NoKeyTwice;

impl<'de> DeserializeSeed<'de> for NoKeyTwice {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoKeyTwice {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(NoKeyTwice)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format_args!("{key} twice")));
            }
            map.next_value_seed(NoKeyTwice)?;
        }
        Ok(())
    }
}

#[test]
fn every_fixture_line_gets_the_same_answer() {
    let lines = fixture_lines();
    let covered = lines.iter().filter(|l| assert_agree(l)).count();
    assert!(covered >= 100, "only {covered} fixture lines were covered");
}

/// A pg_activity sample as pg-watch and the tests write it.
fn pg_activity() -> Value {
    json!({
        "v": 1, "kind": "pg_activity", "id": "1b4e28ba-2fa1-41d2-883f-0016d3cca427",
        "ts": "2026-11-27T11:47:44.123456Z", "project": "shop", "host": "db-1",
        "server_version_num": 160004, "sample_ms": 1.25,
        "backends": [
            {"pid": 4242, "datid": 16384, "datname": "shop", "usesysid": 10, "usename": "app",
             "application_name": "bitville:2b4e28ba-2fa1-41d2-883f-0016d3cca427",
             "client_addr": "10.0.0.5", "client_hostname": null, "client_port": 51234,
             "backend_start": "2026-11-27T11:40:00.000000Z", "xact_start": "2026-11-27 11:47:43.9+00",
             "query_start": "2026-11-27T11:47:44.000000Z", "state_change": "2026-11-27T11:47:44.000000Z",
             "wait_event_type": "Lock", "wait_event": "transactionid", "state": "active",
             "backend_xid": "1234", "backend_xmin": "1230", "query_id": -4242424242424242i64,
             "query": "UPDATE stock SET n = n - 1 WHERE id = 7", "backend_type": "client backend",
             "blocking_pids": [4243], "leader_pid": null,
             "correlation_id": "2b4e28ba-2fa1-41d2-883f-0016d3cca427"},
            {"pid": 4243, "state": "idle in transaction", "blocking_pids": null}
        ]
    })
}

/// The places a mutation can hit: every top-level field, and every field of
/// the first backend.
fn paths() -> Vec<Vec<String>> {
    let base = pg_activity();
    let mut paths: Vec<Vec<String>> = base
        .as_object()
        .expect("object")
        .keys()
        .map(|k| vec![k.clone()])
        .collect();
    for k in base["backends"][0].as_object().expect("backend").keys() {
        paths.push(vec!["backends".into(), "0".into(), k.clone()]);
    }
    paths.push(vec![
        "backends".into(),
        "0".into(),
        "blocking_pids".into(),
        "0".into(),
    ]);
    paths.push(vec!["backends".into(), "0".into()]);
    paths.push(vec!["backends".into(), "1".into(), "pid".into()]);
    paths
}

fn slot<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, key| match v {
        Value::Object(m) => m.get_mut(key),
        Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
        _ => None,
    })
}

/// Values a field may be given: each JSON type, each bound of the schemas'
/// numbers and one past it, integers written as floats, timestamps in and
/// out of shape, long strings.
fn values() -> Vec<Value> {
    let mut v: Vec<Value> = vec![
        Value::Null,
        json!(true),
        json!("x"),
        json!(""),
        json!([]),
        json!({}),
        json!([1, 2]),
        json!(["x"]),
        json!({"pid": 1}),
        json!(0),
        json!(1),
        json!(-1),
        json!(-2),
        json!(0.5),
        json!(1.0),
        json!(-0.0),
        json!(1e300),
        json!(-1e300),
        json!(65535),
        json!(65536),
        json!(2147483647),
        json!(2147483648u64),
        json!(2147483647.0),
        json!(2147483648.0),
        json!(4294967295u64),
        json!(4294967296u64),
        json!(86400000),
        json!(86400000.5),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(9.3e18),
        json!(-9.3e18),
        json!("2026-11-27T11:47:44.123456Z"),
        json!("2026-11-27T11:47:44.123Z"),
        json!("2026-11-27T11:47:44.123456+00:00"),
        json!("2026-13-27T11:47:44.123456Z"),
        json!("2026-11-27 11:47:44.123456Z"),
        json!("1b4e28ba-2fa1-41d2-883f-0016d3cca427"),
        json!("1B4E28BA-2FA1-41D2-883F-0016D3CCA427"),
        json!("1b4e28ba-2fa1-51d2-883f-0016d3cca427"),
        json!("1b4e28ba-2fa1-41d2-c83f-0016d3cca427"),
        json!("pg_activity"),
        json!("host_metrics"),
        json!("shop"),
        json!("-shop"),
        json!("shop/1"),
        json!("é"),
        json!("x".repeat(64)),
        json!("x".repeat(65)),
        json!("x".repeat(255)),
        json!("x".repeat(256)),
        json!("é".repeat(255)),
        json!("é".repeat(256)),
        json!("a\u{0}b\"\\\n"),
    ];
    v.push(json!("\u{10ffff}"));
    v
}

/// One way to break a record.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, usize),
    Remove(usize),
    AddExtra(usize),
}

fn apply(m: &Mutation) -> Vec<u8> {
    let (paths, values) = (paths(), values());
    let mut record = pg_activity();
    match m {
        Mutation::Set(p, v) => {
            if let Some(s) = slot(&mut record, &paths[*p % paths.len()]) {
                *s = values[*v % values.len()].clone();
            }
        }
        Mutation::Remove(p) => {
            let path = &paths[*p % paths.len()];
            let (last, parent) = path.split_last().expect("path");
            match slot(&mut record, parent) {
                Some(Value::Object(m)) => {
                    m.remove(last);
                }
                Some(Value::Array(a)) => {
                    if let Ok(i) = last.parse::<usize>()
                        && i < a.len()
                    {
                        a.remove(i);
                    }
                }
                _ => {}
            }
        }
        Mutation::AddExtra(p) => {
            let path = &paths[*p % paths.len()];
            let parent = &path[..path.len() - 1];
            if let Some(Value::Object(m)) = slot(&mut record, parent) {
                m.insert("extra_field".into(), json!(1));
            }
        }
    }
    serde_json::to_vec(&record).expect("JSON")
}

#[test]
fn every_single_mutation_gets_the_same_answer() {
    let (paths, values) = (paths().len(), values().len());
    let mut lines = vec![serde_json::to_vec(&pg_activity()).expect("JSON")];
    for p in 0..paths {
        lines.push(apply(&Mutation::Remove(p)));
        lines.push(apply(&Mutation::AddExtra(p)));
        for v in 0..values {
            lines.push(apply(&Mutation::Set(p, v)));
        }
    }
    let mut accepted = 0;
    let mut covered = 0;
    for line in &lines {
        // A line without `"pg_activity"` in it is the schema's alone.
        covered += usize::from(assert_agree(line));
        accepted += usize::from(contract_accepts(line));
    }
    assert!(
        covered > lines.len() * 9 / 10,
        "{covered} of {}",
        lines.len()
    );
    // The corpus has both answers in numbers.
    assert!(
        accepted > 50 && accepted < lines.len() - 50,
        "{accepted} of {}",
        lines.len()
    );
}

/// Mutations of the line's text, which a `Value` cannot hold: numbers
/// written other ways, escapes (invalid UTF-16 among them), invalid UTF-8,
/// keys named twice, truncation, and stray bytes.
#[test]
fn text_mutations_get_the_same_answer() {
    let base = String::from_utf8(serde_json::to_vec(&pg_activity()).expect("JSON")).expect("UTF-8");
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for (from, to) in [
        (r#""pid":4242"#, r#""pid":4.242e3"#),
        (r#""pid":4242"#, r#""pid":4242.0"#),
        (r#""pid":4242"#, r#""pid":4242.5"#),
        (r#""pid":4242"#, r#""pid":-0"#),
        (r#""pid":4242"#, r#""pid":1e400"#),
        (r#""pid":4242"#, r#""pid":4242,"pid":1"#),
        (r#""v":1"#, r#""v":1.0"#),
        (r#""v":1"#, r#""v":1,"v":1"#),
        (
            r#""project":"shop""#,
            r#""project":"shop","project":"blog""#,
        ),
        (r#""host":"db-1""#, r#""host":"db-\u0031""#),
        (r#""host":"db-1""#, r#""host":"\ud800""#),
        (r#""host":"db-1""#, r#""host":"\udc00x""#),
        (r#""host":"db-1""#, r#""host":"\ud83d\ude00""#),
        (r#""host":"db-1""#, r#""host":"\x""#),
        (r#""datname":"shop""#, r#""datname":"\u00e9""#),
        (r#""kind":"pg_activity""#, r#""kind":"pg_\u0061ctivity""#),
        (r#""kind":"pg_activity""#, r#""kind":"pg_activity ""#),
        (r#""ts":"2026"#, r#""ts":"\u0032026"#),
        (
            r#""state":"idle in transaction""#,
            r#""state":"idle in transaction","kind":"pg_activity""#,
        ),
        (r#""v":1}"#, r#""v":1,}"#),
        (r#""v":1}"#, r#""v":1} x"#),
        (r#""v":1}"#, r#""v":1}{}"#),
        (r#""v":1}"#, r#""v":1"#),
        (r#""v":1}"#, r#""v":1}   "#),
    ] {
        assert!(base.contains(from), "{from}");
        lines.push(base.replacen(from, to, 1).into_bytes());
    }
    let mut bad_utf8 = base.clone().into_bytes();
    let at = base.find("db-1").expect("host");
    bad_utf8[at] = 0xff;
    lines.push(bad_utf8);
    lines.push(b"[]".to_vec());
    // Another kind's line with the text `"pg_activity"` in it: the schema's.
    let host = r#"{"v":1,"kind":"host_metrics","id":"1b4e28ba-2fa1-41d2-883f-0016d3cca427","ts":"2026-11-27T11:47:44.123456Z","project":"shop","host":"pg_activity","source":"shipper","load1":1,"load5":1,"load15":1}"#;
    assert!(contract_accepts(host.as_bytes()));
    assert_eq!(fast_accepts(host.as_bytes()), None);
    lines.push(br#""pg_activity""#.to_vec());
    for line in &lines {
        assert_agree(line);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Up to four mutations at once.
    #[test]
    fn combined_mutations_get_the_same_answer(
        ms in prop::collection::vec(
            prop_oneof![
                (0usize..1000, 0usize..1000).prop_map(|(p, v)| Mutation::Set(p, v)),
                (0usize..1000).prop_map(Mutation::Remove),
                (0usize..1000).prop_map(Mutation::AddExtra),
            ],
            1..5,
        )
    ) {
        let mut record = pg_activity();
        for m in &ms {
            let one: Value = serde_json::from_slice(&apply(m)).expect("JSON");
            merge_change(&mut record, &pg_activity(), &one);
        }
        let line = serde_json::to_vec(&record).expect("JSON");
        assert_agree(&line);
    }

    /// Generated records that should be accepted: any values in range.
    #[test]
    fn generated_samples_are_accepted_by_both(
        pid in 0i64..=2_147_483_647,
        port in -1i64..=65_535,
        query_id in any::<i64>(),
        sample_ms in 0.0f64..=86_400_000.0,
        text in "\\PC{0,40}",
        host in "[a-z0-9.-]{1,255}",
    ) {
        let mut record = pg_activity();
        record["host"] = json!(host);
        record["sample_ms"] = json!(sample_ms);
        let b = &mut record["backends"][0];
        b["pid"] = json!(pid);
        b["client_port"] = json!(port);
        b["query_id"] = json!(query_id);
        b["query"] = json!(text);
        let line = serde_json::to_vec(&record).expect("JSON");
        prop_assert_eq!(fast_accepts(&line), Some(true));
        prop_assert!(contract_accepts(&line));
    }
}

/// Applies to `record` what turned `base` into `changed` (one level of
/// objects deep at a time).
fn merge_change(record: &mut Value, base: &Value, changed: &Value) {
    match (record, base, changed) {
        (Value::Object(r), Value::Object(b), Value::Object(c)) => {
            for (k, bv) in b {
                match c.get(k) {
                    None => {
                        r.remove(k);
                    }
                    Some(cv) if cv != bv => match r.get_mut(k) {
                        Some(rv) => merge_change(rv, bv, cv),
                        None => {
                            r.insert(k.clone(), cv.clone());
                        }
                    },
                    Some(_) => {}
                }
            }
            for (k, cv) in c {
                if !b.contains_key(k) {
                    r.insert(k.clone(), cv.clone());
                }
            }
        }
        (Value::Array(r), Value::Array(b), Value::Array(c))
            if b.len() == c.len() && r.len() == b.len() =>
        {
            for ((rv, bv), cv) in r.iter_mut().zip(b).zip(c) {
                if bv != cv {
                    merge_change(rv, bv, cv);
                }
            }
        }
        (r, _, c) => *r = c.clone(),
    }
}
