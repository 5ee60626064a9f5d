//! Issue 19 over the wire: admin SQL (`POST /v1/sql`) reads the store's
//! tables and nothing else, and a query that runs too long stops, on time
//! and at shutdown.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::json;

const ADMIN: &str = "admin-token-0123456789abcdef";

fn admin_config(dir: &Path) -> processor::config::Config {
    let mut config = test_config(dir);
    config.admin_tokens = vec![ADMIN.to_owned()];
    config
}

/// `POST /v1/sql` with the admin token.
fn sql(client: &mut Client, query: &str, timeout_s: u64) -> Response {
    let body = json!({ "query": query, "timeout_s": timeout_s }).to_string();
    let auth = format!("Bearer {ADMIN}");
    client
        .request(
            "POST",
            "/v1/sql",
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
        .expect("sql request")
}

/// A file that is removed when the test ends, pass or fail.
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Issue 19, item 5: DuckDB's replacement scans turned table names that
/// look like files into file reads while the processor ran with external
/// access on, and the parser wall checked only function names. Every way
/// in is refused with a message now, and plain SELECTs on the store work.
#[test]
fn admin_sql_cannot_reach_host_files() {
    const CANARY: &str = "canary-7f3a9c";
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(admin_config(dir.path()));
    let d = dir.path().display();
    std::fs::write(dir.path().join("secret.csv"), format!("a\n{CANARY}\n")).unwrap();
    std::fs::write(
        dir.path().join("x.json"),
        format!("{{\"a\":\"{CANARY}\"}}\n"),
    )
    .unwrap();
    // A bare `name.csv` is read relative to the working directory.
    let stem = format!("bitville_canary_{}", uuid::Uuid::new_v4().simple());
    let bare = Removed(std::env::current_dir().unwrap().join(format!("{stem}.csv")));
    std::fs::write(&bare.0, format!("a\n{CANARY}\n")).unwrap();

    let r = run.client().post_ndjson(
        TOKEN,
        &ndjson(&[host_metrics(&new_id(), now_micros(), "shop")]),
        false,
    );
    assert_eq!(r.status, 200, "{}", r.text());

    let attempts = [
        format!("SELECT * FROM \"{d}/secret\".csv"),
        format!("SELECT * FROM '{d}/*.json'"),
        format!("SELECT * FROM {stem}.csv"),
        // The parser lets this name through (schema main, plain name);
        // the database refuses the file scan it would become.
        "SELECT * FROM main.csv".to_owned(),
        format!("SUMMARIZE \"{d}/secret\".csv"),
        format!("SUMMARIZE SELECT * FROM '{d}/secret.csv'"),
        format!("SELECT * FROM read_csv('{d}/secret.csv')"),
        format!("SELECT * FROM read_text('{d}/secret.csv')"),
        format!("SELECT (SELECT count(*) FROM '{d}/secret.csv') AS n FROM records"),
        "SET enable_external_access = true".to_owned(),
        "RESET enable_external_access".to_owned(),
        "SET lock_configuration = false".to_owned(),
        format!("COPY records TO '{d}/out.csv'"),
        format!("ATTACH '{d}/other.duckdb' AS other"),
        "INSTALL httpfs".to_owned(),
        "LOAD httpfs".to_owned(),
    ];
    let mut client = run.client();
    for query in &attempts {
        let r = sql(&mut client, query, 5);
        let text = r.text();
        assert_eq!(r.status, 400, "{query}: {text}");
        let error = r.json()["error"].as_str().unwrap_or_default().to_owned();
        eprintln!("{query}\n  -> {error}");
        assert!(
            [
                "refused",
                "only SELECT",
                "only one statement",
                "not allowed",
                "disabled by configuration"
            ]
            .iter()
            .any(|word| error.contains(word)),
            "{query}: the message says why: {error}"
        );
        assert!(
            !text.contains(CANARY),
            "{query}: a host file was read: {text}"
        );
    }
    assert!(!dir.path().join("out.csv").exists(), "COPY wrote a file");
    assert!(
        !dir.path().join("other.duckdb").exists(),
        "ATTACH made a file"
    );

    // Ordinary reads of the store still work.
    for (query, expected) in [
        ("SELECT count(*) AS n FROM records", "1"),
        (
            "SELECT count(*) AS n FROM main.host_metrics WHERE project = 'shop'",
            "1",
        ),
        (
            "WITH x AS (SELECT kind FROM records) SELECT kind FROM x",
            "host_metrics",
        ),
    ] {
        let r = sql(&mut client, query, 5);
        assert_eq!(r.status, 200, "{query}: {}", r.text());
        assert_eq!(r.json()["rows"][0][0], expected, "{query}: {}", r.text());
    }
    let r = sql(&mut client, "SUMMARIZE records", 5);
    assert_eq!(r.status, 200, "{}", r.text());
    run.stop();
}

/// Issue 19: a trailing `-- comment` became a parser error that showed the
/// runner's wrapper query. It runs now, and a query that fails says what
/// DuckDB found wrong in the admin's own query.
#[test]
fn admin_sql_takes_a_trailing_comment_and_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(admin_config(dir.path()));
    let mut client = run.client();
    let r = sql(&mut client, "SELECT 41 + 1 AS answer -- the answer", 5);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["rows"][0][0], "42", "{}", r.text());
    let r = sql(
        &mut client,
        "SELECT count(*) FROM no_such_table -- a typo",
        5,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let error = r.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("no_such_table"), "{error}");
    assert!(
        !error.contains("DESCRIBE") && !error.contains("LINE 1"),
        "the message shows the wrapper: {error}"
    );
    run.stop();
}

/// A query that never ends on its own: a recursive CTE that keeps one row
/// per key (so its memory stays flat) and counts up forever.
const FOREVER: &str = "WITH RECURSIVE r(k, n) USING KEY (k) AS \
     (SELECT 1, 1 UNION SELECT k, n + 1 FROM r) SELECT max(n) FROM r";

/// Issue 19, item 6, in this process: shutdown does not wait for a query
/// that would run for its whole timeout.
#[test]
fn shutdown_interrupts_a_running_query() {
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(admin_config(dir.path()));
    let mut client = run.client();
    let query = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let r = client.request(
            "POST",
            "/v1/sql",
            &[
                ("Authorization", &format!("Bearer {ADMIN}")),
                ("Content-Type", "application/json"),
            ],
            json!({ "query": FOREVER, "timeout_s": 30 })
                .to_string()
                .as_bytes(),
        );
        (r.map(|r| (r.status, r.text())), started.elapsed())
    });
    std::thread::sleep(std::time::Duration::from_millis(1000));
    assert!(!query.is_finished(), "the query runs until stopped");
    let stopping = std::time::Instant::now();
    run.stop();
    let took = stopping.elapsed();
    assert!(
        took < std::time::Duration::from_secs(3),
        "shutdown took {took:?}"
    );
    let (answer, after) = query.join().unwrap();
    assert!(
        after < std::time::Duration::from_secs(4),
        "{answer:?} after {after:?}"
    );
    if let Ok((status, text)) = answer {
        assert_ne!(status, 200, "{text}");
    }
}

/// The real binary, started on a config file; its HTTP address is read
/// from the line it prints at start.
struct Bin {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl Bin {
    fn start(config: &Path) -> Bin {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_processor"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("processor binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines.next().expect("an address line").expect("stdout");
            if let Some(rest) = line.strip_prefix("processor: http on ") {
                let addr = rest.split_whitespace().next().expect("address");
                break addr.parse().expect("address");
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Bin { child, addr }
    }

    /// User plus system CPU time of the process so far, from /proc.
    fn cpu(&self) -> std::time::Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("the process's stat");
        // Fields after the command name, which is in parentheses.
        let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        std::time::Duration::from_millis(ticks * 1000 / per_second)
    }

    /// Waits up to `limit` for the process to exit.
    fn wait(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Bin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Issue 19, item 6, with the real binary: a recursive CTE got 408 after
/// its timeout but kept 1.7 cores busy, and the processor then ignored
/// SIGTERM. Now the timeout interrupts the query (the CPU time stops
/// growing) and SIGTERM during such a query stops the processor promptly.
#[test]
fn a_query_past_its_timeout_stops_and_sigterm_stops_the_processor() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("processor.toml");
    let text = format!(
        "admin_tokens = [\"{ADMIN}\"]\n{}",
        test_config_text(dir.path())
    );
    std::fs::write(&config, text).unwrap();
    let mut bin = Bin::start(&config);
    let mut client = Client::new(bin.addr);

    let asked = Instant::now();
    let r = sql(&mut client, FOREVER, 1);
    let answered = asked.elapsed();
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(r.text().contains("timeout"), "{}", r.text());
    assert!(
        answered < Duration::from_secs(4),
        "answered after {answered:?}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let before = bin.cpu();
    std::thread::sleep(Duration::from_secs(2));
    let spent = bin.cpu() - before;
    eprintln!("CPU in the 2 s after the timeout's answer: {spent:?}");
    assert!(
        spent < Duration::from_millis(300),
        "the query still runs: {spent:?} of CPU in 2 s"
    );

    // SIGTERM while a query runs (its timeout is 30 s).
    let addr = bin.addr;
    let query = std::thread::spawn(move || sql(&mut Client::new(addr), FOREVER, 30).status);
    std::thread::sleep(Duration::from_secs(1));
    let before = bin.cpu();
    std::thread::sleep(Duration::from_millis(500));
    let busy = bin.cpu() - before;
    assert!(
        busy > Duration::from_millis(200),
        "the query should be running: {busy:?}"
    );
    let signalled = Instant::now();
    // SAFETY: kill has no memory preconditions; the pid is our child's.
    assert_eq!(
        unsafe { libc::kill(bin.child.id() as i32, libc::SIGTERM) },
        0
    );
    let status = bin.wait(Duration::from_secs(10));
    let took = signalled.elapsed();
    eprintln!("SIGTERM to exit during a query: {took:?}");
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?} after {took:?}"
    );
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?}");
    assert_ne!(query.join().unwrap(), 200);
}
