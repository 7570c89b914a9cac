//! Module globals of a callbacks file: `absTime`, `debug(*args)` and `CookLevel`, and (from
//! `comp`) the finders `op`, `ops`, `parent`, `iop`, `ipar` bound to the Script CHOP's network
//! and `me`, the callbacks DAT, and `mod`; installed into each callbacks module.

use std::cell::RefCell;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::cook::Frame;
use crate::logging::RateLimit;
use crate::python::registry;
use crate::python::scope;

/// The current frame; reading it during a cook makes the script cook every frame.
fn now() -> PyResult<Frame> {
    let f = scope::with(|s| {
        s.record_time();
        Ok(s.frame)
    })
    .ok()
    .flatten()
    .or_else(registry::last_frame);
    f.ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("the clock has not started yet"))
}

/// `absTime`: the daemon's clock.
#[pyclass(frozen, module = "chopd", name = "AbsTime")]
pub struct AbsTime;

#[pymethods]
impl AbsTime {
    #[getter]
    fn frame(&self) -> PyResult<i64> {
        Ok(now()?.frame)
    }

    #[getter]
    fn seconds(&self) -> PyResult<f64> {
        Ok(now()?.seconds())
    }

    #[getter]
    fn step(&self) -> PyResult<i64> {
        Ok(now()?.step)
    }

    #[getter(stepSeconds)]
    fn step_seconds(&self) -> PyResult<f64> {
        Ok(now()?.step_seconds())
    }

    fn __repr__(&self) -> String {
        match registry::last_frame() {
            Some(f) => format!("absTime(frame={}, seconds={})", f.frame, f.seconds()),
            None => "absTime(not started)".into(),
        }
    }
}

/// `me.time`: the clock as its operator sees it (`rate` does not depend on the frame).
#[pyclass(frozen, module = "chopd", name = "timeCOMP")]
pub struct Time {
    pub owner: String,
}

#[pymethods]
impl Time {
    /// The clock rate: the running frame's (it follows a reload that changes `rate`), else
    /// the rate the operator was built with.
    #[getter]
    fn rate(&self) -> f64 {
        scope::with(|s| Ok(s.frame.map(|f| f.rate)))
            .ok()
            .flatten()
            .or_else(|| registry::lookup(&self.owner).map(|s| s.borrow().clock_rate))
            .or_else(|| registry::last_frame().map(|f| f.rate))
            .unwrap_or(60.0)
    }

    #[getter]
    fn frame(&self) -> PyResult<i64> {
        Ok(now()?.frame)
    }

    #[getter]
    fn seconds(&self) -> PyResult<f64> {
        Ok(now()?.seconds())
    }

    #[getter]
    fn play(&self) -> bool {
        true
    }
}

/// At most this many `debug()` lines per operator per second reach the log.
const DEBUG_LINES_PER_SECOND: u32 = 20;

thread_local! {
    /// `debug()` lines per operator: a volume limit, so keyed by the operator, not the text.
    static DEBUG_RATE: RefCell<RateLimit> =
        RefCell::new(RateLimit::per_key(Duration::from_secs(1), DEBUG_LINES_PER_SECOND));
}

/// `debug(*args)`: logs the arguments (as `print` joins them) with the caller's file and line.
#[pyfunction]
#[pyo3(signature = (*args))]
pub fn debug(py: Python<'_>, args: &Bound<'_, PyTuple>) -> PyResult<()> {
    let parts: Vec<String> = args
        .iter()
        .map(|a| a.str().map(|s| s.to_string()))
        .collect::<PyResult<_>>()?;
    let msg = parts.join(" ");
    let (file, line) = caller(py).unwrap_or_else(|| ("?".into(), 0));
    let owner = scope::with(|s| Ok(s.owner_name.clone())).unwrap_or_default();
    let Some(held) = DEBUG_RATE.with(|r| r.borrow_mut().allow_key(&owner)) else {
        return Ok(());
    };
    let more = match held.similar + held.other {
        0 => String::new(),
        n => format!(" ({n} debug lines not logged before this one)"),
    };
    // Python runs only inside its operator's span (build, cook, housekeeping): no name needed.
    tracing::info!("{file}:{line}: {msg}{more}");
    Ok(())
}

fn caller(py: Python<'_>) -> Option<(String, u32)> {
    let frame = py
        .import("sys")
        .ok()?
        .call_method1("_getframe", (1,))
        .ok()?;
    let file: String = frame
        .getattr("f_code")
        .ok()?
        .getattr("co_filename")
        .ok()?
        .extract()
        .ok()?;
    let line: u32 = frame.getattr("f_lineno").ok()?.extract().ok()?;
    let file = std::path::Path::new(&file)
        .file_name()
        .map_or(file.clone(), |f| f.to_string_lossy().into_owned());
    Some((file, line))
}

/// Puts the globals into the namespace of the callbacks module of Script CHOP `op` (its key),
/// loaded from `file`.
pub fn install(
    py: Python<'_>,
    globals: &Bound<'_, PyDict>,
    op: &str,
    file: &std::path::Path,
) -> PyResult<()> {
    let me = Py::new(
        py,
        super::comp::CallbacksDat {
            script: op.to_string(),
            file: file.to_path_buf(),
        },
    )?
    .into_any();
    let network = crate::path::Place::Key(crate::path::parent_key(op).to_string());
    super::comp::install_finders(globals, Some(network.clone()), me)?;
    install_clock(py, globals)?;
    install_mod(globals, Some(network))?;
    super::runtime::install(py, globals)?;
    Ok(())
}

/// `mod`: text DATs as modules (`mod.name`, `mod('name')`), found as `op()` finds operators
/// from `network` (`None`: the running script's).
pub fn install_mod(
    globals: &Bound<'_, PyDict>,
    network: Option<crate::path::Place>,
) -> PyResult<()> {
    globals.set_item("mod", super::datmodule::Mod { network })
}

/// `debug`, `absTime` and `CookLevel`, which every namespace of chopd's Python gets.
pub fn install_clock(py: Python<'_>, globals: &Bound<'_, PyDict>) -> PyResult<()> {
    globals.set_item("debug", wrap_pyfunction!(debug, py)?)?;
    globals.set_item("absTime", Py::new(py, AbsTime)?)?;
    globals.set_item("CookLevel", crate::python::cook_level_class(py)?)?;
    Ok(())
}
