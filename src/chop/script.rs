//! Script CHOP (docs/script.md): runs a TouchDesigner callbacks file (`onCook`, `onSetupParameters`,
//! `onPulse`, `onGetCookLevel`) on the cook thread, cooking only when its inputs, its parameters
//! or anything its last cook read changed (or every frame with `CookLevel.ALWAYS` or when it
//! read the time).
//!
//! Faults stay inside the operator: an exception is logged (rate-limited) with file and line and
//! counted, the graph keeps the last good output; a runaway callback is interrupted after
//! `cook_budget`; an edited file is reloaded from `housekeeping` and a file that fails to load
//! leaves the old code running. The Python API itself lives in `crate::python`.

use std::borrow::Cow;
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use pyo3::prelude::*;

use crate::cook::{
    match_rates, ChopData, CookCtx, CookError, Frame, KeptPar, NodeState, Operator, ParValue,
    SrSelect,
};
use crate::config::OperatorConfig;
use crate::cook::BuildCtx;
use crate::logging::RateLimit;
use crate::python::api::op::OpHandle;
use crate::python::api::par as pypar;
use crate::python::callbacks::{self, Callbacks, FileStamp, PyFailure};
use crate::cook::par::ParStyle;
use crate::python::registry::{self, ScriptShared, ScriptState};
use crate::python::scope::{self, Deps, Scope};

pub mod config;
pub use config::{Script, ScriptConfig};

/// How often the callbacks file is checked for changes.
const POLL: Duration = Duration::from_millis(200);
/// A change younger than this waits one more poll (editors write files in several steps).
const SETTLE: Duration = Duration::from_millis(100);
/// The same failure is logged at most once per operator per this interval (a new one at once).
const LOG_INTERVAL: Duration = Duration::from_secs(2);
/// The built-in pulse that re-runs `onSetupParameters` (TouchDesigner's "Setup Parameters").
pub const SETUP_PULSE: &str = "setuppars";

/// `CookLevel` returned by `onGetCookLevel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookLevel {
    Automatic,
    OnChange,
    WhenUsed,
    Always,
}

impl CookLevel {
    fn from_int(v: i64) -> Option<CookLevel> {
        Some(match v {
            0 => CookLevel::Automatic,
            1 => CookLevel::OnChange,
            2 => CookLevel::WhenUsed,
            3 => CookLevel::Always,
            _ => return None,
        })
    }
}

pub struct ScriptOp {
    name: String,
    path: PathBuf,
    shared: ScriptState,
    cb: Option<Callbacks>,
    me: Py<OpHandle>,
    budget: Duration,
    /// Longest time slice a cook may see (`max_slice_ms`).
    max_slice: Duration,
    /// Current `isTimeSlice` (the config's `timeslice`, changeable by the script).
    timeslice: bool,
    srselect: SrSelect,
    cooked: bool,
    last_cook_frame: i64,
    deps: Deps,
    pars_seen: u64,
    cook_level: CookLevel,
    /// Cook at the next opportunity (reload, reset, counts to report).
    force: bool,
    reset_pending: bool,
    setup_pending: bool,
    pending_errors: u64,
    pending_warnings: u64,
    pending_error_msg: Option<String>,
    last_poll: Instant,
    /// Stamp of the file version last loaded or tried.
    tried: Option<FileStamp>,
    log: RateLimit,
    reloads: u64,
    interrupts: u64,
}

impl ScriptOp {
    /// Creates the operator: loads the callbacks file and runs `onSetupParameters`. Must run on
    /// the cook thread (Python state is per thread). A file that fails to load is reported and
    /// the operator waits for it to be fixed; only an unusable Python is an `Err`.
    pub fn new(op: &OperatorConfig, cfg: &ScriptConfig, cx: &BuildCtx) -> Result<ScriptOp, String> {
        let rate = cx.rate;
        crate::python::ensure_init()?;
        let mut shared = ScriptShared::new(&op.name, cfg.modoutsidecook, op.timeslice, rate);
        shared.pars.set_init(&cfg.pars);
        shared.pars.set_init_modes(&cfg.modes);
        let shared = Rc::new(RefCell::new(shared));
        registry::register(&shared);
        let me = Python::attach(|py| Py::new(py, OpHandle::new(&op.name, None)))
            .map_err(|e| format!("script \"{}\": {e}", op.name))?;
        let mut s = ScriptOp {
            name: op.name.clone(),
            path: cfg.callbacks.clone(),
            shared,
            cb: None,
            me,
            budget: cfg.cook_budget,
            max_slice: cx.max_slice,
            timeslice: op.timeslice,
            srselect: op.srselect,
            cooked: false,
            last_cook_frame: 0,
            deps: Deps::default(),
            pars_seen: 0,
            cook_level: CookLevel::Automatic,
            force: true,
            reset_pending: false,
            setup_pending: false,
            pending_errors: 0,
            pending_warnings: 0,
            pending_error_msg: None,
            last_poll: Instant::now(),
            tried: None,
            log: RateLimit::new(LOG_INTERVAL),
            reloads: 0,
            interrupts: 0,
        };
        s.load(true);
        let unknown = s.shared.borrow().pars.unknown_inits();
        if !unknown.is_empty() {
            tracing::warn!(
                "config sets parameters that onSetupParameters did not create: {}",
                unknown.join(", ")
            );
        }
        Ok(s)
    }

    /// The state Python handles see (tests, the control port).
    pub fn shared(&self) -> &ScriptState {
        &self.shared
    }

    /// True when a callbacks file is loaded.
    pub fn loaded(&self) -> bool {
        self.cb.is_some()
    }

    /// A custom parameter's value (tests, status).
    pub fn par(&self, name: &str) -> Option<ParValue> {
        self.shared.borrow().pars.get(name).map(|d| d.val.clone())
    }

    /// Runs `f` (an `onSetupParameters` call) with the parameters told that the values set now
    /// are the script's defaults.
    fn setting_up<R>(&self, f: impl FnOnce(&Self) -> R) -> R {
        self.shared.borrow_mut().pars.setting_up = true;
        let r = f(self);
        self.shared.borrow_mut().pars.setting_up = false;
        r
    }

    /// `isTimeSlice` set by `onSetupParameters`, which runs outside the cook it applies to.
    fn take_timeslice_request(&mut self) {
        if let Some(on) = self.shared.borrow_mut().timeslice_request.take() {
            self.timeslice = on;
        }
    }

    fn report(&mut self, what: &str, f: &PyFailure) {
        if f.budget {
            self.interrupts += 1;
        }
        if let Some(held) = self.log.allow(&format!("{what}: {}", f.summary)) {
            let more = held.suffix("failures");
            let name = &self.name;
            // Formatted only here: most failures of a script failing every frame are not logged.
            let traceback = f.traceback();
            if traceback.is_empty() {
                tracing::error!("script \"{name}\" {what} failed: {}{more}", f.summary);
            } else {
                tracing::error!(
                    "script \"{name}\" {what} failed: {}{more}\n{}",
                    f.summary,
                    traceback
                );
            }
        }
    }

    /// An error outside a cook: counted at the next cook.
    fn count_later(&mut self, msg: &str) {
        self.pending_errors += 1;
        self.pending_error_msg = Some(msg.to_string());
        self.force = true;
    }

    /// Loads (or reloads) the callbacks file and runs `onSetupParameters`. A file that fails to
    /// load leaves the old callbacks in place; a failing `onSetupParameters` does not: the file
    /// loaded and cooks, the failure is the operator's error like a failing cook.
    fn load(&mut self, initial: bool) {
        self.tried = callbacks::stamp(&self.path);
        let result = Python::attach(|py| -> Result<Result<(), PyFailure>, PyFailure> {
            let guard = scope::enter(Scope::detached(&self.shared)).map_err(|e| PyFailure {
                summary: e,
                error: None,
                budget: false,
            })?;
            let loaded = callbacks::load(py, &self.path, &self.name, self.budget);
            let setup = match &loaded {
                Ok(cb) => match &cb.on_setup {
                    Some(f) => self.setting_up(|me| {
                        callbacks::call(py, f, (me.me.bind(py),), me.budget, &me.path).map(drop)
                    }),
                    None => Ok(()),
                },
                Err(_) => Ok(()),
            };
            let sc = guard.finish(py);
            self.take_messages(sc, None);
            let cb = loaded?;
            self.shared.borrow_mut().on_pulse = cb.on_pulse.as_ref().map(|f| f.clone_ref(py));
            if let Some(old) = self.cb.replace(cb) {
                callbacks::retire(py, old);
            }
            self.query_cook_level(py);
            Ok(setup)
        });
        match result {
            Ok(setup) => {
                if !initial {
                    self.reloads += 1;
                    tracing::info!(file = %self.path.display(), "new callbacks applied");
                }
                if let Err(f) = setup {
                    self.report("onSetupParameters", &f);
                    self.count_later(&f.summary);
                }
            }
            Err(f) => {
                let what = if initial {
                    "loading callbacks"
                } else {
                    "reloading callbacks (old code keeps running)"
                };
                self.report(what, &f);
                self.count_later(&f.summary);
            }
        }
        self.force = true;
    }

    /// Moves `addError`/`addWarning` messages of a finished scope into the counts: into
    /// `stats` during a cook, else into the pending counts.
    fn take_messages(&mut self, sc: Scope, stats: Option<&mut crate::cook::CookStats>) {
        if sc.errors.is_empty() && sc.warnings.is_empty() {
            return;
        }
        for (what, msgs) in [("addError", &sc.errors), ("addWarning", &sc.warnings)] {
            for m in msgs {
                if let Some(held) = self.log.allow(&format!("{what}: {m}")) {
                    tracing::warn!("{what}: {m}{held}");
                }
            }
        }
        match stats {
            Some(st) => {
                st.errors += sc.errors.len() as u64;
                st.warnings += sc.warnings.len() as u64;
                if let Some(m) = sc.errors.last() {
                    st.last_error = Some(m.clone());
                }
            }
            None => {
                self.pending_errors += sc.errors.len() as u64;
                self.pending_warnings += sc.warnings.len() as u64;
                if let Some(m) = sc.errors.last() {
                    self.pending_error_msg = Some(m.clone());
                }
                self.force = true;
            }
        }
    }

    fn query_cook_level(&mut self, py: Python<'_>) {
        let Some(f) = self
            .cb
            .as_ref()
            .and_then(|c| c.on_cook_level.as_ref())
            .map(|f| f.clone_ref(py))
        else {
            self.cook_level = CookLevel::Automatic;
            return;
        };
        match callbacks::call(py, &f, (self.me.bind(py),), self.budget, &self.path) {
            Ok(v) => match v.extract::<i64>().ok().and_then(CookLevel::from_int) {
                Some(l) => self.cook_level = l,
                None => {
                    let f = PyFailure {
                        summary: format!("onGetCookLevel returned {v}, not a CookLevel"),
                        error: None,
                        budget: false,
                    };
                    self.report("onGetCookLevel", &f);
                }
            },
            Err(f) => self.report("onGetCookLevel", &f),
        }
    }

    /// Checks the callbacks file and reloads it when it changed (`now`: skip the poll interval,
    /// for tests).
    pub fn poll_file(&mut self, now: bool) {
        if !now && self.last_poll.elapsed() < POLL {
            return;
        }
        self.last_poll = Instant::now();
        let current = callbacks::stamp(&self.path);
        if current.is_none() || current == self.tried {
            return;
        }
        let young = current
            .and_then(|s| s.mtime)
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age < SETTLE);
        if young && !now {
            return;
        }
        self.load(false);
    }

    /// Sets the output's length and start for a time-sliced cook: the span since the last cook
    /// (or input 0's slice when it is time-sliced).
    fn slice(&self, frame: &Frame, input0: Option<(&ChopData, bool)>, out: &mut ChopData) {
        if let Some((inp, true)) = input0 {
            out.set_num_samples(inp.num_samples());
            out.start = inp.start;
            return;
        }
        let max_frames = (self.max_slice.as_secs_f64() * frame.rate).ceil().max(1.0) as i64;
        let frames = if self.cooked {
            frame.frame - self.last_cook_frame
        } else {
            frame.step
        }
        .clamp(1, max_frames);
        let ratio = out.rate / frame.rate;
        let n = ((frames as f64 * ratio).round() as i64).max(1);
        out.set_num_samples(n as usize);
        out.start = (frame.frame as f64 * ratio).round() as i64 - n + 1;
    }

    fn run_callbacks(
        &mut self,
        py: Python<'_>,
        ctx: &mut CookCtx,
        out: &mut ChopData,
        overrides: Vec<Option<ChopData>>,
    ) -> Result<(), PyFailure> {
        let guard =
            scope::enter(Scope::cooking(&self.shared, ctx, out, overrides)).map_err(|e| {
                PyFailure {
                    summary: e,
                    error: None,
                    budget: false,
                }
            })?;
        let mut side_failures: Vec<(&str, PyFailure)> = Vec::new();
        if std::mem::take(&mut self.setup_pending) {
            if let Some(f) = self.cb.as_ref().and_then(|c| c.on_setup.as_ref()) {
                let r = self.setting_up(|me| {
                    callbacks::call(py, f, (me.me.bind(py),), me.budget, &me.path)
                });
                if let Err(e) = r {
                    side_failures.push(("onSetupParameters", e));
                }
            }
        }
        let pulses = std::mem::take(&mut self.shared.borrow_mut().pending_pulses);
        if let Some(f) = self.cb.as_ref().and_then(|c| c.on_pulse.as_ref()) {
            for p in pulses {
                let par = pypar::Par::new(&self.name, &p);
                if let Err(e) = callbacks::call(py, f, (par,), self.budget, &self.path) {
                    side_failures.push(("onPulse", e));
                }
            }
        }
        let _ = scope::with(|s| {
            s.in_cook = true;
            s.recording = true;
            s.deps.clear();
            Ok(())
        });
        let result = match self.cb.as_ref().and_then(|c| c.on_cook.as_ref()) {
            Some(f) => {
                callbacks::call(py, f, (self.me.bind(py),), self.budget, &self.path).map(drop)
            }
            None => Ok(()),
        };
        let mut sc = guard.finish(py);
        self.deps = std::mem::take(&mut sc.deps);
        for (what, f) in &side_failures {
            self.report(what, f);
        }
        let st = &mut ctx.state().stats;
        st.errors += side_failures.len() as u64;
        if let Some((_, f)) = side_failures.last() {
            st.last_error = Some(f.summary.clone());
        }
        self.take_messages(sc, Some(&mut ctx.state().stats));
        result
    }
}

impl Drop for ScriptOp {
    fn drop(&mut self) {
        registry::unregister(&self.shared);
        if let Some(cb) = self.cb.take() {
            Python::attach(|py| callbacks::retire(py, cb));
        }
    }
}

impl Operator for ScriptOp {
    fn wants_cook(&mut self, _frame: &Frame, nodes: &[NodeState]) -> bool {
        if !self.cooked || self.force || self.reset_pending || self.setup_pending {
            return true;
        }
        if self.cook_level == CookLevel::Always {
            return true;
        }
        {
            let mut s = self.shared.borrow_mut();
            if std::mem::take(&mut s.cook_request) {
                return true;
            }
            if !s.pending_pulses.is_empty() || s.pars.version != self.pars_seen {
                return true;
            }
        }
        self.deps.changed(nodes)
    }

    /// From what the last cook did: it read the time (`absTime`, `time`), it is time-sliced,
    /// it asked to cook every frame (`CookLevel.ALWAYS`); before its first cook it waits for
    /// the frame too.
    fn time_dependent(&self) -> bool {
        !self.cooked || self.deps.time || self.timeslice || self.cook_level == CookLevel::Always
    }

    fn cook(&mut self, ctx: &mut CookCtx, out: &mut ChopData) -> Result<(), CookError> {
        let frame = *ctx.frame;
        let overrides: Vec<Option<ChopData>> = {
            let inputs = ctx.inputs();
            match_rates(&inputs, self.srselect)?
                .into_iter()
                .map(|c| match c {
                    Cow::Owned(d) => Some(d),
                    Cow::Borrowed(_) => None,
                })
                .collect()
        };
        {
            let st = &mut ctx.state().stats;
            st.errors += std::mem::take(&mut self.pending_errors);
            st.warnings += std::mem::take(&mut self.pending_warnings);
            if let Some(m) = self.pending_error_msg.take() {
                st.last_error = Some(m);
            }
        }
        if std::mem::take(&mut self.reset_pending) {
            out.clear();
        }
        self.take_timeslice_request();
        ctx.state().timeslice = self.timeslice;
        if self.timeslice {
            let in0 = ctx.nodes[ctx.me].inputs.first().copied();
            let input0 = in0.map(|i| {
                let n = &ctx.nodes[i];
                (
                    overrides
                        .first()
                        .and_then(Option::as_ref)
                        .unwrap_or(&n.output),
                    n.timeslice,
                )
            });
            self.slice(&frame, input0, out);
        }
        let result = Python::attach(|py| {
            let r = self.run_callbacks(py, ctx, out, overrides);
            if r.is_ok() {
                self.query_cook_level(py);
            }
            r
        });
        self.timeslice = ctx.state().timeslice;
        self.take_timeslice_request();
        self.cooked = true;
        self.last_cook_frame = frame.frame;
        self.force = false;
        self.pars_seen = self.shared.borrow().pars.version;
        // Scope pass-through of input 0's other channels is the graph's job (after a good cook).
        match result {
            Ok(()) => Ok(()),
            Err(f) => {
                self.report("onCook", &f);
                Err(CookError::Logged(f.summary))
            }
        }
    }

    fn extras(&self, out: &mut Vec<(&'static str, f64)>) {
        out.push(("script_loaded", if self.cb.is_some() { 1.0 } else { 0.0 }));
        out.push(("script_reloads", self.reloads as f64));
        out.push(("script_interrupts", self.interrupts as f64));
    }

    fn set_par(&mut self, name: &str, value: ParValue) -> Result<(), String> {
        let style = self.shared.borrow().pars.get(name).map(|d| d.style);
        match style {
            Some(ParStyle::Pulse) => {
                let on = match &value {
                    ParValue::Float(f) => *f != 0.0,
                    ParValue::Str(s) => !s.is_empty() && s != "0",
                };
                if on {
                    self.pulse_par(name)?;
                }
                Ok(())
            }
            Some(_) => self.shared.borrow_mut().pars.set(name, &value).map(drop),
            None if name == SETUP_PULSE => self.pulse_par(name),
            None => Err(format!(
                "script \"{}\" has no parameter \"{name}\"",
                self.name
            )),
        }
    }

    fn pulse_par(&mut self, name: &str) -> Result<(), String> {
        if name == SETUP_PULSE {
            self.setup_pending = true;
            return Ok(());
        }
        let mut s = self.shared.borrow_mut();
        match s.pars.get(name).map(|d| d.style) {
            Some(ParStyle::Pulse) => {
                s.pending_pulses.push(name.to_string());
                Ok(())
            }
            Some(_) => Err(format!(
                "parameter \"{name}\" of script \"{}\" is not a pulse",
                self.name
            )),
            None => Err(format!(
                "script \"{}\" has no parameter \"{name}\"",
                self.name
            )),
        }
    }

    fn setup_pars(&mut self) -> Result<(), String> {
        self.pulse_par(SETUP_PULSE)
    }

    fn par_defs(&self) -> Vec<crate::cook::par::ParDef> {
        self.shared.borrow().pars.pars().to_vec()
    }

    fn runtime_pars(&self) -> crate::cook::KeptPars {
        self.shared.borrow().pars.runtime_values()
    }

    fn restore_pars(&mut self, pars: &[(String, KeptPar)]) {
        self.shared.borrow_mut().pars.restore(pars);
    }

    fn reset(&mut self) {
        self.reset_pending = true;
    }

    fn housekeeping(&mut self) {
        self.poll_file(false);
    }
}

#[cfg(test)]
mod tests;
