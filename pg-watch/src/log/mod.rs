//! PostgreSQL log parsing: three formats into one entry type, then classified events.
//!
//! - [`prefix`]: `log_line_prefix` compiled into a parser.
//! - [`stderr`], [`csvlog`], [`jsonlog`]: bytes of a log file into [`LogEntry`]s,
//!   multi-line entries joined.
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

pub use bitville_schemas::records::LogFormat;

/// Byte offset in a log file.
pub type FilePosition = u64;

/// One log entry, multi-line parts joined, before classification.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogEntry {
    /// Offset of the entry's first byte in its file.
    pub offset: FilePosition,
    /// The timestamp as PostgreSQL printed it (`%m`, `%t`, `%n` or the csv/json field).
    pub log_time: Option<String>,
    pub pid: Option<u32>,
    pub session_id: Option<String>,
    pub session_line: Option<u64>,
    pub user: Option<String>,
    pub database: Option<String>,
    pub application_name: Option<String>,
    pub client: Option<String>,
    pub backend_type: Option<String>,
    pub query_id: Option<i64>,
    pub sqlstate: Option<String>,
    /// `None` for a line that could not be parsed; `message` then holds it raw.
    pub severity: Option<String>,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub context: Option<String>,
    pub statement: Option<String>,
    pub internal_query: Option<String>,
}

impl LogEntry {
    /// An entry for text that could not be parsed, kept raw.
    pub fn unparsed(offset: FilePosition, text: &str) -> Self {
        LogEntry { offset, message: text.to_owned(), ..LogEntry::default() }
    }

    pub fn is_unparsed(&self) -> bool {
        self.severity.is_none()
    }
}

/// Parses one format's bytes into entries.
pub trait EntryParser: Send {
    fn format(&self) -> LogFormat;

    /// Parses `buf`, whose first byte is at `base` in the file, appending
    /// entries to `out`. Returns how many bytes were consumed: whole entries
    /// only. With `complete`, the last entry is final (the file was rotated
    /// away from or stayed idle), otherwise it is left for the next call
    /// when more lines may still belong to it.
    fn parse(&self, buf: &[u8], base: FilePosition, complete: bool, out: &mut Vec<LogEntry>) -> usize;
}

/// Parses an optional number, treating an empty or bad value as absent.
pub(crate) fn num<T: std::str::FromStr>(value: Option<&str>) -> Option<T> {
    value.filter(|v| !v.is_empty()).and_then(|v| v.parse().ok())
}

/// An optional string, empty values treated as absent.
pub(crate) fn text(value: Option<&str>) -> Option<String> {
    value.filter(|v| !v.is_empty()).map(str::to_owned)
}
