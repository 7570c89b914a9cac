//! numpy, the fast path: channel data handed to Python as arrays over the channels' own memory
//! (no copy, no Python object per sample), and arrays copied back into channels in one pass.
//!
//! Soundness of the zero-copy views: every array's base is a [`ViewOwner`] registered in the
//! scope. Before the viewed memory may move (the script changes its channel layout) and when
//! the callback ends, any owner still referenced by an array takes over the old `ChopData`
//! (its heap buffer does not move) and the graph gets a fresh copy; so an array a script keeps
//! in a global stays valid — it just stops tracking the channels. Views of other operators'
//! channels are read-only.

use numpy::ndarray::{ArrayView1, ArrayView2};
use numpy::npyffi::flags::NPY_ARRAY_WRITEABLE;
use numpy::{PyArray1, PyArray2, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::python::scope::{DataRef, Scope, ViewOwner};

fn owner_for<'py>(py: Python<'py>, s: &mut Scope, t: DataRef) -> PyResult<Bound<'py, ViewOwner>> {
    if let Some((_, o)) = s.views.iter().find(|(vt, _)| *vt == t) {
        return Ok(o.bind(py).clone());
    }
    let o = Py::new(py, ViewOwner::default())?;
    s.views.push((t, o.clone_ref(py)));
    Ok(o.into_bound(py))
}

/// A (channels, samples) float32 view of `t`'s data; writable only when `writable`.
pub fn chop_view<'py>(
    py: Python<'py>,
    s: &mut Scope,
    t: DataRef,
    writable: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if !crate::python::numpy_available(py) {
        return Err(crate::python::numpy_missing("numpyArray()"));
    }
    let owner = owner_for(py, s, t)?;
    let data = s.data_mut(t)?;
    let shape = (data.num_chans(), data.num_samples());
    let ptr = data.samples_mut().as_mut_ptr();
    // SAFETY: `ptr` covers shape.0 * shape.1 f32 values (ChopData's invariant); the memory stays
    // put while `owner` is registered (see the module docs), and `owner` outlives the array.
    let arr = unsafe {
        let view = ArrayView2::from_shape_ptr(shape, ptr as *const f32);
        PyArray2::<f32>::borrow_from_array(&view, owner.into_any())
    };
    if !writable {
        clear_writeable(arr.as_untyped());
    }
    Ok(arr.into_any())
}

/// A float32 view of channel `chan` of `t`; writable only when `writable`.
pub fn chan_view<'py>(
    py: Python<'py>,
    s: &mut Scope,
    t: DataRef,
    chan: usize,
    writable: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if !crate::python::numpy_available(py) {
        return Err(crate::python::numpy_missing("numpyArray()"));
    }
    let owner = owner_for(py, s, t)?;
    let data = s.data_mut(t)?;
    let slice = data.chan_mut(chan);
    let (len, ptr) = (slice.len(), slice.as_mut_ptr());
    // SAFETY: as in `chop_view`, for one channel's contiguous run of samples.
    let arr = unsafe {
        let view = ArrayView1::from_shape_ptr(len, ptr as *const f32);
        PyArray1::<f32>::borrow_from_array(&view, owner.into_any())
    };
    if !writable {
        clear_writeable(arr.as_untyped());
    }
    Ok(arr.into_any())
}

fn clear_writeable(arr: &Bound<'_, numpy::PyUntypedArray>) {
    let p = arr.as_array_ptr();
    // SAFETY: `p` is a live array we just created and nobody else has seen yet.
    unsafe { (*p).fields.flags &= !NPY_ARRAY_WRITEABLE };
}

/// A numeric array-like as float32 samples: (channels, samples, values channel-major).
/// One-dimensional input is one channel. Anything numpy can convert is accepted.
pub fn extract_2d(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    what: &str,
) -> PyResult<(usize, usize, Vec<f32>)> {
    if !crate::python::numpy_available(py) {
        return Err(crate::python::numpy_missing(what));
    }
    let np = py.import("numpy")?;
    let arr = np.call_method1("ascontiguousarray", (obj, np.getattr("float32")?))?;
    let arr = arr.cast_into::<numpy::PyUntypedArray>()?;
    let (c, n) = match arr.ndim() {
        0 => (1, 1),
        1 => (1, arr.shape()[0]),
        2 => (arr.shape()[0], arr.shape()[1]),
        d => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "{what}: expected an array of shape (channels, samples), got {d} dimensions"
            )))
        }
    };
    let flat = arr.cast_into::<numpy::PyArrayDyn<f32>>()?;
    let ro = flat.readonly();
    let vals = ro
        .as_slice()
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("{what}: {e}")))?
        .to_vec();
    Ok((c, n, vals))
}
