//! The processor's configuration: a TOML file, every key optional, with
//! defaults that run on a small 2-core host without setup.
//!
//! `processor.example.toml` documents every key; a unit test keeps it in
//! step with these structs by parsing it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Tokens that read every project's analysis and may run `/v1/sql`;
    /// they cannot ingest. Reloaded on SIGHUP.
    pub admin_tokens: Vec<String>,
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub retention: RetentionConfig,
    pub limits: Limits,
    /// Ingest tokens; each belongs to one project. Empty: a random token for
    /// project `demo` is made at start and printed (development only).
    pub tokens: Vec<TokenConfig>,
    /// GELF output to Graylog; no `[[gelf.outputs]]` (the default) sends nothing.
    pub gelf: crate::gelf::GelfConfig,
    /// The spike report's tunable rules. Reloaded on SIGHUP.
    pub analysis: crate::analysis::report::Settings,
}

/// Listening sockets.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// HTTP(S) address for ingest, health and metrics.
    pub listen: SocketAddr,
    /// UDP address for fire-and-forget records; empty string disables it.
    pub udp_listen: String,
    /// PEM certificate chain; with `tls_key`, serve HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Seconds SIGTERM waits for in-flight requests before closing them.
    pub shutdown_grace_s: u64,
    /// Plain HTTP address of `/metrics`, which lists every project's
    /// counts and so is not served on `listen`. Unset: loopback, on the
    /// port after the UDP default's (`listen`'s port + 2, 8445 by default;
    /// port 0, any free port, when `listen`'s is 0).
    pub metrics_listen: Option<SocketAddr>,
}

impl ServerConfig {
    /// Where `/metrics` is served: `metrics_listen`, or loopback on
    /// `listen`'s port + 2 (0 stays 0).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_listen.unwrap_or_else(|| {
            let port = match self.listen.port() {
                0 => 0,
                p => p.saturating_add(2),
            };
            SocketAddr::from(([127, 0, 0, 1], port))
        })
    }
}

/// The DuckDB store.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The DuckDB file; its folder is created when missing.
    pub path: PathBuf,
    /// DuckDB memory_limit, such as "512MB".
    pub memory_limit: String,
    /// DuckDB worker threads.
    pub threads: u32,
    /// WAL size that triggers an automatic checkpoint, such as "64MB".
    pub checkpoint_threshold: String,
    /// Most records the writer commits in one transaction (it groups the
    /// batches that are waiting, up to this).
    pub max_records_per_commit: usize,
    /// Batches that may wait for the writer; more wait in their HTTP request.
    pub queue_batches: usize,
}

/// Retention of the store.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days of data kept; whole UTC days older than this are dropped.
    pub days: u32,
    /// Seconds between retention runs.
    pub interval_s: u64,
}

/// Size and rate limits; reloaded on SIGHUP.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body as sent (compressed or not), in bytes: 413 over it.
    pub max_body_bytes: usize,
    /// Largest body after gzip decompression: 413 over it (a gzip bomb stops here).
    pub max_decompressed_bytes: usize,
    /// Largest single NDJSON line; a longer line is refused on its own.
    pub max_line_bytes: usize,
    /// Most records in one batch: 413 over it.
    pub max_records_per_batch: usize,
    /// Requests per minute per client address: 429 with Retry-After over it.
    /// 0 disables rate limiting. The default, 1200, fits the shippers: one
    /// host runs the shipper and often pg-watch, each sending a batch a
    /// second while records trickle in (120 a minute together, where 100
    /// refused a busy host), and back to back while a backlog catches up.
    pub requests_per_minute: u32,
    /// Client addresses tracked by the rate limiter at most (memory bound).
    pub rate_limit_clients: usize,
    /// Ingest requests processed at once; more wait (bounds memory).
    pub max_concurrent_batches: usize,
    /// A record whose `ts` is further in the future than this is refused.
    pub max_future_s: u64,
    /// Seconds a client has to send a request's headers, counted from the
    /// first byte it may send; an idle keep-alive connection is closed
    /// after it too. A client that stalls mid-header holds nothing longer.
    pub header_timeout_s: u64,
    /// Seconds a client has to send a whole request body once its headers
    /// are in: 408 over it, and the connection is closed.
    pub body_timeout_s: u64,
    /// Connections open at once from one client address; more are refused
    /// when accepted (429), so one address cannot take every connection.
    pub max_connections_per_client: usize,
    /// Connections open at once in all; more are refused when accepted (503).
    /// With `max_body_bytes` it bounds the memory of bodies being received.
    pub max_connections: usize,
    /// Also run the JSON Schema validator on lines the fast reader accepted
    /// (`bitville_schemas::read`), at its cost; the differential test holds
    /// the two equal, so this is a belt and braces for the doubtful.
    pub strict_schema: bool,
}

/// One ingest token.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The bearer token, at least 16 characters.
    pub token: String,
    /// The project its records must carry.
    pub project: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            udp_listen: "127.0.0.1:8444".to_owned(),
            tls_cert: None,
            tls_key: None,
            shutdown_grace_s: 10,
            metrics_listen: None,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("./bitville-data/bitville.duckdb"),
            memory_limit: "512MB".to_owned(),
            threads: 2,
            checkpoint_threshold: "64MB".to_owned(),
            max_records_per_commit: 50_000,
            queue_batches: 16,
        }
    }
}

impl StoreConfig {
    /// The defaults, at another path (tests, benchmarks).
    pub fn at(path: &Path) -> Self {
        StoreConfig {
            path: path.to_owned(),
            ..StoreConfig::default()
        }
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            days: 7,
            interval_s: 3600,
        }
    }
}

/// Ten times what a host's two shipping engines (the shipper's and
/// pg-watch's) send at their default batch age of one second.
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 1200;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 32 << 20,
            max_decompressed_bytes: 128 << 20,
            max_line_bytes: 8 << 20,
            max_records_per_batch: 10_000,
            requests_per_minute: DEFAULT_REQUESTS_PER_MINUTE,
            rate_limit_clients: 100_000,
            max_concurrent_batches: 4,
            max_future_s: 86_400,
            header_timeout_s: 10,
            body_timeout_s: 60,
            max_connections_per_client: 16,
            max_connections: 256,
            strict_schema: false,
        }
    }
}

/// The longest header or body timeout a config may set, in seconds.
pub const MAX_TIMEOUT_S: u64 = 86_400;

/// Replaces `tokens` when set: `project=token` pairs separated by commas or
/// whitespace, so tokens need not sit in the config file.
pub const TOKENS_ENV: &str = "BITVILLE_PROCESSOR_TOKENS";
/// Replaces `admin_tokens` when set: tokens separated by commas or whitespace.
pub const ADMIN_TOKENS_ENV: &str = "BITVILLE_PROCESSOR_ADMIN_TOKENS";

impl Config {
    /// Reads and checks a config file.
    ///
    /// # Errors
    /// The file cannot be read, is not TOML of this shape, or a value is out of range.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and checks config text; `path` names it in errors.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        config.check().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(config)
    }

    /// Takes tokens from [`TOKENS_ENV`] and [`ADMIN_TOKENS_ENV`] where they
    /// are set, then checks them as if they came from the file.
    ///
    /// # Errors
    /// A variable is malformed or its tokens break the file's rules; `origin`
    /// names the config in the message.
    pub fn with_env_overrides(self, origin: &Path) -> Result<Config, ConfigError> {
        // A variable set to nothing is treated as unset: an empty token list
        // would otherwise turn on the development token.
        let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        self.with_overrides(
            var(TOKENS_ENV).as_deref(),
            var(ADMIN_TOKENS_ENV).as_deref(),
            origin,
        )
    }

    fn with_overrides(
        mut self,
        tokens: Option<&str>,
        admin: Option<&str>,
        origin: &Path,
    ) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: origin.to_owned(),
            message,
        };
        if let Some(value) = tokens {
            self.tokens = env_list(value)
                .map(|pair| match pair.split_once('=') {
                    Some((project, token)) => Ok(TokenConfig {
                        token: token.to_owned(),
                        project: project.to_owned(),
                    }),
                    None => Err(invalid(format!(
                        "{TOKENS_ENV}: {:?} is not project=token",
                        redact(pair)
                    ))),
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(value) = admin {
            self.admin_tokens = env_list(value).map(str::to_owned).collect();
        }
        self.check().map_err(invalid)?;
        Ok(self)
    }

    /// Checks values that TOML types alone do not bound.
    fn check(&self) -> Result<(), String> {
        if !self.server.udp_listen.is_empty() {
            self.server.udp_listen.parse::<SocketAddr>().map_err(|e| {
                format!(
                    "server.udp_listen {:?} is not an address: {e}",
                    self.server.udp_listen
                )
            })?;
        }
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                return Err("server.tls_cert and server.tls_key must be set together".to_owned());
            }
            (Some(_), Some(_)) | (None, None) => {}
        }
        if self.store.path.as_os_str().is_empty() {
            return Err("store.path is empty".to_owned());
        }
        if self.analysis.n_plus_one_min < 2 {
            return Err(format!(
                "analysis.n_plus_one_min {} is under 2: one statement is not a loop",
                self.analysis.n_plus_one_min
            ));
        }
        if self.store.threads == 0 {
            return Err("store.threads must be at least 1".to_owned());
        }
        for (key, value) in [
            ("store.memory_limit", &self.store.memory_limit),
            (
                "store.checkpoint_threshold",
                &self.store.checkpoint_threshold,
            ),
        ] {
            if parse_size(value).is_none() {
                return Err(format!("{key} {value:?} is not a size such as \"512MB\""));
            }
        }
        if self.store.max_records_per_commit == 0 || self.store.queue_batches == 0 {
            return Err(
                "store.max_records_per_commit and store.queue_batches must be at least 1"
                    .to_owned(),
            );
        }
        if self.retention.days == 0 {
            return Err("retention.days must be at least 1".to_owned());
        }
        if self.retention.interval_s == 0 {
            return Err("retention.interval_s must be at least 1".to_owned());
        }
        let l = &self.limits;
        for (key, value) in [
            ("limits.max_body_bytes", l.max_body_bytes),
            ("limits.max_decompressed_bytes", l.max_decompressed_bytes),
            ("limits.max_line_bytes", l.max_line_bytes),
            ("limits.max_records_per_batch", l.max_records_per_batch),
            ("limits.rate_limit_clients", l.rate_limit_clients),
            ("limits.max_concurrent_batches", l.max_concurrent_batches),
            (
                "limits.max_connections_per_client",
                l.max_connections_per_client,
            ),
            ("limits.max_connections", l.max_connections),
        ] {
            if value == 0 {
                return Err(format!("{key} must be at least 1"));
            }
        }
        // A day at most: hyper adds the header timeout to an Instant, which
        // must not overflow.
        for (key, value) in [
            ("limits.header_timeout_s", l.header_timeout_s),
            ("limits.body_timeout_s", l.body_timeout_s),
        ] {
            if !(1..=MAX_TIMEOUT_S).contains(&value) {
                return Err(format!(
                    "{key} is {value}, outside 1 to {MAX_TIMEOUT_S} seconds"
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, t) in self.tokens.iter().enumerate() {
            if let Some(problem) = token_problem(&t.token) {
                return Err(format!(
                    "tokens[{i}] (project {:?}): token {problem}",
                    t.project
                ));
            }
            if !bitville_schemas::valid_project(&t.project) {
                return Err(format!(
                    "tokens[{i}]: project {:?} does not match ^[A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}$",
                    t.project
                ));
            }
            if !seen.insert(t.token.as_str()) {
                return Err(format!(
                    "tokens[{i}] (project {:?}): the same token is listed twice",
                    t.project
                ));
            }
        }
        for (i, token) in self.admin_tokens.iter().enumerate() {
            if let Some(problem) = token_problem(token) {
                return Err(format!("admin_tokens[{i}]: token {problem}"));
            }
            if !seen.insert(token.as_str()) {
                return Err(format!(
                    "admin_tokens[{i}]: the token is also listed in tokens or twice"
                ));
            }
        }
        self.gelf.check()
    }
}

/// What is wrong with a token, if anything.
fn token_problem(token: &str) -> Option<&'static str> {
    if token.len() < 16 {
        Some("is shorter than 16 characters")
    } else if token.bytes().any(|b| !b.is_ascii_graphic()) {
        Some("has spaces or non-ASCII characters")
    } else {
        None
    }
}

fn env_list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|s| !s.is_empty())
}

/// Enough of a malformed secret to find it, not enough to use it.
fn redact(text: &str) -> String {
    let shown: String = text.chars().take(4).collect();
    format!("{shown}...")
}

/// Parses a DuckDB-style size such as "512MB", "1GiB" or "64 MB" into bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 22: a busy host sent 86 requests a minute from the shipper
    /// and pg-watch together, close to the old default of 100 per address.
    /// The default leaves room for ten times both engines' steady rate at
    /// the shippers' own default batch age.
    #[test]
    fn the_default_rate_limit_fits_a_host_s_two_shippers() {
        let engine =
            shipper::engine::EngineConfig::new(Vec::new(), "state".into(), "http://x", "t");
        let per_engine = 60.0 / engine.batch_max_age.as_secs_f64();
        let batch = shipper::config::BatchSection::default();
        assert_eq!(
            batch.max_age_ms as f64,
            engine.batch_max_age.as_millis() as f64
        );
        let limit = f64::from(Limits::default().requests_per_minute);
        assert!(
            limit >= 10.0 * 2.0 * per_engine,
            "{limit} a minute against {per_engine} per engine"
        );
    }

    /// Issue 19: `/metrics` lists every project's counts; it is served on
    /// its own address, loopback unless configured, beside the HTTP port.
    #[test]
    fn metrics_default_to_loopback_beside_the_http_port() {
        let server = ServerConfig::default();
        assert_eq!(
            server.metrics_addr(),
            SocketAddr::from(([127, 0, 0, 1], 8445))
        );
        let public = ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 9000)),
            ..ServerConfig::default()
        };
        assert_eq!(
            public.metrics_addr(),
            SocketAddr::from(([127, 0, 0, 1], 9002))
        );
        let any = ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..ServerConfig::default()
        };
        assert_eq!(any.metrics_addr().port(), 0);
        let set = ServerConfig {
            metrics_listen: Some(SocketAddr::from(([10, 0, 0, 5], 9100))),
            ..ServerConfig::default()
        };
        assert_eq!(set.metrics_addr(), SocketAddr::from(([10, 0, 0, 5], 9100)));
    }

    #[test]
    fn the_example_file_parses_and_equals_the_defaults_apart_from_tokens() {
        let text = include_str!("../processor.example.toml");
        let config = Config::parse(text, Path::new("processor.example.toml")).unwrap();
        assert_eq!(config.server, ServerConfig::default());
        assert_eq!(config.store, StoreConfig::default());
        assert_eq!(config.retention, RetentionConfig::default());
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.tokens.len(), 1);
        // The example's outputs are commented out: forwarding is off unless configured.
        assert_eq!(config.gelf, crate::gelf::GelfConfig::default());
        assert_eq!(
            config.analysis,
            crate::analysis::report::Settings::default()
        );
    }

    #[test]
    fn the_n_plus_one_threshold_is_a_config_key_of_at_least_two() {
        let config =
            Config::parse("[analysis]\nn_plus_one_min = 50\n", Path::new("p.toml")).unwrap();
        assert_eq!(config.analysis.n_plus_one_min, 50);
        let err = Config::parse("[analysis]\nn_plus_one_min = 1\n", Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("analysis.n_plus_one_min"), "{err}");
    }

    /// The example's `[gelf]` tables are commented out (`#` then the key, no
    /// space) so that forwarding stays off; uncommented, they must parse and
    /// pass the checks, so the documented keys cannot drift from the structs.
    #[test]
    fn the_example_gelf_outputs_parse_once_uncommented() {
        let text: String = include_str!("../processor.example.toml")
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c == '[' || c.is_ascii_lowercase()) => {
                    format!("{rest}\n")
                }
                _ => format!("{l}\n"),
            })
            .collect();
        let config = Config::parse(&text, Path::new("processor.example.toml")).unwrap();
        let names: Vec<&str> = config
            .gelf
            .outputs
            .iter()
            .map(|o| o.name.as_str())
            .collect();
        assert_eq!(names, ["graylog-udp", "graylog-tls", "graylog-http"]);
        assert!(config.gelf.outputs[1].tls && config.gelf.outputs[1].tls_ca.is_some());
        assert!(!config.gelf.sends("shop", crate::gelf::EventKind::PgLog));
        assert!(config.gelf.sends("other", crate::gelf::EventKind::PgLog));
    }

    #[test]
    fn gelf_errors_name_the_key() {
        let err = |text: &str| {
            Config::parse(text, Path::new("p.toml"))
                .unwrap_err()
                .to_string()
        };
        let e = err("[[gelf.outputs]]\ntransport = \"carrier-pigeon\"\n");
        assert!(
            e.starts_with("config p.toml: ") && e.contains("carrier-pigeon"),
            "{e}"
        );
        let e = err("[[gelf.outputs]]\ntransport = \"http\"\naddress = \"graylog:12201\"\n");
        assert_eq!(
            e,
            "config p.toml: gelf.outputs[0].address \"graylog:12201\" is not an http(s) URL"
        );
        let e = err("[[gelf.outputs]]\nname = \"a\"\nchunk_size = 10\n");
        assert_eq!(
            e,
            "config p.toml: gelf.outputs[0].chunk_size 10 is outside 64..=65507"
        );
        let e = err("[gelf]\nkinds = [\"request\", \"everything\"]\n");
        assert!(e.contains("everything"), "{e}");
        let e = err("[gelf]\nretry_initial_ms = 5000\nretry_max_ms = 100\n");
        assert!(e.contains("gelf.retry_initial_ms"), "{e}");
    }

    #[test]
    fn an_empty_file_is_the_default() {
        assert_eq!(
            Config::parse("", Path::new("x.toml")).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = Config::parse("[store]\npaht = \"x\"\n", Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("config p.toml: ") && err.contains("paht"),
            "{err}"
        );
        let err = Config::parse("[store]\nmemory_limit = \"lots\"\n", Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "config p.toml: store.memory_limit \"lots\" is not a size such as \"512MB\""
        );
        let err = Config::parse(
            "[[tokens]]\ntoken = \"short\"\nproject = \"a\"\n",
            Path::new("p.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("shorter than 16"), "{err}");
    }

    #[test]
    fn environment_tokens_replace_the_files() {
        let file = Config::parse(
            "[[tokens]]\ntoken = \"file-token-0123456789\"\nproject = \"a\"\n",
            Path::new("p.toml"),
        )
        .unwrap();
        let c = file
            .clone()
            .with_overrides(
                Some("shop=env-token-0123456789, blog=env-token-abcdefghij"),
                Some("admin-token-0123456789"),
                Path::new("p.toml"),
            )
            .unwrap();
        let pairs: Vec<(&str, &str)> = c
            .tokens
            .iter()
            .map(|t| (t.project.as_str(), t.token.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("shop", "env-token-0123456789"),
                ("blog", "env-token-abcdefghij")
            ]
        );
        assert_eq!(c.admin_tokens, ["admin-token-0123456789"]);
        assert_eq!(
            file.clone()
                .with_overrides(None, None, Path::new("p.toml"))
                .unwrap(),
            file
        );

        let err = file
            .clone()
            .with_overrides(Some("env-token-0123456789"), None, Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!("config p.toml: {TOKENS_ENV}: \"env-...\" is not project=token")
        );
        let err = file
            .clone()
            .with_overrides(None, Some("short"), Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "config p.toml: admin_tokens[0]: token is shorter than 16 characters"
        );
        let err = file
            .with_overrides(None, Some("file-token-0123456789"), Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("admin_tokens[0]: the token is also listed"),
            "{err}"
        );
    }

    #[test]
    fn sizes_parse_like_duckdb() {
        assert_eq!(parse_size("512MB"), Some(512_000_000));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("64 MB"), Some(64_000_000));
        assert_eq!(parse_size("MB"), None);
        assert_eq!(parse_size("5 parsecs"), None);
    }
}
