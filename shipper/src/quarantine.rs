//! [`Quarantine`]: where lines that are not records, or that the processor
//! refused, are kept with the reason, so that they never block the stream
//! and a person can look at them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

const FILE_NAME: &str = "quarantine.ndjson";
const OLD_FILE_NAME: &str = "quarantine.1.ndjson";

#[derive(Serialize)]
struct Entry<'a> {
    ts: String,
    file: &'a Path,
    offset: u64,
    reason: &'a str,
    /// The line as text; bytes that are not UTF-8 become U+FFFD.
    line: &'a str,
}

/// Errors of [`Quarantine`].
#[derive(Debug, thiserror::Error)]
#[error("quarantine file {path}: {source}")]
pub struct QuarantineError {
    pub path: PathBuf,
    pub source: io::Error,
}

/// An append-only NDJSON file in the state directory, one entry per line
/// (`ts`, `file`, `offset`, `reason`, `line`). Past its cap it is renamed to
/// `quarantine.1.ndjson`, replacing the older one, so it stays bounded.
#[derive(Debug)]
pub struct Quarantine {
    path: PathBuf,
    old: PathBuf,
    max_bytes: u64,
    file: Option<File>,
    size: u64,
    unsynced: bool,
}

impl Quarantine {
    /// A quarantine in `state_dir` holding at most about `max_bytes` twice.
    pub fn new(state_dir: &Path, max_bytes: u64) -> Quarantine {
        Quarantine {
            path: state_dir.join(FILE_NAME),
            old: state_dir.join(OLD_FILE_NAME),
            max_bytes,
            file: None,
            size: 0,
            unsynced: false,
        }
    }

    /// The current quarantine file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry.
    ///
    /// # Errors
    /// The file cannot be opened, rotated or written.
    pub fn put(
        &mut self,
        file: &Path,
        offset: u64,
        reason: &str,
        line: &[u8],
    ) -> Result<(), QuarantineError> {
        let err = |source| QuarantineError {
            path: self.path.clone(),
            source,
        };
        let text = String::from_utf8_lossy(line);
        let entry = Entry {
            ts: bitville_schemas::format_ts(SystemTime::now()),
            file,
            offset,
            reason,
            line: &text,
        };
        let mut bytes = serde_json::to_vec(&entry).map_err(|e| err(io::Error::other(e)))?;
        bytes.push(b'\n');
        if self.file.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(err)?;
            self.size = f.metadata().map_err(err)?.len();
            self.file = Some(f);
        }
        if self.size > 0 && self.size + bytes.len() as u64 > self.max_bytes {
            self.file = None;
            fs::rename(&self.path, &self.old).map_err(err)?;
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .map_err(err)?,
            );
            self.size = 0;
        }
        let Some(f) = self.file.as_mut() else {
            unreachable!("opened above")
        };
        f.write_all(&bytes).map_err(err)?;
        self.size += bytes.len() as u64;
        self.unsynced = true;
        Ok(())
    }

    /// Syncs the file, before a checkpoint moves past the quarantined lines.
    ///
    /// # Errors
    /// fsync fails.
    pub fn sync(&mut self) -> Result<(), QuarantineError> {
        if let (true, Some(f)) = (self.unsynced, self.file.as_ref()) {
            f.sync_data().map_err(|source| QuarantineError {
                path: self.path.clone(),
                source,
            })?;
        }
        self.unsynced = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_carry_the_reason_and_the_file_rotates_at_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Quarantine::new(dir.path(), 400);
        q.put(
            Path::new("/s/php.2026112711.1.ndjson"),
            10,
            "/v: 2 is not 1",
            b"{\"v\":2}",
        )
        .unwrap();
        q.sync().unwrap();
        let text = fs::read_to_string(q.path()).unwrap();
        let entry: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(entry["reason"], "/v: 2 is not 1");
        assert_eq!(entry["line"], "{\"v\":2}");
        assert_eq!(entry["offset"], 10);
        for _ in 0..5 {
            q.put(Path::new("/s/f"), 0, "junk", &[b'x'; 100]).unwrap();
        }
        assert!(fs::metadata(q.path()).unwrap().len() <= 400);
        assert!(fs::metadata(dir.path().join(OLD_FILE_NAME)).unwrap().len() <= 400);
    }
}
