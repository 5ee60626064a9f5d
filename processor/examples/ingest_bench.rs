//! Ingest benchmark: HTTP batches on loopback into a real store, beside
//! DuckDB's own NDJSON reader loading the same data in the same run.
//!
//! `cargo run --example ingest_bench -- [SMALL_BATCHES] [LARGE_BATCHES] [BATCH] [CLIENTS]`
//! (defaults 100, 3, 1000, 2). Small records are pg_activity samples; large
//! ones are requests with a 500-stack profile and 100 SQL statements.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::*;
use serde_json::Value;

struct Figures {
    records: usize,
    bytes: usize,
    seconds: f64,
    /// CPU time of the whole process (processor, its DuckDB threads and the
    /// clients) while the batches were sent.
    cpu_seconds: f64,
    /// The same, by thread name (live threads only).
    cpu_by_thread: Vec<(String, f64)>,
    p99_ms: f64,
}

/// CPU seconds so far of this process's live threads, by thread name
/// (`/proc/self/task/*/schedstat`, nanoseconds on the CPU): the store's
/// writer, the HTTP handlers, DuckDB's own threads and the bench's clients
/// apart.
fn thread_cpu_seconds() -> std::collections::BTreeMap<String, f64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let read = |f: &str| std::fs::read_to_string(task.path().join(f)).unwrap_or_default();
        let name = read("comm").trim().to_owned();
        let ns: f64 = read("schedstat")
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0);
        *by_name.entry(name).or_insert(0.0) += ns / 1e9;
    }
    by_name
}

/// User plus system CPU seconds this process has used so far.
fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return f64::NAN;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let arg = |i: usize, d: usize| args.get(i).copied().unwrap_or(d);
    let (small_batches, large_batches, batch, clients) =
        (arg(0, 100), arg(1, 3), arg(2, 1000), arg(3, 2));
    let dir = tempfile::tempdir()?;

    println!("generating data ...");
    let now = now_micros();
    let small: Vec<Vec<u8>> = (0..small_batches)
        .map(|_| {
            ndjson(
                &(0..batch)
                    .map(|_| pg_activity(&new_id(), now, "shop"))
                    .collect::<Vec<Value>>(),
            )
        })
        .collect();
    let large: Vec<Vec<u8>> = (0..large_batches)
        .map(|_| {
            ndjson(
                &(0..batch)
                    .map(|_| big_request(&new_id(), now, "shop", 500, 100))
                    .collect::<Vec<Value>>(),
            )
        })
        .collect();

    let mut config = test_config(dir.path());
    config.limits.max_body_bytes = 1 << 30;
    config.limits.max_decompressed_bytes = 1 << 30;
    config.limits.max_records_per_batch = batch.max(1);
    let config_threshold = config.store.checkpoint_threshold.clone();
    let run = Running::start(config);

    println!(
        "{:<26} {:>9} {:>9} {:>11} {:>9} {:>11} {:>11} | {:>11} {:>9} {:>11} {:>6}",
        "workload",
        "records",
        "MiB",
        "records/s",
        "MiB/s",
        "p99 batch",
        "CPU us/rec",
        "direct r/s",
        "dir MiB/s",
        "CPU us/rec",
        "ratio"
    );
    for (name, batches) in [
        ("small (pg_activity)", &small),
        ("large (request 500x100)", &large),
    ] {
        if batches.is_empty() {
            continue;
        }
        let http = send_all(&run, batches, clients);
        let file = dir.path().join("direct.ndjson");
        std::fs::write(&file, batches.concat())?;
        let cpu_before = process_cpu_seconds();
        let (rows, direct_s) =
            processor::store::bench::direct_ndjson_load(&dir.path().join("direct.duckdb"), &file)?;
        let direct_cpu = process_cpu_seconds() - cpu_before;
        assert_eq!(rows as usize, http.records, "direct load read every record");
        let files: Vec<std::path::PathBuf> = batches
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let f = dir.path().join(format!("batch-{i}.ndjson"));
                std::fs::write(&f, b).map(|()| f)
            })
            .collect::<Result<_, _>>()?;
        let cpu_before = process_cpu_seconds();
        let (batched_rows, batched_s) = processor::store::bench::direct_ndjson_load_batched(
            &dir.path().join("batched.duckdb"),
            &files,
            &config_threshold,
        )?;
        let batched_cpu = process_cpu_seconds() - cpu_before;
        assert_eq!(
            batched_rows as usize, http.records,
            "batched load read every record"
        );
        println!(
            "  direct load one batch per transaction: {:.0} records/s, {:.1} CPU us/rec",
            batched_rows as f64 / batched_s,
            batched_cpu * 1e6 / batched_rows as f64
        );
        let mib = http.bytes as f64 / (1 << 20) as f64;
        println!(
            "{:<26} {:>9} {:>9.1} {:>11.0} {:>9.1} {:>9.1}ms {:>11.1} | {:>11.0} {:>9.1} {:>11.1} {:>6.2}",
            name,
            http.records,
            mib,
            http.records as f64 / http.seconds,
            mib / http.seconds,
            http.p99_ms,
            http.cpu_seconds * 1e6 / http.records as f64,
            rows as f64 / direct_s,
            mib / direct_s,
            direct_cpu * 1e6 / rows as f64,
            direct_s / http.seconds,
        );
        let per_record = |s: f64| s * 1e6 / http.records as f64;
        let split: Vec<String> = http
            .cpu_by_thread
            .iter()
            .map(|(name, s)| format!("{name} {:.1}", per_record(*s)))
            .collect();
        println!("  CPU us/rec by thread: {}", split.join(", "));
    }
    println!("ratio = processor speed / direct load speed (target >= 0.5)");
    println!(
        "CPU us/rec = CPU time of this process per record, while sending (processor, its DuckDB threads, clients) \
         and while loading directly; on 2 cores, 2e6 / it bounds records/s"
    );
    run.stop();
    Ok(())
}

/// Sends every batch over `clients` keep-alive connections; checks every reply.
fn send_all(run: &Running, batches: &[Vec<u8>], clients: usize) -> Figures {
    let addr = run.addr();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    let cpu_before = process_cpu_seconds();
    let threads_before = thread_cpu_seconds();
    let mut latencies: Vec<f64> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..clients.max(1))
            .map(|_| {
                std::thread::Builder::new()
                    .name("bench-client".into())
                    .spawn_scoped(s, || {
                        let mut c = Client::new(addr);
                        let mut lat = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(body) = batches.get(i) else {
                                break lat;
                            };
                            let t = Instant::now();
                            let r = c.post_ndjson(TOKEN, body, false);
                            lat.push(t.elapsed().as_secs_f64() * 1000.0);
                            assert_eq!(r.status, 200, "{}", r.text());
                            assert!(
                                r.json()["rejected"]
                                    .as_array()
                                    .is_some_and(|a| a.is_empty()),
                                "{}",
                                r.text()
                            );
                        }
                    })
                    .expect("client thread")
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("client thread"))
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = process_cpu_seconds() - cpu_before;
    let mut cpu_by_thread: Vec<(String, f64)> = thread_cpu_seconds()
        .into_iter()
        .map(|(name, after)| {
            let before = threads_before.get(&name).copied().unwrap_or(0.0);
            (name, after - before)
        })
        .filter(|(_, s)| *s > 0.0)
        .collect();
    // The clients have ended by now: their CPU is what the live threads
    // do not account for.
    let live: f64 = cpu_by_thread.iter().map(|(_, s)| s).sum();
    cpu_by_thread.push(("clients".to_owned(), (cpu_seconds - live).max(0.0)));
    cpu_by_thread.sort_by(|a, b| b.1.total_cmp(&a.1));
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies[((latencies.len() as f64 * 0.99).ceil() as usize)
        .saturating_sub(1)
        .min(latencies.len() - 1)];
    let records = batches
        .iter()
        .map(|b| b.iter().filter(|c| **c == b'\n').count())
        .sum();
    Figures {
        records,
        bytes: batches.iter().map(Vec::len).sum(),
        seconds,
        cpu_seconds,
        cpu_by_thread,
        p99_ms: p99,
    }
}
