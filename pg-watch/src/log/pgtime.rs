//! PostgreSQL's printed log timestamps into microseconds and record timestamps.
//!
//! The log prints `2026-11-27 11:47:44.123 UTC` in `log_timezone`. Numeric
//! offsets and UTC/GMT are understood; a zone abbreviation such as `CET` is
//! ambiguous without the server's timezone tables, so such a time is kept as
//! printed and the record's `ts` falls back to the time it was read (the
//! README asks for `log_timezone = 'UTC'`).

use std::cell::Cell;

use bitville_schemas::{Micros, format_micros};

/// Parses `YYYY-MM-DD HH:MM:SS[.frac] ZONE` (or `T` between date and time).
pub fn parse_pg_time(text: &str) -> Option<Micros> {
    let b = text.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b' ' || b[10] == b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| -> Option<i64> {
        let field = text.get(r)?;
        match ascii_digits(field.as_bytes()) {
            Some(v) => Some(v),
            // A sign or another oddity: whatever `parse` makes of it, as before.
            None => field.parse().ok(),
        }
    };
    let (year, month, day) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hour, minute, second) = (n(11..13)?, n(14..16)?, n(17..19)?);
    let mut i = 19;
    let mut micros = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        // The first six digits, zero-padded on the right: microseconds.
        for k in 0..6 {
            let d = if start + k < i { b[start + k] } else { b'0' };
            micros = micros * 10 + i64::from(d - b'0');
        }
    }
    let zone = text[i..].trim();
    let offset_s = zone_offset_seconds(zone)?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    Some(secs * 1_000_000 + micros)
}

/// `%n`: seconds since the epoch with milliseconds.
pub fn parse_epoch(text: &str) -> Option<Micros> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, "0"));
    let secs: i64 = secs.parse().ok()?;
    let mut padded = [b'0'; 6];
    for (k, d) in frac.bytes().take(6).enumerate() {
        padded[k] = d;
    }
    let micros: i64 = std::str::from_utf8(&padded).ok()?.parse().ok()?;
    Some(secs * 1_000_000 + micros)
}

/// A log time as a record timestamp, when its zone is understood.
pub fn to_record_ts(text: &str) -> Option<String> {
    parse_pg_time(text)
        .or_else(|| parse_epoch(text))
        .map(format_record_ts)
}

/// The last second converted on this thread: the printed time without its
/// fraction (date, time and zone) and the record timestamp's text up to the
/// fraction.
#[derive(Clone, Copy)]
struct LastSecond {
    key: [u8; LAST_KEY_MAX],
    key_len: usize,
    prefix: [u8; 19],
}

const LAST_KEY_MAX: usize = 40;

thread_local! {
    static LAST_SECOND: Cell<Option<LastSecond>> = const { Cell::new(None) };
}

/// [`to_record_ts`] of a `%m`/`%t` time, appended to `out`; `false` (and
/// `out` untouched) when the text is no such time or its zone is not
/// understood. A busy server logs thousands of lines a second, so the
/// conversion of the last second seen is kept: a line of the same second
/// only copies its fraction.
pub fn write_pg_time(text: &str, out: &mut String) -> bool {
    let b = text.as_bytes();
    if b.len() < 19 {
        return false;
    }
    let mut end = 19;
    if b.get(19) == Some(&b'.') {
        end = 20;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
    }
    let key_len = 19 + (b.len() - end);
    let same_key = |k: &LastSecond| {
        k.key_len == key_len && k.key[..19] == b[..19] && k.key[19..key_len] == b[end..]
    };
    if let Some(last) = LAST_SECOND.get().filter(same_key) {
        let mut frac = *b"000000";
        let digits = &b[(20).min(end)..end];
        let n = digits.len().min(6);
        frac[..n].copy_from_slice(&digits[..n]);
        // Only ASCII digits and separators: copied from a checked text and the digit run above.
        out.push_str(std::str::from_utf8(&last.prefix).unwrap_or_default());
        out.push('.');
        out.push_str(std::str::from_utf8(&frac).unwrap_or_default());
        out.push('Z');
        return true;
    }
    let Some(micros) = parse_pg_time(text) else {
        return false;
    };
    let start = out.len();
    write_record_ts(micros, out);
    if micros >= 0 && key_len <= LAST_KEY_MAX && out.len() - start == 27 {
        let mut last = LastSecond {
            key: [0; LAST_KEY_MAX],
            key_len,
            prefix: [0; 19],
        };
        last.key[..19].copy_from_slice(&b[..19]);
        last.key[19..key_len].copy_from_slice(&b[end..]);
        last.prefix
            .copy_from_slice(&out.as_bytes()[start..start + 19]);
        LAST_SECOND.set(Some(last));
    }
    true
}

/// Formats microseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ`,
/// the same text as `bitville_schemas::format_micros`, without going through
/// a calendar library: this runs once per log line.
pub fn format_record_ts(micros: Micros) -> String {
    let mut out = String::new();
    write_record_ts(micros, &mut out);
    out
}

/// [`format_record_ts`] appended to `out`, whose buffer may be reused.
pub fn write_record_ts(micros: Micros, out: &mut String) {
    if micros < 0 {
        out.push_str(&format_micros(micros));
        return;
    }
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000) as u32;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    let (y, m, d) = civil_from_days(days);
    let mut buf = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y as u32);
    put(5, 2, m);
    put(8, 2, d);
    put(11, 2, sod / 3600);
    put(14, 2, sod / 60 % 60);
    put(17, 2, sod % 60);
    put(20, 6, frac);
    // Only ASCII digits and separators were written.
    out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
}

/// A run of 1 to 18 ASCII digits as a number; `None` for anything else.
fn ascii_digits(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > 18 {
        return None;
    }
    let mut v = 0i64;
    for &c in bytes {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn zone_offset_seconds(zone: &str) -> Option<i64> {
    match zone {
        "" | "UTC" | "GMT" | "Z" | "UCT" | "Etc/UTC" => return Some(0),
        _ => {}
    }
    let (sign, rest) = match zone.as_bytes().first()? {
        b'+' => (1, &zone[1..]),
        b'-' => (-1, &zone[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|d| d.is_ascii_digit()) {
        return None;
    }
    let (h, m) = if digits.len() <= 2 {
        (digits.as_str(), "0")
    } else {
        digits.split_at(2)
    };
    Some(sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_and_offsets_agree() {
        let utc = parse_pg_time("2026-11-27 11:47:44.123 UTC").unwrap();
        assert_eq!(format_micros(utc), "2026-11-27T11:47:44.123000Z");
        assert_eq!(parse_pg_time("2026-11-27 13:47:44.123 +02"), Some(utc));
        assert_eq!(parse_pg_time("2026-11-27 06:17:44.123 -05:30"), Some(utc));
        assert_eq!(
            parse_pg_time("2026-11-27 11:47:44.123456 GMT"),
            Some(utc + 456)
        );
    }

    #[test]
    fn seconds_only_and_epoch_forms() {
        assert_eq!(
            to_record_ts("2024-02-29 23:59:59 UTC").unwrap(),
            "2024-02-29T23:59:59.000000Z"
        );
        assert_eq!(
            to_record_ts("1795788464.123").unwrap(),
            "2026-11-27T14:07:44.123000Z"
        );
    }

    #[test]
    fn the_fast_formatter_matches_the_schema_crate() {
        for micros in [
            0,
            951_782_400_000_000,
            1_795_788_464_123_456,
            4_102_444_799_999_999,
            1_709_251_199_000_001,
        ] {
            assert_eq!(format_record_ts(micros), format_micros(micros));
        }
    }

    #[test]
    fn the_last_second_kept_gives_the_same_text_as_a_full_conversion() {
        // Same second with other fractions, then the same clock text in
        // another zone, without a fraction, with a long one, and back.
        let times = [
            "2026-11-27 11:47:44.123 UTC",
            "2026-11-27 11:47:44.9 UTC",
            "2026-11-27 11:47:44.123 +02",
            "2026-11-27 11:47:44 +02",
            "2026-11-27 11:47:44.1234567 +02",
            "2026-11-27 11:47:45.000 UTC",
            "2026-11-27 11:47:44.5 UTC",
            "2026-11-27 11:47:44.5 CET",
            "2026-11-27 11:47:44.5 CET",
            "1969-12-31 23:59:59.5 UTC",
            "1969-12-31 23:59:59.25 UTC",
        ];
        for t in times {
            let mut out = String::from(">");
            let ok = write_pg_time(t, &mut out);
            assert_eq!(
                ok.then(|| out[1..].to_owned()),
                parse_pg_time(t).map(format_record_ts),
                "{t}"
            );
        }
    }

    #[test]
    fn zone_abbreviations_are_not_guessed() {
        assert_eq!(parse_pg_time("2026-11-27 11:47:44.123 CET"), None);
        assert_eq!(to_record_ts("yesterday"), None);
    }
}
