//! Validates NDJSON files against the record schemas, line by line.
//!
//! `cargo run -q -p bitville-schemas --example validate -- FILE...` prints
//! `FILE:LINE: reason` for each refused line and exits 1 if any was refused.
//! The PHP agent's tests use it to check what the agent writes.

use std::io::{BufRead, BufReader};
use std::process::ExitCode;

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: validate FILE...");
        return ExitCode::from(2);
    }
    let mut bad = 0usize;
    let mut good = 0usize;
    for path in &files {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("{path}: cannot open: {e}");
                bad += 1;
                continue;
            }
        };
        for (n, line) in BufReader::new(file).split(b'\n').enumerate() {
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("{path}: read error: {e}");
                    bad += 1;
                    break;
                }
            };
            match bitville_schemas::validate_line(&line) {
                Ok(_) => good += 1,
                Err(e) => {
                    println!("{path}:{}: {e}", n + 1);
                    bad += 1;
                }
            }
        }
    }
    eprintln!("{good} valid, {bad} refused");
    if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
