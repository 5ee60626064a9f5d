//! From log files to pg_log records: one [`Tailer`] per configured source,
//! each entry classified and wrapped in an envelope.

use std::path::Path;
use std::time::{Duration, SystemTime};

use bitville_schemas::records::{LogClass, LogSource, PgLogRecord};
use bitville_schemas::{Envelope, Kind, SCHEMA_VERSION, format_ts};

use crate::config::LogsSection;
use crate::log::classify::{RECORD_TS_LEN, classify, event_log_time};
use crate::log::csvlog::CsvlogParser;
use crate::log::jsonlog::JsonlogParser;
use crate::log::prefix::{PrefixError, PrefixParser};
use crate::log::stderr::StderrParser;
use crate::log::{EntryParser, LogFormat};
use crate::tailer::{TailError, TailedEntry, Tailer};

/// The parser for one format.
///
/// # Errors
/// The stderr prefix does not compile.
pub fn parser_for(format: LogFormat, log_line_prefix: &str) -> Result<Box<dyn EntryParser>, PrefixError> {
    Ok(match format {
        LogFormat::Stderr => Box::new(StderrParser::new(PrefixParser::compile(log_line_prefix)?)),
        LogFormat::Csvlog => Box::new(CsvlogParser),
        LogFormat::Jsonlog => Box::new(JsonlogParser),
    })
}

/// Wraps one tailed entry in a pg_log record. The record's `ts` is the log
/// time when its zone is understood, else now; its id is the tailer's
/// position-derived id, so re-reading after a crash repeats the same id.
pub fn to_record(tailed: TailedEntry<'_>, project: &str, host: &str) -> PgLogRecord {
    let now = || format_ts(SystemTime::now());
    let log_time = event_log_time(&tailed.entry, now);
    // A time as printed with an unknown zone is no record timestamp.
    let ts = if log_time.ends_with('Z') && log_time.len() == RECORD_TS_LEN { log_time.clone() } else { now() };
    let id = tailed.record_id();
    let offset = tailed.entry.offset;
    let mut event = classify(tailed.entry, tailed.format, log_time);
    event.source = Some(LogSource { file: tailed.file.to_owned(), offset });
    let envelope = Envelope { v: SCHEMA_VERSION, kind: Kind::PgLog, id, ts, project: project.to_owned(), host: host.to_owned() };
    PgLogRecord { envelope, event }
}

/// Every configured log source of one directory.
pub struct LogWatcher {
    tailers: Vec<Tailer>,
}

impl LogWatcher {
    /// Opens one tailer per source, each with its checkpoint file in `state_dir`.
    ///
    /// # Errors
    /// A prefix does not compile or a checkpoint cannot be read.
    pub fn open(section: &LogsSection, state_dir: &Path) -> Result<Self, String> {
        let mut tailers = Vec::new();
        for (i, source) in section.sources.iter().enumerate() {
            let parser = parser_for(source.format, &section.log_line_prefix).map_err(|e| e.to_string())?;
            let ck = state_dir.join(format!("log-checkpoint-{i}.json"));
            let mut t = Tailer::open(&section.directory, &source.pattern, parser, &ck, section.start_at)
                .map_err(|e: TailError| e.to_string())?;
            t.flush_after = Duration::from_millis(section.flush_after_ms);
            tailers.push(t);
        }
        Ok(LogWatcher { tailers })
    }

    /// Reads what is new in every source and hands the records to `sink`;
    /// checkpoints move only when `sink` accepted every record of a source.
    /// Returns the number of records and of unparsed lines.
    pub fn poll(
        &mut self,
        project: &str,
        host: &str,
        mut sink: impl FnMut(&PgLogRecord) -> bool,
    ) -> (u64, u64) {
        let (mut records, mut unparsed) = (0, 0);
        for tailer in &mut self.tailers {
            // Each entry becomes a record and goes to `sink` as it is parsed,
            // while it still borrows the read buffer.
            let (mut handed, mut all_written) = (0u64, true);
            let polled = tailer.poll(|tailed| {
                let record = to_record(tailed, project, host);
                if record.event.class == LogClass::Unparsed {
                    unparsed += 1;
                }
                handed += 1;
                all_written &= sink(&record);
            });
            if let Err(e) = polled {
                tracing::warn!(error = %e, "log directory cannot be read");
                continue;
            }
            records += handed;
            if handed > 0 && all_written {
                if let Err(e) = tailer.commit() {
                    tracing::warn!(error = %e, "log checkpoint not written");
                }
            }
        }
        (records, unparsed)
    }
}
