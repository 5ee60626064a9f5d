//! Hands each detected load spike to the outputs once, with its top suspects.
//!
//! Every `spike_interval_s` the watcher runs the analysis's detection
//! ([`crate::analysis::spikes::find`]) over the recent store and ranks the
//! suspects of each new spike ([`crate::analysis::report::report`]), the same
//! answers `processor report spike` gives. A spike counts once it is over:
//! its end lies at least [`SETTLE`] before the newest stored sample, so a
//! spike still rising is not sent half-seen, and not sent again as it grows.
//! The end of the last spike handed over is saved as the store cursor
//! [`SPIKE_CURSOR`], so a restart does not send it again. The spike
//! messages wait in each output's bounded queue, which is memory: a spike
//! queued but not yet sent when the processor stops is not sent later.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::build::{SpikeSummary, Suspect};
use super::config::GelfConfig;
use crate::analysis::report::report;
use crate::analysis::spikes::{Detection, find, recent_range};
use crate::analysis::{AnalysisError, Frame, Micros, SECOND, Scope, Window, parse_time};
use crate::store::{Store, now_micros};

/// The cursor (in the store's `cursors` table) holding the end of the last
/// spike handed over, in microseconds since the epoch.
pub const SPIKE_CURSOR: &str = "gelf-spikes:end_us";
/// How long the newest data must run past a spike's end before it counts as over.
pub const SETTLE: Micros = 120 * SECOND;
/// How far back the first look goes (and after a long stop).
const LOOKBACK: Micros = 6 * 3600 * SECOND;
/// Suspects carried per spike.
const SUSPECTS: usize = 10;

/// Runs until `stop`, calling `hand_over` with each settled spike.
pub async fn run(
    store: Arc<Store>,
    config: Arc<GelfConfig>,
    hand_over: impl Fn(&SpikeSummary) + Send,
    mut stop: watch::Receiver<bool>,
) {
    let every = Duration::from_secs(config.spike_interval_s);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let reader_store = store.clone();
        let found = tokio::task::spawn_blocking(move || settled_spikes(&reader_store)).await;
        let (spikes, last_end) = match found {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::warn!("gelf spikes: detection failed, trying again in {every:?}: {e}");
                continue;
            }
            Err(e) => {
                tracing::warn!("gelf spikes: detection task failed: {e}");
                continue;
            }
        };
        for s in &spikes {
            hand_over(s);
        }
        if let Some(end) = last_end
            && let Err(e) = store.set_cursor(SPIKE_CURSOR, end, now_micros()).await
        {
            tracing::warn!("gelf spikes: cannot save cursor {end}: {e}");
        }
    }
}

/// The spikes that ended after the saved cursor and have settled, and the
/// latest of their ends (the cursor's next value).
///
/// # Errors
/// A store query failed.
pub fn settled_spikes(store: &Store) -> Result<(Vec<SpikeSummary>, Option<Micros>), AnalysisError> {
    let reader = store.reader()?;
    let after = reader.cursor(SPIKE_CURSOR)?;
    let newest = match recent_range(&reader, &Scope::All, 1) {
        Ok(w) => w.to - SECOND,
        Err(AnalysisError::NotFound(_)) => return Ok((Vec::new(), None)),
        Err(e) => return Err(e),
    };
    let settled_by = newest - SETTLE;
    let from = after.max(newest - LOOKBACK);
    if settled_by <= from {
        return Ok((Vec::new(), None));
    }
    let mut out = Vec::new();
    let mut last_end = None;
    for s in find(
        &reader,
        &Scope::All,
        Window::new(from, settled_by + 1)?,
        &Detection::default(),
    )? {
        if s.end_us <= after || s.end_us > settled_by {
            continue;
        }
        let window = Window::new(parse_time(&s.report_from)?, parse_time(&s.report_to)?)?;
        // The baseline detection suggests (before any other spike), as
        // `processor report spike` takes it.
        let baseline = Window::new(parse_time(&s.baseline_from)?, parse_time(&s.baseline_to)?)?;
        let ranked = report(
            &reader,
            &Scope::Project(s.project.clone()),
            &Frame::new(window, baseline)?,
        )?;
        let suspects = ranked
            .suspects
            .iter()
            .take(SUSPECTS)
            .map(|x| Suspect {
                kind: x.kind.label().to_owned(),
                name: x.name.clone(),
                score_s: x.score_s,
                evidence: x
                    .evidence
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
            .collect();
        last_end = Some(last_end.unwrap_or(after).max(s.end_us));
        out.push(SpikeSummary {
            project: s.project,
            host: s.host,
            start: s.start_us,
            peak: s.peak_at_us,
            end: s.end_us,
            metric: match s.signal {
                crate::analysis::spikes::Signal::Load => "load1".to_owned(),
                crate::analysis::spikes::Signal::Concurrency => "concurrency".to_owned(),
                crate::analysis::spikes::Signal::Rate => "request rate".to_owned(),
                crate::analysis::spikes::Signal::Swap => "swap bytes/s".to_owned(),
            },
            peak_value: s.peak,
            baseline_value: s.baseline,
            suspects,
        });
    }
    Ok((out, last_end))
}
