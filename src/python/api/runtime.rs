//! The TouchDesigner runtime names beyond the operator API: the `td` and `tdu` modules,
//! `project`, `app`, every TouchDesigner type name, `tdError`, and the errors that say what a
//! headless daemon cannot do (GUI, TOP and SOP members; TouchDesigner globals chopd lacks).
//!
//! Most of it is plain Python (`td.py`, loaded once as `_chopd_td`): values and small classes
//! that need nothing from the graph. What does (the clock rate, the config file, the pattern
//! rules, the pyo3 classes) is handed in from here.

use std::ffi::CString;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

use crate::pattern::Pattern;
use crate::python::{registry, scope};

use super::channel::Channel;
use super::comp::{Comp, OpFinder, OpsFinder, ParentFinder};
use super::dat::{Cell, DatHandle};
use super::datmodule::Mod;
use super::globals::{self, AbsTime, Time};
use super::op::OpHandle;
use super::par::{Page, Par, ParCollection};
use super::pargroup::ParGroup;

const SOURCE: &str = include_str!("td.py");

/// The names every callbacks module gets, built once.
static NAMES: PyOnceLock<Py<PyDict>> = PyOnceLock::new();
static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The loaded `td.py`.
pub(super) fn module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    MODULE
        .get_or_try_init(py, || {
            let src = CString::new(SOURCE)
                .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
            Ok(PyModule::from_code(py, &src, c"<chopd td>", c"_chopd_td")?.unbind())
        })
        .map(|m| m.bind(py))
}

fn names(py: Python<'_>) -> PyResult<&Bound<'_, PyDict>> {
    NAMES
        .get_or_try_init(py, || {
            let classes = PyDict::new(py);
            classes.set_item("OP", py.get_type::<OpHandle>())?;
            classes.set_item("COMP", py.get_type::<Comp>())?;
            classes.set_item("Channel", py.get_type::<Channel>())?;
            classes.set_item("Par", py.get_type::<Par>())?;
            classes.set_item("ParGroup", py.get_type::<ParGroup>())?;
            classes.set_item("Page", py.get_type::<Page>())?;
            classes.set_item("ParCollection", py.get_type::<ParCollection>())?;
            classes.set_item("timeCOMP", py.get_type::<Time>())?;
            classes.set_item("AbsTime", py.get_type::<AbsTime>())?;
            classes.set_item("DAT", py.get_type::<DatHandle>())?;
            classes.set_item("Cell", py.get_type::<Cell>())?;
            classes.set_item("MOD", py.get_type::<Mod>())?;
            let funcs = PyDict::new(py);
            // Shared by every module that imports `td`: they follow the running script.
            funcs.set_item("op", OpFinder { network: None })?;
            funcs.set_item("ops", OpsFinder { network: None })?;
            funcs.set_item("parent", ParentFinder { network: None })?;
            funcs.set_item("root", Comp::root())?;
            funcs.set_item("debug", wrap_pyfunction!(globals::debug, py)?)?;
            funcs.set_item("absTime", Py::new(py, AbsTime)?)?;
            funcs.set_item("CookLevel", crate::python::cook_level_class(py)?)?;
            funcs.set_item("mod", Mod { network: None })?;
            let names = module(py)?.getattr("setup")?.call1((
                classes,
                funcs,
                wrap_pyfunction!(pattern_mask, py)?,
                wrap_pyfunction!(project_info, py)?,
                py.get_type::<DependencyStamp>(),
                env!("CARGO_PKG_VERSION"),
            ))?;
            Ok(names.cast_into::<PyDict>()?.unbind())
        })
        .map(|d| d.bind(py))
}

/// Puts the TouchDesigner names into a callbacks module's namespace, under the ones already
/// there (`op`, `me`, …), as TouchDesigner's injected globals are.
pub fn install(py: Python<'_>, globals: &Bound<'_, PyDict>) -> PyResult<()> {
    for (k, v) in names(py)?.iter() {
        if !globals.contains(&k)? {
            globals.set_item(k, v)?;
        }
    }
    Ok(())
}

/// A `tdError` with `msg`: TouchDesigner's exception for API misuse, which scripts catch by
/// that name.
pub fn td_error(py: Python<'_>, msg: String) -> PyErr {
    match module(py).and_then(|m| m.getattr("tdError")) {
        Ok(t) => match t.cast_into::<pyo3::types::PyType>() {
            Ok(t) => PyErr::from_type(t, msg),
            Err(_) => pyo3::exceptions::PyRuntimeError::new_err(msg),
        },
        Err(_) => pyo3::exceptions::PyRuntimeError::new_err(msg),
    }
}

/// Rewrites the message of a NameError for a TouchDesigner global chopd lacks, so the log says
/// what it is (`'ui' is a TouchDesigner global chopd does not provide: …`).
pub fn explain(py: Python<'_>, err: &PyErr) {
    if !err.is_instance_of::<pyo3::exceptions::PyNameError>(py) {
        return;
    }
    if let Some(m) = MODULE.get(py) {
        let _ = m.bind(py).call_method1("explain", (err.value(py),));
    }
}

/// `tdu.match`'s mask: which of `names` match `pattern`, by the rules channel patterns use.
#[pyfunction]
fn pattern_mask(pattern: &str, names: Vec<String>, case_sensitive: bool) -> PyResult<Vec<bool>> {
    let fold = |s: &str| {
        if case_sensitive {
            s.to_string()
        } else {
            s.to_lowercase()
        }
    };
    let p = Pattern::new(&fold(pattern))
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    Ok(names.iter().map(|n| p.matches(&fold(n))).collect())
}

/// `(name, folder, cookRate)` for `project`.
#[pyfunction]
fn project_info() -> (String, String, f64) {
    let (name, folder) = match config_file() {
        Some(f) => (
            f.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            f.parent()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
        ),
        None => (
            String::new(),
            std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
        ),
    };
    (name, folder, clock_rate())
}

/// The config this process runs (`chopd run CONFIG`), made absolute the first time it is asked
/// for; `None` in a process that runs no config (unit tests).
fn config_file() -> Option<PathBuf> {
    static FILE: OnceLock<Option<PathBuf>> = OnceLock::new();
    FILE.get_or_init(|| {
        let args: Vec<String> = std::env::args().skip(1).collect();
        match args.as_slice() {
            [run, path] if run == "run" => {
                let p = PathBuf::from(path);
                Some(std::fs::canonicalize(&p).unwrap_or(p))
            }
            _ => None,
        }
    })
    .clone()
}

/// The clock rate: the running frame's, else the current operator's, else the last frame's.
fn clock_rate() -> f64 {
    scope::with(|s| {
        Ok(s.frame
            .map(|f| f.rate)
            .or(Some(s.owner.borrow().clock_rate)))
    })
    .ok()
    .flatten()
    .or_else(|| registry::last_frame().map(|f| f.rate))
    .unwrap_or(60.0)
}

/// The version counter of one `tdu.Dependency`: reading the value during a cook records it,
/// changing the value makes those cooks run again.
#[pyclass(frozen, module = "chopd")]
#[derive(Default)]
struct DependencyStamp(Arc<AtomicU64>);

#[pymethods]
impl DependencyStamp {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    fn read(&self) {
        let _ = scope::with(|s| {
            s.record_value(&self.0);
            Ok(())
        });
    }

    fn changed(&self) {
        scope::value_changed(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_masks_follow_the_pattern_rules_and_case_option() {
        let names = || vec!["foo".to_string(), "Food".to_string(), "bar1".to_string()];
        assert_eq!(
            pattern_mask("foo*", names(), true).unwrap(),
            [true, false, false]
        );
        assert_eq!(
            pattern_mask("foo* ^food", names(), false).unwrap(),
            [true, false, false]
        );
        assert_eq!(
            pattern_mask("bar[1-3]", names(), true).unwrap(),
            [false, false, true]
        );
    }

    #[test]
    fn a_process_that_runs_no_config_has_no_config_file() {
        assert_eq!(config_file(), None);
    }
}
