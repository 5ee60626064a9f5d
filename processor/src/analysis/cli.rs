//! The `report` and `sql` subcommands of the `processor` binary.
//!
//! They ask the running processor over HTTP with a token; when none answers
//! on the configured port (or `--store` is given), they open the store file
//! directly, read-only: whoever can read that file may read all of it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::report::{Report, TopBy, TopEntry};
use super::request::RequestDetail;
use super::spikes::{Detection, Spike};
use super::sql::{SqlLimits, SqlResult};
use super::table::{num, render};
use super::{Scope, api::WindowParams, format_time, parse_time, report, request, spikes, sql};
use crate::config::Config;
use crate::store::Reader;

/// The analysis subcommands; the binary adds them to its own.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Spike reports: detected spikes, a window's ranked suspects, one request, top lists.
    Report {
        #[command(subcommand)]
        what: ReportCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Read-only SQL over the store's tables and views (admin), e.g. `processor sql "SELECT count(*) FROM requests"`.
    Sql {
        query: String,
        /// At most this many rows are printed.
        #[arg(long, default_value_t = 1000)]
        max_rows: usize,
        /// The query is stopped after this many seconds.
        #[arg(long, default_value_t = 30)]
        timeout_s: u64,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Detected load and concurrency spikes (default: the last 24 hours of data).
    Spikes {
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        /// Hours before the newest record, when no range is given.
        #[arg(long, default_value_t = 24)]
        hours: i64,
    },
    /// The ranked suspects of a window against the window just before it (or the given baseline).
    Spike {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long, requires = "baseline_to")]
        baseline_from: Option<String>,
        #[arg(long, requires = "baseline_from")]
        baseline_to: Option<String>,
    },
    /// Everything about one request (correlation ID or record id).
    Request {
        id: String,
        /// Also write its flame graph (SVG) to this file.
        #[arg(long)]
        flamegraph: Option<PathBuf>,
    },
    /// Where the time of a window went.
    Top {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long, value_enum, default_value = "endpoints")]
        by: TopBy,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

/// Which processor or store to ask.
#[derive(Debug, Args)]
pub struct Target {
    /// The processor's address (default: `server.listen` of the config).
    #[arg(long, global = true, env = "BITVILLE_URL")]
    url: Option<String>,
    /// A project or admin token for the processor's API.
    #[arg(long, global = true, env = "BITVILLE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Read this store file directly (read-only) instead of asking a processor.
    #[arg(long, global = true)]
    store: Option<PathBuf>,
    /// Only this project (admin tokens and direct reads).
    #[arg(long, global = true)]
    project: Option<String>,
    /// Print the JSON answer instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

/// Where the answers come from.
enum Backend {
    Http { host: String, token: String },
    Direct { file: Reader, scope: Scope },
}

impl Backend {
    fn choose(target: &Target, config: &Config) -> anyhow::Result<Backend> {
        let direct = |path: &PathBuf| -> anyhow::Result<Backend> {
            let file = Reader::open_read_only(path)
                .with_context(|| format!("cannot read store {}", path.display()))?;
            Ok(Backend::Direct {
                file,
                scope: Scope::All.narrowed(target.project.as_deref()),
            })
        };
        if let Some(path) = &target.store {
            return direct(path);
        }
        let url = target
            .url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.server.listen));
        let host = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        if url.starts_with("https://") {
            bail!(
                "{url}: this client speaks plain HTTP only; run it on the processor's host with --store, or use the HTTP port"
            );
        }
        match TcpStream::connect_timeout(
            &host
                .parse()
                .with_context(|| format!("processor address {host:?} is not host:port"))?,
            Duration::from_secs(2),
        ) {
            Ok(_) => {
                let token = target
                    .token
                    .clone()
                    .context("a processor runs: give --token or BITVILLE_TOKEN")?;
                Ok(Backend::Http { host, token })
            }
            Err(_) => direct(&config.store.path)
                .with_context(|| format!("no processor answers on {host}")),
        }
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let Backend::Http { host, token } = self else {
            bail!("not an HTTP backend")
        };
        let body = http(host, token, "GET", path, None)?;
        serde_json::from_slice(&body)
            .with_context(|| format!("answer of {path} is not the expected JSON"))
    }
}

/// One HTTP/1.1 exchange with `Connection: close`; the body on 2xx, the
/// server's `{"error"}` as the error otherwise.
fn http(
    host: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> anyhow::Result<Vec<u8>> {
    let mut stream =
        TcpStream::connect(host).with_context(|| format!("cannot connect to {host}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    let body = body.unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer of {path}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("answer without headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut payload = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        payload = dechunk(&payload);
    }
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("bad status line")?;
    if !(200..300).contains(&status) {
        let message = serde_json::from_slice::<Value>(&payload)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&payload).into_owned());
        bail!("{path}: HTTP {status}: {message}");
    }
    Ok(payload)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || data.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[(eol + 4 + size).min(data.len())..];
    }
    out
}

/// Percent-encodes a query parameter value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query_string(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Runs an analysis subcommand and prints its answer.
///
/// # Errors
/// No processor answers and the store file cannot be read, the request is
/// refused, or the input is bad.
pub fn run(command: Command, config: &Config) -> anyhow::Result<()> {
    match command {
        Command::Report { what, target } => {
            let backend = Backend::choose(&target, config)?;
            run_report(what, &backend, &target)
        }
        Command::Sql {
            query,
            max_rows,
            timeout_s,
            target,
        } => {
            let backend = Backend::choose(&target, config)?;
            let result: SqlResult = match &backend {
                Backend::Http { host, token } => {
                    let body = serde_json::to_vec(
                        &json!({"query": query, "max_rows": max_rows, "timeout_s": timeout_s}),
                    )?;
                    serde_json::from_slice(&http(host, token, "POST", "/v1/sql", Some(&body))?)?
                }
                Backend::Direct { file, .. } => sql::run(
                    file,
                    &query,
                    SqlLimits {
                        timeout: Duration::from_secs(timeout_s),
                        max_rows,
                    },
                )?,
            };
            if target.json {
                println!("{}", serde_json::to_string_pretty(&result)?);
                return Ok(());
            }
            let header: Vec<&str> = result.columns.iter().map(String::as_str).collect();
            let rows: Vec<Vec<String>> = result
                .rows
                .iter()
                .map(|r| {
                    r.iter()
                        .map(|c| c.clone().unwrap_or_else(|| "NULL".into()))
                        .collect()
                })
                .collect();
            print!("{}", render(&header, &rows));
            println!(
                "({} row{}{}, {:.0} ms)",
                rows.len(),
                if rows.len() == 1 { "" } else { "s" },
                if result.truncated {
                    ", cut at --max-rows"
                } else {
                    ""
                },
                result.elapsed_ms
            );
            Ok(())
        }
    }
}

fn run_report(what: ReportCommand, backend: &Backend, target: &Target) -> anyhow::Result<()> {
    let project = target.project.clone();
    let show = |v: Value| -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(&v)?);
        Ok(())
    };
    match what {
        ReportCommand::Spikes { from, to, hours } => {
            let (range, found): (String, Vec<Spike>) = match backend {
                Backend::Http { .. } => {
                    let q = query_string(&[
                        ("from", from),
                        ("to", to),
                        ("hours", Some(hours.to_string())),
                        ("project", project),
                    ]);
                    let v: Value = backend.get(&format!("/v1/spikes{q}"))?;
                    let range = format!(
                        "{} .. {}",
                        v["from"].as_str().unwrap_or(""),
                        v["to"].as_str().unwrap_or("")
                    );
                    (range, serde_json::from_value(v["spikes"].clone())?)
                }
                Backend::Direct { file, scope } => {
                    let window = match (from, to) {
                        (None, None) => spikes::recent_range(file, scope, hours)?,
                        (f, t) => WindowParams {
                            from: f,
                            to: t,
                            ..WindowParams::default()
                        }
                        .window()?,
                    };
                    (
                        format!("{} .. {}", format_time(window.from), format_time(window.to)),
                        spikes::find(file, scope, window, &Detection::default())?,
                    )
                }
            };
            if target.json {
                return show(json!({ "range": range, "spikes": found }));
            }
            println!("Spikes in {range}");
            print_spikes(&found);
        }
        ReportCommand::Spike {
            from,
            to,
            baseline_from,
            baseline_to,
        } => {
            let params = WindowParams {
                from: Some(from),
                to: Some(to),
                baseline_from,
                baseline_to,
                project,
            };
            let r: Report = match backend {
                Backend::Http { .. } => backend.get(&format!(
                    "/v1/report{}",
                    query_string(&[
                        ("from", params.from.clone()),
                        ("to", params.to.clone()),
                        ("baseline_from", params.baseline_from.clone()),
                        ("baseline_to", params.baseline_to.clone()),
                        ("project", params.project.clone()),
                    ])
                ))?,
                Backend::Direct { file, scope } => report::report(file, scope, &params.frame()?)?,
            };
            if target.json {
                return show(serde_json::to_value(&r)?);
            }
            print_report(&r);
        }
        ReportCommand::Request { id, flamegraph } => {
            let d: RequestDetail = match backend {
                Backend::Http { .. } => backend.get(&format!(
                    "/v1/requests/{}{}",
                    enc(&id),
                    query_string(&[("project", project)])
                ))?,
                Backend::Direct { file, scope } => request::detail(file, scope, &id)?,
            };
            if let Some(path) = flamegraph {
                let svg = request::flame_graph_svg(&d)?;
                std::fs::write(&path, svg)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("flame graph written to {}", path.display());
            }
            if target.json {
                return show(serde_json::to_value(&d)?);
            }
            print_request(&d);
        }
        ReportCommand::Top {
            from,
            to,
            by,
            limit,
        } => {
            let entries: Vec<TopEntry> = match backend {
                Backend::Http { .. } => {
                    let by_name = serde_json::to_value(by)?
                        .as_str()
                        .unwrap_or("endpoints")
                        .to_owned();
                    let q = query_string(&[
                        ("from", Some(from)),
                        ("to", Some(to)),
                        ("by", Some(by_name)),
                        ("limit", Some(limit.to_string())),
                        ("project", project),
                    ]);
                    let v: Value = backend.get(&format!("/v1/top{q}"))?;
                    serde_json::from_value(v["entries"].clone())?
                }
                Backend::Direct { file, scope } => {
                    let window = super::Window::new(parse_time(&from)?, parse_time(&to)?)?;
                    report::top(file, scope, window, by, limit)?
                }
            };
            if target.json {
                return show(serde_json::to_value(&entries)?);
            }
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|e| vec![e.name.clone(), num(e.seconds, 3), num(e.count, 0)])
                .collect();
            print!("{}", render(&["name", "seconds", "count"], &rows));
        }
    }
    Ok(())
}

pub(super) fn print_spikes(found: &[Spike]) {
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
        println!(
            "\nReport of the first: processor report spike --from {} --to {}",
            s.report_from, s.report_to
        );
    }
}

pub(super) fn print_report(r: &Report) {
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

fn print_request(d: &RequestDetail) {
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
                    c.calls.to_string(),
                    num(c.inclusive_ms, 1),
                    num(c.exclusive_ms, 1),
                ]
            })
            .collect();
        print!(
            "{}",
            render(
                &["function", "calls", "inclusive ms", "exclusive ms"],
                &rows
            )
        );
    }
    if !d.activity.is_empty() {
        println!();
        let peers = |p: &[super::request::Peer]| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(enc("2026-11-27T11:00:00Z"), "2026-11-27T11:00:00Z");
        assert_eq!(enc("GET /a b&c"), "GET%20%2Fa%20b%26c");
        assert_eq!(
            query_string(&[("a", None), ("b", Some("x y".into()))]),
            "?b=x%20y"
        );
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
    }
}
