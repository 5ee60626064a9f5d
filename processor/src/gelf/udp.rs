//! GELF over UDP: compression and chunking, as the GELF 1.1 spec says.
//!
//! A payload larger than one datagram is split into chunks, each with a
//! 12-byte header: the magic bytes 0x1e 0x0f, an 8-byte message id shared by
//! the chunks, the sequence number and the count. Graylog accepts at most
//! [`MAX_CHUNKS`] chunks, so a message that needs more is shortened first
//! ([`Message::shorten`]). UDP is best effort: nothing is retried.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::{Compress, Crc, FlushCompress, Status};

use super::config::Compression;
use super::message::Message;

pub const CHUNK_MAGIC: [u8; 2] = [0x1e, 0x0f];
pub const CHUNK_HEADER: usize = 12;
pub const MAX_CHUNKS: usize = 128;
/// The smallest datagram size accepted in the config: a header and some data.
pub const MIN_CHUNK_SIZE: usize = 64;

/// Turns messages into datagrams.
#[derive(Debug)]
pub struct Encoder {
    compression: Compression,
    chunk_size: usize,
    /// Message ids: a random start, then counting, so ids of one sender never
    /// repeat within the receiver's reassembly window.
    next_id: AtomicU64,
    /// The deflate state, reset and reused for every message: making a new
    /// one allocates and clears hundreds of KiB of tables, which cost more
    /// than compressing a 1 KB message (the benchmark showed it).
    deflate: Mutex<Option<Compress>>,
}

/// The fixed gzip header (RFC 1952): deflate, no flags, no time, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// The datagrams of one message, and whether it had to be shortened.
#[derive(Debug)]
pub struct Encoded {
    pub datagrams: Vec<Vec<u8>>,
    pub shortened: bool,
}

impl Encoder {
    pub fn new(compression: Compression, chunk_size: usize) -> Encoder {
        let seed = u64::from_le_bytes(
            uuid::Uuid::new_v4().as_bytes()[..8]
                .try_into()
                .unwrap_or_default(),
        );
        Encoder {
            compression,
            chunk_size: chunk_size.max(MIN_CHUNK_SIZE),
            next_id: AtomicU64::new(seed),
            deflate: Mutex::new(None),
        }
    }

    /// Largest payload (after compression) that fits in [`MAX_CHUNKS`] chunks.
    pub fn max_payload(&self) -> usize {
        MAX_CHUNKS * (self.chunk_size - CHUNK_HEADER)
    }

    /// The payload as configured: gzip or zlib (deflate at the fast level:
    /// the forwarder must keep up with ingest on one core, and GELF payloads
    /// are small enough that the ratio barely moves), or the JSON as it is.
    /// Should deflate ever fail, the JSON goes uncompressed, which receivers
    /// tell by its first byte.
    pub fn compress(&self, json: &[u8]) -> Vec<u8> {
        let gzip = match self.compression {
            Compression::None => return json.to_vec(),
            Compression::Gzip => true,
            Compression::Zlib => false,
        };
        let mut guard = self.deflate.lock().unwrap_or_else(|e| e.into_inner());
        let deflate =
            guard.get_or_insert_with(|| Compress::new(flate2::Compression::fast(), !gzip));
        deflate.reset();
        let mut out = Vec::with_capacity(json.len() / 2 + 64);
        if gzip {
            out.extend_from_slice(&GZIP_HEADER);
        }
        loop {
            let consumed = usize::try_from(deflate.total_in())
                .unwrap_or(json.len())
                .min(json.len());
            match deflate.compress_vec(&json[consumed..], &mut out, FlushCompress::Finish) {
                Ok(Status::StreamEnd) => break,
                // The output is full: give it room and go on.
                Ok(Status::Ok | Status::BufError) => out.reserve(out.capacity().max(64)),
                Err(_) => return json.to_vec(),
            }
        }
        if gzip {
            let mut crc = Crc::new();
            crc.update(json);
            out.extend_from_slice(&crc.sum().to_le_bytes());
            out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        }
        out
    }

    /// Compresses and chunks a message, shortening it when it would need
    /// more than [`MAX_CHUNKS`] chunks. `None` when even the bare message
    /// does not fit (a chunk size far too small).
    pub fn encode(&self, message: &Message) -> Option<Encoded> {
        let mut payload = self.compress(&message.to_json());
        let mut shortened = false;
        if payload.len() > self.max_payload() {
            let max = self.max_payload();
            let mut fitted = None;
            message.shorten(&mut |json| {
                let p = self.compress(json);
                let ok = p.len() <= max;
                if ok {
                    fitted = Some(p);
                }
                ok
            })?;
            payload = fitted?;
            shortened = true;
        }
        Some(Encoded {
            datagrams: self.chunk(payload),
            shortened,
        })
    }

    /// Splits a payload into datagrams; one that fits goes whole, unchunked.
    pub fn chunk(&self, payload: Vec<u8>) -> Vec<Vec<u8>> {
        if payload.len() <= self.chunk_size {
            return vec![payload];
        }
        let data = self.chunk_size - CHUNK_HEADER;
        let count = payload.len().div_ceil(data);
        debug_assert!(count <= MAX_CHUNKS);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        payload
            .chunks(data)
            .enumerate()
            .map(|(seq, part)| {
                let mut d = Vec::with_capacity(CHUNK_HEADER + part.len());
                d.extend_from_slice(&CHUNK_MAGIC);
                d.extend_from_slice(&id);
                d.push(seq as u8);
                d.push(count as u8);
                d.extend_from_slice(part);
                d
            })
            .collect()
    }
}

/// Sends datagrams to one address from an unconnected socket, so an ICMP
/// "port unreachable" never turns into an error on a later send.
#[derive(Debug)]
pub struct UdpSender {
    socket: tokio::net::UdpSocket,
    target: SocketAddr,
    pub encoder: Encoder,
}

impl UdpSender {
    /// # Errors
    /// The address does not resolve or no socket can be bound.
    pub async fn new(
        address: &str,
        compression: Compression,
        chunk_size: usize,
    ) -> std::io::Result<UdpSender> {
        let target = tokio::net::lookup_host(address)
            .await?
            .next()
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{address} resolves to nothing"),
                )
            })?;
        let bind: SocketAddr = if target.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let socket = tokio::net::UdpSocket::bind(bind).await?;
        Ok(UdpSender {
            socket,
            target,
            encoder: Encoder::new(compression, chunk_size),
        })
    }

    /// Sends one message. `Ok(shortened)`, or an error when a datagram could
    /// not leave (the caller counts a failure and moves on).
    ///
    /// # Errors
    /// The message cannot be made to fit, or the socket refused a datagram.
    pub async fn send(&self, message: &Message) -> std::io::Result<bool> {
        let encoded = self.encoder.encode(message).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "message does not fit in 128 chunks even shortened",
            )
        })?;
        for d in &encoded.datagrams {
            self.socket.send_to(d, self.target).await?;
        }
        Ok(encoded.shortened)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_payload_goes_unchunked() {
        let e = Encoder::new(Compression::None, 1420);
        let d = e.chunk(vec![b'{'; 1420]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].len(), 1420);
    }

    #[test]
    fn chunks_carry_magic_id_seq_and_count() {
        let e = Encoder::new(Compression::None, 100);
        let payload: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let d = e.chunk(payload.clone());
        assert_eq!(d.len(), 1000usize.div_ceil(88));
        let mut joined = Vec::new();
        for (i, c) in d.iter().enumerate() {
            assert!(c.len() <= 100);
            assert_eq!(&c[..2], &CHUNK_MAGIC);
            assert_eq!(&c[2..10], &d[0][2..10], "one id for all chunks");
            assert_eq!(c[10] as usize, i);
            assert_eq!(c[11] as usize, d.len());
            joined.extend_from_slice(&c[12..]);
        }
        assert_eq!(joined, payload);
        let next = e.chunk(vec![0; 200]);
        assert_ne!(next[0][2..10], d[0][2..10], "a new message gets a new id");
    }

    #[test]
    fn oversized_message_is_shortened_to_128_chunks() {
        let e = Encoder::new(Compression::None, MIN_CHUNK_SIZE);
        let mut m = Message::new("h", "big", 0, 6);
        // Incompressible-ish text well over 128 * 52 bytes.
        let text: String = (0..20_000u32)
            .map(|i| char::from(b'a' + (i.wrapping_mul(2_654_435_761) >> 27) as u8 % 26))
            .collect();
        m.full_message(text);
        let enc = e.encode(&m).unwrap();
        assert!(enc.shortened);
        assert!(enc.datagrams.len() <= MAX_CHUNKS);
        let small = e.encode(&Message::new("h", "small", 0, 6)).unwrap();
        assert!(!small.shortened);
    }

    #[test]
    fn compression_round_trips() {
        use std::io::Read;
        let json = br#"{"version":"1.1","host":"h","short_message":"s"}"#.repeat(20);
        let gz = Encoder::new(Compression::Gzip, 1420).compress(&json);
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, json);
        let zlib = Encoder::new(Compression::Zlib, 1420);
        // The reused deflate state must not carry anything from one message to the next.
        for text in [&json[..], b"{}", &json[..7]] {
            let z = zlib.compress(text);
            assert_eq!(z[0], 0x78);
            out.clear();
            flate2::read::ZlibDecoder::new(&z[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, text);
        }
        let gzip = Encoder::new(Compression::Gzip, 1420);
        let big: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        for text in [&big[..], &json[..]] {
            out.clear();
            flate2::read::GzDecoder::new(&gzip.compress(text)[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, text, "gzip of {} bytes", text.len());
        }
    }
}
