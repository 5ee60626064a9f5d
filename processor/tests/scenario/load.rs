//! The load generator: closed-loop HTTP clients on loopback, each cycling
//! through its paths for a fixed time (and at most [`MAX_REQUESTS_PER_CLIENT`]
//! requests), with reqwest on a small tokio runtime.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// A bound on every loop, whatever the clock does.
const MAX_REQUESTS_PER_CLIENT: u64 = 20_000;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One closed-loop client: requests its paths in turn, pausing between them.
/// `{n}` in a path becomes a number from 1 to 1000 that changes each time.
#[derive(Debug, Clone)]
pub struct Client {
    pub paths: Vec<String>,
    pub pause: Duration,
}

impl Client {
    pub fn new(paths: &[&str], pause_ms: u64) -> Client {
        Client {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            pause: Duration::from_millis(pause_ms),
        }
    }

    /// `copies` identical clients.
    pub fn times(self, copies: usize) -> Vec<Client> {
        vec![self; copies]
    }
}

/// What the clients saw, per path (without the query string).
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// path -> status ("200", "502", "error: ...") -> (count, total ms)
    pub by_path: BTreeMap<String, BTreeMap<String, (u64, f64)>>,
}

impl Tally {
    fn add(&mut self, path: &str, status: String, ms: f64) {
        let e = self
            .by_path
            .entry(path.to_owned())
            .or_default()
            .entry(status)
            .or_default();
        e.0 += 1;
        e.1 += ms;
    }

    fn merge(&mut self, other: Tally) {
        for (path, statuses) in other.by_path {
            for (status, (n, ms)) in statuses {
                let e = self
                    .by_path
                    .entry(path.clone())
                    .or_default()
                    .entry(status)
                    .or_default();
                e.0 += n;
                e.1 += ms;
            }
        }
    }

    /// Answers that were not 200 (502 is a PHP worker that died mid-request).
    pub fn failures(&self) -> u64 {
        self.by_path
            .values()
            .flat_map(|s| s.iter())
            .filter(|(k, _)| k.as_str() != "200")
            .map(|(_, v)| v.0)
            .sum()
    }

    pub fn total(&self) -> u64 {
        self.by_path
            .values()
            .flat_map(|s| s.values())
            .map(|v| v.0)
            .sum()
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (path, statuses) in &self.by_path {
            let parts: Vec<String> = statuses
                .iter()
                .map(|(status, (n, ms))| {
                    format!("{status} x{n} (mean {:.0} ms)", ms / (*n).max(1) as f64)
                })
                .collect();
            writeln!(f, "    {path:<16} {}", parts.join(", "))?;
        }
        Ok(())
    }
}

/// Runs the clients against `base` (an `http://127.0.0.1:port` URL) for `duration`.
///
/// # Panics
/// The runtime or the HTTP client cannot be built (test setup).
pub fn run(base: &str, clients: &[Client], duration: Duration) -> Tally {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime for the load generator");
    rt.block_on(async {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(64)
            .build()
            .expect("HTTP client for the load generator");
        let deadline = Instant::now() + duration;
        let tasks: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(k, client)| {
                let (http, client, base) = (http.clone(), client.clone(), base.to_owned());
                tokio::spawn(
                    async move { one_client(&http, &base, &client, deadline, k as u64).await },
                )
            })
            .collect();
        let mut tally = Tally::default();
        for t in tasks {
            if let Ok(t) = t.await {
                tally.merge(t);
            }
        }
        tally
    })
}

async fn one_client(
    http: &reqwest::Client,
    base: &str,
    client: &Client,
    deadline: Instant,
    seed: u64,
) -> Tally {
    let mut tally = Tally::default();
    let mut i = 0u64;
    while Instant::now() < deadline && i < MAX_REQUESTS_PER_CLIENT && !client.paths.is_empty() {
        let template = &client.paths[(i as usize) % client.paths.len()];
        let n = 1 + (i.wrapping_mul(7919).wrapping_add(seed * 104_729)) % 1000;
        let path = template.replace("{n}", &n.to_string());
        let started = Instant::now();
        let status = match http.get(format!("{base}{path}")).send().await {
            Ok(r) => {
                let s = r.status().as_u16().to_string();
                let _ = r.bytes().await;
                s
            }
            Err(e) => format!(
                "error: {}",
                if e.is_timeout() {
                    "timeout".to_owned()
                } else {
                    e.to_string()
                }
            ),
        };
        tally.add(
            path.split('?').next().unwrap_or(&path),
            status,
            started.elapsed().as_secs_f64() * 1000.0,
        );
        i += 1;
        if !client.pause.is_zero() {
            tokio::time::sleep(client.pause).await;
        }
    }
    tally
}
