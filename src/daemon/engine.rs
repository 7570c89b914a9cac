//! The cook thread: clock → frame → graph, and the commands the control plane hands it between
//! frames (a reload, a closure against the graph). It owns the graph and the embedded Python;
//! nothing else touches either.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

use super::{memory, state, Command, Liveness, ReloadResult};
use crate::clock::{Clock, Woke};
use crate::config::Config;
use crate::cook::Frame;
use crate::graph::Graph;
use crate::wake::Wake;

/// Starts the cook thread on `config` and waits until every socket is bound and the first frame
/// ran. Returns the command sender, the thread, and the start-up notes (what was built).
pub fn start(
    config: Config,
    shared: Liveness,
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
    shared: Liveness,
) {
    // Python starts on this thread (it cooks the scripts) and only when a script needs it.
    if needs_python(&config) {
        if let Err(e) = crate::python::init(&config.python_path) {
            let _ = ready.send(Err(vec![e]));
            return;
        }
    }
    let mut keeper = state::Keeper::start(&config);
    let (mut graph, mut notes) = match Graph::build(&config) {
        Ok(g) => g,
        Err(errors) => {
            let _ = ready.send(Err(errors));
            return;
        }
    };
    // Before the first frame, so the first cook already sees the kept values.
    if let Some(k) = &mut keeper {
        k.restore_pars(&mut graph);
    }
    log_listeners(&listeners(&graph), &[]);
    // The last note lists the bound addresses, for the start line.
    notes.push(graph.bound().join(", "));
    let mut clock = Clock::new(config.rate);
    let mut rss = memory::RssWatch::new(config.rss_warn_mb);
    let mut ready = Some((ready, notes));
    let mut last_stats = Instant::now();
    let stop = shared.stop.clone();
    let mut observers: Vec<super::Observer> = Vec::new();
    let wake = graph.wake().clone();
    let mut react = Reactions::new(config.react, wake.clone());
    let mut last: Option<Frame> = None;
    while !stop.load(Ordering::Relaxed) {
        // Reactions start after the first frame (every operator's first cook is a frame's).
        let listening = react.listening() && last.is_some();
        if listening {
            wake.take_sources();
            // Input comes faster than passes read it: the next pass (after its gap) will find
            // more, so it runs without a sleep on the sockets to hear so. Not within the
            // clock's final spin: input that comes then waits for the frame, as in the sleep.
            if let Some(last) = &last {
                if wake.take_crowded() && Instant::now() < clock.listen_until() {
                    react.run(&mut graph, last, clock.next_due());
                    continue;
                }
            }
        }
        // Reacting, input does not wait for frames: their exact time matters only to
        // operators whose output follows time.
        clock.set_precise(!react.enabled || graph.keeps_time());
        let woke = clock.wait_for(|| !stop.load(Ordering::Relaxed), listening.then_some(&wake));
        let tick = match woke {
            None => break,
            Some(Woke::Frame(tick)) => tick,
            Some(Woke::Input) => {
                if let Some(last) = &last {
                    react.run(&mut graph, last, clock.next_due());
                }
                continue;
            }
        };
        let started = Instant::now();
        while let Ok(cmd) = rx.try_recv() {
            match cmd {
                Command::Reload(new, reply) => {
                    let before = listeners(&graph);
                    let result = reload(&mut graph, &new);
                    log_listeners(&listeners(&graph), &before);
                    if result.is_ok() {
                        clock.set_rate(new.rate);
                        rss.configure(new.rss_warn_mb);
                        react.enable(new.react);
                    }
                    let _ = reply.send(result);
                }
                Command::With(f) => f(&mut graph),
                Command::Observe(f) => observers.push(f),
            }
        }
        let frame = Frame {
            frame: tick.frame,
            step: tick.step,
            rate: clock.rate(),
            due: tick.due,
            started,
        };
        // The frame folds whatever came so far; what comes later rings again.
        wake.clear();
        graph.frame(&frame);
        react.new_interval(clock.rate());
        last = Some(frame);
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
        if let Some(mb) = rss.sample(started) {
            d.rss_mb = mb;
        }
        if let Some(k) = &mut keeper {
            k.tick(&graph, started);
        }
        for o in &mut observers {
            o(&graph);
        }
        shared.heartbeat.fetch_add(1, Ordering::Relaxed);
        if let Some((tx, notes)) = ready.take() {
            let _ = tx.send(Ok(notes));
        }
    }
    if let Some(k) = keeper {
        k.finish(&graph);
    }
    tracing::debug!("cook thread stopped after {} frames", graph.daemon.frames);
    // Dropping the graph here stops every receive thread (each operator joins its own).
}

/// The share of each frame interval reaction passes may use (`react = true`). The rest is the
/// frame's: however fast input comes, time-dependent operators, the watchdog and the control
/// plane keep their frames, and input beyond the budget waits for the next frame. Four fifths:
/// with half, a Script CHOP reacting to 10k messages a second already ran out of budget in some
/// intervals, and what came after waited for the frame (p99 latency 1.3 ms instead of 0.27 ms,
/// docs/benchmarks.md).
const REACT_SHARE: f64 = 0.8;

/// The reactions of one frame interval: input that arrives between frames is cooked at once
/// (`Graph::react`), within a budget of work per interval. Once it is spent, or when the next
/// frame is due sooner than a reaction takes, arrivals wait for the frame (counted in
/// `react_deferred`) and the cook thread sleeps until then without listening.
///
/// Passes are also paced: after a pass, the next one starts no sooner than the pass's cost ×
/// (1 − share) / share later, and what arrives meanwhile is folded by that pass. Input that
/// comes faster than passes can be cooked then takes the budget's share of the cook thread
/// evenly over the interval, each message waiting about one pass and one gap, instead of
/// spending the budget in the first four fifths and leaving the rest of the interval's input
/// to the frame.
///
/// While it listens, the cook thread holds the UDP sockets of the reacting OSC Ins and reads
/// them itself (src/wake.rs). A spent budget gives them back to their receive threads for the
/// rest of the interval (a flood is then read on another core, onto the queues the frame
/// drains); a deferral for a frame that is due soon keeps them (the kernel holds what comes
/// until that frame reads it).
struct Reactions {
    enabled: bool,
    wake: Wake,
    /// Reaction work allowed per frame interval.
    budget: Duration,
    /// Work spent in this interval.
    spent: Duration,
    /// The longest reaction pass lately, to stop before a pass would make the frame late. It
    /// halves every frame interval, so one slow pass (new channels, a reload) is forgotten
    /// within a few frames even when no reaction runs meanwhile.
    cost: Duration,
    /// The budget is spent: the rest of this interval waits for the frame.
    deferring: bool,
    /// The earliest start of the next pass (the pacing above).
    next: Instant,
}

impl Reactions {
    fn new(enabled: bool, wake: Wake) -> Reactions {
        Reactions {
            enabled,
            wake,
            budget: Duration::ZERO,
            spent: Duration::ZERO,
            cost: Duration::ZERO,
            deferring: false,
            next: Instant::now(),
        }
    }

    /// Turns reactions on or off (a reload); off gives the sockets back.
    fn enable(&mut self, on: bool) {
        self.enabled = on;
        if !on {
            self.wake.give_back();
        }
    }

    /// Whether the clock should wake for input now.
    fn listening(&self) -> bool {
        self.enabled && !self.deferring
    }

    fn new_interval(&mut self, rate: f64) {
        self.budget = Duration::from_secs_f64(REACT_SHARE / rate);
        self.spent = Duration::ZERO;
        self.deferring = false;
        self.cost /= 2;
    }

    /// One reaction pass after `last`, unless the budget or the next frame (`due`) says wait.
    fn run(&mut self, graph: &mut Graph, last: &Frame, due: Instant) {
        let now = Instant::now();
        let room = due.saturating_duration_since(now.max(self.next));
        if self.spent >= self.budget || room < self.cost {
            if self.spent >= self.budget {
                self.wake.give_back();
            }
            self.deferring = true;
            graph.daemon.react_deferred += 1;
            return;
        }
        if now < self.next {
            // More came before the gap ended: it gathers until then, for the same pass.
            std::thread::sleep(self.next - now);
        }
        let started = Instant::now();
        graph.react(last);
        let took = started.elapsed();
        self.spent += took;
        // The cost estimate follows a slower pass at once and a faster one slowly.
        self.cost = took.max(self.cost * 7 / 8);
        self.next = started + took + took.mul_f64((1.0 - REACT_SHARE) / REACT_SHARE);
    }
}

/// One bound operator: name, kind, address.
type Listener = (String, &'static str, SocketAddr);

fn listeners(graph: &Graph) -> Vec<Listener> {
    graph
        .nodes()
        .iter()
        .filter_map(|n| {
            let addr = graph.operator(&n.name)?.bound()?;
            Some((n.name.clone(), n.kind, addr))
        })
        .collect()
}

/// One `listening` line per operator bound to an address it did not have in `before`: fields a
/// reader (the tests, a log shipper) can take the address from without parsing prose.
fn log_listeners(now: &[Listener], before: &[Listener]) {
    for l @ (op, kind, addr) in now {
        if !before.contains(l) {
            tracing::info!(op = %op, kind = %kind, addr = %addr, "listening");
        }
    }
}

fn needs_python(config: &Config) -> bool {
    config.operators.iter().any(|o| o.settings.uses_python())
}

/// Applies `new` on top of `graph`; on failure the running graph goes on unchanged.
fn reload(graph: &mut Graph, new: &Config) -> ReloadResult {
    if needs_python(new) {
        // Adds only the site directories that are new; a failure keeps the old graph.
        crate::python::init(&new.python_path).map_err(|e| vec![e])?;
    }
    let displaced = state::Displaced::take(graph, new);
    let result = graph.reload(new);
    if result.is_err() {
        displaced.put_back();
    }
    result
}
