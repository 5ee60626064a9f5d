//! pg-watch's TOML configuration (`pg-watch.example.toml` documents every key).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::log::LogFormat;
use crate::log::prefix::PrefixParser;
use crate::tailer::StartAt;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub project: String,
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_spool_dir")]
    pub spool_dir: PathBuf,
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub postgres: PostgresSection,
    #[serde(default)]
    pub activity: ActivitySection,
    #[serde(default)]
    pub statements: StatementsSection,
    #[serde(default)]
    pub logs: LogsSection,
    #[serde(default)]
    pub host_metrics: HostMetricsSection,
    pub ship: ShipSection,
    #[serde(default)]
    pub http: HttpSection,
}

/// The environment variable that overrides `ship.token`.
pub const TOKEN_ENV: &str = "BITVILLE_PG_WATCH_TOKEN";

/// The environment variable with the PostgreSQL role's password, used when
/// `postgres.conninfo` has none (over the Unix socket, peer authentication
/// needs no password at all).
pub const PASSWORD_ENV: &str = "BITVILLE_PG_WATCH_PASSWORD";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresSection {
    pub conninfo: String,
    pub statement_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// The role's password, from [`PASSWORD_ENV`] only, never from the file.
    #[serde(skip)]
    pub password: Option<String>,
}

impl Default for PostgresSection {
    fn default() -> Self {
        PostgresSection {
            conninfo: "host=/var/run/postgresql user=postgres dbname=postgres".into(),
            statement_timeout_ms: 2000,
            connect_timeout_ms: 5000,
            reconnect_min_ms: 500,
            reconnect_max_ms: 30_000,
            password: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActivitySection {
    pub enabled: bool,
    pub interval_ms: u64,
}

impl Default for ActivitySection {
    fn default() -> Self {
        ActivitySection {
            enabled: true,
            interval_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatementsSection {
    pub enabled: bool,
    pub interval_s: u64,
}

impl Default for StatementsSection {
    fn default() -> Self {
        StatementsSection {
            enabled: true,
            interval_s: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSourceSection {
    pub pattern: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsSection {
    pub enabled: bool,
    pub directory: PathBuf,
    pub log_line_prefix: String,
    pub start_at: StartAt,
    pub poll_interval_ms: u64,
    pub flush_after_ms: u64,
    pub sources: Vec<LogSourceSection>,
}

impl Default for LogsSection {
    fn default() -> Self {
        LogsSection {
            enabled: true,
            directory: "/var/lib/postgresql/15/main/log".into(),
            log_line_prefix: "%m [%p] %q%u@%d %a ".into(),
            start_at: StartAt::End,
            poll_interval_ms: 250,
            flush_after_ms: 1000,
            sources: vec![
                LogSourceSection {
                    pattern: "*.log".into(),
                    format: LogFormat::Stderr,
                },
                LogSourceSection {
                    pattern: "*.csv".into(),
                    format: LogFormat::Csvlog,
                },
                LogSourceSection {
                    pattern: "*.json".into(),
                    format: LogFormat::Jsonlog,
                },
            ],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostMetricsSection {
    pub enabled: bool,
    pub interval_s: u64,
}

impl Default for HostMetricsSection {
    fn default() -> Self {
        HostMetricsSection {
            enabled: true,
            interval_s: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipSection {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub processor_url: String,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    pub listen: String,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: "127.0.0.1:9102".into(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_host() -> String {
    bitville_daemon::host::hostname()
}

fn default_spool_dir() -> PathBuf {
    "/var/spool/bitville-apm/pg-watch".into()
}

fn default_state_dir() -> PathBuf {
    "/var/lib/bitville-apm/pg-watch".into()
}

impl Config {
    /// Reads and checks a config file.
    ///
    /// # Errors
    /// The file cannot be read, is not valid TOML for this schema, or a value is out of range.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_with_env(&text, path, |name| std::env::var(name).ok())
    }

    /// Parses config text, then lets the environment override the secrets
    /// ([`TOKEN_ENV`], [`PASSWORD_ENV`]) so that they need not sit in the file.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn parse_with_env(
        text: &str,
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let config = Self::parse_unchecked(text, path, env)?;
        match config.problems().into_iter().next() {
            Some(message) => Err(ConfigError::Invalid {
                path: path.to_owned(),
                message,
            }),
            None => Ok(config),
        }
    }

    /// Parses config text and applies the environment's secrets, without
    /// checking the values: `--check-config` lists every [`Config::problems`]
    /// rather than the first.
    ///
    /// # Errors
    /// The text is not valid TOML for this schema.
    pub fn parse_unchecked(
        text: &str,
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if let Some(token) = set(TOKEN_ENV) {
            config.ship.token = Some(token.trim().to_owned());
            config.ship.token_file = None;
        }
        config.postgres.password = set(PASSWORD_ENV);
        Ok(config)
    }

    /// Parses config text; `path` only names the input in errors.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Self::parse_with_env(text, path, |_| None)
    }

    /// Every value that is out of range or inconsistent, one message each.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let p = &self.project;
        let project_ok = !p.is_empty()
            && p.len() <= 64
            && p.as_bytes()[0].is_ascii_alphanumeric()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !project_ok {
            out.push(format!(
                "project {p:?} must be 1 to 64 letters, digits, '_', '.' or '-'"
            ));
        }
        if self.host.is_empty() {
            out.push("host is empty and the machine's host name is unknown".into());
        }
        if self.spool_dir == self.state_dir {
            out.push("spool_dir and state_dir must differ".into());
        }
        if let Err(e) = PrefixParser::compile(&self.logs.log_line_prefix) {
            out.push(format!("logs.{e}"));
        }
        for (name, v) in [
            ("activity.interval_ms", self.activity.interval_ms),
            ("statements.interval_s", self.statements.interval_s),
            ("logs.poll_interval_ms", self.logs.poll_interval_ms),
            ("host_metrics.interval_s", self.host_metrics.interval_s),
            ("postgres.reconnect_min_ms", self.postgres.reconnect_min_ms),
        ] {
            if v == 0 {
                out.push(format!("{name} must be above 0"));
            }
        }
        if self.postgres.reconnect_max_ms < self.postgres.reconnect_min_ms {
            out.push("postgres.reconnect_max_ms is below postgres.reconnect_min_ms".into());
        }
        if let Err(e) = self.postgres.conninfo.parse::<tokio_postgres::Config>() {
            out.push(format!(
                "postgres.conninfo {:?}: {e}",
                self.postgres.conninfo
            ));
        }
        if self.http.listen.parse::<SocketAddr>().is_err() {
            out.push(format!(
                "http.listen {:?} is not an address:port",
                self.http.listen
            ));
        }
        if self.ship.enabled && self.ship.token.is_none() && self.ship.token_file.is_none() {
            out.push(format!(
                "ship needs token or token_file, or the environment variable {TOKEN_ENV}"
            ));
        }
        out
    }

    /// The processor token, read from `ship.token_file` when given.
    ///
    /// # Errors
    /// The token file cannot be read.
    pub fn token(&self) -> Result<String, std::io::Error> {
        match (&self.ship.token, &self.ship.token_file) {
            (Some(t), _) => Ok(t.clone()),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map(|s| s.trim().to_owned())
                .map_err(|e| {
                    std::io::Error::new(e.kind(), format!("token_file {}: {e}", f.display()))
                }),
            (None, None) => Ok(String::new()),
        }
    }

    pub fn activity_interval(&self) -> Duration {
        Duration::from_millis(self.activity.interval_ms)
    }

    pub fn statements_interval(&self) -> Duration {
        Duration::from_secs(self.statements.interval_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_parses_with_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pg-watch.example.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.activity.interval_ms, 1000);
        assert_eq!(c.statements.interval_s, 60);
        assert_eq!(c.logs.sources.len(), 3);
        assert_eq!(c.http.listen, "127.0.0.1:9102");
    }

    #[test]
    fn bad_values_are_named() {
        let base = "project = \"shop\"\n[ship]\nprocessor_url = \"http://127.0.0.1:8443\"\ntoken = \"t\"\n";
        let p = Path::new("x.toml");
        assert!(Config::parse(base, p).is_ok());
        let err = Config::parse(&format!("{base}[logs]\nlog_line_prefix = \"%m %y\"\n"), p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown escape %y"), "{err}");
        let err = Config::parse(&base.replace("shop", "bad project"), p)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("config file x.toml: project \"bad project\""),
            "{err}"
        );
        let err = Config::parse(&format!("{base}[activity]\ninterval_ms = 0\n"), p)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("activity.interval_ms must be above 0"),
            "{err}"
        );
        let err = Config::parse(&format!("{base}bogus = 1\n"), p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn secrets_come_from_the_environment_when_set() {
        let p = Path::new("pg-watch.toml");
        let text = "project = \"shop\"\n[ship]\nprocessor_url = \"http://127.0.0.1:8443\"\n";
        let err = Config::parse(text, p).unwrap_err().to_string();
        assert!(err.contains("ship needs token or token_file"), "{err}");
        let env = |name: &str| match name {
            TOKEN_ENV => Some("from-env".to_owned()),
            PASSWORD_ENV => Some("pw".to_owned()),
            _ => None,
        };
        let c = Config::parse_with_env(text, p, env).unwrap();
        assert_eq!(c.token().unwrap(), "from-env");
        assert_eq!(c.postgres.password.as_deref(), Some("pw"));
    }
}
