//! pg-watch benchmarks, each beside a baseline measured in the same run.
//!
//! 1. Log parsing: a stderr log made by pgbench with every statement logged,
//!    parsed by pg-watch and by pgBadger; both must agree on the number of
//!    statements and their total duration.
//! 2. The cost of one activity sample with 300 connected, busy backends.
//!
//! `cargo run -p pg-watch --example bench -- [--pgbench-seconds N] [--repeat N] [--save-log FILE]`
//! `cargo run -p pg-watch --example bench -- --log FILE [--repeat N]` (pg-watch only, on a saved log)

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bitville_schemas::records::LogClass;
use pg_watch::config::{LogSourceSection, LogsSection};
use pg_watch::log::LogFormat;
use pg_watch::logs::LogWatcher;
use pg_watch::tailer::StartAt;

const PREFIX: &str = "%m [%p] %q%u@%d %a ";

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn arg_str(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn main() {
    let seconds = arg("--pgbench-seconds", 20);
    let repeat = arg("--repeat", 1);
    if let Some(path) = arg_str("--log") {
        // A log kept from an earlier run (`--save-log`): pg-watch only, for profiling.
        let path = std::path::PathBuf::from(path);
        let mib = std::fs::metadata(&path).expect("--log").len() as f64 / 1048576.0;
        for _ in 0..repeat {
            let p = run_pgwatch(&path, false);
            println!(
                "{:.1} MiB/s (CPU), statements {}, total {:.3} ms",
                mib / p.cpu.as_secs_f64(),
                p.statements,
                p.total_ms
            );
        }
        return;
    }
    let cluster = common::Cluster::start(&format!(
        "log_destination = 'stderr'\nlog_line_prefix = '{PREFIX}'\nlog_min_duration_statement = 0\nlog_rotation_size = 0\n"
    ));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let port = cluster.port.to_string();
    let pgbench = |args: &[&str]| {
        let out = Command::new(common::pg_bin().join("pgbench"))
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
            .args(args)
            .arg("postgres")
            .output()
            .expect("run pgbench");
        assert!(
            out.status.success(),
            "pgbench {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    println!("== log parsing: pgbench for {seconds} s with every statement logged");
    pgbench(&["-i", "-q", "-s", "1"]);
    pgbench(&[
        "-c",
        "4",
        "-j",
        "2",
        "-T",
        &seconds.to_string(),
        "-M",
        "simple",
    ]);
    std::thread::sleep(Duration::from_millis(500));
    let mut log = Vec::new();
    for f in cluster.files_in_log_dir(".log") {
        log.extend(std::fs::read(&f).expect("read the log"));
    }
    let one = log.clone();
    for _ in 1..repeat {
        log.extend_from_slice(&one);
    }
    let path = cluster.root.join("bench.log");
    std::fs::write(&path, &log).expect("write bench.log");
    if let Some(save) = arg_str("--save-log") {
        std::fs::write(&save, &log).expect("write --save-log");
    }
    let mib = log.len() as f64 / (1024.0 * 1024.0);
    println!(
        "log: {:.1} MiB, {} lines",
        mib,
        log.iter().filter(|b| **b == b'\n').count()
    );

    // pg-watch: records built from every entry, then the same with records serialized.
    let ours = run_pgwatch(&path, false);
    let full = run_pgwatch(&path, true);
    let (t_parse, c_parse, n_ours, ms_ours) = (ours.wall, ours.cpu, ours.statements, ours.total_ms);
    let (t_full, c_full, out_bytes) = (full.wall, full.cpu, full.json_bytes);

    let json_out = cluster.root.join("pgbadger.json");
    let started = Instant::now();
    let cpu0 = children_cpu();
    let out = Command::new("pgbadger")
        .args([
            "-f", "stderr", "-p", PREFIX, "-x", "json", "-q", "-j", "1", "-o",
        ])
        .arg(&json_out)
        .arg(&path)
        .output()
        .expect("run pgbadger");
    let t_badger = started.elapsed();
    let c_badger = children_cpu() - cpu0;
    assert!(
        out.status.success(),
        "pgbadger: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json_out).expect("pgbadger output"))
            .expect("pgbadger JSON");
    let (n_badger, ms_badger) = pgbadger_totals(&report);

    let speed = |t: Duration| mib / t.as_secs_f64();
    println!("                          wall s   MiB/s(wall)  CPU s   MiB/s(CPU)");
    let row = |name: &str, w: Duration, c: Duration, extra: String| {
        println!(
            "{name:<24} {:>7.3} {:>10.1} {:>8.3} {:>10.1}  {extra}",
            w.as_secs_f64(),
            speed(w),
            c.as_secs_f64(),
            speed(c)
        );
    };
    row(
        "pg-watch records",
        t_parse,
        c_parse,
        format!("statements {n_ours}, total {ms_ours:.3} ms"),
    );
    row(
        "pg-watch + JSON records",
        t_full,
        c_full,
        format!("{:.1} MiB of records", out_bytes as f64 / 1048576.0),
    );
    row(
        "pgBadger (-j 1)",
        t_badger,
        c_badger,
        format!("statements {n_badger}, total {ms_badger:.3} ms"),
    );
    let agree_n = n_ours == n_badger;
    // pgBadger sums in floating point too; allow for rounding only.
    let agree_ms = (ms_ours - ms_badger).abs() <= 1e-4 * ms_ours.max(1.0) + 0.01;
    println!("agree on statement count: {agree_n}; on total duration (within 0.01%): {agree_ms}");
    println!(
        "speed ratio pg-watch/pgBadger (CPU time): {:.1}x records, {:.1}x with JSON lines; wall: {:.1}x, {:.1}x (target >= 10x and >= 100 MiB/s)",
        c_badger.as_secs_f64() / c_parse.as_secs_f64(),
        c_badger.as_secs_f64() / c_full.as_secs_f64(),
        t_badger.as_secs_f64() / t_parse.as_secs_f64(),
        t_badger.as_secs_f64() / t_full.as_secs_f64()
    );

    println!("\n== activity sample with 300 busy backends");
    rt.block_on(activity_bench(&cluster));
    if !(agree_n && agree_ms) {
        std::process::exit(1);
    }
}

/// CPU time of this thread: the machine is shared, so wall time alone
/// mostly measures the other tenants.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time (user + system) of waited-for children, such as pgBadger.
fn children_cpu() -> Duration {
    // SAFETY: getrusage fills the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// What one pass of pg-watch over the log gave.
struct Pass {
    wall: Duration,
    cpu: Duration,
    statements: u64,
    total_ms: f64,
    json_bytes: usize,
}

/// pg-watch's production path over the log at `path`: the log watcher tails
/// the file (8 MiB reads, first-line fingerprint, position-derived record
/// ids, a checkpoint after each read), parses and classifies every entry and
/// builds its record, and hands it to a sink that counts slow statements;
/// with `serialize`, the sink also turns the record into its JSON line, as
/// the daemon's spool writer does.
fn run_pgwatch(path: &Path, serialize: bool) -> Pass {
    let state = tempfile::tempdir().expect("state dir");
    let section = LogsSection {
        directory: path.parent().expect("log dir").to_owned(),
        log_line_prefix: PREFIX.into(),
        start_at: StartAt::Beginning,
        flush_after_ms: 0,
        sources: vec![LogSourceSection {
            pattern: path
                .file_name()
                .expect("log name")
                .to_string_lossy()
                .into_owned(),
            format: LogFormat::Stderr,
        }],
        ..LogsSection::default()
    };
    let mut watcher = LogWatcher::open(&section, state.path()).expect("open the log watcher");
    let started = Instant::now();
    let cpu0 = thread_cpu();
    let (mut statements, mut total_ms, mut json_bytes) = (0u64, 0f64, 0usize);
    loop {
        let records = watcher.poll("bench", "db-1", |rec| {
            if rec.event.class == LogClass::SlowStatement {
                statements += 1;
                total_ms += rec.event.duration_ms.unwrap_or(0.0);
            }
            if serialize {
                json_bytes += serde_json::to_vec(rec).map(|v| v.len()).unwrap_or(0);
            }
            true
        });
        if records.records == 0 {
            break;
        }
    }
    Pass {
        wall: started.elapsed(),
        cpu: thread_cpu() - cpu0,
        statements,
        total_ms,
        json_bytes,
    }
}

/// Statement count and total duration from pgBadger's JSON report.
fn pgbadger_totals(report: &serde_json::Value) -> (u64, f64) {
    // overall_stat.postgres: queries_number, and queries_duration split
    // into prepare, bind and execute milliseconds.
    let overall = &report["overall_stat"]["postgres"];
    let n = overall["queries_number"].as_u64().unwrap_or(0);
    let ms = overall["queries_duration"]
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_f64()).sum())
        .unwrap_or(0.0);
    (n, ms)
}

async fn activity_bench(cluster: &common::Cluster) {
    let mut clients = Vec::new();
    for i in 0..300 {
        let c = cluster.connect(&format!("bench-{i}")).await;
        clients.push(tokio::spawn(async move {
            let _ = c.simple_query("SELECT pg_sleep(30)").await;
        }));
    }
    let watcher = cluster.connect("bitville-pg-watch").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let version: i32 = watcher
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .unwrap()
        .get(0);
    let mut sampler = pg_watch::activity::ActivitySampler::new(version as u32);
    let mut ours = Vec::new();
    let mut backends = 0;
    for _ in 0..50 {
        let t = Instant::now();
        let r = sampler
            .sample(&watcher, "bench", "db-1")
            .await
            .expect("sample");
        ours.push(t.elapsed());
        backends = r.backends.len();
    }
    // Baselines: a bare round trip, and a naive sample calling pg_blocking_pids for every backend.
    let mut round_trip = Vec::new();
    let mut naive = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        watcher.simple_query("SELECT 1").await.unwrap();
        round_trip.push(t.elapsed());
        let t = Instant::now();
        watcher
            .simple_query("SELECT *, pg_blocking_pids(pid) FROM pg_stat_activity")
            .await
            .unwrap();
        naive.push(t.elapsed());
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1000.0
    };
    let (m_ours, m_rt, m_naive) = (
        median(&mut ours),
        median(&mut round_trip),
        median(&mut naive),
    );
    println!("backends in the sample: {backends}");
    println!("pg-watch sample (incl. row decoding): median {m_ours:.3} ms (target < 10 ms)");
    println!("baseline SELECT 1 round trip:         median {m_rt:.3} ms");
    println!("naive pg_blocking_pids on all rows:   median {m_naive:.3} ms");
    println!("ratio sample/naive: {:.2}", m_ours / m_naive);
    for c in clients {
        c.abort();
    }
}
