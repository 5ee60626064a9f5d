//! The fast reader: one NDJSON line straight into a typed, borrowed record.
//!
//! [`crate::validate_line`] parses a line into a `serde_json::Value` tree and
//! walks it with the generic JSON Schema validator; the processor then looks
//! every field up by name again. This reader deserializes the line once into
//! a record type whose strings borrow from the line (`Cow`: borrowed unless
//! the JSON text has escapes), and checks, beside the type, what the schema
//! requires and the Rust type does not say (ranges, patterns, lengths, the
//! constants of the envelope). The schema stays the contract: the
//! differential test (`schemas/tests/differential.rs`) runs this reader and
//! the JSON Schema validator over the fixtures, generated records and a
//! corpus of mutations, and fails on any line where they disagree about
//! accept or refuse.
//!
//! A kind without a fast reader yet answers [`Fast::NotCovered`]; the caller
//! uses [`crate::validate_line`] for it. A refused line's reason is only a
//! short one (the serde error, or the check that failed): callers that reply
//! to a client ask [`crate::validate_line`] for the schema's own wording,
//! which costs nothing on the accepted path.
//!
//! **Invariant:** a key named twice in any object of a covered kind is
//! refused (serde's `duplicate field`), where the JSON Schema validator,
//! over a `Value` that kept the last copy, would not see it.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::{Kind, SCHEMA_VERSION};

/// A line that the fast reader covers, read and checked.
#[derive(Debug, Clone, PartialEq)]
pub enum FastRecord<'a> {
    PgActivity(PgActivityIn<'a>),
}

impl<'a> FastRecord<'a> {
    pub fn kind(&self) -> Kind {
        match self {
            FastRecord::PgActivity(_) => Kind::PgActivity,
        }
    }

    pub fn envelope(&self) -> &EnvelopeIn<'a> {
        match self {
            FastRecord::PgActivity(r) => &r.envelope,
        }
    }
}

/// What the fast reader made of a line.
#[derive(Debug, Clone, PartialEq)]
pub enum Fast<'a> {
    /// Read and checked: the schema accepts it.
    Accepted(FastRecord<'a>),
    /// The schema refuses it; the reason is short (see the module doc).
    Refused(String),
    /// The fast reader does not cover this line's kind (or the line names
    /// no covered kind): use [`crate::validate_line`].
    NotCovered,
}

/// Reads one line (without its newline) with the fast reader.
pub fn read_fast(line: &[u8]) -> Fast<'_> {
    // The kind picks the type. The scan is only a hint: the typed read
    // checks `kind` itself, so a line that merely contains the text is
    // refused or accepted on its own merits, never by the hint.
    if memchr::memmem::find(line, br#""pg_activity""#).is_none() {
        return Fast::NotCovered;
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return Fast::Refused("line is not valid UTF-8".to_owned());
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let read = PgActivityIn::deserialize(&mut de).and_then(|r| de.end().map(|()| r));
    match read {
        Ok(r) => match r.check() {
            Ok(()) => Fast::Accepted(FastRecord::PgActivity(r)),
            Err(reason) => Fast::Refused(reason),
        },
        // A line of another kind may hold the text too (a host named
        // "pg_activity"): only a line whose `kind` says so is refused here.
        Err(e) if kind_of(text).as_deref() == Some(Kind::PgActivity.as_str()) => {
            Fast::Refused(e.to_string())
        }
        Err(_) => Fast::NotCovered,
    }
}

/// Reads a record of a covered kind from its parsed tree, as [`read_fast`]
/// reads its line (strings borrowed from the tree): for a line that reached
/// the schema validator first. [`Fast::NotCovered`] for other kinds.
pub fn read_value(value: &serde_json::Value) -> Fast<'_> {
    match value.get("kind").and_then(serde_json::Value::as_str) {
        Some(kind) if kind == Kind::PgActivity.as_str() => match PgActivityIn::deserialize(value) {
            Ok(r) => match r.check() {
                Ok(()) => Fast::Accepted(FastRecord::PgActivity(r)),
                Err(reason) => Fast::Refused(reason),
            },
            Err(e) => Fast::Refused(e.to_string()),
        },
        _ => Fast::NotCovered,
    }
}

/// The `kind` of a line that failed the typed read, when it names one
/// clearly (once, as a string); read only on that path.
fn kind_of(text: &str) -> Option<Cow<'_, str>> {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(borrow)]
        kind: Option<Cow<'a, str>>,
    }
    serde_json::from_str::<Probe<'_>>(text).ok()?.kind
}

/// The envelope, borrowed.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvelopeIn<'a> {
    pub id: Cow<'a, str>,
    pub ts: Cow<'a, str>,
    pub project: Cow<'a, str>,
    pub host: Cow<'a, str>,
}

impl EnvelopeIn<'_> {
    /// The envelope's checks beyond types (`envelope.schema.json`).
    fn check(&self) -> Result<(), String> {
        if !is_uuid_v4(&self.id) {
            return Err(format!("/id: {:?} is not a lowercase UUID v4", self.id));
        }
        if !is_record_ts(&self.ts) {
            return Err(format!(
                "/ts: {:?} is not YYYY-MM-DDTHH:MM:SS.ffffffZ",
                self.ts
            ));
        }
        if !crate::valid_project(&self.project) {
            return Err(format!(
                "/project: {:?} is not a project name",
                self.project
            ));
        }
        check_len("/host", &self.host, 1, 255)
    }
}

/// `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`.
pub fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            14 => *c == b'4',
            19 => matches!(c, b'8' | b'9' | b'a' | b'b'),
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

/// `^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$`.
pub fn is_record_ts(s: &str) -> bool {
    const SHAPE: &[u8; 27] = b"dddd-dd-ddTdd:dd:dd.ddddddZ";
    let b = s.as_bytes();
    b.len() == SHAPE.len()
        && b.iter().zip(SHAPE).all(|(c, want)| match want {
            b'd' => c.is_ascii_digit(),
            other => c == other,
        })
}

/// A string's length in characters (as JSON Schema counts) within bounds.
fn check_len(path: &str, s: &str, min: usize, max: usize) -> Result<(), String> {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(format!(
            "{path}: is {n} characters long, outside {min} to {max}"
        ));
    }
    Ok(())
}

/// A JSON number that the schema types `integer`: JSON Schema counts any
/// number with no fraction as one (`1.0` too), so this does as well.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Int(pub i128);

impl Int {
    fn check(self, path: &str, min: i128, max: i128) -> Result<(), String> {
        if self.0 < min || self.0 > max {
            return Err(format!("{path}: {} is outside {min} to {max}", self.0));
        }
        Ok(())
    }

    /// As the store's BIGINT, saturating (the bounds keep it in range).
    pub fn as_i64(self) -> i64 {
        self.0.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Int;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(i128::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                Ok(Int(i128::from(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Int, E> {
                // Beyond 2^100 no schema bound is near; keep it out of range.
                if v.fract() != 0.0 || !v.is_finite() {
                    return Err(E::invalid_type(de::Unexpected::Float(v), &self));
                }
                Ok(Int(v.clamp(-1e30, 1e30) as i128))
            }
        }
        d.deserialize_any(V)
    }
}

/// A number that must not be null when present (`"type": "number"`).
fn some_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    f64::deserialize(d).map(Some)
}

/// The `v` constant: exactly the integer 1 (as [`crate::validate`] wants).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Version;

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u64::deserialize(d)? {
            v if v == u64::from(SCHEMA_VERSION) => Ok(Version),
            v => Err(de::Error::custom(format_args!(
                "/v: unsupported schema version {v}"
            ))),
        }
    }
}

/// The `kind` constant of one record type.
struct KindIs<const K: u8>;

impl<'de, const K: u8> Deserialize<'de> for KindIs<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let want = Kind::ALL[K as usize].as_str();
        let got = Cow::<str>::deserialize(d)?;
        if got == want {
            Ok(KindIs)
        } else {
            Err(de::Error::custom(format_args!(
                "/kind: {got:?} is not {want:?}"
            )))
        }
    }
}

const PG_ACTIVITY: u8 = 2;
const _: () = assert!(matches!(Kind::ALL[PG_ACTIVITY as usize], Kind::PgActivity));

/// A `pg_activity` record as read (`pg_activity.schema.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct PgActivityIn<'a> {
    pub envelope: EnvelopeIn<'a>,
    pub server_version_num: Int,
    pub sample_ms: Option<f64>,
    pub backends: Vec<BackendIn<'a>>,
}

/// The line's shape, field by field, as serde reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PgActivityWire<'a> {
    #[allow(dead_code)]
    v: Version,
    #[allow(dead_code)]
    kind: KindIs<PG_ACTIVITY>,
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    ts: Cow<'a, str>,
    #[serde(borrow)]
    project: Cow<'a, str>,
    #[serde(borrow)]
    host: Cow<'a, str>,
    server_version_num: Int,
    #[serde(default, deserialize_with = "some_f64")]
    sample_ms: Option<f64>,
    #[serde(borrow)]
    backends: Vec<BackendIn<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for PgActivityIn<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = PgActivityWire::deserialize(d)?;
        Ok(PgActivityIn {
            envelope: EnvelopeIn {
                id: w.id,
                ts: w.ts,
                project: w.project,
                host: w.host,
            },
            server_version_num: w.server_version_num,
            sample_ms: w.sample_ms,
            backends: w.backends,
        })
    }
}

impl PgActivityIn<'_> {
    /// The schema's checks beyond types.
    fn check(&self) -> Result<(), String> {
        self.envelope.check()?;
        self.server_version_num
            .check("/server_version_num", 0, I32_MAX)?;
        if let Some(ms) = self.sample_ms {
            check_f64("/sample_ms", ms, 0.0, 86_400_000.0)?;
        }
        for (i, b) in self.backends.iter().enumerate() {
            b.check(i)?;
        }
        Ok(())
    }
}

const I32_MAX: i128 = 2_147_483_647;
const U32_MAX: i128 = 4_294_967_295;

fn check_f64(path: &str, v: f64, min: f64, max: f64) -> Result<(), String> {
    if !(min..=max).contains(&v) {
        return Err(format!("{path}: {v} is outside {min} to {max}"));
    }
    Ok(())
}

/// One backend of a sample; absent and null are both `None`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendIn<'a> {
    #[serde(default)]
    pub datid: Option<Int>,
    #[serde(default, borrow)]
    pub datname: Option<Cow<'a, str>>,
    pub pid: Int,
    #[serde(default)]
    pub leader_pid: Option<Int>,
    #[serde(default)]
    pub usesysid: Option<Int>,
    #[serde(default, borrow)]
    pub usename: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub application_name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub client_addr: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub client_hostname: Option<Cow<'a, str>>,
    #[serde(default)]
    pub client_port: Option<Int>,
    #[serde(default, borrow)]
    pub backend_start: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub xact_start: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub query_start: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub state_change: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub wait_event_type: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub wait_event: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub state: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub backend_xid: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub backend_xmin: Option<Cow<'a, str>>,
    #[serde(default)]
    pub query_id: Option<Int>,
    #[serde(default, borrow)]
    pub query: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub backend_type: Option<Cow<'a, str>>,
    #[serde(default)]
    pub blocking_pids: Option<Vec<Int>>,
    #[serde(default, borrow)]
    pub correlation_id: Option<Cow<'a, str>>,
}

impl BackendIn<'_> {
    fn check(&self, i: usize) -> Result<(), String> {
        let path = |f: &str| format!("/backends/{i}/{f}");
        let opt = |v: Option<Int>, f: &str, min: i128, max: i128| match v {
            Some(v) => v.check(&path(f), min, max),
            None => Ok(()),
        };
        opt(self.datid, "datid", 0, U32_MAX)?;
        self.pid.check(&path("pid"), 0, I32_MAX)?;
        opt(self.leader_pid, "leader_pid", 0, I32_MAX)?;
        opt(self.usesysid, "usesysid", 0, U32_MAX)?;
        opt(self.client_port, "client_port", -1, 65_535)?;
        opt(
            self.query_id,
            "query_id",
            i128::from(i64::MIN),
            i128::from(i64::MAX),
        )?;
        for (j, p) in self.blocking_pids.iter().flatten().enumerate() {
            p.check(&path(&format!("blocking_pids/{j}")), 0, I32_MAX)?;
        }
        if let Some(c) = &self.correlation_id
            && !is_uuid_v4(c)
        {
            return Err(format!(
                "{}: {c:?} is not a lowercase UUID v4",
                path("correlation_id")
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"v":1,"kind":"pg_activity","id":"1b4e28ba-2fa1-41d2-883f-0016d3cca427","ts":"2026-11-27T11:47:44.123456Z","project":"shop","host":"db-1","server_version_num":160004,"sample_ms":1.5,"backends":[{"pid":42,"application_name":"bitville:1b4e28ba-2fa1-41d2-883f-0016d3cca427","query":"SELECT 1","blocking_pids":[7]}]}"#;

    #[test]
    fn a_sample_reads_with_its_strings_borrowed() {
        let Fast::Accepted(FastRecord::PgActivity(r)) = read_fast(LINE.as_bytes()) else {
            panic!("{:?}", read_fast(LINE.as_bytes()));
        };
        assert!(matches!(r.envelope.id, Cow::Borrowed(_)));
        assert_eq!(r.backends[0].pid, Int(42));
        assert_eq!(r.backends[0].blocking_pids, Some(vec![Int(7)]));
        assert_eq!(r.sample_ms, Some(1.5));
    }

    #[test]
    fn a_parsed_sample_reads_the_same_as_its_line() {
        let value: serde_json::Value = serde_json::from_str(LINE).unwrap();
        let Fast::Accepted(from_value) = read_value(&value) else {
            panic!("{:?}", read_value(&value));
        };
        assert_eq!(Fast::Accepted(from_value), read_fast(LINE.as_bytes()));
        let bad: serde_json::Value =
            serde_json::from_str(&LINE.replacen(r#""pid":42"#, r#""pid":-1"#, 1)).unwrap();
        assert!(matches!(read_value(&bad), Fast::Refused(_)));
        let host: serde_json::Value = serde_json::from_str(
            &LINE.replace(r#""kind":"pg_activity""#, r#""kind":"host_metrics""#),
        )
        .unwrap();
        assert_eq!(read_value(&host), Fast::NotCovered);
    }

    #[test]
    fn other_kinds_are_not_covered() {
        let line = LINE.replace("pg_activity", "host_metrics");
        assert_eq!(read_fast(line.as_bytes()), Fast::NotCovered);
        // The kind's name elsewhere in another kind's line is not a refusal.
        let line = LINE
            .replace(r#""kind":"pg_activity""#, r#""kind":"host_metrics""#)
            .replace(r#""host":"db-1""#, r#""host":"pg_activity""#);
        assert_eq!(read_fast(line.as_bytes()), Fast::NotCovered);
    }

    #[test]
    fn checks_beyond_types_refuse() {
        for (from, to) in [
            (r#""pid":42"#, r#""pid":-1"#),
            (r#""pid":42"#, r#""pid":42.5"#),
            (r#""sample_ms":1.5"#, r#""sample_ms":null"#),
            (r#"Z","project""#, r#"+00:00","project""#),
            (r#""host":"db-1""#, r#""host":"""#),
            (r#""v":1"#, r#""v":2"#),
            (r#""pid":42"#, r#""pid":42,"pid":43"#),
            (r#""pid":42"#, r#""pid":42,"extra":1"#),
        ] {
            let line = LINE.replacen(from, to, 1);
            assert!(
                matches!(read_fast(line.as_bytes()), Fast::Refused(_)),
                "{to}: {:?}",
                read_fast(line.as_bytes())
            );
        }
        let line = LINE.replacen(r#""pid":42"#, r#""pid":42.0"#, 1);
        assert!(matches!(read_fast(line.as_bytes()), Fast::Accepted(_)));
    }
}
