//! The stderr log format: `log_line_prefix`, severity, message, with
//! multi-line entries joined.
//!
//! PostgreSQL writes a message's own newlines as a newline and a tab, and its
//! DETAIL, HINT, CONTEXT, STATEMENT and QUERY parts as further prefixed lines
//! right after it (the logging collector reassembles each process's message
//! before writing, so they are never interleaved with another process's).

use std::borrow::Cow;

use super::prefix::{PrefixParser, PrefixedLine};
use super::{EntryParser, FilePosition, LogEntry, LogFormat, Text, num};

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
}

/// A new entry from its first line, borrowing the line where it can.
fn start_entry<'a>(
    offset: FilePosition,
    line: &Text<'a>,
    parsed: &PrefixedLine<'_>,
) -> LogEntry<'a> {
    let f = &parsed.fields;
    let t = |v: Option<&str>| v.filter(|v| !v.is_empty()).map(|v| within(line, v));
    LogEntry {
        offset,
        log_time: t(f.time).or_else(|| t(f.epoch)),
        pid: num(f.pid),
        session_id: t(f.session_id),
        session_line: num(f.session_line),
        user: t(f.user),
        database: t(f.database),
        application_name: t(f.application_name),
        client: t(f.client),
        backend_type: t(f.backend_type),
        query_id: num(f.query_id),
        sqlstate: t(f.sqlstate),
        severity: Some(within(line, parsed.severity)),
        message: within(line, parsed.message),
        ..LogEntry::default()
    }
}

/// `part`, a slice of `line`, as text with the line's lifetime: borrowed
/// from the buffer when the line is, else copied (a line repaired from
/// invalid UTF-8 lives only as long as the loop turn).
fn within<'a>(line: &Text<'a>, part: &str) -> Text<'a> {
    match line {
        Cow::Borrowed(l) => {
            let start = part.as_ptr() as usize - l.as_ptr() as usize;
            Cow::Borrowed(&l[start..start + part.len()])
        }
        Cow::Owned(_) => Cow::Owned(part.to_owned()),
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

/// Adds one line to a part of `entry`. A continuation line always starts a
/// new line of the part; a DETAIL (or HINT, ...) line becomes the part, or
/// joins it on a new line when the part already has text. Only a joined part
/// is copied: a part of one line stays borrowed.
fn add_line<'a>(entry: &mut LogEntry<'a>, part: Part, line: Text<'a>, continuation: bool) {
    let slot = match part {
        Part::Message => return join(&mut entry.message, line, continuation),
        Part::Detail => &mut entry.detail,
        Part::Hint => &mut entry.hint,
        Part::Context => &mut entry.context,
        Part::Statement => &mut entry.statement,
        Part::Query => &mut entry.internal_query,
        Part::Ignored => return,
    };
    match slot {
        Some(text) => join(text, line, continuation),
        None if continuation => *slot = Some(Cow::Owned(format!("\n{line}"))),
        None => *slot = Some(line),
    }
}

fn join<'a>(text: &mut Text<'a>, line: Text<'a>, continuation: bool) {
    if text.is_empty() && !continuation {
        *text = line;
        return;
    }
    let s = text.to_mut();
    s.push('\n');
    s.push_str(&line);
}

impl EntryParser for StderrParser {
    fn format(&self) -> LogFormat {
        LogFormat::Stderr
    }

    fn parse<'a>(
        &self,
        buf: &'a [u8],
        base: FilePosition,
        complete: bool,
        emit: &mut dyn FnMut(LogEntry<'a>),
    ) -> usize {
        let mut pos = 0usize;
        // The entry still open for continuation lines, the part that
        // continuation lines extend, and its start in `buf`.
        let mut pending: Option<(LogEntry<'a>, Part, usize)> = None;
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
            if raw.is_empty() {
                pos = next;
                continue;
            }
            let line: Text<'a> = if pos + nl <= valid_to {
                // SAFETY: `buf[..valid_to]` was checked to be UTF-8, and a
                // line split at an ASCII newline (or carriage return) keeps
                // character boundaries.
                Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(raw) })
            } else {
                if next > valid_to {
                    valid_to = next + utf8_valid_up_to(&buf[next..]);
                }
                Cow::Owned(String::from_utf8_lossy(raw).into_owned())
            };
            if let (Some(rest), Some((entry, part, _))) =
                (line.strip_prefix('\t'), pending.as_mut())
            {
                let rest = within(&line, rest);
                add_line(entry, *part, rest, true);
                pos = next;
                continue;
            }
            match self.prefix.parse(&line) {
                Some(parsed) => {
                    let attach = attach_part(parsed.severity).filter(|_| {
                        pending.as_ref().is_some_and(|(e, _, _)| {
                            e.pid.is_none()
                                || num::<u32>(parsed.fields.pid).is_none_or(|p| Some(p) == e.pid)
                        })
                    });
                    match (attach, pending.as_mut()) {
                        (Some(part), Some((entry, last, _))) => {
                            add_line(entry, part, within(&line, parsed.message), false);
                            *last = part;
                        }
                        _ => {
                            let entry = start_entry(base + pos as u64, &line, &parsed);
                            if let Some((done, _, _)) = pending.replace((entry, Part::Message, pos))
                            {
                                emit(done);
                            }
                        }
                    }
                }
                None => {
                    if let Some((done, _, _)) = pending.take() {
                        emit(done);
                    }
                    emit(LogEntry::unparsed(base + pos as u64, line));
                }
            }
            pos = next;
        }
        match pending {
            Some((entry, _, _)) if complete => {
                emit(entry);
                pos
            }
            Some((_, _, start)) => start,
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
        let used = parser().parse(LOG.as_bytes(), 100, true, &mut |e| out.push(e));
        assert_eq!(used, LOG.len());
        assert_eq!(out.len(), 4, "{out:#?}");
        assert_eq!(
            out[0].message,
            "duration: 1001.2 ms  execute <unnamed>: SELECT *\nFROM t WHERE id = $1"
        );
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
        let used = parser().parse(LOG.as_bytes(), 0, false, &mut |e| out.push(e));
        assert_eq!(out.len(), 3);
        let last_start = LOG.find("2026-11-27 11:47:46.000").unwrap();
        assert_eq!(used, last_start);
        // A partial line is never consumed.
        let mut out = Vec::new();
        let partial = &LOG.as_bytes()[..20];
        assert_eq!(parser().parse(partial, 0, true, &mut |e| out.push(e)), 0);
        assert!(out.is_empty());
    }
}
