//! The window report: suspects ranked by their share of the excess load.
//!
//! The unit is the request-second (a request in flight for one second).
//! The excess is the window's request-seconds minus the baseline's, scaled
//! to the window's length. Each suspect gets the excess it explains:
//!
//! - a lock blocker: the seconds backends waited behind it (root of the lock
//!   tree), named by the blocker's request (endpoint and URL);
//! - a SQL fingerprint: its excess time in PHP (or in pg_stat_statements when
//!   PHP did not see it), minus the part spent waiting on locks (that part
//!   belongs to the blocker);
//! - a PHP function: its excess exclusive time (Excimer leaf samples, xhprof
//!   inclusive minus children); a database driver frame such as
//!   `PDOStatement::execute` is waiting for SQL, so the SQL excess is taken off;
//! - a database wait event: its excess backend-seconds not spent in a SQL
//!   suspect's statements;
//! - an N+1 loop: a statement shape run many times in one request (20 by
//!   default), its loop time (statements plus the round trips and driver
//!   time between them), named by the PHP frame that issues it;
//! - the kind of an endpoint's time when it has no profile: PHP CPU, or
//!   off-CPU outside SQL, from each request's CPU and SQL time;
//! - memory pressure on a host: while the host swapped (at least 1 MiB/s,
//!   four times its baseline), the latency its requests gained, since every
//!   request there waits on page faults wherever it happens to be;
//! - an endpoint: the excess of its extra traffic at baseline latency, plus
//!   the excess of its latency change that no deeper suspect explains (with
//!   no baseline requests, its whole time is latency to explain).
//!
//! Function and SQL time is scaled by the coverage of its evidence (the
//! weighted share of the endpoint's requests whose records carry it);
//! internal functions give their time to their user-land caller and the
//! agent's frames are never suspects.
//!
//! A deeper suspect explains the endpoint where most of its time was spent,
//! so an endpoint ranks first only when its traffic (or something unseen)
//! is the cause. Host figures and database events (deadlocks, temp files,
//! checkpoints) come beside the ranking as context.
//!
//! Two steps, one file each:
//! - [`collect`]: the SQL. Each collector reads its rows by column name into
//!   plain structs ([`Item`]s per endpoint, function, fingerprint, wait
//!   event and lock blocker), nothing scored.
//! - [`rank`]: the attribution rules above, pure functions from those
//!   structs to ranked suspects, tested on small hand-made inputs.
//!
//! Then [`verdict`] says in one line what the first suspect did; every
//! client prints that line instead of writing its own.

mod collect;
pub mod plan;
mod rank;
pub mod verdict;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AnalysisError, Days, Frame, Scope, Source, Window, format_time};

/// What kind of cause a suspect is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuspectKind {
    LockBlocker,
    NPlusOne,
    SqlFingerprint,
    PhpFunction,
    WaitEvent,
    PhpCpu,
    OffCpu,
    HostMemory,
    Endpoint,
}

impl SuspectKind {
    pub fn label(self) -> &'static str {
        match self {
            SuspectKind::LockBlocker => "lock",
            SuspectKind::NPlusOne => "n+1",
            SuspectKind::PhpCpu => "php cpu",
            SuspectKind::OffCpu => "off-cpu",
            SuspectKind::SqlFingerprint => "sql",
            SuspectKind::PhpFunction => "function",
            SuspectKind::WaitEvent => "db wait",
            SuspectKind::HostMemory => "memory",
            SuspectKind::Endpoint => "endpoint",
        }
    }
}

/// One ranked suspect.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Suspect {
    pub rank: usize,
    pub kind: SuspectKind,
    pub name: String,
    /// Excess request-seconds this suspect explains.
    pub score_s: f64,
    /// `score_s` over the window's total excess, at most 1. A suspect can
    /// explain more than the excess (the request-seconds queued behind a lock
    /// blocker count whole, while the baseline had its own waits, which the
    /// excess nets out); `score_s` keeps the full figure.
    pub share: f64,
    /// Its own measure in the window and in the baseline (scaled to the window's length).
    pub window_s: f64,
    pub baseline_s: f64,
    /// The endpoint where most of its window time was spent.
    pub endpoint: Option<String>,
    pub evidence: BTreeMap<String, Value>,
    /// The share of its window time per endpoint, which the endpoints'
    /// latency change is explained by.
    #[serde(skip)]
    spread: HashMap<String, f64>,
}

/// Totals of the window against the baseline.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Totals {
    pub requests: f64,
    pub baseline_requests: f64,
    pub request_seconds: f64,
    pub baseline_request_seconds: f64,
    pub excess_request_seconds: f64,
    /// Plain statements about missing data: an empty baseline or window, or
    /// endpoints with no baseline requests (whose whole window time is excess).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A host's figures in the window and the baseline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostFigures {
    pub host: String,
    pub source: String,
    pub ncpu: f64,
    pub load1_max: f64,
    pub baseline_load1_max: f64,
    pub cpu_pct: f64,
    pub baseline_cpu_pct: f64,
    pub iowait_pct: f64,
    pub baseline_iowait_pct: f64,
    pub swap_used_bytes: f64,
    pub baseline_swap_used_bytes: f64,
    pub swap_io_bytes: f64,
    pub baseline_swap_io_bytes: f64,
}

/// PostgreSQL log events of note in the window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventCount {
    pub class: String,
    pub count: f64,
    pub baseline_count: f64,
    pub bytes: f64,
    pub examples: Vec<Value>,
}

/// The report of one window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    pub baseline_from: String,
    pub baseline_to: String,
    pub totals: Totals,
    pub suspects: Vec<Suspect>,
    pub hosts: Vec<HostFigures>,
    pub events: Vec<EventCount>,
    /// One line that says what happened ([`verdict::verdict`]): what the
    /// command line, the demo and the web UI print first.
    #[serde(default)]
    pub verdict: String,
}

/// One measured thing (an endpoint, a function, a fingerprint, a wait
/// event, a lock blocker) in the window and the baseline, before scoring.
#[derive(Debug, Clone, Default, PartialEq)]
struct Item {
    /// Its measure in the window (seconds).
    w: f64,
    /// Its measure in the baseline, not yet scaled to the window's length.
    b: f64,
    /// Its window measure per endpoint.
    by_endpoint: HashMap<String, f64>,
    /// Its baseline measure per endpoint (not yet scaled).
    b_by_endpoint: HashMap<String, f64>,
    evidence: BTreeMap<String, Value>,
}

impl Item {
    fn add(&mut self, in_window: bool, x: f64, endpoint: Option<String>) {
        if in_window {
            self.w += x;
            if let Some(ep) = endpoint {
                *self.by_endpoint.entry(ep).or_default() += x;
            }
        } else {
            self.b += x;
            if let Some(ep) = endpoint {
                *self.b_by_endpoint.entry(ep).or_default() += x;
            }
        }
    }

    fn excess(&self, ratio: f64) -> f64 {
        self.w - self.b * ratio
    }

    fn main_endpoint(&self) -> Option<String> {
        self.by_endpoint
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(k, _)| k.clone())
    }

    fn note(&mut self, key: &str, value: Value) {
        self.evidence.insert(key.to_owned(), value);
    }
}

/// Frames that are a PHP process waiting on the database driver: their
/// exclusive time is SQL time, which the SQL suspects already hold. The
/// agent's own PDO subclasses (`BitvilleApm\Pdo`, `BitvilleApm\PdoStatement`)
/// are the driver as the application sees it: Excimer shows the wrapper, not
/// the internal method it calls, as the frame that waited.
pub fn is_database_frame(function: &str) -> bool {
    const PREFIXES: [&str; 8] = [
        "PDO::",
        "PDOStatement::",
        "BitvilleApm\\Pdo::",
        "BitvilleApm\\PdoStatement::",
        "pg_",
        "Phalcon\\Db\\",
        "mysqli",
        "Doctrine\\DBAL\\",
    ];
    PREFIXES.iter().any(|p| function.starts_with(p))
}

/// The agent's own frames (`BitvilleApm\...`): never a suspect, their time
/// goes to the SQL or the caller they wrap.
pub fn is_agent_frame(function: &str) -> bool {
    function.starts_with("BitvilleApm\\")
}

/// The profilers' and the agent's stand-ins for a frame they could not
/// name (`[unknown]`) or cut off (`[truncated]`): never a suspect.
pub fn is_placeholder_frame(function: &str) -> bool {
    function.starts_with('[') && function.ends_with(']')
}

/// A frame name without xhprof's recursion marker (`f@2` is `f`).
pub fn strip_recursion(function: &str) -> &str {
    match function.rsplit_once('@') {
        Some((f, n)) if !f.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            f
        }
        _ => function,
    }
}

/// PHP's internal functions and the methods of its extensions' classes:
/// code without a user file, which a user cannot change, so their time goes
/// to the nearest user-land caller. Profiles carry names only, so this is
/// the database driver frames, the classes of common extensions, and the
/// usual builtins by name and prefix.
pub fn is_internal_function(function: &str) -> bool {
    const CLASSES: [&str; 34] = [
        "PDO",
        "PDOStatement",
        "mysqli",
        "mysqli_stmt",
        "mysqli_result",
        "Redis",
        "RedisCluster",
        "Memcached",
        "Memcache",
        "SoapClient",
        "DateTime",
        "DateTimeImmutable",
        "DateTimeZone",
        "DOMDocument",
        "DOMXPath",
        "SimpleXMLElement",
        "XMLReader",
        "XMLWriter",
        "ReflectionClass",
        "ReflectionMethod",
        "ReflectionProperty",
        "ReflectionFunction",
        "Closure",
        "Generator",
        "SplFileObject",
        "SplObjectStorage",
        "ArrayObject",
        "ArrayIterator",
        "ZipArchive",
        "Imagick",
        "SQLite3",
        "SQLite3Stmt",
        "NumberFormatter",
        "IntlDateFormatter",
    ];
    const FUNCTIONS: [&str; 78] = [
        "sin",
        "cos",
        "tan",
        "asin",
        "acos",
        "atan",
        "atan2",
        "sqrt",
        "pow",
        "exp",
        "log",
        "log10",
        "abs",
        "floor",
        "ceil",
        "round",
        "fmod",
        "intdiv",
        "max",
        "min",
        "md5",
        "sha1",
        "crc32",
        "hash",
        "hash_hmac",
        "password_hash",
        "password_verify",
        "base64_encode",
        "base64_decode",
        "serialize",
        "unserialize",
        "var_export",
        "print_r",
        "var_dump",
        "sprintf",
        "printf",
        "vsprintf",
        "number_format",
        "implode",
        "explode",
        "join",
        "strlen",
        "substr",
        "strpos",
        "stripos",
        "strrpos",
        "strtolower",
        "strtoupper",
        "strtr",
        "strcmp",
        "trim",
        "ltrim",
        "rtrim",
        "ucfirst",
        "ucwords",
        "htmlspecialchars",
        "htmlentities",
        "nl2br",
        "count",
        "range",
        "sort",
        "rsort",
        "usort",
        "uasort",
        "uksort",
        "ksort",
        "krsort",
        "asort",
        "arsort",
        "in_array",
        "iterator_to_array",
        "call_user_func",
        "call_user_func_array",
        "usleep",
        "sleep",
        "time_nanosleep",
        "microtime",
        "hrtime",
    ];
    const PREFIXES: [&str; 24] = [
        "array_",
        "str_",
        "preg_",
        "mb_",
        "curl_",
        "json_",
        "gz",
        "openssl_",
        "ctype_",
        "iconv",
        "socket_",
        "stream_",
        "fsockopen",
        "file_",
        "fopen",
        "fread",
        "fwrite",
        "fclose",
        "fgets",
        "random_",
        "mt_",
        "session_",
        "ob_",
        "Phalcon\\",
    ];
    let f = strip_recursion(function);
    if is_agent_frame(f) {
        return false;
    }
    if is_database_frame(f) {
        return true;
    }
    if let Some((class, _)) = f.split_once("::") {
        return CLASSES.contains(&class) || class.starts_with("Phalcon\\");
    }
    if f.contains('\\') && !f.starts_with("Phalcon\\") {
        return false;
    }
    FUNCTIONS.contains(&f) || PREFIXES.iter().any(|p| f.starts_with(p))
}

/// What a user may tune in the attribution (`[analysis]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Executions of one statement shape in one request from which on it is
    /// an N+1 suspect.
    pub n_plus_one_min: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { n_plus_one_min: 20 }
    }
}

/// The report of a window against its baseline, with the default settings.
///
/// # Errors
/// A store query failed, or its answer could not be read.
pub fn report(src: &dyn Source, scope: &Scope, frame: &Frame) -> Result<Report, AnalysisError> {
    report_with(src, scope, frame, &Settings::default())
}

/// The report of a window against its baseline.
///
/// # Errors
/// A store query failed, or its answer could not be read.
pub fn report_with(
    src: &dyn Source,
    scope: &Scope,
    frame: &Frame,
    settings: &Settings,
) -> Result<Report, AnalysisError> {
    let days = Days::load(src)?;
    let measured = collect::measure(src, &days, scope, frame, settings)?;
    let (suspects, totals) = rank::rank(&measured, frame.ratio(), frame.window.seconds());
    let verdict = verdict::verdict(&totals, &suspects);
    Ok(Report {
        from: format_time(frame.window.from),
        to: format_time(frame.window.to),
        baseline_from: format_time(frame.baseline.from),
        baseline_to: format_time(frame.baseline.to),
        totals,
        suspects,
        hosts: collect::hosts(src, &days, scope, frame)?,
        events: collect::events(src, &days, scope, frame)?,
        verdict,
    })
}

/// What a top list ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TopBy {
    Endpoints,
    Sql,
    Functions,
}

/// One entry of a top list: where the time of the window went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopEntry {
    pub name: String,
    pub seconds: f64,
    pub count: f64,
    pub evidence: BTreeMap<String, Value>,
}

/// The biggest consumers of time in a window, without a baseline.
///
/// # Errors
/// A store query failed, or its answer could not be read.
pub fn top(
    src: &dyn Source,
    scope: &Scope,
    window: Window,
    by: TopBy,
    limit: usize,
) -> Result<Vec<TopEntry>, AnalysisError> {
    // The same collectors as the report, over an empty baseline.
    let frame = Frame {
        window,
        baseline: Window {
            from: window.from,
            to: window.from,
        },
    };
    let days = Days::load(src)?;
    let entries = match by {
        TopBy::Endpoints => {
            let eps = collect::endpoints(src, &days, scope, &frame)?;
            rank::top_endpoints(eps)
        }
        TopBy::Sql => rank::top_items(
            collect::fingerprints(src, &days, scope, &frame)?.php,
            "php_calls",
        ),
        TopBy::Functions => rank::top_items(
            rank::fold_profile(&collect::functions(src, &days, scope, &frame)?).items,
            "requests",
        ),
    };
    Ok(rank::top_list(entries, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_driver_frames_are_recognised() {
        assert!(is_database_frame("PDOStatement::execute"));
        assert!(is_database_frame("pg_query_params"));
        assert!(is_database_frame("BitvilleApm\\PdoStatement::execute"));
        assert!(is_database_frame("BitvilleApm\\Pdo::query"));
        assert!(!is_database_frame("BitvilleApm\\Profiler::stop"));
        assert!(!is_database_frame("App\\Pricing::applyRules"));
    }

    #[test]
    fn an_item_scales_its_baseline_and_names_its_main_endpoint() {
        let mut i = Item::default();
        i.add(true, 3.0, Some("GET /a".into()));
        i.add(true, 5.0, Some("GET /b".into()));
        i.add(false, 2.0, Some("GET /a".into()));
        assert_eq!(i.excess(2.0), 4.0);
        assert_eq!(i.main_endpoint().as_deref(), Some("GET /b"));
    }
}
