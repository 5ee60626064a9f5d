//! The stderr log format: `log_line_prefix`, severity, message, with
//! multi-line entries joined.
//!
//! PostgreSQL writes a message's own newlines as a newline and a tab, and its
//! DETAIL, HINT, CONTEXT, STATEMENT and QUERY parts as further prefixed lines
//! right after it (the logging collector reassembles each process's message
//! before writing, so they are never interleaved with another process's).

use std::borrow::Cow;

use super::prefix::{PrefixParser, PrefixedLine};
use super::{EntryParser, FilePosition, LogEntry, LogFormat, num, text};

/// Parses stderr-format logs written with one `log_line_prefix`.
#[derive(Debug, Clone)]
pub struct StderrParser {
    prefix: PrefixParser,
}

/// Which part of the pending entry a continuation line extends.
#[derive(Debug, Clone, Copy)]
enum Part {
    Message,
    Detail,
    Hint,
    Context,
    Statement,
    Query,
    /// LOCATION lines (`log_error_verbosity = verbose`) are not kept.
    Ignored,
}

impl StderrParser {
    pub fn new(prefix: PrefixParser) -> Self {
        StderrParser { prefix }
    }

    fn start_entry(offset: FilePosition, line: &PrefixedLine<'_>) -> LogEntry {
        let f = &line.fields;
        LogEntry {
            offset,
            log_time: text(f.time).or_else(|| text(f.epoch)),
            pid: num(f.pid),
            session_id: text(f.session_id),
            session_line: num(f.session_line),
            user: text(f.user),
            database: text(f.database),
            application_name: text(f.application_name),
            client: text(f.client),
            backend_type: text(f.backend_type),
            query_id: num(f.query_id),
            sqlstate: text(f.sqlstate),
            severity: Some(line.severity.to_owned()),
            message: line.message.to_owned(),
            ..LogEntry::default()
        }
    }
}

fn attach_part(severity: &str) -> Option<Part> {
    Some(match severity {
        "DETAIL" => Part::Detail,
        "HINT" => Part::Hint,
        "CONTEXT" => Part::Context,
        "STATEMENT" => Part::Statement,
        "QUERY" => Part::Query,
        "LOCATION" => Part::Ignored,
        _ => return None,
    })
}

fn part_mut(entry: &mut LogEntry, part: Part) -> Option<&mut String> {
    match part {
        Part::Message => Some(&mut entry.message),
        Part::Detail => Some(entry.detail.get_or_insert_with(String::new)),
        Part::Hint => Some(entry.hint.get_or_insert_with(String::new)),
        Part::Context => Some(entry.context.get_or_insert_with(String::new)),
        Part::Statement => Some(entry.statement.get_or_insert_with(String::new)),
        Part::Query => Some(entry.internal_query.get_or_insert_with(String::new)),
        Part::Ignored => None,
    }
}

impl EntryParser for StderrParser {
    fn format(&self) -> LogFormat {
        LogFormat::Stderr
    }

    fn parse(&self, buf: &[u8], base: FilePosition, complete: bool, out: &mut Vec<LogEntry>) -> usize {
        let mut pos = 0usize;
        // The entry still open for continuation lines is always the last one
        // in `out` (built in place, never moved): its index, the part that
        // continuation lines extend, and its start in `buf`.
        let mut pending: Option<(usize, Part, usize)> = None;
        // UTF-8 is checked once over the buffer rather than line by line:
        // bytes before `valid_to` are known valid; a line past it goes the
        // lossy way and the check resumes after it.
        let mut valid_to = utf8_valid_up_to(buf);
        while let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) {
            let next = pos + nl + 1;
            let mut raw = &buf[pos..pos + nl];
            if raw.last() == Some(&b'\r') {
                raw = &raw[..raw.len() - 1];
            }
            let line: Cow<'_, str> = if pos + nl <= valid_to {
                // SAFETY: `buf[..valid_to]` was checked to be UTF-8, and a
                // line split at an ASCII newline (or carriage return) keeps
                // character boundaries.
                Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(raw) })
            } else {
                if next > valid_to {
                    valid_to = next + utf8_valid_up_to(&buf[next..]);
                }
                String::from_utf8_lossy(raw)
            };
            if line.is_empty() {
                pos = next;
                continue;
            }
            if let (Some(rest), Some((idx, part, _))) = (line.strip_prefix('\t'), pending) {
                if let Some(s) = part_mut(&mut out[idx], part) {
                    s.push('\n');
                    s.push_str(rest);
                }
                pos = next;
                continue;
            }
            match self.prefix.parse(&line) {
                Some(parsed) => {
                    let attach = attach_part(parsed.severity).filter(|_| {
                        pending.is_some_and(|(idx, _, _)| {
                            let e = &out[idx];
                            e.pid.is_none() || num::<u32>(parsed.fields.pid).is_none_or(|p| Some(p) == e.pid)
                        })
                    });
                    match (attach, pending.as_mut()) {
                        (Some(part), Some((idx, last, _))) => {
                            if let Some(s) = part_mut(&mut out[*idx], part) {
                                if !s.is_empty() {
                                    s.push('\n');
                                }
                                s.push_str(parsed.message);
                            }
                            *last = part;
                        }
                        _ => {
                            out.push(Self::start_entry(base + pos as u64, &parsed));
                            pending = Some((out.len() - 1, Part::Message, pos));
                        }
                    }
                }
                None => {
                    pending = None;
                    out.push(LogEntry::unparsed(base + pos as u64, &line));
                }
            }
            pos = next;
        }
        match pending {
            Some(_) if complete => pos,
            Some((idx, _, start)) => {
                out.truncate(idx);
                start
            }
            None => pos,
        }
    }
}

/// How many leading bytes of `bytes` are valid UTF-8.
fn utf8_valid_up_to(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) => e.valid_up_to(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> StderrParser {
        StderrParser::new(PrefixParser::compile("%m [%p] %q%u@%d %a ").unwrap())
    }

    const LOG: &str = "\
2026-11-27 11:47:44.123 UTC [812] shop@orders bitville:3f1e LOG:  duration: 1001.2 ms  execute <unnamed>: SELECT *
\tFROM t WHERE id = $1
2026-11-27 11:47:44.123 UTC [812] shop@orders bitville:3f1e DETAIL:  parameters: $1 = '7'
2026-11-27 11:47:45.000 UTC [90] LOG:  checkpoint starting: time
garbage from an extension
2026-11-27 11:47:46.000 UTC [812] shop@orders psql ERROR:  division by zero
2026-11-27 11:47:46.000 UTC [812] shop@orders psql STATEMENT:  SELECT 1/0;
";

    #[test]
    fn joins_continuations_and_detail_and_keeps_foreign_lines_raw() {
        let mut out = Vec::new();
        let used = parser().parse(LOG.as_bytes(), 100, true, &mut out);
        assert_eq!(used, LOG.len());
        assert_eq!(out.len(), 4, "{out:#?}");
        assert_eq!(out[0].message, "duration: 1001.2 ms  execute <unnamed>: SELECT *\nFROM t WHERE id = $1");
        assert_eq!(out[0].detail.as_deref(), Some("parameters: $1 = '7'"));
        assert_eq!(out[0].application_name.as_deref(), Some("bitville:3f1e"));
        assert_eq!(out[0].offset, 100);
        assert_eq!(out[1].pid, Some(90));
        assert_eq!(out[1].user, None);
        assert!(out[2].is_unparsed());
        assert_eq!(out[2].message, "garbage from an extension");
        assert_eq!(out[3].statement.as_deref(), Some("SELECT 1/0;"));
    }

    #[test]
    fn the_last_entry_waits_until_the_buffer_is_complete() {
        let mut out = Vec::new();
        let used = parser().parse(LOG.as_bytes(), 0, false, &mut out);
        assert_eq!(out.len(), 3);
        let last_start = LOG.find("2026-11-27 11:47:46.000").unwrap();
        assert_eq!(used, last_start);
        // A partial line is never consumed.
        let mut out = Vec::new();
        let partial = &LOG.as_bytes()[..20];
        assert_eq!(parser().parse(partial, 0, true, &mut out), 0);
        assert!(out.is_empty());
    }
}
