//! [`TailedFile`]: one spool file being read from byte offsets.
//!
//! The shipper reads files itself rather than through a line-following
//! library, because it must resume at an exact byte after a crash: every line
//! it hands out carries its start and end offsets, and the checkpoint stores
//! only offsets that fall on line boundaries.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Instant;

use crate::fingerprint::{FINGERPRINT_BYTES, FileId, Fingerprinter, HeadSum};

/// A byte offset in a file.
pub type FilePosition = u64;

/// Bytes asked of the kernel per read: large enough that syscalls cost little
/// next to compression, small enough to keep memory low with many files.
pub const READ_CHUNK: usize = 128 * 1024;

/// Whether the last read found new bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailState {
    /// The last poll read bytes.
    Active,
    /// No byte arrived since `since`; a partial line older than the fragment
    /// timeout belongs to a writer that died mid-line.
    AtEof { since: Instant },
}

/// Whether the file's path still leads to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Linked,
    /// Deleted or moved away by someone else: it is read to its end through
    /// the open descriptor, then forgotten.
    Unlinked {
        since: Instant,
    },
}

/// What [`TailedFile::poll`] hands to its sink.
#[derive(Debug, PartialEq, Eq)]
pub enum LineEvent<'a> {
    /// A complete line, without its newline; `end` is after the newline.
    Line {
        bytes: &'a [u8],
        start: FilePosition,
        end: FilePosition,
    },
    /// A line longer than the cap, skipped whole.
    OverCap {
        start: FilePosition,
        end: FilePosition,
    },
}

/// The sink's answer: go on, or stop because the batch is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Why [`TailedFile::poll`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollOutcome {
    /// The sink said stop.
    Stopped,
    /// The read budget is spent; more may be there.
    Budget,
    /// The end of the file, possibly after a partial line.
    Eof,
}

/// A file being tailed.
#[derive(Debug)]
pub struct TailedFile {
    pub path: PathBuf,
    pub id: FileId,
    pub head: HeadSum,
    /// Bumped when the file is truncated or replaced, so that the
    /// acknowledgement of a batch read before that cannot move the new
    /// content's position.
    pub generation: u32,
    pub state: TailState,
    pub presence: Presence,
    file: File,
    /// Every line before this offset was handed out or skipped.
    read_pos: FilePosition,
    /// Every line before this offset is acknowledged (or was skipped).
    acked_pos: FilePosition,
    /// File offset of `pending[0]`; past `read_pos` while skipping an
    /// over-cap line.
    buf_pos: FilePosition,
    /// Bytes read but not yet handed out: a partial line, or lines left when
    /// the sink said stop.
    pending: Vec<u8>,
    skipping: bool,
    /// Largest size seen, for the lag gauge.
    size: u64,
    /// When the file first had bytes not yet acknowledged; for the lag gauge.
    behind_since: Option<Instant>,
}

impl TailedFile {
    /// Starts tailing `file` at `offset`, a line boundary from a checkpoint.
    ///
    /// # Errors
    /// Reading the head or the metadata fails.
    pub fn open(
        path: PathBuf,
        file: File,
        offset: FilePosition,
        now: Instant,
    ) -> io::Result<TailedFile> {
        let meta = file.metadata()?;
        let head = Fingerprinter::head(&file)?;
        let offset = if offset > meta.len() { 0 } else { offset };
        Ok(TailedFile {
            path,
            id: Fingerprinter::file_id(&meta),
            head,
            generation: 0,
            state: TailState::Active,
            presence: Presence::Linked,
            file,
            read_pos: offset,
            acked_pos: offset,
            buf_pos: offset,
            pending: Vec::new(),
            skipping: false,
            size: meta.len(),
            behind_since: (meta.len() > offset).then_some(now),
        })
    }

    pub fn read_pos(&self) -> FilePosition {
        self.read_pos
    }

    pub fn acked_pos(&self) -> FilePosition {
        self.acked_pos
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes of the file not yet acknowledged.
    pub fn lag_bytes(&self) -> u64 {
        self.size.saturating_sub(self.acked_pos)
    }

    /// Since when the oldest unacknowledged byte has waited.
    pub fn behind_since(&self) -> Option<Instant> {
        self.behind_since
    }

    /// Whether every byte of the file is acknowledged and nothing is held.
    pub fn fully_acked(&self) -> bool {
        self.acked_pos == self.size
            && self.read_pos == self.size
            && self.pending.is_empty()
            && !self.skipping
    }

    /// Records the acknowledgement of everything before `pos` in `generation`.
    pub fn ack(&mut self, generation: u32, pos: FilePosition) {
        if generation == self.generation && pos > self.acked_pos {
            self.acked_pos = pos.min(self.read_pos);
            if self.acked_pos >= self.size {
                self.behind_since = None;
            }
        }
    }

    /// Reads new bytes and hands complete lines to `sink` until it says
    /// stop, `budget` bytes were read, or the end of the file.
    ///
    /// # Errors
    /// A read fails.
    pub fn poll(
        &mut self,
        now: Instant,
        max_line: usize,
        mut budget: usize,
        scratch: &mut Vec<u8>,
        sink: &mut dyn FnMut(LineEvent<'_>) -> Flow,
    ) -> io::Result<PollOutcome> {
        scratch.clear();
        scratch.append(&mut self.pending);
        let mut start = 0usize;
        let mut scanned = 0usize;
        let outcome = loop {
            let mut stop = false;
            while let Some(i) = memchr::memchr(b'\n', &scratch[scanned..]) {
                let nl = scanned + i;
                let end = self.buf_pos + (nl + 1 - start) as u64;
                let event = if self.skipping || (end - self.read_pos) as usize > max_line + 1 {
                    LineEvent::OverCap {
                        start: self.read_pos,
                        end,
                    }
                } else {
                    LineEvent::Line {
                        bytes: &scratch[start..nl],
                        start: self.read_pos,
                        end,
                    }
                };
                self.skipping = false;
                let flow = sink(event);
                self.read_pos = end;
                self.buf_pos = end;
                start = nl + 1;
                scanned = start;
                if flow == Flow::Stop {
                    stop = true;
                    break;
                }
            }
            if stop {
                break PollOutcome::Stopped;
            }
            scanned = scratch.len();
            if !self.skipping && scratch.len() - start > max_line {
                self.skipping = true;
            }
            if self.skipping {
                // Only the end of an over-cap line matters; drop its bytes.
                self.buf_pos += (scratch.len() - start) as u64;
                scratch.clear();
                start = 0;
                scanned = 0;
            }
            if budget == 0 {
                break PollOutcome::Budget;
            }
            let old = scratch.len();
            scratch.resize(old + READ_CHUNK, 0);
            let at = self.buf_pos + (old - start) as u64;
            let n = loop {
                match self.file.read_at(&mut scratch[old..], at) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            let n = match n {
                Ok(n) => n,
                Err(e) => {
                    scratch.truncate(old);
                    self.pending.extend_from_slice(&scratch[start..]);
                    return Err(e);
                }
            };
            scratch.truncate(old + n);
            if n == 0 {
                break PollOutcome::Eof;
            }
            self.size = self.size.max(at + n as u64);
            self.behind_since.get_or_insert(now);
            self.state = TailState::Active;
            budget = budget.saturating_sub(n);
        };
        self.pending.extend_from_slice(&scratch[start..]);
        if outcome == PollOutcome::Eof && self.state == TailState::Active {
            self.state = TailState::AtEof { since: now };
        }
        if self.head.len < FINGERPRINT_BYTES && self.size > self.head.len {
            self.head = Fingerprinter::head(&self.file)?;
        }
        Ok(outcome)
    }

    /// Skips a partial last line whose writer has been silent for `idle`:
    /// returns the skipped range, once.
    pub fn skip_fragment(
        &mut self,
        now: Instant,
        idle: std::time::Duration,
    ) -> Option<(FilePosition, FilePosition)> {
        let TailState::AtEof { since } = self.state else {
            return None;
        };
        if now.duration_since(since) < idle || (self.pending.is_empty() && !self.skipping) {
            return None;
        }
        let from = self.read_pos;
        let end = self.buf_pos + self.pending.len() as u64;
        self.pending.clear();
        self.skipping = false;
        self.read_pos = end;
        self.buf_pos = end;
        Some((from, end))
    }

    /// Checks the file against what was read: returns true, after starting
    /// over from offset 0 in a new generation, when it was truncated or its
    /// first bytes were replaced.
    ///
    /// # Errors
    /// The metadata or head cannot be read.
    pub fn detect_truncation(&mut self, now: Instant) -> io::Result<bool> {
        let len = self.file.metadata()?.len();
        let held = self.buf_pos + self.pending.len() as u64;
        if len >= held && Fingerprinter::matches(&self.file, self.head)? {
            self.size = self.size.max(len);
            return Ok(false);
        }
        self.generation += 1;
        self.read_pos = 0;
        self.acked_pos = 0;
        self.buf_pos = 0;
        self.pending.clear();
        self.skipping = false;
        self.size = len;
        self.head = Fingerprinter::head(&self.file)?;
        self.state = TailState::Active;
        self.behind_since = (len > 0).then_some(now);
        Ok(true)
    }

    /// The current length of the file, through the open descriptor.
    ///
    /// # Errors
    /// fstat fails.
    pub fn current_len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// The file's modification time.
    ///
    /// # Errors
    /// fstat fails.
    pub fn modified(&self) -> io::Result<std::time::SystemTime> {
        self.file.metadata()?.modified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    fn collect(t: &mut TailedFile, max_line: usize) -> (Vec<String>, PollOutcome) {
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        let outcome = t
            .poll(
                Instant::now(),
                max_line,
                usize::MAX,
                &mut scratch,
                &mut |ev| {
                    out.push(match ev {
                        LineEvent::Line { bytes, start, end } => {
                            format!("{}@{start}-{end}", String::from_utf8_lossy(bytes))
                        }
                        LineEvent::OverCap { start, end } => format!("overcap@{start}-{end}"),
                    });
                    Flow::Continue
                },
            )
            .unwrap();
        (out, outcome)
    }

    fn setup() -> (tempfile::TempDir, PathBuf, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("php.2026112711.1.ndjson");
        let w = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        (dir, path, w)
    }

    #[test]
    fn lines_carry_offsets_and_partial_lines_wait_for_their_newline() {
        let (_d, path, mut w) = setup();
        w.write_all(b"one\ntw").unwrap();
        let mut t =
            TailedFile::open(path.clone(), File::open(&path).unwrap(), 0, Instant::now()).unwrap();
        assert_eq!(
            collect(&mut t, 100),
            (vec!["one@0-4".to_owned()], PollOutcome::Eof)
        );
        w.write_all(b"o\nthree\n").unwrap();
        assert_eq!(collect(&mut t, 100).0, ["two@4-8", "three@8-14"]);
        assert_eq!(t.read_pos(), 14);
        t.ack(0, 8);
        assert_eq!((t.acked_pos(), t.lag_bytes()), (8, 6));
        t.ack(0, 14);
        assert!(t.fully_acked());
    }

    #[test]
    fn over_cap_lines_are_skipped_whole_even_across_reads() {
        let (_d, path, mut w) = setup();
        let long = "x".repeat(READ_CHUNK * 2 + 10);
        write!(w, "a\n{long}\nb\n{}\nc\n", "y".repeat(11)).unwrap();
        let mut t =
            TailedFile::open(path.clone(), File::open(&path).unwrap(), 0, Instant::now()).unwrap();
        let (lines, _) = collect(&mut t, 10);
        let l = long.len() as u64;
        assert_eq!(
            lines,
            [
                "a@0-2".to_owned(),
                format!("overcap@2-{}", 3 + l),
                format!("b@{}-{}", 3 + l, 5 + l),
                format!("overcap@{}-{}", 5 + l, 17 + l),
                format!("c@{}-{}", 17 + l, 19 + l),
            ]
        );
    }

    #[test]
    fn a_dead_writers_fragment_is_skipped_once_idle() {
        let (_d, path, mut w) = setup();
        w.write_all(b"a\n{\"half").unwrap();
        let mut t =
            TailedFile::open(path.clone(), File::open(&path).unwrap(), 0, Instant::now()).unwrap();
        collect(&mut t, 100);
        assert_eq!(
            t.skip_fragment(Instant::now(), Duration::from_secs(60)),
            None,
            "not idle yet"
        );
        assert_eq!(
            t.skip_fragment(
                Instant::now() + Duration::from_secs(61),
                Duration::from_secs(60)
            ),
            Some((2, 8))
        );
        assert_eq!(
            t.skip_fragment(
                Instant::now() + Duration::from_secs(99),
                Duration::from_secs(60)
            ),
            None
        );
        w.write_all(b"b\n").unwrap();
        assert_eq!(collect(&mut t, 100).0, ["b@8-10"]);
    }

    #[test]
    fn truncation_starts_a_new_generation_from_zero() {
        let (_d, path, mut w) = setup();
        w.write_all(b"first line\nsecond\n").unwrap();
        let mut t =
            TailedFile::open(path.clone(), File::open(&path).unwrap(), 0, Instant::now()).unwrap();
        collect(&mut t, 100);
        assert!(!t.detect_truncation(Instant::now()).unwrap());
        w.set_len(0).unwrap();
        w.write_all(b"new\n").unwrap();
        assert!(t.detect_truncation(Instant::now()).unwrap());
        assert_eq!(t.generation, 1);
        t.ack(0, 11); // a stale acknowledgement from before the truncation
        assert_eq!(t.acked_pos(), 0);
        assert_eq!(collect(&mut t, 100).0, ["new@0-4"]);
    }

    #[test]
    fn a_stop_keeps_the_remaining_lines_for_the_next_poll() {
        let (_d, path, mut w) = setup();
        w.write_all(b"a\nb\nc\n").unwrap();
        let mut t =
            TailedFile::open(path.clone(), File::open(&path).unwrap(), 2, Instant::now()).unwrap();
        let mut got = Vec::new();
        let mut scratch = Vec::new();
        let out = t.poll(Instant::now(), 10, usize::MAX, &mut scratch, &mut |ev| {
            got.push(format!("{ev:?}"));
            Flow::Stop
        });
        assert_eq!(out.unwrap(), PollOutcome::Stopped);
        assert_eq!(got.len(), 1);
        assert_eq!(collect(&mut t, 10).0, ["c@4-6"]);
    }
}
