//! A checkpointed tailer for PostgreSQL's log directory.
//!
//! The logging collector writes one file at a time and starts a new one on
//! rotation (by time or size), sometimes reusing a name and truncating it
//! (`log_truncate_on_rotation`). So a file is keyed by device and inode plus
//! a fingerprint of its first line, never by its path, and its read position
//! is the start of the first entry not yet handed out. File identity and
//! checkpoints are the shipper's own ([`Fingerprinter::first_line`],
//! [`Checkpointer`]), with entries keyed by the first line.
//!
//! Record ids derive from the file fingerprint, format and entry offset: an
//! entry read again after a crash (records written, checkpoint not yet)
//! gets the same id, and the processor stores it once.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use shipper::checkpoint::{CheckpointError, Checkpointer, Loaded};
use shipper::fingerprint::{Fingerprinter, fnv1a};

use crate::log::{EntryParser, FilePosition, LogEntry, LogFormat};

/// How much of a file one poll reads at most; bounds memory.
pub const READ_CHUNK_MAX: usize = 8 << 20;
#[derive(Debug, Error)]
pub enum TailError {
    #[error("log directory {path}: {source}")]
    Directory { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// Where a file's identity is kept: device, inode and first-line fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    pub fingerprint: u64,
}

/// One file's entry in the tailer's checkpoint file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointEntry {
    #[serde(flatten)]
    key: FileKey,
    path: String,
    offset: FilePosition,
}

/// What the tailer knows of one file.
#[derive(Debug, Clone)]
struct FileState {
    key: FileKey,
    path: PathBuf,
    offset: FilePosition,
    /// The size at the last poll, to see growth.
    seen_size: u64,
    last_growth: Instant,
    /// An entry was left unconsumed, waiting for more lines or for idleness.
    pending: bool,
}

/// Where the tailer starts in files that no checkpoint knows, on a first start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    Beginning,
    End,
}

/// One entry handed out by the tailer, with what a record needs. It borrows
/// the tailer's read buffer, so it lives only for the call it is handed to.
#[derive(Debug, Clone)]
pub struct TailedEntry<'a> {
    pub entry: LogEntry<'a>,
    pub format: LogFormat,
    pub file: &'a str,
    /// The fingerprint of the file's first line, for the record id.
    pub fingerprint: u64,
}

impl TailedEntry<'_> {
    /// A UUID v4 derived from file fingerprint, format and offset.
    pub fn record_id(&self) -> String {
        derived_record_id(self.fingerprint, self.format, self.entry.offset)
    }

    /// [`TailedEntry::record_id`] written into `out`, which is cleared first.
    pub fn write_record_id(&self, out: &mut String) {
        out.clear();
        write_record_id(self.fingerprint, self.format, self.entry.offset, out);
    }
}

/// Tails the files of one format in one directory.
pub struct Tailer {
    dir: PathBuf,
    pattern: String,
    parser: Box<dyn EntryParser>,
    checkpointer: Checkpointer<CheckpointEntry>,
    files: HashMap<(u64, u64), FileState>,
    /// Checkpoint entries loaded at start, consumed as files are found.
    loaded: Vec<CheckpointEntry>,
    first_start: bool,
    start_at: StartAt,
    /// An entry left waiting this long with no growth is handed out.
    pub flush_after: Duration,
    buf: Vec<u8>,
}

impl Tailer {
    /// Opens a tailer; `checkpoint_path` is this tailer's own file.
    ///
    /// # Errors
    /// The checkpoint file exists but cannot be read (a torn or foreign file
    /// is not an error: it is logged and ignored, the tailer starts afresh).
    pub fn open(
        dir: &Path,
        pattern: &str,
        parser: Box<dyn EntryParser>,
        checkpoint_path: &Path,
        start_at: StartAt,
    ) -> Result<Self, TailError> {
        let checkpointer = Checkpointer::at(checkpoint_path);
        let (loaded, first_start) = match checkpointer.load()? {
            Loaded::Found(files) => (files, false),
            Loaded::Missing => (Vec::new(), true),
            Loaded::Unusable(reason) => {
                tracing::warn!("{reason}");
                (Vec::new(), false)
            }
        };
        Ok(Tailer {
            dir: dir.to_owned(),
            pattern: pattern.to_owned(),
            parser,
            checkpointer,
            files: HashMap::new(),
            loaded,
            first_start,
            start_at,
            flush_after: Duration::from_millis(1000),
            buf: Vec::new(),
        })
    }

    pub fn format(&self) -> LogFormat {
        self.parser.format()
    }

    /// Reads what is new in every matching file, oldest first, handing each
    /// entry to `each` as it is parsed. Call [`Tailer::commit`] once they are
    /// safely written.
    ///
    /// # Errors
    /// The directory cannot be listed. A file that vanishes or cannot be read
    /// is skipped and tried again at the next poll.
    pub fn poll(&mut self, mut each: impl FnMut(TailedEntry<'_>)) -> Result<(), TailError> {
        let listing = fs::read_dir(&self.dir).map_err(|source| TailError::Directory {
            path: self.dir.clone(),
            source,
        })?;
        let mut found: Vec<(SystemTime, PathBuf, fs::Metadata)> = Vec::new();
        for dirent in listing.flatten() {
            let name = dirent.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || !glob_match(&self.pattern, name) {
                continue;
            }
            if let Ok(meta) = dirent.metadata()
                && meta.is_file()
            {
                found.push((
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    dirent.path(),
                    meta,
                ));
            }
        }
        found.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let newest = found.last().map(|f| (f.2.dev(), f.2.ino()));
        let mut alive = Vec::with_capacity(found.len());
        for (_, path, meta) in &found {
            let id = (meta.dev(), meta.ino());
            alive.push(id);
            let rotated_away = Some(id) != newest;
            if let Err(e) = self.poll_file(path, meta, rotated_away, &mut each) {
                tracing::warn!(path = %path.display(), error = %e, "cannot read log file, will retry");
            }
        }
        self.files.retain(|id, _| alive.contains(id));
        self.first_start = false;
        Ok(())
    }

    fn poll_file(
        &mut self,
        path: &Path,
        meta: &fs::Metadata,
        rotated_away: bool,
        each: &mut dyn FnMut(TailedEntry<'_>),
    ) -> io::Result<()> {
        let id = (meta.dev(), meta.ino());
        let size = meta.len();
        let known = self.files.contains_key(&id);
        let needs_look = match self.files.get(&id) {
            None => true,
            Some(s) => size != s.seen_size || s.pending || size < s.offset,
        };
        if !needs_look {
            return Ok(());
        }
        let mut file = fs::File::open(path)?;
        let Some(fingerprint) = Fingerprinter::first_line(&file)? else {
            return Ok(()); // No complete first line yet.
        };
        let key = FileKey {
            dev: id.0,
            ino: id.1,
            fingerprint,
        };
        let now = Instant::now();
        let state = match self.files.get_mut(&id) {
            Some(s) if s.key == key && size >= s.offset => s,
            _ => {
                // New to this run, or truncated and rewritten (a new fingerprint).
                let offset = if known {
                    0
                } else if let Some(pos) = self.loaded.iter().position(|c| c.key == key) {
                    self.loaded.swap_remove(pos).offset.min(size)
                } else if self.first_start && self.start_at == StartAt::End {
                    size
                } else {
                    0
                };
                let state = FileState {
                    key,
                    path: path.to_owned(),
                    offset,
                    seen_size: size,
                    last_growth: now,
                    pending: false,
                };
                self.files.entry(id).insert_entry(state).into_mut()
            }
        };
        if size != state.seen_size {
            state.last_growth = now;
            state.seen_size = size;
        }
        state.path = path.to_owned();
        if size <= state.offset {
            state.pending = false;
            return Ok(());
        }
        let want = ((size - state.offset) as usize).min(READ_CHUNK_MAX);
        self.buf.clear();
        self.buf.reserve(want);
        file.seek(SeekFrom::Start(state.offset))?;
        (&mut file).take(want as u64).read_to_end(&mut self.buf)?;
        let idle = now.duration_since(state.last_growth) >= self.flush_after;
        // Only a read that reached the end of the file can end its last
        // entry: a chunk cut from a larger backlog may be followed by that
        // entry's DETAIL lines.
        let at_end = state.offset + self.buf.len() as u64 >= size;
        let mut complete = (rotated_away || idle) && at_end;
        let file_name = path.to_string_lossy();
        let format = self.parser.format();
        let mut emit = |entry: LogEntry<'_>| {
            each(TailedEntry {
                entry,
                format,
                file: &file_name,
                fingerprint,
            })
        };
        let mut used = self
            .parser
            .parse(&self.buf, state.offset, complete, &mut emit);
        if used == 0 && self.buf.len() == READ_CHUNK_MAX && !complete {
            // One entry larger than the chunk: hand it out as far as it goes.
            // (Nothing was handed out above: a parser that consumed nothing
            // emitted nothing.)
            complete = true;
            used = self
                .parser
                .parse(&self.buf, state.offset, complete, &mut emit);
        }
        state.offset += used as u64;
        state.pending = state.offset < size;
        Ok(())
    }

    /// Writes the checkpoint of every file: the entries handed out so far are
    /// safely stored, do not read them again.
    ///
    /// # Errors
    /// The checkpoint cannot be written.
    pub fn commit(&self) -> Result<(), TailError> {
        let mut files: Vec<CheckpointEntry> = self
            .files
            .values()
            .map(|s| CheckpointEntry {
                key: s.key,
                path: s.path.to_string_lossy().into_owned(),
                offset: s.offset,
            })
            .collect();
        // Checkpoints of files not seen yet in this run are kept.
        files.extend(self.loaded.iter().cloned());
        Ok(self.checkpointer.save(&files)?)
    }

    /// Bytes of the known files not read yet, as of the last poll: more than
    /// one poll reads when a file grew by more than [`READ_CHUNK_MAX`].
    pub fn pending_bytes(&self) -> u64 {
        self.files
            .values()
            .map(|s| s.seen_size.saturating_sub(s.offset))
            .sum()
    }

    /// The read position of every known file, for /metrics and tests.
    pub fn positions(&self) -> Vec<(PathBuf, FilePosition)> {
        self.files
            .values()
            .map(|s| (s.path.clone(), s.offset))
            .collect()
    }
}

/// A UUID v4 made from the entry's position, stable across re-reads.
pub fn derived_record_id(fingerprint: u64, format: LogFormat, offset: FilePosition) -> String {
    let mut id = String::with_capacity(uuid::fmt::Hyphenated::LENGTH);
    write_record_id(fingerprint, format, offset, &mut id);
    id
}

/// [`derived_record_id`] appended to `out`.
pub fn write_record_id(
    fingerprint: u64,
    format: LogFormat,
    offset: FilePosition,
    out: &mut String,
) {
    let mut key = [0u8; 17];
    key[..8].copy_from_slice(&fingerprint.to_le_bytes());
    key[8] = format as u8;
    key[9..].copy_from_slice(&offset.to_le_bytes());
    let hi = fnv1a(0x6c62_272e_07bb_0142, &key);
    let lo = fnv1a(hi ^ 0x9e37_79b9_7f4a_7c15, &key);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi.to_be_bytes());
    bytes[8..].copy_from_slice(&lo.to_be_bytes());
    let uuid = uuid::Builder::from_random_bytes(bytes).into_uuid();
    // Encoded into a stack buffer: `to_string` would go through the
    // formatting machinery once per log entry.
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.push_str(uuid.hyphenated().encode_lower(&mut text));
}

/// `*` matches any run of characters, `?` one; everything else is literal.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    use crate::log::prefix::PrefixParser;
    use crate::log::stderr::StderrParser;

    fn tailer(dir: &Path, start_at: StartAt) -> Tailer {
        let parser = StderrParser::new(PrefixParser::compile("%m [%p] ").unwrap());
        let mut t = Tailer::open(
            dir,
            "*.log",
            Box::new(parser),
            &dir.join(".ck.json"),
            start_at,
        )
        .unwrap();
        t.flush_after = Duration::ZERO;
        t
    }

    fn line(n: u32) -> String {
        format!("2026-11-27 11:47:44.123 UTC [{n}] LOG:  line {n}\n")
    }

    fn append(path: &Path, text: &str) {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn messages(t: &mut Tailer) -> Vec<String> {
        let mut out = Vec::new();
        t.poll(|e| out.push(e.entry.message.into_owned())).unwrap();
        out
    }

    #[test]
    fn follows_rotation_and_resumes_from_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("postgresql-1.log");
        append(&a, &(line(1) + &line(2)));
        let mut t = tailer(dir.path(), StartAt::Beginning);
        assert_eq!(messages(&mut t), ["line 1", "line 2"]);
        t.commit().unwrap();
        append(&a, &line(3));
        std::thread::sleep(Duration::from_millis(20));
        let b = dir.path().join("postgresql-2.log");
        append(&b, &line(4));
        assert_eq!(messages(&mut t), ["line 3", "line 4"]);
        // Not committed: a restart reads lines 3 and 4 again.
        let mut t2 = tailer(dir.path(), StartAt::Beginning);
        assert_eq!(messages(&mut t2), ["line 3", "line 4"]);
        t2.commit().unwrap();
        let mut t3 = tailer(dir.path(), StartAt::Beginning);
        assert!(messages(&mut t3).is_empty());
    }

    #[test]
    fn a_truncated_file_is_read_from_the_start_and_ids_are_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("postgresql-Mon.log");
        append(&a, &(line(1) + &line(2)));
        let mut t = tailer(dir.path(), StartAt::Beginning);
        let mut ids = Vec::new();
        t.poll(|e| ids.push(e.record_id())).unwrap();
        assert_ne!(ids[0], ids[1]);
        fs::write(&a, line(7)).unwrap();
        assert_eq!(messages(&mut t), ["line 7"]);
        let id = derived_record_id(1, LogFormat::Stderr, 0);
        assert_eq!(id, derived_record_id(1, LogFormat::Stderr, 0));
        assert_eq!(id.as_bytes()[14], b'4');
    }

    #[test]
    fn start_at_end_skips_history_only_on_the_first_start() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("postgresql-1.log");
        append(&a, &line(1));
        let mut t = tailer(dir.path(), StartAt::End);
        assert!(messages(&mut t).is_empty());
        append(&a, &line(2));
        assert_eq!(messages(&mut t), ["line 2"]);
    }

    #[test]
    fn an_entry_waits_for_its_detail_until_the_file_is_idle() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("p.log");
        append(&a, &line(1));
        let mut t = tailer(dir.path(), StartAt::Beginning);
        t.flush_after = Duration::from_secs(3600);
        assert!(messages(&mut t).is_empty());
        append(&a, "2026-11-27 11:47:44.123 UTC [1] DETAIL:  more\n");
        assert!(messages(&mut t).is_empty());
        t.flush_after = Duration::ZERO;
        let mut details = Vec::new();
        t.poll(|e| details.push(e.entry.detail.map(|d| d.into_owned())))
            .unwrap();
        assert_eq!(details, [Some("more".to_owned())]);
    }

    #[test]
    fn globs() {
        assert!(glob_match("*.log", "postgresql-2026.log"));
        assert!(!glob_match("*.log", "postgresql-2026.csv"));
        assert!(glob_match("postgresql-??.json", "postgresql-01.json"));
    }
}
