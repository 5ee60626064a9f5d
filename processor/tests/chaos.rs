//! The whole path under SIGKILL: a writer appends records to spool files,
//! the real `shipper` binary ships them to the real `processor` binary, and
//! both are killed again and again (each on its own, at moments that do not
//! line up) until the writer is done. Then both run to the end and stop on
//! SIGTERM: the store holds every written record exactly once, and nothing
//! else (written equals stored).
//!
//! `crash.rs` kills the processor alone and checks every acknowledged
//! batch; `shipper/tests/sigkill.rs` and `pg-watch/tests/chaos.rs` kill the
//! other daemons against a stand-in receiver.

#[path = "common/bin.rs"]
mod bin;
mod common;

use std::collections::HashSet;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bin::Bin;
use common::*;

/// Spool files the writer appends to, one per imagined PHP worker.
const FILES: usize = 3;
/// Records the writer appends in all.
const RECORDS: usize = 6000;

/// The `shipper` binary beside this package's `processor` in the target
/// folder: `cargo build --workspace` (the first step of `.ci/test`) or
/// `cargo test --workspace` builds it.
fn shipper_bin() -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_processor")).with_file_name("shipper");
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

/// The running shipper; killed when dropped, so a failing test leaves no
/// daemon behind.
struct Shipper(Child);

impl Drop for Shipper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_shipper(config: &std::path::Path) -> Shipper {
    Shipper(
        Command::new(shipper_bin())
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the shipper binary"),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sigterm_and_wait(child: &mut Child, what: &str) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{what} exited with {status} on SIGTERM");
}

#[test]
fn sigkill_of_shipper_and_processor_in_a_loop_stores_every_written_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    // A fixed port: the shipper must find each new processor where the last was.
    let port = free_port();
    let processor_config = dir.path().join("processor.toml");
    std::fs::write(
        &processor_config,
        test_config_text(dir.path()).replace(
            "\nlisten = \"127.0.0.1:0\"",
            &format!("\nlisten = \"127.0.0.1:{port}\"\nmetrics_listen = \"127.0.0.1:0\""),
        ),
    )
    .unwrap();
    // The shipper's status port: it answers once the SIGTERM handler is in.
    let shipper_status = free_port();
    let shipper_config = dir.path().join("shipper.toml");
    std::fs::write(
        &shipper_config,
        format!(
            r#"spool_dirs = ["{}"]
state_dir = "{}"
processor_url = "http://127.0.0.1:{port}"
token = "{TOKEN}"
listen = "127.0.0.1:{shipper_status}"
[batch]
max_bytes = 65536
max_age_ms = 20
[tail]
scan_interval_ms = 100
[retry]
backoff_base_ms = 20
backoff_max_ms = 200
breaker_cooldown_s = 1
request_timeout_s = 5
[state]
checkpoint_interval_ms = 100
drain_timeout_s = 5
[host_metrics]
enabled = false
"#,
            spool.display(),
            dir.path().join("shipper-state").display(),
        ),
    )
    .unwrap();

    // The writer: one append per record, as the PHP agent writes.
    let written: Arc<Mutex<Vec<String>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (spool, written, done) = (spool.clone(), written.clone(), done.clone());
        std::thread::spawn(move || {
            let mut files: Vec<std::fs::File> = (0..FILES)
                .map(|f| {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(spool.join(format!("php.2026010100.{}.ndjson", 100 + f)))
                        .unwrap()
                })
                .collect();
            for n in 0..RECORDS {
                let id = new_id();
                let line = format!("{}\n", host_metrics(&id, now_micros(), "shop"));
                files[n % FILES].write_all(line.as_bytes()).unwrap();
                written.lock().unwrap().push(id);
                if n % 100 == 99 {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            done.store(true, Ordering::Relaxed);
        })
    };

    // Kill one or the other in turn, at uneven moments, until the writer is done.
    let mut processor = Bin::start(&processor_config);
    let mut shipper = spawn_shipper(&shipper_config);
    let (mut processor_kills, mut shipper_kills) = (0, 0);
    let mut step = 0u64;
    while !done.load(Ordering::Relaxed) || processor_kills < 3 || shipper_kills < 3 {
        step += 1;
        std::thread::sleep(Duration::from_millis(200 + (step * 137) % 500));
        if step.is_multiple_of(3) {
            drop(processor); // SIGKILL
            processor = Bin::start(&processor_config);
            processor_kills += 1;
        } else {
            drop(shipper); // SIGKILL
            shipper = spawn_shipper(&shipper_config);
            shipper_kills += 1;
        }
    }
    writer.join().unwrap();
    let written = written.lock().unwrap().clone();

    // Both run to the end: the shipper's checkpoint reaches every file's end
    // only after the processor acknowledged every line.
    let checkpoint = dir.path().join("shipper-state").join("checkpoints.json");
    let at_end = || {
        let Ok(text) = std::fs::read(&checkpoint) else {
            return false;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&text) else {
            return false;
        };
        let files = v["files"].as_array().cloned().unwrap_or_default();
        files.len() == FILES
            && files.iter().all(|f| {
                std::fs::metadata(f["path"].as_str().unwrap_or(""))
                    .is_ok_and(|m| Some(m.len()) == f["offset"].as_u64())
            })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !at_end() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(at_end(), "the shipper did not catch up within 60 s");
    // The checkpoint may be a killed run's; SIGTERM goes to a shipper that is
    // up, or it would die of the signal before its handler was installed.
    let up = || {
        std::net::TcpStream::connect(("127.0.0.1", shipper_status)).is_ok_and(|mut s| {
            use std::io::Read;
            let _ = s.write_all(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n");
            let mut reply = String::new();
            let _ = s.read_to_string(&mut reply);
            reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !up() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    sigterm_and_wait(&mut shipper.0, "the shipper");
    sigterm_and_wait(&mut processor.child, "the processor");
    drop(processor); // the store is opened below: the process must be gone

    let store = processor::store::Store::open(&processor::store::StoreConfig::at(
        &dir.path().join("store.duckdb"),
    ))
    .expect("the store opens after the kills");
    let reader = store.reader().unwrap();
    let total = reader.query_i64("SELECT count(*) FROM records").unwrap();
    let stored: HashSet<String> = reader
        .query_strings("SELECT id FROM records")
        .unwrap()
        .into_iter()
        .filter_map(|mut r| r.pop().flatten())
        .collect();
    let want: HashSet<String> = written.iter().cloned().collect();
    let missing = want.difference(&stored).count();
    let extra = stored.difference(&want).count();
    println!(
        "chaos: {processor_kills} processor and {shipper_kills} shipper SIGKILLs, {} written, \
         {total} stored, {} distinct, {missing} missing, {extra} never written",
        written.len(),
        stored.len()
    );
    assert_eq!(want.len(), RECORDS);
    assert_eq!(missing, 0, "written records are missing");
    assert_eq!(extra, 0, "records that were never written are stored");
    assert_eq!(total as usize, stored.len(), "a record was stored twice");
    assert_eq!(total as usize, RECORDS, "written equals stored");
}
