//! The running cook as Python handles see it: a thread-local [`Scope`] that exists only while a
//! callback runs, the record of what a cook read ([`Deps`]), from which the Script CHOP
//! decides when to cook again, and the [`ViewOwner`]s that keep channel memory alive for numpy
//! arrays that outlive it.
//!
//! The scope holds raw pointers into the graph's `CookCtx` and the cooking operator's output.
//! They are valid because a scope is entered and finished inside `ScriptOp::cook`, which holds
//! those borrows for the whole time, and because Python runs on this thread only. Nothing here
//! hands out a reference that outlives a single API call.
//!
//! Part of the floor of `python/`: the object classes in `python::api` resolve their handles
//! through the scope, so nothing here may use them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyPermissionError, PyRuntimeError};
use pyo3::prelude::*;

use crate::cook::dat::DatContent;
use crate::cook::{ChopData, CookCtx, CookStats, DaemonStats, Frame, NodeState};

use super::registry::{self, ScriptShared, ScriptState};

thread_local! {
    static CURRENT: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// What one cook read through the API; the Script CHOP cooks again when any of it changed.
#[derive(Clone, Debug, Default)]
pub struct Deps {
    /// `absTime` (or anything frame-dependent) was read: cook every frame.
    pub time: bool,
    /// Other operators whose channels were read: (index, name, `version` seen).
    pub nodes: Vec<(usize, String, u64)>,
    /// Other operators whose statistics were read: (index, name, cooks+errors+warnings seen).
    pub stats: Vec<(usize, String, u64)>,
    /// Other Script CHOPs whose parameters were read: (state, parameter version seen).
    pub pars: Vec<(Weak<RefCell<ScriptShared>>, u64)>,
    /// `tdu.Dependency` values read: (the value's version counter, version seen).
    pub values: Vec<(std::sync::Weak<AtomicU64>, u64)>,
}

impl Deps {
    pub fn clear(&mut self) {
        self.time = false;
        self.nodes.clear();
        self.stats.clear();
        self.pars.clear();
        self.values.clear();
    }

    /// True when something recorded has changed since it was read (or can no longer be found,
    /// which is a change too).
    pub fn changed(&self, nodes: &[NodeState]) -> bool {
        if self.time {
            return true;
        }
        let node = |i: usize, name: &str| nodes.get(i).filter(|n| n.name == name);
        self.nodes
            .iter()
            .any(|(i, name, seen)| node(*i, name).is_none_or(|n| n.version != *seen))
            || self.stats.iter().any(|(i, name, seen)| {
                node(*i, name).is_none_or(|n| stats_stamp(&n.stats) != *seen)
            })
            || self.pars.iter().any(|(w, seen)| {
                w.upgrade()
                    .is_none_or(|s| s.try_borrow().map_or(true, |s| s.pars.version != *seen))
            })
            || self.values.iter().any(|(w, seen)| {
                w.upgrade()
                    .is_none_or(|v| v.load(Ordering::Relaxed) != *seen)
            })
    }

    fn note_value(&mut self, v: &Arc<AtomicU64>) {
        let seen = v.load(Ordering::Relaxed);
        match self
            .values
            .iter_mut()
            .find(|(w, _)| w.as_ptr() == Arc::as_ptr(v))
        {
            Some(e) => e.1 = seen,
            None => self.values.push((Arc::downgrade(v), seen)),
        }
    }

    fn note_node(&mut self, i: usize, n: &NodeState) {
        if !self.nodes.iter().any(|(j, _, _)| *j == i) {
            self.nodes.push((i, n.name.clone(), n.version));
        }
    }

    fn note_stats(&mut self, i: usize, n: &NodeState) {
        if !self.stats.iter().any(|(j, _, _)| *j == i) {
            self.stats.push((i, n.name.clone(), stats_stamp(&n.stats)));
        }
    }

    pub fn note_pars(&mut self, shared: &ScriptState, version: u64) {
        if !self
            .pars
            .iter()
            .any(|(w, _)| w.as_ptr() == Rc::as_ptr(shared))
        {
            self.pars.push((Rc::downgrade(shared), version));
        }
    }
}

/// Changes whenever the statistics a script can read change (cooks, errors, warnings).
fn stats_stamp(s: &CookStats) -> u64 {
    s.total_cooks
        .wrapping_mul(1_000_003)
        .wrapping_add(s.errors.wrapping_mul(1009))
        .wrapping_add(s.warnings)
}

/// Which channel data a handle resolved to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataRef {
    /// The output of the operator whose callback runs.
    Own,
    /// Another operator's output in the graph.
    Node(usize),
    /// Input `k` of the running operator, resampled for `srselect` (owned by the scope).
    Input(usize),
}

struct GraphRefs {
    nodes: *mut NodeState,
    len: usize,
    names: *const HashMap<String, usize>,
    daemon: *const DaemonStats,
    me: usize,
    out: *mut ChopData,
}

/// Keeps channel memory alive for numpy arrays that outlived the cook that made them: the base
/// object of every array handed out over channel memory, one per [`DataRef`] in a scope.
#[pyclass(frozen, module = "chopd")]
#[derive(Default)]
pub struct ViewOwner {
    kept: Mutex<Option<ChopData>>,
}

impl ViewOwner {
    /// Takes over `data` (whose buffer arrays still point into).
    pub fn keep(&self, data: ChopData) {
        // Poisoning needs a panic while holding this lock, which only moves a value.
        *self.kept.lock().unwrap_or_else(|p| p.into_inner()) = Some(data);
    }
}

/// The context of the callback that is running.
pub struct Scope {
    pub owner: ScriptState,
    pub owner_name: String,
    pub frame: Option<Frame>,
    graph: Option<GraphRefs>,
    /// Inputs resampled for `srselect`; `None` where the input is used as is.
    pub overrides: Vec<Option<ChopData>>,
    /// True inside `onCook`: the running operator may change its own channels.
    pub in_cook: bool,
    /// Record reads into `deps` (during `onCook`).
    pub recording: bool,
    pub deps: Deps,
    /// numpy arrays handed out over channel memory, one owner object per target.
    pub views: Vec<(DataRef, Py<ViewOwner>)>,
    /// `addError`/`addWarning` messages of this scope, for the operator's log.
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl Scope {
    /// A scope without a graph: loading the callbacks file or running `onSetupParameters`
    /// while the operator is being created or reloaded.
    pub fn detached(owner: &ScriptState) -> Scope {
        let owner_name = owner.borrow().name.clone();
        Scope {
            owner: owner.clone(),
            owner_name,
            frame: registry::last_frame(),
            graph: None,
            overrides: Vec::new(),
            in_cook: false,
            recording: false,
            deps: Deps::default(),
            views: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// A scope inside a cook. `ctx` and `out` must stay borrowed until [`ScopeGuard::finish`]
    /// (the guard borrows nothing, so the caller keeps that promise by finishing the guard before
    /// touching either again).
    pub fn cooking(
        owner: &ScriptState,
        ctx: &mut CookCtx,
        out: &mut ChopData,
        overrides: Vec<Option<ChopData>>,
    ) -> Scope {
        let mut s = Scope::detached(owner);
        s.frame = Some(*ctx.frame);
        s.graph = Some(GraphRefs {
            nodes: ctx.nodes.as_mut_ptr(),
            len: ctx.nodes.len(),
            names: ctx.names as *const _,
            daemon: ctx.daemon as *const _,
            me: ctx.me,
            out: out as *mut _,
        });
        s.overrides = overrides;
        s
    }

    fn graph(&self) -> PyResult<&GraphRefs> {
        self.graph.as_ref().ok_or_else(|| {
            PyRuntimeError::new_err(
                "operators and channels are only available while the graph cooks (in onCook or \
                 onPulse), not while the callbacks file loads or in onSetupParameters",
            )
        })
    }

    pub fn has_graph(&self) -> bool {
        self.graph.is_some()
    }

    pub fn nodes(&self) -> PyResult<&[NodeState]> {
        let g = self.graph()?;
        // SAFETY: see the module docs: the slice is borrowed by the running cook.
        Ok(unsafe { std::slice::from_raw_parts(g.nodes, g.len) })
    }

    fn nodes_mut(&mut self) -> PyResult<&mut [NodeState]> {
        let g = self.graph()?;
        // SAFETY: as `nodes`; `&mut self` makes this the only live reference.
        Ok(unsafe { std::slice::from_raw_parts_mut(g.nodes, g.len) })
    }

    pub fn names(&self) -> PyResult<&HashMap<String, usize>> {
        // SAFETY: as `nodes`.
        Ok(unsafe { &*self.graph()?.names })
    }

    pub fn daemon(&self) -> PyResult<&DaemonStats> {
        // SAFETY: as `nodes`.
        Ok(unsafe { &*self.graph()?.daemon })
    }

    /// Node index of the running operator.
    pub fn me(&self) -> PyResult<usize> {
        Ok(self.graph()?.me)
    }

    /// The node index of operator `name`, using (and refreshing) a handle's cached index.
    pub fn find(&self, name: &str, cache: &AtomicUsize) -> PyResult<usize> {
        let nodes = self.nodes()?;
        let i = cache.load(Ordering::Relaxed);
        if nodes.get(i).is_some_and(|n| n.name == name) {
            return Ok(i);
        }
        match self.names()?.get(name) {
            Some(&i) => {
                cache.store(i, Ordering::Relaxed);
                Ok(i)
            }
            None => Err(pyo3::exceptions::PyReferenceError::new_err(format!(
                "operator \"{name}\" no longer exists"
            ))),
        }
    }

    /// Resolves an operator handle to the data it reads.
    pub fn resolve(
        &self,
        name: &str,
        cache: &AtomicUsize,
        slot: Option<usize>,
    ) -> PyResult<DataRef> {
        self.graph()?;
        if name == self.owner_name {
            return Ok(DataRef::Own);
        }
        let i = self.find(name, cache)?;
        if let Some(k) = slot {
            if self.overrides.get(k).is_some_and(Option::is_some) {
                return Ok(DataRef::Input(k));
            }
        }
        Ok(DataRef::Node(i))
    }

    /// The node index behind a target.
    pub fn node_of(&self, t: DataRef) -> PyResult<usize> {
        let g = self.graph()?;
        Ok(match t {
            DataRef::Own => g.me,
            DataRef::Node(i) => i,
            DataRef::Input(k) => self.nodes()?[g.me].inputs[k],
        })
    }

    pub fn data(&self, t: DataRef) -> PyResult<&ChopData> {
        let g = self.graph()?;
        Ok(match t {
            // SAFETY: `out` is the running operator's output, borrowed by the cook.
            DataRef::Own => unsafe { &*g.out },
            DataRef::Node(i) => &self.nodes()?[i].output,
            DataRef::Input(k) => self.overrides[k]
                .as_ref()
                .expect("resolve checked the override"),
        })
    }

    /// Mutable data; callers check permission first ([`Scope::check_write`]).
    pub fn data_mut(&mut self, t: DataRef) -> PyResult<&mut ChopData> {
        let out = self.graph()?.out;
        Ok(match t {
            // SAFETY: as `data`; `&mut self` makes this the only live reference.
            DataRef::Own => unsafe { &mut *out },
            DataRef::Node(i) => &mut self.nodes_mut()?[i].output,
            DataRef::Input(k) => self.overrides[k]
                .as_mut()
                .expect("resolve checked the override"),
        })
    }

    pub fn node_state(&self, t: DataRef) -> PyResult<&NodeState> {
        let i = self.node_of(t)?;
        Ok(&self.nodes()?[i])
    }

    pub fn stats(&mut self, t: DataRef) -> PyResult<&CookStats> {
        let i = self.node_of(t)?;
        if self.recording && t != DataRef::Own {
            let n = &self.nodes()?[i];
            let n: *const NodeState = n;
            // SAFETY: `n` points into the graph's nodes, which `deps` does not alias.
            self.deps.note_stats(i, unsafe { &*n });
        }
        Ok(&self.nodes()?[i].stats)
    }

    pub fn own_stats_mut(&mut self) -> PyResult<&mut CookStats> {
        let me = self.me()?;
        Ok(&mut self.nodes_mut()?[me].stats)
    }

    /// Sets the running operator's time-slice flag as the graph sees it.
    pub fn set_own_timeslice(&mut self, on: bool) -> PyResult<()> {
        let me = self.me()?;
        self.nodes_mut()?[me].timeslice = on;
        Ok(())
    }

    /// Notes that the running cook read `t`'s channels.
    pub fn record_read(&mut self, t: DataRef) {
        if !self.recording {
            return;
        }
        if let DataRef::Node(i) = t {
            if let Some(g) = &self.graph {
                // SAFETY: as `nodes`.
                let n = unsafe { &*g.nodes.add(i) };
                self.deps.note_node(i, n);
            }
        }
    }

    /// The DAT content of node `i` (recorded as a read of that node during `onCook`), or
    /// `None` when the node is no DAT.
    pub fn dat(&mut self, i: usize) -> PyResult<Option<&DatContent>> {
        self.record_read(DataRef::Node(i));
        Ok(self.nodes()?.get(i).and_then(|n| n.dat.as_deref()))
    }

    /// The DAT content of node `i` to edit. Any script may edit a DAT; the edit moves the
    /// node's version (readers cook again) and the content's version, but does not
    /// make the writing script itself dirty (a cook that reads and then writes a table would
    /// otherwise cook every frame).
    pub fn dat_mut(&mut self, i: usize) -> PyResult<Option<&mut DatContent>> {
        let Some(n) = self.nodes_mut()?.get_mut(i) else {
            return Ok(None);
        };
        if n.dat.is_none() {
            return Ok(None);
        }
        n.mark_changed();
        let version = n.version;
        if let Some(e) = self.deps.nodes.iter_mut().find(|(j, _, _)| *j == i) {
            e.2 = version;
        }
        let d = self.nodes_mut()?[i]
            .dat
            .as_deref_mut()
            .expect("looked at above");
        d.touch();
        Ok(Some(d))
    }

    /// Notes that the running cook read a `tdu.Dependency` whose version counter is `v`.
    pub fn record_value(&mut self, v: &Arc<AtomicU64>) {
        if self.recording {
            self.deps.note_value(v);
        }
    }

    pub fn record_time(&mut self) {
        if self.recording {
            self.deps.time = true;
        }
    }

    /// May the running code change the channel *values* of `t`? The running Script CHOP may in
    /// its cook; outside its cook (its `onPulse`, or another operator's code) only with
    /// `modoutsidecook`. Other kinds of operators are read-only. A write into another operator
    /// marks its output changed for this frame.
    pub fn check_write(&mut self, t: DataRef, what: &str) -> PyResult<()> {
        match t {
            DataRef::Own if self.in_cook => Ok(()),
            DataRef::Own => {
                if self.owner.borrow().modoutsidecook {
                    Ok(())
                } else {
                    Err(PyPermissionError::new_err(format!(
                        "{what}: \"{}\" can only change its channels in its own onCook (turn on \
                         modoutsidecook to allow changes from elsewhere)",
                        self.owner_name
                    )))
                }
            }
            DataRef::Input(_) => Err(PyPermissionError::new_err(format!(
                "{what}: this input was resampled for srselect; it is a read-only copy"
            ))),
            DataRef::Node(i) => {
                let n = &self.nodes()?[i];
                let (name, kind) = (n.name.clone(), n.kind);
                let allowed = kind == "script"
                    && registry::lookup(&name).is_some_and(|s| s.borrow().modoutsidecook);
                if !allowed {
                    let why = if kind == "script" {
                        "turn on its modoutsidecook to allow changes from outside its cook"
                    } else {
                        "only a Script CHOP's channels can be changed"
                    };
                    return Err(PyPermissionError::new_err(format!(
                        "{what}: cannot change the channels of {kind} \"{name}\" from outside its cook; {why}"
                    )));
                }
                self.nodes_mut()?[i].mark_changed();
                Ok(())
            }
        }
    }

    /// May the running code change `t`'s channel layout, rate or length? Only a Script CHOP in
    /// its own cook.
    pub fn check_layout(&self, t: DataRef, what: &str) -> PyResult<()> {
        if t == DataRef::Own && self.in_cook {
            return Ok(());
        }
        Err(PyPermissionError::new_err(format!(
            "{what} is only allowed on a Script CHOP's own output during its onCook"
        )))
    }

    /// Before `t`'s memory may move (new channels, new length): numpy arrays still alive over
    /// the old memory keep it (they become detached snapshots) and the data gets fresh memory.
    pub fn detach_views(&mut self, py: Python<'_>, t: DataRef) -> PyResult<()> {
        let Some(pos) = self.views.iter().position(|(vt, _)| *vt == t) else {
            return Ok(());
        };
        let (_, owner) = self.views.swap_remove(pos);
        // One reference is ours; any other is an array (or a view of one) still alive.
        // SAFETY: reading the reference count of a live object with the GIL held (`py`).
        let refs = unsafe { pyo3::ffi::Py_REFCNT(owner.bind(py).as_ptr()) };
        if refs > 1 {
            let data = self.data_mut(t)?;
            let snapshot = data.clone();
            let old = std::mem::replace(data, snapshot);
            owner.get().keep(old);
        }
        Ok(())
    }
}

/// Proof that a scope is entered; [`ScopeGuard::finish`] leaves it and settles numpy views.
pub struct ScopeGuard {
    finished: bool,
}

/// Enters `scope` for the callbacks that follow. Fails if a scope is already active (callbacks
/// never nest across operators).
pub fn enter(scope: Scope) -> Result<ScopeGuard, String> {
    if let Some(f) = scope.frame {
        registry::set_last_frame(f);
    }
    CURRENT.with(|c| {
        let mut c = c
            .try_borrow_mut()
            .map_err(|_| "python scope busy".to_string())?;
        if c.is_some() {
            return Err("a python scope is already active on this thread".to_string());
        }
        *c = Some(scope);
        Ok(ScopeGuard { finished: false })
    })
}

impl ScopeGuard {
    /// Leaves the scope: numpy arrays that outlive it get their memory detached from the graph,
    /// and the scope (with its recorded reads and messages) is returned.
    pub fn finish(mut self, py: Python<'_>) -> Scope {
        self.finished = true;
        leave(py)
    }
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        if !self.finished {
            Python::attach(|py| drop(leave(py)));
        }
    }
}

fn leave(py: Python<'_>) -> Scope {
    let mut scope = CURRENT
        .with(|c| c.borrow_mut().take())
        .expect("a scope guard exists only while its scope is active");
    while let Some((t, _)) = scope.views.first().map(|(t, o)| (*t, o)) {
        if scope.detach_views(py, t).is_err() {
            // Only a missing graph fails, and views exist only with a graph.
            scope.views.remove(0);
        }
    }
    scope
}

/// Runs `f` with the active scope. Outside a callback, or when called re-entrantly (from a
/// `__del__` during an API call), it raises a Python error instead.
pub fn with<R>(f: impl FnOnce(&mut Scope) -> PyResult<R>) -> PyResult<R> {
    CURRENT.with(|c| {
        let mut c = c
            .try_borrow_mut()
            .map_err(|_| PyRuntimeError::new_err("chopd objects used re-entrantly"))?;
        match c.as_mut() {
            Some(s) => f(s),
            None => Err(PyRuntimeError::new_err(
                "chopd objects can only be used inside a callback of the running daemon (onCook, \
                 onPulse, onSetupParameters)",
            )),
        }
    })
}

/// A `tdu.Dependency` whose version counter is `v` changed: operators that read it cook again,
/// except the one whose code wrote it (its own write does not make it dirty, or a cook that
/// reads and then writes would cook every frame).
pub fn value_changed(v: &Arc<AtomicU64>) {
    v.fetch_add(1, Ordering::Relaxed);
    CURRENT.with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            if let Some(s) = c.as_mut() {
                let now = v.load(Ordering::Relaxed);
                if let Some(e) = s
                    .deps
                    .values
                    .iter_mut()
                    .find(|(w, _)| w.as_ptr() == Arc::as_ptr(v))
                {
                    e.1 = now;
                }
            }
        }
    });
}

/// True while a callback runs on this thread.
pub fn active() -> bool {
    CURRENT.with(|c| c.try_borrow().map_or(true, |c| c.is_some()))
}
