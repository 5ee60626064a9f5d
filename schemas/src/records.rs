//! Typed records that mirror the JSON Schemas.
//!
//! These types read records that [`crate::validate`] accepted, so they are
//! lenient where the schema is strict: every optional field is an `Option`,
//! free-form maps stay [`serde_json::Value`]. Writers that build records in
//! Rust serialize these types and skip `None` fields.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Envelope;

/// A free-form map (headers, GET and POST values, context, details).
pub type FreeMap = Map<String, Value>;

/// One PHP request (`request.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    #[serde(flatten)]
    pub envelope: Envelope,
    pub correlation_id: String,
    pub record_type: RecordType,
    pub sampling_weight: f64,
    pub duration_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Http>,
    pub runtime: Runtime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<FreeMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<PhpError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<SqlList>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trimmed: Option<Trimmed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentStats>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordType {
    /// At or over the threshold: profile, SQL and metadata.
    Full,
    /// A sampled fast request.
    Summary,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Http {
    pub method: Option<String>,
    pub url: Option<String>,
    pub status: Option<u16>,
    pub route: Option<String>,
    pub controller: Option<String>,
    pub action: Option<String>,
    pub client_ip: Option<String>,
    pub headers: Option<FreeMap>,
    pub get: Option<FreeMap>,
    pub post: Option<FreeMap>,
    /// The headers had gone out before the request ended: `status` is what
    /// PHP held at the end, which the client may not have received.
    pub headers_sent: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Runtime {
    pub sapi: String,
    pub php_version: String,
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    pub memory_usage_bytes: Option<u64>,
    pub memory_peak_bytes: Option<u64>,
    pub cpu_user_ms: Option<f64>,
    pub cpu_system_ms: Option<f64>,
    pub ctx_switches_voluntary: Option<u64>,
    pub ctx_switches_involuntary: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PhpError {
    #[serde(rename = "type")]
    pub error_type: Option<i64>,
    pub type_name: Option<String>,
    pub message: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SqlList {
    pub queries: Vec<SqlQuery>,
    #[serde(default)]
    pub total_count: Option<u64>,
    #[serde(default)]
    pub dropped: Option<u64>,
    #[serde(default)]
    pub total_ms: Option<f64>,
    /// Statements not in `queries` (over the cap, trimmed, or a summary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_stored: Option<u64>,
    /// Every execution counted per statement shape, heaviest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fingerprints: Vec<FingerprintStat>,
    /// Statements whose shape is not listed in `fingerprints`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprints_dropped: Option<u64>,
    /// Their total time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprints_dropped_ms: Option<f64>,
}

/// One statement shape of a request: executions and time, stored or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FingerprintStat {
    /// The first statement's text, literals replaced by `?`, IN lists collapsed.
    pub sql: String,
    pub count: u64,
    pub total_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ms: Option<f64>,
    /// How many of them are in `queries`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<u64>,
    /// The innermost user-land frame that issued the first one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<Frame>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqlQuery {
    pub sql: String,
    #[serde(default)]
    pub fingerprint: Option<String>,
    #[serde(default)]
    pub params: Option<Value>,
    #[serde(default)]
    pub types: Option<Value>,
    #[serde(default)]
    pub op: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    pub start_ms: f64,
    pub duration_ms: f64,
    pub status: SqlStatus,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub rows: Option<u64>,
    #[serde(default)]
    pub frames: Vec<Frame>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqlStatus {
    Ok,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub line: Option<u32>,
    pub function: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub profiler: String,
    #[serde(default)]
    pub period_ms: Option<f64>,
    #[serde(default)]
    pub total_samples: Option<u64>,
    #[serde(default)]
    pub stacks: Vec<Stack>,
    #[serde(default)]
    pub edges: Vec<Edge>,
    #[serde(default)]
    pub dropped: Option<u64>,
    #[serde(default)]
    pub dropped_samples: Option<u64>,
    #[serde(default)]
    pub dropped_wt_us: Option<f64>,
    /// The compact form (summaries, records trimmed for the time budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compact: Option<bool>,
    /// The heaviest leaf functions over all samples.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leaves: Vec<Leaf>,
    /// Stacks or edges whose agent frames were folded into their caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_folded: Option<u64>,
}

/// A leaf function: Excimer self samples, or xhprof exclusive wall time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leaf {
    pub function: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wt_us: Option<f64>,
}

/// An Excimer stack: function names root first, with its sample count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stack {
    pub frames: Vec<String>,
    pub samples: u64,
}

/// An xhprof call edge, `caller==>callee`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    #[serde(default)]
    pub caller: Option<String>,
    pub callee: String,
    pub ct: u64,
    pub wt_us: f64,
    #[serde(default)]
    pub cpu_us: Option<f64>,
    #[serde(default)]
    pub mu: Option<i64>,
    #[serde(default)]
    pub pmu: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Trimmed {
    pub profile_items: Option<u64>,
    pub sql_items: Option<u64>,
    pub bytes_before: Option<u64>,
    /// `size` (over max_record_bytes) or `budget` (the agent's time ran out).
    pub reason: Option<String>,
    pub fingerprint_items: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentStats {
    pub overhead_us: Option<f64>,
    pub dropped_records: Option<u64>,
    pub spool_full: Option<bool>,
}

/// One host sample (`host_metrics.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostMetricsRecord {
    #[serde(flatten)]
    pub envelope: Envelope,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ncpu: Option<u32>,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<Swap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Disk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<Net>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub procs_running: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub procs_blocked: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cpu {
    pub user_pct: Option<f64>,
    pub system_pct: Option<f64>,
    pub iowait_pct: Option<f64>,
    pub steal_pct: Option<f64>,
    pub idle_pct: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Memory {
    pub total_bytes: Option<u64>,
    pub available_bytes: Option<u64>,
    pub used_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Swap {
    pub total_bytes: Option<u64>,
    pub used_bytes: Option<u64>,
    pub in_bytes: Option<u64>,
    pub out_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Disk {
    pub read_bytes: Option<u64>,
    pub write_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Net {
    pub rx_bytes: Option<u64>,
    pub tx_bytes: Option<u64>,
}

/// One sample of pg_stat_activity (`pg_activity.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PgActivityRecord {
    #[serde(flatten)]
    pub envelope: Envelope,
    pub server_version_num: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_ms: Option<f64>,
    pub backends: Vec<Backend>,
}

/// One backend of a pg_stat_activity sample; columns the server lacks are `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Backend {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datname: Option<String>,
    pub pid: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usesysid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usename: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_port: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xact_start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_change: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_event_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_event: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_xid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_xmin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocking_pids: Option<Vec<i32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

/// pg_stat_statements deltas over one interval (`pg_statements.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PgStatementsRecord {
    #[serde(flatten)]
    pub envelope: Envelope,
    pub server_version_num: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension_version: Option<String>,
    pub interval_start: String,
    pub interval_end: String,
    pub entries: Vec<StatementDelta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evicted: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dealloc: Option<u64>,
}

/// One statement's counters over the interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatementDelta {
    pub queryid: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dbid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toplevel: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    pub calls: u64,
    pub total_exec_time_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plans: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_plan_time_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_blks_hit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_blks_read: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_blks_dirtied: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_blks_written: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_blks_hit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_blks_read: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_blks_dirtied: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_blks_written: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temp_blks_read: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temp_blks_written: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blk_read_time_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blk_write_time_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_records: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_fpi: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_bytes: Option<u64>,
}

/// The class of a PostgreSQL log event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogClass {
    SlowStatement,
    AutoExplain,
    LockWait,
    LockAcquired,
    Deadlock,
    Error,
    Fatal,
    Panic,
    StatementTimeout,
    Cancel,
    TempFile,
    Checkpoint,
    Autovacuum,
    Autoanalyze,
    Connection,
    Disconnection,
    Other,
    Unparsed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Stderr,
    Csvlog,
    Jsonlog,
}

/// One parsed PostgreSQL log event (`pg_log.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PgLogRecord {
    #[serde(flatten)]
    pub envelope: Envelope,
    #[serde(flatten)]
    pub event: LogEvent,
}

/// The body of a pg_log record, without its envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEvent {
    pub log_time: String,
    pub format: LogFormat,
    pub class: LogClass,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_line: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<LockInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadlock: Option<Deadlock>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp_file: Option<TempFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<FreeMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<LogSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LockInfo {
    pub mode: Option<String>,
    pub object: Option<String>,
    pub waited_ms: Option<f64>,
    pub holders: Vec<u32>,
    pub queue: Vec<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deadlock {
    pub processes: Vec<DeadlockProcess>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeadlockProcess {
    pub pid: u32,
    #[serde(default)]
    pub waits_for: Option<String>,
    #[serde(default)]
    pub blocked_by: Option<u32>,
    #[serde(default)]
    pub query: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TempFile {
    pub path: String,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogSource {
    pub file: String,
    pub offset: u64,
}
