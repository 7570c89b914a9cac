//! The daemon: the cook thread (clock → frame → graph), and the control plane on the main
//! thread (signals, config watching, reload). One `Command` enum carries everything the control
//! plane asks of the cook thread; the cook thread polls it once per frame and never blocks on it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Context};

use crate::chop::Frame;
use crate::clock::Clock;
use crate::config::{self, Config};
use crate::graph::{Graph, Rejected};

/// What the control plane asks of the cook thread.
pub enum Command {
    /// Apply a checked config; the reply says what changed, or why the old graph stays.
    Reload(Box<Config>, Sender<Result<Vec<String>, Vec<String>>>),
    /// Run a closure against the graph on the cook thread (control port queries and actions).
    With(Box<dyn FnOnce(&mut Graph) + Send>),
}

/// Handle shared between the control plane and the cook thread.
#[derive(Clone, Default)]
pub struct Shared {
    pub stop: Arc<AtomicBool>,
    /// Frames run so far; the watchdog checks that it moves.
    pub heartbeat: Arc<AtomicU64>,
}

/// Starts the cook thread on `config` and waits until every socket is bound and the first frame
/// ran. Returns the command sender, the thread, and the start-up notes (bound addresses).
pub fn start(
    config: Config,
    shared: Shared,
) -> anyhow::Result<(
    SyncSender<Command>,
    std::thread::JoinHandle<()>,
    Vec<String>,
)> {
    let (tx, rx) = mpsc::sync_channel::<Command>(64);
    let (ready_tx, ready_rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("cook".into())
        .spawn(move || cook_thread(config, rx, ready_tx, shared))
        .context("start the cook thread")?;
    match ready_rx.recv() {
        Ok(Ok(notes)) => Ok((tx, thread, notes)),
        Ok(Err(errors)) => {
            let _ = thread.join();
            Err(anyhow!(errors.join("\n")))
        }
        Err(_) => {
            let _ = thread.join();
            Err(anyhow!("the cook thread stopped during start-up"))
        }
    }
}

fn cook_thread(
    config: Config,
    rx: Receiver<Command>,
    ready: Sender<Result<Vec<String>, Vec<String>>>,
    shared: Shared,
) {
    let (mut graph, notes) = match Graph::build(&config, None) {
        Ok(g) => g,
        Err(rejected) => {
            let _ = ready.send(Err(rejected.errors));
            return;
        }
    };
    let mut clock = Clock::new(config.rate);
    let mut ready = Some((ready, notes));
    let mut last_stats = Instant::now();
    let stop = shared.stop.clone();
    while !stop.load(Ordering::Relaxed) {
        let Some(tick) = clock.wait(|| !stop.load(Ordering::Relaxed)) else {
            break;
        };
        let started = Instant::now();
        while let Ok(cmd) = rx.try_recv() {
            match cmd {
                Command::Reload(new, reply) => {
                    let (g, result) = reload(graph, &new);
                    graph = g;
                    if result.is_ok() {
                        clock.set_rate(new.rate);
                    }
                    let _ = reply.send(result);
                }
                Command::With(f) => f(&mut graph),
            }
        }
        let frame = Frame {
            frame: tick.frame,
            step: tick.step,
            rate: clock.rate(),
            due: tick.due,
            started,
        };
        graph.frame(&frame);
        let d = &mut graph.daemon;
        d.frames += 1;
        d.dropped_frames = clock.dropped();
        d.frame_time_ms = started.elapsed().as_secs_f64() * 1e3;
        if started.duration_since(last_stats) >= Duration::from_millis(250) {
            let l = clock.lateness();
            d.lateness_p50_ms = l.p50.as_secs_f64() * 1e3;
            d.lateness_p99_ms = l.p99.as_secs_f64() * 1e3;
            d.lateness_max_ms = l.max.as_secs_f64() * 1e3;
            last_stats = started;
        }
        shared.heartbeat.fetch_add(1, Ordering::Relaxed);
        if let Some((tx, notes)) = ready.take() {
            let _ = tx.send(Ok(notes));
        }
    }
    tracing::debug!("cook thread stopped after {} frames", graph.daemon.frames);
}

/// Applies `new` on top of `graph`; on failure the old graph is returned unchanged.
fn reload(graph: Graph, new: &Config) -> (Graph, Result<Vec<String>, Vec<String>>) {
    let stats = graph.daemon.clone();
    match Graph::build(new, Some(graph)) {
        Ok((mut g, notes)) => {
            g.daemon = stats;
            (g, Ok(notes))
        }
        Err(rejected) => {
            let Rejected { old, errors } = *rejected;
            // `build` hands back the graph it was given, and reload always gives one.
            (old.expect("reload hands the old graph in"), Err(errors))
        }
    }
}

/// Modification times of the config and of the files it names (scripts, export tables).
fn watched_files(config: &Config) -> Vec<PathBuf> {
    let mut files = vec![config.file.clone()];
    for op in &config.operators {
        if let Some(e) = &op.export {
            match &e.method {
                config::ExportMethod::DatIndex(t) | config::ExportMethod::DatName(t) => {
                    files.push(t.file.clone())
                }
                config::ExportMethod::AutoName => {}
            }
        }
    }
    files
}

fn mtimes(files: &[PathBuf]) -> Vec<Option<SystemTime>> {
    files
        .iter()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect()
}

/// Runs the daemon on `path` until SIGINT/SIGTERM (or `shared.stop`). Reloads on SIGHUP and,
/// when `watch` is on, when the config or a table it names changes on disk.
pub fn run(path: &Path, shared: Shared) -> anyhow::Result<()> {
    let config = config::load(path).map_err(|diags| {
        for d in &diags {
            eprintln!("{d}");
        }
        anyhow::Error::new(ConfigRejected(diags.len()))
    })?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let watch = config.watch;
    let mut files = watched_files(&config);
    let rate = config.rate;
    let n_ops = config.operators.len();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the control runtime")?;
    // Signal handlers go in before anything can announce readiness, so a SIGTERM right after
    // `ready` is a clean stop, not the default kill.
    let _guard = rt.enter();
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("install SIGHUP handler")?;
    let (tx, thread, notes) = start(config, shared.clone())?;
    for n in &notes {
        tracing::debug!("{n}");
    }
    tracing::info!(
        "chopd {} running {} ({} operators, {} fps)",
        env!("CARGO_PKG_VERSION"),
        path.display(),
        n_ops,
        rate
    );
    tracing::info!("ready");

    let result = rt.block_on(async {
        let mut poll = tokio::time::interval(Duration::from_millis(500));
        let mut seen = mtimes(&files);
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    tracing::info!("reload requested (SIGHUP)");
                    if let Some(f) = do_reload(path, &tx).await { files = f; seen = mtimes(&files); }
                }
                _ = poll.tick() => {
                    if shared.stop.load(Ordering::Relaxed) { break; }
                    if watch {
                        let now = mtimes(&files);
                        if now != seen {
                            // Debounce: editors write in several steps; wait for quiet.
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            tracing::info!("reload: a watched file changed");
                            if let Some(f) = do_reload(path, &tx).await { files = f; }
                            seen = mtimes(&files);
                        }
                    }
                }
            }
        }
        anyhow::Ok(())
    });
    tracing::info!("stopping");
    shared.stop.store(true, Ordering::Relaxed);
    let _ = thread.join();
    result
}

async fn do_reload(path: &Path, tx: &SyncSender<Command>) -> Option<Vec<PathBuf>> {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(diags) => {
            tracing::error!(
                "reload refused, the running config stays: {} problems",
                diags
                    .iter()
                    .filter(|d| d.severity == config::Severity::Error)
                    .count()
            );
            for d in diags {
                tracing::error!("{d}");
            }
            return None;
        }
    };
    let files = watched_files(&config);
    let (reply_tx, reply_rx) = mpsc::channel();
    if tx
        .send(Command::Reload(Box::new(config), reply_tx))
        .is_err()
    {
        return None;
    }
    let reply = tokio::task::spawn_blocking(move || reply_rx.recv_timeout(Duration::from_secs(10)))
        .await
        .ok()?;
    match reply {
        Ok(Ok(notes)) => {
            tracing::info!(
                "reloaded {}{}",
                path.display(),
                if notes.is_empty() {
                    String::new()
                } else {
                    format!(": {}", notes.join(", "))
                }
            );
            Some(files)
        }
        Ok(Err(errors)) => {
            for e in errors {
                tracing::error!("reload failed, the running graph stays: {e}");
            }
            None
        }
        Err(_) => {
            tracing::error!("reload: the cook thread did not answer");
            None
        }
    }
}

/// The config had errors (already printed); `main` exits 78 for it.
#[derive(Debug, thiserror::Error)]
#[error("the config has {0} problems")]
pub struct ConfigRejected(pub usize);
