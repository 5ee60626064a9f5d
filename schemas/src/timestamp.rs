//! Record timestamps: RFC 3339 in UTC with exactly six fraction digits.
//!
//! One fixed shape keeps timestamps sortable as text and cheap to parse. The
//! store and the analysis work in microseconds since the Unix epoch
//! ([`Micros`]), since the bundled DuckDB has no time zone support.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Microseconds since the Unix epoch, UTC.
pub type Micros = i64;

/// A timestamp that is not RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timestamp {input:?} is not RFC 3339: {reason}")]
pub struct TimestampError {
    pub input: String,
    pub reason: String,
}

/// Formats a time as a record timestamp, such as `2026-11-27T11:47:44.123456Z`.
pub fn format_ts(t: SystemTime) -> String {
    let micros = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    };
    format_micros(micros)
}

/// Formats microseconds since the epoch as a record timestamp.
pub fn format_micros(micros: Micros) -> String {
    let t = OffsetDateTime::UNIX_EPOCH + Duration::from_micros(micros.max(0) as u64);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Parses any RFC 3339 timestamp (record timestamps and PostgreSQL's, which
/// carry an offset) into microseconds since the epoch.
///
/// # Errors
/// The input is not RFC 3339.
pub fn parse_ts(input: &str) -> Result<Micros, TimestampError> {
    let t = OffsetDateTime::parse(input, &Rfc3339).map_err(|e| TimestampError {
        input: input.to_owned(),
        reason: e.to_string(),
    })?;
    let t = t.to_offset(UtcOffset::UTC);
    Ok((t.unix_timestamp_nanos() / 1_000) as Micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_back_to_the_microsecond() {
        let micros = 1_795_778_864_123_456;
        let text = format_micros(micros);
        assert_eq!(text, "2026-11-27T11:27:44.123456Z");
        assert_eq!(parse_ts(&text), Ok(micros));
    }

    #[test]
    fn offsets_are_converted_to_utc() {
        assert_eq!(
            parse_ts("2026-11-27T13:27:44.123456+02:00"),
            parse_ts("2026-11-27T11:27:44.123456Z")
        );
    }

    #[test]
    fn garbage_is_refused_with_the_input_named() {
        let err = parse_ts("yesterday").unwrap_err();
        assert!(
            err.to_string()
                .starts_with(r#"timestamp "yesterday" is not RFC 3339"#),
            "{err}"
        );
    }
}
