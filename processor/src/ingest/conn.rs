//! Connections of the HTTP port: who may open one, and how long a client
//! has to send what it announced.
//!
//! A client that opens connections and then stalls (mid-header, or after
//! the headers with the body unfinished) must not hold what other clients
//! need. So:
//! - every accepted connection is admitted against a cap per client address
//!   and a cap in all ([`Connections`]); over a cap it is refused at once;
//! - hyper closes a connection whose request headers do not arrive within
//!   `header_timeout_s` (an idle keep-alive connection too);
//! - every request body must arrive whole within `body_timeout_s` of its
//!   headers ([`TimedBody`]); reading it fails after that, the handler
//!   answers 408 and hyper closes the connection, whose body is unfinished.
//!
//! The caps and timeouts are read from the live `[limits]` when a
//! connection is accepted, so SIGHUP changes them for new connections.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::serve::Listener;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::tls::Peer;
use crate::App;

/// Why a connection was refused when it was accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("client {ip} has {max} connections open, the most max_connections_per_client allows")]
    PerClient { ip: IpAddr, max: usize },
    #[error("the processor has {max} connections open, the most max_connections allows")]
    Total { max: usize },
}

impl Refused {
    /// The label of `bitville_ingest_connections_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::PerClient { .. } => "per_client",
            Refused::Total { .. } => "total",
        }
    }

    /// The HTTP status a plain-HTTP client is told before the close.
    fn status_line(&self) -> &'static str {
        match self {
            Refused::PerClient { .. } => "429 Too Many Requests",
            Refused::Total { .. } => "503 Service Unavailable",
        }
    }
}

/// The open connections, per client address and in all.
#[derive(Debug, Default)]
pub struct Connections {
    open: Mutex<OpenCounts>,
}

#[derive(Debug, Default)]
struct OpenCounts {
    per_client: HashMap<IpAddr, usize>,
    total: usize,
}

impl Connections {
    /// Admits one more connection from `ip` unless that passes a cap. The
    /// permit gives the place back when dropped (the connection closed).
    ///
    /// # Errors
    /// `ip` already has `per_client` connections open, or there are `total` in all.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        per_client: usize,
        total: usize,
    ) -> Result<ConnectionPermit, Refused> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= total {
            return Err(Refused::Total { max: total });
        }
        let mine = open.per_client.entry(ip).or_default();
        if *mine >= per_client {
            return Err(Refused::PerClient {
                ip,
                max: per_client,
            });
        }
        *mine += 1;
        open.total += 1;
        Ok(ConnectionPermit {
            connections: self.clone(),
            ip,
        })
    }

    /// Connections open from `ip` (tests, logs).
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.per_client.get(&ip).copied().unwrap_or(0)
    }

    fn release(&self, ip: IpAddr) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_client.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_client.remove(&ip);
            }
        }
    }
}

/// One admitted connection's place; given back on drop.
#[derive(Debug)]
pub struct ConnectionPermit {
    connections: Arc<Connections>,
    ip: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.connections.release(self.ip);
    }
}

/// Admits a connection from `peer` against the live limits, counting a refusal.
///
/// # Errors
/// A cap is reached (see [`Connections::admit`]).
pub fn admit(app: &App, peer: SocketAddr) -> Result<ConnectionPermit, Refused> {
    let (_, limits) = app.live();
    app.connections
        .admit(
            peer.ip(),
            limits.max_connections_per_client,
            limits.max_connections,
        )
        .inspect_err(|refused| {
            tracing::debug!("connection from {peer} refused: {refused}");
            app.metrics.connection_refused(refused.reason());
        })
}

/// A stream that holds its connection's place while it lives.
#[derive(Debug)]
pub struct Admitted<Io> {
    io: Io,
    _permit: ConnectionPermit,
}

impl<Io> Admitted<Io> {
    pub fn new(io: Io, permit: ConnectionPermit) -> Self {
        Admitted {
            io,
            _permit: permit,
        }
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for Admitted<Io> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Admitted<Io> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Plain TCP: accepts connections and yields the admitted ones. A refused
/// one is told why in a short HTTP answer (when its socket takes it without
/// waiting) and closed.
pub struct PlainListener {
    tcp: TcpListener,
    app: Arc<App>,
}

impl PlainListener {
    pub fn new(tcp: TcpListener, app: Arc<App>) -> Self {
        PlainListener { tcp, app }
    }
}

impl Listener for PlainListener {
    type Io = Admitted<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, peer) = match self.tcp.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, not spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match admit(&self.app, peer) {
                Ok(permit) => return (Admitted::new(stream, permit), peer),
                Err(refused) => tell_refused(&stream, &refused),
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Writes the refusal as an HTTP answer without waiting: the socket is
/// fresh, so its send buffer takes it, and a client that reads nothing
/// cannot hold the accept loop.
fn tell_refused(stream: &TcpStream, refused: &Refused) {
    let body = serde_json::json!({ "error": refused.to_string() }).to_string();
    let answer = format!(
        "HTTP/1.1 {}\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        refused.status_line(),
        body.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyReadError {
    #[error("body not received within {} s (limits.body_timeout_s)", .0.as_secs())]
    TimedOut(Duration),
    #[error("body could not be read: {0}")]
    Read(#[source] hyper::Error),
}

impl BodyReadError {
    /// The body timeout, when `e` or an error under it is one.
    pub fn timeout_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyReadError> {
        let mut next = Some(e);
        while let Some(err) = next {
            if let Some(found @ BodyReadError::TimedOut(_)) = err.downcast_ref() {
                return Some(found);
            }
            next = err.source();
        }
        None
    }
}

/// A request body that fails once its deadline passes, so that no handler
/// (the ingest route, a JSON extractor) waits for a stalled client longer
/// than `body_timeout_s`.
pub struct TimedBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl TimedBody {
    /// `inner` must arrive whole within `timeout` from now.
    pub fn new(inner: Incoming, timeout: Duration) -> Self {
        TimedBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = BodyReadError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyReadError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BodyReadError::Read)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(BodyReadError::TimedOut(this.timeout))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}

/// Serves `router` on `listener` until `shutdown`, then stops accepting,
/// lets every connection finish its request in flight, and returns.
/// Dropping the returned future (the processor aborts it after its grace
/// period) drops every connection with it: they live in one `JoinSet`.
pub async fn serve<L>(
    mut listener: L,
    app: Arc<App>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) where
    L: Listener<Addr = SocketAddr>,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            (io, peer) = listener.accept() => {
                let (_, limits) = app.live();
                let timeouts = Timeouts {
                    header: Duration::from_secs(limits.header_timeout_s),
                    body: Duration::from_secs(limits.body_timeout_s),
                };
                connections.spawn(serve_connection(io, peer, router.clone(), timeouts, stop_rx.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    stop_tx.send_replace(true);
    while connections.join_next().await.is_some() {}
}

/// The timeouts of one connection, from the limits when it was accepted.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header: Duration,
    body: Duration,
}

async fn serve_connection<Io>(
    io: Io,
    peer: SocketAddr,
    router: Router,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
) where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let mut request = request.map(|body| Body::new(TimedBody::new(body, timeouts.body)));
        request.extensions_mut().insert(ConnectInfo(Peer(peer)));
        let mut router = router.clone();
        async move {
            let response = tower_service::Service::call(&mut router, request).await;
            Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!("connection from {peer} ended: {e}");
            }
            return;
        }
        _ = stop.wait_for(|stopping| *stopping) => connection.as_mut().graceful_shutdown(),
    }
    if let Err(e) = connection.await {
        tracing::debug!("connection from {peer} ended at shutdown: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The caps count per address and in all, and a dropped permit gives
    /// its place back.
    #[test]
    fn connections_are_capped_per_address_and_in_all() {
        let connections = Arc::new(Connections::default());
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let first = connections.admit(a, 2, 3).unwrap();
        let _second = connections.admit(a, 2, 3).unwrap();
        assert_eq!(
            connections.admit(a, 2, 3).unwrap_err(),
            Refused::PerClient { ip: a, max: 2 }
        );
        let _third = connections.admit(b, 2, 3).unwrap();
        assert_eq!(
            connections.admit(b, 2, 3).unwrap_err(),
            Refused::Total { max: 3 }
        );
        drop(first);
        assert_eq!(connections.open_from(a), 1);
        assert!(connections.admit(a, 2, 3).is_ok());
    }
}
