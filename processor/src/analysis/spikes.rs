//! Spike detection: per host, stretches where the load average, the
//! requests in flight or the request rate rise well above that host's own
//! recent baseline, or where the load is over a configured level.
//!
//! The baseline is the median of the samples in the lookback before each
//! point, frozen while a spike lasts, so a long spike does not become its
//! own baseline. Concurrency is the request-seconds per second in buckets
//! (Little's law: the mean number of requests in flight).

use serde::{Deserialize, Serialize};

use super::{
    AnalysisError, Days, Micros, SECOND, Scope, Source, Window, format_time, query, round3,
};

/// What a spike was measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// `load1` of host_metrics.
    Load,
    /// Requests in flight, from the requests' durations.
    Concurrency,
    /// Requests per second: a burst of cheap requests, each too short in
    /// PHP to raise the requests in flight, still shows here.
    Rate,
    /// Bytes swapped in and out a second, from host_metrics: a host short
    /// of memory slows every request a little, which the request signals
    /// may not tell from noise; the kernel's paging says it at once.
    Swap,
}

/// A rise in the request rate counts from this many requests a second more.
const RATE_MIN_RISE_PER_S: f64 = 10.0;
/// A rise in swapping counts from this many bytes a second more (the
/// report's memory-pressure rule starts at the same rate).
const SWAP_MIN_RISE_BYTES_PER_S: f64 = 1024.0 * 1024.0;

impl Signal {
    /// How long before a spike's start its report window begins: load1
    /// is a one-minute average, so it rises about a minute after the
    /// requests that raised it; requests in flight are seen at once.
    pub fn lead(self) -> Micros {
        match self {
            Signal::Load => 60 * SECOND,
            Signal::Concurrency | Signal::Rate | Signal::Swap => 0,
        }
    }
}

/// Detection settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Detection {
    /// A point is high when it is at least this many times its baseline...
    pub factor: f64,
    /// ...and at least this much above it (load: per CPU when known).
    pub min_rise: f64,
    /// Or when it is over this level, whatever the baseline (load1; None: off).
    pub level: Option<f64>,
    /// How far back the baseline looks.
    pub lookback_s: i64,
    /// Bucket of the concurrency series.
    pub bucket_s: i64,
    /// Spikes of one series closer than this are one spike: a lock held
    /// for 8 s every 20 s is one incident, not nine.
    #[serde(default = "default_merge_gap_s")]
    pub merge_gap_s: i64,
}

fn default_merge_gap_s() -> i64 {
    60
}

impl Default for Detection {
    fn default() -> Self {
        Detection {
            factor: 2.0,
            min_rise: 1.0,
            level: None,
            lookback_s: 1800,
            bucket_s: 10,
            merge_gap_s: default_merge_gap_s(),
        }
    }
}

/// One detected spike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spike {
    pub signal: Signal,
    pub project: String,
    pub host: String,
    pub start: String,
    pub peak_at: String,
    pub end: String,
    pub start_us: Micros,
    pub peak_at_us: Micros,
    pub end_us: Micros,
    pub peak: f64,
    pub baseline: f64,
    /// The window a report of this spike should cover: from its start (a
    /// minute before it for load, which lags by about that much) to the end.
    pub report_from: String,
    pub report_to: String,
    /// The baseline a report of this spike should compare with: as long as
    /// the report window and just before it, moved back before any other
    /// detected spike, so that one incident is never the baseline of the next.
    #[serde(default)]
    pub baseline_from: String,
    #[serde(default)]
    pub baseline_to: String,
}

/// A baseline for a report window `(from, to)`: as long as the window,
/// ending `gap` before its start, moved back before every other spike
/// (`others`, their report windows, each widened by `gap` on both sides)
/// it would overlap. The gaps keep an incident's edges out, its own and
/// every other's: the stretch just before a detected start was already
/// rising (a spike is detected a bucket after it begins), and the requests
/// in flight at a spike's end finish after it, only not enough to count.
/// Spikes that overlap the window itself (the same incident on another
/// signal or host) are not others.
///
/// The baseline never begins before `data_from`, the first data of the
/// scope: stepping back past the start of the data would compare with
/// nothing. Where the quiet stretch before an earlier spike starts too
/// early, it is shortened to begin at `data_from`; where that leaves
/// nothing, the baseline is the longest quiet stretch with data before the
/// window, at least a bucket long (often the one between an earlier
/// incident and this one): shorter, but with no incident in it. Only where
/// there is none is it the data just before the window, incident and all
/// (that still says more than no data).
pub fn suggest_baseline(
    window: (Micros, Micros),
    gap: Micros,
    others: &[(Micros, Micros)],
    data_from: Micros,
) -> (Micros, Micros) {
    let len = (window.1 - window.0).max(SECOND);
    let gap = gap.max(0);
    let others: Vec<(Micros, Micros)> = others
        .iter()
        .copied()
        .filter(|(s, e)| !(*s < window.1 && *e > window.0))
        .map(|(s, e)| (s - gap, e + gap))
        .collect();
    let naive_end = window.0 - gap;
    let naive = (naive_end - len, naive_end);
    let mut end = naive_end;
    for _ in 0..=others.len() {
        let start = end - len;
        if end <= data_from {
            break;
        }
        match others
            .iter()
            .filter(|(s, e)| *s < end && *e > start)
            .map(|(s, _)| *s)
            .min()
        {
            Some(s) => end = s,
            None => return (start.max(data_from), end),
        }
    }
    if end > data_from && end - len >= data_from {
        return (end - len, end);
    }
    if let Some((from, to)) = longest_quiet((data_from, naive_end), &others, gap.max(SECOND)) {
        return ((to - len).max(from), to);
    }
    if naive_end > data_from {
        (naive.0.max(data_from), naive_end)
    } else {
        naive
    }
}

/// The longest stretch of `span` that none of `busy` covers and that is at
/// least `min` long (the later one of two as long), or None.
fn longest_quiet(
    span: (Micros, Micros),
    busy: &[(Micros, Micros)],
    min: Micros,
) -> Option<(Micros, Micros)> {
    let mut busy: Vec<(Micros, Micros)> = busy
        .iter()
        .copied()
        .filter(|(s, e)| *s < span.1 && *e > span.0)
        .collect();
    busy.sort_unstable();
    let mut best: Option<(Micros, Micros)> = None;
    let mut at = span.0;
    for (s, e) in busy.into_iter().chain(std::iter::once((span.1, span.1))) {
        let quiet = (at, s.min(span.1));
        if quiet.1 - quiet.0 >= min && best.is_none_or(|b| quiet.1 - quiet.0 >= b.1 - b.0) {
            best = Some(quiet);
        }
        at = at.max(e);
        if at >= span.1 {
            break;
        }
    }
    best
}

/// Splits a load spike where the concurrency signal saw separate
/// incidents: load1 is a one-minute average that decays slowly, so two
/// incidents a few minutes apart can stay one stretch of high load while
/// the requests in flight came back down between them. Each piece ends
/// halfway through the quiet gap between two concurrency spikes
/// (`incidents`, start and end, in time order), and takes the peak of its
/// own points.
pub fn split_by_incidents(
    spike: (Micros, Micros, f64, Micros, f64),
    points: &[(Micros, f64)],
    incidents: &[(Micros, Micros)],
) -> Vec<(Micros, Micros, f64, Micros, f64)> {
    let (start, _, _, end, baseline) = spike;
    let inside: Vec<(Micros, Micros)> = incidents
        .iter()
        .copied()
        .filter(|(s, e)| *e >= start && *s <= end)
        .collect();
    if inside.len() < 2 {
        return vec![spike];
    }
    let mut cuts = vec![start];
    for pair in inside.windows(2) {
        let mid = pair[0].1 + (pair[1].0 - pair[0].1) / 2;
        if mid > start && mid < end {
            cuts.push(mid);
        }
    }
    cuts.push(end);
    let mut out = Vec::new();
    for piece in cuts.windows(2) {
        let (from, to) = (piece[0], piece[1]);
        let peak = points
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .copied()
            .unwrap_or((from, spike.2));
        out.push((from, peak.0, peak.1, to, baseline));
    }
    out
}

/// The state of the detector for one series.
#[derive(Debug, Clone, Copy)]
enum State {
    Quiet,
    High {
        start: Micros,
        peak_at: Micros,
        peak: f64,
        baseline: f64,
        last_high: Micros,
    },
}

/// Finds spikes in one series of `(time, value)` points in time order.
/// `rise_unit` scales `min_rise` (the CPU count for load); `span` is how
/// long after its time a point stands for (a bucket's length; 0 for
/// instant samples), so a spike still high at the end of the series ends
/// where its last point's span does.
pub fn detect(
    points: &[(Micros, f64)],
    d: &Detection,
    rise_unit: f64,
    span: Micros,
) -> Vec<(Micros, Micros, f64, Micros, f64)> {
    let mut out = Vec::new();
    let mut state = State::Quiet;
    let mut history: std::collections::VecDeque<(Micros, f64)> = std::collections::VecDeque::new();
    let lookback = d.lookback_s * SECOND;
    for &(t, v) in points {
        while history.front().is_some_and(|(h, _)| *h < t - lookback) {
            history.pop_front();
        }
        let base = median(history.iter().map(|(_, v)| *v));
        let known = history.len() >= 3;
        let high = |baseline: f64, known: bool| {
            let over_level = d.level.is_some_and(|l| v > l);
            let over_base =
                known && v >= baseline * d.factor && v - baseline >= d.min_rise * rise_unit;
            over_level || over_base
        };
        state = match state {
            State::Quiet if high(base, known) => State::High {
                start: t,
                peak_at: t,
                peak: v,
                baseline: base,
                last_high: t,
            },
            State::Quiet => {
                history.push_back((t, v));
                State::Quiet
            }
            State::High {
                start,
                peak_at,
                peak,
                baseline,
                ..
            } if high(baseline, true) => {
                let (peak_at, peak) = if v > peak { (t, v) } else { (peak_at, peak) };
                State::High {
                    start,
                    peak_at,
                    peak,
                    baseline,
                    last_high: t,
                }
            }
            State::High {
                start,
                peak_at,
                peak,
                baseline,
                ..
            } => {
                out.push((start, peak_at, peak, t, baseline));
                history.push_back((t, v));
                State::Quiet
            }
        };
    }
    if let State::High {
        start,
        peak_at,
        peak,
        baseline,
        last_high,
    } = state
    {
        out.push((start, peak_at, peak, last_high + span, baseline));
    }
    merge_close(out, d.merge_gap_s * SECOND)
}

/// Joins spikes that start within `gap` of the previous one's end; the
/// first one's baseline stays, the higher peak wins.
fn merge_close(
    spikes: Vec<(Micros, Micros, f64, Micros, f64)>,
    gap: Micros,
) -> Vec<(Micros, Micros, f64, Micros, f64)> {
    let mut out: Vec<(Micros, Micros, f64, Micros, f64)> = Vec::with_capacity(spikes.len());
    for s in spikes {
        match out.last_mut() {
            Some(last) if s.0 - last.3 <= gap => {
                if s.2 > last.2 {
                    (last.1, last.2) = (s.1, s.2);
                }
                last.3 = last.3.max(s.3);
            }
            _ => out.push(s),
        }
    }
    out
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The range covered by the data of a scope: the last `hours` before its newest record.
///
/// # Errors
/// The store query failed, or there is no data at all.
pub fn recent_range(src: &dyn Source, scope: &Scope, hours: i64) -> Result<Window, AnalysisError> {
    let rows = query(
        src,
        &format!(
            "SELECT max(t) FROM (SELECT epoch_us(max(ts)) AS t FROM host_metrics WHERE true{s} \
             UNION ALL SELECT epoch_us(max(ts)) FROM requests WHERE true{s})",
            s = scope.clause("")
        ),
    )?;
    let last = rows
        .first()
        .and_then(|r| r.opt(0))
        .and_then(|s| s.parse::<i64>().ok());
    let last = last.ok_or_else(|| AnalysisError::NotFound("data for this project".into()))?;
    Window::new(last + SECOND - hours * 3600 * SECOND, last + SECOND)
}

/// Detects spikes of load, requests in flight, request rate and swapping
/// per host in a range.
///
/// # Errors
/// A store query failed.
pub fn find(
    src: &dyn Source,
    scope: &Scope,
    range: Window,
    d: &Detection,
) -> Result<Vec<Spike>, AnalysisError> {
    let with_history = Window {
        from: range.from - d.lookback_s * SECOND,
        to: range.to,
    };
    let days = Days::load(src)?;
    let mut spikes = Vec::new();
    let load = query(
        src,
        &format!(
            "SELECT project, host, epoch_us(ts), load1, coalesce(ncpu, 1) FROM {} \
             WHERE {}{} AND load1 IS NOT NULL ORDER BY project, host, ts",
            days.table("host_metrics", with_history),
            with_history.filter("ts"),
            scope.clause("")
        ),
    )?;
    let bucket = d.bucket_s.max(1) * SECOND;
    // A series of the requests per bucket: `value` over each bucket's rows.
    let per_bucket = |value: &str| {
        query(
            src,
            &format!(
                "SELECT project, host, epoch_us(ts) // {bucket} * {bucket} AS b, {value} / {} AS v, 1 \
                 FROM {} WHERE {}{} GROUP BY ALL ORDER BY project, host, b",
                d.bucket_s.max(1),
                days.table("requests", with_history),
                with_history.filter("ts"),
                scope.clause("")
            ),
        )
    };
    // Requests in flight (Little's law) and requests a second.
    let conc = per_bucket("sum(coalesce(sampling_weight, 1) * duration_ms) / 1000.0")?;
    let rate = per_bucket("sum(coalesce(sampling_weight, 1))")?;
    // Bytes swapped a second: the mean of the samples' rates in a bucket,
    // so that two samplers on one host (shipper, pg-watch) count once.
    let swap = query(
        src,
        &format!(
            "SELECT project, host, epoch_us(ts) // {bucket} * {bucket} AS b, \
             avg((coalesce(swap_in_bytes, 0) + coalesce(swap_out_bytes, 0)) / interval_s) AS v, 1 \
             FROM {} WHERE {}{} AND interval_s > 0 GROUP BY ALL ORDER BY project, host, b",
            days.table("host_metrics", with_history),
            with_history.filter("ts"),
            scope.clause("")
        ),
    )?;
    // Spikes found in the lookback before the range: others for baselines.
    let mut earlier: Vec<(String, Micros, Micros)> = Vec::new();
    // Where each project's data begins, so that no baseline starts earlier.
    let mut data_from: std::collections::HashMap<String, Micros> = std::collections::HashMap::new();
    // Concurrency first: its incidents split the load spikes they share.
    let mut incidents: std::collections::HashMap<String, Vec<(Micros, Micros)>> =
        std::collections::HashMap::new();
    for (signal, rows) in [
        (Signal::Concurrency, conc),
        (Signal::Rate, rate),
        (Signal::Swap, swap),
        (Signal::Load, load),
    ] {
        let mut i = 0;
        while i < rows.len() {
            let (project, host) = (rows[i].s(0), rows[i].s(1));
            let mut points = Vec::new();
            let mut ncpu: f64 = 1.0;
            while i < rows.len() && rows[i].s(0) == project && rows[i].s(1) == host {
                points.push((rows[i].i(2), rows[i].f(3)));
                ncpu = ncpu.max(rows[i].f(4));
                i += 1;
            }
            if let Some(&(first, _)) = points.first() {
                let from = data_from.entry(project.clone()).or_insert(first);
                *from = (*from).min(first);
            }
            let (d, unit) = match signal {
                // A load rise counts when it is a real share of the machine.
                Signal::Load => (d.clone(), (ncpu * 0.5).max(1.0)),
                Signal::Concurrency => (
                    Detection {
                        level: None,
                        ..d.clone()
                    },
                    1.0,
                ),
                Signal::Rate | Signal::Swap => (
                    Detection {
                        level: None,
                        ..d.clone()
                    },
                    if signal == Signal::Rate {
                        RATE_MIN_RISE_PER_S
                    } else {
                        SWAP_MIN_RISE_BYTES_PER_S
                    },
                ),
            };
            let span = match signal {
                Signal::Load => 0,
                Signal::Concurrency | Signal::Rate | Signal::Swap => bucket,
            };
            let mut found = detect(&points, &d, unit, span);
            match signal {
                Signal::Concurrency => incidents
                    .entry(project.clone())
                    .or_default()
                    .extend(found.iter().map(|s| (s.0, s.3))),
                Signal::Rate | Signal::Swap => {}
                Signal::Load => {
                    let mut known = incidents.get(&project).cloned().unwrap_or_default();
                    known.sort_unstable();
                    found = found
                        .into_iter()
                        .flat_map(|s| split_by_incidents(s, &points, &known))
                        .collect();
                }
            }
            for (start, peak_at, peak, end, baseline) in found {
                // A spike before the range (in the lookback) is not
                // reported, but no baseline may contain it.
                if end < range.from || start >= range.to {
                    earlier.push((project.clone(), start - signal.lead(), end));
                    continue;
                }
                let report_from = start - signal.lead();
                let report_to = end.max(start + d.bucket_s.max(1) * SECOND);
                spikes.push(Spike {
                    signal,
                    project: project.clone(),
                    host: host.clone(),
                    start: format_time(start),
                    peak_at: format_time(peak_at),
                    end: format_time(end),
                    start_us: start,
                    peak_at_us: peak_at,
                    end_us: end,
                    peak: round3(peak),
                    baseline: round3(baseline),
                    report_from: format_time(report_from),
                    report_to: format_time(report_to),
                    baseline_from: String::new(),
                    baseline_to: String::new(),
                });
            }
        }
    }
    spikes.sort_by(|a, b| a.start_us.cmp(&b.start_us).then(a.host.cmp(&b.host)));
    let windows: Vec<(String, Micros, Micros)> = spikes
        .iter()
        .map(|s| (s.project.clone(), s.start_us - s.signal.lead(), s.end_us))
        .collect();
    for (i, s) in spikes.iter_mut().enumerate() {
        let others: Vec<(Micros, Micros)> = windows
            .iter()
            .enumerate()
            .filter(|(j, (p, _, _))| *j != i && *p == s.project)
            .map(|(_, (_, f, t))| (*f, *t))
            .chain(
                earlier
                    .iter()
                    .filter(|(p, _, _)| *p == s.project)
                    .map(|(_, f, t)| (*f, *t)),
            )
            .collect();
        let (from, to) = suggest_baseline(
            (windows[i].1, windows[i].2.max(windows[i].1 + SECOND)),
            bucket,
            &others,
            data_from.get(&s.project).copied().unwrap_or(Micros::MIN),
        );
        s.baseline_from = format_time(from);
        s.baseline_to = format_time(to);
    }
    Ok(spikes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[f64]) -> Vec<(Micros, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64 * 10 * SECOND, *v))
            .collect()
    }

    #[test]
    fn a_rise_well_above_the_baseline_is_one_spike_with_start_peak_and_end() {
        let pts = series(&[1.0, 1.2, 0.9, 1.1, 1.0, 6.0, 9.0, 7.0, 1.1, 1.0]);
        let found = detect(&pts, &Detection::default(), 1.0, 0);
        assert_eq!(found.len(), 1, "{found:?}");
        let (start, peak_at, peak, end, baseline) = found[0];
        assert_eq!(
            (start, peak_at, end),
            (50 * SECOND, 60 * SECOND, 80 * SECOND)
        );
        assert_eq!(peak, 9.0);
        assert!((baseline - 1.0).abs() < 0.21, "{baseline}");
    }

    /// A bucket stands for its whole length: a spike still high when the
    /// series ends ends with its last bucket, not at its start.
    #[test]
    fn a_spike_high_to_the_end_ends_with_its_last_bucket() {
        let pts = series(&[1.0, 1.1, 0.9, 1.0, 6.0, 7.0]);
        let found = detect(&pts, &Detection::default(), 1.0, 10 * SECOND);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].0, found[0].3), (40 * SECOND, 60 * SECOND));
    }

    #[test]
    fn bursts_close_together_are_one_spike_and_distant_ones_are_two() {
        // High for 10 s every 30 s (a lock held again and again), then quiet
        // for five minutes, then one more burst.
        let mut v = vec![1.0; 6];
        for _ in 0..5 {
            v.extend([8.0, 1.0, 1.0]);
        }
        v.extend(vec![1.0; 30]);
        v.push(9.0);
        v.push(1.0);
        let found = detect(&series(&v), &Detection::default(), 1.0, 0);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            (found[0].0, found[0].3),
            (60 * SECOND, (6 + 12 + 1) * 10 * SECOND)
        );
        let apart = detect(
            &series(&v),
            &Detection {
                merge_gap_s: 0,
                ..Detection::default()
            },
            1.0,
            0,
        );
        assert_eq!(apart.len(), 6, "{apart:?}");
    }

    /// The suggested baseline steps back before an earlier incident
    /// instead of containing it; an overlapping spike (the same incident on
    /// another signal) does not move it.
    #[test]
    fn the_suggested_baseline_excludes_other_spikes() {
        let s = SECOND;
        // Report window 1000..1300 s; an earlier incident 850..900 s.
        let b = suggest_baseline((1000 * s, 1300 * s), 0, &[(850 * s, 900 * s)], 0);
        assert_eq!(b, (550 * s, 850 * s));
        // Nothing before it: just before the window.
        assert_eq!(
            suggest_baseline((1000 * s, 1300 * s), 0, &[], 0),
            (700 * s, 1000 * s)
        );
        // The onset is left out: the baseline ends a bucket before the start.
        assert_eq!(
            suggest_baseline((1000 * s, 1300 * s), 10 * s, &[], 0),
            (690 * s, 990 * s)
        );
        // And so are an earlier incident's tail, a bucket after its end,
        // and its onset, a bucket before its detected start.
        assert_eq!(
            suggest_baseline((1000 * s, 1100 * s), 10 * s, &[(850 * s, 885 * s)], 0),
            (740 * s, 840 * s)
        );
        // Two incidents 50 s apart (a scenario run twice, an incident that
        // comes back): the second's baseline ends a bucket before the first
        // was detected, not at its detected start, which its first requests
        // precede by up to a bucket.
        assert_eq!(
            suggest_baseline((1000 * s, 1025 * s), 10 * s, &[(950 * s, 970 * s)], 0),
            (915 * s, 940 * s)
        );
        // The same incident seen on load (overlapping) is not another spike.
        let b = suggest_baseline((1000 * s, 1300 * s), 0, &[(1010 * s, 1290 * s)], 0);
        assert_eq!(b, (700 * s, 1000 * s));
        // Two earlier incidents in a row: stepped back past both.
        let b = suggest_baseline(
            (1000 * s, 1100 * s),
            0,
            &[(850 * s, 950 * s), (700 * s, 800 * s)],
            0,
        );
        assert_eq!(b, (600 * s, 700 * s));
    }

    /// No baseline begins before the data does: stepping back before an
    /// earlier spike shortens the baseline to the data's start; where that
    /// leaves nothing, the longest quiet stretch is used, and only where no
    /// stretch is quiet, the data just before the window.
    #[test]
    fn the_suggested_baseline_stays_inside_the_data() {
        let s = SECOND;
        // Data from 600 s: the quiet stretch before the incident at 850 s
        // (550..850 s) is cut to 600..850 s.
        assert_eq!(
            suggest_baseline((1000 * s, 1300 * s), 0, &[(850 * s, 900 * s)], 600 * s),
            (600 * s, 850 * s)
        );
        // Data from 880 s, inside the incident: before it there is nothing,
        // so the baseline is the quiet stretch after it, shorter than the
        // window but without the incident.
        assert_eq!(
            suggest_baseline((1000 * s, 1300 * s), 0, &[(850 * s, 900 * s)], 880 * s),
            (900 * s, 1000 * s)
        );
        // The scenario run twice, 35 s apart, with a 60 s lookback (a CI
        // run ranked the endpoint over its cause with a baseline on the
        // first run's incident): the first incident's load spike reaches
        // back to the data's start, so nothing quiet is left before it;
        // the 15 s between the two incidents are the baseline.
        assert_eq!(
            suggest_baseline(
                (1775 * s, 1800 * s),
                5 * s,
                &[(1685 * s, 1750 * s), (1745 * s, 1750 * s)],
                1690 * s
            ),
            (1755 * s, 1770 * s)
        );
        // Where not even a bucket is quiet: the data just before the
        // window, incident and all.
        assert_eq!(
            suggest_baseline((1000 * s, 1300 * s), 0, &[(850 * s, 1000 * s)], 880 * s),
            (880 * s, 1000 * s)
        );
        // A window at the very start of the data keeps the usual baseline
        // (it reads "no data", which the report says plainly).
        assert_eq!(
            suggest_baseline((1000 * s, 1300 * s), 0, &[], 1000 * s),
            (700 * s, 1000 * s)
        );
    }

    /// Load stayed high across two incidents 150 s apart (load1 decays
    /// slowly) while the requests in flight came back down between them:
    /// the load spike is split in the quiet gap, each piece with its peak.
    #[test]
    fn a_load_spike_is_split_where_concurrency_saw_two_incidents() {
        let s = SECOND;
        let pts: Vec<(Micros, f64)> = (0..=40)
            .map(|i| (i * 10 * s, if i < 14 { 8.0 } else { 6.0 }))
            .collect();
        let pieces = split_by_incidents(
            (0, 50 * s, 8.0, 400 * s, 1.0),
            &pts,
            &[(10 * s, 60 * s), (210 * s, 260 * s)],
        );
        assert_eq!(pieces.len(), 2, "{pieces:?}");
        assert_eq!((pieces[0].0, pieces[0].3), (0, 135 * s));
        assert_eq!((pieces[1].0, pieces[1].3), (135 * s, 400 * s));
        assert_eq!(pieces[0].2, 8.0);
        assert_eq!(pieces[1].2, 6.0);
        // One incident: left whole.
        assert_eq!(
            split_by_incidents((0, 50 * s, 8.0, 400 * s, 1.0), &pts, &[(10 * s, 60 * s)]).len(),
            1
        );
    }

    #[test]
    fn noise_and_small_rises_are_not_spikes() {
        let pts = series(&[1.0, 1.3, 0.8, 1.2, 1.9, 1.0, 1.4, 0.7]);
        assert!(detect(&pts, &Detection::default(), 1.0, 0).is_empty());
        // Twice the baseline but only 0.5 above it on a one-CPU scale: not a spike.
        let pts = series(&[0.5, 0.5, 0.5, 0.5, 1.0, 0.5]);
        assert!(detect(&pts, &Detection::default(), 1.0, 0).is_empty());
    }

    #[test]
    fn a_configured_level_counts_without_history_and_a_long_spike_keeps_its_baseline() {
        let d = Detection {
            level: Some(50.0),
            ..Detection::default()
        };
        assert_eq!(detect(&series(&[80.0, 90.0, 10.0]), &d, 1.0, 0).len(), 1);
        // A long plateau stays one spike: the baseline is frozen at its start.
        let mut v = vec![1.0; 5];
        v.extend(vec![8.0; 400]);
        let found = detect(&series(&v), &Detection::default(), 1.0, 0);
        assert_eq!(found.len(), 1);
    }
}
