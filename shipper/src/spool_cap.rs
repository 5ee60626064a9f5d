//! [`SpoolCap`]: raises the spool-full flag when a spool directory outgrows
//! its cap and lowers it below 90% of the cap, so that the flag does not
//! flap while the directory hovers around the cap.

use std::io;
use std::path::{Path, PathBuf};

use crate::spool::SPOOL_FULL_FLAG;

/// Percent of the cap under which a raised flag is lowered.
pub const LOWER_PERCENT: u64 = 90;

/// What [`SpoolCap::update`] did to the flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagChange {
    Raised,
    Lowered,
}

/// The flag of one spool directory.
#[derive(Debug)]
pub struct SpoolCap {
    flag: PathBuf,
    cap: u64,
    raised: bool,
}

impl SpoolCap {
    /// Tracks `dir` with `cap` bytes, starting from whether the flag exists
    /// (a previous run may have left it raised).
    pub fn new(dir: &Path, cap: u64) -> SpoolCap {
        let flag = dir.join(SPOOL_FULL_FLAG);
        let raised = flag.exists();
        SpoolCap { flag, cap, raised }
    }

    pub fn raised(&self) -> bool {
        self.raised
    }

    /// Raises or lowers the flag for a directory holding `bytes`.
    ///
    /// # Errors
    /// The flag file cannot be created or removed.
    pub fn update(&mut self, bytes: u64) -> io::Result<Option<FlagChange>> {
        let lower_below = self.cap / 100 * LOWER_PERCENT;
        match (self.raised, bytes > self.cap, bytes < lower_below) {
            (false, true, _) => {
                std::fs::write(&self.flag, b"")?;
                self.raised = true;
                Ok(Some(FlagChange::Raised))
            }
            (true, _, true) => {
                match std::fs::remove_file(&self.flag) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                self.raised = false;
                Ok(Some(FlagChange::Lowered))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_rises_over_the_cap_and_falls_below_ninety_percent() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join(SPOOL_FULL_FLAG);
        let mut cap = SpoolCap::new(dir.path(), 1000);
        assert_eq!(cap.update(1000).unwrap(), None);
        assert_eq!(cap.update(1001).unwrap(), Some(FlagChange::Raised));
        assert!(flag.exists());
        assert_eq!(
            cap.update(950).unwrap(),
            None,
            "between 90% and the cap it stays up"
        );
        assert!(flag.exists());
        assert!(
            SpoolCap::new(dir.path(), 1000).raised(),
            "a restart sees the raised flag"
        );
        assert_eq!(cap.update(899).unwrap(), Some(FlagChange::Lowered));
        assert!(!flag.exists());
    }
}
