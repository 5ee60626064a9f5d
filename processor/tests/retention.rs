//! Retention with simulated time: 14 days at a steady rate with 7 days
//! kept. Old days disappear from every table, and the file stops growing
//! (day 14 at most 1.5 times day 7) because dropped days' blocks are reused.

mod common;

use common::*;
use processor::ingest::flatten::prepare;
use processor::retention::cutoff;
use processor::store::schema::{DAY_MICROS, days_from_civil};
use processor::store::{Store, StoreConfig};

#[test]
fn fourteen_simulated_days_keep_seven_and_the_file_plateaus() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.duckdb");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Store::open(&StoreConfig::at(&path)).unwrap();
    let first_day = days_from_civil(2026, 1, 1);
    let mut sizes = Vec::new();
    let per_day = 2_000;
    for d in 0..14 {
        let day_start = (first_day + d) * DAY_MICROS;
        for chunk in 0..4 {
            let lines: Vec<_> = (0..per_day / 4)
                .map(|i| {
                    let at = day_start + (chunk * (per_day / 4) + i) * (DAY_MICROS / per_day);
                    let v = if i % 50 == 0 {
                        big_request(&new_id(), at, "shop", 100, 20)
                    } else {
                        pg_activity(&new_id(), at, "shop")
                    };
                    let raw = serde_json::to_string(&v).unwrap();
                    let (kind, value) = bitville_schemas::validate_line(raw.as_bytes()).unwrap();
                    (kind, value, raw, at)
                })
                .collect();
            let records: Vec<_> = lines
                .iter()
                .map(|(kind, value, raw, at)| prepare(*kind, value, raw, *at).unwrap())
                .collect();
            let out = rt.block_on(store.write(records)).unwrap();
            assert!(out.stored.iter().all(|s| *s));
        }
        let now = (first_day + d + 1) * DAY_MICROS; // the end of simulated day d
        let outcome = rt
            .block_on(store.enforce_retention(cutoff(now, 7), now))
            .unwrap();
        let size = processor::store::file_bytes(&path);
        eprintln!(
            "day {:2}: kept {} days, dropped {:?}, file {} bytes",
            d + 1,
            outcome.kept_days,
            outcome.dropped_days,
            size
        );
        assert!(outcome.kept_days <= 7, "day {d}: {outcome:?}");
        sizes.push(size);
    }
    let reader = store.reader().unwrap();
    let kept = reader.query_i64("SELECT count(*) FROM records").unwrap();
    assert_eq!(kept, 7 * per_day, "seven whole days remain");
    let oldest = reader
        .query_strings("SELECT min(ts)::DATE FROM pg_activity")
        .unwrap()
        .remove(0)
        .remove(0)
        .unwrap();
    assert_eq!(
        oldest, "2026-01-08",
        "days 1 to 7 are gone from the flat tables too"
    );
    assert_eq!(
        reader.query_i64("SELECT count(*) FROM store_days").unwrap(),
        7
    );
    assert_eq!(
        reader
            .query_i64("SELECT count(*) FROM retention_runs")
            .unwrap(),
        14
    );
    let (day7, day14) = (sizes[6], sizes[13]);
    eprintln!(
        "file at day 7: {day7} bytes, at day 14: {day14} bytes, ratio {:.2}",
        day14 as f64 / day7 as f64
    );
    assert!(
        day14 as f64 <= 1.5 * day7 as f64,
        "file kept growing: {sizes:?}"
    );

    // seq keeps growing after days are dropped and the store is reopened.
    let max_seq = reader.query_i64("SELECT max(seq) FROM records").unwrap();
    drop(reader);
    rt.block_on(store.shutdown()).unwrap();
    drop(store);
    let store = Store::open(&StoreConfig::at(&path)).unwrap();
    let at = (first_day + 13) * DAY_MICROS + 1;
    let v = host_metrics(&new_id(), at, "shop");
    let raw = serde_json::to_string(&v).unwrap();
    let (kind, value) = bitville_schemas::validate_line(raw.as_bytes()).unwrap();
    rt.block_on(store.write(vec![prepare(kind, &value, &raw, at).unwrap()]))
        .unwrap();
    let seq = store
        .reader()
        .unwrap()
        .query_i64("SELECT max(seq) FROM host_metrics")
        .unwrap();
    assert_eq!(seq, max_seq + 1);
}
