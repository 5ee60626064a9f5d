//! Property test: random sequences of actions (appends, partial lines, new
//! hour files, truncation, deletion, engine crashes, a processor that is
//! down, slow, overloaded or failing) against a model of what was written.
//! Every complete line must arrive at least once and, per file, in order;
//! lines of truncated or deleted files may be missing, never corrupted.

mod common;

use bitville_daemon::{Shutdown, Trigger};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Mode, Receiver, fast_config, record};
use proptest::prelude::*;
use shipper::engine::{self, EngineConfig};

const SLOTS: usize = 3;

#[derive(Debug, Clone)]
enum Action {
    Append { slot: usize, count: usize },
    Partial { slot: usize },
    NewHourFile { slot: usize },
    Truncate { slot: usize },
    Delete { slot: usize },
    Junk { slot: usize },
    Crash,
    Receiver(Mode),
    Pause,
}

fn action() -> impl Strategy<Value = Action> {
    let slot = 0..SLOTS;
    prop_oneof![
        8 => (slot.clone(), 1..20usize).prop_map(|(slot, count)| Action::Append { slot, count }),
        2 => slot.clone().prop_map(|slot| Action::Partial { slot }),
        1 => slot.clone().prop_map(|slot| Action::NewHourFile { slot }),
        1 => slot.clone().prop_map(|slot| Action::Truncate { slot }),
        1 => slot.clone().prop_map(|slot| Action::Delete { slot }),
        1 => slot.prop_map(|slot| Action::Junk { slot }),
        2 => Just(Action::Crash),
        3 => prop_oneof![
            Just(Mode::Ok),
            Just(Mode::Down),
            Just(Mode::Slow(Duration::from_millis(300))),
            Just(Mode::TooMany),
            Just(Mode::Error),
        ].prop_map(Action::Receiver),
        1 => Just(Action::Pause),
    ]
}

/// One writer's current file.
struct Slot {
    path: PathBuf,
    epoch: u64,
    hour: u64,
    pid: u64,
    next_n: u64,
    /// The second half of a line whose first half is in the file.
    partial_rest: Option<(u64, String)>,
}

/// What was written: per (slot, epoch), the line numbers in file order and
/// whether they must arrive.
#[derive(Default)]
struct Model {
    lines: BTreeMap<(u64, u64), Vec<u64>>,
    optional_epochs: HashSet<(u64, u64)>,
    junk: Vec<((u64, u64), String)>,
}

type EngineTask = tokio::task::JoinHandle<Result<(), engine::EngineError>>;

struct Harness {
    spool: PathBuf,
    state: PathBuf,
    slots: Vec<Slot>,
    model: Model,
    url: String,
    /// The running engine and the trigger that stops it.
    engine: Option<(EngineTask, Trigger)>,
}

/// The shared fast configuration, with small batches so that a case makes
/// many of them, and long idle timeouts so that only the actions decide.
fn config(spool: &Path, state: &Path, url: &str) -> EngineConfig {
    let mut c = fast_config(spool, state, url);
    c.batch_max_bytes = 4096;
    c.fragment_idle = Duration::from_secs(60);
    c.cleanup_grace = Duration::from_secs(60);
    c.retry.breaker_failures = 4;
    c.retry.request_timeout = Duration::from_millis(200);
    c
}

impl Harness {
    fn start_engine(&mut self) {
        let (stop, stopped) = Shutdown::channel();
        let cfg = config(&self.spool, &self.state, &self.url);
        let handle = tokio::spawn(engine::run(cfg, stopped));
        self.engine = Some((handle, stop));
    }

    async fn crash(&mut self) {
        if let Some((handle, _stop)) = self.engine.take() {
            // Aborted before the trigger drops: a crash, not a shutdown.
            handle.abort();
            let _ = handle.await;
        }
        self.start_engine();
    }

    fn slot_path(&self, slot: usize) -> PathBuf {
        let s = &self.slots[slot];
        self.spool.join(format!("php.{}.{}.ndjson", s.hour, s.pid))
    }

    fn append_raw(&self, slot: usize, bytes: &[u8]) {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.slots[slot].path)
            .unwrap();
        f.write_all(bytes).unwrap();
    }

    /// Writes the rest of a pending partial line, which makes it a line.
    fn complete_partial(&mut self, slot: usize) {
        if let Some((n, rest)) = self.slots[slot].partial_rest.take() {
            self.append_raw(slot, rest.as_bytes());
            let s = &self.slots[slot];
            self.model
                .lines
                .entry((slot as u64, s.epoch))
                .or_default()
                .push(n);
        }
    }

    fn new_epoch(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        s.epoch += 1;
    }

    fn apply(&mut self, action: &Action, receiver: &Receiver) -> Option<()> {
        match *action {
            Action::Append { slot, count } => {
                self.complete_partial(slot);
                let s = &mut self.slots[slot];
                let mut text = String::new();
                let mut ns = Vec::new();
                for _ in 0..count {
                    text.push_str(&record(slot as u64, s.epoch, s.next_n, 60));
                    text.push('\n');
                    ns.push(s.next_n);
                    s.next_n += 1;
                }
                let key = (slot as u64, s.epoch);
                self.append_raw(slot, text.as_bytes());
                self.model.lines.entry(key).or_default().extend(ns);
            }
            Action::Partial { slot } => {
                self.complete_partial(slot);
                let s = &mut self.slots[slot];
                let line = format!("{}\n", record(slot as u64, s.epoch, s.next_n, 60));
                let (head, rest) = line.split_at(line.len() / 2);
                s.partial_rest = Some((s.next_n, rest.to_owned()));
                s.next_n += 1;
                let head = head.to_owned();
                self.append_raw(slot, head.as_bytes());
            }
            Action::NewHourFile { slot } => {
                self.complete_partial(slot);
                self.slots[slot].hour += 1;
                self.new_epoch(slot);
                self.slots[slot].path = self.slot_path(slot);
            }
            Action::Truncate { slot } => {
                // A partial line is cut off with the rest: it never becomes a line.
                self.slots[slot].partial_rest = None;
                let key = (slot as u64, self.slots[slot].epoch);
                self.model.optional_epochs.insert(key);
                if self.slots[slot].path.exists() {
                    OpenOptions::new()
                        .write(true)
                        .open(&self.slots[slot].path)
                        .unwrap()
                        .set_len(0)
                        .unwrap();
                }
                self.new_epoch(slot);
            }
            Action::Delete { slot } => {
                self.slots[slot].partial_rest = None;
                let key = (slot as u64, self.slots[slot].epoch);
                self.model.optional_epochs.insert(key);
                let _ = std::fs::remove_file(&self.slots[slot].path);
                self.new_epoch(slot);
                self.slots[slot].pid += 100;
                self.slots[slot].path = self.slot_path(slot);
            }
            Action::Junk { slot } => {
                self.complete_partial(slot);
                let marker = format!("junk-{slot}-{}", self.model.junk.len());
                self.append_raw(slot, format!("{marker} is not JSON\n").as_bytes());
                self.model
                    .junk
                    .push(((slot as u64, self.slots[slot].epoch), marker));
            }
            Action::Crash => return None,
            Action::Receiver(mode) => receiver.set_mode(mode),
            Action::Pause => std::thread::sleep(Duration::from_millis(60)),
        }
        Some(())
    }
}

async fn run_case(actions: Vec<Action>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let spool = dir.path().join("spool");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&spool).unwrap();
    let slots = (0..SLOTS)
        .map(|i| Slot {
            path: spool.join(format!("php.2020010100.{}.ndjson", 1000 + i)),
            epoch: 0,
            hour: 2020010100,
            pid: 1000 + i as u64,
            next_n: 0,
            partial_rest: None,
        })
        .collect();
    let mut h = Harness {
        spool,
        state: state.clone(),
        slots,
        model: Model::default(),
        url: receiver.url(),
        engine: None,
    };
    h.start_engine();
    for a in &actions {
        if h.apply(a, &receiver).is_none() {
            h.crash().await;
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    receiver.set_mode(Mode::Ok);
    for slot in 0..SLOTS {
        h.complete_partial(slot);
    }
    let must: HashSet<(u64, u64, u64)> = h
        .model
        .lines
        .iter()
        .filter(|(k, _)| !h.model.optional_epochs.contains(k))
        .flat_map(|(k, ns)| ns.iter().map(move |n| (k.0, k.1, *n)))
        .collect();
    let must_junk: Vec<&String> = h
        .model
        .junk
        .iter()
        .filter(|(key, _)| !h.model.optional_epochs.contains(key))
        .map(|(_, m)| m)
        .collect();
    let quarantined = |marker: &str| {
        std::fs::read_to_string(state.join("quarantine.ndjson")).is_ok_and(|q| q.contains(marker))
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got: HashSet<(u64, u64, u64)> = receiver
            .stored()
            .iter()
            .map(|s| (s.file, s.epoch, s.n))
            .collect();
        let done = must.is_subset(&got) && must_junk.iter().all(|m| quarantined(m));
        if done || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (handle, stop) = h.engine.take().unwrap();
    stop.trigger();
    let stopped = tokio::time::timeout(Duration::from_secs(5), handle).await;
    prop_assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "engine did not stop cleanly: {stopped:?}"
    );

    let stored = receiver.stored();
    let written: HashSet<(u64, u64, u64)> = h
        .model
        .lines
        .iter()
        .flat_map(|(k, ns)| ns.iter().map(move |n| (k.0, k.1, *n)))
        .collect();
    let got: HashSet<(u64, u64, u64)> = stored.iter().map(|s| (s.file, s.epoch, s.n)).collect();
    let missing: Vec<_> = must.difference(&got).collect();
    prop_assert!(
        missing.is_empty(),
        "{} lines never arrived, first {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let phantom: Vec<_> = got.difference(&written).collect();
    prop_assert!(
        phantom.is_empty(),
        "lines that were never written arrived: {phantom:?}"
    );
    // Per file (slot and epoch), first arrivals follow file order.
    let mut first_seen: HashMap<(u64, u64), Vec<u64>> = HashMap::new();
    let mut seen = HashSet::new();
    for s in &stored {
        if seen.insert((s.file, s.epoch, s.n)) {
            first_seen.entry((s.file, s.epoch)).or_default().push(s.n);
        }
    }
    for (key, ns) in &first_seen {
        prop_assert!(
            ns.windows(2).all(|w| w[0] < w[1]),
            "file {key:?} arrived out of order: {ns:?}"
        );
    }
    for marker in must_junk {
        prop_assert!(quarantined(marker), "junk line {marker} not in quarantine");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(12),
        max_shrink_iters: 20,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_complete_line_arrives_at_least_once_and_in_order(actions in prop::collection::vec(action(), 5..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run_case(actions))?;
    }
}
