//! `ParGroup` and `op.parGroup`: a custom parameter tuplet as one object (`Color` for
//! `Colorr`, `Colorg`, `Colorb`), as TouchDesigner's ParGroup class has it.

use pyo3::exceptions::{PyAttributeError, PyIndexError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::op::OpHandle;
use super::par::{err, set_value, Page, Par};
use crate::python::registry;

/// A group of parameters appended together (`appendFloat('Color', size=3)`); `[0]` is the first.
#[pyclass(frozen, module = "chopd", name = "ParGroup")]
pub struct ParGroup {
    pub(super) op: String,
    pub(super) base: String,
    pub(super) names: Vec<String>,
}

#[pymethods]
impl ParGroup {
    #[getter]
    fn name(&self) -> &str {
        &self.base
    }

    #[getter]
    fn owner(&self) -> OpHandle {
        OpHandle::new(&self.op, None)
    }

    #[getter]
    fn size(&self) -> usize {
        self.names.len()
    }

    fn __len__(&self) -> usize {
        self.names.len()
    }

    fn __getitem__(&self, i: isize) -> PyResult<Par> {
        let n = self.names.len() as isize;
        let j = if i < 0 { i + n } else { i };
        if !(0..n).contains(&j) {
            return Err(PyIndexError::new_err(format!(
                "parameter group \"{}\" has {n} parameters",
                self.base
            )));
        }
        Ok(Par::new(&self.op, &self.names[j as usize]))
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PyList::new(py, self.names.iter().map(|n| Par::new(&self.op, n)))?
            .try_iter()
            .map(Bound::into_any)
    }

    #[getter]
    fn pars(&self) -> Vec<Par> {
        self.names.iter().map(|n| Par::new(&self.op, n)).collect()
    }

    /// The value (one parameter) or a tuple of values.
    #[getter]
    fn val<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let vals: Vec<Bound<'py, PyAny>> = self
            .names
            .iter()
            .map(|n| Par::new(&self.op, n).value(py))
            .collect::<PyResult<_>>()?;
        if vals.len() == 1 {
            return Ok(vals.into_iter().next().expect("one value"));
        }
        Ok(PyTuple::new(py, vals)?.into_any())
    }

    #[setter]
    fn set_val(&self, v: &Bound<'_, PyAny>) -> PyResult<()> {
        for (n, it) in self.names.iter().zip(self.spread(v)?) {
            set_value(&self.op, n, &it)?;
        }
        Ok(())
    }

    fn eval<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.val(py)
    }

    /// The defaults (one parameter: the value itself, else a tuple).
    #[getter]
    fn default<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let vals: Vec<Bound<'py, PyAny>> = self
            .names
            .iter()
            .map(|n| Par::new(&self.op, n).default(py))
            .collect::<PyResult<_>>()?;
        if vals.len() == 1 {
            return Ok(vals.into_iter().next().expect("one value"));
        }
        Ok(PyTuple::new(py, vals)?.into_any())
    }

    /// A tuple of one value per parameter, or one value for all of them.
    #[setter]
    fn set_default(&self, v: &Bound<'_, PyAny>) -> PyResult<()> {
        for (n, it) in self.names.iter().zip(self.spread(v)?) {
            Par::new(&self.op, n).set_default(&it)?;
        }
        Ok(())
    }

    #[getter(startSection)]
    fn start_section(&self) -> PyResult<bool> {
        Par::new(&self.op, &self.names[0]).start_section()
    }
    #[setter(startSection)]
    fn set_start_section(&self, v: bool) -> PyResult<()> {
        Par::new(&self.op, &self.names[0]).set_start_section(v)
    }

    #[getter]
    fn style(&self) -> PyResult<&'static str> {
        Par::new(&self.op, &self.names[0]).style()
    }

    #[getter]
    fn label(&self) -> PyResult<String> {
        Par::new(&self.op, &self.names[0]).label()
    }

    #[getter]
    fn page(&self) -> PyResult<Page> {
        Par::new(&self.op, &self.names[0]).page()
    }

    fn __repr__(&self) -> String {
        format!("type:ParGroup name:{} owner:/{}", self.base, self.op)
    }
}

impl ParGroup {
    fn spread<'py>(&self, v: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let items: Vec<Bound<'py, PyAny>> =
            if v.extract::<String>().is_err() && v.try_iter().is_ok() {
                v.try_iter()?.collect::<PyResult<_>>()?
            } else {
                vec![v.clone(); self.names.len()]
            };
        if items.len() != self.names.len() {
            return Err(err(format!(
                "parameter group \"{}\" has {} values, got {}",
                self.base,
                self.names.len(),
                items.len()
            )));
        }
        Ok(items)
    }
}

/// The group `base` of `op`'s custom parameters, if it has one.
pub(super) fn group_of(op: &str, base: &str) -> Option<ParGroup> {
    let shared = registry::lookup(op)?;
    let names: Vec<String> = shared
        .borrow()
        .pars
        .pars()
        .iter()
        .filter(|p| p.group == base)
        .map(|p| p.name.clone())
        .collect();
    (!names.is_empty()).then(|| ParGroup {
        op: op.to_string(),
        base: base.to_string(),
        names,
    })
}

/// `op.parGroup`: parameter groups by name (`op.parGroup.Color`, `op.parGroup['Color']`).
#[pyclass(frozen, module = "chopd", name = "ParGroupCollection")]
pub struct ParGroupCollection {
    pub op: String,
}

#[pymethods]
impl ParGroupCollection {
    fn __getattr__(&self, name: &str) -> PyResult<ParGroup> {
        group_of(&self.op, name).ok_or_else(|| {
            PyAttributeError::new_err(format!("\"{}\" has no parameter group \"{name}\"", self.op))
        })
    }

    fn __setattr__(&self, name: &str, v: &Bound<'_, PyAny>) -> PyResult<()> {
        self.__getattr__(name)?.set_val(v)
    }

    /// None when absent, as TouchDesigner's `parGroup['Name']`.
    fn __getitem__(&self, name: &str) -> Option<ParGroup> {
        group_of(&self.op, name)
    }

    fn __setitem__(&self, name: &str, v: &Bound<'_, PyAny>) -> PyResult<()> {
        self.__getattr__(name)?.set_val(v)
    }

    fn __contains__(&self, name: &str) -> bool {
        group_of(&self.op, name).is_some()
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let mut bases: Vec<String> = Vec::new();
        if let Some(s) = registry::lookup(&self.op) {
            for p in s.borrow().pars.pars() {
                if !bases.contains(&p.group) {
                    bases.push(p.group.clone());
                }
            }
        }
        PyList::new(py, bases.iter().filter_map(|b| group_of(&self.op, b)))?
            .try_iter()
            .map(Bound::into_any)
    }

    #[getter]
    fn owner(&self) -> OpHandle {
        OpHandle::new(&self.op, None)
    }

    fn __repr__(&self) -> String {
        format!("type:ParGroupCollection owner:/{}", self.op)
    }
}
