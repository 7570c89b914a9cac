//! Parameter expressions and bindings (TouchDesigner's `ParMode.EXPRESSION` and `BIND`): the
//! expression is Python, evaluated when the parameter is read, in the owner's context (`me` is
//! the operator, `op()` and `parent()` start in its network). It runs inside the reading cook, so
//! what it reads becomes that cook's dependency: the reader cooks again when it changes.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CString;

use pyo3::exceptions::{PyRecursionError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::path::{parent_key, Place};

/// Expressions that read expressions, at most this deep (a cycle stops here).
const MAX_DEPTH: u32 = 16;
/// Compiled expressions kept; more are dropped all at once (configs have a handful).
const MAX_CODES: usize = 1024;

thread_local! {
    static CODES: RefCell<HashMap<String, Py<PyAny>>> = RefCell::new(HashMap::new());
    static NAMESPACES: RefCell<HashMap<String, Py<PyDict>>> = RefCell::new(HashMap::new());
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

fn compiled(py: Python<'_>, text: &str) -> PyResult<Py<PyAny>> {
    if let Some(c) = CODES.with(|c| c.borrow().get(text).map(|c| c.clone_ref(py))) {
        return Ok(c);
    }
    let src = CString::new(text).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let code = py
        .import("builtins")?
        .getattr("compile")?
        .call1((src.to_str().unwrap_or_default(), "<expression>", "eval"))?
        .unbind();
    CODES.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= MAX_CODES {
            c.clear();
        }
        c.insert(text.to_string(), code.clone_ref(py));
    });
    Ok(code)
}

/// The globals an expression of `owner`'s parameters sees.
fn namespace(py: Python<'_>, owner: &str) -> PyResult<Py<PyDict>> {
    if let Some(ns) = NAMESPACES.with(|n| n.borrow().get(owner).map(|d| d.clone_ref(py))) {
        return Ok(ns);
    }
    let globals = PyDict::new(py);
    globals.set_item("__builtins__", py.import("builtins")?)?;
    let me = super::comp::object(py, &Place::Key(owner.to_string()))?.unwrap_or_else(|| py.None());
    let network = Place::Key(parent_key(owner).to_string());
    super::comp::install_finders(&globals, Some(network), me)?;
    super::globals::install_clock(py, &globals)?;
    super::runtime::install(py, &globals)?;
    let ns = globals.unbind();
    NAMESPACES.with(|n| n.borrow_mut().insert(owner.to_string(), ns.clone_ref(py)));
    Ok(ns)
}

/// Forgets the namespaces (the operators they name may have been rebuilt).
pub fn forget(owner: &str) {
    NAMESPACES.with(|n| n.borrow_mut().remove(owner));
}

/// Evaluates `text` for a parameter of `owner`.
pub fn eval<'py>(py: Python<'py>, owner: &str, text: &str) -> PyResult<Bound<'py, PyAny>> {
    let depth = DEPTH.with(|d| d.get());
    if depth >= MAX_DEPTH {
        return Err(PyRecursionError::new_err(format!(
            "the expression \"{text}\" reads expressions {MAX_DEPTH} deep (do they read each other?)"
        )));
    }
    DEPTH.with(|d| d.set(depth + 1));
    let r = (|| {
        let code = compiled(py, text)?;
        let ns = namespace(py, owner)?;
        py.import("builtins")?
            .getattr("eval")?
            .call1((code, ns.bind(py)))
    })();
    DEPTH.with(|d| d.set(depth));
    r
}
