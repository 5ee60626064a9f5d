//! Kills the real `shipper` binary with SIGKILL many times while it ships
//! a growing spool to a real HTTP receiver, then lets it finish and stops
//! it with SIGTERM: after dedupe by record id every line is there exactly
//! once, and nothing arrives that was not written.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Receiver, TOKEN, record};
use rand::Rng;

const FILES: u64 = 4;
const LINES_PER_FILE: u64 = 3000;
const KILLS: usize = 25;

fn spawn(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_shipper"))
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the shipper binary")
}

#[test]
fn sigkill_at_random_moments_loses_nothing_and_dedupe_leaves_each_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&spool).unwrap();
    let receiver = Receiver::start();
    let config = dir.path().join("shipper.toml");
    std::fs::write(
        &config,
        format!(
            r#"spool_dirs = ["{}"]
state_dir = "{}"
processor_url = "{}"
token = "{TOKEN}"
listen = "127.0.0.1:0"
[batch]
max_bytes = 32768
max_age_ms = 20
[tail]
scan_interval_ms = 100
[retry]
backoff_base_ms = 10
backoff_max_ms = 100
[state]
checkpoint_interval_ms = 100
drain_timeout_s = 2
[host_metrics]
enabled = false
"#,
            spool.display(),
            state.display(),
            receiver.url()
        ),
    )
    .unwrap();

    // The writer appends in bursts while the shipper is killed and restarted.
    let writer_spool = spool.clone();
    let writer = std::thread::spawn(move || {
        let mut files: Vec<std::fs::File> = (0..FILES)
            .map(|f| {
                let path = writer_spool.join(format!("php.2020010100.{}.ndjson", 100 + f));
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap()
            })
            .collect();
        let mut rng = rand::rng();
        let mut next = vec![0u64; FILES as usize];
        while next.iter().any(|&n| n < LINES_PER_FILE) {
            let f = rng.random_range(0..FILES) as usize;
            let burst = rng.random_range(1..60u64).min(LINES_PER_FILE - next[f]);
            for _ in 0..burst {
                // One write per record, as every spool writer does.
                files[f]
                    .write_all(format!("{}\n", record(f as u64, 0, next[f], 150)).as_bytes())
                    .unwrap();
                next[f] += 1;
            }
            std::thread::sleep(Duration::from_micros(rng.random_range(0..3000)));
        }
    });

    let mut rng = rand::rng();
    for _ in 0..KILLS {
        let mut child = spawn(&config);
        std::thread::sleep(Duration::from_millis(rng.random_range(60..300)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    writer.join().unwrap();

    let mut child = spawn(&config);
    let want: HashSet<String> = (0..FILES)
        .flat_map(|f| (0..LINES_PER_FILE).map(move |n| (f, n)))
        .map(|(f, n)| format!("{:08x}-{:04x}-4000-8000-{:012x}", f, 0, n))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: HashSet<String> = receiver.stored().into_iter().map(|s| s.id).collect();
        if want.is_subset(&got) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SIGTERM: drain, checkpoint, exit 0.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "shipper exited with {status} on SIGTERM");

    let stored = receiver.stored();
    let unique: HashSet<String> = stored.iter().map(|s| s.id.clone()).collect();
    let missing = want.difference(&unique).count();
    let extra = unique.difference(&want).count();
    println!(
        "sigkill: {KILLS} kills, {} lines written, {} delivered, {} duplicates before dedupe, {} missing",
        want.len(),
        stored.len(),
        stored.len() - unique.len(),
        missing
    );
    assert_eq!(missing, 0, "lines lost");
    assert_eq!(extra, 0, "lines that were never written arrived");
    // Per file, first arrivals follow file order.
    let mut seen = HashSet::new();
    let mut last = vec![None::<u64>; FILES as usize];
    for s in &stored {
        if seen.insert(s.id.clone()) {
            let slot = &mut last[s.file as usize];
            assert!(
                slot.is_none_or(|prev| prev < s.n),
                "file {} out of order at {}",
                s.file,
                s.n
            );
            *slot = Some(s.n);
        }
    }
    // The checkpoint is there and ends at the end of each file.
    let checkpoint: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("checkpoints.json")).unwrap()).unwrap();
    assert_eq!(checkpoint["version"], 1);
    for f in checkpoint["files"].as_array().unwrap() {
        let len = std::fs::metadata(f["path"].as_str().unwrap())
            .unwrap()
            .len();
        assert_eq!(f["offset"].as_u64().unwrap(), len, "{f}");
    }
}
