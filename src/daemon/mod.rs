//! The daemon: the cook thread (clock → frame → graph), and the control plane on the main
//! thread (signals, config watching, the control port, reload, systemd notification, bounded
//! shutdown).
//!
//! Two channels carry everything: `Event` into the control plane's loop, and `Command` from the
//! control plane to the cook thread, which polls it once per frame and never blocks on it. Every
//! source of work for the control plane — the signals (SIGTERM and SIGINT stop, SIGHUP reloads),
//! the file watcher, the control port, the heartbeat check — becomes an `Event`, and one `match`
//! acts on them: there is one way to reload and one way to stop.
//!
//! - `engine`: the cook thread.
//! - [`control`]: the OSC control port, its limits and replies; [`request`]: its address space;
//!   [`status`]: the one status; [`exposure`]: warnings for what a config opens to the network.
//! - [`ctl`]: `chopd ctl`, the command-line client of the control port.
//! - [`local`]: the local administration socket (the control port's requests, file permissions
//!   instead of addresses and tokens).
//! - [`memory`]: the resident memory (`rss_mb`) and its warning.
//! - [`oscquery`]: the OSCQuery server (namespace, LISTEN, writes, mDNS, the web page).
//! - [`notify`]: sd_notify and the heartbeat check that feeds the watchdog.
//! - [`state`]: the show state kept across restarts (runtime-set parameters, `store()`).
//! - [`watch`]: polling the config and the files it names.

pub mod control;
pub mod ctl;
mod engine;
pub mod exposure;
pub mod local;
pub mod memory;
pub mod notify;
pub mod oscquery;
pub mod request;
pub mod state;
pub mod status;
pub mod watch;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc as mpsc_async;
use tokio::sync::oneshot;

use crate::config::{self, Config, ControlConfig};
use crate::graph::Graph;
use notify::{Health, Heartbeat, Notifier};

/// A reload's result: what changed, or every reason the running graph stays.
pub type ReloadResult = Result<Vec<String>, Vec<String>>;

/// What the control plane asks of the cook thread.
pub enum Command {
    /// Apply a checked config; the reply says what changed, or why the old graph stays.
    Reload(Box<Config>, oneshot::Sender<ReloadResult>),
    /// Run a closure against the graph on the cook thread (control port queries and actions).
    With(Box<dyn FnOnce(&mut Graph) + Send>),
    /// Look at the graph after every frame from now on (the OSCQuery server's snapshots). The
    /// observer must not block: it hands over and returns.
    Observe(Observer),
}

/// Something that looks at the graph after every frame (see `Command::Observe`).
pub type Observer = Box<dyn FnMut(&Graph) + Send>;

/// What the control plane acts on, whoever asked.
pub enum Event {
    /// Reload the config; `reply` gets the result (the control port answers its sender).
    Reload {
        cause: String,
        reply: Option<oneshot::Sender<ReloadResult>>,
    },
    /// The watched files changed and settled (see [`watch`]). Unlike an explicit reload, it
    /// refuses a config that looks like a file caught mid-rewrite (see `Plane::refusal`).
    FilesChanged,
    /// Stop the daemon.
    Shutdown { cause: StopCause },
}

/// Why the control plane stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopCause {
    /// SIGTERM or SIGINT (the number).
    Signal(i32),
    /// `Liveness::stop` was set (in-process use).
    Requested,
    /// The cook thread ended on its own: a panic.
    CookDied,
}

/// The stop request and the heartbeat, shared by the control plane and the cook thread.
#[derive(Clone, Default)]
pub struct Liveness {
    pub stop: Arc<AtomicBool>,
    /// Frames run so far; the watchdog is fed only while it moves.
    pub heartbeat: Arc<AtomicU64>,
}

/// How long a stop may take before the daemon exits anyway (the unit's `TimeoutStopSec` is
/// longer, so systemd never has to SIGKILL a daemon that keeps this bound).
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(5);

/// How long a reload may run before the log says the control plane is still waiting for it.
/// The plane never gives up on a reload it handed over: the cook thread applies it whole or not
/// at all, and a verdict given before that would be a guess (a wrong one, once the cook thread
/// applies the config anyway). A reload that never ends is a stuck cook thread, which the
/// watchdog and a stop (bounded by `SHUTDOWN_BOUND`) deal with.
const RELOAD_SLOW: Duration = Duration::from_secs(10);

/// `RELOAD_SLOW`, or for the tests only `CHOPD_TEST_RELOAD_SLOW_MS`: a test of a reload that
/// outlasts it need not take 10 s.
fn reload_slow() -> Duration {
    std::env::var("CHOPD_TEST_RELOAD_SLOW_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(RELOAD_SLOW, Duration::from_millis)
}

/// Without a systemd watchdog, a clock that has not moved for this long is still reported.
const STALL_REPORT: Duration = Duration::from_secs(5);

fn op_names(config: &Config) -> Vec<String> {
    config.operators.iter().map(|o| o.name.clone()).collect()
}

/// The config and the files it names (export tables). Script callbacks are not here: the
/// Script CHOP watches its own file and reloads its code in place, keeping the operator.
fn watched_files(config: &Config) -> Vec<PathBuf> {
    let mut files = vec![config.file.clone()];
    for op in &config.operators {
        if let Some(e) = &op.export {
            match &e.method {
                config::ExportMethod::DatIndex(t) | config::ExportMethod::DatName(t) => {
                    if let config::TableSource::File(f) = &t.source {
                        files.push(f.clone())
                    }
                }
                config::ExportMethod::AutoName => {}
            }
        }
    }
    files.sort();
    files.dedup();
    files
}

/// Why `run` ended other than cleanly. `main` picks the exit code.
#[derive(Debug, thiserror::Error)]
pub enum Stopped {
    /// A second SIGINT/SIGTERM arrived while stopping: exit at once (128 + signal).
    #[error("stopped at once by a second signal {0}")]
    Forced(i32),
    /// The cook thread did not finish within `SHUTDOWN_BOUND`.
    #[error("the cook thread did not stop within {} s (a stuck script?); exiting anyway", SHUTDOWN_BOUND.as_secs())]
    Timeout,
}

/// The stop and reload signals, installed before anything can announce readiness, so a SIGTERM
/// right after `ready` is a clean stop, not the default kill.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("install SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("install SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("install SIGHUP handler")?,
        })
    }

    /// Turns every signal into an `Event` until the control plane is gone. A signal that arrives
    /// while stopping is forwarded too: a second SIGINT/SIGTERM then cuts the stop short.
    async fn forward(mut self, events: mpsc_async::Sender<Event>) {
        loop {
            let event = tokio::select! {
                _ = self.term.recv() => Event::Shutdown { cause: StopCause::Signal(libc::SIGTERM) },
                _ = self.int.recv() => Event::Shutdown { cause: StopCause::Signal(libc::SIGINT) },
                _ = self.hup.recv() => Event::Reload { cause: "SIGHUP".into(), reply: None },
            };
            if events.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// The running control port: its allow-list (changeable on reload) and the trigger that closes
/// it. Dropping it closes the port once the request in hand, if any, is answered.
struct ControlPort {
    cfg: ControlConfig,
    local: SocketAddr,
    policy: tokio::sync::watch::Sender<control::Policy>,
    _close: oneshot::Sender<()>,
}

impl ControlPort {
    fn start(cfg: &ControlConfig, ctx: control::Ctx) -> anyhow::Result<ControlPort> {
        let sock = control::bind(cfg)?;
        let local = sock.local_addr()?;
        tracing::info!(kind = "control", addr = %local, "listening");
        let (policy, policy_rx) = tokio::sync::watch::channel(control::Policy::of(cfg));
        let (close, close_rx) = oneshot::channel();
        tokio::spawn(control::serve(sock, policy_rx, ctx, close_rx));
        Ok(ControlPort {
            cfg: cfg.clone(),
            local,
            policy,
            _close: close,
        })
    }
}

/// The control plane's state on the main thread.
struct Plane<'a> {
    path: &'a Path,
    shared: Liveness,
    cook: SyncSender<Command>,
    /// `None` once joined (or handed to the thread that joins it while stopping).
    thread: Option<std::thread::JoinHandle<()>>,
    events: mpsc_async::Receiver<Event>,
    /// Events that came while a reload was in hand, handled before waiting for new ones.
    pending: VecDeque<Event>,
    notifier: Notifier,
    beat: Heartbeat,
    watch: bool,
    watcher: watch::Watcher,
    control: Option<ControlPort>,
    control_ctx: control::Ctx,
    /// Removed on a clean stop (dropping it removes the file).
    local: Option<local::LocalSocket>,
    /// `[oscquery]`, as it was at the start (a restart moves it).
    oscquery: Option<oscquery::OscQuery>,
    rate: f64,
    /// The running operators, by name.
    ops: Vec<String>,
}

/// What came of waiting on something while a stop may be asked for.
enum Interrupted<T> {
    Done(T),
    Stop(StopCause),
}

impl<'a> Plane<'a> {
    /// Starts the cook thread on `config` and opens the control port. On failure nothing is
    /// left running.
    fn start(
        path: &'a Path,
        config: Config,
        shared: Liveness,
        events: (mpsc_async::Sender<Event>, mpsc_async::Receiver<Event>),
        started: Instant,
    ) -> anyhow::Result<Plane<'a>> {
        let watch = config.watch;
        let files = watched_files(&config);
        let (rate, ops, control_cfg) = (config.rate, op_names(&config), config.control.clone());
        let config_oscquery = config.oscquery.clone();
        let notifier = Notifier::from_env();
        let (cook, thread, mut notes) = engine::start(config, shared.clone())?;
        // The last note lists the bound addresses, for the start line.
        let bound = notes.pop().unwrap_or_default();
        for n in &notes {
            tracing::debug!("{n}");
        }
        let control_ctx = control::Ctx {
            cook: cook.clone(),
            events: events.0,
            counters: Arc::default(),
            debug: std::env::var_os("CHOPD_DEBUG_CONTROL").is_some_and(|v| v == "1"),
            started,
        };
        let control = match control_cfg
            .as_ref()
            .map(|c| ControlPort::start(c, control_ctx.clone()))
        {
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => {
                shared.stop.store(true, Ordering::Relaxed);
                let _ = thread.join();
                return Err(e);
            }
            None => None,
        };
        let local = match local::open(&local::path(control_cfg.as_ref()), control_ctx.clone()) {
            Ok(l) => l,
            Err(e) => {
                shared.stop.store(true, Ordering::Relaxed);
                let _ = thread.join();
                return Err(e);
            }
        };
        let oscquery = match config_oscquery
            .as_ref()
            .map(|q| oscquery::OscQuery::start(q, control_cfg.as_ref(), control_ctx.clone(), &cook))
        {
            Some(Ok(q)) => Some(q),
            Some(Err(e)) => {
                shared.stop.store(true, Ordering::Relaxed);
                let _ = thread.join();
                return Err(e);
            }
            None => None,
        };
        let plane = Plane {
            oscquery,
            path,
            beat: Heartbeat::new(shared.heartbeat.load(Ordering::Relaxed), Instant::now()),
            shared,
            cook,
            thread: Some(thread),
            events: events.1,
            pending: VecDeque::new(),
            notifier,
            watch,
            watcher: watch::Watcher::new(files),
            control,
            control_ctx,
            local: Some(local),
            rate,
            ops,
        };
        plane.announce(&bound);
        Ok(plane)
    }

    /// The start line, then `ready` (to the log and to systemd).
    fn announce(&self, bound: &str) {
        let mut listening = bound.to_string();
        if let Some(c) = &self.control {
            if !listening.is_empty() {
                listening.push_str(", ");
            }
            listening.push_str(&format!("control on {}", c.local));
        }
        if let Some(q) = &self.oscquery {
            if !listening.is_empty() {
                listening.push_str(", ");
            }
            listening.push_str(&format!("oscquery on {}", q.http));
        }
        tracing::info!(
            "chopd {} running {} ({} operators, {} fps){}{}",
            env!("CARGO_PKG_VERSION"),
            self.path.display(),
            self.ops.len(),
            self.rate,
            if listening.is_empty() {
                ""
            } else {
                "; listening: "
            },
            listening
        );
        if let Some(wd) = self.notifier.watchdog() {
            tracing::info!("systemd watchdog: {:.1} s", wd.as_secs_f64());
        }
        tracing::info!("ready");
        self.notifier.ready(&self.status_line());
    }

    fn status_line(&self) -> String {
        let control = match &self.control {
            Some(c) => format!(", control on {}", c.local),
            None => String::new(),
        };
        format!(
            "running {} operators at {} fps{control}",
            self.ops.len(),
            self.rate
        )
    }

    /// The control plane's loop: every source of work becomes an `Event`, handled in one place,
    /// until one asks to stop.
    async fn serve(&mut self) -> StopCause {
        let mut poll = tokio::time::interval(watch::POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut health = self.health_interval();
        loop {
            let event = match self.pending.pop_front() {
                Some(ev) => ev,
                None => tokio::select! {
                    Some(ev) = self.events.recv() => ev,
                    // Only while watching: with `watch = false` nothing wakes this thread
                    // between health checks.
                    _ = poll.tick(), if self.watch => match self.poll_files() {
                        Some(ev) => ev,
                        None => continue,
                    },
                    _ = health.tick() => match self.check_health() {
                        Some(ev) => ev,
                        None => continue,
                    },
                },
            };
            match event {
                Event::Reload { cause, reply } => match self.reload(&cause, false).await {
                    Interrupted::Done(result) => {
                        if let Some(r) = reply {
                            let _ = r.send(result);
                        }
                    }
                    Interrupted::Stop(why) => return why,
                },
                Event::FilesChanged => {
                    if let Interrupted::Stop(why) =
                        self.reload("a watched file changed", true).await
                    {
                        return why;
                    }
                }
                Event::Shutdown { cause } => return cause,
            }
        }
    }

    /// The watched files, looked at every `watch::POLL` while `watch` is on.
    fn poll_files(&mut self) -> Option<Event> {
        self.watcher
            .poll(Instant::now())
            .then_some(Event::FilesChanged)
    }

    /// When to look at the heartbeat: twice per watchdog interval, as sd_watchdog_enabled(3)
    /// advises.
    fn health_interval(&self) -> tokio::time::Interval {
        let every = self
            .notifier
            .watchdog()
            .map_or(Duration::from_millis(500), |w| w / 2);
        let mut health = tokio::time::interval(every);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        health
    }

    /// Sees a stop asked in-process, feeds the systemd watchdog while the clock runs, reports a
    /// stall and its end, and asks to stop when the cook thread is gone.
    fn check_health(&mut self) -> Option<Event> {
        // The stop flag, for a daemon run in-process.
        if self.shared.stop.load(Ordering::Relaxed) {
            return Some(Event::Shutdown {
                cause: StopCause::Requested,
            });
        }
        if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
            return Some(Event::Shutdown {
                cause: StopCause::CookDied,
            });
        }
        let wd = self.notifier.watchdog();
        // A stalled clock must not be hidden: two frames' time is the least allowed, whatever
        // the watchdog interval.
        let frames = Duration::from_secs_f64(2.5 / self.rate);
        let limit = wd
            .map_or(STALL_REPORT, |w| (w / 2).min(STALL_REPORT))
            .max(frames);
        let count = self.shared.heartbeat.load(Ordering::Relaxed);
        match self.beat.check(count, Instant::now(), limit) {
            Health::Alive | Health::StillStalled => {}
            Health::Stalled(d) => {
                tracing::error!(
                    clock = "stalled",
                    watchdog = if wd.is_some() { "unfed" } else { "none" },
                    "the clock has not run a frame for {:.1} s (a stuck script?){}",
                    d.as_secs_f64(),
                    if wd.is_some() {
                        "; the systemd watchdog is no longer fed"
                    } else {
                        ""
                    }
                );
                self.notifier
                    .status(&format!("stalled: no frame for {:.1} s", d.as_secs_f64()));
            }
            Health::Recovered(d) => {
                tracing::warn!(
                    clock = "running",
                    "the clock runs again after a stall of {:.1} s",
                    d.as_secs_f64()
                );
                self.notifier.status(&self.status_line());
            }
        }
        if wd.is_some() && self.beat.alive() {
            self.notifier.watchdog_ping();
        }
        None
    }

    /// Checks the config aside and hands it to the cook thread; the old graph stays on any
    /// error, and for a reload the watcher asked for (`watched`), on a `refusal`. Tells systemd
    /// RELOADING … READY around it.
    async fn reload(&mut self, cause: &str, watched: bool) -> Interrupted<ReloadResult> {
        tracing::info!("reload requested ({cause})");
        self.notifier.reloading();
        // Whatever asked, this reload handles the files as they are now.
        let seen = self.watcher.look();
        let mut files = self.watcher.files().to_vec();
        let loaded = self.load();
        let refused = match &loaded {
            Ok((config, blank)) if watched => self.refusal(config, *blank),
            _ => None,
        };
        let result = match (loaded, refused) {
            (_, Some((why, text))) => {
                tracing::warn!(
                    reload = "refused",
                    why,
                    "{text}: not applied from a file change, the running graph stays; SIGHUP \
                     (systemctl reload) or the control port's reload applies it"
                );
                Err(vec![text])
            }
            (Err(errors), None) => Err(errors),
            (Ok((config, _)), None) => {
                let new_files = watched_files(&config);
                let (rate, ops, watch, control) = (
                    config.rate,
                    op_names(&config),
                    config.watch,
                    config.control.clone(),
                );
                let result = match self.hand_over(config).await {
                    Interrupted::Done(r) => r,
                    Interrupted::Stop(cause) => return Interrupted::Stop(cause),
                };
                match &result {
                    Ok(notes) => {
                        self.apply_control(control.as_ref());
                        if let Some(q) = &self.oscquery {
                            q.set_control(control.as_ref());
                        }
                        tracing::info!(
                            reload = "applied",
                            changed = %notes.join(", "),
                            "reloaded {}: {}",
                            self.path.display(),
                            if notes.is_empty() {
                                "nothing changed".to_string()
                            } else {
                                notes.join(", ")
                            }
                        );
                        files = new_files;
                        self.rate = rate;
                        self.ops = ops;
                        self.watch = watch;
                    }
                    Err(errors) => {
                        // The first line carries the outcome, so each reload has exactly one.
                        for (i, e) in errors.iter().enumerate() {
                            if i == 0 {
                                tracing::error!(
                                    reload = "rejected",
                                    errors = errors.len(),
                                    "reload failed, the running graph stays: {e}"
                                );
                            } else {
                                tracing::error!("reload failed, the running graph stays: {e}");
                            }
                        }
                    }
                }
                result
            }
        };
        self.watcher.reset(files, seen);
        let status = match &result {
            Ok(_) => self.status_line(),
            Err(e) => format!(
                "{} (reload refused: {} errors, see the log)",
                self.status_line(),
                e.len()
            ),
        };
        self.notifier.ready(&status);
        Interrupted::Done(result)
    }

    /// Why the watcher must not apply `config` by itself: what a file caught in the middle of
    /// being rewritten in place looks like — empty (`blank`: nothing but blanks and comments),
    /// or a show that lost every operator. Said as (the log's `why`, the reason).
    fn refusal(&self, config: &Config, blank: bool) -> Option<(&'static str, String)> {
        if blank {
            return Some(("empty", format!("{} is empty", self.path.display())));
        }
        let keeps_one = config.operators.iter().any(|o| self.ops.contains(&o.name));
        (!self.ops.is_empty() && !keeps_one).then(|| {
            (
                "removes_every_operator",
                format!(
                    "{} would remove every operator ({} running)",
                    self.path.display(),
                    self.ops.len()
                ),
            )
        })
    }

    /// Reads and checks the config; on errors, logs every diagnostic and returns the errors.
    /// With the config, whether its text is blank (see `refusal`).
    fn load(&self) -> Result<(Config, bool), Vec<String>> {
        let checked = match std::fs::read_to_string(self.path) {
            Ok(src) => config::check_str(self.path, &src, crate::chop::KINDS).map(|c| {
                let blank = src.lines().all(|l| {
                    let l = l.trim();
                    l.is_empty() || l.starts_with('#')
                });
                (c, blank)
            }),
            // Reported as `load` reports it, with the file's name.
            Err(_) => config::load(self.path, crate::chop::KINDS).map(|c| (c, false)),
        };
        match checked {
            Err(diags) => {
                let errors: Vec<String> = diags
                    .iter()
                    .filter(|d| d.severity == config::Severity::Error)
                    .map(|d| d.to_string())
                    .collect();
                tracing::error!(
                    reload = "rejected",
                    errors = errors.len(),
                    "reload refused, the running config stays: {} problems",
                    errors.len()
                );
                for d in &diags {
                    tracing::error!("{d}");
                }
                Err(errors)
            }
            Ok((config, blank)) => {
                for w in config.warnings.iter().chain(&exposure::exposure(&config)) {
                    tracing::warn!("{w}");
                }
                Ok((config, blank))
            }
        }
    }

    /// Gives a checked config to the cook thread and waits for its verdict, however long the
    /// build takes (see `RELOAD_SLOW`). A stop asked for meanwhile ends the wait; other events
    /// are kept for later; the clock's health is still watched (no frame runs meanwhile).
    async fn hand_over(&mut self, config: Config) -> Interrupted<ReloadResult> {
        let (tx, rx) = oneshot::channel();
        if self
            .cook
            .try_send(Command::Reload(Box::new(config), tx))
            .is_err()
        {
            return Interrupted::Done(Err(vec!["the cook thread is busy or stopped".to_string()]));
        }
        tokio::pin!(rx);
        let since = Instant::now();
        let slow = tokio::time::sleep(reload_slow());
        tokio::pin!(slow);
        let mut said_slow = false;
        let mut health = self.health_interval();
        loop {
            tokio::select! {
                r = &mut rx => return Interrupted::Done(match r {
                    Ok(r) => r,
                    Err(_) => Err(vec!["the cook thread stopped".to_string()]),
                }),
                _ = &mut slow, if !said_slow => {
                    said_slow = true;
                    let waited = since.elapsed().as_secs_f64();
                    tracing::warn!(
                        reload_waited_s = format!("{waited:.1}"),
                        "the reload has run for {waited:.1} s (a slow script load, or a stuck \
                         clock?); waiting for it: it is applied whole or not at all"
                    );
                }
                _ = health.tick() => {
                    if let Some(Event::Shutdown { cause }) = self.check_health() {
                        return Interrupted::Stop(cause);
                    }
                }
                Some(ev) = self.events.recv() => match ev {
                    Event::Shutdown { cause } => return Interrupted::Stop(cause),
                    other => defer(&mut self.pending, other),
                },
            }
        }
    }

    /// Follows a reloaded `[control]`: same address → only the allow-list changes; another
    /// address → bind it, then close the old one (which stays if the new one cannot be bound).
    fn apply_control(&mut self, new: Option<&ControlConfig>) {
        // Moving the socket under a connected client would strand it; a restart moves it.
        let wanted = local::path(new);
        if let Some(l) = self.local.as_ref().filter(|l| l.path != wanted) {
            tracing::warn!(
                "the control socket stays at {} until a restart (the config now names {})",
                l.path.display(),
                wanted.display()
            );
        }
        match (self.control.as_ref(), new) {
            (None, None) => {}
            (Some(_), None) => {
                self.control = None;
                tracing::info!("control port closed");
            }
            (Some(cur), Some(new)) if cur.cfg.addr == new.addr => {
                if cur.cfg != *new {
                    cur.policy.send_replace(control::Policy::of(new));
                    if let Some(c) = self.control.as_mut() {
                        c.cfg = new.clone();
                    }
                }
            }
            (_, Some(new)) => match ControlPort::start(new, self.control_ctx.clone()) {
                Ok(c) => self.control = Some(c),
                Err(e) => tracing::error!(
                    "{e:#}; the control port stays {}",
                    self.control
                        .as_ref()
                        .map_or("closed".to_string(), |c| format!("on {}", c.local))
                ),
            },
        }
    }

    /// Stops the daemon for `cause`: closes the control port, stops the cook thread and waits
    /// for it within `SHUTDOWN_BOUND`, unless a second signal says not to wait.
    async fn stop(mut self, cause: StopCause) -> anyhow::Result<()> {
        let thread = self.thread.take();
        match cause {
            StopCause::Signal(sig) => {
                let name = if sig == libc::SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                tracing::info!(stop = "begin", cause = name, "stopping ({name})");
            }
            StopCause::Requested => tracing::info!(stop = "begin", cause = "requested", "stopping"),
            StopCause::CookDied => {
                // A panic on the cook thread has printed its message already. Exiting non-zero
                // lets systemd restart the service instead of keeping a daemon without a clock.
                self.notifier.stopping();
                if let Some(t) = thread {
                    let _ = t.join();
                }
                return Err(anyhow!("the cook thread stopped unexpectedly (see above)"));
            }
        }
        self.notifier.stopping();
        self.shared.stop.store(true, Ordering::Relaxed);
        self.control = None;
        self.local = None;
        self.oscquery = None;
        let (done_tx, done_rx) = oneshot::channel();
        // Joined on a helper thread so the wait can be bounded and a second signal heard.
        std::thread::spawn(move || {
            if let Some(t) = thread {
                let _ = t.join();
            }
            let _ = done_tx.send(());
        });
        let result = tokio::select! {
            _ = done_rx => Ok(()),
            _ = tokio::time::sleep(SHUTDOWN_BOUND) => Err(Stopped::Timeout),
            sig = self.second_signal() => Err(Stopped::Forced(sig)),
        };
        match &result {
            Ok(()) => tracing::info!(stop = "done", "stopped"),
            Err(e @ Stopped::Timeout) => tracing::error!(stop = "timeout", "{e}"),
            Err(e @ Stopped::Forced(_)) => tracing::error!(stop = "forced", "{e}"),
        }
        result.map_err(anyhow::Error::new)
    }

    /// The next stop signal; anything else asked for while stopping is dropped (a control port
    /// request then hears that the daemon is stopping).
    async fn second_signal(&mut self) -> i32 {
        loop {
            match self.events.recv().await {
                Some(Event::Shutdown {
                    cause: StopCause::Signal(sig),
                }) => return sig,
                Some(_) => {}
                None => std::future::pending().await,
            }
        }
    }
}

/// Keeps an event for after the reload in hand. A reload nobody waits for is dropped when one
/// is already waiting: both would read the files as they are then (a burst of SIGHUPs is one
/// reload, as the signal itself coalesces).
fn defer(pending: &mut VecDeque<Event>, event: Event) {
    let unanswered = |e: &Event| matches!(e, Event::Reload { reply: None, .. });
    if unanswered(&event) && pending.iter().any(unanswered) {
        return;
    }
    pending.push_back(event);
}

/// Runs the daemon on `path` until SIGINT/SIGTERM (or `shared.stop`). Reloads on SIGHUP, on
/// `/chopd/reload`, and when `watch` is on, when the config or a table it names changes.
pub fn run(path: &Path, shared: Liveness) -> anyhow::Result<()> {
    // Signals first, before the config is read: from here on a SIGHUP (ignored until now, see
    // main.rs) waits to be a reload once the daemon runs, and a SIGTERM or SIGINT to be a clean
    // stop, however long the start takes (Python, MIDI, a required device).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the control runtime")?;
    let _guard = rt.enter();
    let signals = Signals::install()?;
    let config = config::load(path, crate::chop::KINDS).map_err(|diags| {
        for d in &diags {
            eprintln!("{d}");
        }
        anyhow::Error::new(ConfigRejected(diags.len()))
    })?;
    for w in config.warnings.iter().chain(&exposure::exposure(&config)) {
        tracing::warn!("{w}");
    }
    let started = Instant::now();
    let (events_tx, events_rx) = mpsc_async::channel::<Event>(16);
    tokio::spawn(signals.forward(events_tx.clone()));
    let mut plane = Plane::start(path, config, shared, (events_tx, events_rx), started)?;
    let cause = rt.block_on(plane.serve());
    rt.block_on(plane.stop(cause))
}

/// The config had errors (already printed); `main` exits 78 for it.
#[derive(Debug, thiserror::Error)]
#[error("the config has {0} problems")]
pub struct ConfigRejected(pub usize);

#[cfg(test)]
mod tests {
    use super::*;

    fn reload(reply: Option<oneshot::Sender<ReloadResult>>) -> Event {
        Event::Reload {
            cause: "test".into(),
            reply,
        }
    }

    #[test]
    fn deferred_reloads_without_a_reply_merge_and_the_rest_keep_their_order() {
        let mut pending = VecDeque::new();
        defer(&mut pending, reload(None));
        defer(&mut pending, reload(None));
        let (tx, _rx) = oneshot::channel();
        defer(&mut pending, reload(Some(tx)));
        defer(&mut pending, reload(None));
        let (tx, _rx2) = oneshot::channel();
        defer(&mut pending, reload(Some(tx)));
        let shape: Vec<bool> = pending
            .iter()
            .map(|e| matches!(e, Event::Reload { reply: Some(_), .. }))
            .collect();
        // One unanswered reload; every one with a reply is kept, in order.
        assert_eq!(shape, [false, true, true]);
    }
}
