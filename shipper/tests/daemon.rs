//! The `shipper` binary: `--check-config`, `/healthz` and `/metrics`,
//! SIGHUP reload (a bad file is refused, a good one applied), SIGTERM.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Receiver, TOKEN, record};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shipper"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn write_config(path: &Path, dir: &Path, url: &str, token: &str, port: u16) {
    std::fs::write(
        path,
        format!(
            "spool_dirs = [\"{}\"]\nstate_dir = \"{}\"\nprocessor_url = \"{url}\"\ntoken = \"{token}\"\nlisten = \"127.0.0.1:{port}\"\n\
             [batch]\nmax_age_ms = 20\n[tail]\nscan_interval_ms = 100\n[retry]\nbackoff_base_ms = 10\nbackoff_max_ms = 100\n\
             [host_metrics]\nenabled = false\n",
            dir.join("spool").display(),
            dir.join("state").display()
        ),
    )
    .unwrap();
}

#[test]
fn check_config_says_in_one_line_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("spool")).unwrap();
    let receiver = Receiver::start();
    let path = dir.path().join("s.toml");
    write_config(&path, dir.path(), &receiver.url(), TOKEN, 9);
    let ok = bin()
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("config ok"));
    std::fs::write(&path, "token = \"t\"\n[batch]\nmax_bytez = 1\n").unwrap();
    let bad = bin()
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("line 3") && err.contains("max_bytez"), "{err}");
    // A flag fixes what the file gets wrong.
    write_config(&path, dir.path(), "ftp://x", TOKEN, 9);
    let fixed = bin()
        .arg("--config")
        .arg(&path)
        .args(["--check-config", "--processor-url", &receiver.url()])
        .output()
        .unwrap();
    assert!(fixed.status.success(), "{fixed:?}");
    let version = bin().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("shipper "));
}

#[test]
fn the_token_can_come_from_the_environment_instead_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("spool")).unwrap();
    let receiver = Receiver::start();
    let path = dir.path().join("s.toml");
    write_config(&path, dir.path(), &receiver.url(), TOKEN, 9);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&format!("token = \"{TOKEN}\"\n"), "");
    std::fs::write(&path, text).unwrap();
    let without = bin()
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .env_remove("BITVILLE_SHIPPER_TOKEN")
        .output()
        .unwrap();
    assert_eq!(without.status.code(), Some(2), "{without:?}");
    assert!(
        String::from_utf8_lossy(&without.stderr).contains("token: none given"),
        "{without:?}"
    );
    let with = bin()
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .env("BITVILLE_SHIPPER_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(with.status.success(), "{with:?}");
    assert!(
        String::from_utf8_lossy(&with.stdout).contains("token accepted"),
        "{with:?}"
    );
}

#[test]
fn sighup_reloads_a_good_config_keeps_running_on_a_bad_one_and_sigterm_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let port = free_port();
    let path = dir.path().join("s.toml");
    write_config(&path, dir.path(), &receiver.url(), "wrong-token", port);
    std::fs::create_dir_all(dir.path().join("spool")).unwrap();
    std::fs::write(
        dir.path().join("spool/php.2020010100.1.ndjson"),
        record(0, 0, 0, 10) + "\n",
    )
    .unwrap();
    let mut child = bin()
        .arg("--config")
        .arg(&path)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(10);
    while *receiver.state.bad_auth.lock().unwrap() == 0 {
        assert!(Instant::now() < deadline, "no request with the wrong token");
        std::thread::sleep(Duration::from_millis(20));
    }
    let health = http_get(port, "/healthz").unwrap();
    assert!(
        health.starts_with("HTTP/1.0 200") || health.starts_with("HTTP/1.1 200"),
        "{health}"
    );
    let metrics = http_get(port, "/metrics").unwrap();
    assert!(
        metrics.contains("bitville_shipper_batches_failed_total "),
        "{metrics}"
    );
    assert!(receiver.stored().is_empty());

    // A broken file: refused, the daemon goes on.
    std::fs::write(&path, "this is not toml").unwrap();
    unsafe { libc::kill(pid, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "a bad reload must not stop the daemon"
    );

    // The right token: the line arrives.
    write_config(&path, dir.path(), &receiver.url(), TOKEN, port);
    unsafe { libc::kill(pid, libc::SIGHUP) };
    while receiver.stored().is_empty() {
        assert!(
            Instant::now() < deadline + Duration::from_secs(10),
            "nothing arrived after the reload"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let metrics = http_get(port, "/metrics").unwrap();
    assert!(
        metrics.contains("bitville_shipper_lines_shipped_total 1"),
        "{metrics}"
    );
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(receiver.stored().len(), 1);
}
