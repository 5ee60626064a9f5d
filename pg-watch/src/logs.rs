//! From log files to pg_log records: one [`Tailer`] per configured source,
//! each entry classified and wrapped in an envelope.

use std::path::Path;
use std::time::{Duration, SystemTime};

use bitville_schemas::records::{LogClass, LogSource, PgLogRecord};
use bitville_schemas::{Envelope, Kind, SCHEMA_VERSION, format_ts};

use crate::config::LogsSection;
use crate::log::classify::{RECORD_TS_LEN, classify_into, empty_event, write_event_log_time};
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
pub fn parser_for(
    format: LogFormat,
    log_line_prefix: &str,
) -> Result<Box<dyn EntryParser>, PrefixError> {
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
    let mut record = empty_record(tailed.format);
    fill_record(&mut record, tailed, project, host);
    record
}

/// A record with nothing in it, for [`fill_record`].
pub fn empty_record(format: LogFormat) -> PgLogRecord {
    let envelope = Envelope {
        v: SCHEMA_VERSION,
        kind: Kind::PgLog,
        id: String::new(),
        ts: String::new(),
        project: String::new(),
        host: String::new(),
    };
    PgLogRecord {
        envelope,
        event: empty_event(format, String::new()),
    }
}

/// [`to_record`] into an existing record, every field overwritten. The log
/// watcher fills one record per poll entry after entry and lends it to its
/// sink, which serializes it at once: the strings keep their buffers from
/// one entry to the next, so a record costs copies of its text but hardly
/// any allocation.
pub fn fill_record(record: &mut PgLogRecord, tailed: TailedEntry<'_>, project: &str, host: &str) {
    let now = || format_ts(SystemTime::now());
    let ev = &mut record.event;
    let env = &mut record.envelope;
    write_event_log_time(&tailed.entry, &mut ev.log_time, now);
    env.ts.clear();
    // A time as printed with an unknown zone is no record timestamp.
    if ev.log_time.ends_with('Z') && ev.log_time.len() == RECORD_TS_LEN {
        env.ts.push_str(&ev.log_time);
    } else {
        env.ts.push_str(&now());
    }
    tailed.write_record_id(&mut env.id);
    set(&mut env.project, project);
    set(&mut env.host, host);
    let offset = tailed.entry.offset;
    ev.format = tailed.format;
    match ev.source.as_mut() {
        Some(source) => {
            set(&mut source.file, tailed.file);
            source.offset = offset;
        }
        None => {
            ev.source = Some(LogSource {
                file: tailed.file.to_owned(),
                offset,
            })
        }
    }
    classify_into(tailed.entry, ev);
}

fn set(s: &mut String, value: &str) {
    s.clear();
    s.push_str(value);
}

/// Every configured log source of one directory.
pub struct LogWatcher {
    tailers: Vec<Tailer>,
}

/// What polls read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollStats {
    /// Records handed to the sink.
    pub records: u64,
    /// Of those, lines no parser understood (kept as raw events).
    pub unparsed: u64,
    /// Bytes still waiting in the log files after the last poll.
    pub pending_bytes: u64,
    /// Bytes are pending but the last poll read none of them (the log
    /// directory cannot be read, say): polling again at once would spin, so
    /// the caller waits its interval as when nothing is pending.
    pub stalled: bool,
}

impl LogWatcher {
    /// Opens one tailer per source, each with its checkpoint file in `state_dir`.
    ///
    /// # Errors
    /// A prefix does not compile or a checkpoint cannot be read.
    pub fn open(section: &LogsSection, state_dir: &Path) -> Result<Self, String> {
        let mut tailers = Vec::new();
        for (i, source) in section.sources.iter().enumerate() {
            let parser =
                parser_for(source.format, &section.log_line_prefix).map_err(|e| e.to_string())?;
            let ck = state_dir.join(format!("log-checkpoint-{i}.json"));
            let mut t = Tailer::open(
                &section.directory,
                &source.pattern,
                parser,
                &ck,
                section.start_at,
            )
            .map_err(|e: TailError| e.to_string())?;
            t.flush_after = Duration::from_millis(section.flush_after_ms);
            tailers.push(t);
        }
        Ok(LogWatcher { tailers })
    }

    /// Polls again and again while the files hold more than one poll reads
    /// (a server that logs every statement writes faster than one chunk per
    /// interval), until they are read, `budget` has passed or `stop` says
    /// so, whichever comes first; the caller sleeps its interval only when
    /// nothing is pending or a poll read nothing ([`PollStats::stalled`]).
    pub fn catch_up(
        &mut self,
        project: &str,
        host: &str,
        mut sink: impl FnMut(&PgLogRecord) -> bool,
        budget: Duration,
        stop: impl Fn() -> bool,
    ) -> PollStats {
        let started = std::time::Instant::now();
        let mut total = PollStats::default();
        loop {
            let polled = self.poll(project, host, &mut sink);
            total.records += polled.records;
            total.unparsed += polled.unparsed;
            total.pending_bytes = polled.pending_bytes;
            total.stalled = polled.stalled;
            if polled.pending_bytes == 0 || polled.stalled || started.elapsed() >= budget || stop()
            {
                return total;
            }
        }
    }

    /// The read positions of every known file, summed: a poll that leaves it
    /// as it was and hands on no record made no progress.
    fn read_bytes(&self) -> u64 {
        self.tailers
            .iter()
            .flat_map(Tailer::positions)
            .map(|(_, offset)| offset)
            .fold(0, u64::wrapping_add)
    }

    /// Reads what is new in every source, at most [`crate::tailer::READ_CHUNK_MAX`]
    /// per file, and hands the records to `sink`; checkpoints move only when
    /// `sink` accepted every record of a source.
    pub fn poll(
        &mut self,
        project: &str,
        host: &str,
        mut sink: impl FnMut(&PgLogRecord) -> bool,
    ) -> PollStats {
        let (mut records, mut unparsed) = (0, 0);
        let read_before = self.read_bytes();
        for tailer in &mut self.tailers {
            // Each entry becomes a record and goes to `sink` as it is parsed,
            // while it still borrows the read buffer.
            let (mut handed, mut all_written) = (0u64, true);
            let mut record = empty_record(tailer.format());
            let polled = tailer.poll(|tailed| {
                fill_record(&mut record, tailed, project, host);
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
            if handed > 0
                && all_written
                && let Err(e) = tailer.commit()
            {
                tracing::warn!(error = %e, "log checkpoint not written");
            }
        }
        let pending_bytes = self.tailers.iter().map(Tailer::pending_bytes).sum();
        PollStats {
            records,
            unparsed,
            pending_bytes,
            stalled: pending_bytes > 0 && records == 0 && self.read_bytes() == read_before,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries of every shape one after another, so that each leaves fields
    /// the next one lacks.
    const LOG: &str = "\
2026-11-27 11:47:44.123 UTC [812] shop@orders bitville:0d4f6a4e-2b7c-4f1e-9a53-3c1d2e4f5a6b LOG:  duration: 5.0 ms  execute s0: SELECT $1::int
2026-11-27 11:47:44.123 UTC [812] shop@orders bitville:0d4f6a4e-2b7c-4f1e-9a53-3c1d2e4f5a6b DETAIL:  parameters: $1 = '7'
2026-11-27 11:47:44.200 UTC [813] shop@orders psql LOG:  process 813 still waiting for ShareLock on transaction 734 after 1000.071 ms
2026-11-27 11:47:44.200 UTC [813] shop@orders psql DETAIL:  Process holding the lock: 812. Wait queue: 813.
garbage from an extension
2026-11-27 11:47:45.000 UTC [90] LOG:  checkpoint starting: time
2026-11-27 11:47:46.000 CET [812] shop@orders psql ERROR:  division by zero
2026-11-27 11:47:46.000 UTC [812] shop@orders psql LOG:  duration: 1.5 ms  statement: SELECT 1
2026-11-27 11:47:46.000 UTC [812] shop@orders psql LOG:  duration: 3.1 ms  plan:
\tQuery Text: SELECT 2
\tResult  (cost=0.00..0.01 rows=1 width=4)
";

    #[test]
    fn a_reused_record_equals_a_fresh_one_after_every_entry() {
        let parser = parser_for(LogFormat::Stderr, "%m [%p] %q%u@%d %a ").unwrap();
        let mut reused = empty_record(LogFormat::Stderr);
        let mut n = 0;
        parser.parse(LOG.as_bytes(), 0, true, &mut |entry| {
            let tailed = || TailedEntry {
                entry: entry.clone(),
                format: LogFormat::Stderr,
                file: "a.log",
                fingerprint: 7,
            };
            fill_record(&mut reused, tailed(), "shop", "db-1");
            let mut fresh = to_record(tailed(), "shop", "db-1");
            if fresh.event.log_time.ends_with("CET") || entry.log_time.is_none() {
                // An unknown zone, or no time at all: the time of reading.
                fresh.envelope.ts = reused.envelope.ts.clone();
                fresh.event.log_time = reused.event.log_time.clone();
            }
            assert_eq!(reused, fresh, "entry {n}");
            n += 1;
        });
        assert_eq!(n, 7);
    }

    /// A log folder holding `chunks` read chunks' worth of one statement
    /// line (and `extra` lines more), with a watcher at its beginning.
    fn backlog(
        chunks: usize,
        extra: usize,
    ) -> (tempfile::TempDir, tempfile::TempDir, LogWatcher, usize) {
        use crate::config::LogSourceSection;
        use crate::tailer::{READ_CHUNK_MAX, StartAt};

        let logs = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let line = "2026-11-27 11:47:46.000 UTC [812] shop@orders psql LOG:  duration: 1.5 ms  \
                    statement: SELECT 1\n";
        let lines = chunks * READ_CHUNK_MAX / line.len() + extra;
        std::fs::write(logs.path().join("pg.log"), line.repeat(lines)).unwrap();
        let section = LogsSection {
            directory: logs.path().to_owned(),
            start_at: StartAt::Beginning,
            flush_after_ms: 0,
            sources: vec![LogSourceSection {
                pattern: "*.log".into(),
                format: LogFormat::Stderr,
            }],
            ..LogsSection::default()
        };
        let watcher = LogWatcher::open(&section, state.path()).unwrap();
        (logs, state, watcher, lines)
    }

    // A server that logs every statement wrote faster than one chunk per
    // poll interval, and pg-watch fell behind for good.
    #[test]
    fn a_backlog_larger_than_one_poll_is_read_without_waiting() {
        let (_logs, _state, mut watcher, lines) = backlog(2, 1000);
        let first = watcher.poll("shop", "db-1", |_| true);
        assert!(
            first.pending_bytes > 0,
            "one poll reads one chunk: {first:?}"
        );
        let rest = watcher.catch_up("shop", "db-1", |_| true, Duration::from_secs(60), || false);
        assert_eq!(rest.pending_bytes, 0, "{rest:?}");
        assert_eq!(first.records + rest.records, lines as u64);
    }

    // Found by the chaos test: with bytes pending and the log directory
    // gone (or unreadable), every poll failed and read nothing, and the log
    // loop polled again at once, forever: a core at 100 % and a warning per
    // poll. A poll that reads nothing now says so, and the loop waits.
    #[test]
    fn a_backlog_that_cannot_be_read_does_not_spin() {
        let (logs, _state, mut watcher, _) = backlog(2, 0);
        let first = watcher.poll("shop", "db-1", |_| true);
        assert!(first.pending_bytes > 0 && !first.stalled, "{first:?}");
        let dir = logs.path().to_owned();
        drop(logs);
        assert!(!dir.exists());
        let started = std::time::Instant::now();
        let polled = watcher.catch_up("shop", "db-1", |_| true, Duration::from_secs(5), || false);
        assert!(polled.stalled && polled.pending_bytes > 0, "{polled:?}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "catch_up spun for {:?}",
            started.elapsed()
        );
    }
}
