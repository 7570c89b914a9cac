//! Text DATs as modules: `op('x').module`, and the `mod` global (`mod.x`, `mod('x')`).

use std::cell::RefCell;
use std::collections::HashMap;

use pyo3::exceptions::PyModuleNotFoundError;
use pyo3::prelude::*;
use pyo3::types::PyModule;

use super::dat::DatHandle;
use crate::path::Place;

thread_local! {
    /// Text DATs run as modules, by DAT name: the content version they were made from.
    static MODULES: RefCell<HashMap<String, (u64, Py<PyModule>)>> = RefCell::new(HashMap::new());
}

/// `op('x').module`: the text DAT `name`'s text run as a module, made again only when the text
/// changed. Its globals are a callbacks file's (`op`, `mod`, `absTime`, the `td` names) with
/// `me` the DAT.
pub fn module(py: Python<'_>, dat: &DatHandle) -> PyResult<Py<PyModule>> {
    // The version alone decides; the text is copied out only to run it.
    let version = dat.read(|d| Ok(d.version))?;
    let cached = MODULES.with(|m| {
        m.borrow()
            .get(&dat.name)
            .filter(|(v, _)| *v == version)
            .map(|(_, module)| module.clone_ref(py))
    });
    if let Some(m) = cached {
        return Ok(m);
    }
    let text = dat.read(|d| Ok(d.text()))?;
    let module = PyModule::new(py, &dat.name)?;
    let globals = module.dict();
    let me = Py::new(py, DatHandle::new(&dat.name))?.into_any();
    // The module's code runs in the DAT's network, as a callbacks file runs in its CHOP's.
    let network = Place::Key(crate::path::parent_key(&dat.name).to_string());
    super::comp::install_finders(&globals, Some(network.clone()), me)?;
    super::globals::install_clock(py, &globals)?;
    super::globals::install_mod(&globals, Some(network))?;
    super::runtime::install(py, &globals)?;
    let file = crate::path::td_path(&dat.name);
    globals.set_item("__file__", &file)?;
    let builtins = py.import("builtins")?;
    let code = builtins.getattr("compile")?.call1((text, &file, "exec"))?;
    builtins.getattr("exec")?.call1((code, &globals))?;
    let module = module.unbind();
    MODULES.with(|m| {
        m.borrow_mut()
            .insert(dat.name.clone(), (version, module.clone_ref(py)));
    });
    Ok(module)
}

/// `mod`: text DATs as modules, `mod.name` or `mod('name')`, found as `op()` finds operators.
#[pyclass(frozen, module = "chopd", name = "MOD")]
pub struct Mod {
    /// The network names start in (`None`: the running script's).
    pub network: Option<Place>,
}

impl Mod {
    fn find(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyModule>> {
        let arg = pyo3::types::PyString::new(py, name);
        let found = super::comp::find(py, &super::comp::network(&self.network), arg.as_any())?;
        let dat = found
            .as_ref()
            .and_then(|o| o.bind(py).cast::<DatHandle>().ok().cloned());
        match dat {
            Some(d) => module(py, d.get()),
            None => Err(PyModuleNotFoundError::new_err(format!(
                "mod: no text DAT \"{name}\" to import"
            ))),
        }
    }
}

#[pymethods]
impl Mod {
    fn __getattr__(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyModule>> {
        if name.starts_with("__") {
            return Err(pyo3::exceptions::PyAttributeError::new_err(
                name.to_string(),
            ));
        }
        self.find(py, name)
    }

    fn __call__(&self, py: Python<'_>, path: &str) -> PyResult<Py<PyModule>> {
        self.find(py, path)
    }

    fn __repr__(&self) -> &'static str {
        "mod"
    }
}
