//! The `[gelf]` section of the processor config: where to forward, how, and what.
//!
//! ```toml
//! [gelf]
//! kinds = ["request", "slow_sql", "pg_log", "spike"]   # what every project sends (default: all)
//! slow_sql_ms = 500            # a PHP statement at or over this is sent as slow_sql
//! full_message_top = 10        # functions and statements listed in a request's full_message
//! poll_interval_ms = 1000      # store poll once caught up
//! batch_records = 1000         # records read per batch (memory bound) ...
//! batch_bytes = 16777216       # ... and bytes read per batch
//! scan_window = 20000          # sequence numbers scanned per store query
//! retry_initial_ms = 200       # TCP/HTTP retry backoff, doubling ...
//! retry_max_ms = 30000         # ... up to this
//! spike_interval_s = 60        # how often the store is searched for new spikes
//!
//! [gelf.projects.shop]         # per-project override of `kinds`
//! kinds = ["request", "spike"]
//!
//! [[gelf.outputs]]
//! name = "graylog-udp"         # also the cursor name (gelf:graylog-udp)
//! transport = "udp"            # udp | tcp | http
//! address = "graylog.example:12201"
//! compression = "gzip"         # udp: gzip | zlib | none
//! chunk_size = 1420            # udp datagram size; 8154 on a LAN
//!
//! [[gelf.outputs]]
//! name = "graylog-tls"
//! transport = "tcp"
//! address = "graylog.example:12202"
//! tls = true
//! tls_ca = "/etc/bitville/graylog-ca.pem"   # system roots when absent
//! timeout_s = 10
//!
//! [[gelf.outputs]]
//! name = "graylog-http"
//! transport = "http"
//! address = "https://graylog.example:12203/gelf"
//! http_concurrency = 4
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// What the forwarder sends. Each becomes GELF messages with `_event` set to its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Each kept slow request (`record_type` full).
    Request,
    /// Each SQL statement from PHP at or over `slow_sql_ms`.
    SlowSql,
    /// pg_log events of interest: lock waits, deadlocks, errors and worse,
    /// slow statements, auto_explain plans.
    PgLog,
    /// Each detected spike with its top suspects.
    Spike,
}

impl EventKind {
    pub const ALL: [EventKind; 4] = [
        EventKind::Request,
        EventKind::SlowSql,
        EventKind::PgLog,
        EventKind::Spike,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Request => "request",
            EventKind::SlowSql => "slow_sql",
            EventKind::PgLog => "pg_log",
            EventKind::Spike => "spike",
        }
    }
}

/// The forwarding configuration. No outputs (the default) means no forwarding.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GelfConfig {
    /// Where to send; several at once are allowed, each with its own cursor.
    pub outputs: Vec<OutputConfig>,
    /// What is sent for projects not listed in `projects`.
    pub kinds: Vec<EventKind>,
    /// Per-project override of `kinds`, keyed by project name.
    pub projects: BTreeMap<String, ProjectConfig>,
    /// A PHP SQL statement at or over this many milliseconds is sent as `slow_sql`.
    pub slow_sql_ms: f64,
    /// Heaviest functions and slowest statements listed in a request's `full_message`.
    pub full_message_top: usize,
    /// Milliseconds between polls of the store when the forwarder has caught up.
    pub poll_interval_ms: u64,
    /// Most records read from the store per batch (bounds memory with `batch_bytes`).
    pub batch_records: usize,
    /// Most bytes of stored records read per batch; a larger single record is still read alone.
    pub batch_bytes: usize,
    /// Sequence numbers scanned per store query, so that one query stays cheap
    /// however far behind the forwarder is.
    pub scan_window: i64,
    /// First retry delay after a failed send, doubled up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    /// Longest delay between retries.
    pub retry_max_ms: u64,
    /// Seconds between looks for new spikes in the store (when `spike` is sent).
    pub spike_interval_s: u64,
}

/// The kinds one project sends.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    pub kinds: Vec<EventKind>,
}

/// The wire protocol of one output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// Best effort: chunked, optionally compressed datagrams; nothing is retried.
    Udp,
    /// Null-byte delimited JSON, optionally over TLS; retried until it is through.
    Tcp,
    /// `POST /gelf`, one message per request on kept-alive connections; retried.
    Http,
}

/// UDP payload compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    Zlib,
    None,
}

/// One GELF destination.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Names the output in logs and metrics and its cursor (`gelf:<name>`);
    /// renaming an output starts it over from the oldest stored record.
    pub name: String,
    pub transport: TransportKind,
    /// `host:port` for UDP and TCP; a URL for HTTP, such as `https://graylog:12201/gelf`.
    pub address: String,
    /// UDP only.
    pub compression: Compression,
    /// UDP datagram size in bytes, chunk header included: 1420 suits the
    /// internet, 8154 a LAN. A message needing more than 128 chunks is shortened.
    pub chunk_size: usize,
    /// TCP only: speak TLS (HTTP takes it from the `https` URL).
    pub tls: bool,
    /// PEM file of the CA that signed Graylog's certificate; the system roots when absent.
    pub tls_ca: Option<PathBuf>,
    /// Server name checked against the certificate; the address's host when absent.
    pub tls_server_name: Option<String>,
    /// Seconds a connect, write or HTTP request may take before it counts as failed.
    pub timeout_s: u64,
    /// HTTP requests in flight at once on kept-alive connections.
    pub http_concurrency: usize,
}

impl Default for GelfConfig {
    fn default() -> Self {
        GelfConfig {
            outputs: Vec::new(),
            kinds: EventKind::ALL.to_vec(),
            projects: BTreeMap::new(),
            slow_sql_ms: 500.0,
            full_message_top: 10,
            poll_interval_ms: 1000,
            batch_records: 1000,
            batch_bytes: 16 << 20,
            scan_window: 20_000,
            retry_initial_ms: 200,
            retry_max_ms: 30_000,
            spike_interval_s: 60,
        }
    }
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            name: "graylog".to_owned(),
            transport: TransportKind::Udp,
            address: "127.0.0.1:12201".to_owned(),
            compression: Compression::Gzip,
            chunk_size: 1420,
            tls: false,
            tls_ca: None,
            tls_server_name: None,
            timeout_s: 10,
            http_concurrency: 4,
        }
    }
}

impl GelfConfig {
    /// True when any project sends `kind`.
    pub fn anyone_sends(&self, kind: EventKind) -> bool {
        self.kinds.contains(&kind) || self.projects.values().any(|p| p.kinds.contains(&kind))
    }

    /// True when `project` sends `kind`.
    pub fn sends(&self, project: &str, kind: EventKind) -> bool {
        match self.projects.get(project) {
            Some(p) => p.kinds.contains(&kind),
            None => self.kinds.contains(&kind),
        }
    }

    /// Checks values that TOML types alone do not bound; the message names the key.
    ///
    /// # Errors
    /// A value is out of range or two outputs share a name.
    pub fn check(&self) -> Result<(), String> {
        let mut names = std::collections::BTreeSet::new();
        for (i, o) in self.outputs.iter().enumerate() {
            if o.name.is_empty() {
                return Err(format!("gelf.outputs[{i}].name is empty"));
            }
            if !names.insert(o.name.as_str()) {
                return Err(format!(
                    "gelf.outputs[{i}].name {:?} is used by an earlier output",
                    o.name
                ));
            }
            if !(crate::gelf::udp::MIN_CHUNK_SIZE..=65_507).contains(&o.chunk_size) {
                return Err(format!(
                    "gelf.outputs[{i}].chunk_size {} is outside {}..=65507",
                    o.chunk_size,
                    crate::gelf::udp::MIN_CHUNK_SIZE
                ));
            }
            match o.transport {
                TransportKind::Http
                    if !(o.address.starts_with("http://") || o.address.starts_with("https://")) =>
                {
                    return Err(format!(
                        "gelf.outputs[{i}].address {:?} is not an http(s) URL",
                        o.address
                    ));
                }
                TransportKind::Udp | TransportKind::Tcp if !has_port(&o.address) => {
                    return Err(format!(
                        "gelf.outputs[{i}].address {:?} is not host:port",
                        o.address
                    ));
                }
                _ => {}
            }
            if o.tls && o.transport != TransportKind::Tcp {
                return Err(format!(
                    "gelf.outputs[{i}].tls is for tcp only (http takes TLS from an https:// address)"
                ));
            }
            for (key, value) in [
                ("timeout_s", o.timeout_s),
                ("http_concurrency", o.http_concurrency as u64),
            ] {
                if value == 0 {
                    return Err(format!("gelf.outputs[{i}].{key} must be at least 1"));
                }
            }
        }
        for project in self.projects.keys() {
            if !bitville_schemas::valid_project(project) {
                return Err(format!("gelf.projects.{project:?} is not a project name"));
            }
        }
        for (key, value) in [
            ("gelf.batch_records", self.batch_records as u64),
            ("gelf.batch_bytes", self.batch_bytes as u64),
            ("gelf.scan_window", self.scan_window.max(0) as u64),
            ("gelf.full_message_top", self.full_message_top as u64),
            ("gelf.poll_interval_ms", self.poll_interval_ms),
            ("gelf.retry_initial_ms", self.retry_initial_ms),
            ("gelf.spike_interval_s", self.spike_interval_s),
        ] {
            if value == 0 {
                return Err(format!("{key} must be at least 1"));
            }
        }
        if self.retry_max_ms < self.retry_initial_ms {
            return Err(format!(
                "gelf.retry_max_ms {} is less than gelf.retry_initial_ms {}",
                self.retry_max_ms, self.retry_initial_ms
            ));
        }
        if !(self.slow_sql_ms >= 0.0 && self.slow_sql_ms.is_finite()) {
            return Err(format!(
                "gelf.slow_sql_ms {} is not a number of milliseconds",
                self.slow_sql_ms
            ));
        }
        Ok(())
    }
}

/// True for `host:port` with a numeric port (IPv6 in brackets).
fn has_port(address: &str) -> bool {
    address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_outputs_and_project_kinds() {
        let text = r#"
            slow_sql_ms = 250
            [[outputs]]
            name = "lan"
            transport = "udp"
            address = "10.0.0.5:12201"
            compression = "zlib"
            chunk_size = 8154
            [[outputs]]
            name = "tls"
            transport = "tcp"
            address = "graylog:12201"
            tls = true
            [projects.shop]
            kinds = ["request", "spike"]
        "#;
        let c: GelfConfig = toml::from_str(text).unwrap();
        c.check().unwrap();
        assert_eq!(c.outputs[0].compression, Compression::Zlib);
        assert_eq!(c.outputs[1].chunk_size, 1420);
        assert!(c.sends("shop", EventKind::Spike));
        assert!(!c.sends("shop", EventKind::PgLog));
        assert!(c.sends("other", EventKind::PgLog));
    }

    /// The example in the module doc is what users copy: it must parse and pass the checks.
    #[test]
    fn module_doc_example_parses() {
        let source = include_str!("config.rs");
        let start = source.find("//! ```toml").unwrap();
        let end = start + source[start..].find("//! ```\n").unwrap();
        let text: String = source[start..end]
            .lines()
            .skip(1)
            .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start_matches(' ')))
            .collect();
        #[derive(Deserialize)]
        struct Wrapper {
            gelf: GelfConfig,
        }
        let w: Wrapper = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        w.gelf.check().unwrap();
        assert_eq!(w.gelf.outputs.len(), 3);
        assert!(!w.gelf.sends("shop", EventKind::PgLog));
    }

    #[test]
    fn refuses_duplicate_names_and_tiny_chunks() {
        let mut c = GelfConfig {
            outputs: vec![OutputConfig::default(), OutputConfig::default()],
            ..GelfConfig::default()
        };
        assert!(c.check().unwrap_err().contains("used by an earlier output"));
        c.outputs.pop();
        c.outputs[0].chunk_size = 20;
        assert!(c.check().unwrap_err().contains("chunk_size 20"));
    }
}
