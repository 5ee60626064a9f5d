//! A host under memory pressure, for real: a swap file, a memory cgroup
//! with a limit below what its processes touch, php-fpm started inside it
//! (see [`Pressure::procs`]), and a memory-hungry process beside it (as a
//! batch job on the same host would be). The kernel then swaps the
//! workers' pages out and in, and every request slows down. Needs root, a
//! writable cgroup v1 memory hierarchy and `swapon` (CI runs as root in a
//! VM that has them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Size of the swap file.
const SWAP_MIB: u64 = 1024;
/// The cgroup's memory limit, and what the hungry process keeps touching.
const LIMIT_MIB: u64 = 24;
const HOG_MIB: u64 = 64;

pub struct Pressure {
    swapfile: PathBuf,
    cgroup: PathBuf,
    /// The cgroup the processes inside came from, where they go back.
    home: PathBuf,
    hog: Option<Child>,
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("{}: {e}", path.display()))
}

/// This process's memory cgroup folder (cgroup v1).
fn own_cgroup() -> Result<PathBuf, String> {
    let text = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    // Lines are "<id>:<controllers>:<path>".
    let rel = text
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((controllers, path))
        })
        .find(|(controllers, _)| controllers.split(',').any(|c| c == "memory"))
        .map(|(_, path)| path.trim_start_matches('/').to_owned())
        .ok_or("no cgroup v1 memory controller for this process")?;
    let dir = Path::new("/sys/fs/cgroup/memory").join(rel);
    if dir.join("cgroup.procs").is_file() {
        Ok(dir)
    } else {
        Err(format!("{} is not a memory cgroup", dir.display()))
    }
}

impl Pressure {
    /// Swap on, the cgroup made, and the hungry process started in it.
    ///
    /// # Errors
    /// A step failed (not root, no cgroup v1 memory hierarchy, no swap);
    /// what was done is undone.
    pub fn start(dir: &Path) -> Result<Pressure, String> {
        let home = own_cgroup()?;
        let mut p = Pressure {
            swapfile: dir.join("swapfile"),
            cgroup: home.join(format!("bitville-scenario-{}", std::process::id())),
            home,
            hog: None,
        };
        match p.set_up() {
            Ok(()) => Ok(p),
            Err(e) => {
                p.tear_down();
                Err(e)
            }
        }
    }

    /// The cgroup's `cgroup.procs`: a process that writes its pid there
    /// runs under the pressure.
    pub fn procs(&self) -> PathBuf {
        self.cgroup.join("cgroup.procs")
    }

    fn set_up(&mut self) -> Result<(), String> {
        let swap = self.swapfile.display().to_string();
        run(
            "dd",
            &[
                "if=/dev/zero",
                &format!("of={swap}"),
                "bs=1M",
                &format!("count={SWAP_MIB}"),
                "status=none",
            ],
        )?;
        std::fs::set_permissions(
            &self.swapfile,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .map_err(|e| format!("{swap}: {e}"))?;
        run("mkswap", &[&swap])?;
        run("swapon", &[&swap])?;
        std::fs::create_dir_all(&self.cgroup)
            .map_err(|e| format!("{}: {e}", self.cgroup.display()))?;
        write(
            &self.cgroup.join("memory.limit_in_bytes"),
            &(LIMIT_MIB << 20).to_string(),
        )?;
        write(&self.cgroup.join("memory.swappiness"), "100")?;
        let procs = self.procs();
        // The hungry process joins the cgroup before it allocates, then
        // touches every page of its memory again and again.
        let hog = format!(
            "echo $$ > {procs} && exec python3 -c 'b = bytearray({bytes})\nwhile True:\n    for i in range(0, len(b), 4096): b[i] = (b[i] + 1) % 256'",
            procs = procs.display(),
            bytes = HOG_MIB << 20
        );
        let child = Command::new("sh")
            .args(["-c", &hog])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("the memory-hungry process: {e}"))?;
        self.hog = Some(child);
        Ok(())
    }

    /// Everything undone, best effort: the hungry process killed, what is
    /// left in the cgroup moved back, the cgroup removed, swap off.
    fn tear_down(&mut self) {
        if let Some(mut hog) = self.hog.take() {
            let _ = hog.kill();
            let _ = hog.wait();
        }
        let home = self.home.join("cgroup.procs");
        if let Ok(left) = std::fs::read_to_string(self.procs()) {
            for p in left.split_whitespace() {
                let _ = std::fs::write(&home, p);
            }
        }
        let _ = std::fs::remove_dir(&self.cgroup);
        let swap = self.swapfile.display().to_string();
        let _ = run("swapoff", &[&swap]);
        let _ = std::fs::remove_file(&self.swapfile);
    }
}

/// Pages swapped in and out since boot (`/proc/vmstat`).
pub fn swapped_pages() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/vmstat").unwrap_or_default();
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .unwrap_or(0)
    };
    (get("pswpin "), get("pswpout "))
}

impl Drop for Pressure {
    fn drop(&mut self) {
        self.tear_down();
    }
}
