//! Helpers that the test suites of several crates share: where PostgreSQL's
//! server binaries are, and what a test does when a tool it needs is
//! missing. Only `[dev-dependencies]` use this crate.
//!
//! A test that needs a missing tool fails under the test command (`.ci/test`
//! sets `BITVILLE_REQUIRE_ALL=1`), so CI never passes by skipping; a
//! developer running one test by hand gets a friendly skip instead.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Set to `1` by `.ci/test`: a missing tool is a failure, never a skip.
pub const REQUIRE_ALL_ENV: &str = "BITVILLE_REQUIRE_ALL";

/// Overrides where PostgreSQL's server binaries (`initdb`, `pg_ctl`) are.
pub const PG_BIN_ENV: &str = "BITVILLE_PG_BIN";

/// Whether this run must have every tool.
pub fn require_all() -> bool {
    std::env::var(REQUIRE_ALL_ENV).is_ok_and(|v| v == "1")
}

/// Unwraps what a test found of its tools. When something is missing, it
/// panics under [`REQUIRE_ALL_ENV`] and otherwise prints why `test` is
/// skipped and returns `None`.
///
/// # Panics
/// A tool is missing and the run requires all of them.
pub fn require<T>(test: &str, found: Result<T, String>) -> Option<T> {
    match found {
        Ok(t) => Some(t),
        Err(reason) if require_all() => {
            panic!("{test} cannot run: {reason} ({REQUIRE_ALL_ENV}=1: a missing tool is a failure)")
        }
        Err(reason) => {
            println!("skipping {test}: {reason}");
            None
        }
    }
}

/// The folder of PostgreSQL's server binaries: [`PG_BIN_ENV`] when set,
/// else the newest major under `/usr/lib/postgresql` (Debian's layout), else
/// `pg_config --bindir`; whichever holds `initdb`.
///
/// # Errors
/// None of them holds `initdb`; the message says what to install.
pub fn postgres_bindir() -> Result<PathBuf, String> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file();
    if let Ok(dir) = std::env::var(PG_BIN_ENV) {
        let dir = PathBuf::from(dir);
        return if has_initdb(&dir) {
            Ok(dir)
        } else {
            Err(format!("{PG_BIN_ENV}={} holds no initdb", dir.display()))
        };
    }
    if let Some(dir) = newest_major(Path::new("/usr/lib/postgresql")).filter(|d| has_initdb(d)) {
        return Ok(dir);
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    match from_pg_config {
        Some(dir) if has_initdb(&dir) => Ok(dir),
        _ => Err(
            "PostgreSQL's server is not installed (Debian packages postgresql and \
                  postgresql-contrib; or set BITVILLE_PG_BIN)"
                .to_owned(),
        ),
    }
}

/// `<root>/<N>/bin` for the largest numeric `N` under `root`.
fn newest_major(root: &Path) -> Option<PathBuf> {
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin")))
        })
        .max_by_key(|(major, _)| *major)
        .map(|(_, bin)| bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_numeric_major_wins() {
        let root = std::env::temp_dir().join(format!("testkit-{}", std::process::id()));
        for d in ["9.6", "13", "17", "main"] {
            std::fs::create_dir_all(root.join(d).join("bin")).unwrap();
        }
        assert_eq!(newest_major(&root), Some(root.join("17/bin")));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_found_tool_is_handed_back() {
        assert_eq!(require("t", Ok::<_, String>(3)), Some(3));
    }
}
