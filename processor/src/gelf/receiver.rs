//! The project's own GELF receiver, for tests and the benchmark: UDP
//! (reassembling chunks, decompressing gzip or zlib), TCP (null-byte
//! delimited, optionally TLS) and HTTP (`POST /gelf`). Every message is
//! checked against [`super::message::check`]; each broken rule is kept as a
//! violation, so a test asserts there are none.
//!
//! Stopping it is graceful, like a Graylog restart: it stops accepting,
//! closes its side of each TCP connection and reads what the sender had
//! already written until the sender closes (or a grace period ends).

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use super::message::check;
use super::udp::{CHUNK_HEADER, CHUNK_MAGIC, MAX_CHUNKS};

/// How long chunks of an incomplete message are kept (the GELF spec's 5 s).
const CHUNK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stopping receiver reads a connection before closing it.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// One received message.
#[derive(Debug, Clone)]
pub struct Received {
    pub transport: &'static str,
    /// none, gzip or zlib (UDP); none otherwise.
    pub compression: &'static str,
    /// Datagrams it came in (1 when unchunked).
    pub chunks: usize,
    pub message: Value,
}

#[derive(Debug, Default)]
struct Shared {
    messages: Mutex<Vec<Received>>,
    violations: Mutex<Vec<String>>,
    arrived: Notify,
    /// Whether to keep messages (off for the benchmark, which only counts).
    keep: bool,
    count: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn accept(
        &self,
        transport: &'static str,
        compression: &'static str,
        chunks: usize,
        bytes: &[u8],
    ) {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(message) => {
                if let Err(e) = check(&message) {
                    self.violation(format!("{transport}: {e}"));
                }
                self.count
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if self.keep {
                    self.messages
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Received {
                            transport,
                            compression,
                            chunks,
                            message,
                        });
                }
            }
            Err(e) => self.violation(format!("{transport}: message is not JSON: {e}")),
        }
        self.arrived.notify_waiters();
    }

    fn violation(&self, why: String) {
        self.violations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(why);
    }
}

/// Where a receiver listens; port 0 picks a free port.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub http: SocketAddr,
}

impl Addrs {
    pub fn loopback() -> Addrs {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Addrs {
            udp: any,
            tcp: any,
            http: any,
        }
    }
}

/// A running receiver.
#[derive(Debug)]
pub struct Receiver {
    addrs: Addrs,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    /// Listens on `addrs`; TCP speaks TLS when `tls` is given. `keep` false
    /// only counts messages (benchmarks).
    ///
    /// # Errors
    /// A socket cannot be bound.
    pub async fn start(
        addrs: Addrs,
        tls: Option<Arc<ServerConfig>>,
        keep: bool,
    ) -> std::io::Result<Receiver> {
        let shared = Arc::new(Shared {
            keep,
            ..Shared::default()
        });
        let (stop, _) = watch::channel(false);
        let udp = UdpSocket::bind(addrs.udp).await?;
        grow_receive_buffer(&udp);
        let tcp = TcpListener::bind(addrs.tcp).await?;
        let http = TcpListener::bind(addrs.http).await?;
        let bound = Addrs {
            udp: udp.local_addr()?,
            tcp: tcp.local_addr()?,
            http: http.local_addr()?,
        };
        let tasks = vec![
            tokio::spawn(serve_udp(udp, shared.clone(), stop.subscribe())),
            tokio::spawn(serve_tcp(tcp, tls, shared.clone(), stop.subscribe())),
            tokio::spawn(serve_http(http, shared.clone(), stop.subscribe())),
        ];
        Ok(Receiver {
            addrs: bound,
            shared,
            stop,
            tasks,
        })
    }

    pub fn addrs(&self) -> Addrs {
        self.addrs
    }

    /// Messages received so far (when kept).
    pub fn messages(&self) -> Vec<Received> {
        self.shared
            .messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Messages received so far, kept or not.
    pub fn count(&self) -> u64 {
        self.shared.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every rule broken so far, one line each.
    pub fn violations(&self) -> Vec<String> {
        self.shared
            .violations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until at least `n` messages arrived; false on timeout.
    pub async fn wait_for(&self, n: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.shared.arrived.notified();
            if self.count() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.count() >= n;
            }
        }
    }

    /// Stops gracefully (see the module doc) and returns what it received.
    pub async fn stop(self) -> Vec<Received> {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.shared
            .messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A 128-chunk message arrives as one burst of up to 1 MiB of datagrams;
/// the kernel's default receive buffer (about 200 KiB) would drop part of
/// it, so ask for 16 MiB, as Graylog's own inputs do with `recv_buffer_size`.
fn grow_receive_buffer(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 16 << 20;
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: a valid socket and a pointer to one int of `len` bytes.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&raw const size).cast(),
                len,
            )
        };
        if rc == 0 {
            return;
        }
    }
}

/// Chunks of one message being reassembled.
struct Partial {
    parts: Vec<Option<Vec<u8>>>,
    have: usize,
    first: Instant,
}

/// Reassembles chunked datagrams; whole payloads come out of [`Reassembler::push`].
#[derive(Default)]
pub struct Reassembler {
    partial: HashMap<[u8; 8], Partial>,
}

impl Reassembler {
    /// Takes one datagram. `Ok(Some((payload, chunks)))` when a message is
    /// complete, `Ok(None)` while chunks are missing.
    ///
    /// # Errors
    /// A chunk header breaks the spec (count over 128, sequence out of range,
    /// a count that changes within one message).
    pub fn push(
        &mut self,
        datagram: &[u8],
        now: Instant,
    ) -> Result<Option<(Vec<u8>, usize)>, String> {
        self.partial
            .retain(|_, p| now.duration_since(p.first) < CHUNK_TIMEOUT);
        if datagram.len() < 2 || datagram[..2] != CHUNK_MAGIC {
            return Ok(Some((datagram.to_vec(), 1)));
        }
        if datagram.len() < CHUNK_HEADER {
            return Err(format!(
                "chunk of {} bytes is shorter than its header",
                datagram.len()
            ));
        }
        let id: [u8; 8] = datagram[2..10]
            .try_into()
            .map_err(|_| "chunk id".to_owned())?;
        let (seq, count) = (datagram[10] as usize, datagram[11] as usize);
        if count == 0 || count > MAX_CHUNKS || seq >= count {
            return Err(format!(
                "chunk {seq} of {count}: sequence or count out of range (at most {MAX_CHUNKS} chunks)"
            ));
        }
        let p = self.partial.entry(id).or_insert_with(|| Partial {
            parts: vec![None; count],
            have: 0,
            first: now,
        });
        if p.parts.len() != count {
            return Err(format!(
                "chunk count {count} differs from {} within one message",
                p.parts.len()
            ));
        }
        if p.parts[seq].is_none() {
            p.parts[seq] = Some(datagram[CHUNK_HEADER..].to_vec());
            p.have += 1;
        }
        if p.have < count {
            return Ok(None);
        }
        let done = self
            .partial
            .remove(&id)
            .map(|p| p.parts)
            .unwrap_or_default();
        Ok(Some((
            done.into_iter().flatten().flatten().collect(),
            count,
        )))
    }
}

/// Decompresses a UDP payload by its magic bytes.
///
/// # Errors
/// The payload claims gzip or zlib and does not inflate.
pub fn decompress(payload: &[u8]) -> Result<(Vec<u8>, &'static str), String> {
    let mut out = Vec::new();
    match payload {
        [0x1f, 0x8b, ..] => {
            flate2::read::GzDecoder::new(payload)
                .read_to_end(&mut out)
                .map_err(|e| format!("gzip payload: {e}"))?;
            Ok((out, "gzip"))
        }
        [0x78, ..] => {
            flate2::read::ZlibDecoder::new(payload)
                .read_to_end(&mut out)
                .map_err(|e| format!("zlib payload: {e}"))?;
            Ok((out, "zlib"))
        }
        _ => Ok((payload.to_vec(), "none")),
    }
}

async fn serve_udp(socket: UdpSocket, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 65_536];
    let mut reassembler = Reassembler::default();
    loop {
        let n = tokio::select! {
            r = socket.recv_from(&mut buf) => match r { Ok((n, _)) => n, Err(_) => continue },
            _ = stopped(&mut stop) => return,
        };
        match reassembler.push(&buf[..n], Instant::now()) {
            Ok(Some((payload, chunks))) => match decompress(&payload) {
                Ok((json, compression)) => shared.accept("udp", compression, chunks, &json),
                Err(e) => shared.violation(format!("udp: {e}")),
            },
            Ok(None) => {}
            Err(e) => shared.violation(format!("udp: {e}")),
        }
    }
}

/// Resolves once the receiver is told to stop (the guard of `wait_for` is
/// not `Send`, so it must not live in a `select!` output).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

async fn serve_tcp(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
            _ = stopped(&mut stop) => break,
        };
        let (shared, stop, tls) = (shared.clone(), stop.clone(), tls.clone());
        conns.spawn(async move {
            let conn: Box<dyn Conn> = match tls {
                Some(config) => match TlsAcceptor::from(config).accept(stream).await {
                    Ok(s) => Box::new(s),
                    Err(e) => return shared.violation(format!("tcp: tls handshake: {e}")),
                },
                None => Box::new(stream),
            };
            read_frames(conn, shared, stop).await;
        });
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// Reads null-delimited frames until EOF; on stop, closes its side and
/// keeps reading until the sender closes or [`DRAIN_GRACE`] ends.
async fn read_frames(
    mut conn: Box<dyn Conn>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let n = match deadline {
            None => tokio::select! {
                r = conn.read(&mut buf) => r,
                _ = stopped(&mut stop) => {
                    let _ = conn.shutdown().await;
                    deadline = Some(tokio::time::Instant::now() + DRAIN_GRACE);
                    continue;
                }
            },
            Some(d) => match tokio::time::timeout_at(d, conn.read(&mut buf)).await {
                Ok(r) => r,
                Err(_) => break,
            },
        };
        let n = match n {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|b| *b == 0) {
            let frame = &pending[start..start + end];
            if !frame.is_empty() {
                shared.accept("tcp", "none", 1, frame);
            }
            start += end + 1;
        }
        pending.drain(..start);
    }
    if !pending.is_empty() {
        shared.violation(format!(
            "tcp: {} bytes after the last null byte when the connection ended",
            pending.len()
        ));
    }
}

async fn serve_http(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    let route = move |headers: HeaderMap, body: Bytes| {
        let shared = shared.clone();
        async move {
            let encoding = headers
                .get("content-encoding")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let json = match encoding {
                "gzip" | "deflate" => match decompress(&body) {
                    Ok((j, _)) => j,
                    Err(e) => {
                        shared.violation(format!("http: {e}"));
                        return StatusCode::BAD_REQUEST;
                    }
                },
                _ => body.to_vec(),
            };
            shared.accept("http", "none", 1, &json);
            StatusCode::ACCEPTED
        }
    };
    let app = axum::Router::new().route("/gelf", axum::routing::post(route));
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            stopped(&mut stop).await;
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gelf::config::Compression;
    use crate::gelf::message::Message;
    use crate::gelf::udp::Encoder;

    #[test]
    fn reassembles_out_of_order_and_duplicated_chunks() {
        let e = Encoder::new(Compression::Gzip, 100);
        let mut m = Message::new("h", "chunked", 1_000_000, 6);
        let text: String = (0..3000u32)
            .map(|i| char::from(b'a' + (i.wrapping_mul(2_654_435_761) >> 27) as u8 % 26))
            .collect();
        m.full_message(text);
        let enc = e.encode(&m).unwrap();
        assert!(enc.datagrams.len() > 3);
        let mut r = Reassembler::default();
        let now = Instant::now();
        let mut order: Vec<&Vec<u8>> = enc.datagrams.iter().rev().collect();
        order.insert(1, order[0]);
        let mut out = None;
        for d in order {
            if let Some(done) = r.push(d, now).unwrap() {
                assert!(out.is_none(), "completed once");
                out = Some(done);
            }
        }
        let (payload, chunks) = out.unwrap();
        assert_eq!(chunks, enc.datagrams.len());
        let (json, compression) = decompress(&payload).unwrap();
        assert_eq!(compression, "gzip");
        assert_eq!(json, m.to_json());
    }

    #[test]
    fn stale_chunks_expire_and_bad_headers_are_reported() {
        let e = Encoder::new(Compression::None, 64);
        let enc = e.chunk(vec![b'x'; 500]);
        let mut r = Reassembler::default();
        let t0 = Instant::now();
        assert!(r.push(&enc[0], t0).unwrap().is_none());
        for d in &enc[1..] {
            assert!(
                r.push(d, t0 + CHUNK_TIMEOUT + Duration::from_secs(1))
                    .unwrap()
                    .is_none(),
                "chunk 0 expired"
            );
        }
        let mut bad = enc[0].clone();
        bad[11] = 200;
        assert!(r.push(&bad, t0).unwrap_err().contains("out of range"));
    }
}
