//! The jsonlog format (PostgreSQL 15+): one JSON object per line.

use std::borrow::Cow;

use serde::Deserialize;

use super::{EntryParser, FilePosition, LogEntry, LogFormat, Text};

/// Parses jsonlog files.
#[derive(Debug, Clone, Default)]
pub struct JsonlogParser;

/// The keys pg-watch reads; others (func_name, file_name, ...) are ignored.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user: Option<Cow<'a, str>>,
    #[serde(borrow)]
    dbname: Option<Cow<'a, str>>,
    pid: Option<u32>,
    #[serde(borrow)]
    remote_host: Option<Cow<'a, str>>,
    remote_port: Option<u32>,
    #[serde(borrow)]
    session_id: Option<Cow<'a, str>>,
    line_num: Option<u64>,
    #[serde(borrow)]
    error_severity: Option<Cow<'a, str>>,
    #[serde(borrow)]
    state_code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    detail: Option<Cow<'a, str>>,
    #[serde(borrow)]
    hint: Option<Cow<'a, str>>,
    #[serde(borrow)]
    internal_query: Option<Cow<'a, str>>,
    #[serde(borrow)]
    context: Option<Cow<'a, str>>,
    #[serde(borrow)]
    statement: Option<Cow<'a, str>>,
    #[serde(borrow)]
    application_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    backend_type: Option<Cow<'a, str>>,
    query_id: Option<i64>,
}

fn own<'a>(v: Option<Cow<'a, str>>) -> Option<Text<'a>> {
    v.filter(|s| !s.is_empty())
}

impl EntryParser for JsonlogParser {
    fn format(&self) -> LogFormat {
        LogFormat::Jsonlog
    }

    fn parse<'a>(
        &self,
        buf: &'a [u8],
        base: FilePosition,
        _complete: bool,
        emit: &mut dyn FnMut(LogEntry<'a>),
    ) -> usize {
        let mut pos = 0;
        while let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) {
            let raw = &buf[pos..pos + nl];
            let offset = base + pos as u64;
            pos += nl + 1;
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Line<'_>>(raw) {
                Ok(l) if l.error_severity.is_some() => {
                    let client = match (l.remote_host, l.remote_port) {
                        (Some(h), Some(p)) => Some(Cow::Owned(format!("{h}({p})"))),
                        (h, _) => own(h),
                    };
                    emit(LogEntry {
                        offset,
                        log_time: own(l.timestamp),
                        pid: l.pid,
                        session_id: own(l.session_id),
                        session_line: l.line_num,
                        user: own(l.user),
                        database: own(l.dbname),
                        application_name: own(l.application_name),
                        client,
                        backend_type: own(l.backend_type),
                        query_id: l.query_id,
                        sqlstate: own(l.state_code),
                        severity: own(l.error_severity),
                        message: l.message.unwrap_or_default(),
                        detail: own(l.detail),
                        hint: own(l.hint),
                        context: own(l.context),
                        statement: own(l.statement),
                        internal_query: own(l.internal_query),
                    });
                }
                _ => emit(LogEntry::unparsed(offset, String::from_utf8_lossy(raw))),
            }
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_and_keeps_bad_ones_raw() {
        let log = concat!(
            r#"{"timestamp":"2026-11-27 11:47:44.123 UTC","user":"shop","dbname":"orders","pid":812,"remote_host":"127.0.0.1","remote_port":5000,"session_id":"6565b2a0.32c","line_num":3,"ps":"SELECT","error_severity":"ERROR","state_code":"57014","message":"canceling statement due to statement timeout","statement":"SELECT pg_sleep(1)","application_name":"psql","backend_type":"client backend","query_id":0}"#,
            "\n{broken\n",
            r#"{"timestamp":"2026-11-27 11:47:45.000 UTC","pid":9,"error_severity":"LOG","message":"partial"#
        );
        let mut out = Vec::new();
        let used = JsonlogParser.parse(log.as_bytes(), 0, true, &mut |e| out.push(e));
        assert_eq!(out.len(), 2);
        assert_eq!(used, log.rfind('\n').unwrap() + 1);
        assert_eq!(out[0].client.as_deref(), Some("127.0.0.1(5000)"));
        assert_eq!(out[0].sqlstate.as_deref(), Some("57014"));
        assert_eq!(out[0].statement.as_deref(), Some("SELECT pg_sleep(1)"));
        assert!(out[1].is_unparsed());
    }
}
