//! Child processes of the scenario stack: the three Bitville daemons (their
//! real binaries, each with a config file written here) and php-fpm and nginx.
//!
//! Every child's stdout and stderr go to a log file in the stack's folder,
//! whose tail is printed when something fails.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a child gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// One long-running child that can be stopped and started again with the
/// same command line (the processor is restarted to read its store).
pub struct Daemon {
    pub name: &'static str,
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(String, String)>,
    pub log: PathBuf,
    child: Option<Child>,
    /// A cgroup's `cgroup.procs` the process joins before it runs.
    cgroup: Option<PathBuf>,
}

impl Daemon {
    /// A daemon not started yet.
    pub fn new(name: &'static str, program: &Path, args: &[&str], log: PathBuf) -> Daemon {
        Daemon {
            name,
            program: program.to_owned(),
            args: args.iter().map(OsString::from).collect(),
            envs: vec![("RUST_LOG".into(), "info".into())],
            log,
            child: None,
            cgroup: None,
        }
    }

    /// Stops the process and starts it again inside the cgroup whose
    /// `cgroup.procs` is given (or where it was first, with `None`).
    ///
    /// # Errors
    /// It could not be started again.
    pub fn restart_in(&mut self, cgroup_procs: Option<&Path>) -> Result<(), String> {
        self.stop();
        self.cgroup = cgroup_procs.map(Path::to_owned);
        self.start()
    }

    /// Starts the process, appending its output to the log.
    ///
    /// # Errors
    /// The log cannot be opened or the program cannot be run.
    pub fn start(&mut self) -> Result<(), String> {
        let open = || -> std::io::Result<File> {
            OpenOptions::new().create(true).append(true).open(&self.log)
        };
        let (out, err) = (
            open().map_err(|e| format!("log {}: {e}", self.log.display()))?,
            open().map_err(|e| format!("log {}: {e}", self.log.display()))?,
        );
        let mut command = match &self.cgroup {
            // The shell joins the cgroup, then becomes the program.
            Some(procs) => {
                let mut c = Command::new("sh");
                c.args(["-c", "echo $$ > \"$0\" && exec \"$@\""])
                    .arg(procs)
                    .arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        let child = command
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run {} ({}): {e}", self.name, self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// The exit status when the process has ended on its own.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, then SIGKILL after [`STOP_GRACE`]; the exit status when it ran.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill(2) on the pid of our own child, which we have not reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "{} did not stop {} s after SIGTERM; killing it",
            self.name,
            STOP_GRACE.as_secs()
        );
        let _ = child.kill();
        child.wait().ok()
    }

    /// The last lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `lines` lines of a text file (empty when unreadable).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The Bitville binaries, found next to the processor binary cargo built
/// for this test (`target/<profile>/`).
pub struct Binaries {
    pub processor: PathBuf,
    pub shipper: PathBuf,
    pub pg_watch: PathBuf,
}

impl Binaries {
    /// # Errors
    /// The shipper or pg-watch binary is not built.
    pub fn find() -> Result<Binaries, String> {
        let processor = PathBuf::from(env!("CARGO_BIN_EXE_processor"));
        let dir = processor.parent().map(Path::to_owned).unwrap_or_default();
        let (shipper, pg_watch) = (dir.join("shipper"), dir.join("pg-watch"));
        for p in [&shipper, &pg_watch] {
            if !p.is_file() {
                return Err(format!(
                    "{} is missing: run `cargo build --workspace` (same CARGO_TARGET_DIR) before the scenarios",
                    p.display()
                ));
            }
        }
        Ok(Binaries {
            processor,
            shipper,
            pg_watch,
        })
    }
}

/// Writes a config file into the stack's folder.
///
/// # Errors
/// The file cannot be written.
pub fn write_config(dir: &Path, name: &str, text: &str) -> Result<PathBuf, String> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// TOML string literal (paths may hold anything).
pub fn toml_str(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// The processor's config: free port, temporary store, one known token, no
/// rate limit (the shipper and pg-watch share 127.0.0.1), UDP off.
pub fn processor_config(listen: &str, store: &Path, token: &str, project: &str) -> String {
    format!(
        "[server]\nlisten = {listen}\nudp_listen = \"\"\nmetrics_listen = \"127.0.0.1:0\"\nshutdown_grace_s = 5\n\n\
         [store]\npath = {store}\n\n\
         [limits]\nrequests_per_minute = 0\n\n\
         [[tokens]]\ntoken = {token}\nproject = {project}\n",
        listen = toml_str(listen),
        store = toml_str(&store.display().to_string()),
        token = toml_str(token),
        project = toml_str(project),
    )
}

/// The shipper's folders: the PHP agent's spool and its own state.
pub struct ShipperPaths<'a> {
    pub spool: &'a Path,
    pub state: &'a Path,
}

/// The shipper's config: quick batches and scans, and retries that never
/// open the breaker for long (the processor is restarted between scenarios
/// when its API cannot answer reports).
pub fn shipper_config(
    paths: &ShipperPaths<'_>,
    processor_url: &str,
    token: &str,
    project: &str,
    listen: &str,
) -> String {
    format!(
        "spool_dirs = [{spool}]\nstate_dir = {state}\nprocessor_url = {url}\ntoken = {token}\n\
         project = {project}\nlisten = {listen}\n\n\
         [batch]\nmax_age_ms = 200\n\n[tail]\nscan_interval_ms = 200\n\n\
         [retry]\nbackoff_base_ms = 100\nbackoff_max_ms = 1000\nbreaker_failures = 1000\nbreaker_cooldown_s = 1\n\n\
         [host_metrics]\nenabled = true\ninterval_s = 2\n",
        spool = toml_str(&paths.spool.display().to_string()),
        state = toml_str(&paths.state.display().to_string()),
        url = toml_str(processor_url),
        token = toml_str(token),
        project = toml_str(project),
        listen = toml_str(listen),
    )
}

/// What pg-watch needs to know about the cluster and where to keep its files.
pub struct PgWatchSetup<'a> {
    pub conninfo: &'a str,
    pub log_dir: &'a Path,
    pub log_line_prefix: &'a str,
    pub spool: &'a Path,
    pub state: &'a Path,
}

/// pg-watch's config: frequent activity samples (lock trees need several
/// per blocked period), statements deltas every 2 s, the cluster's stderr
/// logs from their beginning, its own spool shipped by its engine.
pub fn pg_watch_config(
    s: &PgWatchSetup<'_>,
    processor_url: &str,
    token: &str,
    project: &str,
    listen: &str,
) -> String {
    format!(
        "project = {project}\nhost = \"db-1\"\nspool_dir = {spool}\nstate_dir = {state}\n\n\
         [postgres]\nconninfo = {conninfo}\n\n\
         [activity]\ninterval_ms = 500\n\n[statements]\ninterval_s = 2\n\n\
         [logs]\ndirectory = {logs}\nlog_line_prefix = {prefix}\nstart_at = \"beginning\"\n\
         [[logs.sources]]\npattern = \"*.log\"\nformat = \"stderr\"\n\n\
         [host_metrics]\nenabled = true\ninterval_s = 2\n\n\
         [ship]\nprocessor_url = {url}\ntoken = {token}\n\n[http]\nlisten = {listen}\n",
        project = toml_str(project),
        spool = toml_str(&s.spool.display().to_string()),
        state = toml_str(&s.state.display().to_string()),
        conninfo = toml_str(s.conninfo),
        logs = toml_str(&s.log_dir.display().to_string()),
        prefix = toml_str(s.log_line_prefix),
        url = toml_str(processor_url),
        token = toml_str(token),
        listen = toml_str(listen),
    )
}
