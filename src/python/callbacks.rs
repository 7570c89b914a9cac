//! A loaded callbacks file: compiling and executing it into its own module (with the chopd
//! globals), finding its callbacks (`onCook`/`cook`, `onSetupParameters`/`setupParameters`,
//! `onPulse`, `onGetCookLevel`), and calling them under the watchdog's budget. Failures come
//! back as [`PyFailure`] with the file and line that matter and the full traceback.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pyo3::call::PyCallArgs;
use pyo3::prelude::*;
use pyo3::types::PyDict;

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
    /// The exception, when there is one, for [`PyFailure::traceback`]. Formatting a traceback
    /// costs ~0.1 ms (Python's `traceback` module reads the source lines), so it is done only
    /// for the failures that are logged, not for every failure of a script raising every frame.
    pub error: Option<Arc<PyErr>>,
    /// The cook budget ran out (the watchdog interrupted it).
    pub budget: bool,
}

impl std::fmt::Display for PyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary)
    }
}

impl PyFailure {
    /// A failure without a Python exception behind it.
    pub fn plain(summary: String) -> PyFailure {
        PyFailure {
            summary,
            error: None,
            budget: false,
        }
    }

    /// The full traceback as Python prints it (empty when there is none).
    pub fn traceback(&self) -> String {
        match &self.error {
            Some(e) => Python::attach(|py| super::format_exception(py, e)),
            None => String::new(),
        }
    }
}

/// Turns a Python exception into a failure that names the line of `file` where it happened
/// (the innermost frame in that file; else the innermost frame; for a SyntaxError its own
/// position). `budget`: the watchdog interrupted the callback, which ran for `ran`.
pub fn failure(
    py: Python<'_>,
    err: PyErr,
    file: &Path,
    budget: Option<(Duration, Duration)>,
) -> PyFailure {
    super::api::runtime::explain(py, &err);
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
    // A script cannot end the daemon: say so where it tried (sys.exit(), exit(), os._exit()).
    let exit = if err.is_instance_of::<pyo3::exceptions::PySystemExit>(py) {
        " (a script cannot end chopd; counted as an error)"
    } else {
        ""
    };
    let summary = match budget {
        Some((b, ran)) => interrupted(&loc, b, ran, ""),
        None if msg.is_empty() => format!("{loc}: {ty}{exit}"),
        None => format!("{loc}: {ty}: {msg}{exit}"),
    };
    PyFailure {
        summary,
        error: Some(Arc::new(err)),
        budget: budget.is_some(),
    }
}

/// `LOC: interrupted after the cook budget of B ms (it ran R ms…)`. A callback that ran much
/// longer than its budget was stuck in a call that cannot be interrupted (`time.sleep`, I/O).
fn interrupted(loc: &str, budget: Duration, ran: Duration, and: &str) -> String {
    let why = if ran >= budget * 2 && ran >= budget + Duration::from_millis(20) {
        "a call into C code (time.sleep(), I/O) cannot be interrupted before it returns"
    } else {
        "an endless loop?"
    };
    format!(
        "{loc}: interrupted after the cook budget of {} ms{and} (it ran {} ms; {why})",
        budget.as_millis(),
        ran.as_millis()
    )
}

/// Calls `f(args)` with the watchdog armed for `budget`.
pub fn call<'py, A: PyCallArgs<'py>>(
    py: Python<'py>,
    f: &Py<PyAny>,
    args: A,
    budget: Duration,
    file: &Path,
) -> Result<Bound<'py, PyAny>, PyFailure> {
    let t0 = Instant::now();
    let deadline = watchdog::arm(py, budget);
    let r = f.bind(py).call1(args);
    let fired = deadline.disarm(py);
    let ran = t0.elapsed();
    match r {
        Ok(v) if !fired => Ok(v),
        Ok(_) => Err(PyFailure {
            summary: interrupted(
                &file.display().to_string(),
                budget,
                ran,
                ", and the script swallowed the CookBudgetExceeded exception",
            ),
            error: None,
            budget: true,
        }),
        Err(e) => Err(failure(py, e, file, fired.then_some((budget, ran)))),
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
    // Bytes, not text: Python decodes a source file itself (a UTF-8 BOM, a coding cookie), and
    // `compile` does the same for bytes but not for a str, where a BOM is a stray U+FEFF.
    let src = std::fs::read(path).map_err(|e| {
        PyFailure::plain(format!(
            "{}: cannot read the callbacks file: {e}",
            path.display()
        ))
    })?;
    let src = pyo3::types::PyBytes::new(py, &src);
    let builtins = py
        .import("builtins")
        .map_err(|e| failure(py, e, path, None))?;
    let code = builtins
        .getattr("compile")
        .and_then(|c| c.call1((src, path.display().to_string(), "exec", 0, true)))
        .map_err(|e| failure(py, e, path, None))?;
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
    budget: Duration,
) -> Result<Callbacks, PyFailure> {
    let (code, stamp) = compile(py, path)?;
    let name = module_name(op);
    let fail = |e: PyErr| failure(py, e, path, None);
    let module = PyModule::new(py, &name).map_err(fail)?;
    let dict: Bound<'_, PyDict> = module.dict();
    dict.set_item("__file__", path.display().to_string())
        .map_err(fail)?;
    dict.set_item("__builtins__", py.import("builtins").map_err(fail)?)
        .map_err(fail)?;
    super::api::globals::install(py, &dict, op, path).map_err(fail)?;
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

/// Retires callbacks that were replaced (a reload) or whose operator is gone: removes the module
/// from `sys.modules` (when it is still the registered one) and clears its globals. Functions
/// and their module dict refer to each other, so without the clearing the old module — and
/// whatever its globals hold, a leaking list of hundreds of MB — waited for a full garbage
/// collection, which a steady daemon may not run for hours. A thread the old code started
/// finds its globals gone (module globals start over, as documented).
pub fn retire(py: Python<'_>, cb: Callbacks) {
    forget(py, &cb);
    cb.module.bind(py).dict().clear();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A script failing every frame must not pay for a traceback nobody reads (~0.1 ms each,
    /// more than a whole frame's work in most graphs): it is formatted only when logged.
    #[test]
    fn a_failure_formats_its_traceback_only_when_asked() {
        super::super::ensure_init().unwrap();
        let dir = std::env::temp_dir().join(format!("chopd-tb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("boom.py");
        let src =
            "def boom(n):\n    helper(n)\n\ndef helper(n):\n    raise ValueError('bad %d' % n)\n";
        std::fs::write(&path, src).unwrap();
        Python::attach(|py| {
            let code = std::ffi::CString::new(src).unwrap();
            let file = std::ffi::CString::new(path.display().to_string()).unwrap();
            let m = PyModule::from_code(py, &code, &file, c"chopd_tb_probe").unwrap();
            let boom = m.getattr("boom").unwrap().unbind();
            let budget = Duration::from_secs(5);
            let n = 200;
            let t0 = Instant::now();
            let mut last = None;
            for i in 0..n {
                last = Some(call(py, &boom, (i,), budget, &path).unwrap_err());
            }
            let failing = t0.elapsed();
            let f = last.unwrap();
            assert_eq!(
                f.summary,
                format!("{}:5: ValueError: bad {}", path.display(), n - 1)
            );
            let t0 = Instant::now();
            let mut tb = String::new();
            for _ in 0..n {
                tb = f.traceback();
            }
            let formatting = t0.elapsed();
            assert!(tb.starts_with("Traceback (most recent call last)"), "{tb}");
            assert!(tb.contains("line 2, in boom") && tb.contains("line 5, in helper"));
            assert!(
                failing * 2 < formatting,
                "{n} failures took {failing:?}, formatting their tracebacks {formatting:?}"
            );
        });
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn exits_are_failures_that_say_chopd_goes_on() {
        super::super::ensure_init().unwrap();
        Python::attach(|py| {
            let code = c"import os, sys\ndef a():\n    sys.exit(3)\ndef b():\n    os._exit(0)\ndef c():\n    os.abort()\n";
            let m = PyModule::from_code(py, code, c"exits.py", c"chopd_exit_probe").unwrap();
            let path = Path::new("exits.py");
            let run = |name: &str| {
                let f = m.getattr(name).unwrap().unbind();
                call(py, &f, (), Duration::from_secs(5), path)
                    .unwrap_err()
                    .summary
            };
            let tail = " (a script cannot end chopd; counted as an error)";
            assert_eq!(run("a"), format!("exits.py:3: SystemExit: 3{tail}"));
            assert_eq!(
                run("b"),
                format!("exits.py:5: ExitRefused: os._exit(0) would end the daemon{tail}")
            );
            assert_eq!(
                run("c"),
                format!("exits.py:7: ExitRefused: os.abort() would end the daemon{tail}")
            );
        });
    }
}
