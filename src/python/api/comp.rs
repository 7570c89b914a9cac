//! The network as Python sees it: components (`COMP`: `/`, `/project1` and every `base`
//! operator), finding operators by TouchDesigner path (`op('../x')`, `parent(2)`, `ops('lag*')`),
//! the shortcut finders (`op.Name`, `parent.Name`, `iop.Name`, `ipar.Name`), extensions, and `me`
//! (the callbacks file, a text DAT beside its Script CHOP).
//!
//! Every finder resolves from a *network*: the component a module's code sits in. A callbacks
//! module's finders are bound to its Script CHOP's network, an extension's expression to its
//! component; `td.op` (shared by every module that imports `td`) follows the script that is
//! running.

use pyo3::exceptions::{PyAttributeError, PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::path::{leaf, parent_key, resolve, td_path, Place};
use crate::python::registry;
use crate::python::scope;

use super::globals::Time;
use super::op::{name_digits, OpHandle};
use super::par::ParCollection;

/// The network the running code sits in: `fixed`, else the running script's.
pub fn network(fixed: &Option<Place>) -> Place {
    fixed.clone().unwrap_or_else(|| {
        scope::with(|s| Ok(Place::Key(parent_key(&s.owner_name).to_string())))
            .unwrap_or(Place::Key(String::new()))
    })
}

/// Whether `key` names an operator now: a graph node while a cook runs, else anything
/// registered (while files load, the graph is not known yet).
fn node_kind(key: &str) -> Option<Option<(usize, &'static str)>> {
    scope::with(|s| {
        if !s.has_graph() {
            return Ok(None);
        }
        let i = s.names()?.get(key).copied();
        Ok(Some(i.map(|i| (i, s.nodes().map_or("", |n| n[i].kind)))))
    })
    .ok()
    .flatten()
}

/// The Python object for a place, or `None` where nothing is.
pub fn object(py: Python<'_>, place: &Place) -> PyResult<Option<Py<PyAny>>> {
    let key = match place {
        Place::Root => return Ok(Some(Py::new(py, Comp::root())?.into_any())),
        Place::Key(k) if k.is_empty() => {
            return Ok(Some(Py::new(py, Comp::at(place.clone()))?.into_any()))
        }
        Place::Key(k) => k,
    };
    Ok(match node_kind(key) {
        // The graph is not known yet (a file loading): an unchecked handle, resolved on use.
        None if registry::comp(key).is_some() => {
            Some(Py::new(py, Comp::at(place.clone()))?.into_any())
        }
        None => Some(Py::new(py, OpHandle::new(key, None))?.into_any()),
        Some(None) => None,
        Some(Some((_, "base"))) => Some(Py::new(py, Comp::at(place.clone()))?.into_any()),
        Some(Some((i, _))) => match scope::with(|s| super::dat::lookup(s, i))? {
            Some(d) => Some(Py::new(py, d)?.into_any()),
            None => Some(Py::new(py, OpHandle::with_index(key, i, None))?.into_any()),
        },
    })
}

/// `op(path)` from inside `from`: an operator object passed in comes back as is; an int is an
/// `OP.id`.
pub fn find(py: Python<'_>, from: &Place, what: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
    if what.cast::<OpHandle>().is_ok()
        || what.cast::<Comp>().is_ok()
        || what.cast::<super::dat::DatHandle>().is_ok()
    {
        return Ok(Some(what.clone().unbind()));
    }
    if let Ok(id) = what.extract::<u64>() {
        let key = all_keys().into_iter().find(|k| registry::op_id(k) == id);
        return match key {
            Some(k) => object(py, &Place::Key(k)),
            None => Ok(None),
        };
    }
    let path: String = what.extract().map_err(|_| {
        PyTypeError::new_err("op() takes a path (str), an operator id (int) or an operator")
    })?;
    // A pattern finds the first match, as TouchDesigner's op() does.
    if path.contains(['*', '?', '[']) {
        return Ok(find_all(py, from, &[path])?.into_iter().next());
    }
    match resolve(from, &path) {
        Some(p) => object(py, &p),
        None => Ok(None),
    }
}

/// Every operator key of the running graph (or, while files load, none).
fn all_keys() -> Vec<String> {
    scope::with(|s| {
        if !s.has_graph() {
            return Ok(Vec::new());
        }
        Ok(s.nodes()?.iter().map(|n| n.name.clone()).collect())
    })
    .unwrap_or_default()
}

/// The operators directly inside component `comp` (by key), in cook order.
fn children_of(comp: &Place) -> Vec<String> {
    match comp {
        Place::Root => Vec::new(),
        Place::Key(c) => all_keys()
            .into_iter()
            .filter(|k| parent_key(k) == c && k != c)
            .collect(),
    }
}

/// `ops(*patterns)` from inside `from`: each pattern may start with a path to a network
/// (`sub/lag*`, `../*`); its last part matches names in that network.
pub fn find_all(py: Python<'_>, from: &Place, patterns: &[String]) -> PyResult<Vec<Py<PyAny>>> {
    let mut found: Vec<String> = Vec::new();
    let patterns: Vec<String> = if patterns.is_empty() {
        vec!["*".into()]
    } else {
        patterns
            .iter()
            .flat_map(|p| p.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .collect()
    };
    for p in &patterns {
        let (dir, pat) = match p.rsplit_once('/') {
            Some((d, pat)) => (resolve(from, if d.is_empty() { "/" } else { d }), pat),
            None => (Some(from.clone()), p.as_str()),
        };
        let Some(dir) = dir else { continue };
        let names = children_of(&dir);
        registry::with_pattern(pat, |m| {
            for k in names {
                if m.matches(leaf(&k)) && !found.contains(&k) {
                    found.push(k);
                }
            }
        })?;
        if dir == Place::Root
            && crate::pattern::Pattern::new(pat).is_ok_and(|m| m.matches("project1"))
        {
            found.push(String::new());
        }
    }
    found
        .into_iter()
        .filter_map(|k| object(py, &Place::Key(k)).transpose())
        .collect()
}

/// The `n`-th component above `place` (`parent()` is the first); `None` past the root.
pub fn ancestor(place: &Place, n: i64) -> Option<Place> {
    let mut at = place.clone();
    for _ in 0..n.max(1) {
        at = at.parent()?;
    }
    Some(at)
}

/// The storage of every place from `key` up to the root, nearest first (`fetch` searches them).
pub fn storage_chain(key: &str) -> Vec<String> {
    let mut out = vec![key.to_string()];
    out.extend(place_chain(&Place::Key(parent_key(key).to_string())));
    out
}

/// The storage names of `place` and every component above it.
pub fn place_chain(place: &Place) -> Vec<String> {
    let mut out = vec![storage_key(place)];
    let mut at = place.clone();
    while let Some(p) = at.parent() {
        out.push(storage_key(&p));
        at = p;
    }
    out
}

/// The storage name of a place (operators by key; `/project1` and `/` by their paths).
pub fn storage_key(place: &Place) -> String {
    match place {
        Place::Root => "/".into(),
        Place::Key(k) if k.is_empty() => crate::path::PROJECT.into(),
        Place::Key(k) => k.clone(),
    }
}

/// `fetch(key, default, search=True)` over a storage chain.
pub fn fetch_from<'py>(
    py: Python<'py>,
    chain: &[String],
    search: bool,
    key: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let take = if search { chain.len() } else { 1 };
    for name in chain.iter().take(take) {
        if let Some(st) = registry::existing_storage(py, name) {
            if let Some(v) = st.get_item(key)? {
                return Ok(Some(v));
            }
        }
    }
    Ok(None)
}

/// `fetch(key, default, search, storeDefault)` over a storage chain (the first is the asking
/// operator's own): the nearest stored value, else the default (stored first when asked),
/// else `KeyError`.
pub fn fetch_or<'py>(
    py: Python<'py>,
    chain: &[String],
    search: bool,
    store_default: bool,
    key: &Bound<'py, PyAny>,
    default: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    if let Some(v) = fetch_from(py, chain, search, key)? {
        return Ok(v);
    }
    match default {
        Some(d) => {
            if store_default {
                registry::storage(py, &chain[0]).set_item(key, &d)?;
            }
            Ok(d)
        }
        None => Err(PyKeyError::new_err(format!(
            "\"{}\" has no stored key {} (pass a default to fetch)",
            chain[0],
            key.repr()?
        ))),
    }
}

/// `unstore(key)`: removes a key if it is there.
pub fn unstore_in(storage: &Bound<'_, PyDict>, key: &Bound<'_, PyAny>) -> PyResult<()> {
    if storage.contains(key)? {
        storage.del_item(key)?;
    }
    Ok(())
}

/// A hash of a path, for `__hash__` of the network's objects.
pub fn hash_path(path: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

/// A component: `/`, `/project1`, or a `base` operator of the config.
#[pyclass(frozen, module = "chopd", name = "COMP")]
pub struct Comp {
    pub place: Place,
}

super::family!(Comp, "COMP");

impl Comp {
    pub fn root() -> Comp {
        Comp { place: Place::Root }
    }

    pub fn at(place: Place) -> Comp {
        Comp { place }
    }

    /// Its key when it is a config operator (not `/` or `/project1`).
    fn key(&self) -> Option<&str> {
        match &self.place {
            Place::Key(k) if !k.is_empty() => Some(k),
            _ => None,
        }
    }

    fn comp_state(&self) -> Option<registry::CompState> {
        self.key().and_then(registry::comp)
    }

    /// Makes (once) and returns extension `i`, its expression run with `me` = this component.
    fn extension(&self, py: Python<'_>, i: usize) -> PyResult<Py<PyAny>> {
        let comp = self
            .comp_state()
            .ok_or_else(|| PyAttributeError::new_err("this component has no extensions"))?;
        if let Some(made) = comp
            .borrow()
            .extensions
            .get(i)
            .and_then(|e| e.made.as_ref())
        {
            return Ok(made.clone_ref(py));
        }
        let expr = comp.borrow().extensions[i].object.clone();
        let globals = PyDict::new(py);
        let me = Py::new(py, Comp::at(self.place.clone()))?.into_any();
        install_finders(&globals, Some(self.place.clone()), me)?;
        let code = std::ffi::CString::new(expr.clone())
            .map_err(|e| PyTypeError::new_err(e.to_string()))?;
        let obj = py
            .eval(&code, Some(&globals), None)
            .map_err(|e| {
                let msg = format!(
                    "extension \"{expr}\" of \"{}\" failed: {e}",
                    self.place.td_path()
                );
                PyErr::new::<pyo3::exceptions::PyRuntimeError, _>(msg)
            })?
            .unbind();
        if let Some(e) = comp.borrow_mut().extensions.get_mut(i) {
            e.made = Some(obj.clone_ref(py));
        }
        Ok(obj)
    }

    /// Extension names as found by `ext.Name`: the declared name, else the class name.
    fn extension_named(&self, py: Python<'_>, name: &str) -> PyResult<Option<Py<PyAny>>> {
        let Some(comp) = self.comp_state() else {
            return Ok(None);
        };
        let declared: Vec<Option<String>> = comp
            .borrow()
            .extensions
            .iter()
            .map(|e| e.name.clone())
            .collect();
        for (i, n) in declared.iter().enumerate() {
            if n.as_deref() == Some(name) {
                return self.extension(py, i).map(Some);
            }
        }
        for (i, n) in declared.iter().enumerate() {
            if n.is_none() {
                let obj = self.extension(py, i)?;
                let class: String = obj.bind(py).get_type().name()?.extract()?;
                if class == name {
                    return Ok(Some(obj));
                }
            }
        }
        Ok(None)
    }
}

#[pymethods]
impl Comp {
    #[getter]
    fn name(&self) -> &str {
        match &self.place {
            Place::Root => "",
            Place::Key(k) if k.is_empty() => "project1",
            Place::Key(k) => leaf(k),
        }
    }

    #[getter]
    fn path(&self) -> String {
        self.place.td_path()
    }

    #[getter(r#type)]
    fn op_type(&self) -> &'static str {
        if self.key().is_some() {
            "base"
        } else {
            "container"
        }
    }

    #[getter(OPType)]
    fn optype(&self) -> String {
        format!("{}COMP", self.op_type())
    }

    #[getter]
    fn valid(&self) -> bool {
        match self.key() {
            None => true,
            Some(k) => node_kind(k).is_none_or(|n| n.is_some()),
        }
    }

    #[getter]
    fn id(&self) -> u64 {
        registry::op_id(&storage_key(&self.place))
    }

    #[getter]
    fn digits(&self) -> Option<u64> {
        name_digits(self.name())
    }

    #[getter]
    fn par(&self) -> ParCollection {
        ParCollection {
            op: self.key().unwrap_or("").to_string(),
        }
    }

    #[getter(customPages)]
    fn custom_pages(&self) -> PyResult<Vec<super::par::Page>> {
        match self.key() {
            Some(k) => super::par::pages(k),
            None => Ok(Vec::new()),
        }
    }

    #[getter(customPars)]
    fn custom_pars(&self) -> Vec<super::par::Par> {
        let Some(k) = self.key() else {
            return Vec::new();
        };
        registry::lookup(k).map_or_else(Vec::new, |s| {
            s.borrow()
                .pars
                .pars()
                .iter()
                .map(|p| super::par::Par::new(k, &p.name))
                .collect()
        })
    }

    fn op(&self, py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        find(py, &self.place, path)
    }

    #[pyo3(signature = (*patterns))]
    fn ops(&self, py: Python<'_>, patterns: Vec<String>) -> PyResult<Vec<Py<PyAny>>> {
        find_all(py, &self.place, &patterns)
    }

    #[pyo3(signature = (n=1))]
    fn parent(&self, py: Python<'_>, n: i64) -> PyResult<Option<Py<PyAny>>> {
        match ancestor(&self.place, n) {
            Some(p) => object(py, &p),
            None => Ok(None),
        }
    }

    #[getter]
    fn children(&self, py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
        if self.place == Place::Root {
            return Ok(vec![
                Py::new(py, Comp::at(Place::Key(String::new())))?.into_any()
            ]);
        }
        children_of(&self.place)
            .into_iter()
            .filter_map(|k| object(py, &Place::Key(k)).transpose())
            .collect()
    }

    /// `findChildren(name=, type=, depth=, maxDepth=)`: operators below this component.
    #[pyo3(signature = (name=None, r#type=None, depth=None, maxDepth=None, **_rest))]
    #[allow(non_snake_case)]
    fn findChildren(
        &self,
        py: Python<'_>,
        name: Option<String>,
        r#type: Option<Bound<'_, PyAny>>,
        depth: Option<usize>,
        maxDepth: Option<usize>,
        _rest: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Vec<Py<PyAny>>> {
        let base = match &self.place {
            Place::Root => None,
            Place::Key(k) => Some(k.clone()),
        };
        let wanted_type: Option<String> = match &r#type {
            None => None,
            Some(t) => Some(match t.extract::<String>() {
                Ok(s) => s,
                Err(_) => t.getattr("__name__")?.extract()?,
            }),
        };
        let name_pat = name
            .as_deref()
            .map(crate::pattern::Pattern::new)
            .transpose()
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        let mut out = Vec::new();
        for k in all_keys() {
            let level = match &base {
                None => k.split('/').count() + 1,
                Some(b) if b.is_empty() => k.split('/').count(),
                Some(b) => match k.strip_prefix(b.as_str()).and_then(|r| r.strip_prefix('/')) {
                    Some(rest) => rest.split('/').count(),
                    None => continue,
                },
            };
            if depth.is_some_and(|d| d != level) || maxDepth.is_some_and(|d| level > d) {
                continue;
            }
            if name_pat.as_ref().is_some_and(|p| !p.matches(leaf(&k))) {
                continue;
            }
            let Some(obj) = object(py, &Place::Key(k))? else {
                continue;
            };
            if let Some(t) = &wanted_type {
                let have: String = obj.bind(py).getattr("OPType")?.extract()?;
                let kind: String = obj.bind(py).getattr("type")?.extract()?;
                if *t != have && *t != kind {
                    continue;
                }
            }
            out.push(obj);
        }
        Ok(out)
    }

    #[getter]
    fn time(&self) -> Time {
        Time {
            owner: self.key().unwrap_or("").to_string(),
        }
    }

    #[getter]
    fn storage<'py>(&self, py: Python<'py>) -> Bound<'py, PyDict> {
        registry::storage(py, &storage_key(&self.place))
    }

    fn store<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        value: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        registry::storage(py, &storage_key(&self.place)).set_item(key, &value)?;
        Ok(value)
    }

    #[pyo3(signature = (key, *default, search=true, storeDefault=false))]
    #[allow(non_snake_case)]
    fn fetch<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: &Bound<'py, PyTuple>,
        search: bool,
        storeDefault: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        fetch_or(
            py,
            &place_chain(&self.place),
            search,
            storeDefault,
            key,
            default.iter().next(),
        )
    }

    fn unstore(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        unstore_in(&self.storage(py), key)
    }

    /// `ext`: the component's extensions by name (`op('show').ext.ShowExt`).
    #[getter]
    fn ext(&self) -> Extensions {
        Extensions {
            place: self.place.clone(),
        }
    }

    /// Members of promoted extensions, as if they were the component's own.
    fn __getattr__(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyAny>> {
        if let Some(comp) = self.comp_state() {
            let n = comp.borrow().extensions.len();
            for i in 0..n {
                if !comp.borrow().extensions[i].promote {
                    continue;
                }
                let obj = self.extension(py, i)?;
                if let Ok(v) = obj.bind(py).getattr(name) {
                    return Ok(v.unbind());
                }
            }
        }
        Err(PyAttributeError::new_err(format!(
            "'{}' ({}) has no attribute '{name}'",
            self.place.td_path(),
            self.optype()
        )))
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Comp>()
            .is_ok_and(|o| o.get().place == self.place)
    }

    fn __hash__(&self) -> u64 {
        hash_path(&self.place.td_path())
    }

    fn __repr__(&self) -> String {
        format!("{}(path='{}')", self.optype(), self.place.td_path())
    }
}

/// `comp.ext`: extensions by name.
#[pyclass(frozen, module = "chopd", name = "Extensions")]
pub struct Extensions {
    place: Place,
}

#[pymethods]
impl Extensions {
    fn __getattr__(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyAny>> {
        Comp::at(self.place.clone())
            .extension_named(py, name)?
            .ok_or_else(|| {
                PyAttributeError::new_err(format!(
                    "'{}' has no extension '{name}'",
                    self.place.td_path()
                ))
            })
    }
}

/// The nearest component at or above `from` for which `pick` gives something.
fn walk_up<T>(from: &Place, pick: impl Fn(&registry::CompShared) -> Option<T>) -> Option<T> {
    let mut at = Some(from.clone());
    while let Some(p) = at {
        if let Place::Key(k) = &p {
            if let Some(c) = registry::comp(k) {
                if let Some(v) = pick(&c.borrow()) {
                    return Some(v);
                }
            }
        }
        at = p.parent();
    }
    None
}

/// `op`: callable as `op(path)`, and `op.Name` finds a Global OP Shortcut.
#[pyclass(frozen, module = "chopd", name = "OpFinder")]
pub struct OpFinder {
    pub network: Option<Place>,
}

#[pymethods]
impl OpFinder {
    fn __call__(&self, py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        find(py, &network(&self.network), path)
    }

    fn __getattr__(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyAny>> {
        if name == "TDModules" {
            return Ok(super::runtime::module(py)?.getattr("TDModules")?.unbind());
        }
        if let Some(k) = registry::op_shortcut(name) {
            if let Some(o) = object(py, &Place::Key(k))? {
                return Ok(o);
            }
        }
        Err(PyAttributeError::new_err(format!(
            "no Global OP Shortcut \"{name}\" (declare op_shortcut = \"{name}\" on a component)"
        )))
    }
}

/// `parent`: callable as `parent(n)`, and `parent.Name` finds the nearest enclosing component
/// whose Parent Shortcut is `Name` (`/project1`'s is `Project`).
#[pyclass(frozen, module = "chopd", name = "ParentFinder")]
pub struct ParentFinder {
    pub network: Option<Place>,
}

#[pymethods]
impl ParentFinder {
    #[pyo3(signature = (n=1))]
    fn __call__(&self, py: Python<'_>, n: i64) -> PyResult<Option<Py<PyAny>>> {
        // The network itself is the first parent of the code running in it.
        let net = network(&self.network);
        let at = if n <= 1 {
            Some(net)
        } else {
            ancestor(&net, n - 1)
        };
        match at {
            Some(p) => object(py, &p),
            None => Ok(None),
        }
    }

    fn __getattr__(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyAny>> {
        let net = network(&self.network);
        let found = walk_up(&net, |c| {
            (c.parent_shortcut.as_deref() == Some(name)).then(|| c.key.clone())
        })
        .map(Place::Key)
        .or_else(|| (name == "Project").then(|| Place::Key(String::new())));
        match found {
            Some(p) => object(py, &p)?.ok_or_else(|| PyAttributeError::new_err(name.to_string())),
            None => Err(PyAttributeError::new_err(format!(
                "no enclosing component has the Parent Shortcut \"{name}\""
            ))),
        }
    }
}

/// `iop` (`pars = false`) and `ipar` (`pars = true`): internal OP shortcuts of the enclosing
/// components.
#[pyclass(frozen, module = "chopd", name = "InternalFinder")]
pub struct InternalFinder {
    pub network: Option<Place>,
    pub pars: bool,
}

#[pymethods]
impl InternalFinder {
    fn __getattr__(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyAny>> {
        let net = network(&self.network);
        let target = walk_up(&net, |c| {
            c.iop
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, path)| resolve(&Place::Key(c.key.clone()), path))
        })
        .flatten();
        let which = if self.pars { "ipar" } else { "iop" };
        let Some(obj) = target.map(|p| object(py, &p)).transpose()?.flatten() else {
            return Err(PyAttributeError::new_err(format!(
                "{which}.{name}: no enclosing component has an internal OP shortcut \"{name}\" \
                 that names an operator"
            )));
        };
        if self.pars {
            Ok(obj.bind(py).getattr("par")?.unbind())
        } else {
            Ok(obj)
        }
    }
}

/// `me` in a callbacks file: the text DAT holding it (`gain_callbacks`, beside the Script CHOP
/// `gain`). What a DAT has is its own; anything else is looked up on the Script CHOP, so code
/// written for chopd's earlier `me` (the Script CHOP) keeps working.
#[pyclass(frozen, module = "chopd", name = "textDAT")]
pub struct CallbacksDat {
    /// The Script CHOP's key.
    pub script: String,
    pub file: std::path::PathBuf,
}

super::family!(CallbacksDat, "DAT");

impl CallbacksDat {
    fn key(&self) -> String {
        format!("{}_callbacks", self.script)
    }

    fn net(&self) -> Place {
        Place::Key(parent_key(&self.script).to_string())
    }
}

#[pymethods]
impl CallbacksDat {
    #[getter]
    fn name(&self) -> String {
        format!("{}_callbacks", leaf(&self.script))
    }

    #[getter]
    fn path(&self) -> String {
        td_path(&self.key())
    }

    #[getter(r#type)]
    fn op_type(&self) -> &'static str {
        "text"
    }

    #[getter(OPType)]
    fn optype(&self) -> &'static str {
        "textDAT"
    }

    #[getter]
    fn valid(&self) -> bool {
        true
    }

    #[getter]
    fn digits(&self) -> Option<u64> {
        name_digits(&self.name())
    }

    #[getter]
    fn id(&self) -> u64 {
        registry::op_id(&self.key())
    }

    /// The callbacks file's text.
    #[getter]
    fn text(&self) -> PyResult<String> {
        std::fs::read_to_string(&self.file).map_err(|e| {
            pyo3::exceptions::PyOSError::new_err(format!("{}: {e}", self.file.display()))
        })
    }

    #[getter]
    fn inputs(&self) -> Vec<OpHandle> {
        Vec::new()
    }

    #[getter]
    fn time(&self) -> Time {
        Time {
            owner: self.script.clone(),
        }
    }

    fn op(&self, py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        find(py, &self.net(), path)
    }

    #[pyo3(signature = (*patterns))]
    fn ops(&self, py: Python<'_>, patterns: Vec<String>) -> PyResult<Vec<Py<PyAny>>> {
        find_all(py, &self.net(), &patterns)
    }

    #[pyo3(signature = (n=1))]
    fn parent(&self, py: Python<'_>, n: i64) -> PyResult<Option<Py<PyAny>>> {
        let net = self.net();
        let at = if n <= 1 {
            Some(net)
        } else {
            ancestor(&net, n - 1)
        };
        match at {
            Some(p) => object(py, &p),
            None => Ok(None),
        }
    }

    #[getter]
    fn storage<'py>(&self, py: Python<'py>) -> Bound<'py, PyDict> {
        registry::storage(py, &self.key())
    }

    fn store<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        value: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        registry::storage(py, &self.key()).set_item(key, &value)?;
        Ok(value)
    }

    #[pyo3(signature = (key, *default, search=true, storeDefault=false))]
    #[allow(non_snake_case)]
    fn fetch<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: &Bound<'py, PyTuple>,
        search: bool,
        storeDefault: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        fetch_or(
            py,
            &storage_chain(&self.key()),
            search,
            storeDefault,
            key,
            default.iter().next(),
        )
    }

    fn unstore(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        unstore_in(&self.storage(py), key)
    }

    fn __getattr__(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyAny>> {
        let chop = Py::new(py, OpHandle::new(&self.script, None))?;
        Ok(chop.bind(py).getattr(name)?.unbind())
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<CallbacksDat>()
            .is_ok_and(|o| o.get().script == self.script)
    }

    fn __hash__(&self) -> u64 {
        hash_path(&self.key())
    }

    fn __repr__(&self) -> String {
        format!("textDAT(path='{}')", self.path())
    }
}

/// Puts the finders of `network` (`None`: the running script's) and `me` into a namespace.
pub fn install_finders(
    globals: &Bound<'_, PyDict>,
    network: Option<Place>,
    me: Py<PyAny>,
) -> PyResult<()> {
    globals.set_item(
        "op",
        OpFinder {
            network: network.clone(),
        },
    )?;
    globals.set_item(
        "parent",
        ParentFinder {
            network: network.clone(),
        },
    )?;
    globals.set_item(
        "iop",
        InternalFinder {
            network: network.clone(),
            pars: false,
        },
    )?;
    globals.set_item(
        "ipar",
        InternalFinder {
            network: network.clone(),
            pars: true,
        },
    )?;
    globals.set_item("ops", OpsFinder { network })?;
    globals.set_item("root", Comp::root())?;
    globals.set_item("me", me)?;
    Ok(())
}

/// `ops(*patterns)` bound to a network.
#[pyclass(frozen, module = "chopd", name = "OpsFinder")]
pub struct OpsFinder {
    pub network: Option<Place>,
}

#[pymethods]
impl OpsFinder {
    #[pyo3(signature = (*patterns))]
    fn __call__(&self, py: Python<'_>, patterns: Vec<String>) -> PyResult<Vec<Py<PyAny>>> {
        find_all(py, &network(&self.network), &patterns)
    }
}
