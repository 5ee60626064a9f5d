//! Spool files: their names, the spool-full flag, and [`SpoolWriter`], the
//! appender that the host-metrics sampler and pg-watch use.
//!
//! A spool file is `<writer>.<YYYYMMDDHH>.<pid>.ndjson` (hour in UTC): one file
//! per writer process per hour, so writers never interleave and the shipper
//! can tell from the name alone when a file's hour is over.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The flag file that tells writers to drop records: only the shipper creates
/// and removes it.
pub const SPOOL_FULL_FLAG: &str = ".spool-full";

/// An hour in UTC written as the number `YYYYMMDDHH`, as in spool file names;
/// numeric order is time order.
pub type UtcHour = u64;

/// The parts of a spool file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolName {
    pub writer: String,
    pub hour: UtcHour,
    pub pid: u32,
}

impl SpoolName {
    /// Parses a file name (not a path) against
    /// `^([a-z0-9_-]+)\.([0-9]{10})\.([0-9]+)\.ndjson$`; anything else,
    /// dot files included, is not a spool file.
    pub fn parse(file_name: &str) -> Option<SpoolName> {
        let stem = file_name.strip_suffix(".ndjson")?;
        let mut parts = stem.split('.');
        let (writer, hour, pid) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !valid_writer(writer) {
            return None;
        }
        if hour.len() != 10 || !hour.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(SpoolName {
            writer: writer.to_owned(),
            hour: hour.parse().ok()?,
            pid: pid.parse().ok()?,
        })
    }

    /// The file name for these parts.
    pub fn file_name(&self) -> String {
        format!("{}.{:010}.{}.ndjson", self.writer, self.hour, self.pid)
    }
}

fn valid_writer(writer: &str) -> bool {
    !writer.is_empty()
        && writer
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The UTC hour of `t` as `YYYYMMDDHH`.
pub fn utc_hour(t: SystemTime) -> UtcHour {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let h = (secs % 86_400) / 3600;
    (y as u64) * 1_000_000 + (m as u64) * 10_000 + (d as u64) * 100 + h
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm), so the hour in file names needs no calendar dependency.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Errors of [`SpoolWriter`].
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool writer name {0:?} is not made of a-z, 0-9, _ and -")]
    BadWriterName(String),
    #[error("spool record contains a newline: a record must be one line")]
    Newline,
    #[error("spool directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("spool file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Appends records to this process's spool file, one line per record, with
/// one `write` per record on an `O_APPEND` file so that a reader never sees
/// two records interleaved.
///
/// It rotates to a new file when the UTC hour changes, and while the
/// spool-full flag exists it refuses records and counts them in
/// [`SpoolWriter::dropped`].
#[derive(Debug)]
pub struct SpoolWriter {
    dir: PathBuf,
    writer: String,
    pid: u32,
    current: Option<(UtcHour, PathBuf, File)>,
    buf: Vec<u8>,
    written: u64,
    dropped: u64,
}

impl SpoolWriter {
    /// Opens a writer named `writer` (such as `host` or `pg-watch`) on `dir`,
    /// creating the directory when it is missing.
    ///
    /// # Errors
    /// A bad writer name, or a directory that cannot be created.
    pub fn open(dir: &Path, writer: &str) -> Result<SpoolWriter, SpoolError> {
        if !valid_writer(writer) {
            return Err(SpoolError::BadWriterName(writer.to_owned()));
        }
        std::fs::create_dir_all(dir).map_err(|source| SpoolError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        Ok(SpoolWriter {
            dir: dir.to_owned(),
            writer: writer.to_owned(),
            pid: std::process::id(),
            current: None,
            buf: Vec::new(),
            written: 0,
            dropped: 0,
        })
    }

    /// Appends one record (without its newline). Returns `Ok(false)` when the
    /// record was dropped because the spool is full.
    ///
    /// # Errors
    /// A record containing a newline, or a failed open or write; a failed
    /// write is also counted as a drop.
    pub fn append(&mut self, line: &[u8]) -> Result<bool, SpoolError> {
        if memchr::memchr(b'\n', line).is_some() {
            return Err(SpoolError::Newline);
        }
        if self.dir.join(SPOOL_FULL_FLAG).exists() {
            self.dropped += 1;
            return Ok(false);
        }
        let hour = utc_hour(SystemTime::now());
        if self.current.as_ref().is_none_or(|(h, _, _)| *h != hour) {
            let name = SpoolName {
                writer: self.writer.clone(),
                hour,
                pid: self.pid,
            };
            let path = self.dir.join(name.file_name());
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|source| SpoolError::Write {
                    path: path.clone(),
                    source,
                })?;
            self.current = Some((hour, path, file));
        }
        let Some((_, path, file)) = self.current.as_mut() else {
            unreachable!("current file set above");
        };
        self.buf.clear();
        self.buf.extend_from_slice(line);
        self.buf.push(b'\n');
        if let Err(source) = file.write_all(&self.buf) {
            self.dropped += 1;
            let path = path.clone();
            self.current = None;
            return Err(SpoolError::Write { path, source });
        }
        self.written += 1;
        Ok(true)
    }

    /// Records refused since open: spool full or a failed write.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Records written since open.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The file written last, if any.
    pub fn current_path(&self) -> Option<&Path> {
        self.current.as_ref().map(|(_, p, _)| p.as_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn names_parse_per_the_contract() {
        let n = SpoolName::parse("php.2026112711.12345.ndjson").unwrap();
        assert_eq!(
            n,
            SpoolName {
                writer: "php".into(),
                hour: 2026112711,
                pid: 12345
            }
        );
        assert_eq!(n.file_name(), "php.2026112711.12345.ndjson");
        assert!(SpoolName::parse("pg-watch.2026112711.812.ndjson").is_some());
        for bad in [
            ".spool-full",
            "php.202611271.1.ndjson",
            "PHP.2026112711.1.ndjson",
            "php.2026112711.1.ndjson.tmp",
            "php.2026112711..ndjson",
            "php.2026112711.1.2.ndjson",
            ".php.2026112711.1.ndjson",
        ] {
            assert_eq!(SpoolName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn utc_hour_matches_known_dates() {
        assert_eq!(utc_hour(UNIX_EPOCH), 1970010100);
        // 2026-11-27T11:47:44Z
        assert_eq!(
            utc_hour(UNIX_EPOCH + Duration::from_secs(1_795_779_664)),
            2026112711
        );
        // 2024-02-29T23:59:59Z, a leap day.
        assert_eq!(
            utc_hour(UNIX_EPOCH + Duration::from_secs(1_709_251_199)),
            2024022923
        );
    }

    #[test]
    fn writer_appends_lines_and_drops_while_the_spool_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SpoolWriter::open(dir.path(), "host").unwrap();
        assert!(w.append(br#"{"a":1}"#).unwrap());
        std::fs::write(dir.path().join(SPOOL_FULL_FLAG), b"").unwrap();
        assert!(!w.append(br#"{"a":2}"#).unwrap());
        std::fs::remove_file(dir.path().join(SPOOL_FULL_FLAG)).unwrap();
        assert!(w.append(br#"{"a":3}"#).unwrap());
        assert!(matches!(w.append(b"x\ny"), Err(SpoolError::Newline)));
        let path = w.current_path().unwrap().to_owned();
        let name = SpoolName::parse(path.file_name().unwrap().to_str().unwrap()).unwrap();
        assert_eq!(
            (name.writer.as_str(), name.pid),
            ("host", std::process::id())
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"a\":3}\n"
        );
        assert_eq!((w.written(), w.dropped()), (2, 1));
        assert!(matches!(
            SpoolWriter::open(dir.path(), "Bad.Name"),
            Err(SpoolError::BadWriterName(_))
        ));
    }
}
