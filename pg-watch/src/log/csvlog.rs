//! The csvlog format: one CSV record per entry, quoted fields may hold newlines.
//!
//! Columns (PostgreSQL 9.6 to 17): log_time, user_name, database_name,
//! process_id, connection_from, session_id, session_line_num, command_tag,
//! session_start_time, virtual_transaction_id, transaction_id, error_severity,
//! sql_state_code, message, detail, hint, internal_query, internal_query_pos,
//! context, query, query_pos, location, application_name, then backend_type
//! (13+), leader_pid and query_id (14+).

use std::borrow::Cow;

use super::{EntryParser, FilePosition, LogEntry, LogFormat, num, text};

/// Parses csvlog files.
#[derive(Debug, Clone, Default)]
pub struct CsvlogParser;

/// The fewest columns a csvlog record has (PostgreSQL 9.6 to 12).
const MIN_COLUMNS: usize = 23;

/// One CSV record from `buf`: its fields and the offset after its newline,
/// or `None` when the record is not complete yet.
fn next_record(buf: &[u8]) -> Option<(Vec<Cow<'_, str>>, usize)> {
    let mut fields = Vec::with_capacity(26);
    let mut i = 0;
    loop {
        if buf.get(i) == Some(&b'"') {
            // Quoted: runs to a quote not followed by another quote.
            let start = i + 1;
            let mut j = start;
            let mut has_escape = false;
            loop {
                let q = memchr::memchr(b'"', &buf[j..])? + j;
                if buf.get(q + 1) == Some(&b'"') {
                    has_escape = true;
                    j = q + 2;
                    continue;
                }
                if q + 1 >= buf.len() {
                    return None;
                }
                let raw = String::from_utf8_lossy(&buf[start..q]);
                fields.push(if has_escape {
                    Cow::Owned(raw.replace("\"\"", "\""))
                } else {
                    raw
                });
                i = q + 1;
                break;
            }
        } else {
            let end = memchr::memchr2(b',', b'\n', &buf[i..])? + i;
            fields.push(String::from_utf8_lossy(&buf[i..end]));
            i = end;
        }
        match buf.get(i) {
            Some(b',') => i += 1,
            Some(b'\n') => return Some((fields, i + 1)),
            Some(b'\r') if buf.get(i + 1) == Some(&b'\n') => return Some((fields, i + 2)),
            Some(_) => {
                // Text after a closing quote: not CSV. Skip to the line end.
                let end = memchr::memchr(b'\n', &buf[i..])? + i;
                fields.clear();
                return Some((fields, end + 1));
            }
            None => return None,
        }
    }
}

impl EntryParser for CsvlogParser {
    fn format(&self) -> LogFormat {
        LogFormat::Csvlog
    }

    fn parse<'a>(
        &self,
        buf: &'a [u8],
        base: FilePosition,
        _complete: bool,
        emit: &mut dyn FnMut(LogEntry<'a>),
    ) -> usize {
        let mut pos = 0;
        while pos < buf.len() {
            let Some((mut f, len)) = next_record(&buf[pos..]) else {
                break;
            };
            let offset = base + pos as u64;
            if f.len() < MIN_COLUMNS {
                let raw = match String::from_utf8_lossy(&buf[pos..pos + len]) {
                    Cow::Borrowed(r) => Cow::Borrowed(r.trim_end_matches(['\n', '\r'])),
                    Cow::Owned(r) => Cow::Owned(r.trim_end_matches(['\n', '\r']).to_owned()),
                };
                emit(LogEntry::unparsed(offset, raw));
            } else {
                // Each column is moved out once; the record's fields are not needed after.
                let mut col = |i: usize| text(f.get_mut(i).map(std::mem::take));
                let log_time = col(0);
                let user = col(1);
                let database = col(2);
                let pid = num(col(3).as_deref());
                let client = col(4);
                let session_id = col(5);
                let session_line = num(col(6).as_deref());
                let severity = col(11);
                let sqlstate = col(12);
                let message = col(13).unwrap_or_default();
                let detail = col(14);
                let hint = col(15);
                let internal_query = col(16);
                let context = col(18);
                let statement = col(19);
                let application_name = col(22);
                let backend_type = col(23);
                let query_id = num(col(25).as_deref());
                emit(LogEntry {
                    offset,
                    log_time,
                    user,
                    database,
                    pid,
                    client,
                    session_id,
                    session_line,
                    severity,
                    sqlstate,
                    message,
                    detail,
                    hint,
                    internal_query,
                    context,
                    statement,
                    application_name,
                    backend_type,
                    query_id,
                });
            }
            pos += len;
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_newlines_and_escaped_quotes_make_one_entry() {
        let log = concat!(
            "2026-11-27 11:47:44.123 UTC,\"shop\",\"orders\",812,\"127.0.0.1:5000\",6565b2a0.32c,3,\"SELECT\",",
            "2026-11-27 11:40:00 UTC,3/12,0,ERROR,22012,\"division by zero\",,,,,,\"SELECT \"\"a\"\"\n, 1/0;\",8,,",
            "\"bitville:x\",\"client backend\",,0\n",
            "2026-11-27 11:47:45.000 UTC,,,90,,6565b2a0.5a,1,,2026-11-27 11:40:00 UTC,,0,LOG,00000,",
            "\"checkpoint starting: time\",,,,,,,,,\"\",\"checkpointer\",,0\n",
            "2026-11-27 11:47:46.000 UTC,,,90,,6565b2a0.5a,2,,2026-11-27 11:40:00 UTC,,0,LOG,00000,\"partial"
        );
        let mut out = Vec::new();
        let used = CsvlogParser.parse(log.as_bytes(), 0, true, &mut |e| out.push(e));
        assert_eq!(out.len(), 2, "{out:#?}");
        assert_eq!(used, log.find("2026-11-27 11:47:46").unwrap());
        assert_eq!(out[0].statement.as_deref(), Some("SELECT \"a\"\n, 1/0;"));
        assert_eq!(out[0].sqlstate.as_deref(), Some("22012"));
        assert_eq!(out[0].pid, Some(812));
        assert_eq!(out[0].application_name.as_deref(), Some("bitville:x"));
        assert_eq!(out[1].backend_type.as_deref(), Some("checkpointer"));
        assert_eq!(
            out[1].offset,
            log.find("2026-11-27 11:47:45").unwrap() as u64
        );
    }

    #[test]
    fn short_records_are_kept_raw() {
        let mut out = Vec::new();
        CsvlogParser.parse(b"not,a,log\n", 0, true, &mut |e| out.push(e));
        assert!(out[0].is_unparsed());
        assert_eq!(out[0].message, "not,a,log");
    }
}
