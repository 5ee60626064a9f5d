//! Issue 19, item 3: the memory of a batch follows from the limits. Alone
//! in its test binary, so that the peak RSS it reads is this test's only.

mod common;

use common::*;

/// VmHWM of this process (the server runs in it), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// A gzip body of newlines (128 MiB decompressed, the default limit) is
/// read line by line: four at once keep the peak RSS well under what a list
/// of its lines would take (16 bytes a line: 2 GiB each).
#[test]
fn a_gzip_body_of_newlines_stays_within_the_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(test_config(dir.path()));
    let limits = processor::config::Limits::default();
    // Streamed into the encoder: the test itself never holds the 128 MiB.
    let body = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let chunk = vec![b'\n'; 1 << 20];
        for _ in 0..limits.max_decompressed_bytes >> 20 {
            e.write_all(&chunk).unwrap();
        }
        e.write_all(b"\n").unwrap(); // one past the limit: 413
        e.finish().unwrap()
    };
    assert!(body.len() < 200 << 10, "{} bytes", body.len());
    let before = peak_rss_kib();
    let addr = run.addr();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let body = body.clone();
            std::thread::spawn(move || Client::new(addr).post_ndjson(TOKEN, &body, true))
        })
        .collect();
    for t in threads {
        let r = t.join().unwrap();
        assert_eq!(r.status, 413, "{}", r.text());
    }
    let after = peak_rss_kib();
    eprintln!("peak RSS before {before} KiB, after {after} KiB");
    // Per batch: the compressed body (here 129 KB), the decoder's window and
    // a 64 KiB read buffer, one line (no line is kept: they are blank). A
    // whole-body copy alone would be 128 MiB a batch; allow 64 MiB in all.
    assert!(
        after.saturating_sub(before) < 64 << 10,
        "peak RSS grew by {} KiB (before {before} KiB, after {after} KiB)",
        after - before
    );
    run.stop();
}
