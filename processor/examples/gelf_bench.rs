//! GELF output benchmark: messages per second per transport to the
//! project's own receiver on loopback, the sender on one core (a
//! current-thread runtime), the receiver on other threads.
//! Baseline in the same run: building and serializing the same messages to
//! JSON without sending them, so each transport prints its cost against it.
//! Rates are given per wall second and per CPU second of the sending thread
//! (`CLOCK_THREAD_CPUTIME_ID`): the second is what "messages per second on
//! one core" means, and it holds on a machine busy with other work.
//!
//! `cargo run --example gelf_bench -- [MESSAGES]` (default 100000)

use std::time::{Duration, Instant};

use processor::gelf::Message;
use processor::gelf::build::request_message;
use processor::gelf::config::{Compression, OutputConfig, TransportKind};
use processor::gelf::receiver::{Addrs, Receiver};
use processor::gelf::transport::Transport;
use serde_json::Value;

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let path = format!(
        "{}/../fixtures/records/request-full.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let base: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;

    let started = Instant::now();
    let cpu_started = thread_cpu();
    let messages: Vec<Message> = (0..n)
        .map(|i| {
            let mut r = base.clone();
            r["http"]["url"] = format!("/checkout/{i}").into();
            request_message(&r, 10, Some(1.0))
        })
        .collect();
    let bytes: usize = messages.iter().map(|m| m.to_json().len()).sum();
    let baseline = n as f64 / started.elapsed().as_secs_f64();
    let baseline_cpu = n as f64 / (thread_cpu() - cpu_started).as_secs_f64();
    println!(
        "baseline (build + serialize): {baseline:>9.0} msg/s, {baseline_cpu:>9.0} msg/s per CPU second, {} bytes per message",
        bytes / n
    );

    let receiver_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let rx = receiver_rt.block_on(Receiver::start(Addrs::loopback(), None, false))?;
    let a = rx.addrs();
    let sender = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let cases = [
        (
            "udp none",
            OutputConfig {
                transport: TransportKind::Udp,
                address: a.udp.to_string(),
                compression: Compression::None,
                ..OutputConfig::default()
            },
            n,
        ),
        (
            "udp gzip",
            OutputConfig {
                transport: TransportKind::Udp,
                address: a.udp.to_string(),
                compression: Compression::Gzip,
                ..OutputConfig::default()
            },
            n,
        ),
        (
            "udp zlib",
            OutputConfig {
                transport: TransportKind::Udp,
                address: a.udp.to_string(),
                compression: Compression::Zlib,
                ..OutputConfig::default()
            },
            n,
        ),
        (
            "tcp",
            OutputConfig {
                transport: TransportKind::Tcp,
                address: a.tcp.to_string(),
                ..OutputConfig::default()
            },
            n,
        ),
        (
            "http",
            OutputConfig {
                transport: TransportKind::Http,
                address: format!("http://{}/gelf", a.http),
                ..OutputConfig::default()
            },
            n.min(20_000),
        ),
    ];
    for (name, output, count) in cases {
        let before = rx.count();
        let (elapsed, cpu) = sender.block_on(async {
            let mut t = Transport::new(&output).await?;
            let started = Instant::now();
            let cpu_started = thread_cpu();
            for part in messages[..count].chunks(1000) {
                let mut done = vec![false; part.len()];
                t.send(part, &mut done).await?;
            }
            Ok::<_, anyhow::Error>((started.elapsed(), thread_cpu() - cpu_started))
        })?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while rx.count() - before < count as u64 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let rate = count as f64 / elapsed.as_secs_f64();
        let rate_cpu = count as f64 / cpu.as_secs_f64();
        let received = (rx.count() - before) as f64 / count as f64 * 100.0;
        println!(
            "{name:>9}: {rate:>9.0} msg/s sent, {rate_cpu:>9.0} msg/s per CPU second, {received:5.1}% received, \
             {:.2}x the baseline ({:.2}x per CPU second)",
            rate / baseline,
            rate_cpu / baseline_cpu
        );
    }
    let violations = rx.violations();
    receiver_rt.block_on(rx.stop());
    anyhow::ensure!(
        violations.is_empty(),
        "receiver found broken messages: {:?}",
        &violations[..violations.len().min(3)]
    );
    Ok(())
}

/// CPU time of the calling thread: the sender runs on this thread alone.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to the pointer it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}
