//! Throughput and memory benchmark: spool files -> engine -> HTTP receiver
//! on loopback, for 1 KiB and 64 KiB lines, beside a baseline measured in
//! the same run (`cat FILES | gzip -1`, and flate2 level 1 in-process).
//!
//! `cargo run -p shipper --example ship_bench` (sizes: BENCH_MB per case,
//! default 256). The engine runs in a child process (this example run
//! again with `--engine`), so its CPU time comes from
//! getrusage(RUSAGE_CHILDREN) and its peak RSS from /proc (VmHWM), both
//! leaving out the receiver's work.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--engine") {
        engine_child(&args[2], &args[3], &args[4]);
        return;
    }
    let mb: u64 = std::env::var("BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    println!(
        "shipper bench: {mb} MiB per case, debug profile as built by cargo run (deps optimized)"
    );
    println!(
        "{:<28} {:>10} {:>10} {:>12} {:>14} {:>12} {:>10}",
        "case", "MiB", "cpu s", "MiB/s/core", "lines/s/core", "wall MiB/s", "maxRSS MiB"
    );
    for line_bytes in [1024usize, 64 * 1024] {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        let (files, lines, bytes) = generate(&spool, line_bytes, mb << 20);
        let mib = bytes as f64 / (1 << 20) as f64;

        // Baseline 1: cat | gzip -1, as separate processes.
        let before = children_usage();
        let t = Instant::now();
        let list: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("cat {} | gzip -1 > /dev/null", list.join(" ")))
            .status()
            .unwrap();
        assert!(status.success());
        let wall = t.elapsed().as_secs_f64();
        let cpu = children_usage().0 - before.0;
        row(
            &format!("{}K cat|gzip -1 (baseline)", line_bytes / 1024),
            mib,
            cpu,
            lines,
            wall,
            None,
        );

        // Baseline 2: read + flate2 level 1 in this process.
        let before = self_cpu();
        let t = Instant::now();
        let mut enc = flate2::write::GzEncoder::new(std::io::sink(), flate2::Compression::new(1));
        let mut buf = vec![0u8; 1 << 20];
        for f in &files {
            let mut file = std::fs::File::open(f).unwrap();
            loop {
                let n = file.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                enc.write_all(&buf[..n]).unwrap();
            }
        }
        enc.finish().unwrap();
        row(
            &format!("{}K read+flate2 -1 (baseline)", line_bytes / 1024),
            mib,
            self_cpu() - before,
            lines,
            t.elapsed().as_secs_f64(),
            None,
        );

        // The shipper engine, in a child process.
        let (cpu, wall, rss, received) = ship(dir.path(), &spool, lines);
        assert_eq!(received, lines, "receiver got {received} of {lines} lines");
        row(
            &format!("{}K shipper engine", line_bytes / 1024),
            mib,
            cpu,
            lines,
            wall,
            Some(rss),
        );
    }
}

fn row(name: &str, mib: f64, cpu: f64, lines: u64, wall: f64, rss: Option<f64>) {
    println!(
        "{name:<28} {mib:>10.0} {cpu:>10.2} {:>12.1} {:>14.0} {:>12.1} {:>10}",
        mib / cpu,
        lines as f64 / cpu,
        mib / wall,
        rss.map_or("-".to_owned(), |r| format!("{r:.1}"))
    );
}

/// Writes about `total` bytes of valid records of `line_bytes` each into 4
/// spool files; the body is varied text so that gzip has real work.
fn generate(spool: &Path, line_bytes: usize, total: u64) -> (Vec<PathBuf>, u64, u64) {
    const WORDS: &[&str] = &[
        "SELECT",
        "users",
        "orders",
        "WHERE",
        "id",
        "=",
        "$1",
        "controller",
        "index",
        "phalcon",
        "Db",
        "query",
        "fetchAll",
        "render",
        "view",
        "cache",
        "miss",
        "hit",
        "session",
        "redis",
        "42",
        "1337",
        "ms",
        "GET",
        "/api/v1/cart",
    ];
    let files: Vec<PathBuf> = (0..4)
        .map(|i| spool.join(format!("php.2020010100.{}.ndjson", 10 + i)))
        .collect();
    let mut writers: Vec<std::io::BufWriter<std::fs::File>> = files
        .iter()
        .map(|p| std::io::BufWriter::new(std::fs::File::create(p).unwrap()))
        .collect();
    let (mut lines, mut bytes, mut seed) = (0u64, 0u64, 0x9e37_79b9_7f4a_7c15u64);
    let mut body = String::new();
    while bytes < total {
        body.clear();
        while body.len() + 220 < line_bytes {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            body.push_str(WORDS[(seed % WORDS.len() as u64) as usize]);
            body.push(' ');
            if seed % 7 == 0 {
                body.push_str(&(seed % 100_000).to_string());
                body.push(' ');
            }
        }
        let line = format!(
            r#"{{"v":1,"kind":"request","id":"{:08x}-0000-4000-8000-{:012x}","ts":"2026-11-27T11:47:44.123456Z","project":"shop","host":"web-1","trace":"{body}"}}"#,
            lines % 4,
            lines
        );
        let w = &mut writers[(lines % 4) as usize];
        w.write_all(line.as_bytes()).unwrap();
        w.write_all(b"\n").unwrap();
        lines += 1;
        bytes += line.len() as u64 + 1;
    }
    for w in &mut writers {
        w.flush().unwrap();
    }
    (files, lines, bytes)
}

/// Starts the receiver, runs the engine child until every line arrived,
/// stops it with SIGTERM; returns child CPU s, wall s, peak RSS MiB, lines.
fn ship(dir: &Path, spool: &Path, lines: u64) -> (f64, f64, f64, u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let r = received.clone();
    let addr = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/v1/ingest",
            axum::routing::post(move |body: axum::body::Bytes| {
                let r = r.clone();
                async move {
                    let mut text = Vec::new();
                    flate2::read::GzDecoder::new(&body[..])
                        .read_to_end(&mut text)
                        .unwrap();
                    let n = memchr::memchr_iter(b'\n', &text).count() as u64;
                    r.fetch_add(n, Ordering::Relaxed);
                    format!(r#"{{"accepted":{n},"duplicates":0,"rejected":[]}}"#)
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    });
    let before = children_usage();
    let t = Instant::now();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--engine",
            &spool.display().to_string(),
            &dir.join("state").display().to_string(),
            &format!("http://{addr}"),
        ])
        .spawn()
        .unwrap();
    while received.load(Ordering::Relaxed) < lines {
        std::thread::sleep(Duration::from_millis(5));
        if t.elapsed() > Duration::from_secs(600) {
            break;
        }
    }
    let wall = t.elapsed().as_secs_f64();
    let rss = peak_rss_mib(child.id());
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    let (cpu, _) = children_usage();
    (cpu - before.0, wall, rss, received.load(Ordering::Relaxed))
}

fn engine_child(spool: &str, state: &str, url: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut cfg = shipper::engine::EngineConfig::new(vec![spool.into()], state.into(), url, TOKEN);
    cfg.cleanup = false;
    rt.block_on(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        shipper::engine::run(
            cfg,
            bitville_daemon::Shutdown::on(async move {
                term.recv().await;
            }),
        )
        .await
        .unwrap();
    });
}

/// (user + system CPU seconds, peak RSS MiB) of waited-for children.
fn children_usage() -> (f64, f64) {
    let u = rusage(libc::RUSAGE_CHILDREN);
    (cpu_secs(&u), u.ru_maxrss as f64 / 1024.0)
}

/// VmHWM of a live process: its own peak, unlike RUSAGE_CHILDREN's maximum
/// over every child so far.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn self_cpu() -> f64 {
    cpu_secs(&rusage(libc::RUSAGE_SELF))
}

fn rusage(who: libc::c_int) -> libc::rusage {
    // SAFETY: getrusage fills the struct it is given.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut u);
        u
    }
}

fn cpu_secs(u: &libc::rusage) -> f64 {
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}
