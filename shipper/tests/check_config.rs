//! `shipper --check-config` against broken configurations: each problem is
//! named on its own line, all of them at once, and a good configuration
//! prints one ok line. The processor is the tests' ingest receiver, which
//! answers /healthz and refuses unknown tokens with 401 as the processor does.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Receiver, TOKEN};

/// A configuration in `dir` with its spool and state directories made.
struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        std::fs::create_dir_all(root.join("spool")).unwrap();
        Setup {
            config: root.join("shipper.toml"),
            root,
            _dir: dir,
        }
    }

    fn spool(&self) -> PathBuf {
        self.root.join("spool")
    }

    /// Writes the config; `token_line` is the whole `token...` line or empty.
    fn write(&self, url: &str, token_line: &str) {
        std::fs::write(
            &self.config,
            format!(
                "spool_dirs = [\"{}\"]\nstate_dir = \"{}\"\nprocessor_url = \"{url}\"\n{token_line}\nlisten = \"127.0.0.1:0\"\n",
                self.spool().display(),
                self.root.join("state").display()
            ),
        )
        .unwrap();
    }

    fn check(&self) -> Output {
        Command::new(env!("CARGO_BIN_EXE_shipper"))
            .arg("--config")
            .arg(&self.config)
            .arg("--check-config")
            .env_remove("BITVILLE_SHIPPER_TOKEN")
            .env("RUST_LOG", "off")
            .output()
            .unwrap()
    }
}

fn closed_port_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
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

#[test]
fn a_good_config_prints_one_ok_line() {
    let receiver = Receiver::start();
    let s = Setup::new();
    s.write(&receiver.url(), &format!("token = \"{TOKEN}\""));
    let out = s.check();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim_end(),
        format!(
            "config ok: 1 spool dir(s), processor {} reachable, token accepted, status on 127.0.0.1:0",
            receiver.url()
        )
    );
    assert!(out.stderr.is_empty(), "{out:?}");
    // The probe reached the ingest endpoint with the token, and stored nothing.
    assert_eq!(
        (
            *receiver.state.requests.lock().unwrap(),
            receiver.stored().len()
        ),
        (1, 0)
    );
}

#[test]
fn a_missing_spool_dir_is_named() {
    let receiver = Receiver::start();
    let s = Setup::new();
    s.write(&receiver.url(), &format!("token = \"{TOKEN}\""));
    std::fs::remove_dir(s.spool()).unwrap();
    assert_eq!(
        problems(&s.check()),
        vec![format!("spool dir {}: does not exist", s.spool().display())]
    );
}

#[test]
fn a_missing_token_is_named_with_every_way_to_give_one() {
    let receiver = Receiver::start();
    let s = Setup::new();
    s.write(&receiver.url(), "");
    assert_eq!(
        problems(&s.check()),
        vec![
            "token: none given: set token or token_file, or the environment variable BITVILLE_SHIPPER_TOKEN"
        ]
    );
    let token_file = s.root.join("token");
    s.write(
        &receiver.url(),
        &format!("token_file = \"{}\"", token_file.display()),
    );
    let p = problems(&s.check());
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with(&format!(
            "token_file {}: cannot be read: ",
            token_file.display()
        )),
        "{p:?}"
    );
}

#[test]
fn an_unreachable_processor_is_named() {
    let s = Setup::new();
    let url = closed_port_url();
    s.write(&url, &format!("token = \"{TOKEN}\""));
    let p = problems(&s.check());
    assert_eq!(p.len(), 1, "{p:?}");
    let addr = url.trim_start_matches("http://");
    assert!(
        p[0].starts_with(&format!("processor_url {url}: cannot connect to {addr}: ")),
        "{p:?}"
    );
    assert!(p[0].contains("refused"), "{p:?}");
}

#[test]
fn a_token_the_processor_does_not_know_is_named() {
    let receiver = Receiver::start();
    let s = Setup::new();
    s.write(&receiver.url(), "token = \"not-the-token\"");
    assert_eq!(
        problems(&s.check()),
        vec![format!(
            "processor_url {}: the processor refuses the token (401 Unauthorized: unknown token)",
            receiver.url()
        )]
    );
}

#[test]
fn every_problem_is_listed_not_only_the_first() {
    let s = Setup::new();
    let url = closed_port_url();
    s.write(&url, "");
    std::fs::remove_dir(s.spool()).unwrap();
    // A state_dir that is a file cannot hold checkpoints.
    std::fs::write(s.root.join("state"), "").unwrap();
    let p = problems(&s.check());
    assert_eq!(p.len(), 4, "{p:?}");
    assert!(p[0].starts_with("token: none given"), "{p:?}");
    assert_eq!(
        p[1],
        format!("spool dir {}: does not exist", s.spool().display())
    );
    assert_eq!(
        p[2],
        format!(
            "state_dir {}: is not a directory",
            s.root.join("state").display()
        )
    );
    assert!(
        p[3].starts_with(&format!("processor_url {url}: cannot connect")),
        "{p:?}"
    );
}

#[test]
fn a_spool_the_daemon_user_cannot_write_is_named() {
    // Run as `nobody`, as the README says to run the check as the daemon's
    // user: root may write anywhere, so only another user shows the problem.
    let receiver = Receiver::start();
    let s = Setup::new();
    s.write(&receiver.url(), &format!("token = \"{TOKEN}\""));
    for p in [s.root.as_path(), s.spool().as_path()] {
        set_mode(p, 0o755);
    }
    set_mode(&s.config, 0o644);
    std::fs::create_dir_all(s.root.join("state")).unwrap();
    std::process::Command::new("chown")
        .arg("nobody")
        .arg(s.root.join("state"))
        .status()
        .unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_shipper"))
        .arg("--config")
        .arg(&s.config)
        .arg("--check-config")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let p = problems(&out);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with(&format!(
            "spool dir {}: not readable and writable by uid ",
            s.spool().display()
        )),
        "{p:?}"
    );
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn the_example_config_passes_its_own_parse_check() {
    // The example names production paths, missing here; what must hold is
    // that no line is about the file or its values.
    let example = manifest_dir().join("shipper.example.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_shipper"))
        .arg("--config")
        .arg(&example)
        .arg("--check-config")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("config file") && !stderr.contains("config: "),
        "{stderr}"
    );
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
