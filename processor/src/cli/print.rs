//! The answers of the analysis as text for a terminal: tables and evidence.

use processor::analysis::report::Report;
use processor::analysis::request::{self, RequestDetail};
use processor::analysis::spikes::Spike;
use serde_json::Value;

use super::table::{num, render};

pub fn print_spikes(found: &[Spike]) {
    if found.is_empty() {
        println!("(no spikes)");
        return;
    }
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|s| {
            vec![
                format!("{:?}", s.signal).to_lowercase(),
                s.project.clone(),
                s.host.clone(),
                s.start.clone(),
                s.peak_at.clone(),
                s.end.clone(),
                num(s.peak, 2),
                num(s.baseline, 2),
            ]
        })
        .collect();
    print!(
        "{}",
        render(
            &[
                "signal", "project", "host", "start", "peak at", "end", "peak", "baseline"
            ],
            &rows
        )
    );
    if let Some(s) = found.first() {
        if s.baseline_from.is_empty() {
            println!(
                "\nReport of the first: processor report spike --from {} --to {}",
                s.report_from, s.report_to
            );
        } else {
            println!(
                "\nReport of the first (its baseline clear of the other spikes): processor report spike --from {} --to {} --baseline-from {} --baseline-to {}",
                s.report_from, s.report_to, s.baseline_from, s.baseline_to
            );
        }
    }
}

pub fn print_report(r: &Report) {
    let t = &r.totals;
    println!("Window   {} .. {}", r.from, r.to);
    println!("Baseline {} .. {}", r.baseline_from, r.baseline_to);
    println!(
        "Requests {:.0} (baseline {:.0}); request-seconds {:.1} (baseline {:.1}); excess {:.1}\n",
        t.requests,
        t.baseline_requests,
        t.request_seconds,
        t.baseline_request_seconds,
        t.excess_request_seconds
    );
    for n in &t.notes {
        println!("Note: {n}");
    }
    if !t.notes.is_empty() {
        println!();
    }
    let rows: Vec<Vec<String>> = r
        .suspects
        .iter()
        .map(|s| {
            vec![
                s.rank.to_string(),
                s.kind.label().to_owned(),
                s.name.clone(),
                format!("{:.0}%", s.share * 100.0),
                num(s.score_s, 1),
                num(s.window_s, 1),
                num(s.baseline_s, 1),
                s.endpoint.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        render(
            &[
                "#",
                "kind",
                "suspect",
                "share",
                "excess s",
                "window s",
                "baseline s",
                "endpoint"
            ],
            &rows
        )
    );
    for s in r.suspects.iter().take(3) {
        println!("\n#{} {} {}", s.rank, s.kind.label(), s.name);
        for (k, v) in &s.evidence {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!("    {k}: {text}");
        }
    }
    if !r.hosts.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = r
            .hosts
            .iter()
            .map(|h| {
                vec![
                    h.host.clone(),
                    format!("{} / {}", num(h.load1_max, 1), num(h.baseline_load1_max, 1)),
                    format!("{} / {}", num(h.cpu_pct, 0), num(h.baseline_cpu_pct, 0)),
                    format!(
                        "{} / {}",
                        num(h.iowait_pct, 1),
                        num(h.baseline_iowait_pct, 1)
                    ),
                    format!(
                        "{} / {}",
                        num(h.swap_io_bytes / 1048576.0, 1),
                        num(h.baseline_swap_io_bytes / 1048576.0, 1)
                    ),
                ]
            })
            .collect();
        print!(
            "{}",
            render(
                &[
                    "host",
                    "load1 max (base)",
                    "cpu % (base)",
                    "iowait % (base)",
                    "swap io MiB (base)"
                ],
                &rows
            )
        );
    }
    if !r.events.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = r
            .events
            .iter()
            .map(|e| {
                vec![
                    e.class.clone(),
                    num(e.count, 0),
                    num(e.baseline_count, 0),
                    num(e.bytes, 0),
                ]
            })
            .collect();
        print!(
            "{}",
            render(&["database event", "window", "baseline", "bytes"], &rows)
        );
    }
}

pub fn print_request(d: &RequestDetail) {
    let g = |k: &str| {
        d.request
            .get(k)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .unwrap_or_default()
    };
    println!(
        "Request {} {} {} ({} ms, status {})",
        d.correlation_id,
        g("method"),
        g("url"),
        g("duration_ms"),
        g("status")
    );
    println!(
        "  host {} pid {}, started {}, ended {}",
        g("host"),
        g("pid"),
        g("started_at"),
        g("ts")
    );
    if !d.sql.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = d
            .sql
            .iter()
            .map(|s| {
                vec![
                    s.idx.to_string(),
                    num(s.start_ms, 1),
                    num(s.duration_ms, 1),
                    s.status.clone(),
                    s.sql.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            render(&["#", "start ms", "ms", "status", "sql"], &rows)
        );
    }
    if !d.profile.calls.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = d
            .profile
            .calls
            .iter()
            .take(20)
            .map(|c| {
                vec![
                    c.function.clone(),
                    c.samples
                        .or(c.calls)
                        .map_or_else(String::new, |n| n.to_string()),
                    num(c.inclusive_ms, 1),
                    num(c.exclusive_ms, 1),
                ]
            })
            .collect();
        // A sampling profiler (Excimer) counts samples, not calls.
        let counted = if d.profile.profiler.as_deref() == Some("excimer") {
            "samples"
        } else {
            "calls"
        };
        print!(
            "{}",
            render(
                &["function", counted, "inclusive ms", "exclusive ms"],
                &rows
            )
        );
    }
    if !d.activity.is_empty() {
        println!();
        let peers = |p: &[request::Peer]| {
            p.iter()
                .map(|p| format!("{} {}", p.pid, p.url.clone().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let rows: Vec<Vec<String>> = d
            .activity
            .iter()
            .map(|a| {
                vec![
                    a.ts.clone(),
                    a.state.clone().unwrap_or_default(),
                    format!(
                        "{}:{}",
                        a.wait_event_type.clone().unwrap_or_default(),
                        a.wait_event.clone().unwrap_or_default()
                    ),
                    peers(&a.blocked_by),
                    peers(&a.blocking),
                ]
            })
            .collect();
        print!(
            "{}",
            render(
                &["sample", "state", "wait", "blocked by", "blocking"],
                &rows
            )
        );
    }
    for l in &d.logs {
        let g = |k: &str| l.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        println!("log {} {} {}", g("ts"), g("class"), g("message"));
    }
}
