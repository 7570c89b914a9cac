//! The operator object (`scriptOp`, `me`, `op('name')`, `inputs[k]`): a handle naming an
//! operator, resolved through the running scope on each use. Members of every CHOP (channels,
//! statistics, storage, parameters) and the Script CHOP's own members (`appendChan`, `copy`,
//! `copyNumpyArray`, `addError`, custom pages…), which only work on its own output in its cook.

use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::cook::{sanitize_name, ChopData};
use crate::python::registry;
use crate::python::scope::{self, DataRef, Scope};

use super::channel::Channel;
use super::globals::Time;
use super::par::{self, Page, ParCollection};

/// An operator handle.
#[pyclass(frozen, module = "chopd", name = "OP")]
pub struct OpHandle {
    pub name: String,
    /// Cached node index (checked against the name on use).
    pub idx: AtomicUsize,
    /// Input slot of the running operator this handle came from (`inputs[k]`), so an input
    /// resampled for `srselect` is seen resampled.
    pub slot: Option<usize>,
}

impl OpHandle {
    pub fn new(name: &str, slot: Option<usize>) -> OpHandle {
        OpHandle {
            name: name.to_string(),
            idx: AtomicUsize::new(usize::MAX),
            slot,
        }
    }

    pub fn with_index(name: &str, idx: usize, slot: Option<usize>) -> OpHandle {
        let h = OpHandle::new(name, slot);
        h.idx.store(idx, Ordering::Relaxed);
        h
    }

    pub fn target(&self, s: &Scope) -> PyResult<DataRef> {
        s.resolve(&self.name, &self.idx, self.slot)
    }

    /// Reads this operator's channel data (recorded as a dependency of the running cook).
    fn read<R>(&self, f: impl FnOnce(&ChopData) -> R) -> PyResult<R> {
        scope::with(|s| {
            let t = self.target(s)?;
            s.record_read(t);
            Ok(f(s.data(t)?))
        })
    }

    /// Changes this operator's layout (only a Script CHOP's own output in its cook).
    fn layout<R>(
        &self,
        py: Python<'_>,
        what: &str,
        f: impl FnOnce(&mut ChopData) -> R,
    ) -> PyResult<R> {
        scope::with(|s| {
            let t = self.target(s)?;
            s.check_layout(t, what)?;
            s.detach_views(py, t)?;
            Ok(f(s.data_mut(t)?))
        })
    }

    fn channel(&self, t: DataRef, s: &Scope, i: usize) -> PyResult<Channel> {
        let name = s.data(t)?.name(i).to_string();
        Ok(Channel::new(self, i, &name))
    }

    fn matching(&self, patterns: &Bound<'_, PyTuple>, first_only: bool) -> PyResult<Vec<Channel>> {
        let mut pats: Vec<String> = Vec::new();
        for p in patterns.iter() {
            if let Ok(list) = p.cast::<PyList>() {
                for q in list.iter() {
                    pats.push(q.extract()?);
                }
            } else {
                pats.push(p.extract()?);
            }
        }
        let source = pats.join(" ");
        scope::with(|s| {
            let t = self.target(s)?;
            s.record_read(t);
            let data = s.data(t)?;
            let hits: Vec<usize> = if pats.is_empty() {
                (0..data.num_chans()).collect()
            } else {
                registry::with_pattern(&source, |p| {
                    (0..data.num_chans())
                        .filter(|&i| p.matches(data.name(i)))
                        .take(if first_only { 1 } else { usize::MAX })
                        .collect()
                })?
            };
            hits.into_iter().map(|i| self.channel(t, s, i)).collect()
        })
    }

    /// This operator's state while its own `onSetupParameters` runs.
    fn setup_state(&self) -> Option<registry::ScriptState> {
        let own = scope::with(|s| Ok(s.owner_name == self.name)).unwrap_or(false);
        registry::lookup(&self.name).filter(|s| own && s.borrow().pars.setting_up)
    }

    fn set_no_samples(&self, on: bool) {
        if let Some(s) = registry::lookup(&self.name) {
            s.borrow_mut().no_samples = on;
        }
    }

    /// Resizes every channel to `n` samples (kept, new ones 0) on behalf of `what`.
    pub fn set_num_samples_from(&self, py: Python<'_>, what: &str, n: usize) -> PyResult<()> {
        self.resize(py, what, n)
    }

    fn resize(&self, py: Python<'_>, what: &str, n: usize) -> PyResult<()> {
        let old = self.num_samples()?;
        self.layout(py, what, |d| {
            d.set_num_samples(n.max(1));
            let keep = if n == 0 { 0 } else { old };
            for i in 0..d.num_chans() {
                let c = d.chan_mut(i);
                let from = keep.min(c.len());
                c[from..].fill(0.0);
            }
        })?;
        self.set_no_samples(n == 0);
        Ok(())
    }

    fn script_only(&self, what: &str) -> PyResult<()> {
        if registry::lookup(&self.name).is_none() {
            return Err(PyTypeError::new_err(format!(
                "{what} is a Script CHOP member; \"{}\" is not a Script CHOP",
                self.name
            )));
        }
        Ok(())
    }
}

/// Whether `name`'s own view of its output has no samples (`numSamples = 0`); other operators
/// see the one zero sample it publishes.
pub fn no_samples(name: &str, t: DataRef) -> bool {
    t == DataRef::Own && registry::lookup(name).is_some_and(|s| s.borrow().no_samples)
}

/// The trailing run of digits of `name` (`noise12` → 12), as TouchDesigner's `OP.digits`.
pub fn name_digits(name: &str) -> Option<u64> {
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
    name[base.len()..].parse().ok()
}

fn set_layout_num(
    h: &OpHandle,
    py: Python<'_>,
    what: &str,
    f: impl FnOnce(&mut ChopData),
) -> PyResult<()> {
    h.layout(py, what, f)
}

#[pymethods]
impl OpHandle {
    #[getter]
    fn name(&self) -> &str {
        crate::path::leaf(&self.name)
    }

    #[getter]
    fn path(&self) -> String {
        crate::path::td_path(&self.name)
    }

    /// The `n`-th component above this operator (`parent()` is the one it sits in).
    #[pyo3(signature = (n=1))]
    fn parent(&self, py: Python<'_>, n: i64) -> PyResult<Option<Py<PyAny>>> {
        let me = crate::path::Place::Key(self.name.clone());
        match super::comp::ancestor(&me, n) {
            Some(p) => super::comp::object(py, &p),
            None => Ok(None),
        }
    }

    /// `op(path)` from inside this operator: `..` is the network it sits in.
    fn op(&self, py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        super::comp::find(py, &crate::path::Place::Key(self.name.clone()), path)
    }

    #[pyo3(signature = (*patterns))]
    fn ops(&self, py: Python<'_>, patterns: Vec<String>) -> PyResult<Vec<Py<PyAny>>> {
        super::comp::find_all(py, &crate::path::Place::Key(self.name.clone()), &patterns)
    }

    /// A CHOP has no children.
    #[getter]
    fn children(&self) -> Vec<OpHandle> {
        Vec::new()
    }

    #[getter(r#type)]
    fn op_type(&self) -> String {
        let kind = scope::with(|s| {
            let t = self.target(s)?;
            Ok(s.node_state(t)?.kind.to_string())
        })
        .unwrap_or_else(|_| {
            if registry::lookup(&self.name).is_some() {
                "script".into()
            } else {
                String::new()
            }
        });
        format!("{kind}CHOP")
    }

    #[getter]
    fn family(&self) -> &'static str {
        "CHOP"
    }

    #[getter(isCHOP)]
    fn is_chop(&self) -> bool {
        true
    }

    /// True while the operator exists in the running graph.
    #[getter]
    fn valid(&self) -> bool {
        scope::with(|s| self.target(s).map(|_| ())).is_ok()
    }

    #[getter]
    fn inputs(&self) -> PyResult<Vec<OpHandle>> {
        scope::with(|s| {
            let t = self.target(s)?;
            let own = t == DataRef::Own;
            let nodes = s.nodes()?;
            let n = &nodes[s.node_of(t)?];
            Ok(n.inputs
                .iter()
                .enumerate()
                .map(|(k, &i)| OpHandle::with_index(&nodes[i].name, i, own.then_some(k)))
                .collect())
        })
    }

    #[getter(numChans)]
    fn num_chans(&self) -> PyResult<usize> {
        self.read(|d| d.num_chans())
    }

    #[getter(numSamples)]
    fn num_samples(&self) -> PyResult<usize> {
        scope::with(|s| {
            let t = self.target(s)?;
            s.record_read(t);
            let n = s.data(t)?.num_samples();
            Ok(if no_samples(&self.name, t) { 0 } else { n })
        })
    }

    /// Resizes every channel: samples up to the new length are kept, new ones are 0 (scripts
    /// set 0, then grow the length while writing past the old end).
    #[setter(numSamples)]
    fn set_num_samples(&self, py: Python<'_>, n: usize) -> PyResult<()> {
        self.resize(py, "setting numSamples", n)
    }

    #[getter]
    fn rate(&self) -> PyResult<f64> {
        self.read(|d| d.rate)
    }

    #[setter]
    fn set_rate(&self, py: Python<'_>, r: f64) -> PyResult<()> {
        if !(r.is_finite() && r > 0.0) {
            return Err(PyValueError::new_err(format!(
                "rate must be a positive number, got {r}"
            )));
        }
        set_layout_num(self, py, "setting rate", |d| d.rate = r)
    }

    #[getter]
    fn start(&self) -> PyResult<i64> {
        self.read(|d| d.start)
    }

    #[setter]
    fn set_start(&self, py: Python<'_>, v: f64) -> PyResult<()> {
        set_layout_num(self, py, "setting start", |d| d.start = v.round() as i64)
    }

    #[getter]
    fn end(&self) -> PyResult<i64> {
        Ok(self.start()? + self.num_samples()? as i64 - 1)
    }

    #[setter]
    fn set_end(&self, py: Python<'_>, v: f64) -> PyResult<()> {
        let end = v.round() as i64;
        let start = self.read(|d| d.start)?;
        if end < start {
            return Err(PyValueError::new_err(format!(
                "end {end} is before start {start}"
            )));
        }
        self.resize(py, "setting end", (end - start + 1) as usize)
    }

    #[getter(isTimeSlice)]
    fn is_time_slice(&self) -> PyResult<bool> {
        if let Some(on) = self
            .setup_state()
            .and_then(|s| s.borrow().timeslice_request)
        {
            return Ok(on);
        }
        let r = scope::with(|s| {
            let t = self.target(s)?;
            Ok(s.node_state(t)?.timeslice)
        });
        match (r, self.setup_state()) {
            (Err(_), Some(s)) => Ok(s.borrow().timeslice_default),
            (r, _) => r,
        }
    }

    /// Settable in the operator's cook, and in its `onSetupParameters` (applied from its next
    /// cook on), where scripts choose whether they time-slice.
    #[setter(isTimeSlice)]
    fn set_is_time_slice(&self, on: bool) -> PyResult<()> {
        if let Some(s) = self.setup_state() {
            s.borrow_mut().timeslice_request = Some(on);
            return Ok(());
        }
        scope::with(|s| {
            let t = self.target(s)?;
            s.check_layout(t, "setting isTimeSlice")?;
            s.set_own_timeslice(on)
        })
    }

    /// The last run of digits in the name (`noise12` → 12), None without.
    #[getter]
    fn digits(&self) -> Option<u64> {
        name_digits(crate::path::leaf(&self.name))
    }

    /// The name without its trailing digits (`noise12` → `noise`).
    #[getter]
    fn base(&self) -> &str {
        crate::path::leaf(&self.name).trim_end_matches(|c: char| c.is_ascii_digit())
    }

    #[getter]
    fn id(&self) -> u64 {
        registry::op_id(&self.name)
    }

    #[getter(parGroup)]
    fn par_group(&self) -> super::pargroup::ParGroupCollection {
        super::pargroup::ParGroupCollection {
            op: self.name.clone(),
        }
    }

    #[getter(timeSliceDefault)]
    fn time_slice_default(&self) -> PyResult<bool> {
        self.script_only("timeSliceDefault")?;
        Ok(registry::lookup(&self.name).is_some_and(|s| s.borrow().timeslice_default))
    }

    #[pyo3(signature = (*patterns))]
    fn chan(&self, patterns: &Bound<'_, PyTuple>) -> PyResult<Option<Channel>> {
        Ok(self.matching(patterns, true)?.into_iter().next())
    }

    #[pyo3(signature = (*patterns))]
    fn chans(&self, patterns: &Bound<'_, PyTuple>) -> PyResult<Vec<Channel>> {
        self.matching(patterns, false)
    }

    /// `op['name']` (exact) or `op[index]`; `None` when absent.
    fn __getitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<Option<Channel>> {
        let by_index = if key.extract::<String>().is_ok() {
            None
        } else {
            Some(key.extract::<isize>()?)
        };
        let name = if by_index.is_none() {
            Some(key.extract::<String>()?)
        } else {
            None
        };
        scope::with(|s| {
            let t = self.target(s)?;
            s.record_read(t);
            let data = s.data(t)?;
            let i = match (by_index, &name) {
                (Some(i), _) => {
                    let n = data.num_chans() as isize;
                    let j = if i < 0 { i + n } else { i };
                    (0..n).contains(&j).then_some(j as usize)
                }
                (None, Some(name)) => data.index_of(name),
                (None, None) => None,
            };
            i.map(|i| self.channel(t, s, i)).transpose()
        })
    }

    fn __len__(&self) -> PyResult<usize> {
        self.read(|d| d.num_chans())
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let empty = PyTuple::empty(py);
        PyList::new(py, self.matching(&empty, false)?)?
            .try_iter()
            .map(Bound::into_any)
    }

    /// All channels as a float32 array of shape (channels, samples), over the channel memory
    /// itself (writable only on a Script CHOP's own output in its cook).
    #[pyo3(name = "numpyArray")]
    fn numpy_array<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        scope::with(|s| {
            let t = self.target(s)?;
            s.record_read(t);
            let writable = t == DataRef::Own && s.check_write(t, "numpyArray").is_ok();
            super::numpy::chop_view(py, s, t, writable)
        })
    }

    #[getter]
    fn par(&self) -> ParCollection {
        ParCollection {
            op: self.name.clone(),
        }
    }

    #[getter]
    fn time(&self) -> Time {
        Time {
            owner: self.name.clone(),
        }
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

    /// A stored value, else `default` (None is a default like any other), else KeyError.
    #[pyo3(signature = (key, *default, search=true, storeDefault=false, **kwargs))]
    #[allow(non_snake_case)]
    fn fetch<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: &Bound<'py, PyTuple>,
        search: bool,
        storeDefault: bool,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if default.len() > 1 {
            return Err(PyTypeError::new_err(
                "fetch() takes a key and at most one default",
            ));
        }
        let mut given = default.iter().next();
        if let Some(kw) = kwargs {
            for (k, v) in kw.iter() {
                if k.extract::<String>()? != "default" || given.is_some() {
                    return Err(PyTypeError::new_err(format!(
                        "fetch() got an unexpected keyword argument {}",
                        k.repr()?
                    )));
                }
                given = Some(v);
            }
        }
        let chain = super::comp::storage_chain(&self.name);
        super::comp::fetch_or(py, &chain, search, storeDefault, key, given)
    }

    fn unstore(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        super::comp::unstore_in(&registry::storage(py, &self.name), key)
    }

    #[getter(totalCooks)]
    fn total_cooks(&self) -> PyResult<u64> {
        scope::with(|s| {
            let t = self.target(s)?;
            Ok(s.stats(t)?.total_cooks)
        })
    }

    #[getter(cookFrame)]
    fn cook_frame(&self) -> PyResult<i64> {
        scope::with(|s| {
            let t = self.target(s)?;
            Ok(s.stats(t)?.cook_frame)
        })
    }

    #[getter(cookAbsFrame)]
    fn cook_abs_frame(&self) -> PyResult<i64> {
        self.cook_frame()
    }

    #[getter(cookTime)]
    fn cook_time(&self) -> PyResult<f64> {
        scope::with(|s| {
            let t = self.target(s)?;
            Ok(s.stats(t)?.cook_time_ms)
        })
    }

    /// Frame-dependent, so reading it makes the reader cook every frame.
    #[getter(cookedThisFrame)]
    fn cooked_this_frame(&self) -> PyResult<bool> {
        scope::with(|s| {
            let t = self.target(s)?;
            if t == DataRef::Own {
                return Ok(s.in_cook || s.stats(t)?.cooked_this_frame);
            }
            s.record_time();
            Ok(s.stats(t)?.cooked_this_frame)
        })
    }

    /// The errors of the last cook, as text (`''` when none).
    #[pyo3(signature = (recurse=false))]
    fn errors(&self, recurse: bool) -> PyResult<String> {
        let _ = recurse;
        scope::with(|s| {
            let t = self.target(s)?;
            let mut msgs: Vec<String> = Vec::new();
            if t == DataRef::Own {
                msgs.extend(s.errors.iter().cloned());
            }
            if msgs.is_empty() {
                msgs.extend(s.stats(t)?.last_error.clone());
            }
            Ok(msgs.join("\n"))
        })
    }

    #[pyo3(signature = (recurse=false))]
    fn warnings(&self, recurse: bool) -> PyResult<String> {
        let _ = recurse;
        scope::with(|s| {
            let t = self.target(s)?;
            Ok(if t == DataRef::Own {
                s.warnings.join("\n")
            } else {
                String::new()
            })
        })
    }

    // --- Script CHOP members (own output, in its cook) ---------------------------------------

    /// Removes every channel; keeps rate, start and length.
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        self.layout(py, "clear()", ChopData::clear)
    }

    #[pyo3(name = "appendChan")]
    fn append_chan(&self, py: Python<'_>, name: &str) -> PyResult<Channel> {
        let name = sanitize_name(name);
        let i = self.layout(py, "appendChan()", |d| d.append_chan(&name))?;
        Ok(Channel::new(self, i, &name))
    }

    /// Makes this operator's channels, rate, start and length a copy of `chop`'s.
    fn copy(&self, py: Python<'_>, chop: &Bound<'_, OpHandle>) -> PyResult<()> {
        let src_h = chop.get();
        scope::with(|s| {
            let t = self.target(s)?;
            s.check_layout(t, "copy()")?;
            let src_t = src_h.target(s)?;
            if src_t == t {
                return Ok(());
            }
            s.record_read(src_t);
            s.detach_views(py, t)?;
            let src: *const ChopData = s.data(src_t)?;
            let dst = s.data_mut(t)?;
            // SAFETY: `src_t != t`, so `src` is another operator's output (or a resampled input)
            // and does not alias `dst`, the running operator's output.
            dst.copy_from(unsafe { &*src });
            Ok(())
        })?;
        self.set_no_samples(false);
        Ok(())
    }

    /// Copies a (channels, samples) array into this operator's channels: the length becomes
    /// the array's, existing channels keep their names, new ones are `baseName1`, `baseName2`…
    #[pyo3(name = "copyNumpyArray", signature = (array, baseName="chan"))]
    #[allow(non_snake_case)]
    fn copy_numpy_array(
        &self,
        py: Python<'_>,
        array: &Bound<'_, PyAny>,
        baseName: &str,
    ) -> PyResult<()> {
        let (c, n, vals) = super::numpy::extract_2d(py, array, "copyNumpyArray()")?;
        let base = sanitize_name(baseName);
        self.layout(py, "copyNumpyArray()", |d| {
            d.set_num_samples(n);
            while d.num_chans() > c {
                d.remove_chan(d.num_chans() - 1);
            }
            for i in d.num_chans()..c {
                d.append_chan(&format!("{base}{}", i + 1));
            }
            d.samples_mut().copy_from_slice(&vals);
        })?;
        self.set_no_samples(false);
        Ok(())
    }

    #[pyo3(name = "addError")]
    fn add_error(&self, msg: String) -> PyResult<()> {
        self.script_only("addError")?;
        scope::with(|s| {
            s.errors.push(msg);
            Ok(())
        })
    }

    #[pyo3(name = "addWarning")]
    fn add_warning(&self, msg: String) -> PyResult<()> {
        self.script_only("addWarning")?;
        scope::with(|s| {
            s.warnings.push(msg);
            Ok(())
        })
    }

    #[pyo3(name = "appendCustomPage")]
    fn append_custom_page(&self, name: &str) -> PyResult<Page> {
        self.script_only("appendCustomPage")?;
        par::append_page(&self.name, name)
    }

    #[pyo3(name = "destroyCustomPars")]
    fn destroy_custom_pars(&self) -> PyResult<()> {
        self.script_only("destroyCustomPars")?;
        par::destroy_all(&self.name)
    }

    #[getter(customPages)]
    fn custom_pages(&self) -> PyResult<Vec<Page>> {
        if registry::lookup(&self.name).is_none() {
            return Ok(Vec::new());
        }
        par::pages(&self.name)
    }

    /// `pars(*patterns)`: its parameters whose names match (every one without a pattern).
    #[pyo3(signature = (*patterns))]
    fn pars(&self, patterns: Vec<String>) -> PyResult<Vec<par::Par>> {
        let Some(shared) = registry::lookup(&self.name) else {
            return Ok(Vec::new());
        };
        let names: Vec<String> = shared
            .borrow()
            .pars
            .pars()
            .iter()
            .map(|p| p.name.clone())
            .collect();
        let source = if patterns.is_empty() {
            "*".to_string()
        } else {
            patterns.join(" ")
        };
        registry::with_pattern(&source, |p| {
            names
                .iter()
                .filter(|n| p.matches(n))
                .map(|n| par::Par::new(&self.name, n))
                .collect()
        })
    }

    /// `cook(force=False, recurse=False)`: chopd cooks every operator that needs it each
    /// frame, upstream first, so an operator asked for is already current; `force=True` on a
    /// Script CHOP makes it cook on the next frame even if nothing it read changed.
    #[pyo3(signature = (force=false, recurse=false))]
    fn cook(&self, force: bool, recurse: bool) {
        let _ = recurse;
        if force {
            if let Some(s) = registry::lookup(&self.name) {
                s.borrow_mut().cook_request = true;
            }
        }
    }

    #[getter(customPars)]
    fn custom_pars(&self) -> Vec<par::Par> {
        registry::lookup(&self.name)
            .map(|s| {
                s.borrow()
                    .pars
                    .pars()
                    .iter()
                    // A native kind's built-in parameters (lowercase names) are not custom.
                    .filter(|p| crate::cook::par::check_name(&p.name).is_ok())
                    .map(|p| par::Par::new(&self.name, &p.name))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn __repr__(&self) -> String {
        format!(
            "{}(path='{}')",
            self.op_type(),
            crate::path::td_path(&self.name)
        )
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<OpHandle>()
            .is_ok_and(|o| o.get().name == self.name)
    }

    fn __hash__(&self) -> u64 {
        super::comp::hash_path(&self.name)
    }
}
