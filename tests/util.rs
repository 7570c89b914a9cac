//! Test harness: the one config builder ([`Config`] and the graphs several subjects share),
//! running the real `chopd` binary on a config written to a fresh directory, learning the ports
//! it bound (port 0 in configs) and its reload outcomes from the fields of its log lines
//! (`key=value` after the message, never the message itself), and talking to it over 127.0.0.1:
//! OSC, the control port, a fake systemd notify socket. Every wait has a timeout; nothing sleeps
//! to synchronise.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rosc::{OscMessage, OscPacket, OscType};

pub const BIN: &str = env!("CARGO_BIN_EXE_chopd");
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// `in` → `show` by autoname: the export most tests give their OSC In.
pub const TO_SHOW: &str = r#"export = { method = "autoname", root = "show" }"#;

/// The one config builder of the tests: top-level keys, `[control]`, destinations, operators
/// and any raw TOML, written in that order whatever order they were added in (TOML wants the
/// top-level keys before any table). Every test config is built here; tests that edit a config
/// for a reload do it on the text, which keeps these spellings (`rate = 100`, `[control]\nport
/// = 0`, [`TO_SHOW`]).
#[derive(Clone)]
pub struct Config {
    rate: u32,
    top: Vec<String>,
    control: bool,
    dests: Vec<String>,
    ops: Vec<String>,
    tail: Vec<String>,
}

impl Config {
    /// `rate = 100` and nothing else.
    pub fn new() -> Config {
        Config {
            rate: 100,
            top: Vec::new(),
            control: false,
            dests: Vec::new(),
            ops: Vec::new(),
            tail: Vec::new(),
        }
    }

    pub fn rate(mut self, rate: u32) -> Config {
        self.rate = rate;
        self
    }

    /// Top-level keys (`rss_warn_mb = 200`).
    pub fn top(mut self, lines: &str) -> Config {
        self.top.push(lines.to_string());
        self
    }

    /// A control port on a free port of 127.0.0.1.
    pub fn control(mut self) -> Config {
        self.control = true;
        self
    }

    /// Destination `name` on 127.0.0.1:`port`, with the prefix `/name`.
    pub fn dest(mut self, name: &str, port: u16) -> Config {
        self.dests.push(format!(
            "[destinations.{name}]\nhost = \"127.0.0.1\"\nport = {port}\nprefix = \"/{name}\"\n"
        ));
        self
    }

    /// Destination `name` on 127.0.0.1:`port`, without a prefix.
    pub fn dest_unprefixed(mut self, name: &str, port: u16) -> Config {
        self.dests.push(format!(
            "[destinations.{name}]\nhost = \"127.0.0.1\"\nport = {port}\n"
        ));
        self
    }

    /// An operator of any kind; `settings` are its further lines.
    pub fn op(mut self, name: &str, kind: &str, settings: &str) -> Config {
        self.ops.push(format!(
            "[[operator]]\nname = \"{name}\"\ntype = \"{kind}\"\n{settings}\n"
        ));
        self
    }

    /// An OSC In on a free port of 127.0.0.1 (the log says which: [`Daemon::port`]).
    pub fn oscin(self, name: &str, settings: &str) -> Config {
        self.oscin_at(name, 0, settings)
    }

    /// An OSC In on 127.0.0.1:`port`.
    pub fn oscin_at(self, name: &str, port: u16, settings: &str) -> Config {
        let settings = format!("port = {port}\nlocal_address = \"127.0.0.1\"\n{settings}");
        self.op(name, "oscin", &settings)
    }

    /// An Info CHOP of `of` (`/` for the daemon itself).
    pub fn info(self, name: &str, of: &str, settings: &str) -> Config {
        self.op(name, "info", &format!("op = \"{of}\"\n{settings}"))
    }

    /// A Script CHOP running `file` (relative to the config) on `inputs` (`"in", "x"`).
    pub fn script(self, name: &str, file: &str, inputs: &str, settings: &str) -> Config {
        let settings = format!("callbacks = \"{file}\"\ninputs = [{inputs}]\n{settings}");
        self.op(name, "script", &settings)
    }

    /// Raw TOML after everything else (`[python]`, more tables).
    pub fn raw(mut self, text: &str) -> Config {
        self.tail.push(text.to_string());
        self
    }

    pub fn text(&self) -> String {
        let mut s = format!("\nrate = {}\n", self.rate);
        for t in &self.top {
            s += t;
            s += "\n";
        }
        if self.control {
            s += "\n[control]\nport = 0\n";
        }
        for part in self.dests.iter().chain(&self.ops).chain(&self.tail) {
            s += "\n";
            s += part;
        }
        s
    }
}

/// `in` (OSC In) exports to `show` on `port`: the smallest graph that carries OSC through.
pub fn in_to_show(port: u16) -> Config {
    Config::new().dest("show", port).oscin("in", TO_SHOW)
}

/// A control port; `in` (OSC In) exports to `show`; `stats` (Info CHOP of `in`) exports to
/// `stats`: the graph of the control port, reload and service tests.
pub fn in_and_stats(show: u16, stats: u16) -> Config {
    Config::new()
        .control()
        .dest("show", show)
        .dest("stats", stats)
        .oscin("in", TO_SHOW)
        .info(
            "stats",
            "in",
            r#"export = { method = "autoname", root = "stats" }"#,
        )
}

/// [`in_and_stats`] and a Script CHOP `synth` (tests/fixtures/scripts/synth.py, custom
/// parameters Gain, Offset and pulses Go, Hang) exporting to `show`, whose parameters the OSC In
/// `lfo` drives by export; `budget_ms` bounds each of its callbacks.
pub fn synth(show: u16, stats: u16, budget_ms: u32) -> Config {
    in_and_stats(show, stats)
        .script(
            "synth",
            "synth.py",
            "",
            &format!("cook_budget_ms = {budget_ms}\n{TO_SHOW}"),
        )
        .oscin(
            "lfo",
            r#"export = { method = "autoname", root = "op:synth" }"#,
        )
}

/// The value of `key` (`VmRSS`, `SigIgn`, …) in /proc/PID/status, trimmed; `None` when the
/// process is gone or has no such line. Per-thread figures there are the main thread's.
pub fn proc_status(pid: u32, key: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim().to_string())
    })
}

/// The text of `tests/fixtures/scripts/NAME`.
pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(repo().join("tests/fixtures/scripts").join(name)).unwrap()
}

/// The fake systemd end of `NOTIFY_SOCKET`: a unix datagram socket bound here.
pub struct Notify {
    pub sock: std::os::unix::net::UnixDatagram,
    /// The value for `NOTIFY_SOCKET`.
    pub env: String,
    _dir: TempDir,
}

impl Notify {
    /// A socket at a filesystem path.
    pub fn at_path() -> Notify {
        let dir = TempDir::new();
        let p = dir.path("notify");
        Notify {
            sock: std::os::unix::net::UnixDatagram::bind(&p).unwrap(),
            env: p.to_str().unwrap().to_string(),
            _dir: dir,
        }
    }

    /// A socket in the abstract namespace (`@name`), as systemd uses by default.
    pub fn abstract_() -> Notify {
        use std::os::linux::net::SocketAddrExt;
        let dir = TempDir::new();
        let name = format!(
            "chopd-test-{}",
            dir.0.file_name().unwrap().to_str().unwrap()
        );
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        Notify {
            sock: std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap(),
            env: format!("@{name}"),
            _dir: dir,
        }
    }

    pub fn next(&self, timeout: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        let n = self.sock.recv(&mut buf).ok()?;
        Some(String::from_utf8(buf[..n].to_vec()).unwrap())
    }

    /// The next message that is not a watchdog ping.
    pub fn next_state(&self) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self
                .next(left.max(Duration::from_millis(1)))
                .expect("no notification within the timeout");
            if m != "WATCHDOG=1" {
                return m;
            }
        }
    }

    /// Arrival times of watchdog pings within `window`.
    pub fn pings(&self, window: Duration) -> Vec<Instant> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return out;
            }
            if let Some(m) = self.next(left) {
                if m == "WATCHDOG=1" {
                    out.push(Instant::now());
                }
            }
        }
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "chopd-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Default)]
struct Log {
    lines: Vec<String>,
    closed: bool,
}

/// A running `chopd run`. Stopped (SIGTERM, then SIGKILL after a bound) on drop.
pub struct Daemon {
    pub child: Child,
    pub dir: TempDir,
    pub config: PathBuf,
    log: Arc<(Mutex<Log>, Condvar)>,
}

/// The fields of one log line, key → value (quoted values unescaped).
pub type Fields = HashMap<String, String>;

/// The `key=value` fields of a log line: a value is a bare token or a quoted string with Rust
/// escapes. Words of the message that are not `key=value` are skipped; a key seen twice keeps its
/// last value (the fields come after the message).
pub fn fields(line: &str) -> Fields {
    let mut out = Fields::new();
    let mut rest = line;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return out;
        }
        let key_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        if key_len > 0 && rest[key_len..].starts_with('=') {
            let key = &rest[..key_len];
            let after = &rest[key_len + 1..];
            if let Some(quoted) = after.strip_prefix('"') {
                let (value, tail) = unescape(quoted);
                out.insert(key.to_string(), value);
                rest = tail;
            } else {
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                out.insert(key.to_string(), after[..end].to_string());
                rest = &after[end..];
            }
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            rest = &rest[end..];
        }
    }
}

/// The string before the closing quote (escapes resolved), and what follows it.
fn unescape(s: &str) -> (String, &str) {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (out, &s[i + 1..]),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('0') => out.push('\0'),
                Some('u') => {
                    let hex: String = chars
                        .by_ref()
                        .map(|(_, c)| c)
                        .skip_while(|&c| c == '{')
                        .take_while(|&c| c != '}')
                        .collect();
                    out.extend(u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32));
                }
                Some(c) => out.push(c),
                None => {}
            },
            c => out.push(c),
        }
    }
    (out, "")
}

/// The port of an `addr` field (`127.0.0.1:9000`, `[::]:9000`).
fn port_of(f: &Fields) -> Option<u16> {
    f.get("addr")?.rsplit(':').next()?.parse().ok()
}

impl Daemon {
    /// Writes `files` (name, text) and `config` (as `chopd.toml`) into a fresh directory and
    /// starts the daemon on it; waits for `ready`.
    pub fn start(config: &str, files: &[(&str, &str)]) -> Daemon {
        Self::start_env(config, files, &[])
    }

    pub fn start_env(config: &str, files: &[(&str, &str)], env: &[(&str, &str)]) -> Daemon {
        Self::spawn(config, files, env).ready()
    }

    /// Starts `chopd run` again on this daemon's directory and config, once it has ended (a
    /// crash, a stop) or after stopping it; waits for `ready`.
    pub fn restart(mut self) -> Daemon {
        let dir = std::mem::replace(&mut self.dir, TempDir(PathBuf::new()));
        let config = self.config.clone();
        drop(self);
        Self::spawn_in(dir, config, &[]).ready()
    }

    /// Waits for the line whose message is exactly `ready`.
    fn ready(self) -> Daemon {
        let d = self;
        // The line whose message is exactly `ready` (others may contain the word: "python
        // ready …").
        let mut n = 1;
        loop {
            let line = d
                .wait_for_nth("ready", n, TIMEOUT)
                .unwrap_or_else(|| panic!("chopd did not become ready; log:\n{}", d.log_text()));
            if line.trim_end().ends_with(" ready") {
                return d;
            }
            n += 1;
        }
    }

    /// Starts without waiting for `ready` (for tests of failing start-ups).
    pub fn spawn(config: &str, files: &[(&str, &str)], env: &[(&str, &str)]) -> Daemon {
        let dir = TempDir::new();
        for (name, text) in files {
            dir.write(name, text);
        }
        let config = dir.write("chopd.toml", config);
        Self::spawn_in(dir, config, env)
    }

    fn spawn_in(dir: TempDir, config: PathBuf, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(BIN);
        cmd.arg("run")
            .arg(&config)
            .env("CHOPD_LOG", "info")
            // Show state is kept only where a test says (`state_dir`).
            .env_remove("STATE_DIRECTORY")
            // Each daemon's local socket in its own directory, as its unit's
            // RuntimeDirectory= would give it.
            .env("RUNTIME_DIRECTORY", &dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn chopd");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new((Mutex::new(Log::default()), Condvar::new()));
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if std::env::var_os("CHOPD_TEST_ECHO").is_some() {
                        eprintln!("chopd| {line}");
                    }
                    log.0.lock().unwrap().lines.push(line);
                    log.1.notify_all();
                }
                log.0.lock().unwrap().closed = true;
                log.1.notify_all();
            });
        }
        Daemon {
            child,
            dir,
            config,
            log,
        }
    }

    /// Port bound by operator `name` (the latest `listening` line for it: a reload may move it).
    pub fn port(&self, name: &str) -> u16 {
        self.logged(|f| f.get("op").is_some_and(|o| o == name) && f.contains_key("addr"))
            .last()
            .and_then(port_of)
            .unwrap_or_else(|| panic!("no operator \"{name}\" bound; log:\n{}", self.log_text()))
    }

    /// The local administration socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path("chopd.sock")
    }

    /// Port of the control port (the latest, as a reload may move it).
    pub fn control_port(&self) -> u16 {
        self.logged(is_control_listener)
            .last()
            .and_then(port_of)
            .unwrap_or_else(|| panic!("no control port bound; log:\n{}", self.log_text()))
    }

    /// The fields of every log line so far whose fields satisfy `pred`.
    pub fn logged(&self, pred: impl Fn(&Fields) -> bool) -> Vec<Fields> {
        let log = self.log.0.lock().unwrap();
        log.lines.iter().map(|l| fields(l)).filter(pred).collect()
    }

    /// Waits until `n` log lines have fields satisfying `pred`; returns the n-th one's fields.
    pub fn wait_logged(
        &self,
        pred: impl Fn(&Fields) -> bool,
        n: usize,
        timeout: Duration,
    ) -> Option<Fields> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.log;
        let mut log = lock.lock().unwrap();
        loop {
            if let Some(f) = log.lines.iter().map(|l| fields(l)).filter(&pred).nth(n - 1) {
                return Some(f);
            }
            let now = Instant::now();
            if now >= deadline || log.closed {
                return None;
            }
            log = cv.wait_timeout(log, deadline - now).unwrap().0;
        }
    }

    /// The outcome of the `n`-th reload (1-based): the fields of its `reload=…` line, whose
    /// `reload` is `applied` (with `changed`) or `rejected` (with `errors`). Panics on timeout.
    pub fn reload(&self, n: usize) -> Fields {
        self.wait_logged(is_reload, n, TIMEOUT)
            .unwrap_or_else(|| panic!("no outcome of reload {n}; log:\n{}", self.log_text()))
    }

    /// Like [`Daemon::reload`], asserting the reload was applied; returns what changed (empty
    /// when nothing did).
    pub fn reload_applied(&self, n: usize) -> String {
        let r = self.reload(n);
        assert_eq!(
            r["reload"],
            "applied",
            "reload {n}: {r:?}; log:\n{}",
            self.log_text()
        );
        r["changed"].clone()
    }

    /// How many log lines contain `needle` so far.
    pub fn count(&self, needle: &str) -> usize {
        let log = self.log.0.lock().unwrap();
        log.lines.iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits (bounded) for the process to exit; returns its status and how long it took.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<(std::process::ExitStatus, Duration)> {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some((s, t0.elapsed()));
            }
            if t0.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until a log line contains `needle`, returning that line.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_for_nth(needle, 1, timeout)
    }

    /// Waits until `n` log lines contain `needle`; returns the n-th.
    pub fn wait_for_nth(&self, needle: &str, n: usize, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.log;
        let mut log = lock.lock().unwrap();
        loop {
            if let Some(l) = log.lines.iter().filter(|l| l.contains(needle)).nth(n - 1) {
                return Some(l.clone());
            }
            let now = Instant::now();
            if now >= deadline || log.closed {
                return None;
            }
            log = cv.wait_timeout(log, deadline - now).unwrap().0;
        }
    }

    pub fn log_text(&self) -> String {
        self.log.0.lock().unwrap().lines.join("\n")
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the PID of the child this harness started.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Sends SIGTERM and waits for the exit status (bounded).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("chopd did not stop within {TIMEOUT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Replaces the config as docs/reliability.md advises: a temporary file renamed over it.
    pub fn rewrite_config(&self, text: &str) {
        let tmp = self.dir.write(".chopd.toml.new", text);
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    /// Rewrites the config file in place (the same inode), as `>`, `cp` or scp do.
    pub fn write_in_place(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
    }
}

/// A reload's outcome line.
pub fn is_reload(f: &Fields) -> bool {
    f.contains_key("reload")
}

/// A line of the stop with `stop=STAGE` (`begin`, `done`, `timeout`, `forced`).
pub fn is_stop(stage: &'static str) -> impl Fn(&Fields) -> bool {
    move |f| f.get("stop").is_some_and(|s| s == stage)
}

/// A line about the clock with `clock=STATE` (`stalled`, `running` again).
pub fn is_clock(state: &'static str) -> impl Fn(&Fields) -> bool {
    move |f| f.get("clock").is_some_and(|s| s == state)
}

/// A `listening` line of the control port.
pub fn is_control_listener(f: &Fields) -> bool {
    f.get("kind").is_some_and(|k| k == "control") && f.contains_key("addr")
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A failing test shows what the daemon said: CI keeps only the test output.
        if std::thread::panicking() {
            eprintln!(
                "chopd log ({}):\n{}",
                self.config.display(),
                self.log_text()
            );
        }
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An OSC receiver on 127.0.0.1 (an export destination).
pub struct OscRx {
    pub sock: UdpSocket,
    /// Messages received (bundles unpacked) but not yet looked at.
    backlog: std::cell::RefCell<std::collections::VecDeque<OscMessage>>,
    /// The latest numeric value seen at each address (exports are sent on change, so a value
    /// may have gone by while a test waited for another one).
    latest: std::cell::RefCell<HashMap<String, f32>>,
}

impl OscRx {
    pub fn new() -> OscRx {
        Self::at(0)
    }

    /// A receiver on 127.0.0.1:`port` (0: any free port; a port a dropped receiver had: a
    /// destination a daemon sends to again after a restart).
    pub fn at(port: u16) -> OscRx {
        let sock = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        OscRx {
            sock,
            backlog: Default::default(),
            latest: Default::default(),
        }
    }

    pub fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    /// Next message (bundles unpacked), or None after `timeout`.
    pub fn recv_packet(&self, timeout: Duration) -> Option<Vec<OscMessage>> {
        self.sock.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = vec![0u8; 65536];
        let n = self.sock.recv(&mut buf).ok()?;
        let (_, p) = rosc::decoder::decode_udp(&buf[..n]).expect("chopd sent a malformed packet");
        let mut out = Vec::new();
        flatten(p, &mut out);
        Some(out)
    }

    /// Takes messages in arrival order until `pred` holds for one and returns it (the ones
    /// before it are consumed, the ones after it stay). Panics after `timeout`.
    pub fn until(&self, timeout: Duration, pred: impl FnMut(&OscMessage) -> bool) -> OscMessage {
        self.try_until(timeout, pred).unwrap_or_else(|seen| {
            panic!("no matching OSC message within {timeout:?}; the last ones were: {seen:?}")
        })
    }

    /// [`OscRx::until`] without the panic: after `timeout`, the last messages looked at.
    pub fn try_until(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&OscMessage) -> bool,
    ) -> Result<OscMessage, Vec<OscMessage>> {
        let deadline = Instant::now() + timeout;
        let mut seen = std::collections::VecDeque::new();
        loop {
            while let Some(m) = self.backlog.borrow_mut().pop_front() {
                if let Some(v) = m.args.first().and_then(number) {
                    self.latest.borrow_mut().insert(m.addr.clone(), v);
                }
                if pred(&m) {
                    return Ok(m);
                }
                seen.push_back(m);
                if seen.len() > 20 {
                    seen.pop_front();
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(seen.into());
            }
            if let Some(msgs) = self.recv_packet(left) {
                self.backlog.borrow_mut().extend(msgs);
            }
        }
    }

    /// Waits until the latest value at `addr` satisfies `pred` (it may have arrived already);
    /// returns it.
    pub fn wait_value(&self, addr: &str, pred: impl Fn(f32) -> bool) -> f32 {
        if let Some(&v) = self.latest.borrow().get(addr) {
            if pred(v) {
                return v;
            }
        }
        let m = self.until(TIMEOUT, |m| m.addr == addr && pred(float(&m.args[0])));
        float(&m.args[0])
    }

    /// Waits for a message at `addr` and returns its float value.
    pub fn value_at(&self, addr: &str) -> f32 {
        let m = self.until(TIMEOUT, |m| m.addr == addr);
        float(&m.args[0])
    }

    /// Waits for `addr` to carry `value`.
    pub fn expect(&self, addr: &str, value: f32) {
        self.until(TIMEOUT, |m| {
            m.addr == addr && (float(&m.args[0]) - value).abs() < 1e-6
        });
    }

    /// Everything that arrives within `window` (their values are remembered for
    /// [`OscRx::wait_value`], as if taken one by one).
    pub fn drain(&self, window: Duration) -> Vec<OscMessage> {
        let deadline = Instant::now() + window;
        let mut out: Vec<OscMessage> = self.backlog.borrow_mut().drain(..).collect();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if let Some(m) = self.recv_packet(left) {
                out.extend(m);
            }
        }
        for m in &out {
            if let Some(v) = m.args.first().and_then(number) {
                self.latest.borrow_mut().insert(m.addr.clone(), v);
            }
        }
        out
    }
}

fn flatten(p: OscPacket, out: &mut Vec<OscMessage>) {
    match p {
        OscPacket::Message(m) => out.push(m),
        OscPacket::Bundle(b) => b.content.into_iter().for_each(|p| flatten(p, out)),
    }
}

fn number(a: &OscType) -> Option<f32> {
    match a {
        OscType::Float(f) => Some(*f),
        OscType::Double(d) => Some(*d as f32),
        OscType::Int(i) => Some(*i as f32),
        _ => None,
    }
}

pub fn float(a: &OscType) -> f32 {
    match a {
        OscType::Float(f) => *f,
        OscType::Double(d) => *d as f32,
        OscType::Int(i) => *i as f32,
        other => panic!("not a number: {other:?}"),
    }
}

/// Sends one OSC message to 127.0.0.1:`port`.
pub fn send(port: u16, addr: &str, args: Vec<OscType>) {
    let p = OscPacket::Message(OscMessage {
        addr: addr.into(),
        args,
    });
    send_raw(port, &rosc::encoder::encode(&p).unwrap());
}

pub fn send_raw(port: u16, bytes: &[u8]) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(bytes, ("127.0.0.1", port)).unwrap();
}

/// Runs `chopd check` on a file; returns (exit code, stdout).
pub fn check(path: &Path) -> (i32, String) {
    let out = Command::new(BIN).arg("check").arg(path).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A client of the control port: sends requests from its own socket and collects the replies.
pub struct Control {
    pub sock: UdpSocket,
    port: u16,
}

impl Control {
    pub fn new(port: u16) -> Control {
        Self::from_ip("127.0.0.1", port)
    }

    /// A client sending from `ip` (any 127.x.y.z works on Linux loopback).
    pub fn from_ip(ip: &str, port: u16) -> Control {
        Control {
            sock: UdpSocket::bind((ip, 0)).unwrap(),
            port,
        }
    }

    pub fn send(&self, addr: &str, args: Vec<OscType>) {
        let p = OscPacket::Message(OscMessage {
            addr: addr.into(),
            args,
        });
        self.send_raw(&rosc::encoder::encode(&p).unwrap());
    }

    pub fn send_raw(&self, bytes: &[u8]) {
        self.sock.send_to(bytes, ("127.0.0.1", self.port)).unwrap();
    }

    /// Every message received within `timeout` until the reply (`/chopd/reply` or
    /// `/chopd/error`) to `addr`, that one included; None on timeout.
    pub fn replies(&self, addr: &str, timeout: Duration) -> Option<Vec<OscMessage>> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).unwrap();
            let n = self.sock.recv(&mut buf).ok()?;
            let (_, p) = rosc::decoder::decode_udp(&buf[..n]).expect("malformed control reply");
            let mut msgs = Vec::new();
            flatten(p, &mut msgs);
            for m in msgs {
                let done = (m.addr == "/chopd/reply" || m.addr == "/chopd/error")
                    && matches!(m.args.first(), Some(OscType::String(a)) if a == addr);
                out.push(m);
                if done {
                    return Some(out);
                }
            }
        }
    }

    /// Sends a request and returns every reply message, the final one last. Panics on timeout.
    pub fn request(&self, addr: &str, args: Vec<OscType>) -> Vec<OscMessage> {
        self.send(addr, args);
        self.replies(addr, TIMEOUT)
            .unwrap_or_else(|| panic!("no reply to {addr} within {TIMEOUT:?}"))
    }

    /// A request that must succeed; returns the arguments of `/chopd/reply` after the address.
    pub fn ok(&self, addr: &str, args: Vec<OscType>) -> Vec<OscType> {
        let r = self.request(addr, args);
        let last = r.last().unwrap();
        assert_eq!(last.addr, "/chopd/reply", "{addr} failed: {last:?}");
        last.args[1..].to_vec()
    }

    /// A request that must fail; returns the reason.
    pub fn err(&self, addr: &str, args: Vec<OscType>) -> String {
        let r = self.request(addr, args);
        let last = r.last().unwrap();
        assert_eq!(last.addr, "/chopd/error", "{addr} did not fail: {last:?}");
        match &last.args[1] {
            OscType::String(s) => s.clone(),
            other => panic!("reason is not a string: {other:?}"),
        }
    }

    /// `/chopd/status` as address → first argument.
    pub fn status(&self) -> HashMap<String, OscType> {
        self.request("/chopd/status", vec![])
            .into_iter()
            .filter(|m| m.addr.starts_with("/chopd/status/"))
            .map(|m| (m.addr, m.args.into_iter().next().unwrap()))
            .collect()
    }

    /// `/chopd/status/json [op]`, parsed.
    pub fn status_json(&self, op: Option<&str>) -> serde_json::Value {
        let args = op
            .map(|o| vec![OscType::String(o.into())])
            .unwrap_or_default();
        match self.ok("/chopd/status/json", args).as_slice() {
            [OscType::String(s)] => serde_json::from_str(s).unwrap(),
            other => panic!("status/json replied {other:?}"),
        }
    }
}

/// A number from a status map.
pub fn num(status: &HashMap<String, OscType>, addr: &str) -> f64 {
    match status.get(addr) {
        Some(OscType::Int(i)) => *i as f64,
        Some(OscType::Float(f)) => *f as f64,
        other => panic!("{addr}: {other:?} in status {status:?}"),
    }
}

#[test]
fn log_fields_are_read_back_from_a_line() {
    let line = r#"2026-12-01T09:07:42.5Z  INFO reloaded /x y/chopd.toml: built oscin "in2" reload=applied changed="built oscin \"in2\", removed \"a\\b\"" errors=0"#;
    let f = fields(line);
    assert_eq!(f["reload"], "applied");
    assert_eq!(f["changed"], r#"built oscin "in2", removed "a\b""#);
    assert_eq!(f["errors"], "0");
    assert_eq!(f.len(), 3, "{f:?}");
    let f = fields("INFO listening op=in kind=oscin addr=[::1]:9000");
    assert_eq!(port_of(&f), Some(9000));
    assert_eq!(fields(r#"x changed="""#)["changed"], "");
}
