//! The real `processor` binary for the tests that kill it (`crash.rs`,
//! `chaos.rs`); apart from `common` because only tests (not the ingest
//! benchmark, which shares `common`) know the binary's path.

use std::io::BufRead;
use std::net::SocketAddr;

/// The binary, started on a config file; its HTTP address is read from the
/// line it prints at start.
pub struct Bin {
    pub child: std::process::Child,
    /// Where it serves HTTP (`chaos.rs` fixes the port in its config instead).
    #[allow(dead_code)]
    pub addr: SocketAddr,
}

impl Bin {
    pub fn start(config: &std::path::Path) -> Bin {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_processor"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("processor binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("processor printed its address")
                .expect("stdout readable");
            if let Some(rest) = line.strip_prefix("processor: http on ") {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .parse()
                    .expect("address");
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Bin { child, addr }
    }
}

/// A failing test leaves no processor behind.
impl Drop for Bin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
