//! Base COMP: a component, the network other operators live in (`name = "show/gain"` puts
//! `gain` inside the component `show`). It has no channels; it holds custom parameter pages
//! declared in the config (TouchDesigner's Customize Component dialog, with the keys of its
//! JSON export), its shortcuts (`parent.Name`, `op.Name`, `iop.Name`) and its extensions.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::config::diag::suggestion;
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind, OperatorConfig, Settings};
use crate::cook::par::{check_name, ParSet, ParStyle};
use crate::cook::{BuildCtx, ChopData, CookCtx, CookError, Frame, KeptPar, NodeState, Operator};
use crate::cook::{KeptPars, ParValue};
use crate::python::registry::{self, CompShared, CompState, Extension, ScriptShared, ScriptState};

/// The Base COMP kind.
pub struct Base;

/// The keys of a `base` operator.
#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    /// Initial custom parameter values by name (a list sets a group's members)
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub pars: Option<Spanned<toml::Table>>,
    /// Custom parameters, in order: `[[operator.par]]` tables
    #[schemars(with = "Option<Vec<ParSpec>>")]
    pub par: Option<Vec<Spanned<ParSpec>>>,
    /// Parent Shortcut: operators inside find this component as `parent.NAME`
    #[schemars(with = "Option<String>")]
    pub parent_shortcut: Option<Spanned<String>>,
    /// Global OP Shortcut: every script finds this component as `op.NAME`
    #[schemars(with = "Option<String>")]
    pub op_shortcut: Option<Spanned<String>>,
    /// Internal OP shortcuts: `iop.NAME` / `ipar.NAME` → an operator path relative to this
    /// component
    pub iop: Option<BTreeMap<String, String>>,
    /// Extensions, as TouchDesigner's extNobject / extNname / extNpromote
    pub extensions: Option<Vec<ExtSpec>>,
}

/// One custom parameter, with the keys TouchDesigner's parameter JSON uses.
#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParSpec {
    /// Parameter name: a capital, then lowercase letters and digits (`Speed`)
    pub name: String,
    /// Float, Int, Toggle, Momentary, Pulse, Menu, StrMenu, Str, File, FileSave, Folder,
    /// Python, OP, COMP, CHOP, DAT, Header, XY, XYZ, XYZW, UV, UVW, WH, RGB, RGBA
    pub style: String,
    /// Page name (default "Custom")
    pub page: Option<String>,
    pub label: Option<String>,
    /// Members of a Float or Int group, 1 to 4 (`Val1`…`Val4`)
    pub size: Option<i64>,
    /// Default value (a list for a group)
    #[schemars(with = "Option<serde_json::Value>")]
    pub default: Option<toml::Value>,
    /// Initial value, when it differs from the default (a list for a group)
    #[schemars(with = "Option<serde_json::Value>")]
    pub value: Option<toml::Value>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    #[serde(rename = "normMin")]
    pub norm_min: Option<f64>,
    #[serde(rename = "normMax")]
    pub norm_max: Option<f64>,
    #[serde(rename = "clampMin")]
    pub clamp_min: Option<bool>,
    #[serde(rename = "clampMax")]
    pub clamp_max: Option<bool>,
    #[serde(rename = "menuNames")]
    pub menu_names: Option<Vec<String>>,
    #[serde(rename = "menuLabels")]
    pub menu_labels: Option<Vec<String>>,
    #[serde(rename = "startSection")]
    pub start_section: Option<bool>,
    #[serde(rename = "readOnly")]
    pub read_only: Option<bool>,
}

/// One extension.
#[derive(Deserialize, Debug, Clone, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtSpec {
    /// Python expression making the object, `me` being the component:
    /// `op('./ShowExt').module.ShowExt(me)`
    pub object: String,
    /// Name it is found by (default: the object's class name)
    pub name: Option<String>,
    /// Make its members reachable as the component's own
    #[serde(default)]
    pub promote: bool,
}

/// One checked custom parameter group.
#[derive(Clone, Debug, PartialEq)]
pub struct ParGroupDef {
    pub name: String,
    pub style: ParStyle,
    pub page: String,
    pub label: Option<String>,
    pub size: usize,
    /// Per member (one entry for a single parameter).
    pub default: Vec<ParValue>,
    pub value: Vec<ParValue>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub norm_min: Option<f64>,
    pub norm_max: Option<f64>,
    pub clamp_min: bool,
    pub clamp_max: bool,
    pub menu_names: Vec<String>,
    pub menu_labels: Vec<String>,
    pub start_section: bool,
    pub read_only: bool,
}

/// The checked settings of a component.
#[derive(Clone, Debug, PartialEq)]
pub struct BaseConfig {
    pub defs: Vec<ParGroupDef>,
    pub pars: Vec<(String, ParValue)>,
    pub modes: Vec<(String, crate::cook::par::ParMode, String)>,
    pub parent_shortcut: Option<String>,
    pub op_shortcut: Option<String>,
    pub iop: Vec<(String, String)>,
    pub extensions: Vec<ExtSpec>,
}

/// A TOML value as a parameter value.
fn par_value(v: &toml::Value) -> Option<ParValue> {
    match v {
        toml::Value::Boolean(b) => Some(ParValue::Float(f64::from(u8::from(*b)))),
        toml::Value::String(s) => Some(ParValue::Str(s.clone())),
        toml::Value::Integer(i) => Some(ParValue::Float(*i as f64)),
        toml::Value::Float(f) => Some(ParValue::Float(*f)),
        _ => None,
    }
}

/// `v` spread over a group of `size` members (a single value fills every member).
fn members(v: &toml::Value, size: usize) -> Option<Vec<ParValue>> {
    match v {
        toml::Value::Array(a) if a.len() == size => a.iter().map(par_value).collect(),
        toml::Value::Array(_) => None,
        v => par_value(v).map(|p| vec![p; size]),
    }
}

fn check_par(cx: &mut Checker, spec: &Spanned<ParSpec>) -> Option<ParGroupDef> {
    let span = spec.span();
    let p = spec.get_ref();
    let mut ok = true;
    if let Err(e) = check_name(&p.name) {
        cx.d.error(span.clone(), e);
        ok = false;
    }
    let Some(style) = ParStyle::parse(&p.style) else {
        let names = ParStyle::ALL.map(ParStyle::name);
        cx.d.error(
            span,
            format!(
                "parameter \"{}\": unknown style \"{}\"{}",
                p.name,
                p.style,
                suggestion(&p.style, names.iter().copied())
            ),
        );
        return None;
    };
    let size = match (style.suffixes(), p.size) {
        (Some(sfx), _) => sfx.len(),
        (None, None) => 1,
        (None, Some(n)) if matches!(style, ParStyle::Float | ParStyle::Int) && (1..=4).contains(&n) => {
            n as usize
        }
        (None, Some(n)) => {
            cx.d.error(
                span.clone(),
                format!(
                    "parameter \"{}\": size {n} is not allowed (Float and Int take 1 to 4, the \
                     vector styles have their own)",
                    p.name
                ),
            );
            ok = false;
            1
        }
    };
    let mut values = |what: &str, v: &Option<toml::Value>| -> Vec<ParValue> {
        match v {
            None => Vec::new(),
            Some(v) => members(v, size).unwrap_or_else(|| {
                cx.d.error(
                    span.clone(),
                    format!(
                        "parameter \"{}\": {what} must be a number, a boolean or a string, or a \
                         list of {size} of them",
                        p.name
                    ),
                );
                Vec::new()
            }),
        }
    };
    let default = values("default", &p.default);
    let value = values("value", &p.value);
    let menu_names = p.menu_names.clone().unwrap_or_default();
    if style == ParStyle::Menu && menu_names.is_empty() {
        cx.d.error(
            span.clone(),
            format!("parameter \"{}\": a Menu needs menuNames", p.name),
        );
        ok = false;
    }
    let def = ParGroupDef {
        name: p.name.clone(),
        style,
        page: p.page.clone().unwrap_or_else(|| "Custom".to_string()),
        label: p.label.clone(),
        size,
        default,
        value,
        min: p.min,
        max: p.max,
        norm_min: p.norm_min,
        norm_max: p.norm_max,
        clamp_min: p.clamp_min.unwrap_or(false),
        clamp_max: p.clamp_max.unwrap_or(false),
        menu_labels: p.menu_labels.clone().unwrap_or_else(|| menu_names.clone()),
        menu_names,
        start_section: p.start_section.unwrap_or(false),
        read_only: p.read_only.unwrap_or(false),
    };
    // Building the group once tells every value problem (a default not in the menu…) now.
    if ok {
        if let Err(e) = build_group(&mut ParSet::default(), &def) {
            cx.d.error(span, format!("parameter \"{}\": {e}", p.name));
            return None;
        }
    }
    ok.then_some(def)
}

/// Appends one group to `set` with everything the config says of it.
fn build_group(set: &mut ParSet, g: &ParGroupDef) -> Result<(), String> {
    set.add_page(&g.page);
    let names = set.append(&g.page, &g.name, g.style, g.label.as_deref(), g.size, false)?;
    for (i, n) in names.iter().enumerate() {
        set.edit(n, |d| -> Result<(), String> {
            if let Some(v) = g.min {
                (d.min, d.norm_min) = (v, v);
            }
            if let Some(v) = g.max {
                (d.max, d.norm_max) = (v, v);
            }
            d.norm_min = g.norm_min.unwrap_or(d.norm_min);
            d.norm_max = g.norm_max.unwrap_or(d.norm_max);
            d.clamp_min = g.clamp_min;
            d.clamp_max = g.clamp_max;
            if !g.menu_names.is_empty() {
                d.set_menu_names(g.menu_names.clone());
                d.menu_labels = g.menu_labels.clone();
            }
            d.start_section = g.start_section && i == 0;
            if let Some(v) = g.default.get(i) {
                d.set_default(v)?;
            }
            if let Some(v) = g.value.get(i) {
                d.val = d.coerce(v)?;
                d.fresh = false;
            }
            d.read_only = g.read_only || g.style == ParStyle::Header;
            Ok(())
        })??;
    }
    Ok(())
}

/// A name for a shortcut: TouchDesigner's rule for them is a Python identifier.
fn check_shortcut(cx: &mut Checker, s: &Option<Spanned<String>>, key: &str) -> Option<String> {
    let s = s.as_ref()?;
    let name = s.get_ref();
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        cx.d.error(
            s.span(),
            format!("{key} \"{name}\" must be a name: a letter, then letters, digits and `_`"),
        );
        return None;
    }
    Some(name.clone())
}

impl Kind for Base {
    const NAME: &'static str = "base";
    const SUMMARY: &'static str = "Base COMP: a component holding operators and custom parameters";
    type Raw = Raw;
    type Settings = BaseConfig;

    fn check(cx: &mut Checker, r: Raw, _refs: &mut OpRefs) -> Option<BaseConfig> {
        let defs: Vec<ParGroupDef> = r
            .par
            .iter()
            .flatten()
            .filter_map(|p| check_par(cx, p))
            .collect();
        let pars = cx.par_values(&r.pars);
        let modes = cx.par_modes(&r.pars);
        Some(BaseConfig {
            defs,
            pars,
            modes,
            parent_shortcut: check_shortcut(cx, &r.parent_shortcut, "parent_shortcut"),
            op_shortcut: check_shortcut(cx, &r.op_shortcut, "op_shortcut"),
            iop: r.iop.unwrap_or_default().into_iter().collect(),
            extensions: r.extensions.unwrap_or_default(),
        })
    }
}

impl Settings for BaseConfig {
    fn build(&self, op: &OperatorConfig, cx: &BuildCtx) -> Result<Box<dyn Operator>, String> {
        let mut set = ParSet::default();
        set.set_init(&self.pars);
        set.set_init_modes(&self.modes);
        for g in &self.defs {
            build_group(&mut set, g).map_err(|e| format!("parameter \"{}\": {e}", g.name))?;
        }
        let unknown = set.unknown_inits();
        if !unknown.is_empty() {
            return Err(format!(
                "component \"{}\": pars names parameters it does not declare: {}",
                op.name,
                unknown.join(", ")
            ));
        }
        let mut shared = ScriptShared::new(&op.name, false, false, cx.rate);
        shared.pars = set;
        let shared = std::rc::Rc::new(std::cell::RefCell::new(shared));
        registry::register(&shared);
        let comp = std::rc::Rc::new(std::cell::RefCell::new(CompShared {
            key: op.name.clone(),
            parent_shortcut: self.parent_shortcut.clone(),
            op_shortcut: self.op_shortcut.clone(),
            iop: self.iop.clone(),
            extensions: self
                .extensions
                .iter()
                .map(|e| Extension {
                    object: e.object.clone(),
                    name: e.name.clone(),
                    promote: e.promote,
                    made: None,
                })
                .collect(),
        }));
        registry::register_comp(&comp);
        Ok(Box::new(BaseOp { shared, comp }))
    }

    fn uses_python(&self) -> bool {
        !self.extensions.is_empty()
    }
}

/// A running component.
pub struct BaseOp {
    shared: ScriptState,
    comp: CompState,
}

impl Drop for BaseOp {
    fn drop(&mut self) {
        registry::unregister(&self.shared);
        registry::unregister_comp(&self.comp);
    }
}

impl Operator for BaseOp {
    /// A component has no channels: it never cooks.
    fn wants_cook(&mut self, _frame: &Frame, _nodes: &[NodeState]) -> bool {
        false
    }

    fn time_dependent(&self) -> bool {
        false
    }

    fn cook(&mut self, _ctx: &mut CookCtx, _out: &mut ChopData) -> Result<(), CookError> {
        Ok(())
    }

    fn set_par(&mut self, name: &str, value: ParValue) -> Result<(), String> {
        let mut s = self.shared.borrow_mut();
        match s.pars.get(name).map(|d| d.style) {
            Some(ParStyle::Pulse) => Ok(()),
            Some(_) => s.pars.set(name, &value).map(drop),
            None => Err(format!("component has no parameter \"{name}\"")),
        }
    }

    fn pulse_par(&mut self, name: &str) -> Result<(), String> {
        match self.shared.borrow().pars.get(name).map(|d| d.style) {
            Some(ParStyle::Pulse) => Ok(()),
            Some(_) => Err(format!("parameter \"{name}\" is not a pulse")),
            None => Err(format!("component has no parameter \"{name}\"")),
        }
    }

    fn par_defs(&self) -> Vec<crate::cook::par::ParDef> {
        self.shared.borrow().pars.pars().to_vec()
    }

    fn runtime_pars(&self) -> KeptPars {
        self.shared.borrow().pars.runtime_values()
    }

    fn restore_pars(&mut self, pars: &[(String, KeptPar)]) {
        self.shared.borrow_mut().pars.restore(pars);
    }
}
