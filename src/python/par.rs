//! Custom parameters of Script CHOPs: the model ([`ParSet`]: pages, parameters, values that
//! survive reloads, initial values from the config) and the Python objects `Page`, `ParGroup`,
//! `Par` and the `op.par` collection.
//!
//! Python objects are handles (operator name + parameter name) resolved through the registry in
//! [`super::scope`] on each use, so a `Par` kept in a global follows a reload of the callbacks.

use std::collections::HashMap;

use pyo3::exceptions::{PyAttributeError, PyIndexError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::chop::ParValue;
use crate::config::ParInit;

use super::op::OpHandle;
use super::scope::{self, Shared};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParStyle {
    Float,
    Int,
    Toggle,
    Pulse,
    Menu,
    Str,
}

impl ParStyle {
    pub fn name(self) -> &'static str {
        match self {
            ParStyle::Float => "Float",
            ParStyle::Int => "Int",
            ParStyle::Toggle => "Toggle",
            ParStyle::Pulse => "Pulse",
            ParStyle::Menu => "Menu",
            ParStyle::Str => "Str",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ParDef {
    pub name: String,
    pub label: String,
    pub style: ParStyle,
    pub page: String,
    /// The group it was appended in (`Color` for `Color1`…`Color3`).
    pub group: String,
    pub val: ParValue,
    pub default: ParValue,
    pub min: f64,
    pub max: f64,
    pub clamp_min: bool,
    pub clamp_max: bool,
    pub norm_min: f64,
    pub norm_max: f64,
    pub menu_names: Vec<String>,
    pub menu_labels: Vec<String>,
}

impl ParDef {
    fn new(name: &str, label: &str, style: ParStyle, page: &str, group: &str) -> ParDef {
        let default = match style {
            ParStyle::Menu | ParStyle::Str => ParValue::Str(String::new()),
            _ => ParValue::Float(0.0),
        };
        ParDef {
            name: name.to_string(),
            label: label.to_string(),
            style,
            page: page.to_string(),
            group: group.to_string(),
            val: default.clone(),
            default,
            min: 0.0,
            max: 1.0,
            clamp_min: false,
            clamp_max: false,
            norm_min: 0.0,
            norm_max: 1.0,
            menu_names: Vec::new(),
            menu_labels: Vec::new(),
        }
    }

    /// `v` converted to this parameter's style (clamped, rounded, checked against the menu).
    pub fn coerce(&self, v: &ParValue) -> Result<ParValue, String> {
        let num = |v: &ParValue| -> Result<f64, String> {
            match v {
                ParValue::Float(f) => Ok(*f),
                ParValue::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                    "on" | "true" => Ok(1.0),
                    "off" | "false" => Ok(0.0),
                    t => t.parse::<f64>().map_err(|_| {
                        format!("parameter \"{}\" needs a number, got \"{s}\"", self.name)
                    }),
                },
            }
        };
        Ok(match self.style {
            ParStyle::Float | ParStyle::Int => {
                let mut f = num(v)?;
                if !f.is_finite() {
                    return Err(format!("parameter \"{}\" needs a finite number", self.name));
                }
                if self.style == ParStyle::Int {
                    f = f.round();
                }
                if self.clamp_min && f < self.min {
                    f = self.min;
                }
                if self.clamp_max && f > self.max {
                    f = self.max;
                }
                ParValue::Float(f)
            }
            ParStyle::Toggle => ParValue::Float(if num(v)? != 0.0 { 1.0 } else { 0.0 }),
            ParStyle::Pulse => ParValue::Float(0.0),
            ParStyle::Str => ParValue::Str(match v {
                ParValue::Str(s) => s.clone(),
                ParValue::Float(f) => fmt_num(*f),
            }),
            ParStyle::Menu => {
                let name = match v {
                    ParValue::Str(s) => s.clone(),
                    ParValue::Float(f) => {
                        let i = f.round();
                        match self.menu_names.get(i as usize).filter(|_| i >= 0.0) {
                            Some(n) => n.clone(),
                            None => {
                                return Err(format!(
                                    "menu parameter \"{}\" has no entry {i} (it has {})",
                                    self.name,
                                    self.menu_names.len()
                                ))
                            }
                        }
                    }
                };
                if !self.menu_names.is_empty() && !self.menu_names.contains(&name) {
                    return Err(format!(
                        "menu parameter \"{}\" has no entry \"{name}\" (menuNames: {})",
                        self.name,
                        self.menu_names.join(", ")
                    ));
                }
                ParValue::Str(name)
            }
        })
    }

    pub fn num(&self) -> f64 {
        match &self.val {
            ParValue::Float(f) => *f,
            ParValue::Str(s) => self
                .menu_names
                .iter()
                .position(|n| n == s)
                .map_or_else(|| s.parse().unwrap_or(0.0), |i| i as f64),
        }
    }
}

fn fmt_num(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// Checks a custom parameter name: one capital letter, then lowercase letters and digits.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "custom parameter name \"{name}\" must be one capital letter followed by lowercase \
             letters and digits (like \"Speed\" or \"Gain2\")"
        ))
    }
}

/// The custom parameters of one Script CHOP.
#[derive(Debug, Default)]
pub struct ParSet {
    pages: Vec<String>,
    pars: Vec<ParDef>,
    /// Bumps whenever a value or the set of parameters changes.
    pub version: u64,
    /// Values of parameters that were destroyed (reload, `destroyCustomPars`), restored when a
    /// parameter of that name is created again.
    saved: HashMap<String, ParValue>,
    /// Initial values from the config, by parameter name.
    init: HashMap<String, ParValue>,
}

impl ParSet {
    /// Sets the initial values from the config (`Color = [1, 0, 0]` gives `Color1`…`Color3`).
    pub fn set_init(&mut self, pars: &[(String, ParInit)]) {
        for (name, v) in pars {
            match v {
                ParInit::Float(f) => {
                    self.init.insert(name.clone(), ParValue::Float(*f));
                }
                ParInit::Str(s) => {
                    self.init.insert(name.clone(), ParValue::Str(s.clone()));
                }
                ParInit::Floats(fs) => {
                    for (i, f) in fs.iter().enumerate() {
                        self.init
                            .insert(format!("{name}{}", i + 1), ParValue::Float(*f));
                    }
                }
            }
        }
    }

    /// Config values that name no parameter (reported after `onSetupParameters`).
    pub fn unknown_inits(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .init
            .keys()
            .filter(|k| self.get(k).is_none())
            .cloned()
            .collect();
        v.sort();
        v
    }

    pub fn get(&self, name: &str) -> Option<&ParDef> {
        self.pars.iter().find(|p| p.name == name)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut ParDef> {
        self.pars.iter_mut().find(|p| p.name == name)
    }

    pub fn pars(&self) -> &[ParDef] {
        &self.pars
    }

    pub fn pages(&self) -> &[String] {
        &self.pages
    }

    pub fn add_page(&mut self, name: &str) {
        if !self.pages.iter().any(|p| p == name) {
            self.pages.push(name.to_string());
            self.version += 1;
        }
    }

    /// Appends a parameter group on `page`: `size` parameters named `base1`…`baseN` when
    /// `size` is more than 1, else `base`. An existing parameter of the same name is replaced (`replace`) keeping
    /// its value, or refused. Returns the parameter names.
    pub fn append(
        &mut self,
        page: &str,
        base: &str,
        style: ParStyle,
        label: Option<&str>,
        size: usize,
        replace: bool,
    ) -> Result<Vec<String>, String> {
        check_name(base)?;
        if !(1..=4).contains(&size) {
            return Err(format!("size must be 1 to 4, got {size}"));
        }
        if !self.pages.iter().any(|p| p == page) {
            return Err(format!("page \"{page}\" was destroyed"));
        }
        let names: Vec<String> = if size == 1 {
            vec![base.to_string()]
        } else {
            (1..=size).map(|i| format!("{base}{i}")).collect()
        };
        for n in &names {
            if !replace && self.get(n).is_some() {
                return Err(format!(
                    "parameter \"{n}\" already exists (pass replace=True)"
                ));
            }
        }
        let label = label.unwrap_or(base);
        for n in &names {
            let mut def = ParDef::new(n, label, style, page, base);
            let at = self.pars.iter().position(|p| p.name == *n);
            let keep = at
                .map(|i| self.pars[i].val.clone())
                .or_else(|| self.saved.remove(n))
                .or_else(|| self.init.get(n).cloned());
            if let Some(v) = keep {
                // A value of the wrong kind (the script changed the style) falls back to default.
                if let Ok(v) = def.coerce(&v) {
                    def.val = v;
                }
            }
            // A replaced parameter keeps its place.
            match at {
                Some(i) => self.pars[i] = def,
                None => self.pars.push(def),
            }
        }
        self.version += 1;
        Ok(names)
    }

    /// Sets a value; returns whether it changed.
    pub fn set(&mut self, name: &str, v: &ParValue) -> Result<bool, String> {
        let def = self
            .get_mut(name)
            .ok_or_else(|| format!("no custom parameter \"{name}\""))?;
        let v = def.coerce(v)?;
        if def.val == v {
            return Ok(false);
        }
        def.val = v;
        self.version += 1;
        Ok(true)
    }

    /// Removes every page and parameter, remembering values for parameters created again.
    pub fn destroy_all(&mut self) {
        for p in self.pars.drain(..) {
            self.saved.insert(p.name, p.val);
        }
        self.pages.clear();
        self.version += 1;
    }

    /// Removes one page and its parameters (values remembered).
    pub fn destroy_page(&mut self, page: &str) {
        let (gone, keep): (Vec<ParDef>, Vec<ParDef>) =
            self.pars.drain(..).partition(|p| p.page == page);
        self.pars = keep;
        for p in gone {
            self.saved.insert(p.name, p.val);
        }
        self.pages.retain(|p| p != page);
        self.version += 1;
    }

    /// Runs `f` on a parameter's settings (label, range, menu…), bumping the version.
    pub fn edit<R>(&mut self, name: &str, f: impl FnOnce(&mut ParDef) -> R) -> Result<R, String> {
        let def = self
            .get_mut(name)
            .ok_or_else(|| format!("no custom parameter \"{name}\""))?;
        let r = f(def);
        self.version += 1;
        Ok(r)
    }
}

// ---------------------------------------------------------------------------------------------
// Python objects

fn shared_of(op: &str) -> PyResult<Shared> {
    scope::lookup(op).ok_or_else(|| {
        PyAttributeError::new_err(format!(
            "\"{op}\" has no custom parameters (only Script CHOPs have them)"
        ))
    })
}

fn err(msg: String) -> PyErr {
    PyValueError::new_err(msg)
}

/// Records that the running cook read `shared`'s parameters (when it is another operator).
fn note_read(shared: &Shared) {
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

fn val_to_py<'py>(py: Python<'py>, def: &ParDef, v: &ParValue) -> PyResult<Bound<'py, PyAny>> {
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

    fn value<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
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
    fn label(&self) -> PyResult<String> {
        self.with_def(|d| d.label.clone())
    }

    #[setter]
    fn set_label(&self, v: String) -> PyResult<()> {
        self.edit(|d| d.label = v)
    }

    #[getter]
    fn style(&self) -> PyResult<&'static str> {
        self.with_def(|d| d.style.name())
    }

    #[getter]
    fn page(&self) -> PyResult<Page> {
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
    fn default<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let shared = shared_of(&self.op)?;
        let s = shared.borrow();
        let def = s
            .pars
            .get(&self.name)
            .ok_or_else(|| PyAttributeError::new_err("parameter gone"))?;
        val_to_py(py, def, &def.default)
    }

    #[setter]
    fn set_default(&self, v: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = to_parval(v)?;
        self.edit(|d| d.coerce(&v).map(|v| d.default = v))?
            .map_err(err)
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
        true
    }

    #[getter(menuNames)]
    fn menu_names(&self) -> PyResult<Vec<String>> {
        self.with_def(|d| d.menu_names.clone())
    }
    #[setter(menuNames)]
    fn set_menu_names(&self, v: Vec<String>) -> PyResult<()> {
        self.edit(|d| {
            if d.style == ParStyle::Menu {
                if let ParValue::Str(cur) = &d.val {
                    if !v.contains(cur) {
                        d.val = ParValue::Str(v.first().cloned().unwrap_or_default());
                    }
                }
                if let ParValue::Str(def) = &d.default {
                    if !v.contains(def) {
                        d.default = ParValue::Str(v.first().cloned().unwrap_or_default());
                    }
                }
            }
            d.menu_names = v;
        })
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

/// A group of parameters appended together (`appendFloat('Color', size=3)`); `[0]` is the first.
#[pyclass(frozen, module = "chopd", name = "ParGroup")]
pub struct ParGroup {
    op: String,
    base: String,
    names: Vec<String>,
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
        let items: Vec<Bound<'_, PyAny>> = if v.extract::<String>().is_err() && v.try_iter().is_ok()
        {
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
        for (n, it) in self.names.iter().zip(items) {
            set_value(&self.op, n, &it)?;
        }
        Ok(())
    }

    fn eval<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.val(py)
    }

    fn __repr__(&self) -> String {
        format!("type:ParGroup name:{} owner:/{}", self.base, self.op)
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

    fn __getitem__(&self, name: &str) -> PyResult<Par> {
        self.lookup(name)
    }

    fn __setitem__(&self, name: &str, v: &Bound<'_, PyAny>) -> PyResult<()> {
        set_value(&self.op, name, v)
    }

    fn __contains__(&self, name: &str) -> bool {
        scope::lookup(&self.op).is_some_and(|s| s.borrow().pars.get(name).is_some())
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let names: Vec<String> = scope::lookup(&self.op)
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
        scope::lookup(&self.op)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_touchdesigner_rules() {
        assert!(check_name("Valuea").is_ok());
        assert!(check_name("Gain2").is_ok());
        assert!(check_name("valuea").is_err());
        assert!(check_name("ValueA").is_err());
        assert!(check_name("").is_err());
    }

    #[test]
    fn values_survive_destroy_and_config_inits_apply() {
        let mut set = ParSet::default();
        set.set_init(&[
            ("Speed".into(), ParInit::Float(2.5)),
            ("Color".into(), ParInit::Floats(vec![1.0, 0.5, 0.0])),
            ("Nope".into(), ParInit::Float(1.0)),
        ]);
        set.add_page("Custom");
        set.append("Custom", "Speed", ParStyle::Float, None, 1, true)
            .unwrap();
        let names = set
            .append("Custom", "Color", ParStyle::Float, Some("Colour"), 3, true)
            .unwrap();
        assert_eq!(names, ["Color1", "Color2", "Color3"]);
        assert_eq!(set.get("Speed").unwrap().val, ParValue::Float(2.5));
        assert_eq!(set.get("Color2").unwrap().val, ParValue::Float(0.5));
        assert_eq!(set.unknown_inits(), ["Nope"]);
        assert!(set.set("Speed", &ParValue::Float(7.0)).unwrap());
        assert!(!set.set("Speed", &ParValue::Float(7.0)).unwrap());
        set.destroy_all();
        assert!(set.get("Speed").is_none());
        set.add_page("Custom");
        set.append("Custom", "Speed", ParStyle::Float, None, 1, true)
            .unwrap();
        assert_eq!(
            set.get("Speed").unwrap().val,
            ParValue::Float(7.0),
            "runtime value wins over config"
        );
    }

    #[test]
    fn coercion_by_style() {
        let mut set = ParSet::default();
        set.add_page("P");
        set.append("P", "Count", ParStyle::Int, None, 1, true)
            .unwrap();
        set.append("P", "On", ParStyle::Toggle, None, 1, true)
            .unwrap();
        set.append("P", "Mode", ParStyle::Menu, None, 1, true)
            .unwrap();
        set.edit("Mode", |d| d.menu_names = vec!["sine".into(), "saw".into()])
            .unwrap();
        set.set("Count", &ParValue::Float(2.6)).unwrap();
        assert_eq!(set.get("Count").unwrap().val, ParValue::Float(3.0));
        set.set("On", &ParValue::Str("on".into())).unwrap();
        assert_eq!(set.get("On").unwrap().val, ParValue::Float(1.0));
        set.set("Mode", &ParValue::Float(1.0)).unwrap();
        assert_eq!(set.get("Mode").unwrap().val, ParValue::Str("saw".into()));
        assert!(set.set("Mode", &ParValue::Str("square".into())).is_err());
        set.edit("Count", |d| {
            d.clamp_max = true;
            d.max = 10.0
        })
        .unwrap();
        set.set("Count", &ParValue::Float(99.0)).unwrap();
        assert_eq!(set.get("Count").unwrap().val, ParValue::Float(10.0));
    }
}
