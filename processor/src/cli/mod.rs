//! The `processor` binary's command line beyond serving: the `report` and
//! `sql` subcommands ([`Command`]) and `processor demo` ([`demo`]). The
//! library answers; this module asks and prints.
//!
//! - [`client`]: the processor's read API over HTTP(S), with a token.
//! - [`print`]: the answers as text tables; [`table`]: the table layout;
//!   [`layout`]: fitting it all to the terminal (`$COLUMNS`, else the
//!   terminal's width, else 80 columns).
//! - [`demo`]: the whole path on a recorded spike, in one command.
//!
//! `report` and `sql` ask the running processor with a token; when none
//! answers on the configured port (or `--store` is given), they open the
//! store file directly, read-only: whoever can read that file may read all
//! of it.

mod client;
pub mod demo;
mod layout;
mod print;
mod table;

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use processor::analysis::api::WindowParams;
use processor::analysis::report::{Report, TopBy, TopEntry};
use processor::analysis::request::{ListFilter, ListSort, RequestDetail, RequestPage};
use processor::analysis::spikes::{Detection, Spike};
use processor::analysis::sql::{SqlLimits, SqlResult};
use processor::analysis::{Scope, Window, format_time, parse_time, report, request, spikes, sql};
use processor::config::Config;
use processor::store::Reader;
use serde_json::{Value, json};

use client::Client;
use print::{Asking, print_report, print_request, print_requests, print_spikes};
use table::{num, render, render_fit};

/// The analysis subcommands; the binary adds them to its own.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Spike reports: detected spikes, a window's ranked suspects, one request, top lists.
    ///
    /// Times given and printed here are UTC; the web UI shows the same
    /// times in the viewer's zone (UTC on hover).
    Report {
        #[command(subcommand)]
        what: ReportCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Read-only SQL over the store's tables and views (admin), e.g. `processor sql "SELECT count(*) FROM requests"`.
    Sql {
        /// One SELECT over the store's views (see the processor README's tables); times are UTC.
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
        /// Start of the range to search (UTC: RFC 3339, "YYYY-MM-DD HH:MM[:SS]", a date, or Unix seconds).
        #[arg(long)]
        from: Option<String>,
        /// End of the range to search (UTC; same formats as --from).
        #[arg(long)]
        to: Option<String>,
        /// Hours before the newest record, when no range is given.
        #[arg(long, default_value_t = 24)]
        hours: i64,
    },
    /// The ranked suspects of a window against the window just before it (or the given baseline).
    Spike {
        /// Start of the window (UTC: RFC 3339, "YYYY-MM-DD HH:MM[:SS]", a date, or Unix seconds).
        #[arg(long)]
        from: String,
        /// End of the window (UTC; same formats as --from).
        #[arg(long)]
        to: String,
        /// Start of the baseline (UTC; default: the window's length just before it; same formats as --from).
        #[arg(long, requires = "baseline_to")]
        baseline_from: Option<String>,
        /// End of the baseline, at or before the window's start (UTC; same formats as --from).
        #[arg(long, requires = "baseline_from")]
        baseline_to: Option<String>,
    },
    /// Everything about one request (correlation ID or record id).
    Request {
        /// The request's correlation ID or record id (from `report requests`).
        id: String,
        /// Also write its flame graph (SVG) to this file.
        #[arg(long)]
        flamegraph: Option<PathBuf>,
    },
    /// The requests of a window, filtered, sorted and paged by the store (as `GET /v1/requests`).
    Requests {
        /// Start of the window (UTC: RFC 3339, "YYYY-MM-DD HH:MM[:SS]", a date, or Unix seconds).
        #[arg(long)]
        from: String,
        /// End of the window (UTC; same formats as --from).
        #[arg(long)]
        to: String,
        /// Only requests of this host.
        #[arg(long)]
        host: Option<String>,
        /// Only this endpoint, as the reports name it ("POST checkout-submit").
        #[arg(long)]
        endpoint: Option<String>,
        /// Only this HTTP status.
        #[arg(long)]
        status: Option<i64>,
        /// Only requests that took at least this many milliseconds.
        #[arg(long)]
        min_ms: Option<f64>,
        /// Order: newest, oldest, slowest or fastest.
        #[arg(long, default_value = "newest", value_parser = parse_sort)]
        sort: ListSort,
        /// At most this many requests (at most 10000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Skip this many of the order first (the next page's offset is printed).
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// Where the time of a window went: top endpoints, SQL fingerprints or functions.
    Top {
        /// Start of the window (UTC: RFC 3339, "YYYY-MM-DD HH:MM[:SS]", a date, or Unix seconds).
        #[arg(long)]
        from: String,
        /// End of the window (UTC; same formats as --from).
        #[arg(long)]
        to: String,
        /// What to rank.
        #[arg(long, value_enum, default_value = "endpoints")]
        by: TopBy,
        /// At most this many entries.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

fn parse_sort(name: &str) -> Result<ListSort, String> {
    ListSort::parse(name).map_err(|e| e.to_string())
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
    Http(Client),
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
        let url = target.url.clone().unwrap_or_else(|| {
            let scheme = if config.server.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}", config.server.listen)
        });
        let base = client::base_url(&url)?;
        if answers(&base) {
            let token = target
                .token
                .clone()
                .context("a processor runs: give --token or BITVILLE_TOKEN")?;
            Ok(Backend::Http(Client::new(base, token)?))
        } else {
            direct(&config.store.path).with_context(|| format!("no processor answers on {url}"))
        }
    }
}

/// True when something accepts a TCP connection on the URL's host and port
/// within 2 s: a processor runs there (it holds the store file's lock).
fn answers(base: &reqwest::Url) -> bool {
    base.socket_addrs(|| None)
        .unwrap_or_default()
        .iter()
        .any(|addr| TcpStream::connect_timeout(addr, Duration::from_secs(2)).is_ok())
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
                Backend::Http(client) => client.post(
                    "/v1/sql",
                    &json!({"query": query, "max_rows": max_rows, "timeout_s": timeout_s}),
                )?,
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
                println!("{}", serde_json::to_string_pretty(&typed(&result))?);
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

/// An SQL answer as JSON whose cells have their column's type: numbers
/// as numbers and booleans as booleans (the API sends every cell as text,
/// as DuckDB prints it). A number JSON cannot hold (NaN, a HUGEINT past
/// 64 bits) stays text.
fn typed(result: &SqlResult) -> Value {
    let cell = |ty: &str, text: &Option<String>| -> Value {
        let Some(text) = text else {
            return Value::Null;
        };
        let ty = ty.to_ascii_uppercase();
        let integer = ["TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"]
            .iter()
            .any(|t| ty.starts_with(t) || ty.starts_with(&format!("U{t}")));
        let decimal = ["FLOAT", "DOUBLE", "REAL", "DECIMAL", "NUMERIC"]
            .iter()
            .any(|t| ty.starts_with(t));
        let parsed = if ty == "BOOLEAN" {
            text.parse::<bool>().ok().map(Value::from)
        } else if integer {
            text.parse::<i64>()
                .map(Value::from)
                .or_else(|_| text.parse::<u64>().map(Value::from))
                .ok()
        } else if decimal {
            text.parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
        } else {
            None
        };
        parsed.unwrap_or_else(|| Value::String(text.clone()))
    };
    let rows: Vec<Value> = result
        .rows
        .iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(i, c)| cell(result.types.get(i).map_or("", String::as_str), c))
                .collect()
        })
        .collect();
    json!({
        "columns": result.columns,
        "types": result.types,
        "rows": rows,
        "truncated": result.truncated,
        "elapsed_ms": result.elapsed_ms,
    })
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
                Backend::Http(client) => {
                    let q = query_string(&[
                        ("from", from),
                        ("to", to),
                        ("hours", Some(hours.to_string())),
                        ("project", project),
                    ]);
                    let v: Value = client.get(&format!("/v1/spikes{q}"))?;
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
            println!("Spikes in {range} (UTC)");
            print_spikes(&found, &Asking::default());
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
            let answer: Value = match backend {
                Backend::Http(client) => client.get(&format!(
                    "/v1/report{}",
                    query_string(&[
                        ("from", params.from.clone()),
                        ("to", params.to.clone()),
                        ("baseline_from", params.baseline_from.clone()),
                        ("baseline_to", params.baseline_to.clone()),
                        ("project", params.project.clone()),
                    ])
                ))?,
                Backend::Direct { file, scope } => {
                    serde_json::to_value(report::report(file, scope, &params.frame()?)?)?
                }
            };
            if target.json {
                return show(answer);
            }
            let r: Report = serde_json::from_value(answer)?;
            print_report(&r);
        }
        ReportCommand::Request { id, flamegraph } => {
            let d: RequestDetail = match backend {
                Backend::Http(client) => client.get(&format!(
                    "/v1/requests/{}{}",
                    enc(&id),
                    query_string(&[("project", project)])
                ))?,
                Backend::Direct { file, scope } => request::detail(file, scope, &id)?,
            };
            if let Some(path) = flamegraph {
                // A request without a profile still has its details: say
                // so and print them, rather than stop before anything.
                if d.profile.folded.is_empty() {
                    eprintln!(
                        "request {} has no profile (no profiler ran, or the record was kept without one): no flame graph written to {}",
                        d.correlation_id,
                        path.display()
                    );
                } else {
                    let svg = request::flame_graph_svg(&d)?;
                    std::fs::write(&path, svg)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!("flame graph written to {}", path.display());
                }
            }
            if target.json {
                return show(serde_json::to_value(&d)?);
            }
            print_request(&d);
        }
        ReportCommand::Requests {
            from,
            to,
            host,
            endpoint,
            status,
            min_ms,
            sort,
            limit,
            offset,
        } => {
            let filter = ListFilter {
                host,
                endpoint,
                status,
                min_ms,
                limit: Some(limit),
                sort,
                offset,
            };
            let page: RequestPage = match backend {
                Backend::Http(client) => {
                    let sort_name = serde_json::to_value(sort)?
                        .as_str()
                        .unwrap_or("newest")
                        .to_owned();
                    let q = query_string(&[
                        ("from", Some(from)),
                        ("to", Some(to)),
                        ("host", filter.host.clone()),
                        ("endpoint", filter.endpoint.clone()),
                        ("status", filter.status.map(|s| s.to_string())),
                        ("min_ms", filter.min_ms.map(|m| m.to_string())),
                        ("sort", Some(sort_name)),
                        ("limit", Some(limit.to_string())),
                        ("offset", Some(offset.to_string())),
                        ("project", project),
                    ]);
                    client.get(&format!("/v1/requests{q}"))?
                }
                Backend::Direct { file, scope } => {
                    let window = Window::new(parse_time(&from)?, parse_time(&to)?)?;
                    request::page(file, scope, window, &filter)?
                }
            };
            if target.json {
                return show(serde_json::to_value(&page)?);
            }
            print_requests(&page);
        }
        ReportCommand::Top {
            from,
            to,
            by,
            limit,
        } => {
            let entries: Vec<TopEntry> = match backend {
                Backend::Http(client) => {
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
                    let v: Value = client.get(&format!("/v1/top{q}"))?;
                    serde_json::from_value(v["entries"].clone())?
                }
                Backend::Direct { file, scope } => {
                    let window = Window::new(parse_time(&from)?, parse_time(&to)?)?;
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
            print!(
                "{}",
                render_fit(
                    &["name", "seconds", "count"],
                    &rows,
                    layout::width(),
                    Some(0)
                )
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_json_cells_have_their_column_s_type() {
        let result = SqlResult {
            columns: ["n", "d", "b", "s", "z", "big", "nan"]
                .map(String::from)
                .to_vec(),
            types: [
                "BIGINT", "DOUBLE", "BOOLEAN", "VARCHAR", "INTEGER", "HUGEINT", "DOUBLE",
            ]
            .map(String::from)
            .to_vec(),
            rows: vec![vec![
                Some("42".into()),
                Some("1.5".into()),
                Some("true".into()),
                Some("007".into()),
                None,
                Some("170141183460469231731687303715884105727".into()),
                Some("nan".into()),
            ]],
            truncated: false,
            elapsed_ms: 1.0,
        };
        assert_eq!(
            typed(&result)["rows"][0],
            json!([
                42,
                1.5,
                true,
                "007",
                null,
                "170141183460469231731687303715884105727",
                "nan"
            ])
        );
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(enc("2026-11-27T11:00:00Z"), "2026-11-27T11:00:00Z");
        assert_eq!(enc("GET /a b&c"), "GET%20%2Fa%20b%26c");
        assert_eq!(
            query_string(&[("a", None), ("b", Some("x y".into()))]),
            "?b=x%20y"
        );
    }
}
