//! Timer CHOP: TouchDesigner's show-cue engine. `start` runs it from the beginning (after
//! `delay`), it counts `length` (in `lengthunits`) at `speed` while `play` is on, loops when
//! `cycle` is on (up to `maxcycles` with `cyclelimit`), and ends done; `initialize` brings it
//! back to ready, `gotodone` ends it at once. Its channels say where it is, and its callbacks
//! file (`callbacks = "cue.py"`, with TouchDesigner's `onStart`, `onCycle`, `onDone`, …) runs
//! on those events, so it drives cues by itself.
//!
//! Time moves by the clock, sample by sample: after dropped frames every sample of the gap is
//! stepped (time-sliced, each is output), so a cycle end or the end of the timer inside the gap
//! still fires its callback, in order.

use std::path::PathBuf;

use pyo3::prelude::*;
use serde::Deserialize;
use toml::Spanned;

use crate::chop::native::{self, check_pars, Guard, Pars, RawPars};
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind, OperatorConfig, Settings};
use crate::cook::par::ParDef;
use crate::cook::{BuildCtx, ChopData, CookCtx, CookError, Frame, NodeState, Operator, ParValue};
use crate::python::kindcb::{Arity, KindCallbacks, Me, Spec};

pub struct Timer;

/// The channels, in order.
pub const CHANNELS: &[&str] = &[
    "running",
    "timer_frames",
    "timer_seconds",
    "timer_fraction",
    "cycles",
    "done",
];

/// The callbacks, with the arguments TouchDesigner passes them (a callback taking fewer gets
/// the first ones).
const CALLBACKS: &[&str] = &[
    "onInitialize",
    "onReady",
    "onStart",
    "whileTimerActive",
    "onCycle",
    "onDone",
];

/// The callbacks file: `me` is the timer; a callback without a code object gets `me` alone.
static CB: Spec = Spec {
    kind: "timer",
    me: Me::Op,
    names: CALLBACKS,
    arity: Arity::Declared { unknown: 1 },
};

/// Time sums of many small steps land within this of a boundary: count it as reached.
const EPS: f64 = 1e-9;

fn defs() -> Vec<ParDef> {
    let units = ["samples", "frames", "seconds"];
    let labels = ["Samples", "Frames", "Seconds"];
    vec![
        ParDef::toggle("play", "Timer", true).label("Play"),
        ParDef::float("speed", "Timer", 1.0).label("Speed").range(0.0, 2.0),
        ParDef::pulse("start", "Timer").label("Start"),
        ParDef::pulse("initialize", "Timer").label("Initialize"),
        ParDef::pulse("gotodone", "Timer").label("Go to Done"),
        ParDef::float("length", "Timer", 1.0)
            .label("Length")
            .range(0.0, 10.0)
            .clamp_min(0.0),
        ParDef::menu("lengthunits", "Timer", &units, "seconds")
            .label("Length Units")
            .labels(&labels),
        ParDef::float("delay", "Timer", 0.0)
            .label("Delay")
            .range(0.0, 10.0)
            .clamp_min(0.0),
        ParDef::menu("delayunits", "Timer", &units, "seconds")
            .label("Delay Units")
            .labels(&labels),
        ParDef::toggle("cycle", "Timer", false).label("Cycle"),
        ParDef::toggle("cyclelimit", "Timer", true).label("Cycle Limit"),
        ParDef::int("maxcycles", "Timer", 4)
            .label("Maximum Cycles")
            .range(1.0, 10.0)
            .clamp_min(1.0),
    ]
}

/// The keys of a `timer` operator.
#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimerRaw {
    /// Python callbacks file (onInitialize, onReady, onStart, whileTimerActive, onCycle,
    /// onDone), relative to this config
    #[schemars(with = "Option<String>")]
    pub callbacks: Option<Spanned<String>>,
    /// TouchDesigner parameters by their names (`length = 4`, `cycle = true`)
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub pars: Option<RawPars>,
}

/// The checked settings of a Timer CHOP.
#[derive(Clone, Debug, PartialEq)]
pub struct TimerConfig {
    pub pars: Vec<(String, ParValue)>,
    /// Absolute path of the callbacks file.
    pub callbacks: Option<PathBuf>,
}

impl Kind for Timer {
    const NAME: &'static str = "timer";
    const SUMMARY: &'static str = "Timer CHOP: timed cues with callbacks";
    type Raw = TimerRaw;
    type Settings = TimerConfig;

    fn check(cx: &mut Checker, r: TimerRaw, _refs: &mut OpRefs) -> Option<TimerConfig> {
        let pars = check_pars(cx, Self::NAME, &defs(), native::no_alias, &r.pars);
        let callbacks = r.callbacks.as_ref().map(|c| cx.callbacks_file(c));
        Some(TimerConfig { pars, callbacks })
    }
}

impl Settings for TimerConfig {
    fn build(&self, op: &OperatorConfig, cx: &BuildCtx) -> Result<Box<dyn Operator>, String> {
        Ok(Box::new(TimerOp::new(op, cx.rate, self)?))
    }

    fn uses_python(&self) -> bool {
        self.callbacks.is_some()
    }

    fn identity(&self) -> String {
        self.callbacks
            .as_ref()
            .map_or(String::new(), |p| p.display().to_string())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Initialized, waiting for `start`.
    Ready,
    /// Started, counting the delay.
    Delay,
    Running,
    Done,
}

/// What happened while stepping, for the callbacks, in order.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Event {
    Initialize,
    Start,
    /// A cycle ended; the number of cycles completed.
    Cycle(u32),
    /// The timer ended; `true` when `gotodone` ended it.
    Done(bool),
}

#[derive(Clone, Debug, Default)]
struct Timing {
    play: bool,
    speed: f64,
    /// Length and delay, seconds.
    length: f64,
    delay: f64,
    cycle: bool,
    limit: Option<u32>,
}

pub struct TimerOp {
    pars: Pars,
    t: Timing,
    timeslice: bool,
    state: State,
    /// Seconds into the delay or the current cycle.
    elapsed: f64,
    cycles: u32,
    cb: Option<KindCallbacks>,
    events: Vec<Event>,
    guard: Guard,
    names: Vec<String>,
}

impl TimerOp {
    pub fn new(op: &OperatorConfig, rate: f64, c: &TimerConfig) -> Result<TimerOp, String> {
        let pars = Pars::new(op, rate, defs(), &c.pars);
        let cb = match &c.callbacks {
            Some(path) => Some(KindCallbacks::load(&CB, &op.name, path, pars.shared())?),
            None => None,
        };
        Ok(TimerOp {
            pars,
            t: Timing::default(),
            timeslice: op.timeslice,
            state: State::Ready,
            elapsed: 0.0,
            cycles: 0,
            cb,
            events: Vec::new(),
            guard: Guard::default(),
            names: CHANNELS.iter().map(|s| s.to_string()).collect(),
        })
    }

    fn read(&mut self, rate: f64) {
        let secs = |v: f64, unit: &str| if unit == "seconds" { v } else { v / rate };
        self.t = self.pars.with(|s| Timing {
            play: s.num("play") != 0.0,
            speed: s.num("speed"),
            length: secs(s.num("length"), s.text("lengthunits")),
            delay: secs(s.num("delay"), s.text("delayunits")),
            cycle: s.num("cycle") != 0.0,
            limit: (s.num("cyclelimit") != 0.0).then(|| s.num("maxcycles").max(1.0) as u32),
        });
    }

    fn pulse(&mut self, name: &str) {
        match name {
            "start" => {
                self.state = if self.t.delay > 0.0 {
                    State::Delay
                } else {
                    State::Running
                };
                self.elapsed = 0.0;
                self.cycles = 0;
                self.events.push(Event::Start);
            }
            "initialize" => {
                self.state = State::Ready;
                self.elapsed = 0.0;
                self.cycles = 0;
                self.events.push(Event::Initialize);
            }
            "gotodone" if self.state != State::Done => self.finish(true),
            _ => {}
        }
    }

    fn finish(&mut self, interrupt: bool) {
        self.state = State::Done;
        self.elapsed = self.t.length;
        self.events.push(Event::Done(interrupt));
    }

    /// Moves time on by one sample of `dt` seconds.
    fn step(&mut self, dt: f64) {
        if !self.t.play {
            return;
        }
        let mut dt = dt * self.t.speed;
        if self.state == State::Delay {
            self.elapsed += dt;
            if self.elapsed < self.t.delay - EPS {
                return;
            }
            dt = (self.elapsed - self.t.delay).max(0.0);
            self.elapsed = 0.0;
            self.state = State::Running;
        }
        if self.state != State::Running {
            return;
        }
        self.elapsed += dt;
        // A zero length ends (or cycles) at once; never loop more than once a sample.
        if self.elapsed >= self.t.length - EPS {
            let more = self.t.cycle && self.t.limit.is_none_or(|max| self.cycles + 1 < max);
            self.cycles += 1;
            if more {
                self.events.push(Event::Cycle(self.cycles));
                self.elapsed = (self.elapsed - self.t.length).clamp(0.0, self.t.length);
                if self.t.length <= 0.0 {
                    self.elapsed = 0.0;
                }
            } else {
                self.finish(false);
            }
        }
    }

    /// The channel values now, in [`CHANNELS`] order.
    fn values(&self, rate: f64) -> [f64; 6] {
        let running = matches!(self.state, State::Delay | State::Running);
        let (secs, frac) = match self.state {
            State::Running => (
                self.elapsed,
                if self.t.length > 0.0 {
                    (self.elapsed / self.t.length).min(1.0)
                } else {
                    1.0
                },
            ),
            State::Done => (self.t.length, 1.0),
            _ => (0.0, 0.0),
        };
        [
            f64::from(u8::from(running)),
            secs * rate,
            secs,
            frac,
            self.cycles as f64,
            f64::from(u8::from(self.state == State::Done)),
        ]
    }
}

impl Operator for TimerOp {
    fn wants_cook(&mut self, _frame: &Frame, _nodes: &[NodeState]) -> bool {
        self.pars.pending()
            || matches!(self.state, State::Delay | State::Running)
            || self.cb.as_ref().is_some_and(|c| c.pending.is_some())
    }

    fn cook(&mut self, ctx: &mut CookCtx, out: &mut ChopData) -> Result<(), CookError> {
        let frame = *ctx.frame;
        let rate = frame.rate;
        if self.pars.changed() {
            self.read(rate);
        }
        if out.num_chans() != CHANNELS.len() {
            out.clear();
        }
        let names: &[String] = &self.names;
        let (n, start) = native::slice(&frame, self.timeslice);
        native::Layout::default().apply(out, names, n, start, rate);
        // Pulses land at the start of this cook's span; every frame since the last cook is
        // stepped, each a sample.
        for p in self.pars.take_pulses() {
            self.pulse(&p);
        }
        // A start or initialize happens at this frame: nothing to step. Otherwise every
        // frame since the last one is a step, the last `n` of them output.
        let restarted = self
            .events
            .iter()
            .any(|e| matches!(e, Event::Start | Event::Initialize));
        let steps = if restarted { 0 } else { frame.step.max(1) as usize };
        for k in 0..steps {
            self.step(1.0 / rate);
            if k + n >= steps {
                let j = k + n - steps;
                for (c, x) in self.values(rate).iter().enumerate() {
                    out.chan_mut(c)[j] = *x as f32;
                }
            }
        }
        if steps == 0 {
            for (c, x) in self.values(rate).iter().enumerate() {
                out.chan_mut(c).fill(*x as f32);
            }
        }
        if self.guard.clean(out) {
            ctx.state().stats.warnings += 1;
        }
        ctx.state().timeslice = self.timeslice;
        let events = std::mem::take(&mut self.events);
        let active = matches!(self.state, State::Delay | State::Running);
        let fraction = self.values(rate)[3];
        if let Some(cb) = &mut self.cb {
            let active = active && cb.has(3);
            let cycles = self.cycles;
            let failures = if events.is_empty() && !active {
                Vec::new()
            } else {
                // The callbacks of `events`, then `whileTimerActive` while the timer runs.
                cb.run(self.pars.shared(), ctx, out, |py, calls| {
                    let int = |v: i64| v.into_pyobject(py).expect("an int").into_any().unbind();
                    for e in &events {
                        match *e {
                            Event::Initialize => {
                                calls.call(py, 0, vec![int(1)]);
                                calls.call(py, 1, vec![]);
                            }
                            Event::Start => calls.call(py, 2, vec![]),
                            Event::Cycle(n) => calls.call(py, 4, vec![int(0), int(n as i64)]),
                            Event::Done(interrupt) => {
                                let b = interrupt.into_pyobject(py).expect("a bool");
                                calls.call(py, 5, vec![int(0), b.to_owned().into_any().unbind()]);
                            }
                        }
                    }
                    if active {
                        let f = fraction.into_pyobject(py).expect("a float").into_any().unbind();
                        calls.call(py, 3, vec![int(0), int(cycles as i64), f]);
                    }
                    Ok(())
                })
            };
            cb.record(&mut ctx.state().stats, failures, "callback", |_| true);
        }
        Ok(())
    }

    fn extras(&self, out: &mut Vec<(&'static str, f64)>) {
        out.push(("timer_state", self.state as u8 as f64));
    }

    fn reset(&mut self) {
        self.pulse("initialize");
    }

    crate::native_pars!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chop::testing::{check_err, Rig};

    fn timer(pars: &str, extra: &str) -> Rig {
        Rig::new(&format!(
            "rate = 60\n[[operator]]\nname = \"t\"\ntype = \"timer\"\n{extra}\npars = {{ {pars} }}\n"
        ))
    }

    #[test]
    fn start_runs_it_for_its_length_then_it_is_done() {
        let mut r = timer("length = 0.5", "");
        r.frame(1);
        assert_eq!((r.val("t", "running"), r.val("t", "done")), (0.0, 0.0));
        r.pulse("t", "start");
        r.frame(2);
        assert_eq!((r.val("t", "running"), r.val("t", "timer_fraction")), (1.0, 0.0));
        for n in 3..=17 {
            r.frame(n);
        }
        assert!((r.val("t", "timer_fraction") - 0.5).abs() < 1e-6);
        assert!((r.val("t", "timer_seconds") - 0.25).abs() < 1e-6);
        for n in 18..=31 {
            r.frame(n);
            assert_eq!(r.val("t", "done"), 0.0, "frame {n}");
        }
        r.frame(32);
        assert_eq!((r.val("t", "running"), r.val("t", "done")), (0.0, 1.0));
        assert_eq!(r.val("t", "timer_fraction"), 1.0);
    }

    #[test]
    fn cycles_loop_up_to_the_limit_and_dropped_frames_are_stepped() {
        let mut r = timer(
            "length = 6, lengthunits = \"frames\", cycle = true, maxcycles = 2",
            "timeslice = true",
        );
        r.pulse("t", "start");
        r.frame(1);
        r.frame_step(5, 4);
        let o = r.out("t");
        assert_eq!(o.num_samples(), 4);
        let frac = o.chan_by_name("timer_fraction").unwrap();
        for (j, f) in frac.iter().enumerate() {
            assert!((*f as f64 - (j + 1) as f64 / 6.0).abs() < 1e-6, "{frac:?}");
        }
        r.frame_step(9, 4);
        let o = r.out("t");
        assert_eq!(o.chan_by_name("cycles").unwrap(), [0.0, 1.0, 1.0, 1.0]);
        r.frame_step(13, 4);
        assert_eq!(r.out("t").chan_by_name("done").unwrap(), [0.0, 0.0, 0.0, 1.0]);
        assert_eq!(r.val("t", "cycles"), 2.0);
    }

    #[test]
    fn delay_play_and_initialize() {
        let mut r = timer("length = 1, delay = 0.1, speed = 2", "");
        r.pulse("t", "start");
        r.frame(1);
        r.frame(2);
        r.frame(3);
        // 2 frames at speed 2: 4/60 s of the 0.1 s delay.
        assert_eq!((r.val("t", "running"), r.val("t", "timer_seconds")), (1.0, 0.0));
        r.frame(4);
        r.frame(5);
        assert!((r.val("t", "timer_seconds") - 2.0 / 60.0).abs() < 1e-6);
        r.set("t", "play", ParValue::Float(0.0));
        r.frame(6);
        r.frame(7);
        assert!((r.val("t", "timer_seconds") - 2.0 / 60.0).abs() < 1e-6, "paused");
        r.pulse("t", "initialize");
        r.frame(8);
        assert_eq!((r.val("t", "running"), r.val("t", "timer_seconds")), (0.0, 0.0));
    }

    #[test]
    fn callbacks_run_on_start_cycle_and_done_and_may_set_other_operators() {
        let dir = std::env::temp_dir().join(format!("chopd-timer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cue.py");
        std::fs::write(
            &file,
            "def onStart(timerOp):\n    op('c').par.value0 = 1\n\n\
             def onCycle(timerOp, segment, cycle):\n    op('c').par.value1 = cycle\n\n\
             def onDone(timerOp, segment, interrupt):\n    op('c').par.value0 = 2 if not interrupt else 3\n",
        )
        .unwrap();
        let mut r = Rig::new(&format!(
            "rate = 60\n[[operator]]\nname = \"c\"\ntype = \"constant\"\npars = {{ name0 = \"state\", name1 = \"cyc\" }}\n\
             [[operator]]\nname = \"t\"\ntype = \"timer\"\ncallbacks = \"{}\"\n\
             pars = {{ length = 2, lengthunits = \"frames\", cycle = true, maxcycles = 3 }}\n",
            file.display()
        ));
        r.frame(1);
        r.pulse("t", "start");
        r.frame(2);
        r.frame(3);
        assert_eq!(r.val("c", "state"), 1.0, "onStart ran");
        // Cycles end at frames 4 and 6, the timer at 8; "c" cooks before "t", so it shows
        // each write on the next frame.
        for n in 4..=9 {
            r.frame(n);
        }
        assert_eq!(r.val("c", "cyc"), 2.0, "onCycle got the cycle count");
        assert_eq!(r.val("c", "state"), 2.0, "onDone ran");
        r.pulse("t", "start");
        r.frame(10);
        r.pulse("t", "gotodone");
        r.frame(11);
        r.frame(12);
        assert_eq!(r.val("c", "state"), 3.0, "gotodone interrupts");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn callbacks_get_the_arguments_they_declare_and_failures_are_counted() {
        let dir = std::env::temp_dir().join(format!("chopd-timer-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cue.py");
        std::fs::write(
            &file,
            "class Init:\n    def __call__(self, *args):\n        op('c').par.value0 = len(args)\n\
             onInitialize = Init()\n\n\
             def onStart(timerOp, segment):\n    pass\n\n\
             def onDone(timerOp, segment):\n    op('c').par.value1 = 5 + segment\n",
        )
        .unwrap();
        let bad = dir.join("bad.py");
        std::fs::write(&bad, "def onStart(timerOp:\n").unwrap();
        let mut r = Rig::new(&format!(
            "rate = 60\n[[operator]]\nname = \"c\"\ntype = \"constant\"\npars = {{ name0 = \"init\", name1 = \"done\" }}\n\
             [[operator]]\nname = \"t\"\ntype = \"timer\"\ncallbacks = \"{}\"\n\
             [[operator]]\nname = \"u\"\ntype = \"timer\"\ncallbacks = \"{}\"\n",
            file.display(),
            bad.display()
        ));
        r.frame(1);
        let u = &r.graph.node("u").unwrap().stats;
        assert_eq!(u.errors, 1, "a file that failed to load is counted at the first cook");
        assert!(u.last_error.as_deref().unwrap_or("").contains("SyntaxError"), "{u:?}");
        r.pulse("t", "initialize");
        r.frame(2);
        r.frame(3);
        // A callable without a code object to ask gets the timer alone (of two).
        assert_eq!(r.val("c", "init"), 1.0);
        assert_eq!(r.graph.node("t").unwrap().stats.errors, 0);
        r.pulse("t", "start");
        r.frame(4);
        // onStart is given one argument and declares two.
        let t = &r.graph.node("t").unwrap().stats;
        assert_eq!(t.errors, 1);
        assert!(t.last_error.as_deref().unwrap_or("").contains("TypeError"), "{t:?}");
        // onDone declares two of its three arguments and gets those two.
        r.pulse("t", "gotodone");
        r.frame(5);
        r.frame(6);
        assert_eq!(r.val("c", "done"), 5.0);
        assert_eq!(r.graph.node("t").unwrap().stats.errors, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_callbacks_file_and_bad_tokens_are_check_errors() {
        let e = check_err("[[operator]]\nname = \"t\"\ntype = \"timer\"\ncallbacks = \"nope.py\"\npars = { lengthunits = \"second\" }\n");
        assert!(e.contains("t.toml:4:13: error: callbacks file"), "{e}");
        assert!(e.contains("did you mean \"seconds\"?"), "{e}");
    }
}
