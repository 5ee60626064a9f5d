//! [`Batcher`]: gathers lines into a batch that closes on size or age, and
//! remembers where each line came from, so that an acknowledgement moves
//! exactly the right file positions.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::tailer::FilePosition;

/// The engine's handle on a tailed file; never reused while it runs.
pub type FileKey = u64;

/// Where a line of a batch came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRef {
    pub file: FileKey,
    /// Start of the line in the file, for quarantine entries.
    pub file_offset: FilePosition,
    /// The line's bytes in [`Batch::raw`], newline included.
    pub raw_start: usize,
    pub raw_end: usize,
}

/// A closed batch: NDJSON lines and, per file, the position that its
/// acknowledgement reaches.
#[derive(Debug, Default)]
pub struct Batch {
    pub raw: Vec<u8>,
    pub lines: Vec<LineRef>,
    /// Per file: (generation, position). Lines skipped locally (quarantined,
    /// over the cap, fragments) move the position too, but only once the
    /// lines before them are acknowledged, which keeps the checkpoint exact.
    pub advances: HashMap<FileKey, (u32, FilePosition)>,
}

impl Batch {
    /// The line `i` without its newline.
    pub fn line(&self, i: usize) -> &[u8] {
        let l = &self.lines[i];
        &self.raw[l.raw_start..l.raw_end - 1]
    }

    /// Lines `range` as their own batch, for splitting a batch the
    /// processor found too large; positions move only with the last part.
    pub fn slice(&self, range: std::ops::Range<usize>, with_advances: bool) -> Batch {
        let first = self.lines[range.start].raw_start;
        let last = self.lines[range.end - 1].raw_end;
        Batch {
            raw: self.raw[first..last].to_vec(),
            lines: self.lines[range]
                .iter()
                .map(|l| LineRef {
                    raw_start: l.raw_start - first,
                    raw_end: l.raw_end - first,
                    ..l.clone()
                })
                .collect(),
            advances: if with_advances {
                self.advances.clone()
            } else {
                HashMap::new()
            },
        }
    }

    /// The gzip-compressed body.
    pub fn compress(&self, level: u32) -> Vec<u8> {
        let mut enc = GzEncoder::new(
            Vec::with_capacity(self.raw.len() / 4 + 64),
            Compression::new(level),
        );
        // Writing to a Vec cannot fail.
        let _ = enc.write_all(&self.raw);
        enc.finish().unwrap_or_default()
    }
}

/// Builds batches.
#[derive(Debug)]
pub struct Batcher {
    max_bytes: usize,
    max_age: Duration,
    opened: Option<Instant>,
    batch: Batch,
}

impl Batcher {
    /// A batcher closing batches at `max_bytes` of lines or `max_age` after
    /// their first line.
    pub fn new(max_bytes: usize, max_age: Duration) -> Batcher {
        Batcher {
            max_bytes,
            max_age,
            opened: None,
            batch: Batch::default(),
        }
    }

    /// Adds a line (without its newline) ending at `end` in `file`.
    pub fn push(
        &mut self,
        now: Instant,
        file: FileKey,
        generation: u32,
        line: &[u8],
        start: FilePosition,
        end: FilePosition,
    ) {
        self.opened.get_or_insert(now);
        let raw_start = self.batch.raw.len();
        self.batch.raw.extend_from_slice(line);
        self.batch.raw.push(b'\n');
        self.batch.lines.push(LineRef {
            file,
            file_offset: start,
            raw_start,
            raw_end: self.batch.raw.len(),
        });
        self.batch.advances.insert(file, (generation, end));
    }

    /// Moves `file`'s position past a line skipped locally.
    pub fn advance(&mut self, now: Instant, file: FileKey, generation: u32, end: FilePosition) {
        self.opened.get_or_insert(now);
        self.batch.advances.insert(file, (generation, end));
    }

    /// Whether the batch reached its size.
    pub fn is_full(&self) -> bool {
        self.batch.raw.len() >= self.max_bytes
    }

    /// Whether nothing was added since the last take.
    pub fn is_empty(&self) -> bool {
        self.opened.is_none()
    }

    /// Lines in the open batch.
    pub fn line_count(&self) -> usize {
        self.batch.lines.len()
    }

    /// Whether the open batch holds only positions of skipped lines, which
    /// need no request and can be applied at once.
    pub fn only_skips(&self) -> bool {
        !self.is_empty() && self.batch.lines.is_empty()
    }

    /// When the batch must close because of its age.
    pub fn deadline(&self) -> Option<Instant> {
        self.opened.map(|t| t + self.max_age)
    }

    /// Whether the batch should be sent now.
    pub fn is_due(&self, now: Instant) -> bool {
        self.is_full() || self.deadline().is_some_and(|d| now >= d)
    }

    /// Closes the batch and starts a new one.
    pub fn take(&mut self) -> Batch {
        self.opened = None;
        let cap = self
            .batch
            .raw
            .capacity()
            .min(self.max_bytes + self.max_bytes / 4);
        std::mem::replace(
            &mut self.batch,
            Batch {
                raw: Vec::with_capacity(cap),
                ..Batch::default()
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[tokio::test(start_paused = true)]
    async fn batches_close_on_size_or_age() {
        let mut b = Batcher::new(10, Duration::from_secs(1));
        let t0 = tokio::time::Instant::now().into_std();
        assert!(b.is_empty() && !b.is_due(t0));
        b.push(t0, 1, 0, b"abc", 0, 4);
        assert!(!b.is_due(t0));
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(!b.is_due(tokio::time::Instant::now().into_std()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(b.is_due(tokio::time::Instant::now().into_std()));
        let batch = b.take();
        assert_eq!(batch.raw, b"abc\n");
        assert!(b.is_empty());
        b.push(t0, 1, 0, b"0123456789", 4, 15);
        assert!(b.is_full() && b.is_due(t0));
    }

    #[test]
    fn advances_follow_the_last_line_or_skip_of_each_file() {
        let now = Instant::now();
        let mut b = Batcher::new(1000, Duration::from_secs(1));
        b.push(now, 1, 0, b"a", 0, 2);
        b.push(now, 2, 3, b"b", 0, 2);
        b.advance(now, 1, 0, 40);
        b.push(now, 1, 0, b"c", 40, 42);
        let batch = b.take();
        assert_eq!(batch.advances[&1], (0, 42));
        assert_eq!(batch.advances[&2], (3, 2));
        assert_eq!(batch.line(2), b"c");
        let tail = batch.slice(1..3, true);
        assert_eq!(
            (tail.raw.as_slice(), tail.line(1)),
            (&b"b\nc\n"[..], &b"c"[..])
        );
        assert!(batch.slice(0..1, false).advances.is_empty());
        let mut text = String::new();
        flate2::read::GzDecoder::new(&batch.compress(1)[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "a\nb\nc\n");
    }
}
