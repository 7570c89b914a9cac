//! The DAT object a callback sees: `op('cues')` for a table or text DAT ([`DatHandle`], TD's
//! `tableDAT`/`textDAT`). Its cells are in [`super::cell`], a text DAT run as a module
//! (`op('x').module`, `mod.x`, `mod('x')`) in [`super::datmodule`].
//!
//! Like operator handles, both are names resolved through the running scope on each use: a
//! handle kept in a global sees the table as it is now. Reading a DAT in `onCook` is a
//! dependency of the cook; any script may edit a DAT, and an edit makes its readers cook again.

use std::sync::atomic::AtomicUsize;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyModule, PyTuple};

use crate::cook::dat::{DatBody, DatContent, Table, MAX_DAT_BYTES};
use crate::python::registry;
use crate::python::scope::{self, Scope};

pub use super::cell::Cell;
use super::datfind::{col_of, key, matching, rc_text, row_of, strings, Key};
pub use super::datmodule::{module, Mod};
use super::runtime::td_error;

/// The error of `run()` on a DAT or a cell (`{}` is the member).
pub(super) const NO_RUN: &str = "chopd: {} is not available: delayed scripts are not supported; \
                      import the DAT as a module (op('x').module) and call its functions";

/// A table or text DAT.
#[pyclass(frozen, module = "chopd", name = "DAT")]
pub struct DatHandle {
    pub name: String,
    idx: AtomicUsize,
}

super::family!(DatHandle, "DAT");

/// The DAT handle for node `i` when it is a DAT (what `op()` returns for one).
pub fn lookup(s: &Scope, i: usize) -> PyResult<Option<DatHandle>> {
    Ok(s.nodes()?
        .get(i)
        .filter(|n| n.dat.is_some())
        .map(|n| DatHandle {
            name: n.name.clone(),
            idx: AtomicUsize::new(i),
        }))
}

impl DatHandle {
    pub fn new(name: &str) -> DatHandle {
        DatHandle {
            name: name.to_string(),
            idx: AtomicUsize::new(usize::MAX),
        }
    }

    fn not_a_dat(&self) -> PyErr {
        pyo3::exceptions::PyReferenceError::new_err(format!(
            "operator \"{}\" is no longer a DAT",
            self.name
        ))
    }

    pub(super) fn read<R>(&self, f: impl FnOnce(&DatContent) -> PyResult<R>) -> PyResult<R> {
        scope::with(|s| {
            let i = s.find(&self.name, &self.idx)?;
            f(s.dat(i)?.ok_or_else(|| self.not_a_dat())?)
        })
    }

    fn write<R>(&self, f: impl FnOnce(&mut DatContent) -> PyResult<R>) -> PyResult<R> {
        scope::with(|s| {
            let i = s.find(&self.name, &self.idx)?;
            f(s.dat_mut(i)?.ok_or_else(|| self.not_a_dat())?)
        })
    }

    /// The kind of the operator this handle names now (`oscout`, `table`, …).
    pub(super) fn node_kind(&self) -> PyResult<&'static str> {
        scope::with(|s| {
            let i = s.find(&self.name, &self.idx)?;
            Ok(s.nodes()?[i].kind)
        })
    }

    fn text_dat_error(&self, py: Python<'_>, what: &str) -> PyErr {
        td_error(
            py,
            format!(
                "{what}: \"{}\" is a text DAT; cells, rows and columns are table DAT members",
                self.name
            ),
        )
    }

    pub(super) fn table<R>(
        &self,
        py: Python<'_>,
        what: &str,
        f: impl FnOnce(&Table) -> PyResult<R>,
    ) -> PyResult<R> {
        self.read(|d| match &d.body {
            DatBody::Table(t) => f(t),
            DatBody::Text(_) => Err(self.text_dat_error(py, what)),
        })
    }

    pub(super) fn table_mut<R>(
        &self,
        py: Python<'_>,
        what: &str,
        f: impl FnOnce(&mut Table) -> PyResult<R>,
    ) -> PyResult<R> {
        // Refused before the write is counted, so a text DAT stays unchanged.
        self.table(py, what, |_| Ok(()))?;
        self.write(|d| match &mut d.body {
            DatBody::Table(t) => f(t),
            DatBody::Text(_) => Err(self.text_dat_error(py, what)),
        })
    }

    pub(super) fn cell_at(&self, r: usize, c: usize) -> Cell {
        Cell {
            dat: self.name.clone(),
            row: r,
            col: c,
        }
    }

    pub(super) fn cells_of(&self, v: impl IntoIterator<Item = (usize, usize)>) -> Vec<Cell> {
        v.into_iter().map(|(r, c)| self.cell_at(r, c)).collect()
    }

    /// Row (or column, `by_col`) lists for `row()`/`rows()`/`col()`/`cols()`.
    fn lines(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyTuple>,
        by_col: bool,
        first_only: bool,
        case_sensitive: bool,
        val: bool,
    ) -> PyResult<Vec<Py<PyAny>>> {
        let what = if by_col { "col()" } else { "row()" };
        // Keys first: a cell given as a key reads its DAT, which cannot happen inside another
        // read.
        let keys: Vec<Key> = keys.iter().map(|k| key(&k)).collect::<PyResult<_>>()?;
        let picked: Vec<(usize, Vec<String>)> = self.table(py, what, |t| {
            let names: Vec<&str> = if by_col {
                (0..t.num_cols())
                    .map(|c| t.get(0, c).unwrap_or(""))
                    .collect()
            } else {
                t.rows()
                    .iter()
                    .map(|r| r.first().map_or("", |s| s.as_str()))
                    .collect()
            };
            let len = names.len();
            let mut idx = if keys.is_empty() {
                (0..len).collect()
            } else {
                matching(&names, &keys, case_sensitive, len)?
            };
            if first_only {
                idx.truncate(1);
            }
            Ok(idx
                .into_iter()
                .map(|i| {
                    let v = if by_col {
                        t.rows().iter().map(|r| r[i].clone()).collect()
                    } else {
                        t.rows()[i].clone()
                    };
                    (i, v)
                })
                .collect())
        })?;
        picked
            .into_iter()
            .map(|(i, vals)| {
                let list = if val {
                    PyList::new(py, vals)?
                } else {
                    let cells = (0..vals.len()).map(|k| {
                        if by_col {
                            self.cell_at(k, i)
                        } else {
                            self.cell_at(i, k)
                        }
                    });
                    PyList::new(
                        py,
                        cells
                            .map(|c| Py::new(py, c))
                            .collect::<PyResult<Vec<_>>>()?,
                    )?
                };
                Ok(list.into_any().unbind())
            })
            .collect()
    }
}

#[pymethods]
impl DatHandle {
    #[getter]
    fn name(&self) -> &str {
        crate::path::leaf(&self.name)
    }

    #[getter]
    fn path(&self) -> String {
        crate::path::td_path(&self.name)
    }

    /// `'table'` or `'text'`.
    #[getter(r#type)]
    fn dat_type(&self) -> PyResult<&'static str> {
        self.read(|d| {
            Ok(match d.body {
                DatBody::Table(_) => "table",
                DatBody::Text(_) => "text",
            })
        })
    }

    #[getter(OPType)]
    fn op_type(&self) -> PyResult<String> {
        Ok(format!("{}DAT", self.dat_type()?))
    }

    #[getter(isTable)]
    fn is_table(&self) -> PyResult<bool> {
        self.read(|d| Ok(d.table().is_some()))
    }

    #[getter(isText)]
    fn is_text(&self) -> PyResult<bool> {
        Ok(!self.is_table()?)
    }

    #[getter]
    fn valid(&self) -> bool {
        self.read(|_| Ok(())).is_ok()
    }

    #[getter]
    fn id(&self) -> u64 {
        registry::op_id(&self.name)
    }

    #[getter]
    fn digits(&self) -> Option<u64> {
        super::op::name_digits(&self.name)
    }

    #[getter]
    fn base(&self) -> &str {
        self.name.trim_end_matches(|c: char| c.is_ascii_digit())
    }

    #[getter]
    fn inputs(&self) -> Vec<Py<PyAny>> {
        Vec::new()
    }

    #[getter]
    fn storage<'py>(&self, py: Python<'py>) -> Bound<'py, PyDict> {
        registry::storage(py, &self.name)
    }

    fn store<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        value: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        registry::storage(py, &self.name).set_item(key, &value)?;
        Ok(value)
    }

    /// A stored value, searching the components above as every operator's `fetch` does.
    #[pyo3(signature = (key, *default, search=true, storeDefault=false))]
    #[allow(non_snake_case)]
    fn fetch<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: &Bound<'py, pyo3::types::PyTuple>,
        search: bool,
        storeDefault: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let chain = super::comp::storage_chain(&self.name);
        super::comp::fetch_or(py, &chain, search, storeDefault, key, default.iter().next())
    }

    fn unstore(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        super::comp::unstore_in(&registry::storage(py, &self.name), key)
    }

    /// Rows of a table; lines of a text DAT.
    #[getter(numRows)]
    fn num_rows(&self) -> PyResult<usize> {
        self.read(|d| {
            Ok(match &d.body {
                DatBody::Table(t) => t.num_rows(),
                DatBody::Text(s) => s.lines().count(),
            })
        })
    }

    /// Columns of a table; the longest line's characters for a text DAT.
    #[getter(numCols)]
    fn num_cols(&self) -> PyResult<usize> {
        self.read(|d| {
            Ok(match &d.body {
                DatBody::Table(t) => t.num_cols(),
                DatBody::Text(s) => s.lines().map(|l| l.chars().count()).max().unwrap_or(0),
            })
        })
    }

    /// The whole content: a table's cells tab-separated, one row a line.
    #[getter]
    fn text(&self) -> PyResult<String> {
        self.read(|d| Ok(d.text()))
    }

    /// Replaces the content: a table splits the text at tabs and newlines.
    #[setter]
    fn set_text(&self, py: Python<'_>, text: &Bound<'_, PyAny>) -> PyResult<()> {
        let text = text.str()?.to_string();
        if text.len() as u64 > MAX_DAT_BYTES {
            return Err(td_error(
                py,
                format!(
                    "text of {} bytes is over a DAT's {} MB",
                    text.len(),
                    MAX_DAT_BYTES >> 20
                ),
            ));
        }
        self.write(|d| {
            d.body = match &d.body {
                DatBody::Table(_) => DatBody::Table(Table::from_tsv(&text)),
                DatBody::Text(_) => DatBody::Text(text),
            };
            Ok(())
        })
    }

    #[getter]
    fn module(&self, py: Python<'_>) -> PyResult<Py<PyModule>> {
        module(py, self)
    }

    /// `dat[r, c]`: the Cell by index or name, None outside the table.
    fn __getitem__(
        &self,
        py: Python<'_>,
        rc: (Bound<'_, PyAny>, Bound<'_, PyAny>),
    ) -> PyResult<Option<Cell>> {
        let (r, c) = (key(&rc.0)?, key(&rc.1)?);
        self.table(py, "dat[r, c]", |t| {
            Ok(row_of(t, &r)
                .zip(col_of(t, &c))
                .map(|(r, c)| self.cell_at(r, c)))
        })
    }

    /// `dat[r, c] = v`: stores `str(v)`; a cell outside the table is a tdError.
    fn __setitem__(
        &self,
        py: Python<'_>,
        rc: (Bound<'_, PyAny>, Bound<'_, PyAny>),
        v: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let (r, c) = (key(&rc.0)?, key(&rc.1)?);
        let v = v.str()?.to_string();
        let at = self.table(
            py,
            "dat[r, c] = v",
            |t| Ok(row_of(t, &r).zip(col_of(t, &c))),
        )?;
        let Some((r, c)) = at else {
            return Err(td_error(
                py,
                format!(
                    "dat[r, c] = v: no cell {} in \"{}\"",
                    rc_text(&rc)?,
                    self.name
                ),
            ));
        };
        self.table_mut(py, "dat[r, c] = v", |t| {
            t.set(r, c, v);
            Ok(())
        })
    }

    /// `cell(row, col, caseSensitive=True, val=False)`: the first cell whose row and column
    /// match (names may be patterns), or None; with `val`, its string.
    #[pyo3(signature = (rowNameOrIndex, colNameOrIndex, caseSensitive=true, val=false))]
    #[allow(non_snake_case)]
    fn cell(
        &self,
        py: Python<'_>,
        rowNameOrIndex: &Bound<'_, PyAny>,
        colNameOrIndex: &Bound<'_, PyAny>,
        caseSensitive: bool,
        val: bool,
    ) -> PyResult<Option<Py<PyAny>>> {
        let found = self.find_cells(py, rowNameOrIndex, colNameOrIndex, caseSensitive, true)?;
        found
            .into_iter()
            .next()
            .map(|c| {
                if val {
                    Ok(c.val()?.into_pyobject(py)?.into_any().unbind())
                } else {
                    Ok(Py::new(py, c)?.into_any())
                }
            })
            .transpose()
    }

    /// `cells(row, col, caseSensitive=True)`: every cell whose row and column match.
    #[pyo3(signature = (rowNameOrIndex, colNameOrIndex, caseSensitive=true))]
    #[allow(non_snake_case)]
    fn cells(
        &self,
        py: Python<'_>,
        rowNameOrIndex: &Bound<'_, PyAny>,
        colNameOrIndex: &Bound<'_, PyAny>,
        caseSensitive: bool,
    ) -> PyResult<Vec<Cell>> {
        self.find_cells(py, rowNameOrIndex, colNameOrIndex, caseSensitive, false)
    }

    /// `row(*nameOrIndex, caseSensitive=True, val=False)`: the first matching row's cells.
    #[pyo3(signature = (*nameOrIndex, caseSensitive=true, val=false))]
    #[allow(non_snake_case)]
    fn row(
        &self,
        py: Python<'_>,
        nameOrIndex: &Bound<'_, PyTuple>,
        caseSensitive: bool,
        val: bool,
    ) -> PyResult<Option<Py<PyAny>>> {
        Ok(self
            .lines(py, nameOrIndex, false, true, caseSensitive, val)?
            .into_iter()
            .next())
    }

    /// `col(*nameOrIndex, caseSensitive=True, val=False)`: the first matching column's cells.
    #[pyo3(signature = (*nameOrIndex, caseSensitive=true, val=false))]
    #[allow(non_snake_case)]
    fn col(
        &self,
        py: Python<'_>,
        nameOrIndex: &Bound<'_, PyTuple>,
        caseSensitive: bool,
        val: bool,
    ) -> PyResult<Option<Py<PyAny>>> {
        Ok(self
            .lines(py, nameOrIndex, true, true, caseSensitive, val)?
            .into_iter()
            .next())
    }

    /// `rows(*nameOrIndex, caseSensitive=True, val=False)`: every matching row (all without
    /// arguments), each a list of cells.
    #[pyo3(signature = (*nameOrIndex, caseSensitive=true, val=false))]
    #[allow(non_snake_case)]
    fn rows(
        &self,
        py: Python<'_>,
        nameOrIndex: &Bound<'_, PyTuple>,
        caseSensitive: bool,
        val: bool,
    ) -> PyResult<Vec<Py<PyAny>>> {
        self.lines(py, nameOrIndex, false, false, caseSensitive, val)
    }

    #[pyo3(signature = (*nameOrIndex, caseSensitive=true, val=false))]
    #[allow(non_snake_case)]
    fn cols(
        &self,
        py: Python<'_>,
        nameOrIndex: &Bound<'_, PyTuple>,
        caseSensitive: bool,
        val: bool,
    ) -> PyResult<Vec<Py<PyAny>>> {
        self.lines(py, nameOrIndex, true, false, caseSensitive, val)
    }

    /// `appendRow(vals=None, nameOrIndex=None, sort=None)`: a row at the end, or after the
    /// given row; returns its index.
    #[pyo3(name = "appendRow", signature = (vals=None, nameOrIndex=None, sort=None))]
    #[allow(non_snake_case)]
    fn append_row(
        &self,
        py: Python<'_>,
        vals: Option<&Bound<'_, PyAny>>,
        nameOrIndex: Option<&Bound<'_, PyAny>>,
        sort: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let _ = sort;
        let vals = strings(vals)?;
        let after = self.optional_row(py, "appendRow()", nameOrIndex)?;
        self.table_mut(py, "appendRow()", |t| {
            Ok(t.insert_row(after.map_or(usize::MAX, |r| r + 1), vals))
        })
    }

    /// `insertRow(vals=None, nameOrIndex=0, sort=None)`: a row before the given one.
    #[pyo3(name = "insertRow", signature = (vals=None, nameOrIndex=None, sort=None))]
    #[allow(non_snake_case)]
    fn insert_row(
        &self,
        py: Python<'_>,
        vals: Option<&Bound<'_, PyAny>>,
        nameOrIndex: Option<&Bound<'_, PyAny>>,
        sort: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let _ = sort;
        let vals = strings(vals)?;
        let before = self
            .optional_row(py, "insertRow()", nameOrIndex)?
            .unwrap_or(0);
        self.table_mut(py, "insertRow()", |t| Ok(t.insert_row(before, vals)))
    }

    #[pyo3(name = "appendCol", signature = (vals=None, nameOrIndex=None, sort=None))]
    #[allow(non_snake_case)]
    fn append_col(
        &self,
        py: Python<'_>,
        vals: Option<&Bound<'_, PyAny>>,
        nameOrIndex: Option<&Bound<'_, PyAny>>,
        sort: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let _ = sort;
        let vals = strings(vals)?;
        let after = self.optional_col(py, "appendCol()", nameOrIndex)?;
        self.table_mut(py, "appendCol()", |t| {
            Ok(t.insert_col(after.map_or(usize::MAX, |c| c + 1), vals))
        })
    }

    #[pyo3(name = "insertCol", signature = (vals=None, nameOrIndex=None, sort=None))]
    #[allow(non_snake_case)]
    fn insert_col(
        &self,
        py: Python<'_>,
        vals: Option<&Bound<'_, PyAny>>,
        nameOrIndex: Option<&Bound<'_, PyAny>>,
        sort: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let _ = sort;
        let vals = strings(vals)?;
        let before = self
            .optional_col(py, "insertCol()", nameOrIndex)?
            .unwrap_or(0);
        self.table_mut(py, "insertCol()", |t| Ok(t.insert_col(before, vals)))
    }

    /// `appendRows(list of rows)`: returns the index of the last one.
    #[pyo3(name = "appendRows")]
    fn append_rows(&self, py: Python<'_>, rows: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
        let rows: Vec<Vec<String>> = rows
            .try_iter()?
            .map(|r| strings(Some(&r?)))
            .collect::<PyResult<_>>()?;
        self.table_mut(py, "appendRows()", |t| {
            Ok(rows.into_iter().map(|r| t.insert_row(usize::MAX, r)).last())
        })
    }

    /// `appendCols(list of columns)`: returns the index of the last one.
    #[pyo3(name = "appendCols")]
    fn append_cols(&self, py: Python<'_>, cols: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
        let cols: Vec<Vec<String>> = cols
            .try_iter()?
            .map(|c| strings(Some(&c?)))
            .collect::<PyResult<_>>()?;
        self.table_mut(py, "appendCols()", |t| {
            Ok(cols.into_iter().map(|c| t.insert_col(usize::MAX, c)).last())
        })
    }

    /// `deleteRows(list of nameOrIndex)`: every one is found first, then they go together.
    #[pyo3(name = "deleteRows")]
    fn delete_rows(&self, py: Python<'_>, rows: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut idx = rows
            .try_iter()?
            .map(|k| self.required_row(py, "deleteRows()", &k?))
            .collect::<PyResult<Vec<usize>>>()?;
        idx.sort_unstable();
        idx.dedup();
        self.table_mut(py, "deleteRows()", |t| {
            idx.iter().rev().for_each(|&r| {
                t.delete_row(r);
            });
            Ok(())
        })
    }

    /// `deleteCols(list of nameOrIndex)`, as `deleteRows`.
    #[pyo3(name = "deleteCols")]
    fn delete_cols(&self, py: Python<'_>, cols: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut idx = cols
            .try_iter()?
            .map(|k| self.required_col(py, "deleteCols()", &k?))
            .collect::<PyResult<Vec<usize>>>()?;
        idx.sort_unstable();
        idx.dedup();
        self.table_mut(py, "deleteCols()", |t| {
            idx.iter().rev().for_each(|&c| {
                t.delete_col(c);
            });
            Ok(())
        })
    }

    /// `deleteRow(nameOrIndex)`: a row that is not there is a tdError.
    #[pyo3(name = "deleteRow")]
    fn delete_row(&self, py: Python<'_>, name_or_index: &Bound<'_, PyAny>) -> PyResult<()> {
        let r = self.required_row(py, "deleteRow()", name_or_index)?;
        self.table_mut(py, "deleteRow()", |t| {
            t.delete_row(r);
            Ok(())
        })
    }

    #[pyo3(name = "deleteCol")]
    fn delete_col(&self, py: Python<'_>, name_or_index: &Bound<'_, PyAny>) -> PyResult<()> {
        let c = self.required_col(py, "deleteCol()", name_or_index)?;
        self.table_mut(py, "deleteCol()", |t| {
            t.delete_col(c);
            Ok(())
        })
    }

    /// `replaceRow(nameOrIndex, vals, entireRow=True)`: returns the row's index.
    #[pyo3(name = "replaceRow", signature = (nameOrIndex, vals=None, entireRow=true))]
    #[allow(non_snake_case)]
    fn replace_row(
        &self,
        py: Python<'_>,
        nameOrIndex: &Bound<'_, PyAny>,
        vals: Option<&Bound<'_, PyAny>>,
        entireRow: bool,
    ) -> PyResult<usize> {
        let vals = strings(vals)?;
        let r = self.required_row(py, "replaceRow()", nameOrIndex)?;
        self.table_mut(py, "replaceRow()", |t| {
            t.replace_row(r, vals, entireRow);
            Ok(r)
        })
    }

    #[pyo3(name = "replaceCol", signature = (nameOrIndex, vals=None, entireCol=true))]
    #[allow(non_snake_case)]
    fn replace_col(
        &self,
        py: Python<'_>,
        nameOrIndex: &Bound<'_, PyAny>,
        vals: Option<&Bound<'_, PyAny>>,
        entireCol: bool,
    ) -> PyResult<usize> {
        let vals = strings(vals)?;
        let c = self.required_col(py, "replaceCol()", nameOrIndex)?;
        self.table_mut(py, "replaceCol()", |t| {
            t.replace_col(c, vals, entireCol);
            Ok(c)
        })
    }

    /// `setSize(numrows, numcols)`: kept cells stay, new ones are empty.
    #[pyo3(name = "setSize")]
    fn set_size(&self, py: Python<'_>, numrows: i64, numcols: i64) -> PyResult<()> {
        if numrows < 0 || numcols < 0 {
            return Err(PyValueError::new_err("setSize() needs sizes of 0 or more"));
        }
        let cells = (numrows as u64).saturating_mul(numcols as u64);
        if cells > MAX_DAT_BYTES {
            return Err(td_error(
                py,
                format!("setSize({numrows}, {numcols}): too many cells"),
            ));
        }
        self.table_mut(py, "setSize()", |t| {
            t.set_size(numrows as usize, numcols as usize);
            Ok(())
        })
    }

    /// `clear(keepSize=False, keepFirstRow=False, keepFirstCol=False)`; a text DAT's text
    /// becomes empty.
    #[pyo3(signature = (keepSize=false, keepFirstRow=false, keepFirstCol=false))]
    #[allow(non_snake_case)]
    fn clear(&self, keepSize: bool, keepFirstRow: bool, keepFirstCol: bool) -> PyResult<()> {
        self.write(|d| {
            match &mut d.body {
                DatBody::Table(t) => t.clear(keepSize, keepFirstRow, keepFirstCol),
                DatBody::Text(s) => s.clear(),
            }
            Ok(())
        })
    }

    /// `copy(dat)`: this DAT's content becomes the other's (a table's text into a text DAT).
    fn copy(&self, other: &Bound<'_, DatHandle>) -> PyResult<()> {
        let from = other.get().read(|d| Ok(d.body.clone()))?;
        self.write(|d| {
            d.body = match (&d.body, from) {
                (DatBody::Table(_), DatBody::Text(s)) => DatBody::Table(Table::from_tsv(&s)),
                (DatBody::Text(_), DatBody::Table(t)) => DatBody::Text(t.to_text()),
                (_, b) => b,
            };
            Ok(())
        })
    }

    /// TouchDesigner runs a DAT's text as a script, later; chopd has no delayed scripts.
    #[pyo3(signature = (*args, **kwargs))]
    fn run(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let _ = (args, kwargs);
        Err(td_error(py, NO_RUN.replace("{}", "DAT.run")))
    }

    fn __repr__(&self) -> String {
        let t = self.op_type().unwrap_or_else(|_| "DAT".into());
        format!("{t}(path='/project1/{}')", self.name)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<DatHandle>()
            .is_ok_and(|o| o.get().name == self.name)
    }

    fn __hash__(&self) -> u64 {
        registry::op_id(&self.name)
    }
}

/// Where a DAT sits in the network, as every operator has it.
#[pymethods]
impl DatHandle {
    #[pyo3(signature = (n=1))]
    fn parent(&self, py: Python<'_>, n: i64) -> PyResult<Option<Py<PyAny>>> {
        let me = crate::path::Place::Key(self.name.clone());
        match super::comp::ancestor(&me, n) {
            Some(p) => super::comp::object(py, &p),
            None => Ok(None),
        }
    }

    fn op(&self, py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        super::comp::find(py, &crate::path::Place::Key(self.name.clone()), path)
    }
}
