//! Script CHOP state that outlives any one callback, findable by name on the cook thread: the
//! registry of Script CHOPs' Python-visible state ([`ScriptShared`]: custom parameters, pending
//! pulses, the loaded `onPulse`), per-operator storage (`store`/`fetch`), the frame of the last
//! cook, and a cache of compiled channel patterns.
//!
//! Part of the floor of `python/`: nothing here may use the TouchDesigner object classes in
//! `python::api`, which are built on top of it. Everything is per thread because Python runs on
//! the cook thread only.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::cook::Frame;
use crate::pattern::Pattern;

use crate::cook::par::ParSet;

/// The Python-visible state of one Script CHOP, shared between the operator and the handles
/// that name it (another script may read or set its parameters, or pulse them).
pub struct ScriptShared {
    pub name: String,
    pub modoutsidecook: bool,
    /// The `timeslice` setting from the config (`scriptOp.timeSliceDefault`).
    pub timeslice_default: bool,
    pub pars: ParSet,
    /// Pulses pushed from outside this operator's cook; `onPulse` runs at its next cook.
    pub pending_pulses: Vec<String>,
    /// `onPulse` of the loaded callbacks, so `par.pulse()` on its own parameter can run it at once.
    pub on_pulse: Option<Py<PyAny>>,
    /// Frames per second of the clock (`me.time.rate`).
    pub clock_rate: f64,
    /// The script set `numSamples = 0`: its own view of its output has no samples (the
    /// published output keeps one zero sample, as every CHOP in chopd has at least one).
    pub no_samples: bool,
    /// `isTimeSlice` set in `onSetupParameters`, outside any cook: applied by the operator.
    pub timeslice_request: Option<bool>,
    /// `op.cook(force=True)` from another script: cook on the next frame.
    pub cook_request: bool,
    /// MIDI messages scripts sent through a MIDI Out's `send…` methods, handed to it after the
    /// cook that sent them (bounded: see `python::api::midi`).
    pub midi_sent: Vec<crate::cook::ScriptMidi>,
}

impl ScriptShared {
    pub fn new(
        name: &str,
        modoutsidecook: bool,
        timeslice_default: bool,
        clock_rate: f64,
    ) -> ScriptShared {
        ScriptShared {
            name: name.to_string(),
            modoutsidecook,
            timeslice_default,
            pars: ParSet::default(),
            pending_pulses: Vec::new(),
            on_pulse: None,
            clock_rate,
            no_samples: false,
            timeslice_request: None,
            cook_request: false,
            midi_sent: Vec::new(),
        }
    }
}

/// A Script CHOP's state as the operator, the registry and cook records hold it.
pub type ScriptState = Rc<RefCell<ScriptShared>>;

/// What a component (`base`) declares beyond its custom parameters: its shortcuts and
/// extensions, which Python's `parent.Name`, `op.Name`, `iop.Name` and `ext` find.
#[derive(Debug, Default)]
pub struct CompShared {
    /// The component's key (its path below `/project1`).
    pub key: String,
    /// `parent.Name` finds the nearest enclosing component with this Parent Shortcut.
    pub parent_shortcut: Option<String>,
    /// `op.Name` finds this component from anywhere (a Global OP Shortcut).
    pub op_shortcut: Option<String>,
    /// Internal OP shortcuts: `iop.Name` → the operator at this path, relative to the
    /// component.
    pub iop: Vec<(String, String)>,
    /// Extensions, in order (`ext0object`, `ext0name`, `ext0promote`…).
    pub extensions: Vec<Extension>,
}

/// One extension of a component: a Python expression that makes the object (TouchDesigner's
/// `extNobject`, typically `op('./ShowExt').module.ShowExt(me)`), evaluated the first time the
/// extension is asked for, with `me` the component.
#[derive(Debug)]
pub struct Extension {
    pub object: String,
    /// The name it is found by (`extNname`; else the object's class name).
    pub name: Option<String>,
    /// Its members are reachable as the component's own (`parent.Show.Cue()`).
    pub promote: bool,
    /// The object, once made.
    pub made: Option<Py<PyAny>>,
}

/// A component's state as the operator and the registry hold it.
pub type CompState = Rc<RefCell<CompShared>>;

thread_local! {
    static REGISTRY: RefCell<HashMap<String, Vec<ScriptState>>> = RefCell::new(HashMap::new());
    static PAR_WRITES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    static COMPS: RefCell<HashMap<String, Vec<CompState>>> = RefCell::new(HashMap::new());
    static STORAGE: RefCell<HashMap<String, Py<PyDict>>> = RefCell::new(HashMap::new());
    static LAST_FRAME: RefCell<Option<Frame>> = const { RefCell::new(None) };
    static PATTERNS: RefCell<HashMap<String, Pattern>> = RefCell::new(HashMap::new());
    static IDS: RefCell<HashMap<String, u64>> = RefCell::new(HashMap::new());
}

/// `OP.id`: a number per operator name, the same for the whole session (reloads included),
/// starting at 1 in the order operators are first asked for theirs.
pub fn op_id(name: &str) -> u64 {
    IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        let next = ids.len() as u64 + 1;
        *ids.entry(name.to_string()).or_insert(next)
    })
}

/// Makes a Script CHOP's state findable by name. While a reload builds a replacement, two
/// operators of one name exist: the newest is found, and dropping either (the old one after a
/// good reload, the new one after a rejected reload) leaves the other findable.
pub fn register(shared: &ScriptState) {
    let name = shared.borrow().name.clone();
    REGISTRY.with(|r| r.borrow_mut().entry(name).or_default().push(shared.clone()));
}

/// Removes `shared` from the registry.
pub fn unregister(shared: &ScriptState) {
    let name = shared.borrow().name.clone();
    REGISTRY.with(|r| {
        let mut r = r.borrow_mut();
        if let Some(list) = r.get_mut(&name) {
            list.retain(|s| !Rc::ptr_eq(s, shared));
            if list.is_empty() {
                r.remove(&name);
            }
        }
    });
}

/// Makes a component's shortcuts and extensions findable (the newest of one key wins, as
/// [`register`] does for parameters).
pub fn register_comp(comp: &CompState) {
    let key = comp.borrow().key.clone();
    COMPS.with(|r| r.borrow_mut().entry(key).or_default().push(comp.clone()));
}

/// Removes `comp` from the registry.
pub fn unregister_comp(comp: &CompState) {
    let key = comp.borrow().key.clone();
    COMPS.with(|r| {
        let mut r = r.borrow_mut();
        if let Some(list) = r.get_mut(&key) {
            list.retain(|s| !Rc::ptr_eq(s, comp));
            if list.is_empty() {
                r.remove(&key);
            }
        }
    });
}

/// The component with key `key`, if there is one.
pub fn comp(key: &str) -> Option<CompState> {
    COMPS.with(|r| r.borrow().get(key).and_then(|l| l.last().cloned()))
}

/// The key of the component whose Global OP Shortcut is `name`.
pub fn op_shortcut(name: &str) -> Option<String> {
    COMPS.with(|r| {
        r.borrow()
            .values()
            .filter_map(|l| l.last())
            .find(|c| c.borrow().op_shortcut.as_deref() == Some(name))
            .map(|c| c.borrow().key.clone())
    })
}

/// Counts a parameter write or pulse made from Python (any operator's).
pub fn note_par_write() {
    PAR_WRITES.with(|c| c.set(c.get() + 1));
}

/// How many parameter writes Python has made on this thread: the graph hands them to the
/// operators they are for when this moves.
pub fn par_writes() -> u64 {
    PAR_WRITES.with(|c| c.get())
}

/// The state of the Script CHOP called `name`, if there is one.
pub fn lookup(name: &str) -> Option<ScriptState> {
    REGISTRY.with(|r| r.borrow().get(name).and_then(|l| l.last().cloned()))
}

/// The storage dictionary of operator `name` (`store`/`fetch`), created on first use. It outlives
/// callbacks reloads, as TouchDesigner's storage does.
pub fn storage<'py>(py: Python<'py>, name: &str) -> Bound<'py, PyDict> {
    STORAGE.with(|s| {
        s.borrow_mut()
            .entry(name.to_string())
            .or_insert_with(|| PyDict::new(py).unbind())
            .bind(py)
            .clone()
    })
}

/// The storage dictionary of operator `name` if anything was ever stored under that name.
pub fn existing_storage<'py>(py: Python<'py>, name: &str) -> Option<Bound<'py, PyDict>> {
    STORAGE.with(|s| s.borrow().get(name).map(|d| d.bind(py).clone()))
}

/// Takes the storage of `name` out (another operator is about to have that name).
pub fn take_storage(name: &str) -> Option<Py<PyDict>> {
    STORAGE.with(|s| s.borrow_mut().remove(name))
}

/// Puts back what [`take_storage`] took (the other operator did not come).
pub fn put_storage(name: &str, dict: Py<PyDict>) {
    STORAGE.with(|s| s.borrow_mut().insert(name.to_string(), dict));
}

/// The frame of the most recent cook on this thread (for `absTime` outside a cook).
pub fn last_frame() -> Option<Frame> {
    LAST_FRAME.with(|f| *f.borrow())
}

/// Set on entering a scope that has a frame, so `absTime` read between cooks is the latest one.
pub(super) fn set_last_frame(frame: Frame) {
    LAST_FRAME.with(|l| *l.borrow_mut() = Some(frame));
}

/// A compiled pattern from a small per-thread cache (`chans('tx ty')` in a loop compiles once).
pub fn with_pattern<R>(src: &str, f: impl FnOnce(&Pattern) -> R) -> PyResult<R> {
    PATTERNS.with(|p| {
        let mut p = p.borrow_mut();
        if !p.contains_key(src) {
            let pat = Pattern::new(src)
                .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
            if p.len() > 256 {
                p.clear();
            }
            p.insert(src.to_string(), pat);
        }
        Ok(f(&p[src]))
    })
}
