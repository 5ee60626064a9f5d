//! A throwaway PostgreSQL cluster (the newest installed major) for the integration tests and the benchmark.
//!
//! initdb and postgres refuse to run as root, and CI runs as root, so the
//! cluster lives in a temporary folder owned by the `postgres` user and is
//! started through `runuser`. One cluster serves a whole test binary (startup
//! costs about a second); a watchdog process stops it when the binary exits,
//! because statics are never dropped.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

/// PostgreSQL's server binaries: the newest installed major (these tests
/// fail, never skip, when there is none).
pub fn pg_bin() -> PathBuf {
    bitville_testkit::postgres_bindir().unwrap_or_else(|e| panic!("{e}"))
}

pub struct Cluster {
    /// Kept for its Drop: removes the folder.
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub data: PathBuf,
    pub log_dir: PathBuf,
    pub port: u16,
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn as_postgres(program: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(pg_bin().join(program));
    c
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("no free port")
        .port()
}

impl Cluster {
    /// Starts a cluster with `settings` appended to postgresql.conf.
    pub fn start(settings: &str) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("pgwatch-pg-")
            .tempdir()
            .expect("temporary folder");
        let root = dir.path().to_owned();
        let data = root.join("data");
        let log_dir = root.join("log");
        std::fs::create_dir_all(&log_dir).expect("log folder");
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&root));
        run(Command::new("chmod").args(["755"]).arg(&root));
        run(as_postgres("initdb")
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
            ])
            .arg(&data));
        let port = free_port();
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{root}'\n\
             fsync = off\nlc_messages = 'C'\nlog_timezone = 'UTC'\nmax_connections = 400\n\
             shared_preload_libraries = 'pg_stat_statements,auto_explain'\n\
             logging_collector = on\nlog_directory = '{log}'\n{settings}\n",
            root = root.display(),
            log = log_dir.display(),
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).expect("postgresql.conf");
        text.push_str(&conf);
        std::fs::write(&conf_path, text).expect("write postgresql.conf");
        run(as_postgres("pg_ctl")
            .args(["-w", "-t", "60", "-l"])
            .arg(root.join("startup.log"))
            .arg("-D")
            .arg(&data)
            .arg("start")
            .stdout(Stdio::null()));
        // Stops the cluster once this process is gone, even after a panic or a kill.
        let watchdog = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; runuser -u postgres -- {bin}/pg_ctl -D '{data}' stop -m immediate >/dev/null 2>&1; rm -rf '{root}'",
            pid = std::process::id(),
            bin = pg_bin().display(),
            data = data.display(),
            root = root.display(),
        );
        // Never waited for: it outlives this process on purpose, and init
        // reaps it.
        #[allow(clippy::zombie_processes)]
        Command::new("setsid")
            .args(["sh", "-c", &watchdog])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the cluster watchdog");
        Cluster {
            _dir: dir,
            root,
            data,
            log_dir,
            port,
        }
    }

    pub fn conninfo(&self, application_name: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres application_name={application_name}",
            self.port
        )
    }

    pub async fn connect(&self, application_name: &str) -> Client {
        let (client, conn) = tokio_postgres::connect(&self.conninfo(application_name), NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to the test cluster on port {}: {e}", self.port));
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// Runs SQL through psql (for setup outside any runtime).
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(pg_bin().join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-p",
            ])
            .arg(self.port.to_string())
            .args(["-d", "postgres", "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn files_in_log_dir(&self, suffix: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.log_dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.to_string_lossy().ends_with(suffix))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["stop", "-m", "immediate"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Waits until `cond` holds, up to `limit`.
pub async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
