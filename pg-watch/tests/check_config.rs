//! `pg-watch --check-config` against a real PostgreSQL cluster and broken
//! configurations: each problem is named on its own line, all of them at
//! once, and a good configuration prints one ok line. The processor is a
//! small ingest endpoint that answers as the processor does: /healthz, and
//! on `POST /v1/ingest` 401 for an unknown token before 400 for an empty body.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::Cluster;

const TOKEN: &str = "t0ken";
const PREFIX: &str = "%m [%p] %q%u@%d %a ";

/// Every setting pg-watch's README asks for.
fn settings() -> String {
    format!(
        "log_destination = 'stderr'\nlog_line_prefix = '{PREFIX}'\nlog_min_duration_statement = 250\n\
         log_lock_waits = on\nlog_temp_files = 0\nlog_checkpoints = on\nlog_autovacuum_min_duration = 1000\n"
    )
}

fn cluster() -> &'static Cluster {
    static C: OnceLock<Cluster> = OnceLock::new();
    C.get_or_init(|| {
        let c = Cluster::start(&settings());
        c.psql("CREATE EXTENSION pg_stat_statements");
        c.psql("CREATE ROLE weak LOGIN");
        c.psql("CREATE ROLE monitor LOGIN");
        c.psql("GRANT pg_monitor TO monitor");
        c.psql("CREATE DATABASE nostat");
        c
    })
}

/// The ingest endpoint, on its own thread and runtime so that the tests can
/// stay synchronous.
fn processor_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        use axum::http::{HeaderMap, StatusCode};
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let ingest = |headers: HeaderMap, body: axum::body::Bytes| async move {
                    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
                    if auth != Some(&format!("Bearer {TOKEN}")) {
                        return (StatusCode::UNAUTHORIZED, r#"{"error":"unknown token"}"#);
                    }
                    if body.is_empty() {
                        return (StatusCode::BAD_REQUEST, r#"{"error":"body is empty"}"#);
                    }
                    (
                        StatusCode::OK,
                        r#"{"accepted":0,"duplicates":0,"rejected":[]}"#,
                    )
                };
                let app = axum::Router::new()
                    .route("/healthz", axum::routing::get(|| async { "ok\n" }))
                    .route("/v1/ingest", axum::routing::post(ingest));
                axum::serve(listener, app).await.unwrap();
            });
        });
        format!("http://{}", rx.recv().unwrap())
    })
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config file in its own temporary folder; fields start good.
struct Setup {
    dir: tempfile::TempDir,
    conninfo: String,
    log_dir: PathBuf,
    prefix: String,
    url: String,
    token: Option<String>,
}

impl Setup {
    fn new(cluster: &Cluster) -> Setup {
        Setup {
            dir: tempfile::tempdir().unwrap(),
            conninfo: format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres",
                cluster.port
            ),
            log_dir: cluster.log_dir.clone(),
            prefix: PREFIX.to_owned(),
            url: processor_url().to_owned(),
            token: Some(TOKEN.to_owned()),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("pg-watch.toml")
    }

    fn check(&self) -> Output {
        self.check_with_env(&[])
    }

    fn check_with_env(&self, env: &[(&str, &str)]) -> Output {
        let token = self
            .token
            .as_ref()
            .map(|t| format!("token = \"{t}\""))
            .unwrap_or_default();
        let text = format!(
            "project = \"shop\"\nhost = \"db-1\"\nspool_dir = \"{spool}\"\nstate_dir = \"{state}\"\n\
             [postgres]\nconninfo = \"{conninfo}\"\nconnect_timeout_ms = 2000\n\
             [logs]\ndirectory = \"{logs}\"\nlog_line_prefix = \"{prefix}\"\n\
             [ship]\nprocessor_url = \"{url}\"\n{token}\n",
            spool = self.dir.path().join("spool").display(),
            state = self.dir.path().join("state").display(),
            conninfo = self.conninfo,
            logs = self.log_dir.display(),
            prefix = self.prefix,
            url = self.url,
        );
        std::fs::write(self.path(), text).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pg-watch"));
        cmd.arg("--config").arg(self.path()).arg("--check-config");
        cmd.env_remove("BITVILLE_PG_WATCH_TOKEN")
            .env_remove("BITVILLE_PG_WATCH_PASSWORD")
            .env("RUST_LOG", "off");
        cmd.envs(env.iter().copied());
        cmd.output().unwrap()
    }
}

/// The problem lines (stderr without warnings), asserting exit code 2.
fn problems(out: &Output) -> Vec<String> {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        out.stdout.is_empty(),
        "no ok line when something is wrong: {out:?}"
    );
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with("warning: "))
        .map(str::to_owned)
        .collect()
}

fn assert_ok(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

#[test]
fn a_good_config_prints_one_ok_line() {
    let c = cluster();
    let s = Setup::new(c);
    let out = s.check();
    let line = assert_ok(&out);
    assert!(
        line.starts_with(&format!("{}: ok (PostgreSQL 15.", s.path().display())),
        "{line}"
    );
    assert!(
        line.ends_with(&format!(
            " as postgres; processor {} reachable, token accepted)",
            processor_url()
        )),
        "{line}"
    );
    assert!(out.stderr.is_empty(), "{out:?}");
}

#[test]
fn a_missing_token_is_named_and_the_environment_supplies_one() {
    let c = cluster();
    let mut s = Setup::new(c);
    s.token = None;
    assert_eq!(
        problems(&s.check()),
        vec![format!(
            "config file {}: ship needs token or token_file, or the environment variable BITVILLE_PG_WATCH_TOKEN",
            s.path().display()
        )]
    );
    assert_ok(&s.check_with_env(&[("BITVILLE_PG_WATCH_TOKEN", TOKEN)]));
    let p = problems(&s.check_with_env(&[("BITVILLE_PG_WATCH_TOKEN", "wrong")]));
    assert_eq!(
        p,
        vec![format!(
            "ship.processor_url {}: the processor refuses the token (401 Unauthorized: unknown token)",
            processor_url()
        )]
    );
}

#[test]
fn an_unreachable_postgres_is_named() {
    let c = cluster();
    let mut s = Setup::new(c);
    let port = closed_port();
    s.conninfo = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    let p = problems(&s.check());
    assert_eq!(p.len(), 1, "{p:?}");
    let expected = format!(
        "postgres (user postgres, database postgres at 127.0.0.1:{port}): error connecting to server: "
    );
    assert!(
        p[0].starts_with(&expected) && p[0].contains("refused"),
        "{p:?}"
    );
}

#[test]
fn a_role_without_pg_read_all_stats_is_named_and_pg_monitor_is_enough() {
    let c = cluster();
    let mut s = Setup::new(c);
    s.conninfo = format!("host=127.0.0.1 port={} user=weak dbname=postgres", c.port);
    let out = s.check();
    let p = problems(&out);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("role weak is neither superuser nor a member of pg_read_all_stats"),
        "{p:?}"
    );
    assert!(p[0].ends_with("(GRANT pg_monitor TO \"weak\")"), "{p:?}");
    // Without pg_read_all_settings the log directory cannot be compared.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("warning: postgres (user weak"),
        "{out:?}"
    );
    s.conninfo = format!(
        "host=127.0.0.1 port={} user=monitor dbname=postgres",
        c.port
    );
    let out = s.check();
    assert!(assert_ok(&out).contains(" as monitor; "), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
}

#[test]
fn a_database_without_pg_stat_statements_is_named() {
    let c = cluster();
    let mut s = Setup::new(c);
    s.conninfo = format!("host=127.0.0.1 port={} user=postgres dbname=nostat", c.port);
    let p = problems(&s.check());
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("the extension pg_stat_statements is not installed in this database (CREATE EXTENSION pg_stat_statements;"), "{p:?}");
}

#[test]
fn log_lock_waits_off_is_named() {
    let c = Cluster::start(&settings().replace("log_lock_waits = on", "log_lock_waits = off"));
    c.psql("CREATE EXTENSION pg_stat_statements");
    let s = Setup::new(&c);
    assert_eq!(
        problems(&s.check()),
        vec![
            "postgres setting log_lock_waits = 'off': lock waits are not logged (set log_lock_waits = on)"
        ]
    );
}

#[test]
fn a_prefix_or_log_directory_other_than_the_servers_is_named() {
    let c = cluster();
    let mut s = Setup::new(c);
    s.prefix = "%m [%p] ".to_owned();
    s.log_dir = s.dir.path().to_owned();
    let p = problems(&s.check());
    assert_eq!(
        p,
        vec![
            format!(
                "logs.log_line_prefix \"%m [%p] \" is not the server's log_line_prefix \"{PREFIX}\""
            ),
            format!(
                "logs.directory {} is not the server's log_directory {}",
                s.dir.path().display(),
                c.log_dir.display()
            ),
        ]
    );
}

#[test]
fn every_problem_is_listed_not_only_the_first() {
    let c = cluster();
    let mut s = Setup::new(c);
    let (pg_port, processor_port) = (closed_port(), closed_port());
    s.conninfo = format!("host=127.0.0.1 port={pg_port} user=postgres dbname=postgres");
    s.url = format!("http://127.0.0.1:{processor_port}");
    s.log_dir = s.dir.path().join("no-logs");
    s.token = None;
    let p = problems(&s.check());
    assert_eq!(p.len(), 4, "{p:?}");
    assert!(p[0].contains("ship needs token or token_file"), "{p:?}");
    assert_eq!(
        p[1],
        format!("logs.directory {}: does not exist", s.log_dir.display())
    );
    assert!(
        p[2].starts_with(&format!(
            "postgres (user postgres, database postgres at 127.0.0.1:{pg_port}): "
        )),
        "{p:?}"
    );
    assert!(
        p[3].starts_with(&format!(
            "ship.processor_url http://127.0.0.1:{processor_port}: cannot connect"
        )),
        "{p:?}"
    );
}

#[test]
fn the_example_config_passes_its_own_parse_check() {
    // The example points at production paths, which are missing here; what
    // must hold is that no line is about the file itself.
    let example = manifest_dir().join("pg-watch.example.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_pg-watch"))
        .arg("--config")
        .arg(&example)
        .arg("--check-config")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("config file"), "{stderr}");
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
