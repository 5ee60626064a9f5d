//! `--check-config` plumbing that every daemon shares: the [`Findings`]
//! list (each problem on its own line, so an administrator fixes them all in
//! one round instead of one per restart), directory, file and token-file
//! checks, and the probe of the processor that the shipper and pg-watch run.
//!
//! Access is tested with `access(2)` for the user running the check, which
//! is why the READMEs say to run it as the daemon's user.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};

/// How long one network probe (name lookup, connect, one HTTP request) may
/// take: long enough for a healthy processor across a WAN, short enough that
/// a check of an unreachable one answers at once.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What a check found: problems (the config will not work as meant, exit
/// non-zero) and warnings (it works, but something deserves a look).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

impl Findings {
    pub fn problem(&mut self, line: impl Into<String>) {
        self.problems.push(one_line(line.into()));
    }

    pub fn warn(&mut self, line: impl Into<String>) {
        self.warnings.push(one_line(line.into()));
    }

    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Prints warnings (`warning: ...`) and problems to stderr, one per line,
    /// and `summary` to stdout when there is no problem. True when none.
    pub fn report(&self, summary: &str) -> bool {
        for w in &self.warnings {
            eprintln!("warning: {w}");
        }
        for p in &self.problems {
            eprintln!("{p}");
        }
        if self.is_ok() {
            println!("{summary}");
        }
        self.is_ok()
    }
}

/// Folds a message onto one line (a server's error text may hold newlines).
fn one_line(s: String) -> String {
    if s.contains('\n') {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        s
    }
}

/// The real user id, named in access problems: the same file is fine for
/// root and unreadable for the daemon's user.
pub fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// access(2): whether the real user may use `path` as `mode` says.
pub fn can(path: &Path, mode: libc::c_int) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a NUL-terminated string that lives across the call.
    unsafe { libc::access(c.as_ptr(), mode) == 0 }
}

/// What a daemon does with a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirUse {
    /// Lists and reads files.
    Read,
    /// Also creates, renames or deletes files.
    ReadWrite,
}

/// Checks that `dir` is a directory the current user can use as `how`.
/// When it is missing, `may_create` says whether the daemon creates it at
/// start: then the nearest existing parent must be writable.
pub fn check_dir(f: &mut Findings, what: &str, dir: &Path, how: DirUse, may_create: bool) {
    let label = format!("{what} {}", dir.display());
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => f.problem(format!("{label}: is not a directory")),
        Ok(_) => {
            let (mode, verb) = match how {
                DirUse::Read => (libc::R_OK | libc::X_OK, "readable"),
                DirUse::ReadWrite => (
                    libc::R_OK | libc::W_OK | libc::X_OK,
                    "readable and writable",
                ),
            };
            if !can(dir, mode) {
                f.problem(format!("{label}: not {verb} by uid {}", uid()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !may_create {
                f.problem(format!("{label}: does not exist"));
                return;
            }
            match dir.ancestors().skip(1).find(|a| a.exists()) {
                Some(parent) if can(parent, libc::W_OK | libc::X_OK) => {}
                Some(parent) => f.problem(format!(
                    "{label}: does not exist, and uid {} cannot create it in {}",
                    uid(),
                    parent.display()
                )),
                None => f.problem(format!("{label}: does not exist")),
            }
        }
        Err(e) => f.problem(format!("{label}: {e}")),
    }
}

/// Checks that the files in `dir` accepted by `is_ours` are readable (and
/// writable when `how` says so); one line names how many are not, and the
/// first of them.
pub fn check_files(
    f: &mut Findings,
    what: &str,
    dir: &Path,
    how: DirUse,
    is_ours: impl Fn(&str) -> bool,
    hint: &str,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mode = match how {
        DirUse::Read => libc::R_OK,
        DirUse::ReadWrite => libc::R_OK | libc::W_OK,
    };
    let mut bad: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|name| is_ours(name) && !can(&dir.join(name), mode))
        .collect();
    if bad.is_empty() {
        return;
    }
    bad.sort();
    let verb = if how == DirUse::Read {
        "readable"
    } else {
        "readable and writable"
    };
    f.problem(format!(
        "{what} {}: {} file(s) not {verb} by uid {} (first: {}){hint}",
        dir.display(),
        bad.len(),
        uid(),
        bad[0]
    ));
}

/// Reads a token file: a problem when it cannot be read or is empty, a
/// warning when every user may read it.
pub fn read_token_file(f: &mut Findings, key: &str, path: &Path) -> Option<String> {
    let label = format!("{key} {}", path.display());
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => {
            f.problem(format!("{label}: is empty"));
            None
        }
        Ok(text) => {
            if let Ok(m) = std::fs::metadata(path) {
                let mode = m.permissions().mode() & 0o777;
                if mode & 0o004 != 0 {
                    f.warn(format!(
                        "{label}: readable by every user (mode {mode:04o}); make it 0640 or 0600"
                    ));
                }
            }
            Some(text.trim().to_owned())
        }
        Err(e) => {
            f.problem(format!("{label}: cannot be read: {e}"));
            None
        }
    }
}

/// The processor's base URL: `processor_url` without a trailing
/// `/v1/ingest` (the shipper accepts both forms) or slash.
fn base_url(url: &reqwest::Url) -> String {
    let s = url.as_str().trim_end_matches('/');
    s.strip_suffix("/v1/ingest").unwrap_or(s).to_owned()
}

/// Probes the processor at `url` (the value of config key `key`) the way
/// the shipper will reach it: name lookup and TCP connect, `GET /healthz`,
/// then, with a token, `POST /v1/ingest` with an empty body. The processor
/// checks the token before it reads the body, so 400 ("body is empty") means
/// the token is known and 401 that it is not, and nothing is stored.
///
/// Returns a few words for the summary line when the processor answered.
pub async fn probe_processor(
    f: &mut Findings,
    key: &str,
    url: &str,
    token: Option<&str>,
) -> Option<String> {
    let label = format!("{key} {url}");
    let parsed = match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u,
        Ok(_) => {
            f.problem(format!("{label}: scheme is not http or https"));
            return None;
        }
        Err(e) => {
            f.problem(format!("{label}: {e}"));
            return None;
        }
    };
    let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
        f.problem(format!("{label}: no host"));
        return None;
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addrs: Vec<std::net::SocketAddr> = match tokio::time::timeout(
        PROBE_TIMEOUT,
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(a)) => a.collect(),
        Ok(Err(e)) => {
            f.problem(format!("{label}: cannot resolve {host}: {e}"));
            return None;
        }
        Err(_) => {
            f.problem(format!(
                "{label}: resolving {host} took over {} s",
                PROBE_TIMEOUT.as_secs()
            ));
            return None;
        }
    };
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(&addrs[..])).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            f.problem(format!("{label}: cannot connect to {host}:{port}: {e}"));
            return None;
        }
        Err(_) => {
            f.problem(format!(
                "{label}: no TCP answer from {host}:{port} within {} s",
                PROBE_TIMEOUT.as_secs()
            ));
            return None;
        }
    }
    let client = match reqwest::Client::builder().timeout(PROBE_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            f.problem(format!("{label}: HTTP client: {}", error_chain(&e)));
            return None;
        }
    };
    let base = base_url(&parsed);
    match client.get(format!("{base}/healthz")).send().await {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => {
            f.problem(format!("{label}: GET /healthz answered {}", r.status()));
            return None;
        }
        Err(e) => {
            f.problem(format!("{label}: GET /healthz failed: {}", error_chain(&e)));
            return None;
        }
    }
    let Some(token) = token else {
        return Some(format!("processor {url} reachable"));
    };
    let reply = client
        .post(format!("{base}/v1/ingest"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(CONTENT_TYPE, "application/x-ndjson")
        .send()
        .await;
    let verdict = match reply {
        Ok(r) => {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            let detail = error_text(&text);
            match status {
                s if s.is_success() || s == StatusCode::BAD_REQUEST => "token accepted",
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    f.problem(format!(
                        "{label}: the processor refuses the token ({status}: {detail})"
                    ));
                    return None;
                }
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                    f.warn(format!(
                        "{label}: the token could not be checked ({status}: {detail})"
                    ));
                    "token not checked"
                }
                s => {
                    f.problem(format!("{label}: POST /v1/ingest answered {s}: {detail}"));
                    return None;
                }
            }
        }
        Err(e) => {
            f.problem(format!(
                "{label}: POST /v1/ingest failed: {}",
                error_chain(&e)
            ));
            return None;
        }
    };
    Some(format!("processor {url} reachable, {verdict}"))
}

/// The `error` of a JSON error reply, or the start of the text.
fn error_text(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect::<String>().trim().to_owned())
}

/// The error and its sources on one line: reqwest's own message alone says
/// little ("error sending request").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_reported_by_what_is_wrong() {
        let tmp = tempfile::tempdir().unwrap();
        let mut f = Findings::default();
        check_dir(&mut f, "spool dir", tmp.path(), DirUse::ReadWrite, false);
        assert!(f.is_ok(), "{f:?}");
        let missing = tmp.path().join("nope");
        check_dir(&mut f, "spool dir", &missing, DirUse::ReadWrite, false);
        assert_eq!(
            f.problems,
            vec![format!("spool dir {}: does not exist", missing.display())]
        );
        // The daemon creates a missing state dir when it can.
        let mut f = Findings::default();
        check_dir(
            &mut f,
            "state_dir",
            &missing.join("deeper"),
            DirUse::ReadWrite,
            true,
        );
        assert!(f.is_ok(), "{f:?}");
        let file = tmp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        check_dir(&mut f, "state_dir", &file, DirUse::ReadWrite, true);
        assert_eq!(
            f.problems,
            vec![format!("state_dir {}: is not a directory", file.display())]
        );
    }

    #[test]
    fn token_files_must_hold_a_token() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("token");
        let mut f = Findings::default();
        assert_eq!(read_token_file(&mut f, "token_file", &path), None);
        assert!(f.problems[0].contains("cannot be read"), "{f:?}");
        std::fs::write(&path, " \n").unwrap();
        let mut f = Findings::default();
        assert_eq!(read_token_file(&mut f, "token_file", &path), None);
        assert!(f.problems[0].ends_with(": is empty"), "{f:?}");
        std::fs::write(&path, "secret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut f = Findings::default();
        assert_eq!(
            read_token_file(&mut f, "token_file", &path).as_deref(),
            Some("secret")
        );
        assert!(
            f.is_ok() && f.warnings[0].contains("readable by every user (mode 0644)"),
            "{f:?}"
        );
    }

    #[test]
    fn the_base_url_drops_the_ingest_path() {
        let base = |s: &str| base_url(&reqwest::Url::parse(s).unwrap());
        assert_eq!(base("http://p:8443"), "http://p:8443");
        assert_eq!(base("https://p/apm/"), "https://p/apm");
        assert_eq!(base("http://p/v1/ingest"), "http://p");
    }

    #[test]
    fn messages_stay_on_one_line() {
        let mut f = Findings::default();
        f.problem("FATAL: no pg_hba.conf entry\nfor host");
        assert_eq!(f.problems, vec!["FATAL: no pg_hba.conf entry for host"]);
        assert_eq!(error_text(r#"{"error":"unknown token"}"#), "unknown token");
        assert_eq!(error_text("plain\n"), "plain");
    }
}
