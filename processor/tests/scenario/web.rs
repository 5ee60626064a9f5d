//! The PHP application under php-fpm behind nginx, with the Bitville APM
//! agent prepended, as in production.
//!
//! The agent runs with the settings a user gets by default (a 500 ms
//! threshold, one fast request in ten kept as a summary, `profiler = auto`)
//! or with profiling off: [`Web::set_profiling`] rewrites its config between
//! runs, which the agent picks up at the next request.
//!
//! php-fpm with its default of workers that live for ever: Debian's Excimer
//! 1.0.4 crashes a process that starts and stops its timer often enough
//! (DESIGN.md, known hazards), and `auto` must avoid that on its own. Every
//! worker that died on a signal is listed by [`Web::crashes`].

use std::path::{Path, PathBuf};

use super::daemons::{Daemon, toml_str, write_config};

/// PHP workers: the lock scenario needs a blocker, its queue of waiters and
/// the baseline traffic at once.
const FPM_WORKERS: u32 = 12;

/// How the agent profiles during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profiling {
    /// `profiler = auto`: what the agent picks on this machine.
    Auto,
    /// `profiler_enabled = false`: requests, SQL and CPU time only.
    Off,
}

impl Profiling {
    pub fn label(self) -> &'static str {
        match self {
            Profiling::Auto => "profiler auto",
            Profiling::Off => "no profiler",
        }
    }
}

pub struct Web {
    pub fpm: Daemon,
    pub nginx: Daemon,
    pub port: u16,
    fpm_log: PathBuf,
    pub php_errors: PathBuf,
    agent: AgentConfig,
}

/// The agent's profiling.ini and what it is written from.
struct AgentConfig {
    path: PathBuf,
    project: String,
    spool: PathBuf,
    state: PathBuf,
}

impl AgentConfig {
    /// The defaults a user gets from the example config (`threshold_ms =
    /// 500`, `sample_rate = 0.1`, `profiler = auto`), or profiling off.
    fn write(&self, profiling: Profiling) -> Result<(), String> {
        let profiler = match profiling {
            Profiling::Auto => "profiler_enabled = true\nprofiler = auto",
            Profiling::Off => "profiler_enabled = false",
        };
        let text = format!(
            "[general]\nenabled = true\nthreshold_ms = 500\nproject_name = {project}\nsample_rate = 0.1\n\n\
             [profiling]\n{profiler}\nsql_enabled = true\nsql_tag_application_name = true\n\n\
             [transmission]\nspool_dir = {spool}\nstate_dir = {state}\n",
            project = self.project,
            spool = self.spool.display(),
            state = self.state.display(),
        );
        std::fs::write(&self.path, text).map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

/// What the application and the agent are given.
pub struct WebSetup<'a> {
    pub dir: &'a Path,
    pub app_dir: &'a Path,
    pub agent: &'a Path,
    pub pdo_dsn: &'a str,
    /// The base URL of the application's upstream services.
    pub upstream: &'a str,
    pub spool: &'a Path,
    pub project: &'a str,
    pub port: u16,
}

fn fpm_conf(s: &WebSetup<'_>, ini: &Path, fpm_log: &Path, php_errors: &Path) -> String {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let user = if root {
        "user = root\ngroup = root\n"
    } else {
        ""
    };
    format!(
        "[global]\npid = {dir}/fpm.pid\nerror_log = {fpm_log}\ndaemonize = no\n\n\
         [app]\n{user}listen = {dir}/fpm.sock\npm = static\npm.max_children = {FPM_WORKERS}\n\
         request_terminate_timeout = 60\nclear_env = yes\n\
         env[BITVILLE_APM_CONFIG] = {ini}\nenv[SCENARIO_PG_DSN] = {dsn}\n\
         env[SCENARIO_UPSTREAM] = {upstream}\n\
         php_admin_value[auto_prepend_file] = {agent}\n\
         php_admin_value[error_log] = {php_errors}\nphp_admin_flag[log_errors] = on\n\
         php_admin_flag[display_errors] = off\n",
        dir = s.dir.display(),
        fpm_log = fpm_log.display(),
        ini = ini.display(),
        // Double quotes: the DSN holds ';', which starts a comment otherwise.
        dsn = toml_str(s.pdo_dsn),
        upstream = s.upstream,
        agent = s.agent.display(),
        php_errors = php_errors.display(),
    )
}

fn nginx_conf(s: &WebSetup<'_>) -> String {
    // SAFETY: geteuid has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;\n"
    } else {
        ""
    };
    let d = s.dir.display();
    format!(
        "daemon off;\nworker_processes 1;\n{user}pid {d}/nginx.pid;\nerror_log {d}/nginx-error.log;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n  access_log off;\n\
           client_body_temp_path {d}/nginx/body;\n  proxy_temp_path {d}/nginx/proxy;\n\
           fastcgi_temp_path {d}/nginx/fastcgi;\n  uwsgi_temp_path {d}/nginx/uwsgi;\n  scgi_temp_path {d}/nginx/scgi;\n\
           server {{\n    listen 127.0.0.1:{port};\n    location / {{\n\
               include /etc/nginx/fastcgi_params;\n\
               fastcgi_param SCRIPT_FILENAME {app}/index.php;\n      fastcgi_param SCRIPT_NAME /index.php;\n\
               fastcgi_read_timeout 60s;\n      fastcgi_pass unix:{d}/fpm.sock;\n    }}\n  }}\n}}\n",
        port = s.port,
        app = s.app_dir.display(),
    )
}

impl Web {
    /// Writes the configs and starts php-fpm, then nginx.
    ///
    /// # Errors
    /// A config cannot be written or a program cannot be run.
    pub fn start(s: &WebSetup<'_>, fpm: &Path, nginx: &Path) -> Result<Web, String> {
        let state = s.dir.join("agent-state");
        for d in [state.clone(), s.dir.join("nginx")] {
            std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let agent = AgentConfig {
            path: s.dir.join("profiling.ini"),
            project: s.project.to_owned(),
            spool: s.spool.to_owned(),
            state,
        };
        agent.write(Profiling::Auto)?;
        let ini = &agent.path;
        let fpm_log = s.dir.join("php-fpm.log");
        let php_errors = s.dir.join("php-errors.log");
        let fpm_path = write_config(
            s.dir,
            "php-fpm.conf",
            &fpm_conf(s, ini, &fpm_log, &php_errors),
        )?;
        let nginx_path = write_config(s.dir, "nginx.conf", &nginx_conf(s))?;
        let fpm_path = fpm_path.display().to_string();
        let mut fpm_args = vec!["--nodaemonize", "--fpm-config", fpm_path.as_str()];
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            fpm_args.insert(0, "--allow-to-run-as-root");
        }
        let mut fpm = Daemon::new("php-fpm", fpm, &fpm_args, s.dir.join("php-fpm.out"));
        fpm.start()?;
        let (err_log, prefix, conf) = (
            s.dir.join("nginx-error.log").display().to_string(),
            format!("{}/", s.dir.join("nginx").display()),
            nginx_path.display().to_string(),
        );
        let mut nginx = Daemon::new(
            "nginx",
            nginx,
            &["-e", &err_log, "-p", &prefix, "-c", &conf],
            s.dir.join("nginx.out"),
        );
        nginx.start()?;
        Ok(Web {
            fpm,
            nginx,
            port: s.port,
            fpm_log,
            php_errors,
            agent,
        })
    }

    /// Waits until the application answers `/ping` (after a restart of php-fpm).
    ///
    /// # Errors
    /// It did not within 30 s.
    pub fn wait_answering(&self) -> Result<(), String> {
        let addr = format!("127.0.0.1:{}", self.port);
        super::wait_until(
            "the PHP application answering /ping",
            std::time::Duration::from_secs(30),
            || matches!(super::http_get(&addr, "/ping", None), Ok((200, body)) if body.starts_with("pong")),
        )
    }

    /// Switches the agent's profiling; the next request reads the new config.
    ///
    /// # Errors
    /// The config could not be written.
    pub fn set_profiling(&self, p: Profiling) -> Result<(), String> {
        self.agent.write(p)
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// php-fpm's lines about workers that died on a signal.
    pub fn crashes(&self) -> Vec<String> {
        std::fs::read_to_string(&self.fpm_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("exited on signal"))
            .map(str::to_owned)
            .collect()
    }

    /// The last lines of the php-fpm log and PHP's error log.
    pub fn logs(&self) -> String {
        format!(
            "php-fpm log:\n{}\nPHP errors:\n{}\nnginx:\n{}",
            super::daemons::tail(&self.fpm_log, 15),
            super::daemons::tail(&self.php_errors, 15),
            self.nginx.log_tail(10)
        )
    }
}
