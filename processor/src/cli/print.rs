//! The answers of the analysis as text for a terminal: tables and evidence.

use std::collections::{BTreeMap, BTreeSet};

use processor::analysis::report::Report;
use processor::analysis::request::{self, RequestDetail, RequestPage};
use processor::analysis::spikes::Spike;
use serde_json::Value;

use super::layout::{self, print_wrapped, whole_seconds};
use super::table::{num, render_fit};

/// How to ask the processor again from a shell: arguments the printed
/// follow-up commands end with (the demo gives its URL and token).
#[derive(Default)]
pub struct Asking(pub Vec<String>);

pub fn print_spikes(found: &[Spike], asking: &Asking) {
    if found.is_empty() {
        println!("(no spikes)");
        return;
    }
    let width = layout::width();
    let projects: BTreeSet<&str> = found.iter().map(|s| s.project.as_str()).collect();
    let with_project = projects.len() > 1;
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|s| {
            let mut row = vec![
                s.host.clone(),
                format!("{:?}", s.signal).to_lowercase(),
                whole_seconds(&s.start),
                clock(&s.peak_at),
                clock(&s.end),
                num(s.peak, 2),
                num(s.baseline, 2),
            ];
            if with_project {
                row.insert(0, s.project.clone());
            }
            row
        })
        .collect();
    let mut header = vec![
        "host",
        "signal",
        "start (UTC)",
        "peak at",
        "end",
        "peak",
        "baseline",
    ];
    if with_project {
        header.insert(0, "project");
    }
    print!("{}", render_fit(&header, &rows, width, None));
    if let Some(s) = found.first() {
        let mut words: Vec<String> = Vec::new();
        words.extend(
            [
                "processor",
                "report",
                "spike",
                "--from",
                &whole_seconds(&s.report_from),
                "--to",
                &whole_seconds(&s.report_to),
            ]
            .map(str::to_owned),
        );
        if s.baseline_from.is_empty() {
            println!("\nReport of the first:");
        } else {
            println!("\nReport of the first (its baseline clear of the other spikes):");
            words.extend(
                [
                    "--baseline-from",
                    &whole_seconds(&s.baseline_from),
                    "--baseline-to",
                    &whole_seconds(&s.baseline_to),
                ]
                .map(str::to_owned),
            );
        }
        words.extend(asking.0.iter().cloned());
        for line in layout::command(&words, width, "  ") {
            println!("{line}");
        }
    }
}

/// The time of day of an API time, to the second.
fn clock(ts: &str) -> String {
    let whole = whole_seconds(ts);
    whole
        .split_once('T')
        .map_or(whole.clone(), |(_, time)| time.to_owned())
}

/// "12" or "no baseline data" when the baseline has no requests.
fn against_baseline(value: String, baseline_requests: f64) -> String {
    if baseline_requests <= 0.0 {
        "no baseline data".to_owned()
    } else {
        format!("baseline {value}")
    }
}

/// Prints a spike report fitted to the terminal, its own verdict first.
pub fn print_report(r: &Report) {
    let width = layout::width();
    let t = &r.totals;
    println!("Spike report (times in UTC)");
    println!(
        "  window    {} .. {}",
        whole_seconds(&r.from),
        whole_seconds(&r.to)
    );
    println!(
        "  baseline  {} .. {}",
        whole_seconds(&r.baseline_from),
        whole_seconds(&r.baseline_to)
    );
    print_wrapped(&r.verdict, width, "Verdict: ", "  ");
    let line = format!(
        "Requests {:.0} ({}); request-seconds {:.1} ({}); excess {:.1}",
        t.requests,
        against_baseline(format!("{:.0}", t.baseline_requests), t.baseline_requests),
        t.request_seconds,
        against_baseline(
            format!("{:.1}", t.baseline_request_seconds),
            t.baseline_requests
        ),
        t.excess_request_seconds
    );
    print_wrapped(&line, width, "", "  ");
    for n in &t.notes {
        print_wrapped(n, width, "Note: ", "  ");
    }
    println!();
    print_suspects(r, width);
    for s in r.suspects.iter().take(3) {
        println!();
        print_wrapped(
            &format!("#{} {} {}", s.rank, s.kind.label(), s.name),
            width,
            "",
            "   ",
        );
        for line in evidence_lines(&s.evidence) {
            print_wrapped(&line, width, "    ", "      ");
        }
    }
    print_hosts(r, width);
    print_events(r, width);
}

/// The suspects table: the suspect column gives way to fit the width;
/// wide terminals also get the window and baseline seconds.
fn print_suspects(r: &Report, width: usize) {
    if r.suspects.is_empty() {
        return;
    }
    let wide = width >= 110;
    let no_baseline = r.totals.baseline_requests <= 0.0;
    let rows: Vec<Vec<String>> = r
        .suspects
        .iter()
        .map(|s| {
            let name = match &s.endpoint {
                Some(e) if *e != s.name => format!("{} (in {e})", s.name),
                _ => s.name.clone(),
            };
            let mut row = vec![
                s.rank.to_string(),
                s.kind.label().to_owned(),
                format!("{:.0}%", s.share * 100.0),
                num(s.score_s, 1),
            ];
            if wide {
                row.push(num(s.window_s, 1));
                let none = no_baseline
                    || s.evidence.get("baseline_requests").and_then(Value::as_f64) == Some(0.0);
                row.push(if none {
                    "no data".to_owned()
                } else {
                    num(s.baseline_s, 1)
                });
            }
            row.push(name);
            row
        })
        .collect();
    let mut header = vec!["#", "kind", "share", "excess s"];
    if wide {
        header.extend(["window s", "baseline s"]);
    }
    header.push("suspect");
    let flex = header.len() - 1;
    print!("{}", render_fit(&header, &rows, width, Some(flex)));
    if r.suspects.len() > 1 {
        print_wrapped(
            "Suspects overlap: a lock blocker's waiters include other suspects' time, so the shares need not add up to 100 %.",
            width,
            "Note: ",
            "  ",
        );
    }
}

/// A suspect's evidence as lines a person reads: each figure beside its
/// baseline, lists one item a line.
fn evidence_lines(ev: &BTreeMap<String, Value>) -> Vec<String> {
    let no_baseline = ev.get("baseline_requests").and_then(Value::as_f64) == Some(0.0);
    let mut lines = Vec::new();
    for (key, value) in ev {
        if key.starts_with("baseline_") && ev.contains_key(&key["baseline_".len()..]) {
            continue;
        }
        // A statement's fingerprint is its query normalized: the web UI
        // links it, a terminal would print the statement twice.
        if key.ends_with("_fingerprint") {
            continue;
        }
        let label = key.replace('_', " ");
        match value {
            Value::Array(items) if items.iter().any(Value::is_object) => {
                lines.push(format!("{label}:"));
                lines.extend(items.iter().map(|i| format!("  - {}", readable(i))));
            }
            _ => {
                let baseline = match ev.get(&format!("baseline_{key}")) {
                    None => String::new(),
                    Some(_) if no_baseline => " (no baseline data)".to_owned(),
                    Some(b) => format!(" (baseline {})", readable(b)),
                };
                lines.push(format!("{label}: {}{baseline}", readable(value)));
            }
        }
    }
    lines
}

/// A JSON value as plain text: numbers trimmed, lists joined, objects as
/// "key value" pairs.
fn readable(v: &Value) -> String {
    match v {
        Value::Null => "none".to_owned(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), short_number),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => items.iter().map(readable).collect::<Vec<_>>().join(", "),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{} {}", k.replace('_', " "), readable(v)))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn short_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

fn print_hosts(r: &Report, width: usize) {
    if r.hosts.is_empty() {
        return;
    }
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
        render_fit(
            &[
                "host",
                "load1 (base)",
                "cpu % (base)",
                "iowait % (base)",
                "swap MiB (base)"
            ],
            &rows,
            width,
            Some(0)
        )
    );
}

fn print_events(r: &Report, width: usize) {
    if r.events.is_empty() {
        return;
    }
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
        render_fit(
            &["database event", "window", "baseline", "bytes"],
            &rows,
            width,
            Some(0)
        )
    );
}

/// A page of the request list, fitted to the terminal.
pub fn print_requests(page: &RequestPage) {
    let width = layout::width();
    if page.requests.is_empty() {
        println!("(no requests)");
        return;
    }
    let field = |r: &BTreeMap<String, Value>, k: &str| r.get(k).map(readable).unwrap_or_default();
    let rows: Vec<Vec<String>> = page
        .requests
        .iter()
        .map(|r| {
            vec![
                whole_seconds(&field(r, "ts"))
                    .replace('T', " ")
                    .trim_end_matches('Z')
                    .to_owned(),
                num(
                    r.get("duration_ms").and_then(Value::as_f64).unwrap_or(0.0),
                    0,
                ),
                field(r, "status"),
                field(r, "correlation_id"),
                field(r, "endpoint"),
            ]
        })
        .collect();
    print!(
        "{}",
        render_fit(
            &["ended (UTC)", "ms", "status", "correlation id", "endpoint"],
            &rows,
            width,
            Some(4)
        )
    );
    if let Some(next) = page.next_offset {
        print_wrapped(
            &format!("More requests: add --offset {next} for the next page."),
            width,
            "",
            "  ",
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
            render_fit(
                &["#", "start ms", "ms", "status", "sql"],
                &rows,
                layout::width(),
                Some(4)
            )
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
            render_fit(
                &["function", counted, "inclusive ms", "exclusive ms"],
                &rows,
                layout::width(),
                Some(0)
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
            render_fit(
                &["sample", "state", "wait", "blocked by", "blocking"],
                &rows,
                layout::width(),
                Some(4)
            )
        );
    }
    for l in &d.logs {
        let g = |k: &str| l.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        println!("log {} {} {}", g("ts"), g("class"), g("message"));
    }
}
