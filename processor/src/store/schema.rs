//! The store's tables: one definition per table, used for the DDL, the
//! appenders' column order and the documentation check.
//!
//! Data tables live in one DuckDB schema per UTC day (`d20261127.requests`),
//! so that retention drops whole days with `DROP SCHEMA ... CASCADE`, which
//! hands their blocks back to DuckDB's free list for reuse; a `DELETE` would
//! leave the file growing. Users never name a day schema: the views in the
//! `main` schema (`requests`, `request_sql`, ...) are the union of all days,
//! plus an always-empty template schema so that the views exist before the
//! first record arrives.

/// Version of the store layout written in `store_meta`. A file with an older
/// version is upgraded on open; a newer one is refused.
pub const STORE_SCHEMA_VERSION: i64 = 4;

/// The schema holding empty template tables, part of every view.
pub const TEMPLATE_SCHEMA: &str = "bitville_template";

/// One column: name, DuckDB type, and what it holds (for users writing SQL).
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub sql_type: &'static str,
    pub doc: &'static str,
    /// A compression DuckDB must use for the column instead of choosing one
    /// (`USING COMPRESSION`), for columns whose data its choice serves badly.
    pub compression: Option<&'static str>,
}

/// One data table, created in every day schema and exposed as a view.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    pub doc: &'static str,
    pub columns: &'static [Column],
}

impl Table {
    /// `CREATE TABLE IF NOT EXISTS schema.name (...)`.
    pub fn create_sql(&self, schema: &str) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let compression = c
                    .compression
                    .map(|m| format!(" USING COMPRESSION {m}"))
                    .unwrap_or_default();
                format!("{} {}{compression}", quote_ident(c.name), c.sql_type)
            })
            .collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {}.{} ({})",
            quote_ident(schema),
            self.name,
            cols.join(", ")
        )
    }

    /// The index of a column, for code that fills rows by name.
    pub fn position(&self, column: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == column)
    }
}

/// Quotes an identifier for DuckDB (column names such as `rows` or `user`
/// are keywords).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

const fn col(name: &'static str, sql_type: &'static str, doc: &'static str) -> Column {
    Column {
        name,
        sql_type,
        doc,
        compression: None,
    }
}

macro_rules! envelope_cols {
    () => {
        [
            col("seq", "BIGINT", "Ingest sequence number of the record; increases with every stored record, never reused. Links rows to `records.seq`; a durable cursor for readers such as the GELF forwarder."),
            col("project", "VARCHAR", "Project of the record (the token's project)."),
            col("host", "VARCHAR", "Host that made the record."),
            col("ts", "TIMESTAMP", "Record timestamp, UTC (`ts` of the envelope)."),
        ]
    };
}

const fn concat<const A: usize, const B: usize, const N: usize>(
    a: [Column; A],
    b: [Column; B],
) -> [Column; N] {
    let mut out = [col("", "", ""); N];
    let mut i = 0;
    while i < A {
        out[i] = a[i];
        i += 1;
    }
    let mut j = 0;
    while j < B {
        out[A + j] = b[j];
        j += 1;
    }
    out
}

const RECORDS_COLS: [Column; 8] = concat(
    envelope_cols!(),
    [
        col("id", "UUID", "Record id, the dedupe key."),
        col(
            "kind",
            "VARCHAR",
            "Record kind: request, host_metrics, pg_activity, pg_statements or pg_log.",
        ),
        col(
            "ingested_at",
            "TIMESTAMP",
            "When the processor stored the record, UTC.",
        ),
        // zstd, not DuckDB's own choice (FSST): on pg_activity-like records
        // it compressed 2.4 times smaller in less time, and the raw JSON is
        // most of the bytes a checkpoint compresses.
        Column {
            compression: Some("zstd"),
            ..col(
                "raw",
                "JSON",
                "The record exactly as received, for anything the flat tables leave out (`raw->>'$.http.headers'`).",
            )
        },
    ],
);

const REQUESTS_COLS: [Column; 53] = concat(
    envelope_cols!(),
    [
        col("id", "UUID", "Record id."),
        col(
            "correlation_id",
            "UUID",
            "The request's correlation ID; pg_activity and pg_log rows carry the same value.",
        ),
        col(
            "started_at",
            "TIMESTAMP",
            "Request start, UTC: `ts` minus `duration_ms` (the agent writes the record when the request ends).",
        ),
        col(
            "record_type",
            "VARCHAR",
            "`full` (at or over the threshold, with profile and SQL) or `summary` (a sampled fast request).",
        ),
        col(
            "sampling_weight",
            "DOUBLE",
            "How many requests this row stands for (1 for full records, 1/sample_rate for summaries); weight counts with it.",
        ),
        col("duration_ms", "DOUBLE", "Wall time of the request."),
        col("method", "VARCHAR", "HTTP method; NULL for CLI scripts."),
        col("url", "VARCHAR", "Path and query, query values redacted."),
        col("status", "BIGINT", "HTTP status."),
        col("route", "VARCHAR", "Framework route pattern, when known."),
        col("controller", "VARCHAR", "Framework controller, when known."),
        col("action", "VARCHAR", "Framework action, when known."),
        col(
            "client_ip",
            "VARCHAR",
            "Client address as the agent saw it.",
        ),
        col("sapi", "VARCHAR", "PHP SAPI (fpm-fcgi, cli, ...)."),
        col("php_version", "VARCHAR", "PHP version."),
        col("pid", "BIGINT", "PHP worker process id."),
        col("agent_version", "VARCHAR", "Agent version."),
        col(
            "threshold_ms",
            "DOUBLE",
            "The agent's slow-request threshold.",
        ),
        col(
            "memory_usage_bytes",
            "BIGINT",
            "memory_get_usage() at the end.",
        ),
        col("memory_peak_bytes", "BIGINT", "memory_get_peak_usage()."),
        col("cpu_user_ms", "DOUBLE", "User CPU time of the request."),
        col("cpu_system_ms", "DOUBLE", "System CPU time of the request."),
        col(
            "error_type",
            "BIGINT",
            "Type of the last fatal error (E_* value), NULL when none.",
        ),
        col(
            "error_type_name",
            "VARCHAR",
            "Name of that type, such as E_ERROR.",
        ),
        col(
            "error_message",
            "VARCHAR",
            "Message of the last fatal error.",
        ),
        col("error_file", "VARCHAR", "File of the last fatal error."),
        col("error_line", "BIGINT", "Line of the last fatal error."),
        col(
            "sql_captured",
            "BIGINT",
            "Statements captured in `request_sql` for this request.",
        ),
        col(
            "sql_total_count",
            "BIGINT",
            "All statements the request ran, captured or not.",
        ),
        col(
            "sql_dropped",
            "BIGINT",
            "Statements over the agent's per-request cap.",
        ),
        col(
            "sql_total_ms",
            "DOUBLE",
            "Total time in SQL as the agent measured it.",
        ),
        col(
            "profiler",
            "VARCHAR",
            "excimer, xhprof or tideways; NULL without a profile.",
        ),
        col("profile_period_ms", "DOUBLE", "Excimer sampling period."),
        col(
            "profile_total_samples",
            "BIGINT",
            "All Excimer samples, including those in stacks the agent cut.",
        ),
        col(
            "profile_items",
            "BIGINT",
            "Rows of this request in `request_profile`.",
        ),
        col(
            "profile_dropped",
            "BIGINT",
            "Stacks or edges cut by the agent's noise filter or size cap.",
        ),
        col(
            "profile_dropped_samples",
            "BIGINT",
            "Samples in the stacks the agent cut.",
        ),
        col(
            "agent_overhead_us",
            "DOUBLE",
            "The agent's own time in this request.",
        ),
        col(
            "agent_dropped_records",
            "BIGINT",
            "Records this PHP process dropped before this one (spool full, disk errors).",
        ),
        col(
            "trimmed",
            "BOOLEAN",
            "True when the agent cut the record's tails to fit its size cap.",
        ),
        col(
            "http_headers",
            "JSON",
            "Request headers, redacted at the source.",
        ),
        col(
            "context",
            "JSON",
            "Free-form context the application attached, redacted at the source.",
        ),
        col(
            "sql_not_stored",
            "BIGINT",
            "Statements the request ran that are not in `request_sql` (over the cap, cut for time or size, or all of a summary's); counted in `request_fingerprints`.",
        ),
        col(
            "sql_fingerprints_dropped",
            "BIGINT",
            "Statements whose shape is not listed in `request_fingerprints`.",
        ),
        col(
            "sql_fingerprints_dropped_ms",
            "DOUBLE",
            "Total time of the statements counted in `sql_fingerprints_dropped`.",
        ),
        col(
            "profile_compact",
            "BOOLEAN",
            "True when the profile is the agent's compact one (a summary's, or a record trimmed for time): the heaviest few stacks only.",
        ),
        col(
            "profile_agent_folded",
            "BIGINT",
            "Stacks or edges whose agent frames (BitvilleApm\\...) the agent folded into the caller they wrap.",
        ),
        col(
            "ctx_switches_voluntary",
            "BIGINT",
            "Times the PHP process gave up the CPU during the request (I/O, SQL, sleep).",
        ),
        col(
            "ctx_switches_involuntary",
            "BIGINT",
            "Times the kernel preempted the PHP process during the request (the CPUs were busy).",
        ),
    ],
);

/// How many columns `requests` had in layout version 1. The columns of
/// later versions follow them, at the end: the appenders fill columns by
/// position, and `ADD COLUMN` appends (version 2: the SQL shapes and the
/// compact profile; version 3: the context switches).
const REQUESTS_V1_COLUMNS: usize = 46;

/// The columns layouts 2 and later added to `requests`, in order, for the
/// upgrade (each added only when missing).
pub fn requests_added_since_v1() -> &'static [Column] {
    &REQUESTS_COLS[REQUESTS_V1_COLUMNS..]
}

const REQUEST_FINGERPRINTS_COLS: [Column; 15] = concat(
    envelope_cols!(),
    [
        col(
            "correlation_id",
            "UUID",
            "Correlation ID of the request that ran the statements.",
        ),
        col(
            "idx",
            "BIGINT",
            "Position of the shape in the record, from 0 (heaviest total time first).",
        ),
        col(
            "sql",
            "VARCHAR",
            "Text of the first statement of this shape, literals replaced, as the agent wrote it.",
        ),
        col(
            "fingerprint",
            "VARCHAR",
            "Normalized text (as `request_sql.fingerprint`); several rows of one request can share one.",
        ),
        col(
            "count",
            "BIGINT",
            "Executions of this shape in the request, stored in `request_sql` or not.",
        ),
        col("total_ms", "DOUBLE", "Sum of their durations."),
        col("max_ms", "DOUBLE", "The longest one."),
        col("stored", "BIGINT", "How many of them are in `request_sql`."),
        col(
            "caller",
            "VARCHAR",
            "The innermost user-land function that issued the first one.",
        ),
        col("caller_file", "VARCHAR", "Its file."),
        col("caller_line", "BIGINT", "Its line."),
    ],
);

const REQUEST_SQL_COLS: [Column; 21] = concat(
    envelope_cols!(),
    [
        col(
            "correlation_id",
            "UUID",
            "Correlation ID of the request that ran the statement.",
        ),
        col(
            "idx",
            "BIGINT",
            "Position of the statement in the request, from 0.",
        ),
        col(
            "started_at",
            "TIMESTAMP",
            "Statement start, UTC: the request's `started_at` plus `start_ms`.",
        ),
        col(
            "start_ms",
            "DOUBLE",
            "Start offset from the request's start.",
        ),
        col(
            "duration_ms",
            "DOUBLE",
            "Statement duration as PHP measured it.",
        ),
        col(
            "sql",
            "VARCHAR",
            "Statement text as sent, bound values not inlined.",
        ),
        col(
            "fingerprint",
            "VARCHAR",
            "Normalized text (literals and parameters as $n, like pg_stat_statements); joins `pg_statements.fingerprint`, `pg_activity.fingerprint` and `pg_log.fingerprint`.",
        ),
        col(
            "op",
            "VARCHAR",
            "query, exec, execute, begin, commit, rollback, savepoint, release_savepoint, rollback_savepoint.",
        ),
        col("source", "VARCHAR", "phalcon, pdo or other."),
        col("status", "VARCHAR", "ok or failed."),
        col("error", "VARCHAR", "Error text of a failed statement."),
        col("rows", "BIGINT", "Rows returned or affected, when known."),
        col(
            "caller",
            "VARCHAR",
            "Innermost calling PHP function (first of `frames`).",
        ),
        col(
            "caller_file",
            "VARCHAR",
            "File of the innermost calling frame.",
        ),
        col(
            "caller_line",
            "BIGINT",
            "Line of the innermost calling frame.",
        ),
        col(
            "params",
            "JSON",
            "Bound values, redacted by key; NULL when capture is off.",
        ),
        col(
            "frames",
            "JSON",
            "Calling frames, innermost first: [{file, line, function}].",
        ),
    ],
);

const REQUEST_PROFILE_COLS: [Column; 16] = concat(
    envelope_cols!(),
    [
        col(
            "correlation_id",
            "UUID",
            "Correlation ID of the profiled request.",
        ),
        col(
            "idx",
            "BIGINT",
            "Position of the stack or edge in the record, from 0.",
        ),
        col(
            "profiler",
            "VARCHAR",
            "excimer (rows are stacks) or xhprof/tideways (rows are caller==>callee edges).",
        ),
        col(
            "stack",
            "VARCHAR",
            "Excimer: the folded stack, root first, frames joined by ';' (flame graph input); NULL for edges.",
        ),
        col("depth", "BIGINT", "Excimer: number of frames in the stack."),
        col(
            "function",
            "VARCHAR",
            "Excimer: the leaf frame, where the samples were taken (exclusive time); xhprof: the callee.",
        ),
        col(
            "caller",
            "VARCHAR",
            "Excimer: the frame below the leaf; xhprof: the caller (NULL for the root).",
        ),
        col("samples", "BIGINT", "Excimer: samples of this stack."),
        col(
            "wall_us",
            "DOUBLE",
            "Excimer: samples times the sampling period; xhprof: the edge's inclusive wall time wt_us.",
        ),
        col("calls", "BIGINT", "xhprof: call count ct."),
        col(
            "cpu_us",
            "DOUBLE",
            "xhprof: inclusive CPU time, when measured.",
        ),
        col("mu", "BIGINT", "xhprof: memory usage change."),
    ],
);

const PG_ACTIVITY_COLS: [Column; 34] = concat(
    envelope_cols!(),
    [
        col(
            "server_version_num",
            "BIGINT",
            "PostgreSQL server_version_num of the sampled server.",
        ),
        col("sample_ms", "DOUBLE", "What the sampling query cost."),
        col("pid", "BIGINT", "Backend process id."),
        col(
            "leader_pid",
            "BIGINT",
            "Parallel group leader, when a parallel worker.",
        ),
        col("datid", "BIGINT", "Database OID."),
        col("datname", "VARCHAR", "Database name."),
        col("usesysid", "BIGINT", "User OID."),
        col("usename", "VARCHAR", "User name."),
        col(
            "application_name",
            "VARCHAR",
            "application_name; `bitville:<uuid>` for PHP requests with the agent.",
        ),
        col(
            "correlation_id",
            "UUID",
            "Correlation ID from the record or parsed from `application_name`; joins `requests.correlation_id`.",
        ),
        col("client_addr", "VARCHAR", "Client address."),
        col("client_hostname", "VARCHAR", "Client host name."),
        col("client_port", "BIGINT", "Client port."),
        col("backend_start", "TIMESTAMP", "Backend start, UTC."),
        col("xact_start", "TIMESTAMP", "Transaction start, UTC."),
        col("query_start", "TIMESTAMP", "Current query start, UTC."),
        col("state_change", "TIMESTAMP", "Last state change, UTC."),
        col(
            "wait_event_type",
            "VARCHAR",
            "Wait event type (Lock, LWLock, IO, ...).",
        ),
        col("wait_event", "VARCHAR", "Wait event name."),
        col("state", "VARCHAR", "active, idle in transaction, ..."),
        col("backend_xid", "VARCHAR", "Transaction id."),
        col("backend_xmin", "VARCHAR", "xmin horizon."),
        col(
            "query_id",
            "BIGINT",
            "query_id (PostgreSQL 14+ with compute_query_id); joins `pg_statements.queryid`.",
        ),
        col("query", "VARCHAR", "Current or last query text."),
        col("fingerprint", "VARCHAR", "Normalized `query`."),
        col(
            "backend_type",
            "VARCHAR",
            "client backend, autovacuum worker, ...",
        ),
        col(
            "blocking_pids",
            "BIGINT[]",
            "pg_blocking_pids() for backends waiting on a lock; follow them to the blocker's row of the same sample (`seq`).",
        ),
        col(
            "query_ms",
            "DOUBLE",
            "Milliseconds from `query_start` to `ts`, when both are known.",
        ),
        col(
            "xact_ms",
            "DOUBLE",
            "Milliseconds from `xact_start` to `ts`, when both are known.",
        ),
        col(
            "backend_idx",
            "BIGINT",
            "Position of the backend in the sample, from 0.",
        ),
    ],
);

const PG_STATEMENTS_COLS: [Column; 37] = concat(
    envelope_cols!(),
    [
        col(
            "server_version_num",
            "BIGINT",
            "PostgreSQL server_version_num.",
        ),
        col(
            "extension_version",
            "VARCHAR",
            "pg_stat_statements version.",
        ),
        col(
            "interval_start",
            "TIMESTAMP",
            "Start of the interval the deltas cover, UTC.",
        ),
        col("interval_end", "TIMESTAMP", "End of the interval, UTC."),
        col("queryid", "BIGINT", "pg_stat_statements queryid."),
        col("userid", "BIGINT", "User OID."),
        col("dbid", "BIGINT", "Database OID."),
        col(
            "toplevel",
            "BOOLEAN",
            "Top-level statement (PostgreSQL 14+).",
        ),
        col(
            "query",
            "VARCHAR",
            "Text; pg-watch sends it only the first time it sees a queryid, so it is often NULL: look it up by queryid in an earlier row.",
        ),
        col(
            "fingerprint",
            "VARCHAR",
            "Normalized text: the record's, or computed from `query`; NULL with `query`.",
        ),
        col("calls", "BIGINT", "Calls in the interval."),
        col(
            "total_exec_time_ms",
            "DOUBLE",
            "Execution time in the interval.",
        ),
        col("rows", "BIGINT", "Rows in the interval."),
        col("plans", "BIGINT", "Plans in the interval."),
        col(
            "total_plan_time_ms",
            "DOUBLE",
            "Planning time in the interval.",
        ),
        col("shared_blks_hit", "BIGINT", "Delta of shared_blks_hit."),
        col("shared_blks_read", "BIGINT", "Delta of shared_blks_read."),
        col(
            "shared_blks_dirtied",
            "BIGINT",
            "Delta of shared_blks_dirtied.",
        ),
        col(
            "shared_blks_written",
            "BIGINT",
            "Delta of shared_blks_written.",
        ),
        col("local_blks_hit", "BIGINT", "Delta of local_blks_hit."),
        col("local_blks_read", "BIGINT", "Delta of local_blks_read."),
        col(
            "local_blks_dirtied",
            "BIGINT",
            "Delta of local_blks_dirtied.",
        ),
        col(
            "local_blks_written",
            "BIGINT",
            "Delta of local_blks_written.",
        ),
        col("temp_blks_read", "BIGINT", "Delta of temp_blks_read."),
        col("temp_blks_written", "BIGINT", "Delta of temp_blks_written."),
        col("blk_read_time_ms", "DOUBLE", "Delta of blk_read_time."),
        col("blk_write_time_ms", "DOUBLE", "Delta of blk_write_time."),
        col("wal_records", "BIGINT", "Delta of wal_records."),
        col("wal_fpi", "BIGINT", "Delta of wal_fpi."),
        col("wal_bytes", "BIGINT", "Delta of wal_bytes."),
        col(
            "evicted",
            "BIGINT",
            "Entries of the previous snapshot gone from this one (same on every row of a record).",
        ),
        col(
            "entry_idx",
            "BIGINT",
            "Position of the entry in the record, from 0.",
        ),
        col(
            "dealloc",
            "BIGINT",
            "pg_stat_statements_info.dealloc, when known.",
        ),
    ],
);

const PG_LOG_COLS: [Column; 42] = concat(
    envelope_cols!(),
    [
        col("log_time", "TIMESTAMP", "Time of the log line, UTC."),
        col("format", "VARCHAR", "stderr, csvlog or jsonlog."),
        col(
            "class",
            "VARCHAR",
            "slow_statement, auto_explain, lock_wait, lock_acquired, deadlock, error, fatal, panic, statement_timeout, cancel, temp_file, checkpoint, autovacuum, autoanalyze, connection, disconnection, other, unparsed.",
        ),
        col("severity", "VARCHAR", "LOG, ERROR, FATAL, ..."),
        col("sqlstate", "VARCHAR", "SQLSTATE code."),
        col("pid", "BIGINT", "Backend process id."),
        col("session_id", "VARCHAR", "Session id (%c)."),
        col("session_line", "BIGINT", "Line number in the session (%l)."),
        col("user_name", "VARCHAR", "User name (`user` in the record)."),
        col(
            "database_name",
            "VARCHAR",
            "Database name (`database` in the record).",
        ),
        col("application_name", "VARCHAR", "application_name."),
        col(
            "correlation_id",
            "UUID",
            "Correlation ID from the record or parsed from `application_name`.",
        ),
        col("client", "VARCHAR", "Client host and port."),
        col("backend_type", "VARCHAR", "Backend type."),
        col("query_id", "BIGINT", "query_id, when logged."),
        col("message", "VARCHAR", "Primary message."),
        col("detail", "VARCHAR", "DETAIL."),
        col("hint", "VARCHAR", "HINT."),
        col("context", "VARCHAR", "CONTEXT."),
        col("statement", "VARCHAR", "STATEMENT."),
        col(
            "duration_ms",
            "DOUBLE",
            "Duration of a slow statement or auto_explain event.",
        ),
        col(
            "query",
            "VARCHAR",
            "Statement of a slow_statement or auto_explain event.",
        ),
        col(
            "fingerprint",
            "VARCHAR",
            "Normalized `query`, or of `statement` when there is no query.",
        ),
        col("parameters", "VARCHAR", "Logged parameters."),
        col(
            "plan",
            "JSON",
            "auto_explain plan (JSON, or a JSON string for text plans).",
        ),
        col(
            "lock_mode",
            "VARCHAR",
            "Lock mode of a lock_wait or lock_acquired event.",
        ),
        col("lock_object", "VARCHAR", "Locked object."),
        col(
            "lock_waited_ms",
            "DOUBLE",
            "How long the lock was waited for.",
        ),
        col("lock_holders", "BIGINT[]", "Pids holding the lock."),
        col("lock_queue", "BIGINT[]", "Pids queued for the lock."),
        col(
            "deadlock",
            "JSON",
            "Deadlock processes: [{pid, waits_for, blocked_by, query}].",
        ),
        col("temp_file_path", "VARCHAR", "Path of a temp_file event."),
        col("temp_file_bytes", "BIGINT", "Size of a temp_file event."),
        col(
            "details",
            "JSON",
            "Figures of checkpoint, autovacuum and autoanalyze events.",
        ),
        col("source_file", "VARCHAR", "Log file the event came from."),
        col(
            "source_offset",
            "BIGINT",
            "Byte offset of the event in that file.",
        ),
        col("raw", "VARCHAR", "Raw text, kept for unparsed events."),
        col(
            "lock_wait",
            "BOOLEAN",
            "True for lock_wait and deadlock events: shorthand for spike reports.",
        ),
    ],
);

const HOST_METRICS_COLS: [Column; 28] = concat(
    envelope_cols!(),
    [
        col(
            "source",
            "VARCHAR",
            "shipper (web host) or pg-watch (database host).",
        ),
        col("interval_s", "DOUBLE", "Seconds the rate fields cover."),
        col("ncpu", "BIGINT", "CPU count."),
        col("load1", "DOUBLE", "1-minute load average."),
        col("load5", "DOUBLE", "5-minute load average."),
        col("load15", "DOUBLE", "15-minute load average."),
        col(
            "cpu_user_pct",
            "DOUBLE",
            "User CPU percent over the interval.",
        ),
        col("cpu_system_pct", "DOUBLE", "System CPU percent."),
        col("cpu_iowait_pct", "DOUBLE", "iowait percent."),
        col("cpu_steal_pct", "DOUBLE", "steal percent."),
        col("cpu_idle_pct", "DOUBLE", "idle percent."),
        col("mem_total_bytes", "BIGINT", "MemTotal."),
        col("mem_available_bytes", "BIGINT", "MemAvailable."),
        col("mem_used_bytes", "BIGINT", "Used memory."),
        col("swap_total_bytes", "BIGINT", "SwapTotal."),
        col("swap_used_bytes", "BIGINT", "Used swap."),
        col(
            "swap_in_bytes",
            "BIGINT",
            "Bytes swapped in over the interval.",
        ),
        col(
            "swap_out_bytes",
            "BIGINT",
            "Bytes swapped out over the interval.",
        ),
        col(
            "disk_read_bytes",
            "BIGINT",
            "Bytes read from disks over the interval.",
        ),
        col(
            "disk_write_bytes",
            "BIGINT",
            "Bytes written to disks over the interval.",
        ),
        col(
            "net_rx_bytes",
            "BIGINT",
            "Bytes received over the interval.",
        ),
        col("net_tx_bytes", "BIGINT", "Bytes sent over the interval."),
        col("procs_running", "BIGINT", "Runnable processes."),
        col("procs_blocked", "BIGINT", "Processes blocked on I/O."),
    ],
);

/// Every record, with its original JSON.
pub const RECORDS: Table = Table {
    name: "records",
    doc: "One row per stored record of any kind, with the record as received.",
    columns: &RECORDS_COLS,
};
/// PHP requests.
pub const REQUESTS: Table = Table {
    name: "requests",
    doc: "One row per PHP request record.",
    columns: &REQUESTS_COLS,
};
/// SQL statements of PHP requests.
pub const REQUEST_SQL: Table = Table {
    name: "request_sql",
    doc: "One row per SQL statement a request captured.",
    columns: &REQUEST_SQL_COLS,
};
/// Profiles of PHP requests.
pub const REQUEST_PROFILE: Table = Table {
    name: "request_profile",
    doc: "One row per Excimer stack or xhprof edge of a request's profile.",
    columns: &REQUEST_PROFILE_COLS,
};
/// Per-shape SQL counts of PHP requests, beyond the per-request cap.
pub const REQUEST_FINGERPRINTS: Table = Table {
    name: "request_fingerprints",
    doc: "One row per statement shape of a request: every execution counted, stored in `request_sql` or not.",
    columns: &REQUEST_FINGERPRINTS_COLS,
};
/// pg_stat_activity samples.
pub const PG_ACTIVITY: Table = Table {
    name: "pg_activity",
    doc: "One row per backend per pg_stat_activity sample; all backends of one sample share `seq` and `ts`.",
    columns: &PG_ACTIVITY_COLS,
};
/// pg_stat_statements deltas.
pub const PG_STATEMENTS: Table = Table {
    name: "pg_statements",
    doc: "One row per pg_stat_statements entry per interval, as deltas.",
    columns: &PG_STATEMENTS_COLS,
};
/// PostgreSQL log events.
pub const PG_LOG: Table = Table {
    name: "pg_log",
    doc: "One row per parsed PostgreSQL log event.",
    columns: &PG_LOG_COLS,
};
/// Host metrics samples.
pub const HOST_METRICS: Table = Table {
    name: "host_metrics",
    doc: "One row per host metrics sample (web hosts and database hosts).",
    columns: &HOST_METRICS_COLS,
};

/// Every data table, in the order the writer appends to them.
pub const TABLES: [&Table; 9] = [
    &RECORDS,
    &REQUESTS,
    &REQUEST_SQL,
    &REQUEST_PROFILE,
    &PG_ACTIVITY,
    &PG_STATEMENTS,
    &PG_LOG,
    &HOST_METRICS,
    &REQUEST_FINGERPRINTS,
];

/// Index of each table in [`TABLES`], for the writer's per-table row buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TableId {
    Records = 0,
    Requests = 1,
    RequestSql = 2,
    RequestProfile = 3,
    PgActivity = 4,
    PgStatements = 5,
    PgLog = 6,
    HostMetrics = 7,
    RequestFingerprints = 8,
}

impl TableId {
    pub fn table(self) -> &'static Table {
        TABLES[self as usize]
    }
}

/// Tables outside the day schemas.
pub const META_DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS main.store_meta (key VARCHAR NOT NULL, value VARCHAR NOT NULL)",
    "CREATE TABLE IF NOT EXISTS main.store_days (day DATE NOT NULL, schema_name VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL)",
    "CREATE TABLE IF NOT EXISTS main.cursors (name VARCHAR NOT NULL, seq BIGINT NOT NULL, updated_at TIMESTAMP NOT NULL)",
    "CREATE TABLE IF NOT EXISTS main.retention_runs (ran_at TIMESTAMP NOT NULL, cutoff TIMESTAMP NOT NULL, dropped_days INTEGER NOT NULL, file_bytes BIGINT NOT NULL)",
];

/// `CREATE OR REPLACE VIEW main.<table>` over the template and the given day schemas.
pub fn view_sql(table: &Table, day_schemas: &[String]) -> String {
    let mut sql = format!(
        "CREATE OR REPLACE VIEW main.{} AS SELECT * FROM {}.{}",
        table.name,
        quote_ident(TEMPLATE_SCHEMA),
        table.name
    );
    for schema in day_schemas {
        sql.push_str(&format!(
            " UNION ALL SELECT * FROM {}.{}",
            quote_ident(schema),
            table.name
        ));
    }
    sql
}

/// The schema name of a UTC day given as days since the epoch: `d20261127`.
pub fn day_schema(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("d{y:04}{m:02}{d:02}")
}

/// The day (days since the epoch) of a schema name made by [`day_schema`].
pub fn parse_day_schema(name: &str) -> Option<i64> {
    let digits = name.strip_prefix('d')?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i64 = digits[0..4].parse().ok()?;
    let m: u32 = digits[4..6].parse().ok()?;
    let d: u32 = digits[6..8].parse().ok()?;
    let day = days_from_civil(y, m, d);
    (day_schema(day) == name).then_some(day)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm), so day arithmetic needs no time zone library.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Microseconds in one day.
pub const DAY_MICROS: i64 = 86_400_000_000;

/// The UTC day of a timestamp in microseconds since the epoch.
pub fn day_of_micros(micros: i64) -> i64 {
    micros.div_euclid(DAY_MICROS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_schema_names_round_trip() {
        let day = days_from_civil(2026, 11, 27);
        assert_eq!(day_schema(day), "d20261127");
        assert_eq!(parse_day_schema("d20261127"), Some(day));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(day_schema(days_from_civil(2024, 2, 29)), "d20240229");
        assert_eq!(parse_day_schema("d20261332"), None);
        assert_eq!(parse_day_schema("main"), None);
    }

    #[test]
    fn day_of_negative_micros_rounds_down() {
        assert_eq!(day_of_micros(-1), -1);
        assert_eq!(day_of_micros(DAY_MICROS), 1);
    }

    #[test]
    fn every_table_starts_with_the_envelope_and_has_unique_columns() {
        for table in TABLES {
            assert_eq!(table.columns[0].name, "seq", "{}", table.name);
            let mut names: Vec<_> = table.columns.iter().map(|c| c.name).collect();
            assert!(names.iter().all(|n| !n.is_empty()), "{}", table.name);
            names.sort_unstable();
            names.dedup();
            assert_eq!(
                names.len(),
                table.columns.len(),
                "{} has a duplicate column",
                table.name
            );
        }
    }

    #[test]
    fn the_readme_documents_every_column() {
        let readme = include_str!("../../README.md");
        for table in TABLES {
            assert!(
                readme.contains(&format!("### `{}`", table.name)),
                "README lacks table {}",
                table.name
            );
            for c in table.columns {
                assert!(
                    readme.contains(&format!("| `{}` | {} |", c.name, c.sql_type)),
                    "README lacks column {}.{}",
                    table.name,
                    c.name
                );
            }
        }
    }
}
