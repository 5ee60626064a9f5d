//! [`Fingerprinter`]: a file's identity, independent of its path.
//!
//! Device and inode tell files apart while they exist; a checksum of the
//! first bytes tells a reused inode from the file that had it before, since
//! every record starts with a fresh UUID.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

use serde::{Deserialize, Serialize};

/// How many leading bytes the checksum covers. One envelope is longer than
/// this, so two spool files never share their head.
pub const FINGERPRINT_BYTES: u64 = 256;

/// Device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// The checksum of a file's first `len` bytes (`len` is below
/// [`FINGERPRINT_BYTES`] only while the file is that short).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadSum {
    pub len: u64,
    pub sum: u64,
}

/// Computes and checks file identities.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fingerprinter;

impl Fingerprinter {
    /// The device and inode of `meta`.
    pub fn file_id(meta: &Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// The checksum of the first `min(size, FINGERPRINT_BYTES)` bytes.
    ///
    /// # Errors
    /// The read fails.
    pub fn head(file: &File) -> io::Result<HeadSum> {
        let mut buf = [0u8; FINGERPRINT_BYTES as usize];
        let n = read_full_at(file, &mut buf, 0)?;
        Ok(HeadSum {
            len: n as u64,
            sum: fnv1a(FNV_OFFSET, &buf[..n]),
        })
    }

    /// Whether `file` starts with the bytes that `head` was computed on.
    ///
    /// # Errors
    /// The read fails.
    pub fn matches(file: &File, head: HeadSum) -> io::Result<bool> {
        let mut buf = [0u8; FINGERPRINT_BYTES as usize];
        let want = head.len.min(FINGERPRINT_BYTES) as usize;
        let n = read_full_at(file, &mut buf[..want], 0)?;
        Ok(n == want && fnv1a(FNV_OFFSET, &buf[..n]) == head.sum)
    }

    /// The hash of the file's first line (up to [`FINGERPRINT_BYTES`]), for
    /// files whose head is not unique but whose first line is (a log file
    /// starts with a timestamp and a process id); `None` while the file has
    /// no complete first line and is shorter than that.
    ///
    /// # Errors
    /// The read fails.
    pub fn first_line(file: &File) -> io::Result<Option<u64>> {
        let mut buf = [0u8; FINGERPRINT_BYTES as usize];
        let n = read_full_at(file, &mut buf, 0)?;
        let line = match memchr::memchr(b'\n', &buf[..n]) {
            Some(end) => &buf[..end],
            None if n == buf.len() => &buf[..],
            None => return Ok(None),
        };
        Ok(Some(fnv1a(FNV_OFFSET, line)))
    }
}

fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// FNV-1a's offset basis, the usual `seed` of [`fnv1a`].
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, 64 bits, from `seed`: stable across versions and platforms,
/// which a checkpoint written by one build and read by the next needs, and
/// so does an id derived from a file's position (std's hashers promise
/// neither).
pub fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(seed, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn head_matches_until_the_first_bytes_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = File::create(&path).unwrap();
        f.write_all(b"{\"id\":\"a\"}\n").unwrap();
        let small = Fingerprinter::head(&File::open(&path).unwrap()).unwrap();
        assert_eq!(small.len, 11);
        f.write_all(&[b'x'; 400]).unwrap();
        let reader = File::open(&path).unwrap();
        assert!(
            Fingerprinter::matches(&reader, small).unwrap(),
            "growth keeps the identity"
        );
        let full = Fingerprinter::head(&reader).unwrap();
        assert_eq!(full.len, FINGERPRINT_BYTES);
        std::fs::write(&path, b"{\"id\":\"b\"}\n").unwrap();
        assert!(
            !Fingerprinter::matches(&File::open(&path).unwrap(), small).unwrap(),
            "new content, new file"
        );
        assert!(
            !Fingerprinter::matches(&File::open(&path).unwrap(), full).unwrap(),
            "shorter than the head"
        );
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
    }
}
