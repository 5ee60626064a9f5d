//! The application's upstream services (shipping rates, payments) as one
//! small HTTP server on loopback, whose answer delay per path the scenarios
//! turn up: "the external call that slows down".

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long each path waits before it answers.
type Delays = Arc<Mutex<HashMap<String, Duration>>>;

pub struct Upstream {
    pub addr: String,
    delays: Delays,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Listens on a free loopback port; every path answers at once until
    /// [`Upstream::set_delay`] says otherwise.
    ///
    /// # Errors
    /// No port could be bound.
    pub fn start() -> Result<Upstream, String> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| format!("upstream: bind: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("upstream: {e}"))?
            .to_string();
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("upstream: {e}"))?;
        let delays: Delays = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (delays, stop) = (delays.clone(), stop.clone());
            std::thread::spawn(move || accept_loop(&listener, &delays, &stop))
        };
        Ok(Upstream {
            addr,
            delays,
            stop,
            thread: Some(thread),
        })
    }

    /// The base URL the application is given.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on, `path` answers after `delay`.
    pub fn set_delay(&self, path: &str, delay: Duration) {
        self.delays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.to_owned(), delay);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, delays: &Delays, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let delays = delays.clone();
                std::thread::spawn(move || {
                    let _ = answer(stream, &delays);
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Reads the request head, waits the path's delay, answers "ok <path>".
fn answer(stream: TcpStream, delays: &Delays) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let target = request_line.split(' ').nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/");
    let delay = delays
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(path)
        .copied()
        .unwrap_or_default();
    std::thread::sleep(delay);
    let body = format!("ok {path}\n");
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
