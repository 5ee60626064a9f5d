//! Retention: every `interval_s`, drop the UTC days that lie wholly before
//! `now - days`. The bound is computed here in Rust (the bundled DuckDB has
//! no time zone support), and the store drops whole day schemas, then
//! checkpoints, which lets DuckDB reuse their blocks: the file stops growing
//! once retention is reached.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::App;
use crate::store::RetentionOutcome;
use crate::store::schema::DAY_MICROS;

/// The cutoff for a retention of `days` at `now` (micros since the epoch):
/// days that ended at or before it are dropped, so between `days` and
/// `days + 1` days of data are kept.
pub fn cutoff(now: i64, days: u32) -> i64 {
    // Saturating: a retention of millennia must not overflow.
    now.saturating_sub(i64::from(days).saturating_mul(DAY_MICROS))
}

/// True when a record at `ts` is in a day that a retention run at `now`
/// drops: its UTC day ended at or before [`cutoff`], as the store's writer
/// decides. Ingest refuses such a record instead of storing it for the
/// next run to drop.
pub fn expired(ts: i64, now: i64, days: u32) -> bool {
    ts.div_euclid(DAY_MICROS)
        .saturating_add(1)
        .saturating_mul(DAY_MICROS)
        <= cutoff(now, days)
}

/// One retention run at the app's current time.
///
/// # Errors
/// The store could not drop or checkpoint.
pub async fn run_once(app: &App, days: u32) -> Result<RetentionOutcome, crate::store::StoreError> {
    let now = app.now();
    let result = app.store.enforce_retention(cutoff(now, days), now).await;
    app.metrics.retention_runs.fetch_add(1, Ordering::Relaxed);
    match &result {
        Ok(o) => {
            app.metrics
                .retention_dropped_days
                .fetch_add(o.dropped_days.len() as u64, Ordering::Relaxed);
            if !o.dropped_days.is_empty() {
                tracing::info!(
                    "retention dropped {} ({} days kept, store {} bytes)",
                    o.dropped_days.join(", "),
                    o.kept_days,
                    o.file_bytes
                );
            }
        }
        Err(e) => {
            app.metrics
                .retention_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!("retention failed: {e}");
        }
    }
    result
}

/// Runs retention at start and then every `interval_s` until `shutdown`.
pub async fn serve(app: Arc<App>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let (days, interval) = {
            let cfg = app.retention();
            (cfg.days, cfg.interval_s)
        };
        let _ = run_once(&app, days).await;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(interval)) => {}
            () = &mut shutdown => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoff_is_days_before_now() {
        assert_eq!(cutoff(10 * DAY_MICROS + 5, 7), 3 * DAY_MICROS + 5);
    }

    /// A day is expired once it ended at or before the cutoff, as the
    /// writer drops it: day 2 ends at 3 days, the cutoff is 3 days + 5 us.
    #[test]
    fn a_record_is_expired_when_its_whole_day_is_past_the_cutoff() {
        let now = 10 * DAY_MICROS + 5;
        assert!(expired(2 * DAY_MICROS + 7, now, 7));
        assert!(!expired(3 * DAY_MICROS, now, 7));
        assert!(!expired(now, now, 7));
        assert!(!expired(i64::MIN / 2, now, u32::MAX));
    }
}
