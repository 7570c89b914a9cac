//! The embedded Python interpreter and the TouchDesigner-style API that Script CHOP callbacks see:
//! module globals (`op`, `absTime`, `me`, `parent`, `debug`, `CookLevel`), operators, channels,
//! custom parameter pages and parameters.
//!
//! Design: every Python-visible object is a small *handle* (an operator name, a channel name, a
//! parameter name) resolved on each use through [`scope`], a thread-local pointer to the running
//! cook that exists only while a callback runs. A handle kept in a module global and used later
//! resolves again (or raises a clear error); it never holds a pointer into the graph. Reads made
//! through handles during `onCook` are recorded so the Script CHOP can cook only when something
//! it read changed.
//!
//! Layout, imports one way: the floor ([`scope`], [`registry`], [`stored`], [`mirror`]) knows
//! nothing of the object classes in [`api`], which stand on it; [`callbacks`] loads a file into a module with
//! the [`api`] globals and runs its callbacks under the [`watchdog`]; [`kindcb`] is the callbacks
//! file of a native kind (Timer CHOP, MIDI In DAT, OSC In DAT) on top of it.
//!
//! Python runs only on the cook thread (the thread that builds and cooks the graph); the
//! per-thread state in [`scope`] and [`registry`] relies on that. A watchdog thread
//! ([`watchdog`]) interrupts a callback that runs past its budget.
//!
//! This module owns the interpreter set-up and the helpers that [`api`], [`callbacks`] and
//! [`watchdog`] share (the `_chopd` support module, the numpy check); deciding *when* to cook
//! and driving callbacks is `chop::script`'s job.

pub mod api;
pub mod callbacks;
pub mod kindcb;
pub mod mirror;
pub mod outbox;
pub mod registry;
pub mod scope;
pub mod stored;
pub mod watchdog;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// What the interpreter is, logged at start and shown by `chopd --version`-style reports.
#[derive(Clone, Debug)]
pub struct PythonInfo {
    pub version: String,
    pub prefix: String,
    /// `Some(version)` when `import numpy` works.
    pub numpy: Option<String>,
}

/// Python source of the support module `_chopd`: the pieces that are simplest written in Python.
const PRELUDE: &std::ffi::CStr = cr#"
import enum as _enum

class CookLevel(_enum.IntEnum):
    """When a Script CHOP cooks (returned by onGetCookLevel)."""
    AUTOMATIC = 0
    ON_CHANGE = 1
    WHEN_USED = 2
    ALWAYS = 3

class CookBudgetExceeded(BaseException):
    """Raised inside a callback that ran past its cook_budget_ms.

    A BaseException, so `except Exception:` in user code does not swallow it."""

class ExitRefused(SystemExit):
    """Raised by os._exit() and os.abort() in chopd's own process: one script must not end the
    daemon and every other operator with it. A SystemExit, like sys.exit(), which chopd also
    catches and counts as an error."""

def _guard_exits():
    """Replaces os._exit and os.abort (and their posix originals) with functions that raise
    ExitRefused, except in a forked child (multiprocessing ends its children with os._exit)."""
    import os, posix
    daemon = os.getpid()
    def guard(real):
        name = real.__name__
        def refused(*args, **kwargs):
            if os.getpid() != daemon:
                return real(*args, **kwargs)
            shown = ", ".join(repr(a) for a in args)
            raise ExitRefused(f"os.{name}({shown}) would end the daemon")
        refused.__name__ = refused.__qualname__ = name
        refused.__doc__ = real.__doc__
        return refused
    exit_, abort = guard(posix._exit), guard(posix.abort)
    for m in (os, posix):
        m._exit = exit_
        m.abort = abort

def _format_exception(exc, tb):
    import traceback
    return "".join(traceback.format_exception(type(exc), exc, tb))
"#;

static INIT: OnceLock<Result<PythonInfo, String>> = OnceLock::new();
/// Site directories already added (init may be called again after a config reload).
static SITE_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Initializes the interpreter once (version and `sys.prefix` are logged), adds `paths` as site
/// directories (`[python] path = [...]` in the config, e.g. a venv's site-packages), sets a
/// short GIL switch interval so the watchdog can interrupt runaway scripts quickly, and checks
/// for numpy. Safe to call again: only new paths are added.
pub fn init(paths: &[PathBuf]) -> Result<PythonInfo, String> {
    let info = INIT
        .get_or_init(|| {
            // Python ends the process ("Fatal Python error") when PYTHONHOME has no standard
            // library: say what is wrong before that.
            if let Some(home) = std::env::var_os("PYTHONHOME") {
                let home = PathBuf::from(home);
                if !same_dir(&home, Path::new(BUILT_HOME)) {
                    return Err(format!(
                        "python start-up: PYTHONHOME is {} but chopd was built for the Python \
                         at {BUILT_HOME}; set PYTHONHOME={BUILT_HOME} or reinstall chopd with \
                         scripts/install (docs/service.md, \"Python\")",
                        home.display()
                    ));
                }
            }
            Python::initialize();
            Python::attach(|py| first_init(py).map_err(|e| format!("python start-up: {e}")))
        })
        .clone()?;
    add_site_dirs(paths)?;
    Ok(info)
}

/// Whether the interpreter has been started (and started well): nothing Python-side exists
/// before.
pub fn running() -> bool {
    INIT.get().is_some_and(|r| r.is_ok())
}

/// `init` with no extra paths: what operators call to be sure Python is ready.
pub fn ensure_init() -> Result<PythonInfo, String> {
    init(&[])
}

fn first_init(py: Python<'_>) -> PyResult<PythonInfo> {
    let sys = py.import("sys")?;
    let version: String = sys.getattr("version")?.extract()?;
    let version = version.split_whitespace().next().unwrap_or("?").to_string();
    let prefix: String = sys.getattr("prefix")?.extract()?;
    // The right libpython with another interpreter's standard library (PYTHONHOME, or a home
    // found through a `python3` on PATH) imports modules built for another Python.
    let base: String = sys.getattr("base_prefix")?.extract()?;
    if !same_dir(Path::new(&base), Path::new(BUILT_HOME)) {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
            "chopd was built for the Python at {BUILT_HOME} but runs with the standard library \
             of {base}; set PYTHONHOME={BUILT_HOME} or reinstall chopd with scripts/install \
             (docs/service.md, \"Python\")"
        )));
    }
    // 1 ms instead of 5 ms: the watchdog's exception then lands within about 1.3 ms.
    sys.call_method1("setswitchinterval", (0.001,))?;
    // Before any script runs, so no script can end the daemon with os._exit()/os.abort().
    prelude(py)?.call_method0("_guard_exits")?;
    let numpy = numpy_version(py);
    tracing::info!(
        python = %version,
        prefix = %prefix,
        numpy = numpy.as_deref().unwrap_or("not installed"),
        "python started"
    );
    if numpy.is_none() {
        tracing::warn!(
            "numpy is not installed for this Python ({prefix}): scripts that use numpyArray() or \
             copyNumpyArray() will fail; install it with `python3 -m pip install numpy` or add a \
             venv with [python] path"
        );
    }
    Ok(PythonInfo {
        version,
        prefix,
        numpy,
    })
}

fn numpy_version(py: Python<'_>) -> Option<String> {
    let np = py.import("numpy").ok()?;
    np.getattr("__version__").ok()?.extract().ok()
}

fn add_site_dirs(paths: &[PathBuf]) -> Result<(), String> {
    // The lock only guards the list; poisoning would mean a panic while pushing a path.
    let mut done = SITE_DIRS.lock().unwrap_or_else(|p| p.into_inner());
    for p in paths {
        if done.contains(p) {
            continue;
        }
        if !p.is_dir() {
            tracing::warn!(path = %p.display(), "python path is not a directory; added anyway");
        }
        Python::attach(|py| -> PyResult<()> {
            py.import("site")?
                .call_method1("addsitedir", (p.display().to_string(),))?;
            Ok(())
        })
        .map_err(|e| format!("add python path \"{}\": {e}", p.display()))?;
        tracing::info!(path = %p.display(), "python site directory added");
        done.push(p.clone());
    }
    Ok(())
}

/// The Python this binary was built for, as build.rs recorded it.
pub const BUILT_VERSION: &str = env!("CHOPD_BUILT_PYTHON_VERSION");
/// That interpreter's `sys.base_prefix` where the service runs it (`CHOPD_PYTHON_HOME` at build).
pub const BUILT_HOME: &str = env!("CHOPD_BUILT_PYTHON_HOME");
/// The directory its libpython is loaded from (the binary's RUNPATH).
pub const BUILT_LIB_DIR: &str = env!("CHOPD_BUILT_PYTHON_LIBDIR");
const BUILT_SHARED: bool = matches!(env!("CHOPD_BUILT_PYTHON_SHARED").as_bytes(), b"1");

/// Fails when the libpython the loader mapped is not the one this binary was built for. The
/// loader does not say when RUNPATH's directory is unreadable (a unit with `ProtectHome=yes`,
/// a removed pyenv): it quietly takes another libpython of the same name, whose interpreter
/// cannot see the packages (numpy) installed for the first. Runs before the interpreter starts:
/// the library is mapped at exec whether or not a config uses Python.
pub fn check_libpython() -> Result<(), String> {
    // SAFETY: Py_GetVersion formats compile-time constants; it needs no initialized interpreter.
    let full = unsafe { std::ffi::CStr::from_ptr(pyo3::ffi::Py_GetVersion()) };
    let full = full.to_string_lossy();
    let version = full.split_whitespace().next().unwrap_or("?");
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let loaded = loaded_libpython(&maps);
    let dir_ok = !BUILT_SHARED
        || loaded
            .as_deref()
            .and_then(|p| p.parent())
            .is_some_and(|d| same_dir(d, Path::new(BUILT_LIB_DIR)));
    if version == BUILT_VERSION && dir_ok {
        return Ok(());
    }
    let at = match (&loaded, BUILT_SHARED) {
        (Some(p), _) => p.display().to_string(),
        (None, true) => "no libpython mapped".to_string(),
        (None, false) => "(linked in)".to_string(),
    };
    Err(format!(
        "chopd was built for Python {BUILT_VERSION} at {BUILT_LIB_DIR} but loaded Python \
         {version} at {at}; reinstall chopd with scripts/install, or make {BUILT_LIB_DIR} \
         readable to the service (docs/service.md, \"Python\")"
    ))
}

/// The libpython in a `/proc/PID/maps` text.
fn loaded_libpython(maps: &str) -> Option<PathBuf> {
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(Path::new)
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libpython") && n.contains(".so"))
        })
        .map(Path::to_path_buf)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    real(a) == real(b)
}

static PRELUDE_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
static NUMPY_OK: OnceLock<bool> = OnceLock::new();

/// The `_chopd` support module (created on first use).
pub fn prelude(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    PRELUDE_MODULE
        .get_or_try_init(py, || {
            let m = PyModule::from_code(py, PRELUDE, c"<chopd>", c"_chopd")?;
            Ok(m.unbind())
        })
        .map(|m| m.bind(py))
}

/// The `CookLevel` enum class.
pub fn cook_level_class(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    prelude(py)?.getattr("CookLevel")
}

/// The `CookBudgetExceeded` exception class.
pub fn budget_exception(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    Ok(prelude(py)?.getattr("CookBudgetExceeded")?.cast_into()?)
}

/// True when `import numpy` works (checked once: rust-numpy's constructors panic without it).
pub fn numpy_available(py: Python<'_>) -> bool {
    *NUMPY_OK.get_or_init(|| py.import("numpy").is_ok())
}

/// The error raised when a script needs numpy and it is missing, naming the fix.
pub fn numpy_missing(what: &str) -> PyErr {
    pyo3::exceptions::PyModuleNotFoundError::new_err(format!(
        "{what} needs numpy, which is not installed for the Python chopd embeds; install it with \
         `python3 -m pip install numpy` (for that same python3), or point [python] path at a venv \
         that has it"
    ))
}

/// Formats an exception with its full traceback, as Python would print it.
pub fn format_exception(py: Python<'_>, err: &PyErr) -> String {
    let formatted = prelude(py)
        .and_then(|m| m.getattr("_format_exception"))
        .and_then(|f| f.call1((err.value(py), err.traceback(py))))
        .and_then(|s| s.extract::<String>());
    match formatted {
        Ok(s) => s.trim_end().to_string(),
        Err(_) => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_reports_version_and_prefix() {
        let info = ensure_init().unwrap();
        assert!(info.version.starts_with('3'), "{info:?}");
        assert!(!info.prefix.is_empty());
        // The build links the libpython of the python3 that has numpy (build.rs + RUNPATH).
        assert!(info.numpy.is_some(), "numpy missing for {}", info.prefix);
    }

    #[test]
    fn the_libpython_of_the_build_is_the_one_loaded() {
        check_libpython().unwrap();
    }

    #[test]
    fn the_loaded_libpython_is_found_in_maps() {
        let maps = "\
7f00-7f01 r-xp 00000000 08:01 12 /usr/lib/x86_64-linux-gnu/libasound.so.2.0.0
7f02-7f03 r--p 00000000 08:01 13 /opt/chopd/python/lib/libpython3.11.so.1.0
7f04-7f05 rw-p 00000000 00:00 0 [heap]
";
        assert_eq!(
            loaded_libpython(maps).unwrap(),
            Path::new("/opt/chopd/python/lib/libpython3.11.so.1.0")
        );
        assert_eq!(loaded_libpython("7f04-7f05 rw-p 00000000 00:00 0\n"), None);
    }

    #[test]
    fn site_dirs_are_added_once() {
        let dir = std::env::temp_dir().join(format!("chopd-site-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("chopd_site_probe.py"), "VALUE = 42\n").unwrap();
        init(std::slice::from_ref(&dir)).unwrap();
        init(std::slice::from_ref(&dir)).unwrap();
        Python::attach(|py| {
            let v: i64 = py
                .import("chopd_site_probe")
                .unwrap()
                .getattr("VALUE")
                .unwrap()
                .extract()
                .unwrap();
            assert_eq!(v, 42);
            let path: Vec<String> = py
                .import("sys")
                .unwrap()
                .getattr("path")
                .unwrap()
                .extract()
                .unwrap();
            let n = path
                .iter()
                .filter(|p| **p == dir.display().to_string())
                .count();
            assert_eq!(n, 1);
        });
    }
}
