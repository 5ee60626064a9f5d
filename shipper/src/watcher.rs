//! [`Watcher`]: wakes the engine when something changes in a spool
//! directory.
//!
//! Events are only a wake-up: they can be lost (queue overflow, a directory
//! created after the watch, file systems without inotify), so the engine
//! also scans on a timer and never relies on what an event says.

use std::path::PathBuf;
use std::sync::Arc;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::Notify;

/// A wake-up source for a set of directories.
pub struct Watcher {
    _inner: Option<notify::RecommendedWatcher>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("watching", &self._inner.is_some())
            .finish()
    }
}

impl Watcher {
    /// Watches `dirs`; returns the watcher and one warning per directory
    /// that could not be watched (the periodic scan still covers it).
    pub fn new(dirs: &[PathBuf]) -> (Watcher, Vec<String>) {
        let wake = Arc::new(Notify::new());
        let handler_wake = Arc::clone(&wake);
        let mut warnings = Vec::new();
        let inner = notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
            // Errors too mean "look again".
            handler_wake.notify_one();
        });
        let inner = match inner {
            Ok(mut w) => {
                for dir in dirs {
                    if let Err(e) = w.watch(dir, RecursiveMode::NonRecursive) {
                        warnings.push(format!(
                            "watching spool directory {}: {e}; relying on the periodic scan",
                            dir.display()
                        ));
                    }
                }
                Some(w)
            }
            Err(e) => {
                warnings.push(format!(
                    "file watcher unavailable: {e}; relying on the periodic scan"
                ));
                None
            }
        };
        (
            Watcher {
                _inner: inner,
                wake,
            },
            warnings,
        )
    }

    /// Waits for a change in a watched directory or until `deadline`.
    pub async fn wait(&self, deadline: tokio::time::Instant) {
        tokio::select! {
            () = self.wake.notified() => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_new_file_wakes_the_waiter_before_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let (w, warnings) = Watcher::new(&[dir.path().to_owned()]);
        assert!(warnings.is_empty(), "{warnings:?}");
        let path = dir.path().join("php.2026112711.1.ndjson");
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            std::fs::write(path, b"x\n").unwrap();
        });
        let start = tokio::time::Instant::now();
        w.wait(start + Duration::from_secs(10)).await;
        assert!(start.elapsed() < Duration::from_secs(5));
        writer.await.unwrap();
    }
}
