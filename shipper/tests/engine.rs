//! Engine behaviours one at a time, against a real HTTP receiver: cleanup,
//! dead writers' fragments, over-cap lines, lines the processor refuses,
//! the spool cap, host metrics, and draining on shutdown.

mod common;

use bitville_daemon::Shutdown;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{Mode, Receiver, TOKEN, fast_config, record};
use shipper::engine::{self, EngineConfig, HostMetricsConfig};
use shipper::metrics::Metrics;
use shipper::ship::SendOutcome;
use shipper::spool::{SPOOL_FULL_FLAG, utc_hour};

struct Running {
    dir: tempfile::TempDir,
    metrics: Arc<Metrics>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<Result<(), engine::EngineError>>>,
}

impl Running {
    fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        let r = tokio::time::timeout(Duration::from_secs(5), self.handle.take().unwrap()).await;
        assert!(
            matches!(r, Ok(Ok(Ok(())))),
            "engine did not stop cleanly: {r:?}"
        );
        self.dir
    }
}

fn start(dir: tempfile::TempDir, tweak: impl FnOnce(&mut EngineConfig)) -> Running {
    std::fs::create_dir_all(dir.path().join("spool")).unwrap();
    let url = std::fs::read_to_string(dir.path().join("url")).unwrap();
    let mut cfg = fast_config(&dir.path().join("spool"), &dir.path().join("state"), &url);
    tweak(&mut cfg);
    let metrics = cfg.metrics.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(engine::run(
        cfg,
        Shutdown::on(async move {
            let _ = rx.await;
        }),
    ));
    Running {
        dir,
        metrics,
        stop: Some(tx),
        handle: Some(handle),
    }
}

fn new_dir(receiver: &Receiver) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("url"), receiver.url()).unwrap();
    dir
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn lines(file: u64, range: std::ops::Range<u64>) -> String {
    range.map(|n| record(file, 0, n, 40) + "\n").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_files_of_past_hours_are_deleted_and_the_current_hour_is_kept() {
    let receiver = Receiver::start();
    let run = start(new_dir(&receiver), |_| {});
    let old = run.spool().join("php.2020010100.1.ndjson");
    let current = run.spool().join(format!(
        "php.{}.2.ndjson",
        utc_hour(std::time::SystemTime::now())
    ));
    let stray = run.spool().join("notes.txt");
    std::fs::write(&old, lines(0, 0..10)).unwrap();
    std::fs::write(&current, lines(1, 0..10)).unwrap();
    std::fs::write(&stray, "not a spool file\n").unwrap();
    wait_for("the old file to be deleted", || !old.exists()).await;
    assert_eq!(receiver.stored().len(), 20);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        current.exists(),
        "a file of the current hour may still be written"
    );
    assert!(
        stray.exists(),
        "files that are not spool files are left alone"
    );
    assert_eq!(Metrics::get(&run.metrics.files_cleaned_total), 1);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_writers_fragment_is_skipped_and_later_lines_still_ship() {
    let receiver = Receiver::start();
    let run = start(new_dir(&receiver), |c| c.cleanup = false);
    let path = run.spool().join("php.2020010100.1.ndjson");
    let half = record(0, 0, 99, 40);
    std::fs::write(&path, lines(0, 0..3) + &half[..half.len() / 2]).unwrap();
    wait_for("the fragment to be skipped", || {
        Metrics::get(&run.metrics.fragments_skipped_total) == 1
    })
    .await;
    // A new process with the same pid appends after the fragment.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, lines(0, 3..5).as_bytes()).unwrap();
    wait_for("the later lines", || receiver.stored().len() == 5).await;
    let ns: Vec<u64> = receiver.stored().iter().map(|s| s.n).collect();
    assert_eq!(ns, [0, 1, 2, 3, 4]);
    let dir = run.stop().await;
    // The checkpoint covers the skipped fragment: a restart sends nothing again.
    let run = start(dir, |c| c.cleanup = false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.stored().len(), 5);
    assert_eq!(Metrics::get(&run.metrics.fragments_skipped_total), 0);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_cap_junk_and_refused_lines_never_block_the_stream() {
    let receiver = Receiver::start();
    let run = start(new_dir(&receiver), |c| c.max_line_bytes = 1000);
    let path = run.spool().join("php.2020010100.1.ndjson");
    let refused = record(0, 0, 2, 10).replace("\"pad\"", "\"reject\":true,\"pad\"");
    let body = format!(
        "{}{}\nnot json at all\n{refused}\n{}\n{}",
        lines(0, 0..1),
        record(0, 0, 1, 5000),
        record(0, 0, 3, 10),
        lines(0, 4..6)
    );
    std::fs::write(&path, body).unwrap();
    wait_for("the good lines", || receiver.stored().len() == 4).await;
    let ns: Vec<u64> = receiver.stored().iter().map(|s| s.n).collect();
    assert_eq!(ns, [0, 3, 4, 5]);
    wait_for("the quarantine", || {
        Metrics::get(&run.metrics.lines_rejected_total) == 1
    })
    .await;
    assert_eq!(Metrics::get(&run.metrics.lines_overcap_total), 1);
    assert_eq!(Metrics::get(&run.metrics.lines_quarantined_total), 2);
    let dir = run.stop().await;
    let q = std::fs::read_to_string(dir.path().join("state/quarantine.ndjson")).unwrap();
    let entries: Vec<serde_json::Value> = q
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 2, "{q}");
    assert!(
        entries[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("not a JSON object"),
        "{q}"
    );
    assert_eq!(entries[0]["line"], "not json at all");
    assert_eq!(
        entries[1]["reason"],
        "processor: /reject: refused by the test"
    );
    assert_eq!(entries[1]["line"], refused.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_full_flag_rises_while_the_processor_is_down_and_falls_after() {
    let receiver = Receiver::start();
    receiver.set_mode(Mode::Down);
    let run = start(new_dir(&receiver), |c| c.spool_max_bytes = 10_000);
    let flag = run.spool().join(SPOOL_FULL_FLAG);
    std::fs::write(
        run.spool().join("php.2020010100.1.ndjson"),
        lines(0, 0..100),
    )
    .unwrap();
    wait_for("the flag", || flag.exists()).await;
    assert_eq!(Metrics::get(&run.metrics.spool_full), 1);
    wait_for("the breaker to open", || {
        Metrics::get(&run.metrics.breaker_state) != 0
    })
    .await;
    assert!(Metrics::get(&run.metrics.batches_failed_total) >= 3);
    assert!(receiver.stored().is_empty());
    receiver.set_mode(Mode::Ok);
    wait_for("the flag to fall once shipped files are cleaned", || {
        !flag.exists()
    })
    .await;
    assert_eq!(receiver.stored().len(), 100);
    assert_eq!(Metrics::get(&run.metrics.breaker_state), 0);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_metrics_are_written_to_the_spool_and_shipped() {
    let receiver = Receiver::start();
    let run = start(new_dir(&receiver), |c| {
        c.host_metrics = Some(HostMetricsConfig {
            source: "shipper",
            project: "shop".into(),
            host: "web-1".into(),
            interval: Duration::from_millis(100),
            spool_dir: c.spool_dirs[0].clone(),
        });
    });
    wait_for("two host samples", || receiver.stored().len() >= 2).await;
    assert!(Metrics::get(&run.metrics.host_samples_total) >= 2);
    let files: Vec<String> = std::fs::read_dir(run.spool())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("host.")
                && f.ends_with(&format!(".{}.ndjson", std::process::id()))),
        "{files:?}"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_abandons_a_batch_the_processor_never_takes_within_the_drain_time() {
    let receiver = Receiver::start();
    receiver.set_mode(Mode::Error);
    let run = start(new_dir(&receiver), |c| {
        c.drain_timeout = Duration::from_millis(300)
    });
    std::fs::write(run.spool().join("php.2020010100.1.ndjson"), lines(0, 0..5)).unwrap();
    wait_for("a failed attempt", || {
        Metrics::get(&run.metrics.batches_failed_total) >= 1
    })
    .await;
    let started = std::time::Instant::now();
    let dir = run.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "drain took {:?}",
        started.elapsed()
    );
    // Nothing was acknowledged, so the next run sends everything.
    receiver.set_mode(Mode::Ok);
    let run = start(dir, |_| {});
    wait_for("the lines after restart", || receiver.stored().len() == 5).await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_as_too_large_is_split_until_it_fits() {
    let receiver = Receiver::start();
    receiver.set_mode(Mode::MaxLines(3));
    let run = start(new_dir(&receiver), |c| {
        c.batch_max_age = Duration::from_millis(200)
    });
    std::fs::write(run.spool().join("php.2020010100.1.ndjson"), lines(0, 0..10)).unwrap();
    wait_for("every line", || receiver.stored().len() == 10).await;
    let ns: Vec<u64> = receiver.stored().iter().map(|s| s.n).collect();
    assert_eq!(ns, (0..10).collect::<Vec<_>>());
    assert!(Metrics::get(&run.metrics.batches_failed_total) >= 1);
    run.stop().await;
}

// A record that makes the processor fail (500) used to be retried forever,
// and nothing after it in its file ever arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_the_processor_fails_on_is_isolated_and_the_rest_of_the_file_flows() {
    let receiver = Receiver::start();
    receiver.set_mode(Mode::Poison);
    let run = start(new_dir(&receiver), |c| {
        c.batch_max_age = Duration::from_millis(200)
    });
    let poison = record(0, 0, 5, 10).replace("\"pad\"", "\"poison\":true,\"pad\"");
    let body = format!("{}{poison}\n{}", lines(0, 0..5), lines(0, 6..12));
    std::fs::write(run.spool().join("php.2020010100.1.ndjson"), body).unwrap();
    wait_for("every other line", || receiver.stored().len() == 11).await;
    let ns: Vec<u64> = receiver.stored().iter().map(|s| s.n).collect();
    assert_eq!(ns, [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]);
    wait_for("the poison line in quarantine", || {
        Metrics::get(&run.metrics.lines_poisoned_total) == 1
    })
    .await;
    let dir = run.stop().await;
    let q = std::fs::read_to_string(dir.path().join("state/quarantine.ndjson")).unwrap();
    let entry: serde_json::Value = serde_json::from_str(q.trim()).unwrap();
    assert_eq!(entry["line"], poison.as_str());
    let reason = entry["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("processor failed on this line 3 times while it stored others")
            && reason.contains("panicked"),
        "{reason}"
    );
}

// The other side of the rule above: a processor that fails on every batch is
// an outage, and an outage must not send good lines to quarantine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_failing_on_everything_quarantines_nothing() {
    let receiver = Receiver::start();
    receiver.set_mode(Mode::Error);
    let run = start(new_dir(&receiver), |c| {
        c.batch_max_age = Duration::from_millis(200)
    });
    std::fs::write(run.spool().join("php.2020010100.1.ndjson"), lines(0, 0..8)).unwrap();
    wait_for("many failed attempts", || {
        Metrics::get(&run.metrics.batches_failed_total) >= 20
    })
    .await;
    assert_eq!(Metrics::get(&run.metrics.lines_quarantined_total), 0);
    receiver.set_mode(Mode::Ok);
    wait_for("every line once the processor is back", || {
        receiver.stored().len() == 8
    })
    .await;
    assert_eq!(Metrics::get(&run.metrics.lines_quarantined_total), 0);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipper_reads_429_retry_after_and_the_ingest_reply() {
    let receiver = Receiver::start();
    let shipper =
        shipper::ship::Shipper::new(&receiver.url(), TOKEN, Duration::from_secs(5)).unwrap();
    let body = |text: &str| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, text.as_bytes()).unwrap();
        bytes::Bytes::from(enc.finish().unwrap())
    };
    receiver.set_mode(Mode::TooMany);
    let outcome = shipper.send(body(&lines(0, 0..1))).await;
    assert!(
        matches!(outcome, SendOutcome::Retry { after: Some(d), .. } if d == Duration::ZERO),
        "{outcome:?}"
    );
    receiver.set_mode(Mode::Ok);
    let refused = record(0, 0, 1, 1).replace("\"pad\"", "\"reject\":true,\"pad\"");
    let outcome = shipper
        .send(body(&(lines(0, 0..1) + &refused + "\n")))
        .await;
    let SendOutcome::Acked(reply) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        (reply.accepted, reply.rejected.len(), reply.rejected[0].line),
        (1, 1, 2)
    );
    let wrong =
        shipper::ship::Shipper::new(&receiver.url(), "nope", Duration::from_secs(5)).unwrap();
    assert!(
        matches!(wrong.send(body("x\n")).await, SendOutcome::Retry { .. }),
        "401 is retried"
    );
}
