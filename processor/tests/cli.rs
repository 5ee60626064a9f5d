//! The binary's command line: --help, --version, --check-config.

use std::process::Command;

fn processor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_processor"))
}

#[test]
fn check_config_accepts_the_example_and_names_the_problem_in_a_bad_file() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/processor.example.toml");
    let out = processor().args(["--config", example, "--check-config"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("is good: http 127.0.0.1:8443, udp 127.0.0.1:8444"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[retention]\ndays = 0\n").unwrap();
    let out = processor().arg("--config").arg(&bad).arg("--check-config").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim(), format!("processor: config {}: retention.days must be at least 1", bad.display()));

    let out = processor().args(["--config", "/nonexistent/p.toml", "--check-config"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config /nonexistent/p.toml"));
}

#[test]
fn help_and_version_print_and_exit_zero() {
    let out = processor().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--check-config") && help.contains("serve"), "{help}");
    let out = processor().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("processor "));
}
