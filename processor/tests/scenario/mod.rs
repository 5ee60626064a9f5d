//! The live scenario harness: everything started for real, on loopback.
//!
//! - [`postgres`]: a throwaway PostgreSQL 15 cluster with the application's tables;
//! - [`web`]: the PHP application (`app/index.php`) under php-fpm and nginx, with the agent;
//! - [`daemons`]: the processor, shipper and pg-watch binaries with their configs;
//! - [`upstream`]: the application's upstream services, whose delay a scenario turns up;
//! - [`memory`]: a host under memory pressure, for the scenario that needs one;
//! - [`load`]: the load generator;
//! - [`report`]: the spike report, from the processor's API or its store file.
//!
//! [`Stack::start`] starts them in dependency order; dropping the stack
//! stops them in reverse. Everything lives in one temporary folder.
#![allow(dead_code)]

pub mod daemons;
pub mod load;
pub mod memory;
pub mod postgres;
pub mod report;
pub mod upstream;
pub mod web;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use daemons::{Binaries, Daemon};

pub const PROJECT: &str = "scenarios";
pub const TOKEN: &str = "scenario-token-6c1f0e9a4b7d2e58";

/// Where a program is: PATH first, then the sbin folders PATH may lack.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The outside programs the scenarios run.
pub struct Tools {
    pub php_fpm: PathBuf,
    pub nginx: PathBuf,
    /// PostgreSQL's server binaries.
    pub pg_bin: PathBuf,
}

/// The tools, or why the scenarios cannot run here (a missing PHP or
/// PostgreSQL installation); CI installs them all.
pub fn tools() -> Result<Tools, String> {
    let need = |name: &str, package: &str| {
        find_program(name)
            .ok_or_else(|| format!("{name} is not installed (Debian package {package})"))
    };
    let php_fpm = need("php-fpm8.2", "php8.2-fpm").or_else(|_| need("php-fpm", "php8.2-fpm"))?;
    let nginx = need("nginx", "nginx")?;
    let pg_bin = bitville_testkit::postgres_bindir()?;
    Ok(Tools {
        php_fpm,
        nginx,
        pg_bin,
    })
}

/// A port free right now on 127.0.0.1.
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// A plain HTTP/1.0 GET on loopback: (status, body).
///
/// # Errors
/// The connection failed or the answer is not HTTP.
pub fn http_get(addr: &str, path: &str, bearer: Option<&str>) -> Result<(u16, String), String> {
    let fail = |e: std::io::Error| format!("GET http://{addr}{path}: {e}");
    let mut s = TcpStream::connect(addr).map_err(fail)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(fail)?;
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").map_err(fail)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(fail)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET http://{addr}{path}: not an HTTP answer: {head:.200}"))?;
    Ok((status, body.to_owned()))
}

/// Polls `check` until it holds, or fails after `timeout` naming `what`.
///
/// # Errors
/// The time ran out.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("{what}: not after {} s", timeout.as_secs()))
}

/// A gauge or counter's value in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Every part, running.
pub struct Stack {
    // Field order is drop order: the web first, the database last.
    /// Memory pressure while a scenario applies it (undone first at drop).
    pub pressure: Option<memory::Pressure>,
    pub web: web::Web,
    pub upstream: upstream::Upstream,
    pub pg_watch: Daemon,
    pub shipper: Daemon,
    pub processor: Daemon,
    pub pg: postgres::Cluster,
    pub processor_addr: String,
    pub shipper_addr: String,
    pub pg_watch_addr: String,
    pub store_path: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Stack {
    /// Starts the cluster (and fills its tables), the processor, the
    /// shipper, pg-watch, php-fpm and nginx, each checked ready.
    ///
    /// # Errors
    /// A part did not start; the message carries its log.
    pub fn start(tools: &Tools) -> Result<Stack, String> {
        let bins = Binaries::find()?;
        let dir = tempfile::Builder::new()
            .prefix("bitville-scenarios-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let root = dir.path().to_owned();
        // The postgres user must reach its cluster folder inside.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("{}: {e}", root.display()))?;
        let manifest = &manifest_dir();
        let app_dir = manifest.join("tests/scenario/app");
        let agent = manifest.join("../shipper/php/bitville-apm.php");
        let agent = agent
            .canonicalize()
            .map_err(|e| format!("the PHP agent {}: {e}", agent.display()))?;

        let started = Instant::now();
        let pg = postgres::Cluster::start(&tools.pg_bin, &root.join("pg"), free_port()?)?;
        pg.psql_file(&app_dir.join("setup.sql"))?;
        println!(
            "scenarios: PostgreSQL ready with the application's tables in {:.1} s",
            started.elapsed().as_secs_f64()
        );

        let dirs =
            ["spool", "shipper-state", "pg-watch-spool", "pg-watch-state"].map(|d| root.join(d));
        for d in &dirs {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let [spool, shipper_state, pgw_spool, pgw_state] = &dirs;

        let processor_addr = format!("127.0.0.1:{}", free_port()?);
        let store_path = root.join("store/bitville.duckdb");
        let url = format!("http://{processor_addr}");
        let conf = daemons::write_config(
            &root,
            "processor.toml",
            &daemons::processor_config(&processor_addr, &store_path, TOKEN, PROJECT),
        )?;
        let conf = conf.display().to_string();
        let mut processor = Daemon::new(
            "processor",
            &bins.processor,
            &["--config", &conf],
            root.join("processor.log"),
        );
        processor.start()?;
        wait_ready(&mut processor, &processor_addr)?;

        let shipper_addr = format!("127.0.0.1:{}", free_port()?);
        let paths = daemons::ShipperPaths {
            spool,
            state: shipper_state,
        };
        let conf = daemons::write_config(
            &root,
            "shipper.toml",
            &daemons::shipper_config(&paths, &url, TOKEN, PROJECT, &shipper_addr),
        )?;
        let conf = conf.display().to_string();
        let mut shipper = Daemon::new(
            "shipper",
            &bins.shipper,
            &["--config", &conf],
            root.join("shipper.log"),
        );
        shipper.start()?;
        wait_ready(&mut shipper, &shipper_addr)?;

        let pg_watch_addr = format!("127.0.0.1:{}", free_port()?);
        let (conninfo, log_dir) = (pg.conninfo(), pg.log_dir());
        let setup = daemons::PgWatchSetup {
            conninfo: &conninfo,
            log_dir: &log_dir,
            log_line_prefix: postgres::LOG_LINE_PREFIX,
            spool: pgw_spool,
            state: pgw_state,
        };
        let conf = daemons::write_config(
            &root,
            "pg-watch.toml",
            &daemons::pg_watch_config(&setup, &url, TOKEN, PROJECT, &pg_watch_addr),
        )?;
        let conf = conf.display().to_string();
        let mut pg_watch = Daemon::new(
            "pg-watch",
            &bins.pg_watch,
            &["--config", &conf],
            root.join("pg-watch.log"),
        );
        pg_watch.start()?;
        wait_ready(&mut pg_watch, &pg_watch_addr)?;

        let dsn = pg.pdo_dsn();
        let upstream = upstream::Upstream::start()?;
        let upstream_url = upstream.url();
        let setup = web::WebSetup {
            dir: &root,
            app_dir: &app_dir,
            agent: &agent,
            pdo_dsn: &dsn,
            upstream: &upstream_url,
            spool,
            project: PROJECT,
            port: free_port()?,
        };
        let mut web = web::Web::start(&setup, &tools.php_fpm, &tools.nginx)?;
        let web_addr = format!("127.0.0.1:{}", web.port);
        let up = wait_until(
            "the PHP application answering /ping",
            Duration::from_secs(30),
            || matches!(http_get(&web_addr, "/ping", None), Ok((200, body)) if body.starts_with("pong")),
        );
        if let Err(e) = up {
            let logs = web.logs();
            web.fpm.stop();
            return Err(format!("{e}\n{logs}"));
        }
        println!(
            "scenarios: stack up in {:.1} s (folder {})",
            started.elapsed().as_secs_f64(),
            root.display()
        );
        Ok(Stack {
            pressure: None,
            web,
            upstream,
            pg_watch,
            shipper,
            processor,
            pg,
            processor_addr,
            shipper_addr,
            pg_watch_addr,
            store_path,
            dir,
        })
    }

    pub fn base_url(&self) -> String {
        self.web.base_url()
    }

    /// Fails when a daemon has exited, with its log.
    ///
    /// # Errors
    /// A daemon is not running.
    pub fn check_alive(&mut self) -> Result<(), String> {
        for d in [
            &mut self.processor,
            &mut self.shipper,
            &mut self.pg_watch,
            &mut self.web.fpm,
            &mut self.web.nginx,
        ] {
            if let Some(status) = d.exited() {
                return Err(format!("{} exited ({status}):\n{}", d.name, d.log_tail(30)));
            }
        }
        Ok(())
    }

    /// Waits until the records of a load that ended at `load_end` are
    /// stored: the last requests and pg-watch's samples, log events and
    /// statement deltas are written within a few seconds of it, then both
    /// shippers must have nothing older than a second unacknowledged.
    ///
    /// # Errors
    /// The shippers stayed behind for a minute.
    pub fn wait_stored(&self, load_end: Instant) -> Result<(), String> {
        // pg-watch: statements every 2 s, log messages held 1 s for their detail lines.
        let written_by = load_end + Duration::from_secs(4);
        std::thread::sleep(written_by.saturating_duration_since(Instant::now()));
        let caught_up_from = Instant::now() + Duration::from_millis(2500);
        let caught_up = |addr: &str, prefix: &str| -> bool {
            let Ok((200, text)) = http_get(addr, "/metrics", None) else {
                return false;
            };
            metric(&text, &format!("{prefix}_lag_seconds")).is_some_and(|s| s <= 1.0)
                && metric(&text, &format!("{prefix}_lines_shipped_total")).is_some_and(|n| n > 0.0)
        };
        wait_until("the shipper and pg-watch acknowledging everything written", Duration::from_secs(60), || {
            Instant::now() >= caught_up_from
                && caught_up(&self.shipper_addr, "bitville_shipper")
                && caught_up(&self.pg_watch_addr, "bitville_shipper")
        })
        .map_err(|e| {
            let m = |addr: &str| http_get(addr, "/metrics", None).map(|r| r.1).unwrap_or_else(|e| e);
            let pick = |t: String| t.lines().filter(|l| l.contains("lag") || l.contains("shipped") || l.contains("failed")).collect::<Vec<_>>().join("\n");
            format!(
                "{e}\nshipper metrics:\n{}\npg-watch metrics:\n{}\nshipper log:\n{}\npg-watch log:\n{}",
                pick(m(&self.shipper_addr)),
                pick(m(&self.pg_watch_addr)),
                self.shipper.log_tail(10),
                self.pg_watch.log_tail(10)
            )
        })
    }
}

/// Waits for a daemon's `/healthz`, failing early when it exits.
///
/// # Errors
/// It exited or did not answer within a minute; the message carries its log.
pub fn wait_ready(d: &mut Daemon, addr: &str) -> Result<(), String> {
    let mut exited = None;
    let r = wait_until(
        &format!("{} answering /healthz on {addr}", d.name),
        Duration::from_secs(60),
        || {
            exited = d.exited();
            exited.is_some() || matches!(http_get(addr, "/healthz", None), Ok((200, _)))
        },
    );
    match (r, exited) {
        (Ok(()), None) => Ok(()),
        (_, Some(status)) => Err(format!(
            "{} exited at start ({status}):\n{}",
            d.name,
            d.log_tail(30)
        )),
        (Err(e), None) => Err(format!("{e}\n{}", d.log_tail(30))),
    }
}

/// The package's folder as `cargo test` names it when the test runs: a test
/// binary reused from another clone with the same target folder would keep
/// that clone's folder in `env!`.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    )
}
