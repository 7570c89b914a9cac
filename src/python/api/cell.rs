//! A table DAT's cell ([`Cell`], TouchDesigner's `Cell`): a position in a DAT, resolved on each
//! use like the DAT itself.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::types::{PyDict, PyTuple};

use super::dat::{DatHandle, NO_RUN};
use super::runtime::td_error;

/// One cell of a table DAT, by position: `val` is its string, and it converts (`str()`,
/// `float()`, `int()`) and compares as that string.
#[pyclass(frozen, module = "chopd", name = "Cell")]
pub struct Cell {
    pub(super) dat: String,
    pub(super) row: usize,
    pub(super) col: usize,
}

impl Cell {
    fn owner_handle(&self) -> DatHandle {
        DatHandle::new(&self.dat)
    }

    fn get_val(&self) -> PyResult<Option<String>> {
        let (r, c) = (self.row, self.col);
        self.owner_handle()
            .read(|d| Ok(d.table().and_then(|t| t.get(r, c)).map(str::to_string)))
    }

    pub fn val(&self) -> PyResult<String> {
        self.get_val()?.ok_or_else(|| {
            Python::attach(|py| {
                td_error(
                    py,
                    format!(
                        "cell [{}, {}] of \"{}\" no longer exists",
                        self.row, self.col, self.dat
                    ),
                )
            })
        })
    }
}

#[pymethods]
impl Cell {
    #[getter(val)]
    fn py_val(&self) -> PyResult<String> {
        self.val()
    }

    #[setter(val)]
    fn set_val(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = v.str()?.to_string();
        let (r, c) = (self.row, self.col);
        let done = self
            .owner_handle()
            .table_mut(py, "Cell.val", |t| Ok(t.set(r, c, v)))?;
        if done {
            Ok(())
        } else {
            Err(td_error(
                py,
                format!("cell [{r}, {c}] of \"{}\" no longer exists", self.dat),
            ))
        }
    }

    #[getter]
    fn row(&self) -> usize {
        self.row
    }

    #[getter]
    fn col(&self) -> usize {
        self.col
    }

    #[getter]
    fn owner(&self) -> DatHandle {
        self.owner_handle()
    }

    #[getter]
    fn valid(&self) -> bool {
        self.get_val().is_ok_and(|v| v.is_some())
    }

    /// The cell `dr` rows and `dc` columns away, or None outside the table.
    fn offset(&self, dr: i64, dc: i64) -> PyResult<Option<Cell>> {
        let (r, c) = (self.row as i64 + dr, self.col as i64 + dc);
        let size = self
            .owner_handle()
            .read(|d| Ok(d.table().map_or((0, 0), |t| (t.num_rows(), t.num_cols()))))?;
        let inside = (0..size.0 as i64).contains(&r) && (0..size.1 as i64).contains(&c);
        Ok(inside.then(|| Cell {
            dat: self.dat.clone(),
            row: r as usize,
            col: c as usize,
        }))
    }

    /// TouchDesigner runs a cell's text as a script, later; chopd has no delayed scripts.
    #[pyo3(signature = (*args, **kwargs))]
    fn run(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let _ = (args, kwargs);
        Err(td_error(py, NO_RUN.replace("{}", "Cell.run")))
    }

    fn __str__(&self) -> PyResult<String> {
        self.val()
    }

    fn __repr__(&self) -> PyResult<String> {
        Ok(format!(
            "Cell(row={}, col={}, val={:?}, owner='/project1/{}')",
            self.row,
            self.col,
            self.val()?,
            self.dat
        ))
    }

    fn __float__(&self) -> PyResult<f64> {
        let v = self.val()?;
        v.trim().parse().map_err(|_| {
            PyValueError::new_err(format!("could not convert cell value {v:?} to float"))
        })
    }

    fn __int__(&self) -> PyResult<i64> {
        let v = self.val()?;
        let t = v.trim();
        t.parse::<i64>()
            .ok()
            .or_else(|| {
                t.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| f as i64)
            })
            .ok_or_else(|| {
                PyValueError::new_err(format!("invalid literal for int() with cell value {v:?}"))
            })
    }

    fn __hash__(&self) -> PyResult<u64> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.val()?.hash(&mut h);
        Ok(h.finish())
    }

    /// Compares as its string, with a string or another cell; anything else is left to
    /// Python (a number is not equal to a cell: convert with `float()` or `int()`).
    fn __richcmp__<'py>(
        &self,
        py: Python<'py>,
        other: &Bound<'py, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let other: String = match other.cast::<Cell>() {
            Ok(c) => c.get().val()?,
            Err(_) => match other.extract::<String>() {
                Ok(s) => s,
                Err(_) => return Ok(py.NotImplemented()),
            },
        };
        let mine = self.val()?;
        Ok(mine.into_pyobject(py)?.rich_compare(other, op)?.unbind())
    }
}
