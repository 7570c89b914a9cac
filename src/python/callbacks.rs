//! A loaded callbacks file: compiling and executing it into its own module (with the chopd
//! globals), finding its callbacks (`onCook`/`cook`, `onSetupParameters`/`setupParameters`,
//! `onPulse`, `onGetCookLevel`), and calling them under the watchdog's budget. Failures come
//! back as [`PyFailure`] with the file and line that matter and the full traceback.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use pyo3::call::PyCallArgs;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::op::OpHandle;
use super::watchdog;

/// What identifies a version of the file on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    pub mtime: Option<SystemTime>,
    pub len: u64,
}

pub fn stamp(path: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        mtime: m.modified().ok(),
        len: m.len(),
    })
}

/// A callback (or loading) that failed.
#[derive(Clone, Debug)]
pub struct PyFailure {
    /// One line: `file.py:12: ZeroDivisionError: division by zero`.
    pub summary: String,
    /// The full traceback as Python prints it (empty when there is none).
    pub traceback: String,
    /// The cook budget ran out (the watchdog interrupted it).
    pub budget: bool,
}

impl std::fmt::Display for PyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary)
    }
}

impl PyFailure {
    fn plain(summary: String) -> PyFailure {
        PyFailure {
            summary,
            traceback: String::new(),
            budget: false,
        }
    }
}

/// Turns a Python exception into a failure that names the line of `file` where it happened
/// (the innermost frame in that file; else the innermost frame; for a SyntaxError its own
/// position).
pub fn failure(py: Python<'_>, err: &PyErr, file: &Path, budget: Option<Duration>) -> PyFailure {
    let value = err.value(py);
    let ty = err
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    let msg = value.str().map(|s| s.to_string()).unwrap_or_default();
    let file_s = file.display().to_string();
    let mut at: Option<(String, i64)> = None;
    if err.is_instance_of::<pyo3::exceptions::PySyntaxError>(py) {
        let f: Option<String> = value
            .getattr("filename")
            .ok()
            .and_then(|v| v.extract().ok());
        let l: Option<i64> = value.getattr("lineno").ok().and_then(|v| v.extract().ok());
        if let (Some(f), Some(l)) = (f, l) {
            at = Some((f, l));
        }
    }
    if at.is_none() {
        let mut tb = err.traceback(py).map(Bound::into_any);
        let mut innermost = None;
        let mut in_file = None;
        while let Some(t) = tb {
            let entry = (|| -> PyResult<(String, i64)> {
                let f: String = t
                    .getattr("tb_frame")?
                    .getattr("f_code")?
                    .getattr("co_filename")?
                    .extract()?;
                let l: i64 = t.getattr("tb_lineno")?.extract()?;
                Ok((f, l))
            })();
            if let Ok(e) = entry {
                if e.0 == file_s {
                    in_file = Some(e.clone());
                }
                innermost = Some(e);
            }
            tb = t.getattr("tb_next").ok().filter(|n| !n.is_none());
        }
        at = in_file.or(innermost);
    }
    let loc = at.map_or_else(|| file_s.clone(), |(f, l)| format!("{f}:{l}"));
    let summary = match budget {
        Some(b) => format!(
            "{loc}: interrupted after the cook budget of {} ms (an endless loop?)",
            b.as_millis()
        ),
        None if msg.is_empty() => format!("{loc}: {ty}"),
        None => format!("{loc}: {ty}: {msg}"),
    };
    PyFailure {
        summary,
        traceback: super::format_exception(py, err),
        budget: budget.is_some(),
    }
}

/// Calls `f(args)` with the watchdog armed for `budget`.
pub fn call<'py, A: PyCallArgs<'py>>(
    py: Python<'py>,
    f: &Py<PyAny>,
    args: A,
    budget: Duration,
    file: &Path,
) -> Result<Bound<'py, PyAny>, PyFailure> {
    let deadline = watchdog::arm(py, budget);
    let r = f.bind(py).call1(args);
    let fired = deadline.disarm(py);
    match r {
        Ok(v) if !fired => Ok(v),
        Ok(_) => Err(PyFailure {
            summary: format!(
                "{}: interrupted after the cook budget of {} ms, and the script swallowed the \
                 CookBudgetExceeded exception",
                file.display(),
                budget.as_millis()
            ),
            traceback: String::new(),
            budget: true,
        }),
        Err(e) => Err(failure(py, &e, file, fired.then_some(budget))),
    }
}

/// The callbacks of one loaded file.
pub struct Callbacks {
    pub path: PathBuf,
    pub module: Py<PyModule>,
    pub on_cook: Option<Py<PyAny>>,
    pub on_setup: Option<Py<PyAny>>,
    pub on_pulse: Option<Py<PyAny>>,
    pub on_cook_level: Option<Py<PyAny>>,
    pub stamp: Option<FileStamp>,
}

fn compile<'py>(
    py: Python<'py>,
    path: &Path,
) -> Result<(Bound<'py, PyAny>, Option<FileStamp>), PyFailure> {
    let stamp = stamp(path);
    let src = std::fs::read_to_string(path).map_err(|e| {
        PyFailure::plain(format!(
            "{}: cannot read the callbacks file: {e}",
            path.display()
        ))
    })?;
    let builtins = py
        .import("builtins")
        .map_err(|e| failure(py, &e, path, None))?;
    let code = builtins
        .getattr("compile")
        .and_then(|c| c.call1((src, path.display().to_string(), "exec", 0, true)))
        .map_err(|e| failure(py, &e, path, None))?;
    Ok((code, stamp))
}

/// Compiles the file without running it (`chopd check`): `Err` is `file:line: SyntaxError: …`.
pub fn check(path: &Path) -> Result<(), String> {
    super::ensure_init()?;
    Python::attach(|py| compile(py, path).map(drop).map_err(|f| f.summary))
}

fn module_name(op: &str) -> String {
    let clean: String = op
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("chopd_callbacks_{clean}")
}

/// Loads `path` as the callbacks of operator `op`: compiles it, runs it in a fresh module with
/// the chopd globals (`me` is `me`), under the watchdog, and finds its callbacks. The caller
/// has entered a scope for `op`.
pub fn load(
    py: Python<'_>,
    path: &Path,
    op: &str,
    me: &Py<OpHandle>,
    budget: Duration,
) -> Result<Callbacks, PyFailure> {
    let (code, stamp) = compile(py, path)?;
    let name = module_name(op);
    let fail = |e: PyErr| failure(py, &e, path, None);
    let module = PyModule::new(py, &name).map_err(fail)?;
    let dict: Bound<'_, PyDict> = module.dict();
    dict.set_item("__file__", path.display().to_string())
        .map_err(fail)?;
    dict.set_item("__builtins__", py.import("builtins").map_err(fail)?)
        .map_err(fail)?;
    super::globals::install(py, &dict, me).map_err(fail)?;
    let exec = py
        .import("builtins")
        .and_then(|b| b.getattr("exec"))
        .map_err(fail)?
        .unbind();
    call(py, &exec, (code, dict.clone()), budget, path)?;
    let get = |names: &[&str]| -> Option<Py<PyAny>> {
        names.iter().find_map(|n| {
            dict.get_item(n)
                .ok()
                .flatten()
                .filter(|f| f.is_callable())
                .map(Bound::unbind)
        })
    };
    let cb = Callbacks {
        path: path.to_path_buf(),
        on_cook: get(&["onCook", "cook"]),
        on_setup: get(&["onSetupParameters", "setupParameters"]),
        on_pulse: get(&["onPulse"]),
        on_cook_level: get(&["onGetCookLevel"]),
        module: module.clone().unbind(),
        stamp,
    };
    if let Ok(modules) = py.import("sys").and_then(|s| s.getattr("modules")) {
        let _ = modules.set_item(&name, &module);
    }
    Ok(cb)
}

/// Removes the module of `cb` from `sys.modules` (when it is still the registered one).
pub fn forget(py: Python<'_>, cb: &Callbacks) {
    let Ok(modules) = py.import("sys").and_then(|s| s.getattr("modules")) else {
        return;
    };
    let module = cb.module.bind(py);
    let Ok(name) = module.getattr("__name__") else {
        return;
    };
    if modules.get_item(&name).is_ok_and(|m| m.is(module)) {
        let _ = modules.del_item(&name);
    }
}
