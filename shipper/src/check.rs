//! `--check-config` for the shipper: everything that can be checked without
//! starting, each problem on its own line. The pieces every daemon shares
//! (the [`Findings`] list, directory and token-file checks, the processor
//! probe) are in [`bitville_daemon::check`].

use std::sync::Arc;

use bitville_daemon::check::{
    DirUse, Findings, check_dir, check_files, probe_processor, read_token_file,
};

use crate::config::{Config, ConfigSource, TOKEN_ENV};
use crate::metrics::Metrics;
use crate::spool::SpoolName;

/// The shipper's token and where it came from, as the daemon will read it.
fn shipper_token(f: &mut Findings, config: &Config) -> Option<String> {
    match (&config.token, &config.token_file) {
        (_, Some(path)) => read_token_file(f, "token_file", path),
        (Some(t), None) if t.trim().is_empty() => {
            f.problem("token: is empty");
            None
        }
        (Some(t), None) => Some(t.trim().to_owned()),
        (None, None) => {
            f.problem(format!("token: none given: set token or token_file, or the environment variable {TOKEN_ENV}"));
            None
        }
    }
}

/// Checks the shipper's configuration from `source`: the file parses, the
/// values are valid, the token is there, the spool and state directories are
/// usable, and the processor answers and knows the token.
///
/// Returns the findings and the summary line to print when there is no problem.
pub async fn check(source: &ConfigSource) -> (Findings, String) {
    let mut f = Findings::default();
    let config = match source.load() {
        Ok(c) => c,
        Err(e) => {
            f.problem(e.to_string());
            return (f, String::new());
        }
    };
    let token = shipper_token(&mut f, &config);
    // The other values are checked with a stand-in token, so that a missing
    // token does not hide them.
    let mut probe = config.clone();
    probe.token = Some(token.clone().unwrap_or_else(|| "unchecked".to_owned()));
    probe.token_file = None;
    let engine = match probe.to_engine(Arc::new(Metrics::default())) {
        Ok(e) => Some(e),
        Err(e) => {
            f.problem(e.to_string());
            None
        }
    };
    for dir in &config.spool_dirs {
        // Missing spool: the daemon would create it, but nothing writes there
        // (the PHP agent and tmpfiles.d name another place): a typo.
        check_dir(&mut f, "spool dir", dir, DirUse::ReadWrite, false);
        let hint = "; the PHP workers' umask must leave group read";
        check_files(
            &mut f,
            "spool dir",
            dir,
            DirUse::Read,
            |n| SpoolName::parse(n).is_some(),
            hint,
        );
    }
    if let Some(hm) = engine.as_ref().and_then(|e| e.host_metrics.as_ref())
        && !config.spool_dirs.contains(&hm.spool_dir)
    {
        check_dir(
            &mut f,
            "host_metrics.spool_dir",
            &hm.spool_dir,
            DirUse::ReadWrite,
            true,
        );
    }
    check_dir(
        &mut f,
        "state_dir",
        &config.state_dir,
        DirUse::ReadWrite,
        true,
    );
    let state_files = ["checkpoints.json", "quarantine.ndjson"];
    check_files(
        &mut f,
        "state_dir",
        &config.state_dir,
        DirUse::ReadWrite,
        |n| state_files.contains(&n),
        "",
    );
    let processor = probe_processor(
        &mut f,
        "processor_url",
        &config.processor_url,
        token.as_deref(),
    )
    .await;
    let summary = format!(
        "config ok: {} spool dir(s), {}, status on {}",
        config.spool_dirs.len(),
        processor.unwrap_or_default(),
        config.listen
    );
    (f, summary)
}
