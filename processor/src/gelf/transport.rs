//! The three ways a message leaves: UDP (best effort), TCP (optionally TLS)
//! and HTTP(S). Each reports per message what got through, so the forwarder
//! retries only the rest and moves its cursor only past what was delivered.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::config::{OutputConfig, TransportKind};
use super::message::Message;
use super::udp::UdpSender;

/// Why an output could not be set up or a send failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("gelf output {output}: {message}")]
    Setup { output: String, message: String },
    #[error("gelf output {output}: {message}")]
    Send { output: String, message: String },
}

/// What one batch send achieved; the caller counts these.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub delivered: u64,
    pub shortened: u64,
    /// Messages given up on (UDP only: best effort).
    pub dropped: u64,
}

/// One configured output, connected lazily.
pub enum Transport {
    Udp(UdpSender),
    Tcp(TcpSender),
    Http(HttpSender),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Udp(_) => "Transport::Udp",
            Transport::Tcp(_) => "Transport::Tcp",
            Transport::Http(_) => "Transport::Http",
        })
    }
}

impl Transport {
    /// # Errors
    /// The address does not resolve (UDP), the TLS roots cannot be read, or
    /// the HTTP client cannot be built.
    pub async fn new(output: &OutputConfig) -> Result<Transport, SendError> {
        let setup = |message: String| SendError::Setup {
            output: output.name.clone(),
            message,
        };
        Ok(match output.transport {
            TransportKind::Udp => Transport::Udp(
                UdpSender::new(&output.address, output.compression, output.chunk_size)
                    .await
                    .map_err(|e| setup(format!("udp {}: {e}", output.address)))?,
            ),
            TransportKind::Tcp => {
                let tls = if output.tls {
                    Some(tls_client_config(output).map_err(setup)?)
                } else {
                    None
                };
                Transport::Tcp(TcpSender::new(output, tls))
            }
            TransportKind::Http => Transport::Http(HttpSender::new(output).map_err(setup)?),
        })
    }

    /// True for transports whose failures are retried (TCP and HTTP).
    pub fn reliable(&self) -> bool {
        !matches!(self, Transport::Udp(_))
    }

    /// Sends the messages not yet marked in `done`, marking those delivered.
    ///
    /// # Errors
    /// A TCP or HTTP send failed; `done` says which messages got through before.
    pub async fn send(
        &mut self,
        messages: &[Message],
        done: &mut [bool],
    ) -> Result<Sent, SendError> {
        match self {
            Transport::Udp(u) => {
                let mut sent = Sent::default();
                for (m, d) in messages.iter().zip(done.iter_mut()).filter(|(_, d)| !**d) {
                    *d = true;
                    match u.send(m).await {
                        Ok(shortened) => {
                            sent.delivered += 1;
                            sent.shortened += u64::from(shortened);
                        }
                        Err(e) => {
                            sent.dropped += 1;
                            tracing::debug!("gelf udp send to {:?} failed: {e}", m.get("host"));
                        }
                    }
                }
                Ok(sent)
            }
            Transport::Tcp(t) => t.send(messages, done).await,
            Transport::Http(h) => h.send(messages, done).await,
        }
    }
}

/// A rustls client config with the ring provider (the one the processor's
/// own TLS uses), trusting `tls_ca` or else the system's roots.
fn tls_client_config(output: &OutputConfig) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match &output.tls_ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("tls_ca {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "tls_ca {}: no certificate in the file",
                    path.display()
                ));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("tls_ca {}: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err("no tls_ca given and no system root certificates found".to_owned());
            }
        }
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

/// GELF over TCP: each message's JSON followed by a null byte, uncompressed.
///
/// TCP has no application acknowledgement, so a batch counts as delivered
/// only once the kernel reports its send queue empty (every byte acknowledged
/// by the receiver's host) and the connection still open. A receiver that
/// dies after that point can still lose what it had not read; nothing
/// better exists without a protocol change.
pub struct TcpSender {
    output: String,
    address: String,
    server_name: Option<String>,
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
    conn: Option<(Box<dyn Stream>, i32)>,
    buf: Vec<u8>,
}

/// Bytes gathered before one write to the socket.
const TCP_WRITE_CHUNK: usize = 256 << 10;

impl TcpSender {
    fn new(output: &OutputConfig, tls: Option<Arc<ClientConfig>>) -> TcpSender {
        TcpSender {
            output: output.name.clone(),
            address: output.address.clone(),
            server_name: output.tls_server_name.clone(),
            tls,
            timeout: Duration::from_secs(output.timeout_s),
            conn: None,
            buf: Vec::with_capacity(TCP_WRITE_CHUNK),
        }
    }

    fn err(&self, message: String) -> SendError {
        SendError::Send {
            output: self.output.clone(),
            message,
        }
    }

    async fn connect(&self) -> Result<(Box<dyn Stream>, i32), SendError> {
        use std::os::fd::AsRawFd;
        let tcp = tokio::time::timeout(self.timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| self.err(format!("connect to {} timed out", self.address)))?
            .map_err(|e| self.err(format!("connect to {}: {e}", self.address)))?;
        let _ = tcp.set_nodelay(true);
        let fd = tcp.as_raw_fd();
        let Some(config) = &self.tls else {
            return Ok((Box::new(tcp), fd));
        };
        let host = match &self.server_name {
            Some(n) => n.clone(),
            None => self
                .address
                .rsplit_once(':')
                .map_or(self.address.as_str(), |(h, _)| h)
                .trim_matches(['[', ']'])
                .to_owned(),
        };
        let name = ServerName::try_from(host.clone())
            .map_err(|e| self.err(format!("tls server name {host:?}: {e}")))?;
        let tls = tokio::time::timeout(
            self.timeout,
            TlsConnector::from(config.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| self.err(format!("tls handshake with {} timed out", self.address)))?
        .map_err(|e| self.err(format!("tls handshake with {}: {e}", self.address)))?;
        Ok((Box::new(tls), fd))
    }

    async fn send(&mut self, messages: &[Message], done: &mut [bool]) -> Result<Sent, SendError> {
        let result = self.send_inner(messages).await;
        match result {
            Ok(()) => {
                let mut sent = Sent::default();
                for d in done.iter_mut().filter(|d| !**d) {
                    *d = true;
                    sent.delivered += 1;
                }
                Ok(sent)
            }
            Err(e) => {
                // Whatever was written may or may not have arrived: drop the
                // connection and let the caller send the batch again.
                self.conn = None;
                Err(e)
            }
        }
    }

    async fn send_inner(&mut self, messages: &[Message]) -> Result<(), SendError> {
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let timeout = self.timeout;
        let address = self.address.clone();
        let output = self.output.clone();
        let err = |message: String| SendError::Send {
            output: output.clone(),
            message,
        };
        let Some((stream, fd)) = self.conn.as_mut() else {
            return Err(err("not connected".into()));
        };
        let fd = *fd;
        let mut buf = std::mem::take(&mut self.buf);
        for m in messages {
            buf.extend_from_slice(&m.to_json());
            buf.push(0);
            if buf.len() >= TCP_WRITE_CHUNK {
                write_all(stream, &buf, timeout)
                    .await
                    .map_err(|e| err(format!("write to {address}: {e}")))?;
                buf.clear();
            }
        }
        if !buf.is_empty() {
            write_all(stream, &buf, timeout)
                .await
                .map_err(|e| err(format!("write to {address}: {e}")))?;
            buf.clear();
        }
        self.buf = buf;
        tokio::time::timeout(timeout, stream.flush())
            .await
            .map_err(|_| err(format!("flush to {address} timed out")))?
            .map_err(|e| err(format!("flush to {address}: {e}")))?;
        confirm_delivered(fd, timeout)
            .await
            .map_err(|e| err(format!("{address}: {e}")))?;
        // A GELF receiver never speaks, so anything readable is its close
        // (EOF, or TLS close_notify) or noise such as TLS session tickets.
        // The read is polled once and never waits.
        let mut scratch = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::ZERO, stream.read(&mut scratch)).await {
                Err(_) => return Ok(()),
                Ok(Ok(0)) => return Err(err(format!("{address} closed the connection"))),
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => return Err(err(format!("{address}: {e}"))),
            }
        }
    }
}

async fn write_all(
    stream: &mut Box<dyn Stream>,
    buf: &[u8],
    timeout: Duration,
) -> std::io::Result<()> {
    tokio::time::timeout(timeout, stream.write_all(buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))?
}

/// Waits until every byte written on `fd` is acknowledged by the peer's
/// host, then checks that the connection was not reset meanwhile.
#[cfg(target_os = "linux")]
async fn confirm_delivered(fd: i32, timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_micros(50);
    loop {
        let mut unacked: libc::c_int = 0;
        // SAFETY: fd is the open socket owned by the stream we hold; TIOCOUTQ
        // (SIOCOUTQ) writes one int.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut unacked) };
        if rc != 0 {
            return Err(format!(
                "cannot read the send queue: {}",
                std::io::Error::last_os_error()
            ));
        }
        if unacked == 0 {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "{unacked} bytes not acknowledged within {timeout:?}"
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
    let mut so_error: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: as above; SO_ERROR writes one int of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&raw mut so_error).cast(),
            &mut len,
        )
    };
    if rc == 0 && so_error != 0 {
        return Err(format!(
            "connection failed: {}",
            std::io::Error::from_raw_os_error(so_error)
        ));
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
async fn confirm_delivered(_fd: i32, _timeout: Duration) -> Result<(), String> {
    Ok(())
}

/// GELF over HTTP(S): `POST` of each message's JSON to the configured URL
/// (Graylog answers 202), on kept-alive connections, a few at once.
pub struct HttpSender {
    output: String,
    url: String,
    client: reqwest::Client,
    concurrency: usize,
}

impl HttpSender {
    fn new(output: &OutputConfig) -> Result<HttpSender, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(output.timeout_s))
            .connect_timeout(Duration::from_secs(output.timeout_s))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(output.http_concurrency)
            .tcp_nodelay(true);
        if output.address.starts_with("https://") {
            builder = builder.tls_backend_preconfigured((*tls_client_config(output)?).clone());
        }
        let client = builder.build().map_err(|e| format!("http client: {e}"))?;
        Ok(HttpSender {
            output: output.name.clone(),
            url: output.address.clone(),
            client,
            concurrency: output.http_concurrency,
        })
    }

    async fn send(&mut self, messages: &[Message], done: &mut [bool]) -> Result<Sent, SendError> {
        let mut sent = Sent::default();
        let mut tasks = tokio::task::JoinSet::new();
        let mut first_error = None;
        let mut next = 0;
        loop {
            while tasks.len() < self.concurrency && next < messages.len() {
                if !done[next] {
                    let request = self
                        .client
                        .post(&self.url)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(messages[next].to_json());
                    let i = next;
                    tasks.spawn(async move {
                        let result = match request.send().await {
                            Ok(r) if r.status().is_success() => Ok(()),
                            Ok(r) => Err(format!("HTTP status {}", r.status())),
                            Err(e) => Err(e.to_string()),
                        };
                        (i, result)
                    });
                }
                next += 1;
                if first_error.is_some() {
                    // Stop feeding after a failure; let the flight land.
                    next = messages.len();
                }
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            match joined {
                Ok((i, Ok(()))) => {
                    done[i] = true;
                    sent.delivered += 1;
                }
                Ok((_, Err(e))) => {
                    first_error.get_or_insert(e);
                    next = messages.len();
                }
                Err(e) => {
                    first_error.get_or_insert(e.to_string());
                    next = messages.len();
                }
            }
        }
        match first_error {
            None => Ok(sent),
            Some(message) => Err(SendError::Send {
                output: self.output.clone(),
                message: format!("POST {}: {message}", self.url),
            }),
        }
    }
}
