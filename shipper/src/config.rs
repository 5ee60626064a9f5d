//! [`Config`]: the shipper's TOML configuration (every key is documented in
//! `shipper.example.toml`), command-line [`Overrides`], and the translation
//! into an [`EngineConfig`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::engine::{EngineConfig, HostMetricsConfig, RetryConfig};
use crate::metrics::Metrics;

/// The configuration file. Unknown keys are errors, so a typo is reported
/// instead of silently ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub spool_dirs: Vec<PathBuf>,
    pub state_dir: PathBuf,
    pub processor_url: String,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub project: String,
    pub host: Option<String>,
    pub listen: String,
    pub batch: BatchSection,
    pub tail: TailSection,
    pub spool: SpoolSection,
    pub retry: RetrySection,
    pub state: StateSection,
    pub host_metrics: HostMetricsSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchSection {
    pub max_bytes: usize,
    pub max_age_ms: u64,
    pub compression_level: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TailSection {
    pub scan_interval_ms: u64,
    pub max_line_bytes: usize,
    pub fragment_idle_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolSection {
    pub max_bytes: u64,
    pub cleanup: bool,
    pub cleanup_grace_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySection {
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub breaker_failures: u32,
    pub breaker_cooldown_s: u64,
    pub request_timeout_s: u64,
    pub poison_after_failures: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateSection {
    pub checkpoint_interval_ms: u64,
    pub quarantine_max_bytes: u64,
    pub drain_timeout_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostMetricsSection {
    pub enabled: bool,
    pub interval_s: u64,
    pub spool_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            spool_dirs: vec![PathBuf::from("/var/spool/bitville-apm")],
            state_dir: PathBuf::from("/var/lib/bitville-apm/shipper"),
            processor_url: "http://127.0.0.1:8443".to_owned(),
            token: None,
            token_file: None,
            project: "default".to_owned(),
            host: None,
            listen: "127.0.0.1:9101".to_owned(),
            batch: BatchSection::default(),
            tail: TailSection::default(),
            spool: SpoolSection::default(),
            retry: RetrySection::default(),
            state: StateSection::default(),
            host_metrics: HostMetricsSection::default(),
        }
    }
}

impl Default for BatchSection {
    fn default() -> Self {
        BatchSection {
            max_bytes: 1 << 20,
            max_age_ms: 1000,
            compression_level: 1,
        }
    }
}

impl Default for TailSection {
    fn default() -> Self {
        TailSection {
            scan_interval_ms: 1000,
            max_line_bytes: 1 << 20,
            fragment_idle_s: 60,
        }
    }
}

impl Default for SpoolSection {
    fn default() -> Self {
        SpoolSection {
            max_bytes: 2 << 30,
            cleanup: true,
            cleanup_grace_s: 120,
        }
    }
}

impl Default for RetrySection {
    fn default() -> Self {
        RetrySection {
            backoff_base_ms: 200,
            backoff_max_ms: 30_000,
            breaker_failures: 5,
            breaker_cooldown_s: 30,
            request_timeout_s: 30,
            poison_after_failures: 3,
        }
    }
}

impl Default for StateSection {
    fn default() -> Self {
        StateSection {
            checkpoint_interval_ms: 1000,
            quarantine_max_bytes: 64 << 20,
            drain_timeout_s: 5,
        }
    }
}

impl Default for HostMetricsSection {
    fn default() -> Self {
        HostMetricsSection {
            enabled: true,
            interval_s: 10,
            spool_dir: None,
        }
    }
}

/// A configuration that cannot be used; displays as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config: {0}")]
    Invalid(String),
}

/// Values from the command line, which win over the file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Spool directory to tail (repeat for several); replaces `spool_dirs`.
    #[arg(long = "spool-dir")]
    pub spool_dirs: Vec<PathBuf>,
    /// Directory for checkpoints and quarantine.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Processor base URL.
    #[arg(long)]
    pub processor_url: Option<String>,
    /// File holding the bearer token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Address of /healthz and /metrics.
    #[arg(long)]
    pub listen: Option<String>,
    /// Project named in host-metrics records.
    #[arg(long)]
    pub project: Option<String>,
    /// Host name in host-metrics records.
    #[arg(long)]
    pub host: Option<String>,
}

/// The environment variable that overrides the config's `token`.
pub const TOKEN_ENV: &str = "BITVILLE_SHIPPER_TOKEN";

/// Where the configuration comes from; read again on SIGHUP.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    pub path: Option<PathBuf>,
    pub overrides: Overrides,
}

impl ConfigSource {
    /// The file (or the defaults without one) with the overrides applied.
    ///
    /// # Errors
    /// The file cannot be read or parsed.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.path {
            Some(path) => Config::parse_file(path)?,
            None => Config::default(),
        };
        // A secret need not sit in a file: the environment wins over the
        // file, and a flag wins over both.
        if let Some(token) = std::env::var(TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty())
        {
            config.token = Some(token.trim().to_owned());
            config.token_file = None;
        }
        let o = &self.overrides;
        if !o.spool_dirs.is_empty() {
            config.spool_dirs = o.spool_dirs.clone();
        }
        if let Some(v) = &o.state_dir {
            config.state_dir = v.clone();
        }
        if let Some(v) = &o.processor_url {
            config.processor_url = v.clone();
        }
        if let Some(v) = &o.token_file {
            config.token_file = Some(v.clone());
            config.token = None;
        }
        if let Some(v) = &o.listen {
            config.listen = v.clone();
        }
        if let Some(v) = &o.project {
            config.project = v.clone();
        }
        if let Some(v) = &o.host {
            config.host = Some(v.clone());
        }
        Ok(config)
    }
}

impl Config {
    /// Parses a TOML file.
    ///
    /// # Errors
    /// Unreadable file, bad TOML, an unknown key or a wrong type, reported
    /// with the line number on one line.
    pub fn parse_file(path: &Path) -> Result<Config, ConfigError> {
        let err = |reason: String| ConfigError::File {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let msg = e.message().trim().replace('\n', " ");
            err(match line {
                Some(l) => format!("line {l}: {msg}"),
                None => msg,
            })
        })
    }

    /// The engine configuration, with the token read and the host resolved.
    ///
    /// # Errors
    /// No token, an unreadable token file, or a value the engine refuses.
    pub fn to_engine(&self, metrics: Arc<Metrics>) -> Result<EngineConfig, ConfigError> {
        let token = match (&self.token, &self.token_file) {
            (_, Some(path)) => std::fs::read_to_string(path)
                .map_err(|source| ConfigError::TokenFile {
                    path: path.clone(),
                    source,
                })?
                .trim()
                .to_owned(),
            (Some(t), None) => t.clone(),
            (None, None) => {
                return Err(ConfigError::Invalid(
                    "token or token_file is required".to_owned(),
                ));
            }
        };
        let host = self
            .host
            .clone()
            .unwrap_or_else(bitville_daemon::host::hostname);
        let first_spool = self.spool_dirs.first().cloned().unwrap_or_default();
        let mut e = EngineConfig::new(
            self.spool_dirs.clone(),
            self.state_dir.clone(),
            &self.processor_url,
            &token,
        );
        e.batch_max_bytes = self.batch.max_bytes;
        e.batch_max_age = Duration::from_millis(self.batch.max_age_ms);
        e.compression_level = self.batch.compression_level;
        e.scan_interval = Duration::from_millis(self.tail.scan_interval_ms);
        e.max_line_bytes = self.tail.max_line_bytes;
        e.fragment_idle = Duration::from_secs(self.tail.fragment_idle_s);
        e.spool_max_bytes = self.spool.max_bytes;
        e.cleanup = self.spool.cleanup;
        e.cleanup_grace = Duration::from_secs(self.spool.cleanup_grace_s);
        e.retry = RetryConfig {
            backoff_base: Duration::from_millis(self.retry.backoff_base_ms),
            backoff_max: Duration::from_millis(self.retry.backoff_max_ms),
            breaker_failures: self.retry.breaker_failures,
            breaker_cooldown: Duration::from_secs(self.retry.breaker_cooldown_s),
            request_timeout: Duration::from_secs(self.retry.request_timeout_s),
            poison_after: self.retry.poison_after_failures,
        };
        e.checkpoint_interval = Duration::from_millis(self.state.checkpoint_interval_ms);
        e.quarantine_max_bytes = self.state.quarantine_max_bytes;
        e.drain_timeout = Duration::from_secs(self.state.drain_timeout_s);
        e.host_metrics = self.host_metrics.enabled.then(|| HostMetricsConfig {
            source: "shipper",
            project: self.project.clone(),
            host: host.clone(),
            interval: Duration::from_secs(self.host_metrics.interval_s.max(1)),
            spool_dir: self.host_metrics.spool_dir.clone().unwrap_or(first_spool),
        });
        e.metrics = metrics;
        e.validate().map_err(|err| {
            ConfigError::Invalid(
                err.to_string()
                    .trim_start_matches("configuration: ")
                    .to_owned(),
            )
        })?;
        if self.host_metrics.enabled && (self.project.is_empty() || host.is_empty()) {
            return Err(ConfigError::Invalid(
                "host_metrics needs project and host".to_owned(),
            ));
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "listen {:?} is not an address:port",
                self.listen
            )));
        }
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_parses_and_gives_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("shipper.example.toml");
        let parsed = Config::parse_file(&path).unwrap();
        let d = Config::default();
        assert_eq!(parsed.spool_dirs, d.spool_dirs);
        assert_eq!(
            (parsed.batch.max_bytes, parsed.batch.max_age_ms),
            (d.batch.max_bytes, d.batch.max_age_ms)
        );
        assert_eq!(parsed.spool.max_bytes, d.spool.max_bytes);
        assert_eq!(parsed.retry.breaker_failures, d.retry.breaker_failures);
        assert_eq!(parsed.host_metrics.interval_s, 10);
    }

    #[test]
    fn errors_fit_on_one_line_and_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, "token = \"t\"\n[batch]\nmax_bytez = 3\n").unwrap();
        let err = Config::parse_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("line 3") && err.contains("max_bytez") && !err.contains('\n'),
            "{err}"
        );
        std::fs::write(&path, "listen = 5\n").unwrap();
        assert!(
            Config::parse_file(&path)
                .unwrap_err()
                .to_string()
                .contains("line 1")
        );
        let metrics = Arc::new(Metrics::default());
        let no_token = Config::default()
            .to_engine(metrics.clone())
            .unwrap_err()
            .to_string();
        assert_eq!(no_token, "config: token or token_file is required");
        let bad_url = Config {
            token: Some("t".into()),
            processor_url: "ftp://x".into(),
            ..Config::default()
        };
        assert!(
            bad_url
                .to_engine(metrics)
                .unwrap_err()
                .to_string()
                .contains("not http or https")
        );
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(
            &path,
            "token = \"t\"\nspool_dirs = [\"/a\"]\nlisten = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "secret\n").unwrap();
        let source = ConfigSource {
            path: Some(path),
            overrides: Overrides {
                spool_dirs: vec!["/b".into()],
                token_file: Some(token_file),
                listen: Some("127.0.0.1:2".into()),
                ..Overrides::default()
            },
        };
        let config = source.load().unwrap();
        assert_eq!(
            (config.spool_dirs, config.listen.as_str()),
            (vec![PathBuf::from("/b")], "127.0.0.1:2")
        );
        let config = source.load().unwrap();
        assert_eq!(
            config
                .to_engine(Arc::new(Metrics::default()))
                .unwrap()
                .token,
            "secret"
        );
    }
}
