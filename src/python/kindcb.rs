//! The callbacks file of a native kind (Timer CHOP, MIDI In DAT, OSC In DAT): loading it once
//! with `me` bound to the operator, finding the named callbacks it defines, calling them during
//! a cook, and counting what failed in the node's stats. The Script CHOP's own file handling
//! (reloads, `onCook`, parameter pages) stays in `chop::script`.

use std::path::PathBuf;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::api::dat::DatHandle;
use super::api::op::OpHandle;
use super::callbacks::{self, Callbacks, PyFailure};
use super::registry::ScriptState;
use super::scope::{self, Scope};
use crate::cook::{ChopData, CookCtx, CookStats};

/// A callback may run this long before it is interrupted.
const BUDGET: Duration = Duration::from_millis(1000);

/// What a kind's callbacks are: its name in log lines, what `me` is, the callbacks it calls.
pub struct Spec {
    /// The kind's config name (`"timer"`), the start of its log lines.
    pub kind: &'static str,
    pub me: Me,
    /// The callbacks by name; [`Calls::call`] and [`KindCallbacks::has`] take an index here.
    pub names: &'static [&'static str],
    pub arity: Arity,
}

/// The Python object `me` (and each callback's first argument) is.
#[derive(Clone, Copy, Debug)]
pub enum Me {
    /// An operator handle (`op(...)`).
    Op,
    /// A DAT handle (rows, cells, text).
    Dat,
}

/// How many of its arguments a callback is given.
#[derive(Clone, Copy, Debug)]
pub enum Arity {
    /// All of them, whatever the function declares.
    All,
    /// As many as the function declares (its `co_argcount`), at least the first; `unknown`
    /// for a callable without a code object to ask (`usize::MAX`: all of them).
    Declared { unknown: usize },
}

/// A loaded callbacks file of one operator.
pub struct KindCallbacks {
    spec: &'static Spec,
    name: String,
    path: PathBuf,
    me: Py<PyAny>,
    cb: Option<Callbacks>,
    /// Each callback of `spec.names` the file defines, with how many arguments it is given.
    funcs: Vec<Option<(Py<PyAny>, usize)>>,
    /// A failure outside a cook (loading), counted at the next cook.
    pub pending: Option<String>,
}

impl KindCallbacks {
    /// Loads `path` for operator `name`. A file that fails to load (a syntax error, a raise at
    /// the top level) is logged and kept as `pending`, to be counted at the first cook; the
    /// operator works without callbacks. `Err` only when Python itself is not usable.
    pub fn load(
        spec: &'static Spec,
        name: &str,
        path: &std::path::Path,
        shared: &ScriptState,
    ) -> Result<KindCallbacks, String> {
        super::ensure_init()?;
        let kind = spec.kind;
        Python::attach(|py| {
            let me = match spec.me {
                Me::Op => Py::new(py, OpHandle::new(name, None)).map(Py::into_any),
                Me::Dat => Py::new(py, DatHandle::new(name)).map(Py::into_any),
            }
            .map_err(|e| format!("{kind} \"{name}\": {e}"))?;
            let mut l = KindCallbacks {
                spec,
                name: name.to_string(),
                path: path.to_path_buf(),
                me,
                cb: None,
                funcs: spec.names.iter().map(|_| None).collect(),
                pending: None,
            };
            let guard = scope::enter(Scope::detached(shared))?;
            let loaded = callbacks::load(py, path, name, BUDGET);
            drop(guard.finish(py));
            match loaded {
                Ok(cb) => {
                    let dict = cb.module.bind(py).dict();
                    l.funcs = spec
                        .names
                        .iter()
                        .map(|n| {
                            let f = dict
                                .get_item(n)
                                .ok()
                                .flatten()
                                .filter(|f| f.is_callable())?;
                            let n = match spec.arity {
                                Arity::All => usize::MAX,
                                Arity::Declared { unknown } => f
                                    .getattr("__code__")
                                    .and_then(|c| c.getattr("co_argcount"))
                                    .and_then(|a| a.extract::<usize>())
                                    .unwrap_or(unknown),
                            };
                            Some((f.unbind(), n))
                        })
                        .collect();
                    l.cb = Some(cb);
                }
                Err(f) => {
                    tracing::error!("{kind} \"{name}\": loading callbacks failed: {}", f.summary);
                    l.pending = Some(f.summary);
                }
            }
            Ok(l)
        })
    }

    /// Whether the file defines callback `k` of the spec's names.
    pub fn has(&self, k: usize) -> bool {
        self.funcs[k].is_some()
    }

    /// Runs `body` inside this cook's scope (what the callbacks read and change is the running
    /// graph) with a [`Calls`] to call callbacks through. Returns every failure: of the calls,
    /// an `Err` of `body` itself, or the scope not being available.
    pub fn run(
        &self,
        shared: &ScriptState,
        ctx: &mut CookCtx,
        out: &mut ChopData,
        body: impl FnOnce(Python<'_>, &mut Calls<'_>) -> PyResult<()>,
    ) -> Vec<PyFailure> {
        Python::attach(|py| {
            let guard = match scope::enter(Scope::cooking(shared, ctx, out, Vec::new())) {
                Ok(g) => g,
                Err(e) => return vec![PyFailure::plain(e)],
            };
            let mut calls = Calls {
                cb: self,
                failures: Vec::new(),
            };
            if let Err(e) = body(py, &mut calls) {
                calls.failures.push(PyFailure::plain(e.to_string()));
            }
            drop(guard.finish(py));
            calls.failures
        })
    }

    /// Counts a load failure not counted yet, then `failures`, in the node's `stats` (the newest
    /// is its `last_error`), logging each failure that `allow` lets through as
    /// `KIND "NAME" WHAT failed: SUMMARY`.
    pub fn record(
        &mut self,
        stats: &mut CookStats,
        failures: Vec<PyFailure>,
        what: &str,
        mut allow: impl FnMut(&PyFailure) -> bool,
    ) {
        if let Some(e) = self.pending.take() {
            stats.errors += 1;
            stats.last_error = Some(e);
        }
        for f in failures {
            if allow(&f) {
                let (kind, name) = (self.spec.kind, &self.name);
                tracing::error!("{kind} \"{name}\" {what} failed: {}", f.summary);
            }
            stats.errors += 1;
            stats.last_error = Some(f.summary);
        }
    }
}

impl Drop for KindCallbacks {
    fn drop(&mut self) {
        if let Some(cb) = self.cb.take() {
            Python::attach(|py| callbacks::retire(py, cb));
        }
    }
}

/// What the body of [`KindCallbacks::run`] calls callbacks with.
pub struct Calls<'a> {
    cb: &'a KindCallbacks,
    failures: Vec<PyFailure>,
}

impl Calls<'_> {
    /// The operator's handle (`me`), each callback's first argument.
    pub fn me(&self, py: Python<'_>) -> Py<PyAny> {
        self.cb.me.clone_ref(py)
    }

    /// Calls callback `k` (when the file defines it) with `me` and then `rest`, cut to as many
    /// as it is given (see [`Arity`]), under the watchdog's budget; a failure is kept.
    pub fn call(&mut self, py: Python<'_>, k: usize, rest: Vec<Py<PyAny>>) {
        let Some((f, n)) = &self.cb.funcs[k] else {
            return;
        };
        let mut args = Vec::with_capacity(rest.len() + 1);
        args.push(self.me(py));
        args.extend(rest);
        args.truncate((*n).max(1));
        let args = PyTuple::new(py, args).expect("a tuple of objects");
        if let Err(e) = callbacks::call(py, f, args, BUDGET, &self.cb.path) {
            self.failures.push(e);
        }
    }
}
