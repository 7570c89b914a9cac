//! Finding a DAT's rows, columns and cells by index or by name (a row's name is its first
//! cell, a column's its cell in row 0), with TouchDesigner's patterns where its methods take
//! them, and the values its edit methods take (each `str()`-ed).

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use crate::cook::dat::Table;
use crate::python::registry;

use super::cell::Cell;
use super::dat::DatHandle;
use super::runtime::td_error;

/// A row or column given by index or by name (its first cell).
pub(super) enum Key {
    Index(i64),
    Name(String),
}

pub(super) fn key(k: &Bound<'_, PyAny>) -> PyResult<Key> {
    if let Ok(s) = k.extract::<String>() {
        return Ok(Key::Name(s));
    }
    if let Ok(c) = k.cast::<Cell>() {
        return Ok(Key::Name(c.get().val()?));
    }
    k.extract::<i64>().map(Key::Index).map_err(|_| {
        PyTypeError::new_err(format!(
            "a row or column is an index or a name, not {}",
            k.get_type().name().map_or("?".into(), |n| n.to_string())
        ))
    })
}

/// Values as TouchDesigner stores them: each `str()`-ed.
pub(super) fn strings(vals: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
    let Some(v) = vals else {
        return Ok(Vec::new());
    };
    if v.is_none() {
        return Ok(Vec::new());
    }
    if v.extract::<String>().is_ok() {
        return Ok(vec![v.str()?.to_string()]);
    }
    v.try_iter()?.map(|x| Ok(x?.str()?.to_string())).collect()
}

pub(super) fn row_of(t: &Table, k: &Key) -> Option<usize> {
    match k {
        Key::Index(i) => usize::try_from(*i).ok().filter(|&i| i < t.num_rows()),
        Key::Name(n) => t.row_named(n),
    }
}

pub(super) fn col_of(t: &Table, k: &Key) -> Option<usize> {
    match k {
        Key::Index(i) => usize::try_from(*i).ok().filter(|&i| i < t.num_cols()),
        Key::Name(n) => t.col_named(n),
    }
}

/// Every index of `names` that one of `keys` picks: an index, or a name pattern.
pub(super) fn matching(
    names: &[&str],
    keys: &[Key],
    case_sensitive: bool,
    len: usize,
) -> PyResult<Vec<usize>> {
    let mut out = Vec::new();
    for k in keys {
        match k {
            Key::Index(i) => {
                if let Some(i) = usize::try_from(*i).ok().filter(|&i| i < len) {
                    out.push(i);
                }
            }
            Key::Name(p) => {
                let fold = |s: &str| {
                    if case_sensitive {
                        s.to_string()
                    } else {
                        s.to_lowercase()
                    }
                };
                let hits = registry::with_pattern(&fold(p), |pat| {
                    (0..names.len())
                        .filter(|&i| pat.matches(&fold(names[i])))
                        .collect::<Vec<_>>()
                })?;
                out.extend(hits);
            }
        }
    }
    Ok(out)
}

pub(super) fn rc_text(rc: &(Bound<'_, PyAny>, Bound<'_, PyAny>)) -> PyResult<String> {
    Ok(format!("[{}, {}]", rc.0.repr()?, rc.1.repr()?))
}

impl DatHandle {
    pub(super) fn find_cells(
        &self,
        py: Python<'_>,
        r: &Bound<'_, PyAny>,
        c: &Bound<'_, PyAny>,
        case_sensitive: bool,
        first: bool,
    ) -> PyResult<Vec<Cell>> {
        let (rk, ck) = ([key(r)?], [key(c)?]);
        let hits = self.table(py, "cell()", |t| {
            let row_names: Vec<&str> = t
                .rows()
                .iter()
                .map(|r| r.first().map_or("", |s| s.as_str()))
                .collect();
            let col_names: Vec<&str> = (0..t.num_cols())
                .map(|c| t.get(0, c).unwrap_or(""))
                .collect();
            let rows = matching(&row_names, &rk, case_sensitive, t.num_rows())?;
            let cols = matching(&col_names, &ck, case_sensitive, t.num_cols())?;
            let mut out = Vec::new();
            'outer: for &r in &rows {
                for &c in &cols {
                    out.push((r, c));
                    if first {
                        break 'outer;
                    }
                }
            }
            Ok(out)
        })?;
        Ok(self.cells_of(hits))
    }

    pub(super) fn optional_row(
        &self,
        py: Python<'_>,
        what: &str,
        k: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<usize>> {
        match k.filter(|k| !k.is_none()) {
            Some(k) => self.required_row(py, what, k).map(Some),
            None => Ok(None),
        }
    }

    pub(super) fn optional_col(
        &self,
        py: Python<'_>,
        what: &str,
        k: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<usize>> {
        match k.filter(|k| !k.is_none()) {
            Some(k) => self.required_col(py, what, k).map(Some),
            None => Ok(None),
        }
    }

    pub(super) fn required_row(
        &self,
        py: Python<'_>,
        what: &str,
        k: &Bound<'_, PyAny>,
    ) -> PyResult<usize> {
        let key = key(k)?;
        self.table(py, what, |t| Ok(row_of(t, &key)))?
            .ok_or_else(|| {
                td_error(
                    py,
                    format!(
                        "{what}: \"{}\" has no row {}",
                        self.name,
                        k.repr().map_or(String::new(), |r| r.to_string())
                    ),
                )
            })
    }

    pub(super) fn required_col(
        &self,
        py: Python<'_>,
        what: &str,
        k: &Bound<'_, PyAny>,
    ) -> PyResult<usize> {
        let key = key(k)?;
        self.table(py, what, |t| Ok(col_of(t, &key)))?
            .ok_or_else(|| {
                td_error(
                    py,
                    format!(
                        "{what}: \"{}\" has no column {}",
                        self.name,
                        k.repr().map_or(String::new(), |r| r.to_string())
                    ),
                )
            })
    }
}
