//! [`EnvelopeCheck`]: is a line a JSON object with a valid record envelope?
//!
//! **Architecture invariant:** the shipper reads the envelope only. The body
//! is parsed just enough to know the line is one JSON object (serde skips the
//! other members without building them); the processor validates bodies.

use std::borrow::Cow;

use bitville_schemas::Kind;
use serde::Deserialize;

/// The envelope members, borrowed from the line where no escape forces a copy.
#[derive(Deserialize)]
struct Probe<'a> {
    v: serde_json::Number,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    ts: Cow<'a, str>,
    #[serde(borrow)]
    project: Cow<'a, str>,
    #[serde(borrow)]
    host: Cow<'a, str>,
}

/// Why a line is not a record; the text goes into the quarantine file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EnvelopeError(pub String);

/// Checks lines against `schemas/envelope.schema.json` without a schema
/// engine: a hand-written check of six members is many times faster, and the
/// shipper must keep up with every PHP worker of the host.
#[derive(Debug, Default, Clone, Copy)]
pub struct EnvelopeCheck;

impl EnvelopeCheck {
    /// Checks one line (without its newline).
    ///
    /// # Errors
    /// The line is not one JSON object, or an envelope member is missing or
    /// malformed.
    pub fn check(line: &[u8]) -> Result<(), EnvelopeError> {
        // serde skips the body without decoding its strings, so invalid
        // UTF-8 there passed, and the processor refused the line as not
        // JSON: lost instead of quarantined (found by the fuzz target).
        let text = std::str::from_utf8(line).map_err(|e| {
            EnvelopeError(format!(
                "not a JSON object with a record envelope: invalid UTF-8 at byte {}",
                e.valid_up_to()
            ))
        })?;
        let probe: Probe<'_> = serde_json::from_str(text)
            .map_err(|e| EnvelopeError(format!("not a JSON object with a record envelope: {e}")))?;
        if probe.v.as_u64() != Some(1) {
            return Err(EnvelopeError(format!("/v: {} is not 1", probe.v)));
        }
        if probe.kind.parse::<Kind>().is_err() {
            return Err(EnvelopeError(format!(
                "/kind: unknown kind {:?}",
                probe.kind
            )));
        }
        if !is_uuid_v4(&probe.id) {
            return Err(EnvelopeError(format!(
                "/id: {:?} is not a lowercase UUID v4",
                probe.id
            )));
        }
        if !is_ts(&probe.ts) {
            return Err(EnvelopeError(format!(
                "/ts: {:?} is not RFC 3339 UTC with 6 fraction digits",
                probe.ts
            )));
        }
        if !is_project(&probe.project) {
            return Err(EnvelopeError(format!(
                "/project: {:?} is not a valid project name",
                probe.project
            )));
        }
        if probe.host.is_empty() || probe.host.chars().count() > 255 {
            return Err(EnvelopeError(
                "/host: must be 1 to 255 characters".to_owned(),
            ));
        }
        if let Some(at) = unpaired_surrogate(line) {
            return Err(EnvelopeError(format!(
                "not a JSON object with a record envelope: \\u escape at byte {at} is an unpaired UTF-16 surrogate"
            )));
        }
        Ok(())
    }
}

/// The byte offset of a `\\u` escape that is half of a UTF-16 surrogate
/// pair without its other half, if any. serde skips the body's strings
/// without decoding their escapes, so such a line passed the check, and the
/// processor (which parses every string) refused it as not JSON: the line
/// was lost instead of quarantined. Found by the envelope fuzz target.
///
/// The line is already known to be JSON in its structure, so every
/// backslash starts an escape.
fn unpaired_surrogate(line: &[u8]) -> Option<usize> {
    let hex = |at: usize| {
        let digits = std::str::from_utf8(line.get(at..at + 4)?).ok()?;
        u16::from_str_radix(digits, 16).ok()
    };
    let mut i = 0;
    while let Some(found) = line.get(i..).and_then(|rest| memchr::memchr(b'\\', rest)) {
        let at = i + found;
        if line.get(at + 1) != Some(&b'u') {
            i = at + 2;
            continue;
        }
        let unit = hex(at + 2)?;
        i = at + 6;
        match unit {
            0xD800..=0xDBFF => {
                let low = (line.get(i) == Some(&b'\\') && line.get(i + 1) == Some(&b'u'))
                    .then(|| hex(i + 2))
                    .flatten();
                if !matches!(low, Some(0xDC00..=0xDFFF)) {
                    return Some(at);
                }
                i += 6;
            }
            0xDC00..=0xDFFF => return Some(at),
            _ => {}
        }
    }
    None
}

/// `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`
fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            14 => c == b'4',
            19 => matches!(c, b'8' | b'9' | b'a' | b'b'),
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

/// `^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$`
fn is_ts(s: &str) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd.ddddddZ";
    s.len() == SHAPE.len()
        && s.bytes().zip(SHAPE).all(|(c, &p)| {
            if p == b'd' {
                c.is_ascii_digit()
            } else {
                c == p
            }
        })
}

/// `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`
fn is_project(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b7e4a7c-1d2e-4f3a-9b8c-7d6e5f4a3b2c";

    // Found by the envelope fuzz target: an unpaired surrogate escape in
    // the body passed the check, and the processor refused the line as not
    // JSON, so it was lost instead of quarantined with the reason.
    #[test]
    fn a_body_with_invalid_utf8_is_not_a_record() {
        let mut line = format!(
            r#"{{"v":1,"kind":"request","id":"{ID}","ts":"2026-11-27T11:47:44.123456Z","project":"shop","host":"web-1","in_bytXs":1}}"#
        )
        .into_bytes();
        let at = line.iter().position(|&b| b == b'X').unwrap();
        line[at] = 0x92;
        assert!(serde_json::from_slice::<serde_json::Value>(&line).is_err());
        let refused = EnvelopeCheck::check(&line).unwrap_err();
        assert!(refused.0.contains("UTF-8"), "{refused}");
    }

    #[test]
    fn a_body_with_an_unpaired_surrogate_escape_is_not_a_record() {
        let with = |text: &str| {
            format!(
                r#"{{"v":1,"kind":"request","id":"{ID}","ts":"2026-11-27T11:47:44.123456Z","project":"shop","host":"web-1","s":"{text}"}}"#
            )
        };
        for (text, ok) in [
            (r"\ud83d\ude00 paired", true),
            (r"\u00e9 and \\ud800 (an escaped backslash)", true),
            (r"\ud800 alone", false),
            (r"\ude00 low first", false),
            (r"\ud83d\u0041 high then not low", false),
            (r"at the end \ud83d", false),
        ] {
            let line = with(text);
            let json_ok = serde_json::from_str::<serde_json::Value>(&line).is_ok();
            assert_eq!(json_ok, ok, "serde_json on {line}");
            assert_eq!(EnvelopeCheck::check(line.as_bytes()).is_ok(), ok, "{line}");
        }
    }

    fn line(v: &str, kind: &str, id: &str, ts: &str, project: &str, host: &str) -> String {
        format!(
            r#"{{"v":{v},"kind":"{kind}","id":"{id}","ts":"{ts}","project":"{project}","host":"{host}","body":{{"x":[1,2,{{"y":null}}]}}}}"#
        )
    }

    #[test]
    fn valid_envelopes_pass_and_return_the_id() {
        let ok = line(
            "1",
            "request",
            ID,
            "2026-11-27T11:47:44.123456Z",
            "shop",
            "web-1",
        );
        assert_eq!(EnvelopeCheck::check(ok.as_bytes()), Ok(()));
        let escaped = ok.replace("web-1", r"web\u002d1");
        assert_eq!(EnvelopeCheck::check(escaped.as_bytes()), Ok(()));
    }

    #[test]
    fn each_bad_member_is_named_in_the_reason() {
        let ts = "2026-11-27T11:47:44.123456Z";
        let cases = [
            (line("2", "request", ID, ts, "shop", "h"), "/v: 2 is not 1"),
            (
                line("1", "requests", ID, ts, "shop", "h"),
                "/kind: unknown kind \"requests\"",
            ),
            (
                line("1", "request", &ID.to_uppercase(), ts, "shop", "h"),
                "/id:",
            ),
            (
                line(
                    "1",
                    "request",
                    &ID.replace("-4f3a", "-3f3a"),
                    ts,
                    "shop",
                    "h",
                ),
                "/id:",
            ),
            (
                line("1", "request", ID, "2026-11-27T11:47:44.123Z", "shop", "h"),
                "/ts:",
            ),
            (line("1", "request", ID, ts, "-shop", "h"), "/project:"),
            (line("1", "request", ID, ts, "shop", ""), "/host:"),
        ];
        for (input, want) in cases {
            let err = EnvelopeCheck::check(input.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(want), "{input}: {err}");
        }
        for junk in [&b"[1,2]"[..], b"{\"v\":1", b"hello", b"{}", b"\xff\xfe"] {
            let err = EnvelopeCheck::check(junk).unwrap_err().to_string();
            assert!(
                err.starts_with("not a JSON object with a record envelope"),
                "{err}"
            );
        }
    }
}
