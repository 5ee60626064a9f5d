//! `log_line_prefix` compiled into a parser.
//!
//! PostgreSQL writes each stderr log line as the expansion of
//! `log_line_prefix`, then `SEVERITY:  message`. The prefix is a template of
//! literals and `%` escapes, so the parser is compiled once from the same
//! template: literals must match exactly, typed escapes (`%p`, `%m`, ...)
//! consume their own shape, and free-text escapes (`%a`, `%u`, ...) run to the
//! next literal, backtracking when an application name contains that literal.
//! A prefix that ends early at `%q` (processes without a session) is accepted
//! as PostgreSQL writes it.

use thiserror::Error;

/// A `log_line_prefix` that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PrefixError {
    #[error("log_line_prefix {prefix:?}: unknown escape %{escape}")]
    UnknownEscape { prefix: String, escape: char },
    #[error("log_line_prefix {prefix:?}: ends in the middle of an escape")]
    Truncated { prefix: String },
}

// A prefix compiles to a handful of tokens that every log line walks:
// keeping the searcher inline saves an indirection per literal, and the
// wasted bytes of the small variants are a few hundred per parser.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Token {
    /// A literal, with a searcher made once for free-text escapes before it.
    Literal(Vec<u8>, memchr::memmem::Finder<'static>),
    /// A `%` escape with its padding (0 when none).
    Field { escape: u8, padding: i32 },
    /// `%q`: processes without a session stop the prefix here.
    SessionOnly,
}

/// The values of one line's prefix, borrowed from the line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixFields<'a> {
    /// `%m` (with milliseconds) or `%t`.
    pub time: Option<&'a str>,
    /// `%n`: Unix epoch with milliseconds.
    pub epoch: Option<&'a str>,
    pub pid: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub session_line: Option<&'a str>,
    pub user: Option<&'a str>,
    pub database: Option<&'a str>,
    pub application_name: Option<&'a str>,
    /// `%h`, or `%r` (host and port).
    pub client: Option<&'a str>,
    pub sqlstate: Option<&'a str>,
    pub xid: Option<&'a str>,
    pub vxid: Option<&'a str>,
    pub command_tag: Option<&'a str>,
    pub session_start: Option<&'a str>,
    pub backend_type: Option<&'a str>,
    pub leader_pid: Option<&'a str>,
    pub query_id: Option<&'a str>,
}

/// A parsed line: its prefix fields, severity and the message after `:  `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixedLine<'a> {
    pub fields: PrefixFields<'a>,
    pub severity: &'a str,
    pub message: &'a str,
}

/// A compiled `log_line_prefix`.
#[derive(Debug, Clone)]
pub struct PrefixParser {
    tokens: Vec<Token>,
}

/// How far free-text backtracking may go on one line; bounds the cost of a
/// line that does not match at all.
const MAX_BACKTRACK: usize = 16;

impl PrefixParser {
    /// Compiles a `log_line_prefix` value, as in postgresql.conf.
    ///
    /// # Errors
    /// An unknown escape, or a `%` at the very end.
    pub fn compile(prefix: &str) -> Result<Self, PrefixError> {
        let bytes = prefix.as_bytes();
        let mut tokens = Vec::new();
        let mut literal = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b != b'%' {
                literal.push(b);
                i += 1;
                continue;
            }
            i += 1;
            let truncated = || PrefixError::Truncated {
                prefix: prefix.to_owned(),
            };
            let start = i;
            if i < bytes.len() && (bytes[i] == b'-' || bytes[i].is_ascii_digit()) {
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let padding: i32 = prefix[start..i].parse().unwrap_or(0);
            let escape = *bytes.get(i).ok_or_else(truncated)?;
            i += 1;
            match escape {
                b'%' => literal.push(b'%'),
                b'q' => {
                    flush_literal(&mut tokens, &mut literal);
                    tokens.push(Token::SessionOnly);
                }
                b'm' | b't' | b'n' | b'p' | b'c' | b'l' | b'u' | b'd' | b'a' | b'h' | b'r'
                | b'e' | b'x' | b'v' | b'i' | b's' | b'b' | b'P' | b'Q' => {
                    flush_literal(&mut tokens, &mut literal);
                    tokens.push(Token::Field { escape, padding });
                }
                other => {
                    return Err(PrefixError::UnknownEscape {
                        prefix: prefix.to_owned(),
                        escape: other as char,
                    });
                }
            }
        }
        flush_literal(&mut tokens, &mut literal);
        Ok(PrefixParser { tokens })
    }

    /// Whether the prefix has the escape `%<escape>` (`b'm'` for `%m`):
    /// `--check-config` asks for a time, the pid and the application name.
    pub fn has(&self, escape: u8) -> bool {
        self.tokens
            .iter()
            .any(|t| matches!(t, Token::Field { escape: e, .. } if *e == escape))
    }

    /// Parses one line (without its newline). `None` when the line does not
    /// start with this prefix followed by a severity: a continuation or a
    /// foreign line.
    pub fn parse<'a>(&self, line: &'a str) -> Option<PrefixedLine<'a>> {
        let mut fields = PrefixFields::default();
        let mut budget = MAX_BACKTRACK;
        let (severity, message) = self.parse_from(line, 0, 0, &mut fields, &mut budget)?;
        Some(PrefixedLine {
            fields,
            severity,
            message,
        })
    }

    fn parse_from<'a>(
        &self,
        line: &'a str,
        tok: usize,
        pos: usize,
        fields: &mut PrefixFields<'a>,
        budget: &mut usize,
    ) -> Option<(&'a str, &'a str)> {
        let bytes = line.as_bytes();
        let Some(token) = self.tokens.get(tok) else {
            return split_severity(&line[pos..]);
        };
        match token {
            Token::Literal(lit, _) => {
                if bytes[pos..].starts_with(lit) {
                    self.parse_from(line, tok + 1, pos + lit.len(), fields, budget)
                } else {
                    None
                }
            }
            Token::SessionOnly => {
                let saved = fields.clone();
                if let Some(end) = self.parse_from(line, tok + 1, pos, fields, budget) {
                    return Some(end);
                }
                *fields = saved;
                split_severity(&line[pos..])
            }
            Token::Field { escape, padding } => {
                let mut start = pos;
                if *padding > 0 {
                    while start < bytes.len() && bytes[start] == b' ' {
                        start += 1;
                    }
                }
                if let Some(end) = scan_typed(*escape, bytes, start) {
                    let mut next = end;
                    if *padding < 0 {
                        // Left-justified: pad spaces up to the width, no further.
                        let width_end = start + padding.unsigned_abs() as usize;
                        while next < width_end.min(bytes.len()) && bytes[next] == b' ' {
                            next += 1;
                        }
                    }
                    set_field(fields, *escape, &line[start..end]);
                    return self.parse_from(line, tok + 1, next, fields, budget);
                }
                // Free text: try each end where the next literal matches.
                let next_lit = match self.tokens.get(tok + 1) {
                    Some(Token::Literal(_, finder)) => Some(finder),
                    _ => None,
                };
                match next_lit {
                    Some(finder) => {
                        let mut from = start;
                        // A one-byte literal (`@`, a space) goes straight to
                        // memchr, without the substring searcher's dispatch.
                        let needle = finder.needle();
                        let find = |hay: &[u8]| match needle {
                            [b] => memchr::memchr(*b, hay),
                            _ => finder.find(hay),
                        };
                        while let Some(found) = find(&bytes[from..]) {
                            let end = from + found;
                            set_field(fields, *escape, trim_end_spaces(&line[start..end]));
                            if let Some(done) = self.parse_from(line, tok + 1, end, fields, budget)
                            {
                                return Some(done);
                            }
                            if *budget == 0 {
                                return None;
                            }
                            *budget -= 1;
                            from = end + 1;
                            if from > bytes.len() {
                                break;
                            }
                        }
                        None
                    }
                    None => {
                        // Followed by another escape or by the severity: a word.
                        let end = memchr::memchr(b' ', &bytes[start..])
                            .map_or(bytes.len(), |e| start + e);
                        set_field(fields, *escape, &line[start..end]);
                        self.parse_from(line, tok + 1, end, fields, budget)
                    }
                }
            }
        }
    }
}

/// `text` without trailing spaces (byte-wise: `trim_end_matches` decodes
/// characters from the end).
fn trim_end_spaces(text: &str) -> &str {
    let bytes = text.as_bytes();
    let mut end = bytes.len();
    while end > 0 && bytes[end - 1] == b' ' {
        end -= 1;
    }
    &text[..end]
}

fn flush_literal(tokens: &mut Vec<Token>, literal: &mut Vec<u8>) {
    if !literal.is_empty() {
        let lit = std::mem::take(literal);
        let finder = memchr::memmem::Finder::new(&lit).into_owned();
        tokens.push(Token::Literal(lit, finder));
    }
}

/// Splits `SEVERITY:  message`. The severity is an upper-case word (DEBUG1..5
/// included); the two spaces are PostgreSQL's.
pub fn split_severity(rest: &str) -> Option<(&str, &str)> {
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() && i < 10 && (bytes[i].is_ascii_uppercase() || bytes[i].is_ascii_digit())
    {
        i += 1;
    }
    if i < 3 || !bytes[i..].starts_with(b":  ") {
        return None;
    }
    let severity = &rest[..i];
    // The severities PostgreSQL writes (DEBUG1 to DEBUG5 below), matched
    // on the text: this runs once per line.
    let known = matches!(
        severity,
        "LOG"
            | "STATEMENT"
            | "DETAIL"
            | "ERROR"
            | "HINT"
            | "CONTEXT"
            | "WARNING"
            | "NOTICE"
            | "INFO"
            | "FATAL"
            | "PANIC"
            | "QUERY"
            | "LOCATION"
    );
    if !known && !severity.starts_with("DEBUG") {
        return None;
    }
    Some((severity, &rest[i + 3..]))
}

/// Scans a typed escape's value from `start`; `None` for free-text escapes.
fn scan_typed(escape: u8, bytes: &[u8], start: usize) -> Option<usize> {
    let run = |pred: fn(u8) -> bool| {
        let mut i = start;
        while i < bytes.len() && pred(bytes[i]) {
            i += 1;
        }
        i
    };
    match escape {
        b'm' | b't' | b's' => Some(scan_timestamp(bytes, start)),
        b'n' => Some(run(|b| b.is_ascii_digit() || b == b'.')),
        b'p' | b'l' | b'x' | b'P' => Some(run(|b| b.is_ascii_digit())),
        b'Q' => Some(run(|b| b.is_ascii_digit() || b == b'-')),
        b'c' => Some(run(|b| b.is_ascii_hexdigit() || b == b'.')),
        b'v' => Some(run(|b| b.is_ascii_digit() || b == b'/')),
        b'e' => Some(run(|b| b.is_ascii_uppercase() || b.is_ascii_digit())),
        _ => None,
    }
}

/// `2026-11-27 11:47:44[.123] TZ`: date, time, optional fraction, zone word.
/// Returns `start` (an empty value) when the text has another shape.
fn scan_timestamp(bytes: &[u8], start: usize) -> usize {
    let shape = b"0000-00-00 00:00:00";
    if bytes.len() < start + shape.len() {
        return start;
    }
    for (b, s) in bytes[start..start + shape.len()].iter().zip(shape) {
        let ok = if *s == b'0' {
            b.is_ascii_digit()
        } else {
            b == s
        };
        if !ok {
            return start;
        }
    }
    let mut i = start + shape.len();
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i < bytes.len() && bytes[i] == b' ' {
        let zone = i + 1;
        let mut j = zone;
        while j < bytes.len()
            && (bytes[j].is_ascii_alphanumeric()
                || matches!(bytes[j], b'+' | b'-' | b':' | b'/' | b'_'))
        {
            j += 1;
        }
        if j > zone {
            i = j;
        }
    }
    i
}

fn set_field<'a>(fields: &mut PrefixFields<'a>, escape: u8, value: &'a str) {
    let value = Some(value);
    match escape {
        b'm' | b't' => fields.time = value,
        b'n' => fields.epoch = value,
        b'p' => fields.pid = value,
        b'c' => fields.session_id = value,
        b'l' => fields.session_line = value,
        b'u' => fields.user = value,
        b'd' => fields.database = value,
        b'a' => fields.application_name = value,
        b'h' | b'r' => fields.client = value,
        b'e' => fields.sqlstate = value,
        b'x' => fields.xid = value,
        b'v' => fields.vxid = value,
        b'i' => fields.command_tag = value,
        b's' => fields.session_start = value,
        b'b' => fields.backend_type = value,
        b'P' => fields.leader_pid = value,
        b'Q' => fields.query_id = value,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_default_prefix_parses_time_pid_and_user_at_db() {
        let p = PrefixParser::compile("%m [%p] %q%u@%d ").unwrap();
        let l = p
            .parse("2026-11-27 11:47:44.123 UTC [812] shop@orders LOG:  duration: 1.5 ms")
            .unwrap();
        assert_eq!(l.fields.time, Some("2026-11-27 11:47:44.123 UTC"));
        assert_eq!(l.fields.pid, Some("812"));
        assert_eq!(l.fields.user, Some("shop"));
        assert_eq!(l.fields.database, Some("orders"));
        assert_eq!(l.severity, "LOG");
        assert_eq!(l.message, "duration: 1.5 ms");
    }

    #[test]
    fn q_ends_the_prefix_for_processes_without_a_session() {
        let p = PrefixParser::compile("%m [%p] %q%u@%d ").unwrap();
        let l = p
            .parse("2026-11-27 11:47:44.123 UTC [77] LOG:  checkpoint starting: time")
            .unwrap();
        assert_eq!(l.fields.pid, Some("77"));
        assert_eq!(l.fields.user, None);
        assert_eq!(l.message, "checkpoint starting: time");
    }

    #[test]
    fn application_names_with_the_separator_backtrack() {
        let p = PrefixParser::compile("%t [%p] %a: user=%u ").unwrap();
        let l = p
            .parse("2026-11-27 11:47:44 CET [9] report: daily: user=bob ERROR:  boom")
            .unwrap();
        assert_eq!(l.fields.application_name, Some("report: daily"));
        assert_eq!(l.fields.user, Some("bob"));
        assert_eq!(l.severity, "ERROR");
    }

    #[test]
    fn every_usual_escape_compiles_and_parses() {
        let prefix = "%m|%t|%n|%p|%c|%l|%u|%d|%a|%h|%r|%e|%x|%v|%i|%s|%b|%P|%Q|%%|";
        let p = PrefixParser::compile(prefix).unwrap();
        let line = "2026-11-27 11:47:44.123 UTC|2026-11-27 11:47:44 UTC|1795778864.123|812|6565b2a0.32c|7|u|d|a|127.0.0.1|127.0.0.1(5432)|40P01|0|3/12|SELECT|2026-11-27 11:40:00 UTC|client backend||-42|%|ERROR:  x";
        let l = p.parse(line).unwrap();
        assert_eq!(l.fields.session_id, Some("6565b2a0.32c"));
        assert_eq!(l.fields.session_line, Some("7"));
        assert_eq!(l.fields.client, Some("127.0.0.1(5432)"));
        assert_eq!(l.fields.sqlstate, Some("40P01"));
        assert_eq!(l.fields.vxid, Some("3/12"));
        assert_eq!(l.fields.command_tag, Some("SELECT"));
        assert_eq!(l.fields.backend_type, Some("client backend"));
        assert_eq!(l.fields.leader_pid, Some(""));
        assert_eq!(l.fields.query_id, Some("-42"));
        assert_eq!(l.message, "x");
    }

    #[test]
    fn padded_escapes_are_trimmed() {
        let p = PrefixParser::compile("%m %-8p %10u: ").unwrap();
        let line = format!(
            "2026-11-27 11:47:44.123 UTC {:<8} {:>10}: LOG:  hi",
            "81", "alice"
        );
        let l = p.parse(&line).unwrap();
        assert_eq!(l.fields.pid, Some("81"));
        assert_eq!(l.fields.user, Some("alice"));
    }

    #[test]
    fn continuation_and_foreign_lines_do_not_parse() {
        let p = PrefixParser::compile("%m [%p] ").unwrap();
        assert!(p.parse("\tFROM t").is_none());
        assert!(
            p.parse("2026-11-27 11:47:44.123 UTC [812] this is not a severity")
                .is_none()
        );
        assert!(p.parse("").is_none());
    }

    #[test]
    fn bad_prefixes_are_refused_with_the_escape_named() {
        assert_eq!(
            PrefixParser::compile("%m %y").unwrap_err().to_string(),
            "log_line_prefix \"%m %y\": unknown escape %y"
        );
        assert!(matches!(
            PrefixParser::compile("%m %"),
            Err(PrefixError::Truncated { .. })
        ));
    }
}
