//! Module globals of a callbacks file: `op(name)`, `ops(*patterns)`, `absTime`, `me`,
//! `parent()`, `debug(*args)`, `mod` and `CookLevel`, installed into each callbacks module.

use std::cell::RefCell;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::cook::Frame;
use crate::logging::RateLimit;
use crate::python::registry;
use crate::python::scope;

use super::dat::{DatHandle, Mod};
use super::op::OpHandle;

/// `op(name)`: the operator called `name` (a leading `/` or `./` is ignored), or `None`. An
/// operator object passed in is returned as is. Outside a cook (while the file loads) the graph
/// is not known yet, so a handle is returned unchecked; it resolves when used. A DAT is a
/// [`DatHandle`].
#[pyfunction]
pub fn op(py: Python<'_>, name: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
    if name.cast::<OpHandle>().is_ok() || name.cast::<DatHandle>().is_ok() {
        return Ok(Some(name.clone().unbind()));
    }
    let name: String = name.extract()?;
    let name = name.trim_start_matches("./").trim_start_matches('/');
    let found = scope::with(|s| {
        if !s.has_graph() || name == s.owner_name {
            return Ok(Some(Found::Op(OpHandle::new(name, None))));
        }
        let Some(&i) = s.names()?.get(name) else {
            return Ok(None);
        };
        Ok(Some(match super::dat::lookup(s, i)? {
            Some(d) => Found::Dat(d),
            None => Found::Op(OpHandle::with_index(name, i, None)),
        }))
    })?;
    found.map(|f| f.into_py(py)).transpose()
}

/// What `op()` found: a CHOP or a DAT.
enum Found {
    Op(OpHandle),
    Dat(DatHandle),
}

impl Found {
    fn into_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(match self {
            Found::Op(h) => Py::new(py, h)?.into_any(),
            Found::Dat(d) => Py::new(py, d)?.into_any(),
        })
    }
}

/// `ops(*patterns)`: every operator whose name matches.
#[pyfunction]
#[pyo3(signature = (*patterns))]
pub fn ops(patterns: &Bound<'_, PyTuple>) -> PyResult<Vec<OpHandle>> {
    let pats: Vec<String> = patterns
        .iter()
        .map(|p| p.extract())
        .collect::<PyResult<_>>()?;
    let source = if pats.is_empty() {
        "*".to_string()
    } else {
        pats.join(" ")
    };
    scope::with(|s| {
        let nodes = s.nodes()?;
        registry::with_pattern(&source, |p| {
            nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| p.matches(&n.name))
                .map(|(i, n)| OpHandle::with_index(&n.name, i, None))
                .collect()
        })
    })
}

/// `parent()`: the top of the daemon's network, which holds every operator.
#[pyfunction]
#[pyo3(signature = (n=1))]
pub fn parent(n: i64) -> Root {
    let _ = n;
    Root
}

/// The component that contains every operator (`parent()`, `op('/')`-like).
#[pyclass(frozen, module = "chopd", name = "COMP")]
pub struct Root;

#[pymethods]
impl Root {
    #[getter]
    fn name(&self) -> &'static str {
        ""
    }

    #[getter]
    fn path(&self) -> &'static str {
        "/"
    }

    fn op(&self, py: Python<'_>, name: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        op(py, name)
    }

    #[pyo3(signature = (*patterns))]
    fn ops(&self, patterns: &Bound<'_, PyTuple>) -> PyResult<Vec<OpHandle>> {
        ops(patterns)
    }

    #[getter]
    fn storage<'py>(&self, py: Python<'py>) -> Bound<'py, PyDict> {
        registry::storage(py, "/")
    }

    fn store<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        value: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        registry::storage(py, "/").set_item(key, &value)?;
        Ok(value)
    }

    #[pyo3(signature = (key, default=None))]
    fn fetch<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match registry::storage(py, "/").get_item(key)? {
            Some(v) => Ok(v),
            None => {
                default.ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(key.clone().unbind()))
            }
        }
    }

    fn __repr__(&self) -> &'static str {
        "COMP(path='/')"
    }
}

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

/// Puts the globals into a callbacks module's namespace.
pub fn install(py: Python<'_>, globals: &Bound<'_, PyDict>, me: &Py<OpHandle>) -> PyResult<()> {
    install_functions(py, globals)?;
    install_mod(py, globals)?;
    globals.set_item("me", me.clone_ref(py))?;
    super::runtime::install(py, globals)?;
    Ok(())
}

/// The globals every module chopd runs gets (a callbacks file, a text DAT run as a module),
/// but `me` and `mod`.
pub fn install_functions(py: Python<'_>, globals: &Bound<'_, PyDict>) -> PyResult<()> {
    globals.set_item("op", wrap_pyfunction!(op, py)?)?;
    globals.set_item("ops", wrap_pyfunction!(ops, py)?)?;
    globals.set_item("parent", wrap_pyfunction!(parent, py)?)?;
    globals.set_item("debug", wrap_pyfunction!(debug, py)?)?;
    globals.set_item("absTime", Py::new(py, AbsTime)?)?;
    globals.set_item("CookLevel", crate::python::cook_level_class(py)?)?;
    Ok(())
}

/// `mod`: text DATs as modules (`mod.name`, `mod('name')`), found as `op()` finds operators.
pub fn install_mod(py: Python<'_>, globals: &Bound<'_, PyDict>) -> PyResult<()> {
    globals.set_item("mod", Py::new(py, Mod)?)
}
