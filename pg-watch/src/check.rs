//! `--check-config`: what pg-watch needs, checked without starting, one
//! line per problem. Beyond the file itself: the token, the spool, state and
//! log directories, PostgreSQL reached with the daemon's own connection
//! settings, the role's rights, pg_stat_statements, the server's log
//! settings that the parser and the event classes depend on (pg-watch's
//! README lists them), and the processor.
//!
//! The server's settings are read from pg-watch's own session, so a setting
//! changed for pg-watch's role or database alone is what is seen.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bitville_daemon::check::{
    DirUse, Findings, check_dir, check_files, probe_processor, read_token_file,
};
use tokio_postgres::Client;
use tokio_postgres::config::Host;

use crate::activity::MARKER;
use crate::config::{Config, PASSWORD_ENV};
use crate::log::LogFormat;
use crate::log::prefix::PrefixParser;
use crate::tailer::glob_match;

/// The server settings the checks read, through `pg_settings` (which hides
/// the file locations from roles without pg_read_all_settings).
const SETTINGS: [&str; 16] = [
    "track_activities",
    "shared_preload_libraries",
    "logging_collector",
    "log_destination",
    "log_directory",
    "data_directory",
    "log_line_prefix",
    "log_min_duration_statement",
    "log_lock_waits",
    "log_min_messages",
    "log_min_error_statement",
    "lc_messages",
    "log_timezone",
    "log_temp_files",
    "log_checkpoints",
    "log_autovacuum_min_duration",
];

/// Checks the config file at `path` and what it points to.
///
/// Returns the findings and the summary line to print when there is no problem.
pub async fn check(path: &Path) -> (Findings, String) {
    let mut f = Findings::default();
    let name = path.display();
    let parsed = std::fs::read_to_string(path)
        .map_err(|e| format!("config file {name}: {e}"))
        .and_then(|text| {
            Config::parse_unchecked(&text, path, |n| std::env::var(n).ok())
                .map_err(|e| e.to_string())
        });
    let config = match parsed {
        Ok(c) => c,
        Err(e) => {
            f.problem(e);
            return (f, String::new());
        }
    };
    for p in config.problems() {
        f.problem(format!("config file {name}: {p}"));
    }
    let token = match (&config.ship.token, &config.ship.token_file) {
        _ if !config.ship.enabled => None,
        (Some(t), _) => Some(t.clone()),
        (None, Some(file)) => read_token_file(&mut f, "ship.token_file", file),
        (None, None) => None,
    };
    check_dir(
        &mut f,
        "spool_dir",
        &config.spool_dir,
        DirUse::ReadWrite,
        true,
    );
    check_dir(
        &mut f,
        "state_dir",
        &config.state_dir,
        DirUse::ReadWrite,
        true,
    );
    if config.logs.enabled {
        let dir = &config.logs.directory;
        check_dir(&mut f, "logs.directory", dir, DirUse::Read, false);
        let ours = |n: &str| {
            !n.starts_with('.')
                && config
                    .logs
                    .sources
                    .iter()
                    .any(|s| glob_match(&s.pattern, n))
        };
        let hint = "; set log_file_mode = 0640 and give pg-watch the server's group";
        check_files(&mut f, "logs.directory", dir, DirUse::Read, ours, hint);
    }
    let mut parts = Vec::new();
    if config.activity.enabled || config.statements.enabled || config.logs.enabled {
        parts.extend(check_postgres(&mut f, &config).await);
    }
    if config.ship.enabled {
        parts.extend(
            probe_processor(
                &mut f,
                "ship.processor_url",
                &config.ship.processor_url,
                token.as_deref(),
            )
            .await,
        );
    }
    let summary = if parts.is_empty() {
        format!("{name}: ok")
    } else {
        format!("{name}: ok ({})", parts.join("; "))
    };
    (f, summary)
}

/// Who and where, without the password that a conninfo may hold.
fn describe(pg: &tokio_postgres::Config) -> String {
    let host = match pg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "the default socket".to_owned(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let user = pg.get_user().unwrap_or("?");
    let db = pg.get_dbname().unwrap_or(user);
    format!("user {user}, database {db} at {host}:{port}")
}

/// A PostgreSQL error on one line: the server's own message when it sent
/// one, else the error and its causes (tokio-postgres's own text alone says
/// only "error connecting to server").
fn pg_error(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Connects as the daemon does, then checks rights, pg_stat_statements and
/// the log settings. Returns a summary part when connected.
async fn check_postgres(f: &mut Findings, config: &Config) -> Option<String> {
    let pg: tokio_postgres::Config = config.postgres.conninfo.parse().ok()?;
    let label = format!("postgres ({})", describe(&pg));
    if pg.get_password().is_some() {
        f.warn(format!("postgres.conninfo holds a password: set it in the environment variable {PASSWORD_ENV} instead"));
    }
    // connect_timeout bounds each TCP connect; this bounds the whole login.
    let limit = Duration::from_millis(config.postgres.connect_timeout_ms) + Duration::from_secs(2);
    let client = match tokio::time::timeout(limit, crate::daemon::connect(config)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) if pg_error(&e).contains("password missing") => {
            f.problem(format!(
                "{label}: the server asks for a password and none is given: set {PASSWORD_ENV} (or use peer authentication over the Unix socket)"
            ));
            return None;
        }
        Ok(Err(e)) => {
            f.problem(format!("{label}: {}", pg_error(&e)));
            return None;
        }
        Err(_) => {
            f.problem(format!(
                "{label}: no answer within {} ms",
                limit.as_millis()
            ));
            return None;
        }
    };
    match inspect(f, config, &client, &label).await {
        Ok(summary) => Some(summary),
        Err(e) => {
            f.problem(format!("{label}: {}", pg_error(&e)));
            None
        }
    }
}

/// The role's rights and the server's settings, read over `client`.
async fn inspect(
    f: &mut Findings,
    config: &Config,
    client: &Client,
    label: &str,
) -> Result<String, tokio_postgres::Error> {
    let member = |role: &str| {
        format!(
            "r.rolsuper OR coalesce((SELECT pg_has_role(current_user, g.oid, 'USAGE') FROM pg_roles g WHERE g.rolname = '{role}'), false)"
        )
    };
    let row = client
        .query_one(
            &format!(
                "{MARKER} SELECT current_user::text, current_setting('server_version'), {} \
                 FROM pg_roles r WHERE r.rolname = current_user",
                member("pg_read_all_stats")
            ),
            &[],
        )
        .await?;
    let (user, version, all_stats): (String, String, bool) = (row.get(0), row.get(1), row.get(2));
    if !all_stats && (config.activity.enabled || config.statements.enabled) {
        f.problem(format!(
            "{label}: role {user} is neither superuser nor a member of pg_read_all_stats, so other sessions' queries show as <insufficient privilege> (GRANT pg_monitor TO \"{user}\")"
        ));
    }
    let rows = client
        .query(
            &format!("{MARKER} SELECT name, setting FROM pg_settings WHERE name = ANY($1)"),
            &[&&SETTINGS[..]],
        )
        .await?;
    let settings: HashMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let setting = |name: &str| settings.get(name).map_or("", String::as_str);

    if config.activity.enabled && setting("track_activities") == "off" {
        f.problem("postgres setting track_activities = off: pg_stat_activity shows no queries (set track_activities = on)");
    }
    if config.statements.enabled {
        check_statements(f, client, label, setting("shared_preload_libraries")).await?;
    }
    if config.logs.enabled {
        if !check_log_settings(f, config, &settings) {
            f.warn(format!(
                "{label}: role {user} cannot read the server's log_directory (GRANT pg_monitor TO \"{user}\"), so logs.directory is not compared with it"
            ));
        }
        check_log_timezone(f, client, setting("log_timezone")).await?;
    }
    Ok(format!("PostgreSQL {version} as {user}"))
}

/// pg_stat_statements: installed in the database and readable (which also
/// proves it is preloaded).
async fn check_statements(
    f: &mut Findings,
    client: &Client,
    label: &str,
    preload: &str,
) -> Result<(), tokio_postgres::Error> {
    let installed = client
        .query_opt(
            &format!(
                "{MARKER} SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements'"
            ),
            &[],
        )
        .await?
        .is_some();
    let preloaded = preload
        .split(',')
        .any(|l| l.trim().trim_matches('"') == "pg_stat_statements");
    if !installed {
        let also = if preloaded {
            ""
        } else {
            ", after adding it to shared_preload_libraries and restarting"
        };
        f.problem(format!(
            "{label}: the extension pg_stat_statements is not installed in this database (CREATE EXTENSION pg_stat_statements{also}; or set statements.enabled = false)"
        ));
        return Ok(());
    }
    if let Err(e) = client
        .query(
            &format!("{MARKER} SELECT 1 FROM pg_stat_statements LIMIT 1"),
            &[],
        )
        .await
    {
        f.problem(format!(
            "{label}: pg_stat_statements cannot be read: {}",
            pg_error(&e)
        ));
    }
    Ok(())
}

/// The log settings pg-watch's parser and event classes depend on. False
/// when the server's log_directory could not be read (pg_settings hides it
/// from roles without pg_read_all_settings), so it was not compared.
fn check_log_settings(
    f: &mut Findings,
    config: &Config,
    settings: &HashMap<String, String>,
) -> bool {
    let get = |name: &str| settings.get(name).map_or("", String::as_str);
    if get("logging_collector") == "off" {
        f.problem("postgres setting logging_collector = off: the server writes no log files for pg-watch to follow (set it on and restart)");
    }
    let destinations: Vec<String> = get("log_destination")
        .split(',')
        .map(|d| d.trim().to_ascii_lowercase())
        .collect();
    let written: Vec<LogFormat> = destinations
        .iter()
        .filter_map(|d| match d.as_str() {
            "stderr" => Some(LogFormat::Stderr),
            "csvlog" => Some(LogFormat::Csvlog),
            "jsonlog" => Some(LogFormat::Jsonlog),
            _ => None,
        })
        .collect();
    let read: Vec<LogFormat> = config.logs.sources.iter().map(|s| s.format).collect();
    if written.is_empty() {
        f.problem(format!(
            "postgres setting log_destination = '{}': no file format pg-watch reads (use stderr, csvlog or jsonlog)",
            get("log_destination")
        ));
    } else if !written.iter().any(|w| read.contains(w)) {
        f.problem(format!(
            "postgres setting log_destination = '{}': logs.sources read none of these formats",
            get("log_destination")
        ));
    }
    if written.contains(&LogFormat::Stderr) && read.contains(&LogFormat::Stderr) {
        check_prefix(f, &config.logs.log_line_prefix, get("log_line_prefix"));
    }
    let location = |name: &str| settings.get(name).map(String::as_str);
    let compared = check_log_directory(
        f,
        &config.logs.directory,
        location("log_directory"),
        location("data_directory"),
    );
    let rules: [(&str, bool, &str); 4] = [
        (
            "log_min_duration_statement",
            get("log_min_duration_statement") == "-1",
            "slow statements are not logged (set it, e.g. 250 ms)",
        ),
        (
            "log_lock_waits",
            get("log_lock_waits") == "off",
            "lock waits are not logged (set log_lock_waits = on)",
        ),
        (
            "log_min_messages",
            matches!(get("log_min_messages"), "log" | "fatal" | "panic"),
            "errors, deadlocks among them, are not logged (set it to warning)",
        ),
        (
            "lc_messages",
            !matches_english(get("lc_messages")),
            "pg-watch recognizes events by their English text (set lc_messages = 'C')",
        ),
    ];
    for (name, wrong, why) in rules {
        if wrong {
            f.problem(format!("postgres setting {name} = '{}': {why}", get(name)));
        }
    }
    let advice: [(&str, bool, &str); 4] = [
        (
            "log_min_error_statement",
            matches!(get("log_min_error_statement"), "log" | "fatal" | "panic"),
            "the statements of errors and deadlocks are not logged (set it to error)",
        ),
        (
            "log_temp_files",
            get("log_temp_files") == "-1",
            "temporary files are not logged (set it to 0)",
        ),
        (
            "log_checkpoints",
            get("log_checkpoints") == "off",
            "checkpoints are not logged (set it on)",
        ),
        (
            "log_autovacuum_min_duration",
            get("log_autovacuum_min_duration") == "-1",
            "autovacuum runs are not logged (set it, e.g. 1000 ms)",
        ),
    ];
    for (name, wrong, why) in advice {
        if wrong {
            f.warn(format!("postgres setting {name} = '{}': {why}", get(name)));
        }
    }
    if get("lc_messages").is_empty() {
        f.warn("postgres setting lc_messages is empty (the server's environment decides): set lc_messages = 'C'");
    }
    compared
}

/// English or C messages; empty (inherited) is only warned about.
fn matches_english(lc: &str) -> bool {
    let lc = lc.to_ascii_lowercase();
    lc.is_empty() || lc == "c" || lc.starts_with("c.") || lc == "posix" || lc.starts_with("en")
}

/// pg-watch's prefix must be the server's, and hold a time, the pid and the
/// application name (which joins log events to requests).
fn check_prefix(f: &mut Findings, ours: &str, server: &str) {
    if ours != server {
        f.problem(format!(
            "logs.log_line_prefix {ours:?} is not the server's log_line_prefix {server:?}"
        ));
    }
    let parser = match PrefixParser::compile(server) {
        Ok(p) => p,
        Err(e) => {
            f.problem(format!("postgres setting {e}"));
            return;
        }
    };
    let mut lacks = Vec::new();
    if !(parser.has(b'm') || parser.has(b't') || parser.has(b'n')) {
        lacks.push("a time (%m, %t or %n)");
    }
    if !parser.has(b'p') {
        lacks.push("the process id (%p)");
    }
    if !parser.has(b'a') {
        lacks.push("the application name (%a), which joins events to requests");
    }
    if !lacks.is_empty() {
        f.problem(format!(
            "postgres setting log_line_prefix = '{server}': lacks {}",
            lacks.join(", ")
        ));
    }
}

/// logs.directory must be where the server writes (a relative
/// log_directory is inside the data directory). False when it could not be
/// compared.
fn check_log_directory(
    f: &mut Findings,
    ours: &Path,
    server: Option<&str>,
    data_dir: Option<&str>,
) -> bool {
    let Some(server) = server else { return false };
    let server = Path::new(server);
    let resolved: PathBuf = match (server.is_absolute(), data_dir) {
        (true, _) => server.to_owned(),
        (false, Some(data)) => Path::new(data).join(server),
        (false, None) => return false,
    };
    let same = |a: &Path, b: &Path| {
        a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
    };
    if !same(ours, &resolved) {
        f.problem(format!(
            "logs.directory {} is not the server's log_directory {}",
            ours.display(),
            resolved.display()
        ));
    }
    true
}

/// Log times carry log_timezone's abbreviation; only UTC, GMT and numeric
/// offsets can be converted (see `log::pgtime`).
async fn check_log_timezone(
    f: &mut Findings,
    client: &Client,
    zone: &str,
) -> Result<(), tokio_postgres::Error> {
    if zone.is_empty() {
        return Ok(());
    }
    client
        .execute(
            &format!("{MARKER} SELECT set_config('TimeZone', $1, false)"),
            &[&zone],
        )
        .await?;
    let abbrev: String = client
        .query_one(&format!("{MARKER} SELECT to_char(now(), 'TZ')"), &[])
        .await?
        .get(0);
    let convertible = matches!(abbrev.as_str(), "" | "UTC" | "GMT" | "UCT" | "Z")
        || abbrev.starts_with(['+', '-']);
    if !convertible {
        f.problem(format!(
            "postgres setting log_timezone = '{zone}': log times in {abbrev} cannot be converted to UTC (set log_timezone = 'UTC')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(run: impl FnOnce(&mut Findings)) -> Vec<String> {
        let mut f = Findings::default();
        run(&mut f);
        f.problems
    }

    #[test]
    fn the_prefix_must_match_and_hold_time_pid_and_application() {
        let good = "%m [%p] %q%u@%d %a ";
        assert!(problems(|f| check_prefix(f, good, good)).is_empty());
        let p = problems(|f| check_prefix(f, good, "%t "));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with("logs.log_line_prefix \"%m [%p] %q%u@%d %a \" is not the server's"),
            "{p:?}"
        );
        assert!(
            p[1].contains("lacks the process id (%p), the application name (%a)"),
            "{p:?}"
        );
        assert!(problems(|f| check_prefix(f, "%n %p %a ", "%n %p %a ")).is_empty());
    }

    #[test]
    fn a_relative_log_directory_is_inside_the_data_directory() {
        let ours = Path::new("/var/lib/postgresql/15/main/log");
        let mut f = Findings::default();
        assert!(check_log_directory(
            &mut f,
            ours,
            Some("log"),
            Some("/var/lib/postgresql/15/main")
        ));
        // Hidden from the role: not compared, said by the caller.
        assert!(!check_log_directory(&mut f, ours, Some("log"), None));
        assert!(!check_log_directory(&mut f, ours, None, None));
        assert!(f.is_ok(), "{f:?}");
        assert!(check_log_directory(
            &mut f,
            ours,
            Some("/var/log/postgresql"),
            None
        ));
        assert_eq!(
            f.problems,
            vec![
                "logs.directory /var/lib/postgresql/15/main/log is not the server's log_directory /var/log/postgresql"
            ]
        );
    }

    #[test]
    fn english_message_locales() {
        for ok in ["C", "C.UTF-8", "POSIX", "en_US.UTF-8", ""] {
            assert!(matches_english(ok), "{ok}");
        }
        assert!(!matches_english("de_DE.UTF-8"));
    }

    #[test]
    fn connection_descriptions_leave_the_password_out() {
        let pg: tokio_postgres::Config = "host=/run/postgresql user=w password=secret dbname=app"
            .parse()
            .unwrap();
        assert_eq!(
            describe(&pg),
            "user w, database app at /run/postgresql:5432"
        );
    }
}
