//! The daemon under test: writes its config to a temp dir, starts the real `chopd run`, learns
//! the bound ports from its log (`bound oscin "NAME" on ADDR:PORT`), waits for `ready`, and
//! reads its CPU time and memory from /proc.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(15);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Chopd {
    child: Child,
    pub pid: u32,
    pub dir: PathBuf,
    keep_dir: bool,
    /// oscin operator name → bound port.
    pub ports: HashMap<String, u16>,
    /// Every line chopd wrote to stderr so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Chopd {
    /// Writes `config` as `chopd.toml` (and `files`) into a fresh temp dir, starts `bin run` on
    /// it and waits for `ready`. `wrap` is a command prefix that must exec its argument (so the
    /// pid stays chopd's), e.g. `chrt -f 20` or `nice -n -5`.
    pub fn start(
        bin: &Path,
        wrap: &[String],
        config: &str,
        files: &[(String, String)],
        keep_dir: bool,
    ) -> Result<Chopd, String> {
        let dir = temp_dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (name, text) in files {
            std::fs::write(dir.join(name), text).map_err(|e| format!("write {name}: {e}"))?;
        }
        let path = dir.join("chopd.toml");
        std::fs::write(&path, config).map_err(|e| format!("write config: {e}"))?;
        let mut cmd = match wrap.split_first() {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = cmd
            .arg("run")
            .arg(&path)
            .env("CHOPD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        let pid = child.id();
        let stderr = child.stderr.take().expect("piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        {
            let log = log.clone();
            // Keeps reading after start-up so chopd never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let mut d = Chopd {
            child,
            pid,
            dir,
            keep_dir,
            ports: HashMap::new(),
            log,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some((name, port)) = parse_bound(&line) {
                        d.ports.insert(name, port);
                    }
                    if line.trim_end().ends_with(" ready") || line.trim() == "ready" {
                        return Ok(d);
                    }
                }
                Err(_) => {
                    let log = d.log.lock().unwrap().join("\n");
                    let _ = d.stop();
                    return Err(format!("chopd did not become ready; its log:\n{log}"));
                }
            }
        }
    }

    /// SIGTERM, then SIGKILL after a bound.
    pub fn stop(&mut self) -> Result<ExitStatus, String> {
        if let Ok(Some(s)) = self.child.try_wait() {
            return Ok(s);
        }
        // SAFETY: kill(2) on the pid of a child we started and have not reaped.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err(format!(
            "chopd did not stop within {STOP_TIMEOUT:?} of SIGTERM (killed)"
        ))
    }

    /// Log lines at WARN or ERROR level.
    pub fn problems(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .cloned()
            .collect()
    }

    pub fn sample(&self) -> ProcSample {
        ProcSample::of(self.pid)
    }
}

impl Drop for Chopd {
    fn drop(&mut self) {
        let _ = self.stop();
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn temp_dir() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "chopd-bench-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// `… bound oscin "NAME" on ADDR:PORT` → (NAME, PORT).
fn parse_bound(line: &str) -> Option<(String, u16)> {
    let rest = line.split("bound oscin \"").nth(1)?;
    let (name, tail) = rest.split_once('"')?;
    let addr = tail.trim_start_matches(" on ").split_whitespace().next()?;
    let port = addr.rsplit(':').next()?.parse().ok()?;
    Some((name.to_string(), port))
}

/// CPU time and memory of a process at one instant.
#[derive(Clone, Debug, Default)]
pub struct ProcSample {
    pub at: Option<Instant>,
    /// utime + stime of the whole process, in clock ticks (/proc/PID/stat).
    pub ticks: u64,
    /// Per thread name: time on CPU in ns (/proc/PID/task/*/schedstat), summed over threads of
    /// the same name.
    pub threads: Vec<(String, u64)>,
    pub rss_kb: u64,
    pub hwm_kb: u64,
}

impl ProcSample {
    pub fn of(pid: u32) -> ProcSample {
        let at = Some(Instant::now());
        let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| stat_ticks(&s))
            .unwrap_or(0);
        let mut threads: Vec<(String, u64)> = Vec::new();
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for e in dir.flatten() {
                let p = e.path();
                let name = std::fs::read_to_string(p.join("comm"))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default();
                let ns = std::fs::read_to_string(p.join("schedstat"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0);
                match threads.iter_mut().find(|(n, _)| *n == name) {
                    Some(t) => t.1 += ns,
                    None => threads.push((name, ns)),
                }
            }
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kb = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0)
        };
        ProcSample {
            at,
            ticks,
            threads,
            rss_kb: kb("VmRSS:"),
            hwm_kb: kb("VmHWM:"),
        }
    }

    /// CPU use between `self` and a later sample, in % of one core (from utime + stime).
    pub fn cpu_pct_since(&self, earlier: &ProcSample) -> f64 {
        let secs = self.elapsed_since(earlier);
        let tck = clock_ticks_per_second();
        (self.ticks.saturating_sub(earlier.ticks)) as f64 / tck / secs * 100.0
    }

    /// Per-thread CPU use in % of one core (from schedstat, ns resolution).
    pub fn thread_pct_since(&self, earlier: &ProcSample) -> Vec<(String, f64)> {
        let secs = self.elapsed_since(earlier);
        self.threads
            .iter()
            .map(|(name, ns)| {
                let before = earlier
                    .threads
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(0, |t| t.1);
                (
                    name.clone(),
                    ns.saturating_sub(before) as f64 / 1e9 / secs * 100.0,
                )
            })
            .collect()
    }

    fn elapsed_since(&self, earlier: &ProcSample) -> f64 {
        match (self.at, earlier.at) {
            (Some(a), Some(b)) => a.duration_since(b).as_secs_f64().max(1e-9),
            _ => 1e-9,
        }
    }
}

fn stat_ticks(stat: &str) -> Option<u64> {
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Busy time of the whole machine (all cores), in clock ticks, from /proc/stat.
pub fn machine_busy_ticks() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().next() else {
        return 0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …: busy = all − idle − iowait.
    let total: u64 = v.iter().take(8).sum();
    total - v.get(3).copied().unwrap_or(0) - v.get(4).copied().unwrap_or(0)
}

/// Checks of the log and /proc parsers (`--self-test`).
pub mod checks {
    pub fn bound_line() {
        let l = "2026-11-01T10:00:00Z  INFO bound oscin \"bench\" on 127.0.0.1:40000";
        assert_eq!(super::parse_bound(l), Some(("bench".into(), 40000)));
        let l = " INFO op=in bound oscin \"x y\" on [::]:9000";
        assert_eq!(super::parse_bound(l), Some(("x y".into(), 9000)));
    }

    pub fn stat_fields() {
        let s = "123 (a b) S 1 2 3 4 5 6 7 8 9 10 11 12 13";
        assert_eq!(super::stat_ticks(s), Some(11 + 12));
    }
}
