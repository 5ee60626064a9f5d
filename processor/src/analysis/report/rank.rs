//! The attribution rules: measured items in, ranked suspects out. Pure
//! functions with no store behind them (see the module doc of
//! [`super`] for the rules in words), so they are tested here on small
//! hand-made inputs.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Value, json};

use super::collect::{
    EndpointTime, Endpoints, HostPressure, LockWaits, LoopRow, Measured, ProfileRow, WaitEvent,
};
use super::{
    Item, Suspect, SuspectKind, TopEntry, Totals, is_agent_frame, is_database_frame,
    is_internal_function, is_placeholder_frame, strip_recursion,
};
use crate::analysis::round3;

/// At most this many suspects are reported.
const MAX_SUSPECTS: usize = 30;

/// Lock waits grouped by their root blocker's request endpoint (or its
/// statement when the blocker carries no correlation ID).
#[derive(Debug, Clone, Default)]
struct Locks {
    items: BTreeMap<String, Item>,
    /// Excess lock-wait seconds per waiting fingerprint.
    by_waiter_fingerprint: HashMap<String, f64>,
}

/// Groups lock waits by their blocker; `ratio` scales the baseline's
/// waits to the window's length.
fn locks(lock: &LockWaits, ratio: f64) -> Locks {
    let requests = &lock.requests;
    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    let mut by_fp: HashMap<String, f64> = HashMap::new();
    let mut examples: HashMap<String, BTreeSet<String>> = HashMap::new();
    for wait in &lock.waits {
        let blocker = wait
            .root
            .correlation_id
            .as_ref()
            .and_then(|id| requests.get(id));
        let key = match blocker {
            Some(req) => req.endpoint.clone(),
            None => format!(
                "(no request) {}",
                wait.root
                    .fingerprint
                    .clone()
                    .unwrap_or_else(|| format!("pid {}", wait.root.pid))
            ),
        };
        let waiter_ep = wait
            .waiter
            .correlation_id
            .as_ref()
            .and_then(|id| requests.get(id))
            .map(|r| r.endpoint.clone());
        let item = items.entry(key.clone()).or_default();
        item.add(wait.in_window, wait.seconds, waiter_ep);
        let sign = if wait.in_window { 1.0 } else { -ratio };
        *by_fp
            .entry(wait.waiter.fingerprint.clone().unwrap_or_default())
            .or_default() += sign * wait.seconds;
        if wait.in_window {
            if let Some(req) = blocker {
                item.note("blocker_url", json!(req.url));
                item.note("blocker_host", json!(req.host));
                let ids = examples.entry(key.clone()).or_default();
                if ids.len() < 5 {
                    ids.insert(req.correlation_id.clone());
                }
            }
            item.note("blocker_query", json!(wait.root.query));
            item.note("blocker_fingerprint", json!(wait.root.fingerprint));
            item.note("blocker_state", json!(wait.root.state));
            let xact = item
                .evidence
                .get("blocker_xact_ms_max")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            item.note(
                "blocker_xact_ms_max",
                json!(round3(xact.max(wait.root.xact_ms))),
            );
            let n = item
                .evidence
                .get("waiting_samples")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            item.note("waiting_samples", json!(n + 1));
            item.note("waiter_query", json!(wait.waiter.query));
            item.note("waiter_fingerprint", json!(wait.waiter.fingerprint));
        }
    }
    for (key, ids) in examples {
        if let Some(item) = items.get_mut(&key) {
            item.note("blocker_correlation_ids", json!(ids));
        }
    }
    Locks {
        items,
        by_waiter_fingerprint: by_fp,
    }
}

/// Functions folded from profile rows: each row's time goes to its
/// nearest user-land frame (agent frames skipped, internal functions listed
/// in that frame's evidence), and the part spent in database driver frames
/// is kept apart, since the SQL suspects hold it.
#[derive(Debug, Clone, Default)]
pub(super) struct Folded {
    pub items: BTreeMap<String, Item>,
    pub db: HashMap<String, Item>,
}

/// Folds profile rows into functions (see [`Folded`]). xhprof rows with a
/// single frame (a caller's minus its children) are resolved through the
/// callers seen on the other rows.
pub(super) fn fold_profile(rows: &[ProfileRow]) -> Folded {
    let mut parent_of: HashMap<String, String> = HashMap::new();
    for r in rows {
        if let [.., caller, callee] = r.frames.as_slice() {
            let (caller, callee) = (strip_recursion(caller), strip_recursion(callee));
            if caller != callee && !caller.is_empty() {
                parent_of
                    .entry(callee.to_owned())
                    .or_insert_with(|| caller.to_owned());
            }
        }
    }
    let user = |f: &str| !f.is_empty() && !is_agent_frame(f) && !is_internal_function(f);
    let mut out = Folded::default();
    let mut builtins: HashMap<String, BTreeMap<String, f64>> = HashMap::new();
    let mut agent: HashMap<String, i64> = HashMap::new();
    for r in rows {
        // A placeholder names no code: as if the frame were not there.
        let frames: Vec<&str> = r
            .frames
            .iter()
            .map(|f| {
                if is_placeholder_frame(f) {
                    ""
                } else {
                    strip_recursion(f)
                }
            })
            .collect();
        let Some(leaf) = frames.iter().rev().find(|f| !f.is_empty()).copied() else {
            continue;
        };
        let mut target = frames.iter().rev().find(|f| user(f)).copied();
        if target.is_none() {
            // Walk up through the callers the other rows name.
            let mut at = frames.first().copied().unwrap_or(leaf);
            for _ in 0..16 {
                match parent_of.get(at) {
                    Some(p) if user(p) => {
                        target = Some(p.as_str());
                        break;
                    }
                    Some(p) => at = p.as_str(),
                    None => break,
                }
            }
        }
        // Agent work with no user frame around it is the agent's cost, not
        // a cause; an internal function with no user caller keeps its name.
        let Some(name) = target.or((!is_agent_frame(leaf)).then_some(leaf)) else {
            continue;
        };
        let name = name.to_owned();
        // Driver time is SQL time, which the SQL suspects hold: kept apart,
        // not in the function's own time.
        let own = if is_database_frame(leaf) {
            0.0
        } else {
            r.seconds
        };
        let item = out.items.entry(name.clone()).or_default();
        item.add(r.in_window, own, r.endpoint.clone());
        if r.in_window {
            let n = item
                .evidence
                .get("requests")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            item.note("requests", json!(round3(n.max(r.requests))));
        }
        if frames.iter().any(|f| is_agent_frame(f)) {
            *agent.entry(name.clone()).or_default() += 1;
        }
        if leaf != name && !is_agent_frame(leaf) && r.in_window {
            *builtins
                .entry(name.clone())
                .or_default()
                .entry(leaf.to_owned())
                .or_default() += r.seconds;
        }
        if is_database_frame(leaf) {
            out.db
                .entry(name.clone())
                .or_default()
                .add(r.in_window, r.seconds, r.endpoint.clone());
        }
    }
    for (name, calls) in builtins {
        let mut list: Vec<(String, f64)> = calls.into_iter().filter(|(_, s)| *s > 0.0).collect();
        list.sort_by(|a, b| b.1.total_cmp(&a.1));
        if let Some(item) = out.items.get_mut(&name)
            && !list.is_empty()
        {
            item.note(
                "internal_functions",
                json!(
                    list.iter()
                        .take(8)
                        .map(|(f, s)| json!({"function": f, "seconds": round3(*s)}))
                        .collect::<Vec<_>>()
                ),
            );
        }
    }
    for (name, n) in agent {
        if let Some(item) = out.items.get_mut(&name) {
            item.note("agent_frames_folded", json!(n));
        }
    }
    out
}

/// The share of an endpoint's requests (window, baseline) whose records
/// carry the evidence `part` picks, weighted by sampling weight.
type Coverage = HashMap<String, (f64, f64)>;

fn coverage(eps: &Endpoints, part: fn(&EndpointTime) -> f64) -> Coverage {
    eps.times
        .iter()
        .map(|(ep, (w, b))| {
            let share = |t: &EndpointTime| {
                if t.n > 0.0 {
                    (part(t) / t.n).min(1.0)
                } else {
                    0.0
                }
            };
            (ep.clone(), (share(w), share(b)))
        })
        .collect()
}

/// An item's time scaled up by the coverage of its evidence per endpoint:
/// evidence from a tenth of the requests stands for ten times its time.
/// The coverage of its main endpoint is shown in its evidence.
fn scale_by_coverage(item: &Item, cov: &Coverage) -> Item {
    let mut out = item.clone();
    let scale = |by: &HashMap<String, f64>, total: f64, side: fn(&(f64, f64)) -> f64| {
        let mut sum = total;
        let mut parts = HashMap::new();
        for (ep, x) in by {
            let c = cov.get(ep).map_or(1.0, side);
            let y = if c > 0.0 && c < 1.0 { x / c } else { *x };
            sum += y - x;
            parts.insert(ep.clone(), y);
        }
        (sum, parts)
    };
    let (w, by) = scale(&item.by_endpoint, item.w, |c| c.0);
    let (b, b_by) = scale(&item.b_by_endpoint, item.b, |c| c.1);
    (out.w, out.by_endpoint, out.b, out.b_by_endpoint) = (w, by, b, b_by);
    if let Some((c_w, c_b)) = item.main_endpoint().and_then(|ep| cov.get(&ep).copied())
        && (c_w < 0.999 || (c_b < 0.999 && item.b > 0.0))
    {
        out.note("coverage", json!(round3(c_w)));
        out.note("baseline_coverage", json!(round3(c_b)));
        out.note("measured_s", json!(round3(item.w)));
    }
    out
}

/// The milliseconds one request spent in a repeated statement's loop: the
/// statements' own time plus the round trips and driver time between them.
/// With two or more of them stored, the span from the first stored one's
/// start to the last one's end, per stored execution, times all
/// executions; otherwise the request's time outside SQL shared by
/// statement count. Never less than the statements' time nor more than the
/// request's.
pub(super) fn loop_ms(r: &LoopRow) -> f64 {
    let estimate = match r.stored_span_ms {
        Some(span) if r.stored >= 2.0 && span > 0.0 => span / r.stored * r.count,
        _ => {
            let outside = (r.request_ms - r.request_sql_ms).max(0.0);
            let share = if r.request_sql_count > 0.0 {
                (r.count / r.request_sql_count).min(1.0)
            } else {
                0.0
            };
            r.total_ms + outside * share
        }
    };
    estimate.max(r.total_ms).min(r.request_ms.max(r.total_ms))
}

/// A PHP function's name as a call: `f()` (names that already end in `)`
/// are left alone).
fn call(function: &str) -> String {
    if function.ends_with(')') {
        function.to_owned()
    } else {
        format!("{function}()")
    }
}

/// N+1 loops: per statement shape and the function issuing it, the loop
/// time of every request that ran the shape at least `min` times.
struct Loop {
    item: Item,
    /// Statement time alone, in the window and the baseline.
    stmt: Item,
    fingerprint: String,
    caller: String,
    executions_w: f64,
    requests_w: f64,
    not_stored_w: f64,
    records_w: f64,
}

fn n_plus_one(rows: &[LoopRow], min: f64) -> BTreeMap<(String, String, String, i64), Loop> {
    let mut out: BTreeMap<(String, String, String, i64), Loop> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.count >= min) {
        let key = (
            r.fingerprint.clone(),
            r.caller.clone(),
            r.caller_file.clone(),
            r.caller_line,
        );
        let l = out.entry(key).or_insert_with(|| Loop {
            item: Item::default(),
            stmt: Item::default(),
            fingerprint: r.fingerprint.clone(),
            caller: r.caller.clone(),
            executions_w: 0.0,
            requests_w: 0.0,
            not_stored_w: 0.0,
            records_w: 0.0,
        });
        let ep = Some(r.endpoint.clone());
        l.item
            .add(r.in_window, r.weight * loop_ms(r) / 1000.0, ep.clone());
        l.stmt.add(r.in_window, r.weight * r.total_ms / 1000.0, ep);
        if r.in_window {
            l.executions_w += r.weight * r.count;
            l.requests_w += r.weight;
            l.not_stored_w += (r.count - r.stored).max(0.0);
            l.records_w += 1.0;
            if !r.sql.is_empty() {
                l.item.note("sql", json!(r.sql));
            }
        }
    }
    out
}

/// Mean seconds per request of one kind of time over the records that carry it.
fn per_request(x: f64, n: f64) -> f64 {
    if n > 0.0 { x / n } else { 0.0 }
}

/// How much more CPU each request must need than in the baseline for its
/// time queued for a CPU to count as its own demand.
const CPU_GROWTH: f64 = 1.5;
/// The share of its unqueued time a request spends on the CPU from which
/// on it is CPU-bound.
const CPU_BOUND_SHARE: f64 = 0.5;

/// What kind of time an endpoint's latency excess is, from each request's
/// CPU and SQL time: PHP CPU, SQL, or off-CPU outside SQL (sleep, HTTP
/// calls, files). Time off the CPU is split by the requests' context
/// switches: the share the kernel took the CPU away (involuntary) is time
/// queued for a busy CPU, which counts as PHP CPU when each request needs
/// more CPU than in the baseline ([`CPU_GROWTH`]) or is CPU-bound
/// ([`CPU_BOUND_SHARE`]) and stays with the endpoint's traffic otherwise;
/// the rest is waiting (voluntary). Without a profile in the
/// window the part no deeper suspect explains becomes a suspect of its
/// kind ("PHP CPU in GET /x"), so the answer is more than the endpoint;
/// returns the seconds they took.
fn time_kinds(
    suspects: &mut Vec<Suspect>,
    ep_item: &mut Item,
    ep: &str,
    (t_w, t_b): (&EndpointTime, &EndpointTime),
    ratio: f64,
    latency: f64,
    unexplained: f64,
) -> f64 {
    if t_w.cpu_known <= 0.0 {
        return 0.0;
    }
    let n_w = t_w.n;
    let has_baseline = t_b.n > 0.0;
    let cpu_b = if has_baseline {
        per_request(t_b.cpu_s, t_b.cpu_known)
    } else {
        0.0
    };
    let sql_b = if has_baseline {
        per_request(t_b.sql_s, t_b.sql_seen)
    } else {
        0.0
    };
    let on_cpu = n_w * (per_request(t_w.cpu_s, t_w.cpu_known) - cpu_b);
    let sql = n_w * (per_request(t_w.sql_s, t_w.sql_seen) - sql_b);
    let off_all = latency - on_cpu.max(0.0) - sql.max(0.0);
    let switches = t_w.switches_voluntary + t_w.switches_involuntary;
    let queued_share = if switches > 0.0 {
        t_w.switches_involuntary / switches
    } else {
        0.0
    };
    let queued_all = off_all.max(0.0) * queued_share;
    // Queued time is PHP CPU demand when each request needs more CPU than
    // before (or the endpoint is new), or when its requests are CPU-bound
    // (on the CPU for at least half of the time they did not queue).
    // Requests that are neither, like a burst of a cheap page, queue for
    // CPUs the load keeps busy, which their traffic is part of: that time
    // stays with the endpoint.
    let cpu_per_request = per_request(t_w.cpu_s, t_w.cpu_known);
    let unqueued = per_request(t_w.cpu_known_s, t_w.cpu_known) - per_request(queued_all, n_w);
    let cpu_bound = cpu_per_request >= CPU_BOUND_SHARE * unqueued;
    let own_demand = !has_baseline || cpu_bound || cpu_per_request >= CPU_GROWTH * cpu_b;
    let queued = if own_demand { queued_all } else { 0.0 };
    let cpu = on_cpu + queued;
    let off = off_all - queued_all;
    ep_item.note(
        "time_kinds",
        json!({
            "php_cpu_excess_s": round3(cpu),
            "sql_excess_s": round3(sql),
            "off_cpu_outside_sql_excess_s": round3(off),
            "queued_for_cpu_excess_s": round3(queued_all),
            "queued_counted_as_php_cpu": own_demand,
            "involuntary_switch_share": round3(queued_share),
            "cpu_ms_per_request": round3(per_request(t_w.cpu_s, t_w.cpu_known) * 1000.0),
            "baseline_cpu_ms_per_request": round3(cpu_b * 1000.0),
        }),
    );
    if t_w.profiled > 0.0 || latency <= 0.0 || unexplained <= 0.0 {
        return 0.0;
    }
    let profiler = "no profiler installed";
    let mut taken = 0.0;
    let user = t_w.cpu_s > 0.0 && t_w.cpu_user_s / t_w.cpu_s >= 0.5;
    let cpu_part = cpu.max(0.0).min(unexplained);
    if cpu_part > 1e-6 {
        let mut item = Item::default();
        item.add(true, t_w.cpu_s, Some(ep.to_owned()));
        item.add(false, t_b.cpu_s, Some(ep.to_owned()));
        item.note(
            "summary",
            json!(format!(
                "{ep}: {:.0} % of its excess time is PHP CPU ({} time{}), {profiler}",
                (cpu / latency * 100.0).min(100.0),
                if user { "user" } else { "system" },
                if queued > 0.01 * latency {
                    format!(
                        ", {:.0} % of it queued for a busy CPU",
                        (queued / cpu.max(1e-9) * 100.0).min(100.0)
                    )
                } else {
                    String::new()
                }
            )),
        );
        item.note("queued_for_cpu_s", json!(round3(queued)));
        item.note("cpu_user_s", json!(round3(t_w.cpu_user_s)));
        item.note("cpu_s", json!(round3(t_w.cpu_s)));
        item.note("requests_with_cpu_time", json!(round3(t_w.cpu_known)));
        push(
            suspects,
            ratio,
            SuspectKind::PhpCpu,
            &format!("PHP CPU in {ep}"),
            &item,
            cpu_part,
            Some(ep.to_owned()),
        );
        taken += cpu_part;
    }
    let off_part = off.max(0.0).min(unexplained - taken);
    if off_part > 1e-6 {
        let mut item = Item::default();
        let outside = |t: &EndpointTime| (t.cpu_known_s - t.cpu_s - t.sql_s).max(0.0);
        item.add(true, outside(t_w), Some(ep.to_owned()));
        item.add(false, outside(t_b), Some(ep.to_owned()));
        item.note(
            "summary",
            json!(format!(
                "{ep}: {:.0} % of its excess time is off-CPU outside SQL (sleep, HTTP calls, files), {profiler}",
                (off / latency * 100.0).min(100.0)
            )),
        );
        push(
            suspects,
            ratio,
            SuspectKind::OffCpu,
            &format!("off-CPU outside SQL in {ep}"),
            &item,
            off_part,
            Some(ep.to_owned()),
        );
        taken += off_part;
    }
    taken
}

/// Swapping from which on a host is under memory pressure: this many bytes
/// a second, and this many times its baseline's.
const SWAP_BYTES_PER_S: f64 = 1024.0 * 1024.0;
const SWAP_FACTOR: f64 = 4.0;

/// Memory pressure on a host: while it swaps well above its baseline, the
/// latency every endpoint served there gained is the host's (a page fault
/// stalls a request wherever it happens to be, so no function or statement
/// is the cause); traffic stays with the endpoints.
fn host_memory(
    suspects: &mut Vec<Suspect>,
    host: &str,
    p: &HostPressure,
    ratio: f64,
    window_seconds: f64,
) {
    let (swap_w, swap_b) = (p.swap_io_bytes.0, p.swap_io_bytes.1 * ratio);
    let rate = swap_w / window_seconds.max(1.0);
    if rate < SWAP_BYTES_PER_S || swap_w < SWAP_FACTOR * swap_b {
        return;
    }
    let mut item = Item::default();
    let (mut n_w, mut rs_w, mut n_b, mut rs_b) = (0.0, 0.0, 0.0, 0.0);
    for (ep, &((nw, rw), (nb, rb))) in &p.endpoints {
        let nb = nb * ratio;
        let rb = rb * ratio;
        (n_w, rs_w, n_b, rs_b) = (n_w + nw, rs_w + rw, n_b + nb, rs_b + rb);
        if nw > 0.0 && nb > 0.0 {
            let slower = nw * (rw / nw - rb / nb);
            if slower > 0.0 {
                item.add(true, slower, Some(ep.clone()));
            }
        }
    }
    let mib = |b: f64| round3(b / (1024.0 * 1024.0));
    item.note("swap_mib_per_s", json!(mib(rate)));
    item.note(
        "baseline_swap_mib_per_s",
        json!(mib(swap_b / window_seconds.max(1.0))),
    );
    item.note("mean_ms", json!(round3(per_request(rs_w, n_w) * 1000.0)));
    item.note(
        "baseline_mean_ms",
        json!(round3(per_request(rs_b, n_b) * 1000.0)),
    );
    item.note(
        "summary",
        json!(format!(
            "{host} swapped {:.1} MiB/s (baseline {:.1}); its requests took {:.0} ms on average (baseline {:.0} ms): {:.1} s of latency on every endpoint it serves",
            mib(rate),
            mib(swap_b / window_seconds.max(1.0)),
            per_request(rs_w, n_w) * 1000.0,
            per_request(rs_b, n_b) * 1000.0,
            item.w
        )),
    );
    let score = item.w;
    push(
        suspects,
        ratio,
        SuspectKind::HostMemory,
        &format!("memory pressure on {host} (swapping)"),
        &item,
        score,
        item.main_endpoint(),
    );
}

/// Adds a suspect when it explains anything.
fn push(
    suspects: &mut Vec<Suspect>,
    ratio: f64,
    kind: SuspectKind,
    name: &str,
    item: &Item,
    score: f64,
    endpoint: Option<String>,
) {
    if score > 1e-6 {
        suspects.push(Suspect {
            rank: 0,
            kind,
            name: name.to_owned(),
            score_s: score,
            share: 0.0,
            window_s: round3(item.w),
            baseline_s: round3(item.b * ratio),
            endpoint,
            evidence: item.evidence.clone(),
            spread: if item.w > 0.0 {
                item.by_endpoint
                    .iter()
                    .map(|(k, v)| (k.clone(), v / item.w))
                    .collect()
            } else {
                HashMap::new()
            },
        });
    }
}

/// Scores every measured item and ranks the suspects; `ratio` is the
/// window's length over the baseline's, `window_seconds` the window's length.
pub(super) fn rank(m: &Measured, ratio: f64, window_seconds: f64) -> (Vec<Suspect>, Totals) {
    let lock = locks(&m.locks, ratio);
    let mut suspects: Vec<Suspect> = Vec::new();

    let lock_total: f64 = lock.items.values().map(|i| i.excess(ratio).max(0.0)).sum();
    for (name, item) in &lock.items {
        push(
            &mut suspects,
            ratio,
            SuspectKind::LockBlocker,
            name,
            item,
            item.excess(ratio),
            item.main_endpoint(),
        );
    }

    // N+1 loops, named by the statement and the function that issues it.
    let mut loop_stmt: HashMap<String, (f64, String)> = HashMap::new();
    let mut loop_outside: HashMap<String, f64> = HashMap::new();
    for ((_, _, file, line), l) in n_plus_one(&m.loops, m.n_plus_one_min) {
        let mut item = l.item;
        let Some(ep) = item.main_endpoint() else {
            continue;
        };
        let per_request = if l.requests_w > 0.0 {
            l.executions_w / l.requests_w
        } else {
            0.0
        };
        let caller = if l.caller.is_empty() {
            "an unknown function".to_owned()
        } else if file.is_empty() {
            call(&l.caller)
        } else {
            format!("{} ({file}:{line})", call(&l.caller))
        };
        let name = format!(
            "N+1: {}, {:.0} per request, from {caller}, in {ep}",
            l.fingerprint, per_request
        );
        let score = item.excess(ratio);
        let stmt_excess = l.stmt.excess(ratio).max(0.0);
        item.note("fingerprint", json!(l.fingerprint));
        item.note("caller", json!(caller));
        item.note("executions_per_request", json!(round3(per_request)));
        item.note("requests", json!(round3(l.requests_w)));
        item.note("statement_seconds", json!(round3(l.stmt.w)));
        item.note("loop_seconds", json!(round3(item.w)));
        item.note("statements_not_stored", json!(round3(l.not_stored_w)));
        item.note(
            "note",
            json!(format!(
                "{:.0} of the loop's statements in {:.0} kept records are not stored one by one (over the agent's cap or in summaries); their counts and times come from the per-shape counts",
                l.not_stored_w, l.records_w
            )),
        );
        if score > 1e-6 {
            let e = loop_stmt
                .entry(l.fingerprint.clone())
                .or_insert((0.0, name.clone()));
            e.0 += stmt_excess.min(score);
            *loop_outside.entry(l.caller.clone()).or_default() += (score - stmt_excess).max(0.0);
        }
        push(
            &mut suspects,
            ratio,
            SuspectKind::NPlusOne,
            &name,
            &item,
            score,
            Some(ep),
        );
    }

    // SQL: PHP's view when PHP saw the statement, the server's otherwise.
    let sql_cov = coverage(&m.endpoints, |t| t.sql_seen);
    let php_scaled: BTreeMap<String, Item> = m
        .fingerprints
        .php
        .iter()
        .map(|(k, i)| (k.clone(), scale_by_coverage(i, &sql_cov)))
        .collect();
    let (php_sql, server_sql) = (&php_scaled, &m.fingerprints.server);
    let mut sql_raw_total = 0.0;
    let mut sql_suspects: BTreeSet<String> = BTreeSet::new();
    let names: BTreeSet<&String> = php_sql.keys().chain(server_sql.keys()).collect();
    for fp in names {
        let php = php_sql.get(fp).filter(|i| i.w > 0.0 || i.b > 0.0);
        let server = server_sql.get(fp);
        let Some(base) = php.or(server) else { continue };
        let mut item = base.clone();
        if let (Some(_), Some(s)) = (php, server) {
            item.evidence.extend(s.evidence.clone());
            item.note("pgss_seconds", json!(round3(s.w)));
            item.note("baseline_pgss_seconds", json!(round3(s.b * ratio)));
        }
        let raw = item.excess(ratio);
        sql_raw_total += raw.max(0.0);
        let lock_part = lock
            .by_waiter_fingerprint
            .get(fp)
            .copied()
            .unwrap_or(0.0)
            .max(0.0);
        if lock_part > 0.0 {
            item.note("lock_wait_seconds", json!(round3(lock_part)));
        }
        let mut score = raw - lock_part;
        if let Some((in_loop, loop_name)) = loop_stmt.get(fp) {
            item.note("n_plus_one", json!(loop_name));
            item.note("in_loop_seconds", json!(round3(*in_loop)));
            score -= in_loop;
        }
        if score > 0.0 || loop_stmt.contains_key(fp) {
            sql_suspects.insert(fp.clone());
        }
        push(
            &mut suspects,
            ratio,
            SuspectKind::SqlFingerprint,
            fp,
            &item,
            score,
            item.main_endpoint(),
        );
    }

    // Functions: the profile rows folded to user-land frames, scaled by
    // the profile coverage of their endpoints.
    let folded = fold_profile(&m.profile);
    let prof_cov = coverage(&m.endpoints, |t| t.profiled);
    let mut functions: BTreeMap<String, (Item, Option<Item>)> = m
        .functions
        .iter()
        .map(|(k, i)| (k.clone(), (i.clone(), None)))
        .collect();
    for (name, item) in folded.items {
        let db = folded.db.get(&name).cloned();
        functions.insert(name, (item, db));
    }
    for (name, (item, db)) in &functions {
        let mut item = scale_by_coverage(item, &prof_cov);
        let mut score = item.excess(ratio);
        if is_database_frame(name) {
            item.note(
                "note",
                json!("time waiting for the database driver; see the SQL suspects"),
            );
            score -= sql_raw_total;
        } else if let Some(db) = db {
            // Driver time folded into this caller is SQL time the SQL
            // suspects hold: shown, not counted.
            item.note("database_driver_seconds", json!(round3(db.w)));
            item.note(
                "note",
                json!("its time in the database driver is SQL time; see the SQL suspects"),
            );
        }
        if let Some(outside) = loop_outside.get(strip_recursion(name)) {
            item.note("in_n_plus_one_loop_seconds", json!(round3(*outside)));
            score -= outside.min(score.max(0.0));
        }
        push(
            &mut suspects,
            ratio,
            SuspectKind::PhpFunction,
            name,
            &item,
            score,
            item.main_endpoint(),
        );
    }

    for (
        event,
        WaitEvent {
            item,
            by_fingerprint,
        },
    ) in &m.waits
    {
        let score = if event.starts_with("Lock:") {
            item.excess(ratio) - lock_total
        } else {
            let explained: f64 = by_fingerprint
                .iter()
                .filter(|(fp, _)| sql_suspects.contains(*fp))
                .map(|(_, s)| s)
                .sum();
            let unexplained = if item.w > 0.0 {
                1.0 - explained / item.w
            } else {
                0.0
            };
            item.excess(ratio) * unexplained
        };
        let mut item = item.clone();
        let mut top: Vec<(&String, &f64)> = by_fingerprint.iter().collect();
        top.sort_by(|a, b| b.1.total_cmp(a.1));
        item.note(
            "top_fingerprints",
            json!(
                top.iter()
                    .take(3)
                    .map(|(fp, s)| json!({"fingerprint": fp, "seconds": round3(**s)}))
                    .collect::<Vec<_>>()
            ),
        );
        push(
            &mut suspects,
            ratio,
            SuspectKind::WaitEvent,
            event,
            &item,
            score,
            None,
        );
    }

    for (host, pressure) in &m.hosts {
        host_memory(&mut suspects, host, pressure, ratio, window_seconds);
    }

    // Endpoints last: deeper suspects explain the latency of their endpoint.
    let mut explained: HashMap<String, f64> = HashMap::new();
    for s in &suspects {
        for (ep, part) in &s.spread {
            *explained.entry(ep.clone()).or_default() += s.score_s * part;
        }
    }
    let eps = &m.endpoints;
    let mut totals = Totals::default();
    let mut new_endpoints: Vec<String> = Vec::new();
    // The latency the window's requests gained over the baseline's means.
    let mut latency_gained = 0.0;
    for (ep, item) in &eps.items {
        let (n_w, n_b) = eps.counts.get(ep).copied().unwrap_or_default();
        let n_b = n_b * ratio;
        let (rs_w, rs_b) = (item.w, item.b * ratio);
        totals.requests += n_w;
        totals.baseline_requests += n_b;
        totals.request_seconds += rs_w;
        totals.baseline_request_seconds += rs_b;
        let mean_w = if n_w > 0.0 { rs_w / n_w } else { 0.0 };
        let mut item = item.clone();
        // With no baseline requests there is no baseline latency to compare
        // with: the whole window time is excess, and it is latency to explain
        // like any other (by the endpoint's functions and SQL), not traffic
        // at the window's own mean, which no deeper suspect could reduce.
        let (traffic, latency) = if n_b > 0.0 {
            let mean_b = rs_b / n_b;
            item.note("baseline_mean_ms", json!(round3(mean_b * 1000.0)));
            ((n_w - n_b) * mean_b, n_w * (mean_w - mean_b))
        } else {
            item.note("baseline_mean_ms", Value::Null);
            if n_w > 0.0 {
                item.note(
                    "baseline",
                    json!("no requests of this endpoint in the baseline: its whole window time is excess"),
                );
                new_endpoints.push(ep.clone());
            }
            (0.0, rs_w - rs_b)
        };
        if n_w <= 0.0 && n_b > 0.0 {
            item.note(
                "window",
                json!("no requests of this endpoint in the window"),
            );
        }
        latency_gained += latency.max(0.0);
        let mut unexplained = (latency - explained.get(ep).copied().unwrap_or(0.0)).max(0.0);
        if let Some((t_w, t_b)) = eps.times.get(ep) {
            unexplained -= time_kinds(
                &mut suspects,
                &mut item,
                ep,
                (t_w, t_b),
                ratio,
                latency,
                unexplained,
            );
        }
        item.note("requests", json!(round3(n_w)));
        item.note("baseline_requests", json!(round3(n_b)));
        item.note("rate_per_s", json!(round3(n_w / window_seconds)));
        item.note("baseline_rate_per_s", json!(round3(n_b / window_seconds)));
        item.note("mean_ms", json!(round3(mean_w * 1000.0)));
        item.note("traffic_excess_s", json!(round3(traffic)));
        item.note("latency_excess_s", json!(round3(latency)));
        push(
            &mut suspects,
            ratio,
            SuspectKind::Endpoint,
            ep,
            &item,
            traffic.max(0.0) + unexplained,
            Some(ep.clone()),
        );
    }
    totals.excess_request_seconds =
        round3(totals.request_seconds - totals.baseline_request_seconds);
    if totals.baseline_requests <= 0.0 {
        totals.notes.push(
            "the baseline has no requests: every request of the window counts as excess".into(),
        );
    } else if !new_endpoints.is_empty() {
        totals.notes.push(format!(
            "no requests in the baseline for {}: their whole window time is excess, explained by their functions and SQL where the evidence allows",
            new_endpoints.join(", ")
        ));
    }
    if totals.requests <= 0.0 {
        totals.notes.push("the window has no requests".into());
    }
    totals.requests = round3(totals.requests);
    totals.baseline_requests = round3(totals.baseline_requests);
    totals.request_seconds = round3(totals.request_seconds);
    totals.baseline_request_seconds = round3(totals.baseline_request_seconds);

    suspects.sort_by(|a, b| {
        b.score_s
            .total_cmp(&a.score_s)
            .then(a.kind.cmp(&b.kind))
            .then(a.name.cmp(&b.name))
    });
    suspects.truncate(MAX_SUSPECTS);
    // Fewer requests that each took longer (clients that wait for each
    // answer, a saturated pool) leave no excess of request time, yet the
    // requests gained latency: the shares are then of that latency.
    let total = if totals.excess_request_seconds > 0.0 {
        totals.excess_request_seconds
    } else if latency_gained > 0.0 && totals.baseline_requests > 0.0 {
        totals.notes.push(format!(
            "the window has less request time than its baseline ({:.1} s, fewer requests), but its requests took {:.1} s longer than at the baseline's latency: shares are of that latency",
            totals.excess_request_seconds, latency_gained
        ));
        latency_gained
    } else {
        0.0
    };
    for (i, s) in suspects.iter_mut().enumerate() {
        s.rank = i + 1;
        s.share = if total > 0.0 {
            round3((s.score_s / total).min(1.0))
        } else {
            0.0
        };
        s.score_s = round3(s.score_s);
    }
    (suspects, totals)
}

/// Top entries of endpoints: their window request-seconds and requests.
pub(super) fn top_endpoints(eps: Endpoints) -> Vec<TopEntry> {
    eps.items
        .into_iter()
        .map(|(name, item)| {
            let count = eps.counts.get(&name).map_or(0.0, |c| c.0);
            TopEntry {
                name,
                seconds: item.w,
                count,
                evidence: item.evidence,
            }
        })
        .collect()
}

/// Top entries of measured items; `count_key` names the evidence that counts each.
pub(super) fn top_items(items: BTreeMap<String, Item>, count_key: &str) -> Vec<TopEntry> {
    items
        .into_iter()
        .map(|(name, item)| {
            let count = item
                .evidence
                .get(count_key)
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            TopEntry {
                name,
                seconds: item.w,
                count,
                evidence: item.evidence,
            }
        })
        .collect()
}

/// The `limit` (at least 1) entries with the most seconds, rounded; those
/// with none are left out.
pub(super) fn top_list(entries: Vec<TopEntry>, limit: usize) -> Vec<TopEntry> {
    let mut entries: Vec<TopEntry> = entries.into_iter().filter(|e| e.seconds > 0.0).collect();
    entries.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    entries.truncate(limit.max(1));
    for e in &mut entries {
        e.seconds = round3(e.seconds);
        e.count = round3(e.count);
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::correlation::{Backend, RequestRef, Wait};

    /// An item measured `w` seconds in the window and `b` in the baseline,
    /// all of the window's on `endpoint`.
    fn item(w: f64, b: f64, endpoint: &str) -> Item {
        let mut i = Item::default();
        i.add(true, w, Some(endpoint.to_owned()));
        i.add(false, b, Some(endpoint.to_owned()));
        i
    }

    /// An endpoint with `n` requests of `mean_s` each in the window and
    /// `n_b` of `mean_b_s` in the baseline.
    fn endpoint(
        m: &mut Measured,
        name: &str,
        (n, mean_s): (f64, f64),
        (n_b, mean_b_s): (f64, f64),
    ) {
        m.endpoints
            .items
            .insert(name.to_owned(), item(n * mean_s, n_b * mean_b_s, name));
        m.endpoints.counts.insert(name.to_owned(), (n, n_b));
    }

    fn backend(pid: i64, correlation_id: Option<&str>, fingerprint: Option<&str>) -> Backend {
        Backend {
            pid,
            correlation_id: correlation_id.map(str::to_owned),
            fingerprint: fingerprint.map(str::to_owned),
            ..Backend::default()
        }
    }

    fn find<'a>(suspects: &'a [Suspect], kind: SuspectKind, name: &str) -> Option<&'a Suspect> {
        suspects.iter().find(|s| s.kind == kind && s.name == name)
    }

    #[test]
    fn the_same_load_as_the_baseline_has_no_suspects() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /a", (10.0, 0.1), (10.0, 0.1));
        m.functions.insert("slow".into(), item(1.0, 1.0, "GET /a"));
        let (suspects, totals) = rank(&m, 1.0, 60.0);
        assert!(suspects.is_empty(), "{suspects:?}");
        assert_eq!(totals.excess_request_seconds, 0.0);
        assert_eq!(totals.requests, 10.0);
    }

    /// Fewer requests, each slower (closed-loop clients, a saturated pool):
    /// no excess of request time, but the latency gained is what the
    /// shares are of, and a note says so.
    #[test]
    fn fewer_but_slower_requests_share_out_the_latency_they_gained() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /a", (4.0, 0.5), (10.0, 0.25));
        m.functions.insert("slow".into(), item(1.0, 0.0, "GET /a"));
        let (suspects, totals) = rank(&m, 1.0, 60.0);
        assert_eq!(totals.excess_request_seconds, -0.5);
        let first = &suspects[0];
        assert_eq!(
            (first.kind, first.name.as_str()),
            (SuspectKind::PhpFunction, "slow")
        );
        assert_eq!((first.score_s, first.share), (1.0, 1.0));
        assert!(
            totals
                .notes
                .iter()
                .any(|n| n.contains("shares are of that latency")),
            "{:?}",
            totals.notes
        );
    }

    /// A slower function explains its endpoint's latency: the function ranks
    /// first with the whole excess, and the endpoint is not counted again.
    #[test]
    fn a_slower_function_takes_its_endpoints_latency() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /a", (10.0, 0.5), (10.0, 0.1));
        m.functions
            .insert("App\\Pricing::apply".into(), item(5.0, 1.0, "GET /a"));
        let (suspects, totals) = rank(&m, 1.0, 60.0);
        assert_eq!(totals.excess_request_seconds, 4.0);
        assert_eq!(suspects.len(), 1, "{suspects:?}");
        let s = &suspects[0];
        assert_eq!((s.rank, s.kind), (1, SuspectKind::PhpFunction));
        assert_eq!((s.score_s, s.share), (4.0, 1.0));
        assert_eq!(s.endpoint.as_deref(), Some("GET /a"));
    }

    /// More requests at the same latency: the endpoint itself is the cause.
    #[test]
    fn extra_traffic_ranks_its_endpoint() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /burst", (30.0, 0.1), (10.0, 0.1));
        endpoint(&mut m, "GET /calm", (10.0, 0.1), (10.0, 0.1));
        let (suspects, _) = rank(&m, 1.0, 60.0);
        assert_eq!(suspects.len(), 1, "{suspects:?}");
        assert_eq!(suspects[0].name, "GET /burst");
        assert_eq!(suspects[0].score_s, 2.0);
        assert_eq!(suspects[0].evidence["traffic_excess_s"], json!(2.0));
    }

    /// The baseline is scaled to the window's length before comparing.
    #[test]
    fn a_longer_baseline_is_scaled_to_the_window() {
        let mut m = Measured::default();
        // A 10-minute window against a 20-minute baseline: ratio 0.5.
        endpoint(&mut m, "GET /a", (10.0, 0.1), (20.0, 0.1));
        let (suspects, totals) = rank(&m, 0.5, 600.0);
        assert!(suspects.is_empty(), "{suspects:?}");
        assert_eq!(totals.baseline_requests, 10.0);
    }

    /// A driver frame's time is SQL time: the SQL suspects' excess is taken
    /// off it, so the statement ranks and the driver frame does not.
    #[test]
    fn a_database_driver_frame_gives_its_time_to_the_sql() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /a", (10.0, 0.4), (10.0, 0.1));
        m.functions
            .insert("PDOStatement::execute".into(), item(3.5, 0.5, "GET /a"));
        m.fingerprints.php.insert(
            "SELECT * FROM reviews WHERE p = ?".into(),
            item(3.2, 0.2, "GET /a"),
        );
        let (suspects, _) = rank(&m, 1.0, 60.0);
        assert_eq!(suspects[0].kind, SuspectKind::SqlFingerprint);
        assert_eq!(suspects[0].score_s, 3.0);
        assert!(
            find(&suspects, SuspectKind::PhpFunction, "PDOStatement::execute").is_none(),
            "{suspects:?}"
        );
    }

    /// pg_stat_statements stands in for a statement PHP did not see, and
    /// sits beside PHP's figures as evidence when it did.
    #[test]
    fn the_servers_view_fills_in_for_statements_php_did_not_see() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /a", (10.0, 0.1), (10.0, 0.1));
        m.fingerprints
            .server
            .insert("VACUUM ?".into(), item(2.0, 0.0, "-"));
        m.fingerprints
            .php
            .insert("SELECT ?".into(), item(1.5, 0.5, "GET /a"));
        m.fingerprints
            .server
            .insert("SELECT ?".into(), item(1.6, 0.6, "-"));
        let (suspects, _) = rank(&m, 1.0, 60.0);
        let vacuum = find(&suspects, SuspectKind::SqlFingerprint, "VACUUM ?").unwrap();
        assert_eq!(vacuum.score_s, 2.0);
        let select = find(&suspects, SuspectKind::SqlFingerprint, "SELECT ?").unwrap();
        assert_eq!(select.score_s, 1.0, "PHP's figures count, not the server's");
        assert_eq!(select.evidence["pgss_seconds"], json!(1.6));
    }

    /// Waiting behind a lock belongs to the blocker: the blocker's request
    /// ranks first, the waiter's statement keeps only its own time, and the
    /// Lock wait event adds nothing the blocker already explains.
    #[test]
    fn lock_waits_belong_to_the_blocking_request() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /checkout", (10.0, 0.6), (10.0, 0.1));
        let waiter_fp = "UPDATE stock SET n = n - ? WHERE id = ?";
        m.fingerprints
            .php
            .insert(waiter_fp.into(), item(5.5, 0.5, "GET /checkout"));
        let mut waits = BTreeMap::new();
        waits.insert(
            "Lock:transactionid".to_owned(),
            WaitEvent {
                item: item(4.0, 0.0, "-"),
                by_fingerprint: HashMap::from([(waiter_fp.to_owned(), 4.0)]),
            },
        );
        m.waits = waits;
        m.locks = LockWaits {
            waits: (0..4)
                .map(|_| Wait {
                    in_window: true,
                    seconds: 1.0,
                    waiter: backend(2, Some("w-1"), Some(waiter_fp)),
                    root: backend(1, Some("b-1"), Some("SELECT pg_sleep(?)")),
                })
                .collect(),
            requests: HashMap::from([
                (
                    "b-1".to_owned(),
                    RequestRef {
                        correlation_id: "b-1".into(),
                        endpoint: "POST /admin/reindex".into(),
                        url: "/admin/reindex".into(),
                        host: "web-1".into(),
                        duration_ms: 4000.0,
                    },
                ),
                (
                    "w-1".to_owned(),
                    RequestRef {
                        correlation_id: "w-1".into(),
                        endpoint: "GET /checkout".into(),
                        url: "/checkout".into(),
                        host: "web-1".into(),
                        duration_ms: 700.0,
                    },
                ),
            ]),
        };
        let (suspects, totals) = rank(&m, 1.0, 60.0);
        assert_eq!(totals.excess_request_seconds, 5.0);
        let first = &suspects[0];
        assert_eq!(
            (first.kind, first.name.as_str()),
            (SuspectKind::LockBlocker, "POST /admin/reindex")
        );
        assert_eq!((first.score_s, first.share), (4.0, 0.8));
        assert_eq!(first.endpoint.as_deref(), Some("GET /checkout"));
        assert_eq!(first.evidence["blocker_url"], json!("/admin/reindex"));
        assert_eq!(first.evidence["waiting_samples"], json!(4));
        let sql = find(&suspects, SuspectKind::SqlFingerprint, waiter_fp).unwrap();
        assert_eq!(sql.score_s, 1.0);
        assert_eq!(sql.evidence["lock_wait_seconds"], json!(4.0));
        assert!(find(&suspects, SuspectKind::WaitEvent, "Lock:transactionid").is_none());
        // The blocker and the statement explain the whole latency change.
        assert!(find(&suspects, SuspectKind::Endpoint, "GET /checkout").is_none());
    }

    /// A wait event keeps the part of its excess that no SQL suspect's
    /// statements spent.
    #[test]
    fn a_wait_event_keeps_what_no_sql_suspect_explains() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /a", (10.0, 0.1), (10.0, 0.1));
        m.fingerprints
            .php
            .insert("SELECT ?".into(), item(2.0, 0.0, "GET /a"));
        m.waits.insert(
            "IO:DataFileRead".into(),
            WaitEvent {
                item: item(4.0, 0.0, "-"),
                by_fingerprint: HashMap::from([
                    ("SELECT ?".to_owned(), 1.0),
                    ("UPDATE ?".to_owned(), 3.0),
                ]),
            },
        );
        let (suspects, _) = rank(&m, 1.0, 60.0);
        let io = find(&suspects, SuspectKind::WaitEvent, "IO:DataFileRead").unwrap();
        assert_eq!(io.score_s, 3.0);
        assert_eq!(
            io.evidence["top_fingerprints"][0]["fingerprint"],
            json!("UPDATE ?")
        );
    }

    /// Equal scores rank by kind, then by name; shares never pass 1; at
    /// most 30 suspects are kept.
    #[test]
    fn ranking_is_stable_and_bounded() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /a", (10.0, 0.2), (10.0, 0.1));
        for i in 0..40 {
            m.functions
                .insert(format!("f{i:02}"), item(2.0, 0.0, "GET /a"));
        }
        m.fingerprints
            .php
            .insert("SELECT ?".into(), item(2.0, 0.0, "GET /a"));
        let (suspects, totals) = rank(&m, 1.0, 60.0);
        assert_eq!(totals.excess_request_seconds, 1.0);
        assert_eq!(suspects.len(), MAX_SUSPECTS);
        assert_eq!(suspects[0].kind, SuspectKind::SqlFingerprint);
        assert_eq!(suspects[1].name, "f00");
        assert_eq!(suspects[2].name, "f01");
        assert!(suspects.iter().all(|s| s.share == 1.0));
        assert!(suspects.iter().enumerate().all(|(i, s)| s.rank == i + 1));
    }

    /// An endpoint with no baseline requests: its whole window time is
    /// excess, but as latency its function explains, not as traffic at its
    /// own mean; the function ranks first overall and the report says the
    /// baseline had no data for it.
    #[test]
    fn a_new_endpoints_excess_is_explained_by_its_function() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /calm", (100.0, 0.1), (100.0, 0.1));
        endpoint(&mut m, "GET /export", (1000.0, 0.05), (0.0, 0.0));
        m.functions
            .insert("Export::render".into(), item(35.0, 0.0, "GET /export"));
        let (suspects, totals) = rank(&m, 1.0, 60.0);
        assert_eq!(totals.excess_request_seconds, 50.0);
        let first = &suspects[0];
        assert_eq!(
            (first.rank, first.kind, first.name.as_str()),
            (1, SuspectKind::PhpFunction, "Export::render")
        );
        assert_eq!(first.score_s, 35.0);
        let ep = find(&suspects, SuspectKind::Endpoint, "GET /export").unwrap();
        assert_eq!(ep.score_s, 15.0, "only what the function leaves");
        assert!(
            ep.evidence["baseline"]
                .as_str()
                .unwrap()
                .contains("no requests")
        );
        assert_eq!(ep.evidence["baseline_mean_ms"], Value::Null);
        assert!(
            totals.notes[0].contains("GET /export"),
            "{:?}",
            totals.notes
        );
    }

    /// An empty baseline or window is said plainly.
    #[test]
    fn an_empty_baseline_or_window_is_said() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /a", (10.0, 0.1), (0.0, 0.0));
        let (_, totals) = rank(&m, 1.0, 60.0);
        assert!(
            totals.notes[0].contains("baseline has no requests"),
            "{:?}",
            totals.notes
        );
        let mut m = Measured::default();
        endpoint(&mut m, "GET /a", (0.0, 0.0), (10.0, 0.1));
        let (suspects, totals) = rank(&m, 1.0, 60.0);
        assert!(suspects.is_empty());
        assert!(
            totals
                .notes
                .iter()
                .any(|n| n.contains("window has no requests"))
        );
    }

    fn times(m: &mut Measured, ep: &str, w: EndpointTime, b: EndpointTime) {
        m.endpoints.times.insert(ep.to_owned(), (w, b));
    }

    fn stack(in_window: bool, ep: &str, frames: &[&str], seconds: f64) -> ProfileRow {
        ProfileRow {
            in_window,
            endpoint: Some(ep.to_owned()),
            frames: frames.iter().map(|f| (*f).to_owned()).collect(),
            seconds,
            requests: 1.0,
        }
    }

    /// A function seen in a tenth of the requests (the others kept without
    /// a profile) stands for ten times its measured time: 35 ms in each of
    /// 1,000 requests outranks the endpoint that contains it, and the
    /// coverage is shown.
    #[test]
    fn a_functions_time_is_scaled_by_the_coverage_of_its_profiles() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /products", (1000.0, 0.085), (1000.0, 0.05));
        times(
            &mut m,
            "GET /products",
            EndpointTime {
                n: 1000.0,
                profiled: 100.0,
                ..EndpointTime::default()
            },
            EndpointTime {
                n: 1000.0,
                profiled: 100.0,
                ..EndpointTime::default()
            },
        );
        m.profile = vec![
            stack(true, "GET /products", &["main()", "Hog::burn"], 3.5),
            stack(true, "GET /products", &["main()", "Page::render"], 5.0),
            stack(false, "GET /products", &["main()", "Page::render"], 5.0),
        ];
        let (suspects, totals) = rank(&m, 1.0, 60.0);
        assert_eq!(totals.excess_request_seconds, 35.0);
        let first = &suspects[0];
        assert_eq!(
            (first.rank, first.kind, first.name.as_str()),
            (1, SuspectKind::PhpFunction, "Hog::burn"),
            "{suspects:?}"
        );
        assert_eq!(first.score_s, 35.0);
        assert_eq!(first.evidence["coverage"], json!(0.1));
        assert_eq!(first.evidence["measured_s"], json!(3.5));
        assert!(find(&suspects, SuspectKind::Endpoint, "GET /products").is_none());
        assert!(find(&suspects, SuspectKind::PhpFunction, "Page::render").is_none());
    }

    /// The compact profiles of sampled records are already weighted by
    /// their sampling weight, so with every kept record profiled the
    /// coverage is whole and nothing is scaled twice.
    #[test]
    fn full_coverage_scales_nothing() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /a", (100.0, 0.2), (100.0, 0.1));
        let whole = EndpointTime {
            n: 100.0,
            profiled: 100.0,
            ..EndpointTime::default()
        };
        times(&mut m, "GET /a", whole, whole);
        m.profile = vec![stack(true, "GET /a", &["main()", "Slow::f"], 10.0)];
        let (suspects, _) = rank(&m, 1.0, 60.0);
        assert_eq!(
            (suspects[0].name.as_str(), suspects[0].score_s),
            ("Slow::f", 10.0)
        );
        assert!(!suspects[0].evidence.contains_key("coverage"));
    }

    fn loop_row(count: f64, stored: f64, span: Option<f64>) -> LoopRow {
        LoopRow {
            in_window: true,
            endpoint: "GET /products".into(),
            weight: 1.0,
            fingerprint: "SELECT price FROM variants WHERE product_id = $1".into(),
            sql: "SELECT price FROM variants WHERE product_id = ?".into(),
            caller: "ProductList::loadVariants".into(),
            caller_file: "src/ProductList.php".into(),
            caller_line: 41,
            count,
            total_ms: count * 0.1,
            stored,
            stored_span_ms: span,
            request_ms: 300.0,
            request_sql_ms: count * 0.1 + 5.0,
            request_sql_count: count + 10.0,
            not_stored: count - stored,
        }
    }

    /// The loop time: from the span of the stored executions when there
    /// are some, else the time outside SQL shared by statement count.
    #[test]
    fn the_loop_time_counts_the_round_trips_between_executions() {
        // 200 stored of 400 over 140 ms: 0.7 ms each, 280 ms for all 400.
        assert!((loop_ms(&loop_row(400.0, 200.0, Some(140.0))) - 280.0).abs() < 1e-9);
        // None stored: 40 ms of statements plus 400/410 of the 255 ms outside SQL.
        let r = loop_row(400.0, 0.0, None);
        let expected = 40.0 + 255.0 * 400.0 / 410.0;
        assert!((loop_ms(&r) - expected).abs() < 1e-9);
        // Never more than the request.
        assert_eq!(loop_ms(&loop_row(400.0, 200.0, Some(1000.0))), 300.0);
    }

    /// An N+1: 400 cheap statements per request from one function. The
    /// loop (statements, round trips, driver time) ranks first overall,
    /// named by the statement and the function, with the statements beyond
    /// the agent's cap counted; the fingerprint and the driver frame the
    /// agent wrapped do not rank it down or appear as the agent.
    #[test]
    fn an_n_plus_one_loop_is_named_by_its_statement_and_function() {
        let mut m = Measured {
            n_plus_one_min: 20.0,
            ..Measured::default()
        };
        endpoint(&mut m, "GET /products", (100.0, 0.3), (100.0, 0.05));
        m.loops = (0..100)
            .map(|_| loop_row(400.0, 200.0, Some(140.0)))
            .collect();
        m.fingerprints.php.insert(
            "SELECT price FROM variants WHERE product_id = $1".into(),
            item(4.0, 0.0, "GET /products"),
        );
        m.profile = vec![
            stack(
                true,
                "GET /products",
                &[
                    "main()",
                    "ProductList::loadVariants",
                    "BitvilleApm\\PdoStatement::execute",
                    "PDOStatement::execute",
                ],
                4.0,
            ),
            stack(
                true,
                "GET /products",
                &["main()", "ProductList::loadVariants"],
                20.0,
            ),
        ];
        let (suspects, totals) = rank(&m, 1.0, 60.0);
        assert_eq!(totals.excess_request_seconds, 25.0);
        let first = &suspects[0];
        assert_eq!(first.rank, 1);
        assert_eq!(first.kind, SuspectKind::NPlusOne, "{suspects:?}");
        assert_eq!(
            first.name,
            "N+1: SELECT price FROM variants WHERE product_id = $1, 400 per request, \
             from ProductList::loadVariants() (src/ProductList.php:41), in GET /products"
        );
        assert_eq!(first.score_s, 28.0);
        assert_eq!(first.share, 1.0);
        assert_eq!(first.evidence["statements_not_stored"], json!(20000.0));
        assert_eq!(first.evidence["executions_per_request"], json!(400.0));
        assert!(
            suspects.iter().all(|s| !s.name.contains("BitvilleApm")),
            "{suspects:?}"
        );
        assert!(find(&suspects, SuspectKind::Endpoint, "GET /products").is_none());
        // The statement's own time is the loop's, not counted again.
        assert!(
            find(
                &suspects,
                SuspectKind::SqlFingerprint,
                "SELECT price FROM variants WHERE product_id = $1"
            )
            .is_none()
        );
    }

    /// Under the threshold a repeated statement is no N+1.
    #[test]
    fn a_few_executions_are_no_n_plus_one() {
        let mut m = Measured {
            n_plus_one_min: 20.0,
            ..Measured::default()
        };
        endpoint(&mut m, "GET /products", (100.0, 0.3), (100.0, 0.05));
        m.loops = vec![loop_row(10.0, 10.0, Some(5.0))];
        let (suspects, _) = rank(&m, 1.0, 60.0);
        assert!(suspects.iter().all(|s| s.kind != SuspectKind::NPlusOne));
    }

    /// `[unknown]` and `[truncated]` name no code: never suspects, and the
    /// time under a truncated stack goes to its user frame.
    #[test]
    fn placeholder_frames_are_never_suspects() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /ping", (100.0, 0.1), (100.0, 0.05));
        m.profile = vec![
            stack(true, "GET /ping", &["[unknown]"], 3.0),
            stack(true, "GET /ping", &["[truncated]", "Ping::answer"], 1.0),
        ];
        let (suspects, _) = rank(&m, 1.0, 60.0);
        assert!(
            suspects.iter().all(|s| !s.name.starts_with('[')),
            "{suspects:?}"
        );
        assert!(
            suspects
                .iter()
                .any(|s| s.kind == SuspectKind::PhpFunction && s.name == "Ping::answer"),
            "{suspects:?}"
        );
    }

    /// Internal functions give their time to the nearest user-land caller
    /// and are listed in its evidence; agent frames are never suspects;
    /// xhprof's `f@1` recursion markers fold into `f`.
    #[test]
    fn internal_and_agent_frames_fold_into_the_user_caller() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /hog", (100.0, 0.1), (100.0, 0.05));
        m.profile = vec![
            stack(true, "GET /hog", &["main()", "Hog::burn", "sin"], 3.0),
            stack(true, "GET /hog", &["main()", "Hog::burn", "md5"], 1.0),
            stack(true, "GET /hog", &["main()", "Hog::burn"], 0.5),
            stack(
                true,
                "GET /hog",
                &["main()", "BitvilleApm\\Profiler::stop"],
                0.2,
            ),
            // xhprof: main()==>Hog::burn@1 and Hog::burn==>preg_match@1.
            stack(true, "GET /hog", &["main()", "Hog::burn@1"], 1.0),
            stack(true, "GET /hog", &["main()"], -1.0),
            stack(true, "GET /hog", &["Hog::burn@1", "preg_match@1"], 0.4),
            stack(true, "GET /hog", &["Hog::burn"], -0.4),
        ];
        let (suspects, _) = rank(&m, 1.0, 60.0);
        let first = &suspects[0];
        assert_eq!(
            (first.rank, first.kind, first.name.as_str()),
            (1, SuspectKind::PhpFunction, "Hog::burn"),
            "{suspects:?}"
        );
        assert_eq!(first.score_s, 5.5);
        let builtins: Vec<&str> = first.evidence["internal_functions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["function"].as_str().unwrap())
            .collect();
        assert_eq!(builtins, ["sin", "md5", "preg_match"]);
        for s in &suspects {
            assert!(!s.name.contains("BitvilleApm"), "{s:?}");
            assert!(
                !["sin", "md5", "preg_match"].contains(&s.name.as_str()),
                "{s:?}"
            );
            assert!(!s.name.contains('@'), "{s:?}");
        }
    }

    #[test]
    fn internal_functions_are_recognised() {
        use super::super::is_internal_function as internal;
        for f in [
            "sin",
            "md5",
            "preg_match",
            "PDOStatement::execute",
            "curl_exec",
            "usleep",
            "array_map",
            "sin@2",
        ] {
            assert!(internal(f), "{f}");
        }
        for f in [
            "Hog::burn",
            "main()",
            "render_page",
            "App\\md5",
            "BitvilleApm\\Pdo::query",
            "{closure}",
        ] {
            assert!(!internal(f), "{f}");
        }
    }

    /// Without a profile, the kind of the excess time is the suspect: a
    /// CPU-bound endpoint is "PHP CPU in GET /export", ranked above the
    /// bare endpoint, with its share of user time said plainly.
    #[test]
    fn without_a_profile_the_kind_of_time_is_named() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /export", (100.0, 0.5), (100.0, 0.1));
        times(
            &mut m,
            "GET /export",
            EndpointTime {
                n: 100.0,
                cpu_known: 100.0,
                cpu_known_s: 50.0,
                cpu_s: 40.0,
                cpu_user_s: 38.0,
                sql_seen: 100.0,
                sql_s: 1.0,
                ..EndpointTime::default()
            },
            EndpointTime {
                n: 100.0,
                cpu_known: 100.0,
                cpu_known_s: 10.0,
                cpu_s: 2.0,
                cpu_user_s: 1.9,
                sql_seen: 100.0,
                sql_s: 1.0,
                ..EndpointTime::default()
            },
        );
        let (suspects, totals) = rank(&m, 1.0, 60.0);
        assert_eq!(totals.excess_request_seconds, 40.0);
        let first = &suspects[0];
        assert_eq!(
            (first.rank, first.kind, first.name.as_str()),
            (1, SuspectKind::PhpCpu, "PHP CPU in GET /export"),
            "{suspects:?}"
        );
        assert_eq!(first.score_s, 38.0);
        assert_eq!(
            first.evidence["summary"],
            json!(
                "GET /export: 95 % of its excess time is PHP CPU (user time), no profiler installed"
            )
        );
        let off = find(
            &suspects,
            SuspectKind::OffCpu,
            "off-CPU outside SQL in GET /export",
        )
        .unwrap();
        assert_eq!(off.score_s, 2.0);
        assert!(find(&suspects, SuspectKind::Endpoint, "GET /export").is_none());
    }

    /// Off-CPU time outside SQL (sleeps, HTTP calls) is named as such.
    #[test]
    fn without_a_profile_off_cpu_time_is_named() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /remote", (100.0, 0.4), (100.0, 0.1));
        let t = |cpu_known_s: f64| EndpointTime {
            n: 100.0,
            cpu_known: 100.0,
            cpu_known_s,
            cpu_s: 2.0,
            cpu_user_s: 2.0,
            ..EndpointTime::default()
        };
        times(&mut m, "GET /remote", t(40.0), t(10.0));
        let (suspects, _) = rank(&m, 1.0, 60.0);
        assert_eq!(
            (suspects[0].kind, suspects[0].name.as_str()),
            (SuspectKind::OffCpu, "off-CPU outside SQL in GET /remote"),
            "{suspects:?}"
        );
        assert_eq!(suspects[0].score_s, 30.0);
    }

    /// A CPU-bound endpoint on saturated CPUs spends most of its wall time
    /// queued for a CPU, off the CPU: its requests were preempted
    /// (involuntary switches), so that time is PHP CPU demand, not waiting.
    #[test]
    fn without_a_profile_time_queued_for_a_busy_cpu_is_php_cpu() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /report", (100.0, 0.45), (100.0, 0.05));
        let t = |cpu_known_s: f64, cpu_s: f64, vol: f64, invol: f64| EndpointTime {
            n: 100.0,
            cpu_known: 100.0,
            cpu_known_s,
            cpu_s,
            cpu_user_s: cpu_s,
            switches_voluntary: vol,
            switches_involuntary: invol,
            ..EndpointTime::default()
        };
        times(
            &mut m,
            "GET /report",
            t(45.0, 10.0, 100.0, 300.0),
            t(5.0, 4.0, 100.0, 0.0),
        );
        let (suspects, totals) = rank(&m, 1.0, 60.0);
        assert_eq!(totals.excess_request_seconds, 40.0);
        let first = &suspects[0];
        assert_eq!(
            (first.rank, first.kind, first.name.as_str()),
            (1, SuspectKind::PhpCpu, "PHP CPU in GET /report"),
            "{suspects:?}"
        );
        // 6 s more on the CPU; of the 34 s off it, three quarters queued.
        assert_eq!(first.score_s, 31.5);
        assert_eq!(first.evidence["queued_for_cpu_s"], json!(25.5));
        let off = find(
            &suspects,
            SuspectKind::OffCpu,
            "off-CPU outside SQL in GET /report",
        )
        .unwrap();
        assert_eq!(off.score_s, 8.5);
    }

    /// A burst of a cheap endpoint saturates the CPUs: its requests queue
    /// for them (involuntary switches) but each needs no more CPU than
    /// before, so the queued time is the load's, which its traffic is: the
    /// endpoint ranks first, not "PHP CPU".
    #[test]
    fn queueing_without_more_cpu_per_request_stays_with_the_traffic() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /ping", (10_000.0, 0.001), (100.0, 0.0003));
        let t = |n: f64, cpu_s: f64, known_s: f64, invol: f64| EndpointTime {
            n,
            cpu_known: n,
            cpu_known_s: known_s,
            cpu_s,
            cpu_user_s: cpu_s,
            switches_voluntary: n,
            switches_involuntary: invol,
            ..EndpointTime::default()
        };
        times(
            &mut m,
            "GET /ping",
            t(10_000.0, 1.0, 10.0, 30_000.0),
            t(100.0, 0.01, 0.03, 0.0),
        );
        let (suspects, _) = rank(&m, 1.0, 60.0);
        assert_eq!(
            (suspects[0].kind, suspects[0].name.as_str()),
            (SuspectKind::Endpoint, "GET /ping"),
            "{suspects:?}"
        );
        assert!(find(&suspects, SuspectKind::PhpCpu, "PHP CPU in GET /ping").is_none());
    }

    /// A host swapping far above its baseline takes the latency its
    /// endpoints gained; the same slowdown without swapping is not memory.
    #[test]
    fn a_swapping_host_takes_the_latency_its_endpoints_gained() {
        let mut m = Measured::default();
        endpoint(&mut m, "GET /a", (1000.0, 0.06), (1000.0, 0.012));
        endpoint(&mut m, "GET /b", (500.0, 0.03), (500.0, 0.01));
        let mut host = HostPressure {
            swap_io_bytes: (60.0 * 40.0 * 1024.0 * 1024.0, 0.0),
            ..HostPressure::default()
        };
        host.endpoints
            .insert("GET /a".into(), ((1000.0, 60.0), (1000.0, 12.0)));
        host.endpoints
            .insert("GET /b".into(), ((500.0, 15.0), (500.0, 5.0)));
        m.hosts.insert("web-1".into(), host.clone());
        let (suspects, _) = rank(&m, 1.0, 60.0);
        let first = &suspects[0];
        assert_eq!(
            (first.kind, first.name.as_str()),
            (
                SuspectKind::HostMemory,
                "memory pressure on web-1 (swapping)"
            ),
            "{suspects:?}"
        );
        assert_eq!(first.score_s, 58.0);
        assert_eq!(first.evidence["swap_mib_per_s"], json!(40.0));
        assert!(find(&suspects, SuspectKind::Endpoint, "GET /a").is_none());

        host.swap_io_bytes = (0.0, 0.0);
        m.hosts.insert("web-1".into(), host);
        let (suspects, _) = rank(&m, 1.0, 60.0);
        assert!(suspects.iter().all(|s| s.kind != SuspectKind::HostMemory));
    }

    #[test]
    fn top_lists_drop_the_idle_and_keep_the_biggest() {
        let mut items = BTreeMap::new();
        items.insert("a".to_owned(), item(1.0, 0.0, "-"));
        items.insert("b".to_owned(), item(3.0, 0.0, "-"));
        items.insert("idle".to_owned(), item(0.0, 5.0, "-"));
        items.get_mut("b").unwrap().note("php_calls", json!(7.0));
        let top = top_list(top_items(items, "php_calls"), 5);
        let names: Vec<(&str, f64, f64)> = top
            .iter()
            .map(|e| (e.name.as_str(), e.seconds, e.count))
            .collect();
        assert_eq!(names, [("b", 3.0, 7.0), ("a", 1.0, 0.0)]);
        assert_eq!(top_list(top, 0).len(), 1, "a limit of 0 still shows one");
    }
}
