//! SIGKILL of the real `processor` binary in the middle of ingest, then a
//! restart on the same file: every acknowledged record is there exactly
//! once, and the file opens without any repair step.

#[path = "common/bin.rs"]
mod bin;
mod common;

use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bin::Bin;
use common::*;

fn batch(n: usize) -> (Vec<String>, Vec<u8>) {
    let now = now_micros();
    let records: Vec<_> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                pg_activity(&new_id(), now, "shop")
            } else {
                host_metrics(&new_id(), now, "shop")
            }
        })
        .collect();
    let ids = records
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, ndjson(&records))
}

type Acked = Vec<(String, Vec<u8>)>;

#[test]
fn sigkill_during_ingest_loses_no_acknowledged_record_and_stores_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("processor.toml");
    std::fs::write(&config, test_config_text(dir.path())).unwrap();
    // Acknowledged ids; the last id of each batch also keeps the batch's body.
    let acked: Arc<Mutex<Acked>> = Arc::default();

    for round in 0..3 {
        let mut bin = Bin::start(&config);
        let stop = Arc::new(AtomicBool::new(false));
        let senders: Vec<_> = (0..2)
            .map(|_| {
                let (stop, acked, addr) = (stop.clone(), acked.clone(), bin.addr);
                std::thread::spawn(move || {
                    let mut c = Client::new(addr);
                    while !stop.load(Ordering::Relaxed) {
                        let (ids, body) = batch(500);
                        let auth = format!("Bearer {TOKEN}");
                        match c.request("POST", "/v1/ingest", &[("Authorization", &auth)], &body) {
                            Ok(r) if r.status == 200 => {
                                assert_eq!(r.json()["accepted"], 500, "{}", r.text());
                                let mut a = acked.lock().unwrap();
                                a.extend(ids.into_iter().map(|id| (id, Vec::new())));
                                // Keep one body per batch for the re-send check.
                                if let Some(last) = a.last_mut() {
                                    last.1 = body;
                                }
                            }
                            Ok(r) => panic!("unexpected {} {}", r.status, r.text()),
                            Err(_) => return, // killed under us: this batch was never acknowledged
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500 + 400 * round));
        bin.child.kill().expect("SIGKILL");
        bin.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for s in senders {
            s.join().expect("sender thread");
        }
        eprintln!(
            "round {round}: {} records acknowledged so far",
            acked.lock().unwrap().len()
        );
    }

    // Restart: the file opens as it is, and every acknowledged batch sent
    // again is all duplicates.
    let mut bin = Bin::start(&config);
    let mut c = Client::new(bin.addr);
    assert_eq!(c.get("/readyz").status, 200);
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 1000,
        "too few acknowledged records ({}) to mean anything",
        acked.len()
    );
    for (_, body) in acked.iter().filter(|(_, b)| !b.is_empty()) {
        let r = c.post_ndjson(TOKEN, body, false);
        assert_eq!(
            r.json()["accepted"],
            0,
            "an acknowledged record was missing: {}",
            r.text()
        );
        assert_eq!(r.json()["duplicates"], 500);
    }
    // SIGTERM: drains and checkpoints, exit status 0.
    sigterm(bin.child.id());
    let status = bin.child.wait().unwrap();
    assert!(status.success(), "SIGTERM exit: {status:?}");

    let started = Instant::now();
    let store = processor::store::Store::open(&processor::store::StoreConfig::at(
        &dir.path().join("store.duckdb"),
    ))
    .expect("store opens after the kills");
    let reader = store.reader().unwrap();
    let total = reader.query_i64("SELECT count(*) FROM records").unwrap();
    let distinct = reader
        .query_i64("SELECT count(DISTINCT id) FROM records")
        .unwrap();
    assert_eq!(total, distinct, "a record was stored twice");
    let stored: HashSet<String> = reader
        .query_strings("SELECT id FROM records")
        .unwrap()
        .into_iter()
        .filter_map(|mut r| r.pop().flatten())
        .collect();
    let missing = acked.iter().filter(|(id, _)| !stored.contains(id)).count();
    assert_eq!(missing, 0, "{missing} acknowledged records are missing");
    let seqs = reader
        .query_i64("SELECT count(DISTINCT seq) FROM records")
        .unwrap();
    assert_eq!(seqs, total, "seq is unique per record");
    eprintln!(
        "{} acknowledged, {total} stored, checked in {:?}",
        acked.len(),
        started.elapsed()
    );
}

fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(status.success());
}
