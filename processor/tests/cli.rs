//! The binary's command line: --help, --version, --check-config.

use std::process::Command;

fn processor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_processor"))
}

#[test]
fn check_config_accepts_the_example_and_names_the_problem_in_a_bad_file() {
    let example = &manifest_dir()
        .join("processor.example.toml")
        .display()
        .to_string();
    let out = processor()
        .args(["--config", example.as_str(), "--check-config"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("is good: http 127.0.0.1:8443, udp 127.0.0.1:8444"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[retention]\ndays = 0\n").unwrap();
    let out = processor()
        .arg("--config")
        .arg(&bad)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        format!(
            "processor: config {}: retention.days must be at least 1",
            bad.display()
        )
    );

    let out = processor()
        .args(["--config", "/nonexistent/p.toml", "--check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read config /nonexistent/p.toml")
    );
}

#[test]
fn help_and_version_print_and_exit_zero() {
    let out = processor().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--check-config") && help.contains("serve"),
        "{help}"
    );
    let out = processor().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("processor "));
}

#[test]
fn tokens_from_the_environment_replace_the_files_and_bad_ones_are_named() {
    let example = &manifest_dir()
        .join("processor.example.toml")
        .display()
        .to_string();
    let out = processor()
        .args(["--config", example.as_str(), "--check-config"])
        .env(
            "BITVILLE_PROCESSOR_TOKENS",
            "shop=env-token-0123456789,blog=env-token-abcdefghij",
        )
        .env("BITVILLE_PROCESSOR_ADMIN_TOKENS", "admin-token-0123456789")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2 token(s), 1 admin token(s)"), "{stdout}");

    let out = processor()
        .args(["--config", example.as_str(), "--check-config"])
        .env("BITVILLE_PROCESSOR_TOKENS", "shop:env-token-0123456789")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("BITVILLE_PROCESSOR_TOKENS: \"shop...\" is not project=token"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("env-token-0123456789"),
        "a malformed secret is echoed: {stderr}"
    );
}

/// The output of `processor demo --exit` on a fresh store, with `COLUMNS`
/// set when given and `extra` arguments; fails unless it exits 0.
fn demo(columns: Option<&str>, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("demo.toml");
    std::fs::write(&config, "[server]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let mut command = processor();
    command
        .arg("--config")
        .arg(&config)
        .args(["demo", "--exit"])
        .args(extra);
    if let Some(columns) = columns {
        command.env("COLUMNS", columns);
    }
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The README's first command, on the recorded lock-contention spike: it
/// ships the spool through HTTP ingest, detects the spike, and ranks the
/// lock blocker first with the blocking request's URL.
#[test]
fn demo_ships_the_recorded_spike_and_names_the_lock_blocker_first() {
    let stdout = demo(None, &[]);
    // Lines are wrapped to the terminal's width, wherever the words fall.
    let words = stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains(" 0 duplicates"), "{stdout}");
    let detected = stdout
        .split("Detected spikes")
        .nth(1)
        .expect("a spike list");
    assert!(
        !detected.contains("(no spikes)") && detected.contains("2026-11-27T10:"),
        "{stdout}"
    );
    let ranked = stdout.split("\n#1 ").nth(1).expect("a first suspect");
    assert!(ranked.starts_with("lock "), "{stdout}");
    assert!(ranked.contains("/admin/stock/recount?sku=A-77"), "{stdout}");
}

/// Issue 22: `report spike` printed lines up to 225 columns wide. At
/// `COLUMNS=80` (as a terminal of 80 columns sets it) no line of the demo's
/// output is wider, the report opens with its verdict, and it says that
/// the suspects' shares overlap.
///
/// Also: `demo --listen` serves where it is told, and its follow-up
/// commands carry that URL and the token; `sql --json` over the store the
/// demo leaves prints numbers as numbers (they were strings).
#[test]
fn demo_report_fits_80_columns_with_a_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("demo.duckdb");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let stdout = demo(
        Some("80"),
        &["--listen", &listen, "--store", store.to_str().unwrap()],
    );
    let wide: Vec<&str> = stdout.lines().filter(|l| l.chars().count() > 80).collect();
    assert!(
        wide.is_empty(),
        "lines over 80 columns: {wide:#?}\n{stdout}"
    );
    let verdict = stdout.split("\nVerdict: ").nth(1).expect("a verdict line");
    assert!(
        verdict.starts_with("POST stock-recount (/admin/stock/recount?sku=A-77) held a lock"),
        "{stdout}"
    );
    assert!(stdout.contains("Note: Suspects overlap"), "{stdout}");
    assert!(
        !stdout.contains(".000000Z"),
        "times are shown to the second: {stdout}"
    );
    // The follow-up command carries the URL and token it needs.
    assert!(stdout.contains("--token"), "{stdout}");
    let url = format!("http://{listen}");
    assert!(
        stdout.contains(&format!("processor: http on {url}")),
        "{stdout}"
    );
    // Long commands are split with `\` continuations: read it as words.
    let words = stdout.replace("\\\n", " ");
    let words = words.split_whitespace().collect::<Vec<_>>().join(" ");
    let follow_up = words
        .split("processor report spike ")
        .nth(1)
        .expect("a follow-up command");
    assert!(
        follow_up.contains(&format!("--url {url} --token ")),
        "the follow-up command asks this processor: {stdout}"
    );

    let out = processor()
        .args(["sql", "--json", "--store", store.to_str().unwrap()])
        .arg("SELECT count(*) AS n, avg(duration_ms) > 0 AS busy, 'x' AS s, 1.5::DOUBLE AS d FROM requests")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &answer["rows"][0];
    assert!(row[0].as_u64().is_some_and(|n| n > 100), "{answer}");
    assert_eq!(row[1], true, "{answer}");
    assert_eq!(row[2], "x", "{answer}");
    assert_eq!(row[3], 1.5, "{answer}");
}

/// Every argument of the report commands has help, and the time arguments
/// say which formats they accept.
#[test]
fn report_help_names_every_argument_and_the_time_formats() {
    for command in ["spike", "spikes", "requests", "top", "request"] {
        let out = processor()
            .args(["report", command, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{help}");
        for line in help.lines().filter(|l| l.trim_start().starts_with("--")) {
            let described = line.trim_start().split_once("  ").is_some();
            assert!(described, "report {command}: no help for {line:?}\n{help}");
        }
        if command != "request" {
            assert!(help.contains("RFC 3339"), "report {command}:\n{help}");
        }
        // Every time argument says its zone: the web UI shows local
        // times, the command line reads UTC.
        let options: Vec<&str> = help.split("\n  -").collect();
        for option in options.iter().filter(|o| {
            ["-from ", "-to ", "-baseline-from ", "-baseline-to "]
                .iter()
                .any(|f| o.starts_with(f))
        }) {
            assert!(option.contains("UTC"), "report {command}: -{option}");
        }
    }
}

#[test]
fn check_config_lists_every_problem_it_finds_without_starting() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let config = dir.path().join("p.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"0.0.0.0:8443\"\n[store]\npath = \"{}/store.duckdb\"\n\
             [[gelf.outputs]]\nname = \"graylog\"\ntransport = \"tcp\"\naddress = \"{closed}\"\n",
            blocker.display()
        ),
    )
    .unwrap();
    let out = processor()
        .arg("--config")
        .arg(&config)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("store.path ") && l.ends_with("is not a folder")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("gelf.outputs[0] (graylog): Graylog at ")
                && l.contains("not reachable")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("warning: server.listen 0.0.0.0:8443: plain HTTP")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("warning: tokens: none configured")),
        "{stderr}"
    );
    assert!(stderr.contains("2 problem(s)"), "{stderr}");
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
