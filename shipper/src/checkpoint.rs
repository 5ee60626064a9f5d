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
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
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

/// The file as written: borrowed entries.
#[derive(Serialize)]
struct CheckpointOut<'a, E> {
    version: u32,
    files: &'a [E],
}

/// The file as read.
#[derive(Deserialize)]
struct CheckpointIn<E> {
    version: u32,
    files: Vec<E>,
}

/// Errors of [`Checkpointer`].
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// What [`Checkpointer::load`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded<E> {
    /// No checkpoint file: a first start.
    Missing,
    Found(Vec<E>),
    /// A torn, foreign or other-version file; the reason says which.
    Unusable(String),
}

/// Loads and saves one checkpoint file: the shipper's (`E` =
/// [`FileCheckpoint`]) or another tailer's with entries of its own (pg-watch
/// keys PostgreSQL's log files by their first line).
#[derive(Debug, Clone)]
pub struct Checkpointer<E = FileCheckpoint> {
    path: PathBuf,
    entries: PhantomData<fn() -> E>,
}

impl Checkpointer<FileCheckpoint> {
    /// The shipper's checkpointer in `state_dir` (created on first save).
    pub fn new(state_dir: &Path) -> Checkpointer {
        Checkpointer::at(&state_dir.join(FILE_NAME))
    }
}

impl<E: Serialize + DeserializeOwned> Checkpointer<E> {
    /// A checkpointer of the file at `path`; its directory is created on
    /// first save.
    pub fn at(path: &Path) -> Checkpointer<E> {
        Checkpointer {
            path: path.to_owned(),
            entries: PhantomData,
        }
    }

    /// The path of the checkpoint file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved entries, or why there are none.
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn load(&self) -> Result<Loaded<E>, CheckpointError> {
        let text = match fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::Missing),
            Err(source) => {
                return Err(CheckpointError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let path = self.path.display();
        Ok(match serde_json::from_slice::<CheckpointIn<E>>(&text) {
            Ok(f) if f.version == CHECKPOINT_VERSION => Loaded::Found(f.files),
            Ok(f) => Loaded::Unusable(format!(
                "checkpoint file {path}: version {} is not {CHECKPOINT_VERSION}, starting over",
                f.version
            )),
            Err(e) => Loaded::Unusable(format!("checkpoint file {path}: {e}, starting over")),
        })
    }

    /// The saved entries, and a warning when the file was there but could
    /// not be used (so the caller logs it and starts over: duplicates, which
    /// the processor drops, never loss).
    pub fn load_or_start_over(&self) -> (Vec<E>, Option<String>) {
        match self.load() {
            Ok(Loaded::Found(files)) => (files, None),
            Ok(Loaded::Missing) => (Vec::new(), None),
            Ok(Loaded::Unusable(warning)) => (Vec::new(), Some(warning)),
            Err(e) => (Vec::new(), Some(e.to_string())),
        }
    }

    /// Replaces the checkpoint file with `files`.
    ///
    /// # Errors
    /// Creating, writing, syncing or renaming fails.
    pub fn save(&self, files: &[E]) -> Result<(), CheckpointError> {
        let body = serde_json::to_vec(&CheckpointOut {
            version: CHECKPOINT_VERSION,
            files,
        })
        .map_err(io::Error::other)
        .and_then(|body| write_atomically(&self.path, &body));
        body.map_err(|source| CheckpointError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, renames it
/// over `path` and syncs the directory, so that a crash leaves either the
/// old or the new content. The directory is created when missing.
///
/// # Errors
/// Creating, writing, syncing or renaming fails.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
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
        assert_eq!(cp.load().unwrap(), Loaded::Missing);
        cp.save(&sample()).unwrap();
        assert_eq!(cp.load().unwrap(), Loaded::Found(sample()));
        assert_eq!(cp.load_or_start_over(), (sample(), None));
        assert!(!dir.path().join("state/checkpoints.json.tmp").exists());
    }

    #[test]
    fn an_interrupted_or_foreign_file_is_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpointer::new(dir.path());
        cp.save(&sample()).unwrap();
        // A crash during a write leaves only the temporary file truncated.
        fs::write(dir.path().join("checkpoints.json.tmp"), b"{\"vers").unwrap();
        assert_eq!(cp.load_or_start_over(), (sample(), None));
        fs::write(cp.path(), b"{\"vers").unwrap();
        let (files, warning) = cp.load_or_start_over();
        assert!(files.is_empty());
        assert!(warning.unwrap().contains("starting over"));
        fs::write(cp.path(), br#"{"version":99,"files":[]}"#).unwrap();
        assert!(
            cp.load_or_start_over()
                .1
                .unwrap()
                .contains("version 99 is not 1")
        );
    }
}
