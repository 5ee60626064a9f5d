//! Rate limiting per client address and bounded body decoding.
//!
//! The rate limiter is a token bucket per address: `requests_per_minute`
//! tokens, refilled continuously, so a shipper that sends steadily under the
//! rate is never refused and one that bursts gets a `Retry-After` telling it
//! exactly when the next request fits. The table of addresses is capped; when
//! full, idle buckets (which are full again and so carry no state worth
//! keeping) are dropped first.

use std::collections::HashMap;
use std::io::Read;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Per-address token buckets.
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new()
    }
}

impl RateLimiter {
    pub fn new() -> Self {
        RateLimiter {
            state: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request's token for `addr`.
    ///
    /// # Errors
    /// When the bucket is empty: how long until a token is there (at least
    /// one second, as `Retry-After` counts whole seconds).
    pub fn check(
        &self,
        addr: IpAddr,
        per_minute: u32,
        max_clients: usize,
        now: Instant,
    ) -> Result<(), Duration> {
        if per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(per_minute);
        let per_sec = capacity / 60.0;
        let mut map = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(&addr) && map.len() >= max_clients {
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * per_sec
                    < capacity
            });
            if map.len() >= max_clients {
                // Still full of active clients: refuse the newcomer rather
                // than grow without bound.
                return Err(Duration::from_secs(1));
            }
        }
        let bucket = map.entry(addr).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_sec).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / per_sec;
            Err(Duration::from_secs_f64(wait.ceil().max(1.0)))
        }
    }

    /// Addresses currently tracked.
    pub fn clients(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Why a body could not be turned into NDJSON bytes.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body is empty")]
    Empty,
    #[error("body is not valid gzip: {0}")]
    BadGzip(String),
    #[error("decompressed body exceeds max_decompressed_bytes ({0} bytes)")]
    TooLargeDecompressed(usize),
    #[error("Content-Encoding {0:?} is not supported (use gzip or none)")]
    UnsupportedEncoding(String),
}

/// Decompresses a gzip body, stopping as soon as the output would pass
/// `max` bytes, so a gzip bomb costs at most `max` bytes of memory.
///
/// # Errors
/// Truncated or corrupt gzip, or output over `max`.
pub fn gunzip_bounded(body: &[u8], max: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max));
    let decoder = flate2::read::MultiGzDecoder::new(body);
    let mut limited = decoder.take(max as u64 + 1);
    limited
        .read_to_end(&mut out)
        .map_err(|e| BodyError::BadGzip(e.to_string()))?;
    if out.len() > max {
        return Err(BodyError::TooLargeDecompressed(max));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        // Best compression: a bomb is small whichever backend flate2 gets
        // (zlib-rs at level 1 leaves 10 MiB of one byte at over 100 KB).
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn bucket_allows_the_rate_then_refuses_with_a_wait() {
        let rl = RateLimiter::new();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..60 {
            assert!(rl.check(ip, 60, 10, t0).is_ok());
        }
        assert_eq!(rl.check(ip, 60, 10, t0), Err(Duration::from_secs(1)));
        assert!(rl.check(ip, 60, 10, t0 + Duration::from_secs(1)).is_ok());
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(
            rl.check(other, 60, 10, t0).is_ok(),
            "addresses are limited separately"
        );
    }

    #[test]
    fn the_client_table_is_capped() {
        let rl = RateLimiter::new();
        let t0 = Instant::now();
        for i in 0..3u8 {
            let ip = IpAddr::from([10, 0, 0, i]);
            for _ in 0..10 {
                let _ = rl.check(ip, 10, 3, t0);
            }
        }
        assert!(rl.check(IpAddr::from([10, 0, 1, 0]), 10, 3, t0).is_err());
        // A minute later the old buckets are full again and make room.
        assert!(
            rl.check(
                IpAddr::from([10, 0, 1, 0]),
                10,
                3,
                t0 + Duration::from_secs(60)
            )
            .is_ok()
        );
        assert!(rl.clients() <= 3);
    }

    #[test]
    fn gzip_round_trips_and_bombs_stop_at_the_cap() {
        assert_eq!(gunzip_bounded(&gzip(b"abc\n"), 100).unwrap(), b"abc\n");
        let bomb = gzip(&vec![b'a'; 10 << 20]);
        assert!(bomb.len() < 100_000, "the bomb is {} bytes", bomb.len());
        assert_eq!(
            gunzip_bounded(&bomb, 1 << 20),
            Err(BodyError::TooLargeDecompressed(1 << 20))
        );
    }

    #[test]
    fn truncated_gzip_is_refused() {
        let full = gzip(&vec![b'x'; 100_000]);
        let err = gunzip_bounded(&full[..full.len() / 2], 1 << 20).unwrap_err();
        assert!(matches!(err, BodyError::BadGzip(_)), "{err:?}");
    }
}
