//! PostgreSQL log parsing: three formats into one entry type, then classified events.
//!
//! - [`prefix`]: `log_line_prefix` compiled into a parser.
//! - [`stderr`], [`csvlog`], [`jsonlog`]: bytes of a log file into [`LogEntry`]s,
//!   multi-line entries joined, each borrowing the read buffer and handed on
//!   as soon as it is whole.
//! - [`classify`]: a [`LogEntry`] into a pg_log event (slow statement, lock wait, ...).
//! - [`pgtime`]: PostgreSQL's printed timestamps into record timestamps.
//!
//! The parsers are stateless over a byte buffer: they report how many bytes
//! they consumed, and an entry that may still grow (a stderr message whose
//! DETAIL lines have not arrived yet) is left unconsumed until the caller says
//! the buffer is complete. The tailer's checkpoint is therefore always the
//! start of an entry, and a restart re-reads at most that entry.

pub mod classify;
pub mod csvlog;
pub mod jsonlog;
pub mod pgtime;
pub mod prefix;
pub mod stderr;

use std::borrow::Cow;

pub use bitville_schemas::records::LogFormat;

/// Byte offset in a log file.
pub type FilePosition = u64;

/// A piece of log text: borrowed from the read buffer when it is one
/// stretch of it, owned only when it had to be joined (continuation lines),
/// unescaped (csv, json) or repaired (invalid UTF-8).
pub type Text<'a> = Cow<'a, str>;

/// One log entry, multi-line parts joined, before classification.
///
/// It borrows the tailer's read buffer: parsing allocates only for text that
/// is not one stretch of the file, and the owned strings of a record are made
/// once, when the entry becomes one (see [`crate::logs::to_record`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogEntry<'a> {
    /// Offset of the entry's first byte in its file.
    pub offset: FilePosition,
    /// The timestamp as PostgreSQL printed it (`%m`, `%t`, `%n` or the csv/json field).
    pub log_time: Option<Text<'a>>,
    pub pid: Option<u32>,
    pub session_id: Option<Text<'a>>,
    pub session_line: Option<u64>,
    pub user: Option<Text<'a>>,
    pub database: Option<Text<'a>>,
    pub application_name: Option<Text<'a>>,
    pub client: Option<Text<'a>>,
    pub backend_type: Option<Text<'a>>,
    pub query_id: Option<i64>,
    pub sqlstate: Option<Text<'a>>,
    /// `None` for a line that could not be parsed; `message` then holds it raw.
    pub severity: Option<Text<'a>>,
    pub message: Text<'a>,
    pub detail: Option<Text<'a>>,
    pub hint: Option<Text<'a>>,
    pub context: Option<Text<'a>>,
    pub statement: Option<Text<'a>>,
    pub internal_query: Option<Text<'a>>,
}

impl<'a> LogEntry<'a> {
    /// An entry for text that could not be parsed, kept raw.
    pub fn unparsed(offset: FilePosition, text: impl Into<Text<'a>>) -> Self {
        LogEntry {
            offset,
            message: text.into(),
            ..LogEntry::default()
        }
    }

    pub fn is_unparsed(&self) -> bool {
        self.severity.is_none()
    }
}

/// Parses one format's bytes into entries.
pub trait EntryParser: Send {
    fn format(&self) -> LogFormat;

    /// Parses `buf`, whose first byte is at `base` in the file, handing each
    /// entry to `emit` as soon as it is whole (entries are streamed rather
    /// than collected: a poll reads up to 8 MiB, tens of thousands of entries).
    /// Returns how many bytes were consumed: whole entries only. With
    /// `complete`, the last entry is final (the file was rotated away from or
    /// stayed idle), otherwise it is left for the next call when more lines
    /// may still belong to it; every byte before the returned count belongs
    /// to an emitted entry or to blank lines.
    fn parse<'a>(
        &self,
        buf: &'a [u8],
        base: FilePosition,
        complete: bool,
        emit: &mut dyn FnMut(LogEntry<'a>),
    ) -> usize;
}

/// Parses an optional number, treating an empty or bad value as absent.
pub(crate) fn num<T: std::str::FromStr>(value: Option<&str>) -> Option<T> {
    value.filter(|v| !v.is_empty()).and_then(|v| v.parse().ok())
}

/// An optional text, empty values treated as absent.
pub(crate) fn text<'a>(value: Option<Text<'a>>) -> Option<Text<'a>> {
    value.filter(|v| !v.is_empty())
}
