//! [`Checkpointer`]: the acknowledged position of every tailed file, kept
//! across restarts.
//!
//! The file is versioned JSON, written to a temporary file, synced, renamed
//! over the old one and the directory synced, so a crash leaves either the
//! old or the new checkpoint. Loading tolerates a missing or unreadable
//! file: the shipper then starts files from their beginning, which costs
//! duplicates (the processor dedupes by record id), never loss.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fingerprint::{FileId, HeadSum};
use crate::tailer::FilePosition;

/// The format version this build writes and reads.
pub const CHECKPOINT_VERSION: u32 = 1;
const FILE_NAME: &str = "checkpoints.json";

/// One file's acknowledged position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheckpoint {
    /// Where the file was last seen; informative, identity is `id` + `head`.
    pub path: PathBuf,
    pub id: FileId,
    pub head: HeadSum,
    /// Every line before this byte offset is acknowledged or was skipped.
    pub offset: FilePosition,
}

#[derive(Serialize, Deserialize)]
struct CheckpointFile {
    version: u32,
    files: Vec<FileCheckpoint>,
}

/// Errors of [`Checkpointer`].
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Loads and saves the checkpoint file in the shipper's state directory.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    path: PathBuf,
    tmp: PathBuf,
    dir: PathBuf,
}

impl Checkpointer {
    /// A checkpointer for `state_dir` (created on first save).
    pub fn new(state_dir: &Path) -> Checkpointer {
        Checkpointer {
            path: state_dir.join(FILE_NAME),
            tmp: state_dir.join(format!("{FILE_NAME}.tmp")),
            dir: state_dir.to_owned(),
        }
    }

    /// The path of the checkpoint file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved checkpoints, and a warning when the file was there but
    /// could not be used (so the caller logs it and starts over).
    pub fn load(&self) -> (Vec<FileCheckpoint>, Option<String>) {
        let text = match fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (Vec::new(), None),
            Err(e) => {
                return (
                    Vec::new(),
                    Some(format!("checkpoint file {}: {e}", self.path.display())),
                );
            }
        };
        match serde_json::from_slice::<CheckpointFile>(&text) {
            Ok(f) if f.version == CHECKPOINT_VERSION => (f.files, None),
            Ok(f) => (
                Vec::new(),
                Some(format!(
                    "checkpoint file {}: version {} is not {CHECKPOINT_VERSION}, starting over",
                    self.path.display(),
                    f.version
                )),
            ),
            Err(e) => (
                Vec::new(),
                Some(format!(
                    "checkpoint file {}: {e}, starting over",
                    self.path.display()
                )),
            ),
        }
    }

    /// Replaces the checkpoint file with `files`.
    ///
    /// # Errors
    /// Creating, writing, syncing or renaming fails.
    pub fn save(&self, files: &[FileCheckpoint]) -> Result<(), CheckpointError> {
        let err = |source| CheckpointError::Io {
            path: self.path.clone(),
            source,
        };
        fs::create_dir_all(&self.dir).map_err(err)?;
        let body = serde_json::to_vec(&CheckpointFile {
            version: CHECKPOINT_VERSION,
            files: files.to_vec(),
        })
        .map_err(|e| err(io::Error::other(e)))?;
        let mut tmp = File::create(&self.tmp).map_err(err)?;
        tmp.write_all(&body).map_err(err)?;
        tmp.sync_all().map_err(err)?;
        drop(tmp);
        fs::rename(&self.tmp, &self.path).map_err(err)?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<FileCheckpoint> {
        vec![FileCheckpoint {
            path: "/spool/php.2026112711.1.ndjson".into(),
            id: FileId { dev: 1, ino: 2 },
            head: HeadSum { len: 256, sum: 42 },
            offset: 1234,
        }]
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpointer::new(&dir.path().join("state"));
        assert_eq!(cp.load(), (Vec::new(), None));
        cp.save(&sample()).unwrap();
        assert_eq!(cp.load(), (sample(), None));
        assert!(!dir.path().join("state/checkpoints.json.tmp").exists());
    }

    #[test]
    fn an_interrupted_or_foreign_file_is_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpointer::new(dir.path());
        cp.save(&sample()).unwrap();
        // A crash during a write leaves only the temporary file truncated.
        fs::write(dir.path().join("checkpoints.json.tmp"), b"{\"vers").unwrap();
        assert_eq!(cp.load(), (sample(), None));
        fs::write(cp.path(), b"{\"vers").unwrap();
        let (files, warning) = cp.load();
        assert!(files.is_empty());
        assert!(warning.unwrap().contains("starting over"));
        fs::write(cp.path(), br#"{"version":99,"files":[]}"#).unwrap();
        assert!(cp.load().1.unwrap().contains("version 99 is not 1"));
    }
}
