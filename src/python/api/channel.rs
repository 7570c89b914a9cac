//! The channel object (`scriptOp['x']`, `op('in').chan('tx')`): a handle naming an operator and
//! one of its channels, resolved on each use. It reads like a number (its current value, the
//! last sample), indexes its samples, and exposes them to numpy without a copy.

use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::types::PyFloat;

use crate::python::scope::{self, DataRef, Scope};

use super::op::{no_samples, OpHandle};

#[pyclass(frozen, module = "chopd", name = "Channel")]
pub struct Channel {
    op: String,
    op_idx: AtomicUsize,
    slot: Option<usize>,
    index: AtomicUsize,
    name: String,
}

impl Channel {
    pub fn new(op: &OpHandle, index: usize, name: &str) -> Channel {
        Channel {
            op: op.name.clone(),
            op_idx: AtomicUsize::new(op.idx.load(Ordering::Relaxed)),
            slot: op.slot,
            index: AtomicUsize::new(index),
            name: name.to_string(),
        }
    }

    /// The operator target and this channel's current index in it.
    fn locate(&self, s: &Scope) -> PyResult<(DataRef, usize)> {
        let t = s.resolve(&self.op, &self.op_idx, self.slot)?;
        let data = s.data(t)?;
        let i = self.index.load(Ordering::Relaxed);
        if i < data.num_chans() && data.name(i) == self.name {
            return Ok((t, i));
        }
        match data.index_of(&self.name) {
            Some(i) => {
                self.index.store(i, Ordering::Relaxed);
                Ok((t, i))
            }
            None => Err(pyo3::exceptions::PyReferenceError::new_err(format!(
                "channel \"{}\" of \"{}\" no longer exists",
                self.name, self.op
            ))),
        }
    }

    /// The samples as the script sees them (none after `numSamples = 0`).
    fn read<R>(&self, f: impl FnOnce(&[f32]) -> R) -> PyResult<R> {
        scope::with(|s| {
            let (t, i) = self.locate(s)?;
            s.record_read(t);
            if no_samples(&self.op, t) {
                return Ok(f(&[]));
            }
            Ok(f(s.data(t)?.chan(i)))
        })
    }

    fn write<R>(&self, what: &str, f: impl FnOnce(&mut [f32]) -> PyResult<R>) -> PyResult<R> {
        scope::with(|s| {
            let (t, i) = self.locate(s)?;
            s.check_write(t, what)?;
            if no_samples(&self.op, t) {
                return f(&mut []);
            }
            f(s.data_mut(t)?.chan_mut(i))
        })
    }

    /// The current value: the last sample.
    fn value(&self) -> PyResult<f64> {
        self.read(|c| c.last().copied().unwrap_or(0.0) as f64)
    }

    fn float<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(PyFloat::new(py, self.value()?).into_any())
    }
}

fn index(i: isize, len: usize, name: &str) -> PyResult<usize> {
    let n = len as isize;
    let j = if i < 0 { i + n } else { i };
    if (0..n).contains(&j) {
        Ok(j as usize)
    } else {
        Err(PyIndexError::new_err(format!(
            "sample {i} is out of range: channel \"{name}\" has {len} samples"
        )))
    }
}

/// Sample values from a Python sequence or array (numpy arrays in one pass), and whether it
/// was a bare number.
fn samples(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<(Vec<f32>, bool)> {
    if crate::python::numpy_available(py) && v.cast::<numpy::PyUntypedArray>().is_ok() {
        let (_, _, vals) = super::numpy::extract_2d(py, v, "vals")?;
        return Ok((vals, false));
    }
    if let Ok(f) = v.extract::<f64>() {
        return Ok((vec![f as f32], true));
    }
    let vals = v
        .try_iter()?
        .map(|x| x.and_then(|x| x.extract::<f64>()).map(|f| f as f32))
        .collect::<PyResult<_>>()?;
    Ok((vals, false))
}

#[pymethods]
impl Channel {
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    #[getter]
    fn index(&self) -> PyResult<usize> {
        scope::with(|s| Ok(self.locate(s)?.1))
    }

    #[getter]
    fn owner(&self) -> OpHandle {
        let h = OpHandle::new(&self.op, self.slot);
        h.idx
            .store(self.op_idx.load(Ordering::Relaxed), Ordering::Relaxed);
        h
    }

    #[getter]
    fn vals(&self) -> PyResult<Vec<f64>> {
        self.read(|c| c.iter().map(|&v| v as f64).collect())
    }

    /// Sets every sample. A sequence of another length makes it the operator's length (every
    /// channel is resized as by `numSamples`: kept samples, new ones 0); a bare number sets
    /// every sample.
    #[setter]
    fn set_vals(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<()> {
        let (vals, scalar) = samples(py, v)?;
        let len = self.__len__()?;
        if scalar || vals.len() == len {
            return self.write("setting vals", |c| {
                if scalar {
                    c.fill(vals[0]);
                } else {
                    c.copy_from_slice(&vals);
                }
                Ok(())
            });
        }
        self.owner()
            .set_num_samples_from(py, "setting vals", vals.len())?;
        self.write("setting vals", |c| {
            c.copy_from_slice(&vals);
            Ok(())
        })
    }

    fn __getitem__(&self, i: isize) -> PyResult<f64> {
        let name = &self.name;
        self.read(|c| index(i, c.len(), name).map(|j| c[j] as f64))?
    }

    fn __setitem__(&self, i: isize, v: f64) -> PyResult<()> {
        let name = self.name.clone();
        self.write("setting a sample", |c| {
            let j = index(i, c.len(), &name)?;
            c[j] = v as f32;
            Ok(())
        })
    }

    fn __len__(&self) -> PyResult<usize> {
        self.read(|c| c.len())
    }

    /// The value at sample `index` (default: the current value, the last sample).
    #[pyo3(signature = (index=None))]
    fn eval(&self, index: Option<isize>) -> PyResult<f64> {
        match index {
            None => self.value(),
            Some(i) => self.__getitem__(i),
        }
    }

    /// The samples as a float32 array over the channel memory (no copy); writable only on a
    /// Script CHOP's own output in its cook.
    #[pyo3(name = "numpyArray")]
    fn numpy_array<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        scope::with(|s| {
            let (t, i) = self.locate(s)?;
            s.record_read(t);
            let writable = t == DataRef::Own && s.check_write(t, "numpyArray").is_ok();
            super::numpy::chan_view(py, s, t, i, writable)
        })
    }

    /// Copies a 1-D array into the samples; its length must match.
    #[pyo3(name = "copyNumpyArray")]
    fn copy_numpy_array(&self, py: Python<'_>, array: &Bound<'_, PyAny>) -> PyResult<()> {
        let (_, n, vals) = super::numpy::extract_2d(py, array, "copyNumpyArray()")?;
        let _ = n;
        self.write("copyNumpyArray()", |c| {
            if vals.len() != c.len() {
                return Err(PyValueError::new_err(format!(
                    "array has {} values, the channel has {} samples (set numSamples first)",
                    vals.len(),
                    c.len()
                )));
            }
            c.copy_from_slice(&vals);
            Ok(())
        })
    }

    fn average(&self) -> PyResult<f64> {
        self.read(|c| c.iter().map(|&v| v as f64).sum::<f64>() / c.len().max(1) as f64)
    }

    fn min(&self) -> PyResult<f64> {
        self.read(|c| c.iter().fold(f32::INFINITY, |a, &b| a.min(b)) as f64)
    }

    fn max(&self) -> PyResult<f64> {
        self.read(|c| c.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64)
    }

    fn __float__(&self) -> PyResult<f64> {
        self.value()
    }

    fn __int__(&self) -> PyResult<i64> {
        Ok(self.value()? as i64)
    }

    fn __bool__(&self) -> PyResult<bool> {
        Ok(self.value()? != 0.0)
    }

    fn __round__(&self, ndigits: Option<i32>) -> PyResult<f64> {
        let v = self.value()?;
        Ok(match ndigits {
            Some(d) => (v * 10f64.powi(d)).round() / 10f64.powi(d),
            None => v.round(),
        })
    }

    fn __richcmp__<'py>(
        &self,
        py: Python<'py>,
        other: &Bound<'py, PyAny>,
        op: CompareOp,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.float(py)?.rich_compare(other, op)
    }

    fn __add__<'py>(&self, py: Python<'py>, o: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.float(py)?.add(o)
    }
    fn __radd__<'py>(&self, py: Python<'py>, o: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        o.add(self.float(py)?)
    }
    fn __sub__<'py>(&self, py: Python<'py>, o: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.float(py)?.sub(o)
    }
    fn __rsub__<'py>(&self, py: Python<'py>, o: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        o.sub(self.float(py)?)
    }
    fn __mul__<'py>(&self, py: Python<'py>, o: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.float(py)?.mul(o)
    }
    fn __rmul__<'py>(&self, py: Python<'py>, o: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        o.mul(self.float(py)?)
    }
    fn __truediv__<'py>(
        &self,
        py: Python<'py>,
        o: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.float(py)?.div(o)
    }
    fn __rtruediv__<'py>(
        &self,
        py: Python<'py>,
        o: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        o.div(self.float(py)?)
    }
    fn __pow__<'py>(
        &self,
        py: Python<'py>,
        o: &Bound<'py, PyAny>,
        _m: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.float(py)?.pow(o, py.None())
    }
    fn __neg__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.float(py)?.neg()
    }
    fn __abs__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.float(py)?.abs()
    }

    fn __str__(&self) -> PyResult<String> {
        Ok(format!("{}", self.value()?))
    }

    fn __repr__(&self) -> String {
        format!("type:Channel name:{} owner:/{}", self.name, self.op)
    }
}
