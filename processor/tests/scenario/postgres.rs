//! A throwaway PostgreSQL cluster (the newest installed major, see
//! `bitville_testkit::postgres_bindir`): initdb into the stack's folder as the
//! `postgres` user (initdb and postgres refuse to run as root, and CI runs as
//! root), pg_stat_statements and auto_explain preloaded, the logging
//! collector writing stderr-format files that pg-watch tails.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The prefix the server writes and pg-watch's parser is compiled from.
pub const LOG_LINE_PREFIX: &str = "%m [%p] %q%u@%d %a ";

pub struct Cluster {
    /// PostgreSQL's server binaries.
    pub bin: PathBuf,
    /// Holds the data directory and the Unix socket.
    pub dir: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    stopped: bool,
}

/// `runuser -u postgres --` when we are root, nothing otherwise.
fn as_postgres(program: &str) -> Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Cluster {
    /// Creates and starts the cluster in `dir` (created here), with the
    /// server binaries in `bin`.
    ///
    /// # Errors
    /// initdb or pg_ctl failed; the message carries their output.
    pub fn start(bin: &Path, dir: &Path, port: u16) -> Result<Cluster, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let mut chown = Command::new("chown");
            chown.args(["-R", "postgres:postgres"]).arg(dir);
            run(chown, "chown of the cluster folder to postgres")?;
        }
        let data = dir.join("data");
        let mut initdb = as_postgres(&bin.join("initdb").to_string_lossy());
        initdb
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--locale=C",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&data);
        run(initdb, "initdb")?;
        let conf = format!(
            "\n# Bitville APM scenario harness\n\
             listen_addresses = ''\nport = {port}\nunix_socket_directories = '{sock}'\n\
             max_connections = 60\n\
             shared_preload_libraries = 'pg_stat_statements,auto_explain'\n\
             pg_stat_statements.track = all\n\
             logging_collector = on\nlog_destination = 'stderr'\nlog_directory = 'log'\n\
             log_line_prefix = '{LOG_LINE_PREFIX}'\nlc_messages = 'C'\n\
             log_lock_waits = on\ndeadlock_timeout = '200ms'\n\
             log_min_duration_statement = 50\nauto_explain.log_min_duration = 50\n\
             log_checkpoints = on\nlog_temp_files = 0\n\
             max_parallel_workers_per_gather = 0\nfsync = off\nsynchronous_commit = off\n",
            sock = dir.display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path)
            .map_err(|e| format!("{}: {e}", conf_path.display()))?;
        text.push_str(&conf);
        std::fs::write(&conf_path, text).map_err(|e| format!("{}: {e}", conf_path.display()))?;
        let mut start = as_postgres(&bin.join("pg_ctl").to_string_lossy());
        start
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(dir.join("startup.log"))
            .arg("start");
        run(start, "pg_ctl start").map_err(|e| {
            format!(
                "{e}\n{}",
                super::daemons::tail(&dir.join("startup.log"), 20)
            )
        })?;
        Ok(Cluster {
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            data,
            port,
            stopped: false,
        })
    }

    /// The server's log folder, which pg-watch tails.
    pub fn log_dir(&self) -> PathBuf {
        self.data.join("log")
    }

    /// DSN for PHP's PDO (Unix socket).
    pub fn pdo_dsn(&self) -> String {
        format!(
            "pgsql:host={};port={};dbname=postgres",
            self.dir.display(),
            self.port
        )
    }

    /// libpq conninfo for pg-watch.
    pub fn conninfo(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.dir.display(),
            self.port
        )
    }

    /// Runs SQL from a file with psql (stopping at the first error).
    ///
    /// # Errors
    /// psql failed; the message carries its output.
    pub fn psql_file(&self, file: &Path) -> Result<String, String> {
        let mut psql = self.psql();
        psql.arg("-f").arg(file);
        run(psql, &format!("psql -f {}", file.display()))
    }

    /// Runs one SQL command with psql.
    ///
    /// # Errors
    /// psql failed; the message carries its output.
    pub fn psql_command(&self, sql: &str) -> Result<String, String> {
        let mut psql = self.psql();
        psql.args(["-c", sql]);
        run(psql, &format!("psql -c {sql:?}"))
    }

    fn psql(&self) -> Command {
        let mut psql = Command::new(self.bin.join("psql"));
        psql.args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-h",
        ])
        .arg(&self.dir)
        .args(["-p", &self.port.to_string()]);
        psql
    }

    /// Stops the server (fast, then immediate if that fails).
    pub fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        for mode in ["fast", "immediate"] {
            let mut stop = as_postgres(&self.bin.join("pg_ctl").to_string_lossy());
            stop.args(["-w", "-t", "30", "-m", mode, "-D"])
                .arg(&self.data)
                .arg("stop");
            if run(stop, "pg_ctl stop").is_ok() {
                return;
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}
