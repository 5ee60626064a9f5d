//! Helpers shared by the integration tests and the ingest benchmark: a
//! minimal HTTP/1.1 client over a plain TCP socket (so the tests speak the
//! wire protocol themselves), record generators, and a processor on port 0.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{Value, json};

/// A response: status, lower-cased headers, body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 connection, reused across requests (keep-alive).
pub struct Client {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        Client { addr, stream: None }
    }

    /// A client whose first request goes over `stream` (a socket bound to
    /// another loopback address, say); later ones reconnect as usual.
    pub fn over(addr: SocketAddr, stream: TcpStream) -> Self {
        Client {
            addr,
            stream: Some(BufReader::new(stream)),
        }
    }

    fn connect(&mut self) -> std::io::Result<&mut BufReader<TcpStream>> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(120)))?;
            self.stream = Some(BufReader::new(s));
        }
        Ok(self.stream.as_mut().expect("connected above"))
    }

    /// Sends a request and reads the response. A server that answers before
    /// reading the whole body (413) may close the socket while we write; the
    /// response is read all the same.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let reused = self.stream.is_some();
        let mut result = self.send_and_read(head.as_bytes(), body);
        if result.is_err() {
            self.stream = None;
            // A kept-alive connection the server closed meanwhile (it does
            // after refusing a body it did not read): retry once, fresh.
            if reused {
                result = self.send_and_read(head.as_bytes(), body);
                if result.is_err() {
                    self.stream = None;
                }
            }
        }
        result
    }

    fn send_and_read(&mut self, head: &[u8], body: &[u8]) -> std::io::Result<Response> {
        let conn = self.connect()?;
        conn.get_mut().write_all(head)?;
        // Write the body on another thread while this one waits for the
        // answer: a server that refuses early (413) answers before it has
        // read the body, then closes.
        let mut writer = conn.get_ref().try_clone()?;
        let (resp, write_error) = std::thread::scope(|s| {
            let w = s.spawn(move || writer.write_all(body).err());
            let resp = read_response(conn);
            if resp.is_ok() && resp.as_ref().is_ok_and(|r| r.status == 413) {
                let _ = conn.get_ref().shutdown(std::net::Shutdown::Both);
            }
            (resp, w.join().unwrap_or(None))
        });
        match (resp, write_error) {
            (Ok(r), _) => {
                if r.header("connection") == Some("close") || write_error_pending(&r) {
                    self.stream = None;
                }
                Ok(r)
            }
            (Err(e), Some(w)) => Err(std::io::Error::new(
                e.kind(),
                format!("{e} (after write error {w})"),
            )),
            (Err(e), None) => Err(e),
        }
    }

    pub fn post_ndjson(&mut self, token: &str, body: &[u8], gzip: bool) -> Response {
        let auth = format!("Bearer {token}");
        let mut headers = vec![
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/x-ndjson"),
        ];
        if gzip {
            headers.push(("Content-Encoding", "gzip"));
        }
        self.request("POST", "/v1/ingest", &headers, body)
            .expect("ingest request")
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.request("GET", path, &[], b"").expect("GET request")
    }
}

fn write_error_pending(r: &Response) -> bool {
    r.status == 413
}

pub fn read_response(conn: &mut impl BufRead) -> std::io::Result<Response> {
    let mut line = String::new();
    conn.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        line.clear();
        conn.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
            if k == "content-length" {
                length = v.parse().unwrap_or(0);
            }
            headers.push((k, v));
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// A blocking TCP connection to `to` from the loopback address `from`
/// (127.0.0.2, ...), so one test can be several client addresses.
pub fn connect_from(rt: &tokio::runtime::Runtime, from: [u8; 4], to: SocketAddr) -> TcpStream {
    let stream = rt
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((from, 0)))?;
            socket.connect(to).await
        })
        .unwrap_or_else(|e| panic!("connect to {to} from {from:?}: {e}"));
    let stream = stream.into_std().expect("a std socket");
    stream.set_nonblocking(false).expect("blocking socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    stream
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip to memory");
    e.finish().expect("gzip to memory")
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn ts(micros: i64) -> String {
    bitville_schemas::format_micros(micros)
}

pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as i64
}

/// A small record: one pg_activity sample with three backends.
pub fn pg_activity(id: &str, at: i64, project: &str) -> Value {
    json!({
        "v": 1, "kind": "pg_activity", "id": id, "ts": ts(at), "project": project, "host": "db-1",
        "server_version_num": 150004, "sample_ms": 0.8,
        "backends": [
            {"pid": 101, "datname": "shop", "usename": "app", "state": "active",
             "application_name": format!("bitville:{}", new_id()),
             "wait_event_type": "Lock", "wait_event": "transactionid", "blocking_pids": [102],
             "query_start": ts(at - 1_500_000), "query": "UPDATE stock SET n = n - 1 WHERE id = 42"},
            {"pid": 102, "datname": "shop", "usename": "app", "state": "idle in transaction",
             "query": "SELECT * FROM orders WHERE id = 7 FOR UPDATE"},
            {"pid": 103, "datname": "shop", "usename": "app", "state": "active", "query": "SELECT 1"}
        ]
    })
}

/// A host_metrics record.
pub fn host_metrics(id: &str, at: i64, project: &str) -> Value {
    json!({
        "v": 1, "kind": "host_metrics", "id": id, "ts": ts(at), "project": project, "host": "web-1",
        "source": "shipper", "ncpu": 2, "load1": 3.5, "load5": 2.0, "load15": 1.0,
        "cpu": {"user_pct": 50.0, "system_pct": 10.0, "iowait_pct": 1.0, "idle_pct": 39.0}
    })
}

/// A large record: a request with `stacks` profile stacks and `queries` SQL statements.
pub fn big_request(id: &str, at: i64, project: &str, stacks: usize, queries: usize) -> Value {
    let stacks: Vec<Value> = (0..stacks)
        .map(|i| {
            let depth = 6 + i % 10;
            let frames: Vec<String> = (0..depth)
                .map(|d| format!("App\\Module{}\\Service{}::method{}", d % 7, (i + d) % 13, d))
                .collect();
            json!({"frames": frames, "samples": 1 + i % 5})
        })
        .collect();
    let queries: Vec<Value> = (0..queries)
        .map(|i| {
            json!({
                "sql": format!("SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id = {} AND o.status IN ('open', 'paid')", i * 7),
                "start_ms": i as f64 * 2.0, "duration_ms": 1.25, "status": "ok", "op": "query", "source": "pdo", "rows": 1,
                "frames": [{"function": "App\\Repo\\Orders::find", "file": "/srv/app/Repo/Orders.php", "line": 120}]
            })
        })
        .collect();
    json!({
        "v": 1, "kind": "request", "id": id, "ts": ts(at), "project": project, "host": "web-1",
        "correlation_id": new_id(), "record_type": "full", "sampling_weight": 1, "duration_ms": 812.5,
        "http": {"method": "GET", "url": "/checkout?step=2", "status": 200, "route": "/checkout"},
        "runtime": {"sapi": "fpm-fcgi", "php_version": "8.2.7", "pid": 4242, "agent_version": "0.1.0", "threshold_ms": 200},
        "resources": {"memory_peak_bytes": 12_582_912, "cpu_user_ms": 600.0, "cpu_system_ms": 40.0},
        "sql": {"queries": queries, "total_count": 100, "total_ms": 125.0},
        "profile": {"profiler": "excimer", "period_ms": 1, "total_samples": 1500, "stacks": stacks}
    })
}

/// NDJSON of records.
pub fn ndjson(records: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        serde_json::to_writer(&mut out, r).expect("JSON to memory");
        out.push(b'\n');
    }
    out
}

pub const TOKEN: &str = "test-token-0123456789abcdef";
pub const OTHER_TOKEN: &str = "other-token-0123456789abcdef";

/// A config for tests: port 0, a store in `dir`, two projects.
pub fn test_config(dir: &std::path::Path) -> processor::config::Config {
    processor::config::Config::parse(&test_config_text(dir), std::path::Path::new("test.toml"))
        .expect("test config")
}

/// The text of [`test_config`], for the real binary.
pub fn test_config_text(dir: &std::path::Path) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
udp_listen = "127.0.0.1:0"
shutdown_grace_s = 5
[store]
path = "{}"
[limits]
requests_per_minute = 0
[[tokens]]
token = "{TOKEN}"
project = "shop"
[[tokens]]
token = "{OTHER_TOKEN}"
project = "blog"
"#,
        dir.join("store.duckdb").display()
    )
}

/// A processor running in this process on its own runtime, driven from the
/// test's thread with the blocking client.
pub struct Running {
    pub rt: tokio::runtime::Runtime,
    pub processor: Option<processor::Processor>,
}

impl Running {
    pub fn start(config: processor::config::Config) -> Running {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let processor = rt
            .block_on(processor::Processor::start(config))
            .expect("processor starts");
        Running {
            rt,
            processor: Some(processor),
        }
    }

    pub fn processor(&self) -> &processor::Processor {
        self.processor.as_ref().expect("running")
    }

    pub fn addr(&self) -> SocketAddr {
        self.processor().http_addr()
    }

    pub fn client(&self) -> Client {
        Client::new(self.addr())
    }

    /// The text of `/metrics`, from the metrics port.
    pub fn metrics(&self) -> String {
        Client::new(self.processor().metrics_addr())
            .get("/metrics")
            .text()
    }

    /// One number from a query over the store, on a reader connection.
    pub fn count(&self, sql: &str) -> i64 {
        self.processor()
            .app()
            .store
            .reader()
            .expect("reader")
            .query_i64(sql)
            .expect("query")
    }

    pub fn stop(mut self) {
        let p = self.processor.take().expect("running");
        self.rt.block_on(p.shutdown()).expect("clean shutdown");
    }
}
