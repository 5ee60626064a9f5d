//! The web UI over real HTTP on the processor's own port: the page and its
//! assets, and the UI's data routes over the recorded spike, read with the
//! shop token and with another project's token.

mod common;

#[path = "../examples/spike_fixture.rs"]
mod spike_fixture;

use common::{Client, OTHER_TOKEN, Running, TOKEN, gzip, test_config_text};
use serde_json::Value;
use spike_fixture::{BASELINE_S, DEFAULT_START, SECOND, SPIKE_S};

fn t(micros: i64) -> String {
    bitville_schemas::format_micros(micros)
}

fn get(c: &mut Client, token: &str, path: &str) -> common::Response {
    c.request(
        "GET",
        path,
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    )
    .expect("GET")
}

fn ok(c: &mut Client, token: &str, path: &str) -> Value {
    let resp = get(c, token, path);
    assert_eq!(resp.status, 200, "{path}: {}", resp.text());
    resp.json()
}

/// The mean of a series' values whose bucket start (ms) lies in `[from, to)` (µs).
fn mean_in(t: &Value, values: &Value, from: i64, to: i64) -> f64 {
    let pairs: Vec<f64> = t
        .as_array()
        .unwrap()
        .iter()
        .zip(values.as_array().unwrap())
        .filter(|(t, _)| (from / 1000..to / 1000).contains(&t.as_i64().unwrap()))
        .map(|(_, v)| v.as_f64().unwrap_or(0.0))
        .collect();
    pairs.iter().sum::<f64>() / pairs.len().max(1) as f64
}

/// A processor on a fresh store holding the recorded spike.
fn running_with_the_spike(dir: &std::path::Path) -> Running {
    let text = format!("{}\n[retention]\ndays = 36500\n", test_config_text(dir));
    let config =
        processor::config::Config::parse(&text, std::path::Path::new("test.toml")).expect("config");
    let running = Running::start(config);
    let mut c = running.client();
    for (_, ndjson) in spike_fixture::generate(spike_fixture::RECORDED, DEFAULT_START) {
        let lines: Vec<&str> = ndjson.lines().collect();
        for chunk in lines.chunks(2000) {
            let resp = c.post_ndjson(TOKEN, &gzip((chunk.join("\n") + "\n").as_bytes()), true);
            assert_eq!(resp.status, 200, "{}", resp.text());
        }
    }
    running
}

/// Issue 22: "slowest first" sorted on the page the newest `limit` rows, so
/// most of the window's slowest requests were missing. The store sorts and
/// pages now: the first page of `sort=slowest` is the window's slowest, the
/// next page goes on where it stopped, and every order the UI offers works.
#[test]
fn request_list_sorts_and_pages_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let running = running_with_the_spike(dir.path());
    let mut c = running.client();
    let end = DEFAULT_START + (BASELINE_S + SPIKE_S + spike_fixture::AFTER_S) * SECOND;
    let window = format!("from={}&to={}", t(DEFAULT_START), t(end));
    let durations = |v: &Value| -> Vec<f64> {
        v["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["duration_ms"].as_f64().unwrap())
            .collect()
    };
    let all = ok(&mut c, TOKEN, &format!("/v1/requests?{window}&limit=10000"));
    let mut slowest = durations(&all);
    assert!(slowest.len() > 500, "{} requests", slowest.len());
    assert!(all["next_offset"].is_null(), "one page holds them all");
    slowest.sort_by(|a, b| b.total_cmp(a));

    let first = ok(
        &mut c,
        TOKEN,
        &format!("/v1/requests?{window}&sort=slowest&limit=20"),
    );
    assert_eq!(durations(&first), slowest[..20], "the window's 20 slowest");
    assert_eq!(first["next_offset"], 20);
    let second = ok(
        &mut c,
        TOKEN,
        &format!("/v1/requests?{window}&sort=slowest&limit=20&offset=20"),
    );
    assert_eq!(durations(&second), slowest[20..40], "the next 20");
    let ids = |v: &Value| -> Vec<String> {
        v["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["correlation_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        ids(&first).iter().all(|id| !ids(&second).contains(id)),
        "pages do not overlap"
    );

    let fastest = ok(
        &mut c,
        TOKEN,
        &format!("/v1/requests?{window}&sort=fastest&limit=5"),
    );
    let mut quickest = slowest.clone();
    quickest.reverse();
    assert_eq!(durations(&fastest), quickest[..5]);
    let ts = |v: &Value| -> Vec<String> {
        v["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["ts"].as_str().unwrap().to_owned())
            .collect()
    };
    let oldest = ts(&ok(
        &mut c,
        TOKEN,
        &format!("/v1/requests?{window}&sort=oldest&limit=50"),
    ));
    assert!(oldest.windows(2).all(|p| p[0] <= p[1]), "{oldest:?}");
    let newest = ts(&ok(
        &mut c,
        TOKEN,
        &format!("/v1/requests?{window}&limit=50"),
    ));
    assert!(newest.windows(2).all(|p| p[0] >= p[1]), "{newest:?}");

    // `processor report requests` lists the same page, and says where the next starts.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_processor"))
        .args([
            "report",
            "requests",
            "--from",
            &t(DEFAULT_START),
            "--to",
            &t(end),
        ])
        .args(["--sort", "slowest", "--limit", "20"])
        .args([
            "--url",
            &format!("http://{}", running.addr()),
            "--token",
            TOKEN,
        ])
        .env("COLUMNS", "100")
        .env_remove("BITVILLE_PROCESSOR_CONFIG")
        .output()
        .expect("run processor");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<&str> = printed
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().nth(4))
        .take(20)
        .collect();
    assert_eq!(listed, ids(&first), "{printed}");
    assert!(printed.contains("--offset 20"), "{printed}");
    assert!(
        printed.lines().all(|l| l.chars().count() <= 100),
        "{printed}"
    );

    let bad = get(
        &mut c,
        TOKEN,
        &format!("/v1/requests?{window}&sort=loudest"),
    );
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("parameter sort"), "{}", bad.text());
    let deep = get(
        &mut c,
        TOKEN,
        &format!("/v1/requests?{window}&offset=99999999999"),
    );
    assert_eq!(deep.status, 400);
    assert!(deep.text().contains("parameter offset"), "{}", deep.text());
    running.stop();
}

#[test]
fn ui_page_and_data_routes_over_the_recorded_spike() {
    let dir = tempfile::tempdir().unwrap();
    let running = running_with_the_spike(dir.path());
    let mut c = running.client();

    // The page: served for any UI path, with a strict CSP; assets by name.
    let root = c.get("/");
    assert_eq!(root.status, 303);
    assert_eq!(root.header("location"), Some("/ui/"));
    let page = c.get("/ui/request/5c7a0b4e-0000-4000-8000-000000000000");
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("script-src 'self'")
    );
    assert!(page.text().contains("/ui/assets/app.js"));
    let js = c.get("/ui/assets/app.js");
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(js.text().contains("sessionStorage"));
    assert_eq!(c.get("/ui/assets/../../etc/passwd").status, 404);
    assert_eq!(c.get("/ui/assets/nothing.js").status, 404);

    // Who the token is; no token, no answer.
    assert_eq!(
        ok(&mut c, TOKEN, "/v1/ui/whoami"),
        serde_json::json!({ "project": "shop" })
    );
    assert_eq!(
        ok(&mut c, OTHER_TOKEN, "/v1/ui/whoami"),
        serde_json::json!({ "project": "blog" })
    );
    assert_eq!(c.get("/v1/ui/whoami").status, 401);

    // Facets: the data's span and what to filter on.
    let f = ok(&mut c, TOKEN, "/v1/ui/facets");
    let last = bitville_schemas::parse_ts(f["last"].as_str().unwrap()).unwrap();
    let end = DEFAULT_START + (BASELINE_S + SPIKE_S + spike_fixture::AFTER_S) * SECOND;
    assert!(
        last <= end && last > end - 60 * SECOND,
        "last {last} vs fixture end {end}"
    );
    assert_eq!(f["hosts"], serde_json::json!(["db-1", "web-1"]));
    assert!(
        f["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "POST checkout-submit"),
        "{f:#}"
    );
    let blog = ok(&mut c, OTHER_TOKEN, "/v1/ui/facets");
    assert!(
        blog["last"].is_null() && blog["hosts"].as_array().unwrap().is_empty(),
        "{blog:#}"
    );

    // The timeline: the spike shows in load, latency and lock waits.
    let (spike_from, spike_to) = (
        DEFAULT_START + BASELINE_S * SECOND,
        DEFAULT_START + (BASELINE_S + SPIKE_S) * SECOND,
    );
    let window = format!("from={}&to={}", t(DEFAULT_START), t(end));
    let tl = ok(&mut c, TOKEN, &format!("/v1/ui/timeline?{window}"));
    assert_eq!(tl["bucket_s"], 10);
    let hosts = tl["hosts"].as_array().unwrap();
    let host = |name: &str| {
        hosts
            .iter()
            .find(|h| h["host"] == name)
            .unwrap_or_else(|| panic!("no {name} in {tl:#}"))
    };
    let (web, db) = (host("web-1"), host("db-1"));
    let r = &web["requests"];
    assert_eq!(
        r["t"].as_array().unwrap().len(),
        90,
        "every 10 s bucket of 15 minutes"
    );
    let p95_spike = mean_in(&r["t"], &r["p95_ms"], spike_from, spike_to);
    let p95_base = mean_in(&r["t"], &r["p95_ms"], DEFAULT_START, spike_from);
    assert!(
        p95_spike > 2.0 * p95_base,
        "p95 {p95_spike} in the spike against {p95_base} before"
    );
    let lock = &db["waits"]["by_type"]["Lock"];
    let lock_spike = mean_in(&db["waits"]["t"], lock, spike_from, spike_to);
    let lock_base = mean_in(&db["waits"]["t"], lock, DEFAULT_START, spike_from);
    assert!(
        lock_spike > 0.5 && lock_base < 0.01,
        "lock waiters {lock_spike} in the spike against {lock_base} before"
    );
    let load: Vec<(i64, f64)> = serde_json::from_value(web["load"].clone()).unwrap();
    let peak = load
        .iter()
        .filter(|(t, _)| *t >= spike_from / 1000)
        .map(|(_, v)| *v)
        .fold(0.0, f64::max);
    let before = load
        .iter()
        .filter(|(t, _)| *t < spike_from / 1000)
        .map(|(_, v)| *v)
        .fold(0.0, f64::max);
    assert!(
        peak > before,
        "load peak {peak} in the spike against {before} before"
    );
    assert_eq!(web["ncpu"], 4);
    // Another project reads no series of shop, even when it asks for shop.
    let other = ok(
        &mut c,
        OTHER_TOKEN,
        &format!("/v1/ui/timeline?{window}&project=shop"),
    );
    assert_eq!(other["hosts"], serde_json::json!([]));
    // A bucket finer than the window allows is widened; a bad one is refused by name.
    assert_eq!(
        ok(
            &mut c,
            TOKEN,
            &format!("/v1/ui/timeline?{window}&bucket_s=1")
        )["bucket_s"],
        10
    );
    let bad = get(
        &mut c,
        TOKEN,
        &format!("/v1/ui/timeline?{window}&bucket_s=ten"),
    );
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("bucket_s"), "{}", bad.text());

    // The fingerprint of the blocker's row lock.
    let fp =
        bitville_schemas::fingerprint::normalize("SELECT * FROM stock WHERE sku = :sku FOR UPDATE");
    let fp_q: String = fp
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    // auto_explain logged two plans of it in the window: the page shows
    // the slowest first, with its outline (it showed none before).
    let plan_at = DEFAULT_START + (BASELINE_S + 30) * SECOND;
    let mut plans = String::new();
    for (i, (ms, scan)) in [(120.5, "Seq Scan"), (950.25, "Index Scan")]
        .iter()
        .enumerate()
    {
        let record = serde_json::json!({
            "v": 1, "kind": "pg_log", "id": format!("b6c7d8e9-f0a1-4b2c-9d3e-4f5a6b7c8d9{i}"),
            "ts": t(plan_at + i as i64 * SECOND), "log_time": t(plan_at + i as i64 * SECOND),
            "project": "shop", "host": "db-1",
            "format": "jsonlog", "class": "auto_explain", "severity": "LOG", "pid": 31000,
            "message": "duration: plan", "duration_ms": ms, "query": fp,
            "plan": {"Query Text": fp, "Plan": {"Node Type": "LockRows", "Plans": [{"Node Type": scan, "Relation Name": "stock"}]}}
        });
        plans.push_str(&format!("{record}\n"));
    }
    let resp = c.post_ndjson(TOKEN, &gzip(plans.as_bytes()), true);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(
        resp.json()["rejected"].as_array().unwrap().is_empty(),
        "{}",
        resp.text()
    );

    let d = ok(
        &mut c,
        TOKEN,
        &format!("/v1/ui/fingerprint?fp={fp_q}&{window}"),
    );
    let logged = d["plans"].as_array().unwrap();
    assert_eq!(logged.len(), 2, "{:#}", d["plans"]);
    assert_eq!(logged[0]["duration_ms"], 950.25);
    assert_eq!(logged[0]["outline"], "LockRows > Index Scan on stock");
    assert_eq!(logged[0]["plan"]["Plan"]["Node Type"], "LockRows");
    let blockers = (SPIKE_S / 20) as f64;
    assert!(
        d["php"]["calls"].as_f64().unwrap() >= blockers,
        "{:#}",
        d["php"]
    );
    let reqs = d["requests"].as_array().unwrap();
    assert!(
        reqs.iter()
            .any(|r| r["url"] == spike_fixture::LOCK_BLOCKER_URL),
        "{reqs:#?}"
    );
    assert_eq!(
        d["callers"][0]["caller"],
        "App\\Admin\\StockCounter::recount"
    );
    let calls: f64 = d["php_series"]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert_eq!(
        calls,
        d["php"]["calls"].as_f64().unwrap(),
        "the series add up to the total"
    );
    let none = ok(
        &mut c,
        OTHER_TOKEN,
        &format!("/v1/ui/fingerprint?fp={fp_q}&{window}"),
    );
    assert_eq!(none["php"]["calls"], 0.0);
    assert!(none["requests"].as_array().unwrap().is_empty());
    let missing = get(&mut c, TOKEN, &format!("/v1/ui/fingerprint?{window}"));
    assert_eq!(missing.status, 400);
    assert!(
        missing.text().contains("parameter fp"),
        "{}",
        missing.text()
    );

    // A blocker's drill-down carries each statement's calling frames.
    let id = reqs
        .iter()
        .find(|r| r["url"] == spike_fixture::LOCK_BLOCKER_URL)
        .unwrap()["correlation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let detail = ok(&mut c, TOKEN, &format!("/v1/ui/requests/{id}"));
    let stmt = detail["sql"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sql"].as_str().unwrap().contains("FOR UPDATE"))
        .unwrap()
        .clone();
    assert_eq!(
        stmt["frames"][0]["function"],
        "App\\Admin\\StockCounter::recount"
    );
    assert_eq!(stmt["caller_file"], "/srv/app/src/App.php");
    assert_eq!(stmt["caller_line"], 42);
    assert!(!detail["profile"]["folded"].as_array().unwrap().is_empty());
    assert!(
        detail["activity"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| !a["blocking"].as_array().unwrap().is_empty()),
        "the blocker blocked someone"
    );
    assert_eq!(
        get(&mut c, OTHER_TOKEN, &format!("/v1/ui/requests/{id}")).status,
        404
    );

    // A waiter queued behind another waiter: its samples name only that
    // waiter as its blocker, and its page stopped there. The lock tree
    // reaches the blocker at the root, with this request below it.
    let slow = ok(
        &mut c,
        TOKEN,
        &format!(
            "/v1/requests?from={}&to={}&endpoint=POST%20cart-add&sort=slowest&limit=40",
            t(DEFAULT_START),
            t(DEFAULT_START + (BASELINE_S + SPIKE_S) * SECOND)
        ),
    );
    let behind_a_waiter = slow["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            ok(
                &mut c,
                TOKEN,
                &format!("/v1/ui/requests/{}", r["correlation_id"].as_str().unwrap()),
            )
        })
        .find(|d| {
            d["activity"].as_array().unwrap().iter().any(|a| {
                a["blocked_by"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["url"] != spike_fixture::LOCK_BLOCKER_URL)
            })
        })
        .expect("a cart-add queued behind another waiter");
    let tree = &behind_a_waiter["lock_tree"];
    let root = &tree["roots"][0];
    assert_eq!(root["url"], spike_fixture::LOCK_BLOCKER_URL, "{tree:#}");
    assert_eq!(root["state"], "idle in transaction", "{tree:#}");
    assert!(
        root["fingerprint"].as_str().unwrap().contains("FOR UPDATE"),
        "the blocker's statement links to its fingerprint: {root:#}"
    );
    fn holds_me(n: &Value, depth: usize) -> Option<usize> {
        if n["this_request"] == true {
            return Some(depth);
        }
        n["waiters"]
            .as_array()?
            .iter()
            .find_map(|w| holds_me(w, depth + 1))
    }
    assert!(
        holds_me(root, 0).is_some_and(|d| d >= 2),
        "the request sits below the waiter in front of it: {tree:#}"
    );
    let shown = root["waiters"].as_array().unwrap().len();
    assert!(shown <= processor::analysis::lock_tree::LOCK_TREE_WIDTH + 1);
    assert!(root["waiters_total"].as_u64().unwrap() as usize >= shown);

    running.stop();
}
