//! One GELF 1.1 message and the rules every message must pass.
//!
//! [`Message`] can only be built valid: `version` "1.1", a `host`, a
//! non-empty `short_message`, a numeric `timestamp` in seconds with
//! decimals, a numeric syslog `level`, and additional fields whose names
//! match `^[\w\.\-]*$` after the leading underscore and are never `_id`.
//! [`check`] states the same rules for what a receiver gets, so the tests
//! hold the encoder to them from the outside.

use serde_json::{Map, Value};

/// Syslog severities GELF uses for `level`.
pub mod level {
    pub const CRITICAL: u8 = 2;
    pub const ERROR: u8 = 3;
    pub const WARNING: u8 = 4;
    pub const NOTICE: u8 = 5;
    pub const INFO: u8 = 6;
    pub const DEBUG: u8 = 7;
}

/// The field a shortened message carries, set to 1.
pub const SHORTENED_FIELD: &str = "_gelf_shortened";

/// The syslog level of a PostgreSQL severity (PANIC 0 ... DEBUG 7).
pub fn pg_severity_level(severity: Option<&str>) -> u8 {
    match severity.map(str::to_ascii_uppercase).as_deref() {
        Some("PANIC") => 0,
        Some("FATAL") => level::CRITICAL,
        Some("ERROR") => level::ERROR,
        Some("WARNING") => level::WARNING,
        Some("NOTICE") => level::NOTICE,
        Some(s) if s.starts_with("DEBUG") => level::DEBUG,
        _ => level::INFO,
    }
}

/// A GELF message under construction; fields keep their insertion order.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    fields: Map<String, Value>,
}

impl Message {
    /// A message with the mandatory fields. An empty `short_message` becomes
    /// `-`, an empty host `unknown`: Graylog refuses either empty.
    pub fn new(host: &str, short_message: &str, timestamp_micros: i64, level: u8) -> Message {
        let mut fields = Map::new();
        fields.insert("version".into(), "1.1".into());
        fields.insert("host".into(), non_empty(host, "unknown").into());
        fields.insert(
            "short_message".into(),
            non_empty(short_message.trim(), "-").into(),
        );
        fields.insert(
            "timestamp".into(),
            Value::from(timestamp_seconds(timestamp_micros)),
        );
        fields.insert("level".into(), Value::from(level.min(7)));
        Message { fields }
    }

    /// Replaces the timestamp (microseconds since the epoch).
    pub fn timestamp(&mut self, micros: i64) -> &mut Self {
        self.fields
            .insert("timestamp".into(), Value::from(timestamp_seconds(micros)));
        self
    }

    /// Sets `full_message`; an empty text leaves it out.
    pub fn full_message(&mut self, text: String) -> &mut Self {
        if !text.is_empty() {
            self.fields.insert("full_message".into(), text.into());
        }
        self
    }

    /// Adds an additional field. The name gets its leading underscore here,
    /// characters outside `[\w.-]` become `_`, and `id` becomes `record_id`
    /// (`_id` is reserved). Nulls are left out; booleans become 0 or 1 and
    /// arrays or objects their JSON text, since Graylog takes only strings and numbers.
    pub fn field(&mut self, name: &str, value: impl Into<Value>) -> &mut Self {
        let value = match value.into() {
            Value::Null => return self,
            Value::Bool(b) => Value::from(u8::from(b)),
            v @ (Value::Array(_) | Value::Object(_)) => Value::String(v.to_string()),
            Value::String(s) if s.is_empty() => return self,
            v => v,
        };
        self.fields.insert(field_name(name), value);
        self
    }

    /// Adds a field when `value` is `Some`.
    pub fn opt_field<V: Into<Value>>(&mut self, name: &str, value: Option<V>) -> &mut Self {
        if let Some(v) = value {
            self.field(name, v);
        }
        self
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.get(name)
    }

    /// The JSON text, as sent over every transport.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.fields).unwrap_or_default()
    }

    /// Cuts the message so that `fits(json)` holds: `full_message` first,
    /// then the longest string fields, `short_message` last, and marks it
    /// with [`SHORTENED_FIELD`]. Each field is cut to the longest prefix that
    /// fits (a binary search), so as much as possible survives. Returns the
    /// JSON that fits, or `None` when even the bare mandatory fields do not.
    pub fn shorten(&self, fits: &mut dyn FnMut(&[u8]) -> bool) -> Option<Vec<u8>> {
        let mut m = self.clone();
        m.fields.insert(SHORTENED_FIELD.into(), Value::from(1));
        loop {
            let json = m.to_json();
            if fits(&json) {
                return Some(json);
            }
            let victim = if m.fields.contains_key("full_message") {
                "full_message".to_owned()
            } else {
                let longest = m
                    .fields
                    .iter()
                    .filter(|(k, _)| k.starts_with('_') || *k == "short_message")
                    .filter_map(|(k, v)| v.as_str().map(|s| (s.len(), k.clone())))
                    .filter(|(len, _)| *len > 16)
                    .max();
                longest?.1
            };
            let Some(Value::String(text)) = m.fields.get(&victim).cloned() else {
                return None;
            };
            // short_message must stay non-empty: its floor is a 16-byte stub.
            let floor = if victim == "short_message" {
                floor_char_boundary(&text, 16)
            } else {
                0
            };
            let with = |m: &mut Message, keep: usize| {
                if keep == 0 {
                    m.fields.remove(&victim);
                } else {
                    let cut = floor_char_boundary(&text, keep);
                    m.fields
                        .insert(victim.clone(), format!("{}…", &text[..cut]).into());
                }
            };
            with(&mut m, floor);
            if !fits(&m.to_json()) {
                if floor > 0 {
                    return None;
                }
                continue;
            }
            // The largest prefix that fits, between `floor` (fits) and the whole (does not).
            let (mut lo, mut hi) = (floor, text.len());
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                with(&mut m, mid);
                if fits(&m.to_json()) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            with(&mut m, lo);
        }
    }
}

fn non_empty<'a>(s: &'a str, fallback: &'a str) -> &'a str {
    if s.is_empty() { fallback } else { s }
}

/// Seconds since the epoch with microseconds; serde_json writes an `f64`
/// with a decimal point even when the fraction is zero (`1.0`).
fn timestamp_seconds(micros: i64) -> f64 {
    micros.div_euclid(1_000_000) as f64 + micros.rem_euclid(1_000_000) as f64 / 1e6
}

fn field_name(name: &str) -> String {
    let bare = name.strip_prefix('_').unwrap_or(name);
    let mut out = String::with_capacity(bare.len() + 1);
    out.push('_');
    for c in bare.chars() {
        out.push(if c.is_alphanumeric() || c == '_' || c == '.' || c == '-' {
            c
        } else {
            '_'
        });
    }
    if out == "_id" {
        "_record_id".to_owned()
    } else {
        out
    }
}

/// The largest index at most `i` that is a char boundary of `s`.
pub(crate) fn floor_char_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Checks a received message against the GELF 1.1 rules this project
/// keeps; the error names the field and what is wrong.
///
/// # Errors
/// The first rule the message breaks.
pub fn check(message: &Value) -> Result<(), String> {
    let obj = message.as_object().ok_or("message is not a JSON object")?;
    match obj.get("version") {
        Some(Value::String(v)) if v == "1.1" => {}
        other => return Err(format!("version {other:?} is not \"1.1\"")),
    }
    match obj.get("host") {
        Some(Value::String(h)) if !h.is_empty() => {}
        other => return Err(format!("host {other:?} is missing or empty")),
    }
    match obj.get("short_message") {
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        other => return Err(format!("short_message {other:?} is missing or empty")),
    }
    match obj.get("timestamp") {
        Some(Value::Number(n)) if n.is_f64() => {}
        other => return Err(format!("timestamp {other:?} is not a number with decimals")),
    }
    match obj.get("level").and_then(Value::as_u64) {
        Some(l) if l <= 7 => {}
        _ => {
            return Err(format!(
                "level {:?} is not a syslog level 0..7",
                obj.get("level")
            ));
        }
    }
    if let Some(full) = obj.get("full_message")
        && !full.is_string()
    {
        return Err("full_message is not a string".to_owned());
    }
    for (name, value) in obj {
        match name.as_str() {
            "version" | "host" | "short_message" | "full_message" | "timestamp" | "level" => {
                continue;
            }
            "_id" => return Err("additional field _id is not allowed".to_owned()),
            _ => {}
        }
        let Some(bare) = name.strip_prefix('_') else {
            return Err(format!(
                "field {name:?} is neither a GELF field nor prefixed with _"
            ));
        };
        if !bare
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '-')
        {
            return Err(format!("field name {name:?} does not match ^[\\w\\.\\-]*$"));
        }
        if !(value.is_string() || value.is_number()) {
            return Err(format!("field {name} is neither a string nor a number"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_message_passes_the_rules() {
        let mut m = Message::new(
            "web-1",
            "GET /checkout 1234 ms 200",
            1_795_780_064_000_000,
            level::WARNING,
        );
        m.field("id", "x")
            .field("duration ms", 12.5)
            .field("flag", true)
            .field("null", Value::Null);
        let v: Value = serde_json::from_slice(&m.to_json()).unwrap();
        check(&v).unwrap();
        assert_eq!(v["_record_id"], "x");
        assert_eq!(v["_duration_ms"], 12.5);
        assert_eq!(v["_flag"], 1);
        assert!(v.get("_null").is_none());
        // A whole second still has its decimal point on the wire.
        assert!(
            String::from_utf8(m.to_json())
                .unwrap()
                .contains("\"timestamp\":1795780064.0")
        );
    }

    #[test]
    fn timestamps_keep_microseconds() {
        let m = Message::new("h", "s", 1_795_780_064_123_456, level::INFO);
        assert_eq!(
            m.get("timestamp").unwrap().as_f64().unwrap(),
            1_795_780_064.123_456
        );
    }

    #[test]
    fn empty_host_and_short_message_get_placeholders() {
        let v: Value = serde_json::from_slice(&Message::new("", "  ", 0, 9).to_json()).unwrap();
        check(&v).unwrap();
        assert_eq!(v["level"], 7);
    }

    #[test]
    fn check_refuses_what_graylog_refuses() {
        let good = serde_json::json!({"version": "1.1", "host": "h", "short_message": "s", "timestamp": 1.5, "level": 3});
        check(&good).unwrap();
        for (key, value, why) in [
            ("_id", serde_json::json!("x"), "_id"),
            ("_bad name", serde_json::json!("x"), "does not match"),
            ("timestamp", serde_json::json!(15), "decimals"),
            ("short_message", serde_json::json!(""), "short_message"),
            ("level", serde_json::json!("3"), "level"),
            ("_obj", serde_json::json!({"a": 1}), "neither a string"),
            ("version", serde_json::json!("1.0"), "version"),
        ] {
            let mut bad = good.clone();
            bad[key] = value;
            assert!(check(&bad).unwrap_err().contains(why), "{key}");
        }
    }

    #[test]
    fn shortening_cuts_full_message_first_and_marks() {
        let mut m = Message::new("h", "short", 0, 6);
        m.full_message("é".repeat(10_000))
            .field("url", "/x".repeat(500));
        let json = m.shorten(&mut |j| j.len() <= 3000).unwrap();
        assert!(json.len() <= 3000);
        let v: Value = serde_json::from_slice(&json).unwrap();
        check(&v).unwrap();
        assert_eq!(v[SHORTENED_FIELD], 1);
        assert_eq!(
            v["_url"],
            "/x".repeat(500),
            "other fields stay while full_message can give"
        );
        let tiny = m.shorten(&mut |j| j.len() <= 200).unwrap();
        let v: Value = serde_json::from_slice(&tiny).unwrap();
        assert!(v.get("full_message").is_none());
        assert!(
            v.get("_url")
                .and_then(Value::as_str)
                .is_none_or(|u| u.len() < 100),
            "then the longest field: {v}"
        );
        assert_eq!(v["short_message"], "short");
        assert!(m.shorten(&mut |_| false).is_none());
    }

    #[test]
    fn pg_severities_map_to_syslog() {
        assert_eq!(pg_severity_level(Some("PANIC")), 0);
        assert_eq!(pg_severity_level(Some("FATAL")), 2);
        assert_eq!(pg_severity_level(Some("error")), 3);
        assert_eq!(pg_severity_level(Some("DEBUG2")), 7);
        assert_eq!(pg_severity_level(None), 6);
    }
}
