//! The Python objects over a Script CHOP's custom parameters: `Page`, `ParGroup`, `Par` and
//! the `op.par` collection. The parameters themselves (values, styles, clamping, menus) are data
//! in [`crate::python::pars`].
//!
//! Python objects are handles (operator name + parameter name) resolved through
//! [`crate::python::registry`] on each use, so a `Par` kept in a global follows a reload of the
//! callbacks.

use pyo3::exceptions::{PyAttributeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::cook::par::{fmt_num, ParDef, ParStyle};
use crate::cook::ParValue;
use crate::python::registry::{self, ScriptState};
use crate::python::scope;

use super::op::OpHandle;
use super::pargroup::{group_of, ParGroup};

pub(super) fn shared_of(op: &str) -> PyResult<ScriptState> {
    registry::lookup(op).ok_or_else(|| {
        PyAttributeError::new_err(format!(
            "\"{op}\" has no custom parameters (only Script CHOPs have them)"
        ))
    })
}

pub(super) fn err(msg: String) -> PyErr {
    PyValueError::new_err(msg)
}

/// Records that the running cook read `shared`'s parameters (when it is another operator).
pub(super) fn note_read(shared: &ScriptState) {
    let (name, version) = {
        let s = shared.borrow();
        (s.name.clone(), s.pars.version)
    };
    let _ = scope::with(|sc| {
        if sc.recording && sc.owner_name != name {
            sc.deps.note_pars(shared, version);
        }
        Ok(())
    });
}

/// A Python value as a parameter value.
pub fn to_parval(v: &Bound<'_, PyAny>) -> PyResult<ParValue> {
    if let Ok(p) = v.cast::<Par>() {
        let p = p.get();
        let shared = shared_of(&p.op)?;
        let s = shared.borrow();
        return Ok(s
            .pars
            .get(&p.name)
            .map(|d| d.val.clone())
            .unwrap_or(ParValue::Float(0.0)));
    }
    if let Ok(s) = v.extract::<String>() {
        return Ok(ParValue::Str(s));
    }
    if let Ok(f) = v.extract::<f64>() {
        return Ok(ParValue::Float(f));
    }
    Err(PyTypeError::new_err(format!(
        "a parameter value must be a number, a bool or a string, not {}",
        v.get_type().name()?
    )))
}

pub(super) fn val_to_py<'py>(
    py: Python<'py>,
    def: &ParDef,
    v: &ParValue,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(match (def.style, v) {
        (ParStyle::Toggle | ParStyle::Pulse, ParValue::Float(f)) => {
            (*f != 0.0).into_pyobject(py)?.to_owned().into_any()
        }
        (ParStyle::Int, ParValue::Float(f)) => (*f as i64).into_pyobject(py)?.into_any(),
        (_, ParValue::Float(f)) => f.into_pyobject(py)?.into_any(),
        (_, ParValue::Str(s)) => s.into_pyobject(py)?.into_any(),
    })
}

/// One custom parameter (`op.par.Speed`).
#[pyclass(frozen, module = "chopd", name = "Par")]
pub struct Par {
    pub op: String,
    pub name: String,
}

impl Par {
    pub fn new(op: &str, name: &str) -> Par {
        Par {
            op: op.to_string(),
            name: name.to_string(),
        }
    }

    fn with_def<R>(&self, f: impl FnOnce(&ParDef) -> R) -> PyResult<R> {
        let shared = shared_of(&self.op)?;
        note_read(&shared);
        let s = shared.borrow();
        let def = s.pars.get(&self.name).ok_or_else(|| {
            PyAttributeError::new_err(format!(
                "\"{}\" no longer has a parameter \"{}\"",
                self.op, self.name
            ))
        })?;
        Ok(f(def))
    }

    fn edit<R>(&self, f: impl FnOnce(&mut ParDef) -> R) -> PyResult<R> {
        let shared = shared_of(&self.op)?;
        let mut s = shared.borrow_mut();
        s.pars.edit(&self.name, f).map_err(err)
    }

    pub(super) fn value<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let shared = shared_of(&self.op)?;
        note_read(&shared);
        let s = shared.borrow();
        let def = s.pars.get(&self.name).ok_or_else(|| {
            PyAttributeError::new_err(format!(
                "\"{}\" no longer has a parameter \"{}\"",
                self.op, self.name
            ))
        })?;
        val_to_py(py, def, &def.val)
    }

    fn number(&self) -> PyResult<f64> {
        self.with_def(|d| d.num())
    }
}

/// Sets a parameter of `op` from Python.
pub fn set_value(op: &str, name: &str, v: &Bound<'_, PyAny>) -> PyResult<()> {
    let v = to_parval(v)?;
    let shared = shared_of(op)?;
    let mut s = shared.borrow_mut();
    if s.pars.get(name).is_none() {
        return Err(PyAttributeError::new_err(format!(
            "\"{op}\" has no parameter \"{name}\""
        )));
    }
    s.pars.set(name, &v).map_err(err)?;
    Ok(())
}

/// Pushes pulse parameter `name` of `op`: runs its `onPulse` now when `op` is the operator whose
/// callback is running, else at that operator's next cook.
pub fn pulse(py: Python<'_>, op: &str, name: &str) -> PyResult<()> {
    let shared = shared_of(op)?;
    {
        let s = shared.borrow();
        match s.pars.get(name) {
            Some(d) if d.style == ParStyle::Pulse => {}
            Some(_) => {
                return Err(err(format!(
                    "parameter \"{name}\" of \"{op}\" is not a pulse"
                )))
            }
            None => {
                return Err(PyAttributeError::new_err(format!(
                    "\"{op}\" has no parameter \"{name}\""
                )))
            }
        }
    }
    let own = scope::with(|s| Ok(s.owner_name == op && s.has_graph())).unwrap_or(false);
    if !own {
        shared.borrow_mut().pending_pulses.push(name.to_string());
        return Ok(());
    }
    let Some(cb) = shared.borrow().on_pulse.as_ref().map(|c| c.clone_ref(py)) else {
        return Ok(());
    };
    let saved = scope::with(|s| {
        let saved = (s.in_cook, s.recording);
        s.in_cook = false;
        s.recording = false;
        Ok(saved)
    })?;
    let r = cb.call1(py, (Par::new(op, name),));
    scope::with(|s| {
        (s.in_cook, s.recording) = saved;
        Ok(())
    })?;
    r.map(drop)
}

#[pymethods]
impl Par {
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    #[getter]
    fn owner(&self) -> OpHandle {
        OpHandle::new(&self.op, None)
    }

    #[getter]
    pub(super) fn label(&self) -> PyResult<String> {
        self.with_def(|d| d.label.clone())
    }

    #[setter]
    fn set_label(&self, v: String) -> PyResult<()> {
        self.edit(|d| d.label = v)
    }

    #[getter]
    pub(super) fn style(&self) -> PyResult<&'static str> {
        self.with_def(|d| d.style.name())
    }

    #[getter]
    pub(super) fn page(&self) -> PyResult<Page> {
        let page = self.with_def(|d| d.page.clone())?;
        Ok(Page {
            op: self.op.clone(),
            name: page,
        })
    }

    #[getter]
    fn val<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.value(py)
    }

    #[setter]
    fn set_val(&self, v: &Bound<'_, PyAny>) -> PyResult<()> {
        set_value(&self.op, &self.name, v)
    }

    fn eval<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.value(py)
    }

    #[getter]
    pub(super) fn default<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let shared = shared_of(&self.op)?;
        let s = shared.borrow();
        let def = s
            .pars
            .get(&self.name)
            .ok_or_else(|| PyAttributeError::new_err("parameter gone"))?;
        val_to_py(py, def, &def.default)
    }

    #[setter]
    pub(super) fn set_default(&self, v: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = to_parval(v)?;
        self.edit(|d| d.set_default(&v))?.map_err(err)
    }

    #[getter(startSection)]
    pub(super) fn start_section(&self) -> PyResult<bool> {
        self.with_def(|d| d.start_section)
    }
    #[setter(startSection)]
    pub(super) fn set_start_section(&self, v: bool) -> PyResult<()> {
        self.edit(|d| d.start_section = v)
    }

    #[getter(isDefault)]
    fn is_default(&self) -> PyResult<bool> {
        self.with_def(|d| d.val == d.default)
    }

    #[getter]
    fn valid(&self) -> bool {
        registry::lookup(&self.op).is_some_and(|s| s.borrow().pars.get(&self.name).is_some())
    }

    /// The group it belongs to (`Color` for `Color2`).
    #[getter(parGroup)]
    fn par_group(&self) -> PyResult<ParGroup> {
        let group = self.with_def(|d| d.group.clone())?;
        group_of(&self.op, &group)
            .ok_or_else(|| PyAttributeError::new_err(format!("no parameter group \"{group}\"")))
    }

    #[getter]
    fn min(&self) -> PyResult<f64> {
        self.with_def(|d| d.min)
    }
    #[setter]
    fn set_min(&self, v: f64) -> PyResult<()> {
        self.edit(|d| d.min = v)
    }
    #[getter]
    fn max(&self) -> PyResult<f64> {
        self.with_def(|d| d.max)
    }
    #[setter]
    fn set_max(&self, v: f64) -> PyResult<()> {
        self.edit(|d| d.max = v)
    }
    #[getter(clampMin)]
    fn clamp_min(&self) -> PyResult<bool> {
        self.with_def(|d| d.clamp_min)
    }
    #[setter(clampMin)]
    fn set_clamp_min(&self, v: bool) -> PyResult<()> {
        self.edit(|d| d.clamp_min = v)
    }
    #[getter(clampMax)]
    fn clamp_max(&self) -> PyResult<bool> {
        self.with_def(|d| d.clamp_max)
    }
    #[setter(clampMax)]
    fn set_clamp_max(&self, v: bool) -> PyResult<()> {
        self.edit(|d| d.clamp_max = v)
    }
    #[getter(normMin)]
    fn norm_min(&self) -> PyResult<f64> {
        self.with_def(|d| d.norm_min)
    }
    #[setter(normMin)]
    fn set_norm_min(&self, v: f64) -> PyResult<()> {
        self.edit(|d| d.norm_min = v)
    }
    #[getter(normMax)]
    fn norm_max(&self) -> PyResult<f64> {
        self.with_def(|d| d.norm_max)
    }
    #[setter(normMax)]
    fn set_norm_max(&self, v: f64) -> PyResult<()> {
        self.edit(|d| d.norm_max = v)
    }

    #[getter(isPulse)]
    fn is_pulse(&self) -> PyResult<bool> {
        self.with_def(|d| d.style == ParStyle::Pulse)
    }
    #[getter(isMenu)]
    fn is_menu(&self) -> PyResult<bool> {
        self.with_def(|d| d.style == ParStyle::Menu)
    }
    #[getter(isToggle)]
    fn is_toggle(&self) -> PyResult<bool> {
        self.with_def(|d| d.style == ParStyle::Toggle)
    }
    #[getter(isString)]
    fn is_string(&self) -> PyResult<bool> {
        self.with_def(|d| d.style == ParStyle::Str)
    }
    #[getter(isNumber)]
    fn is_number(&self) -> PyResult<bool> {
        self.with_def(|d| matches!(d.style, ParStyle::Float | ParStyle::Int))
    }
    #[getter(isFloat)]
    fn is_float(&self) -> PyResult<bool> {
        self.with_def(|d| d.style == ParStyle::Float)
    }
    #[getter(isInt)]
    fn is_int(&self) -> PyResult<bool> {
        self.with_def(|d| d.style == ParStyle::Int)
    }
    #[getter(isCustom)]
    fn is_custom(&self) -> bool {
        // Custom names start with a capital; a native kind's built-in ones are lowercase.
        crate::cook::par::check_name(&self.name).is_ok()
    }

    #[getter(menuNames)]
    fn menu_names(&self) -> PyResult<Vec<String>> {
        self.with_def(|d| d.menu_names.clone())
    }
    #[setter(menuNames)]
    fn set_menu_names(&self, v: Vec<String>) -> PyResult<()> {
        self.edit(|d| d.set_menu_names(v))
    }
    #[getter(menuLabels)]
    fn menu_labels(&self) -> PyResult<Vec<String>> {
        self.with_def(|d| d.menu_labels.clone())
    }
    #[setter(menuLabels)]
    fn set_menu_labels(&self, v: Vec<String>) -> PyResult<()> {
        self.edit(|d| d.menu_labels = v)
    }
    #[getter(menuIndex)]
    fn menu_index(&self) -> PyResult<f64> {
        self.number()
    }
    #[setter(menuIndex)]
    fn set_menu_index(&self, v: f64) -> PyResult<()> {
        let shared = shared_of(&self.op)?;
        let r = shared
            .borrow_mut()
            .pars
            .set(&self.name, &ParValue::Float(v));
        r.map(drop).map_err(err)
    }

    fn pulse(&self, py: Python<'_>) -> PyResult<()> {
        pulse(py, &self.op, &self.name)
    }

    fn __float__(&self) -> PyResult<f64> {
        self.number()
    }
    fn __int__(&self) -> PyResult<i64> {
        Ok(self.number()? as i64)
    }
    fn __bool__(&self) -> PyResult<bool> {
        self.with_def(|d| match &d.val {
            ParValue::Float(f) => *f != 0.0,
            ParValue::Str(s) => !s.is_empty(),
        })
    }
    fn __str__(&self) -> PyResult<String> {
        self.with_def(|d| match &d.val {
            ParValue::Float(f) if d.style == ParStyle::Float => format!("{f}"),
            ParValue::Float(f) => fmt_num(*f),
            ParValue::Str(s) => s.clone(),
        })
    }
    fn __repr__(&self) -> String {
        format!("type:Par name:{} owner:/{}", self.name, self.op)
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.value(py)?.eq(other)
    }
    fn __ne__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(!self.value(py)?.eq(other)?)
    }
    fn __lt__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.value(py)?.lt(other)
    }
    fn __le__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.value(py)?.le(other)
    }
    fn __gt__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.value(py)?.gt(other)
    }
    fn __ge__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.value(py)?.ge(other)
    }
    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&self.op, &self.name).hash(&mut h);
        h.finish()
    }

    fn __add__<'py>(&self, py: Python<'py>, o: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.value(py)?.add(o)
    }
    fn __radd__<'py>(&self, py: Python<'py>, o: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        o.add(self.value(py)?)
    }
    fn __sub__<'py>(&self, py: Python<'py>, o: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.value(py)?.sub(o)
    }
    fn __rsub__<'py>(&self, py: Python<'py>, o: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        o.sub(self.value(py)?)
    }
    fn __mul__<'py>(&self, py: Python<'py>, o: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.value(py)?.mul(o)
    }
    fn __rmul__<'py>(&self, py: Python<'py>, o: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        o.mul(self.value(py)?)
    }
    fn __truediv__<'py>(
        &self,
        py: Python<'py>,
        o: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.value(py)?.div(o)
    }
    fn __rtruediv__<'py>(
        &self,
        py: Python<'py>,
        o: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        o.div(self.value(py)?)
    }
    fn __neg__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.value(py)?.neg()
    }
}

/// A custom parameter page (`scriptOp.appendCustomPage('Custom')`).
#[pyclass(frozen, module = "chopd", name = "Page")]
pub struct Page {
    pub op: String,
    pub name: String,
}

impl Page {
    fn append(
        &self,
        base: &str,
        style: ParStyle,
        label: Option<&str>,
        size: usize,
        replace: bool,
    ) -> PyResult<ParGroup> {
        own_op_only(&self.op, "appending parameters")?;
        let shared = shared_of(&self.op)?;
        let names = shared
            .borrow_mut()
            .pars
            .append(&self.name, base, style, label, size, replace)
            .map_err(err)?;
        Ok(ParGroup {
            op: self.op.clone(),
            base: base.to_string(),
            names,
        })
    }
}

/// Custom parameters may only be created by the operator's own callbacks.
fn own_op_only(op: &str, what: &str) -> PyResult<()> {
    let owner = scope::with(|s| Ok(s.owner_name.clone()))?;
    if owner != op {
        return Err(pyo3::exceptions::PyPermissionError::new_err(format!(
            "{what}: only \"{op}\"'s own callbacks can change its custom parameters"
        )));
    }
    Ok(())
}

#[pymethods]
impl Page {
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    #[getter]
    fn owner(&self) -> OpHandle {
        OpHandle::new(&self.op, None)
    }

    #[getter]
    fn pars(&self) -> PyResult<Vec<Par>> {
        let shared = shared_of(&self.op)?;
        let s = shared.borrow();
        Ok(s.pars
            .pars()
            .iter()
            .filter(|p| p.page == self.name)
            .map(|p| Par::new(&self.op, &p.name))
            .collect())
    }

    #[pyo3(signature = (name, label=None, size=1, order=None, replace=true))]
    #[allow(non_snake_case)]
    fn appendFloat(
        &self,
        name: &str,
        label: Option<&str>,
        size: usize,
        order: Option<i64>,
        replace: bool,
    ) -> PyResult<ParGroup> {
        let _ = order;
        self.append(name, ParStyle::Float, label, size, replace)
    }

    #[pyo3(signature = (name, label=None, size=1, order=None, replace=true))]
    #[allow(non_snake_case)]
    fn appendInt(
        &self,
        name: &str,
        label: Option<&str>,
        size: usize,
        order: Option<i64>,
        replace: bool,
    ) -> PyResult<ParGroup> {
        let _ = order;
        self.append(name, ParStyle::Int, label, size, replace)
    }

    #[pyo3(signature = (name, label=None, order=None, replace=true))]
    #[allow(non_snake_case)]
    fn appendToggle(
        &self,
        name: &str,
        label: Option<&str>,
        order: Option<i64>,
        replace: bool,
    ) -> PyResult<ParGroup> {
        let _ = order;
        self.append(name, ParStyle::Toggle, label, 1, replace)
    }

    #[pyo3(signature = (name, label=None, order=None, replace=true))]
    #[allow(non_snake_case)]
    fn appendPulse(
        &self,
        name: &str,
        label: Option<&str>,
        order: Option<i64>,
        replace: bool,
    ) -> PyResult<ParGroup> {
        let _ = order;
        self.append(name, ParStyle::Pulse, label, 1, replace)
    }

    #[pyo3(signature = (name, label=None, order=None, replace=true))]
    #[allow(non_snake_case)]
    fn appendMenu(
        &self,
        name: &str,
        label: Option<&str>,
        order: Option<i64>,
        replace: bool,
    ) -> PyResult<ParGroup> {
        let _ = order;
        self.append(name, ParStyle::Menu, label, 1, replace)
    }

    #[pyo3(signature = (name, label=None, order=None, replace=true))]
    #[allow(non_snake_case)]
    fn appendStr(
        &self,
        name: &str,
        label: Option<&str>,
        order: Option<i64>,
        replace: bool,
    ) -> PyResult<ParGroup> {
        let _ = order;
        self.append(name, ParStyle::Str, label, 1, replace)
    }

    fn destroy(&self) -> PyResult<()> {
        own_op_only(&self.op, "destroying a page")?;
        shared_of(&self.op)?
            .borrow_mut()
            .pars
            .destroy_page(&self.name);
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!("type:Page name:{} owner:/{}", self.name, self.op)
    }
}

/// Creates (or finds) page `name` of `op`.
pub fn append_page(op: &str, name: &str) -> PyResult<Page> {
    own_op_only(op, "appendCustomPage")?;
    shared_of(op)?.borrow_mut().pars.add_page(name);
    Ok(Page {
        op: op.to_string(),
        name: name.to_string(),
    })
}

pub fn pages(op: &str) -> PyResult<Vec<Page>> {
    let shared = shared_of(op)?;
    let s = shared.borrow();
    Ok(s.pars
        .pages()
        .iter()
        .map(|p| Page {
            op: op.to_string(),
            name: p.clone(),
        })
        .collect())
}

pub fn destroy_all(op: &str) -> PyResult<()> {
    own_op_only(op, "destroyCustomPars")?;
    shared_of(op)?.borrow_mut().pars.destroy_all();
    Ok(())
}

/// `op.par`: parameters by attribute (`op.par.Speed`, `op.par.Speed = 2`).
#[pyclass(frozen, module = "chopd", name = "ParCollection")]
pub struct ParCollection {
    pub op: String,
}

impl ParCollection {
    fn lookup(&self, name: &str) -> PyResult<Par> {
        let shared = shared_of(&self.op)?;
        let exists = shared.borrow().pars.get(name).is_some();
        if exists {
            Ok(Par::new(&self.op, name))
        } else {
            Err(PyAttributeError::new_err(format!(
                "\"{}\" has no parameter \"{name}\"",
                self.op
            )))
        }
    }
}

#[pymethods]
impl ParCollection {
    fn __getattr__(&self, name: &str) -> PyResult<Par> {
        self.lookup(name)
    }

    fn __setattr__(&self, name: &str, v: &Bound<'_, PyAny>) -> PyResult<()> {
        set_value(&self.op, name, v)
    }

    /// None when absent, as TouchDesigner's `par['Name']` (attribute access raises).
    fn __getitem__(&self, name: &str) -> Option<Par> {
        self.lookup(name).ok()
    }

    fn __setitem__(&self, name: &str, v: &Bound<'_, PyAny>) -> PyResult<()> {
        set_value(&self.op, name, v)
    }

    fn __contains__(&self, name: &str) -> bool {
        registry::lookup(&self.op).is_some_and(|s| s.borrow().pars.get(name).is_some())
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let names: Vec<String> = registry::lookup(&self.op)
            .map(|s| {
                s.borrow()
                    .pars
                    .pars()
                    .iter()
                    .map(|p| p.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        PyList::new(py, names.iter().map(|n| Par::new(&self.op, n)))?
            .try_iter()
            .map(Bound::into_any)
    }

    fn __dir__(&self) -> Vec<String> {
        registry::lookup(&self.op)
            .map(|s| {
                s.borrow()
                    .pars
                    .pars()
                    .iter()
                    .map(|p| p.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn __repr__(&self) -> String {
        format!("type:ParCollection owner:/{}", self.op)
    }
}
