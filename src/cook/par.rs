//! Parameters as data, the one model every operator kind shares: [`ParDef`] (one parameter: its
//! style, label, range, menu, and how a value is converted, clamped and checked) and [`ParSet`]
//! (pages of parameters, values that survive reloads and re-creation, initial values from the
//! config). A Script CHOP's custom parameters, a component's custom pages and the parameters a
//! kind has built in are all `ParDef`s, so the control port, the status, Python's `.par` and
//! OSCQuery read one description.
//!
//! No pyo3 here: the model is usable and testable without an interpreter. The Python objects
//! over it (`Par`, `Page`, `op.par`) are in `python::api::par`.

use std::collections::{BTreeMap, HashMap};

use crate::cook::{KeptPar, ParValue};

/// A parameter's style, as TouchDesigner names them (`Par.style`). The vector styles (`XYZ`,
/// `RGB`…) are one style shared by each parameter of the group (`Color1`…`Color3` are `RGB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParStyle {
    Float,
    Int,
    XY,
    XYZ,
    XYZW,
    UV,
    UVW,
    WH,
    RGB,
    RGBA,
    Toggle,
    Momentary,
    Pulse,
    Menu,
    StrMenu,
    Str,
    File,
    FileSave,
    Folder,
    Python,
    OP,
    COMP,
    CHOP,
    DAT,
    Header,
}

impl ParStyle {
    pub const ALL: [ParStyle; 25] = [
        ParStyle::Float,
        ParStyle::Int,
        ParStyle::XY,
        ParStyle::XYZ,
        ParStyle::XYZW,
        ParStyle::UV,
        ParStyle::UVW,
        ParStyle::WH,
        ParStyle::RGB,
        ParStyle::RGBA,
        ParStyle::Toggle,
        ParStyle::Momentary,
        ParStyle::Pulse,
        ParStyle::Menu,
        ParStyle::StrMenu,
        ParStyle::Str,
        ParStyle::File,
        ParStyle::FileSave,
        ParStyle::Folder,
        ParStyle::Python,
        ParStyle::OP,
        ParStyle::COMP,
        ParStyle::CHOP,
        ParStyle::DAT,
        ParStyle::Header,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ParStyle::Float => "Float",
            ParStyle::Int => "Int",
            ParStyle::XY => "XY",
            ParStyle::XYZ => "XYZ",
            ParStyle::XYZW => "XYZW",
            ParStyle::UV => "UV",
            ParStyle::UVW => "UVW",
            ParStyle::WH => "WH",
            ParStyle::RGB => "RGB",
            ParStyle::RGBA => "RGBA",
            ParStyle::Toggle => "Toggle",
            ParStyle::Momentary => "Momentary",
            ParStyle::Pulse => "Pulse",
            ParStyle::Menu => "Menu",
            ParStyle::StrMenu => "StrMenu",
            ParStyle::Str => "Str",
            ParStyle::File => "File",
            ParStyle::FileSave => "FileSave",
            ParStyle::Folder => "Folder",
            ParStyle::Python => "Python",
            ParStyle::OP => "OP",
            ParStyle::COMP => "COMP",
            ParStyle::CHOP => "CHOP",
            ParStyle::DAT => "DAT",
            ParStyle::Header => "Header",
        }
    }

    /// The style TouchDesigner calls `name` (case-insensitive).
    pub fn parse(name: &str) -> Option<ParStyle> {
        ParStyle::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// Holds a number (Float, Int, the vector styles, Toggle, Momentary, Pulse).
    pub fn is_number(self) -> bool {
        !self.is_string() && self != ParStyle::Menu
    }

    /// Holds free text (Str, StrMenu, the file, Python and operator-reference styles, Header).
    pub fn is_string(self) -> bool {
        matches!(
            self,
            ParStyle::StrMenu
                | ParStyle::Str
                | ParStyle::File
                | ParStyle::FileSave
                | ParStyle::Folder
                | ParStyle::Python
                | ParStyle::OP
                | ParStyle::COMP
                | ParStyle::CHOP
                | ParStyle::DAT
                | ParStyle::Header
        )
    }

    /// A float that may take any value in its range (Float and the vector styles).
    pub fn is_float(self) -> bool {
        matches!(
            self,
            ParStyle::Float
                | ParStyle::XY
                | ParStyle::XYZ
                | ParStyle::XYZW
                | ParStyle::UV
                | ParStyle::UVW
                | ParStyle::WH
                | ParStyle::RGB
                | ParStyle::RGBA
        )
    }

    /// On or off (Toggle, Momentary).
    pub fn is_switch(self) -> bool {
        matches!(self, ParStyle::Toggle | ParStyle::Momentary)
    }

    /// The suffixes of a group's parameters (`Pos` → `Posx Posy Posz`), TouchDesigner's names
    /// for the vector styles; `None` for styles named `Base1`…`BaseN`.
    pub fn suffixes(self) -> Option<&'static [&'static str]> {
        Some(match self {
            ParStyle::XY => &["x", "y"],
            ParStyle::XYZ => &["x", "y", "z"],
            ParStyle::XYZW => &["x", "y", "z", "w"],
            ParStyle::UV => &["u", "v"],
            ParStyle::UVW => &["u", "v", "w"],
            ParStyle::WH => &["w", "h"],
            ParStyle::RGB => &["r", "g", "b"],
            ParStyle::RGBA => &["r", "g", "b", "a"],
            _ => return None,
        })
    }
}

/// How a parameter gets its value (TouchDesigner's `ParMode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ParMode {
    /// Its own value.
    #[default]
    Constant,
    /// A Python expression (`expr`), evaluated when the parameter is read.
    Expression,
    /// Driven by an export.
    Export,
    /// Follows another parameter (`bind_expr` names it) and writes go to that one.
    Bind,
}

impl ParMode {
    /// The `ParMode` member's name.
    pub fn name(self) -> &'static str {
        match self {
            ParMode::Constant => "CONSTANT",
            ParMode::Expression => "EXPRESSION",
            ParMode::Export => "EXPORT",
            ParMode::Bind => "BIND",
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
    /// A separator line above the parameter in TouchDesigner's dialog; kept so scripts that
    /// read it back (component-editor code) see what they set.
    pub start_section: bool,
    /// Shown but not settable from outside (statistics, headers); the operator itself sets it.
    pub read_only: bool,
    pub mode: ParMode,
    /// The expression of `ParMode::Expression` (kept when the mode changes, as TouchDesigner
    /// keeps it).
    pub expr: String,
    /// The parameter reference of `ParMode::Bind` (`parent().par.Gain`).
    pub bind_expr: String,
    /// `Par.enable` and `Par.enableExpr`: whether TouchDesigner's dialog greys it out. Kept for
    /// scripts that read them back; nothing headless depends on them.
    pub enable: bool,
    pub enable_expr: String,
    /// Still holding the value it was created with (nothing set, kept, restored or given by
    /// the config): `p.default = 2` right after `appendFloat` then moves the value too, which
    /// setup code that sets only `default` relies on.
    pub fresh: bool,
}

impl ParDef {
    fn new(name: &str, label: &str, style: ParStyle, page: &str, group: &str) -> ParDef {
        let default = if style.is_number() {
            ParValue::Float(0.0)
        } else {
            ParValue::Str(String::new())
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
            start_section: false,
            read_only: style == ParStyle::Header,
            mode: ParMode::Constant,
            expr: String::new(),
            bind_expr: String::new(),
            enable: true,
            enable_expr: String::new(),
            fresh: true,
        }
    }

    /// A built-in parameter of a kind (lowercase TouchDesigner names such as `gain` or
    /// `value0`, which custom parameters may not use), on the page `page`, holding `default`.
    pub fn builtin(name: &str, style: ParStyle, page: &str, default: ParValue) -> ParDef {
        let mut d = ParDef::new(name, name, style, page, name);
        if let Ok(v) = d.coerce(&default) {
            d.val = v.clone();
            d.default = v;
        }
        d
    }

    /// A built-in Float parameter.
    pub fn float(name: &str, page: &str, default: f64) -> ParDef {
        ParDef::builtin(name, ParStyle::Float, page, ParValue::Float(default))
    }

    /// A built-in Int parameter.
    pub fn int(name: &str, page: &str, default: i64) -> ParDef {
        ParDef::builtin(name, ParStyle::Int, page, ParValue::Float(default as f64))
    }

    /// A built-in Toggle parameter.
    pub fn toggle(name: &str, page: &str, on: bool) -> ParDef {
        ParDef::builtin(
            name,
            ParStyle::Toggle,
            page,
            ParValue::Float(on as u8 as f64),
        )
    }

    /// A built-in Pulse parameter.
    pub fn pulse(name: &str, page: &str) -> ParDef {
        ParDef::builtin(name, ParStyle::Pulse, page, ParValue::Float(0.0))
    }

    /// A built-in Str parameter.
    pub fn string(name: &str, page: &str, default: &str) -> ParDef {
        ParDef::builtin(
            name,
            ParStyle::Str,
            page,
            ParValue::Str(default.to_string()),
        )
    }

    /// A built-in Menu parameter with its tokens (`menuNames`); the labels are the tokens until
    /// [`ParDef::labels`] says otherwise.
    pub fn menu(name: &str, page: &str, tokens: &[&str], default: &str) -> ParDef {
        let mut d = ParDef::new(name, name, ParStyle::Menu, page, name);
        d.menu_names = tokens.iter().map(|t| t.to_string()).collect();
        d.menu_labels = d.menu_names.clone();
        let v = ParValue::Str(default.to_string());
        d.val = v.clone();
        d.default = v;
        d
    }

    /// Sets the label (TouchDesigner's dialog text).
    pub fn label(mut self, label: &str) -> ParDef {
        self.label = label.to_string();
        self
    }

    /// Sets the menu labels.
    pub fn labels(mut self, labels: &[&str]) -> ParDef {
        self.menu_labels = labels.iter().map(|t| t.to_string()).collect();
        self
    }

    /// Sets the slider range (`normMin`/`normMax` and `min`/`max`) without clamping.
    pub fn range(mut self, min: f64, max: f64) -> ParDef {
        (self.min, self.max, self.norm_min, self.norm_max) = (min, max, min, max);
        self
    }

    /// Clamps values below `min`.
    pub fn clamp_min(mut self, min: f64) -> ParDef {
        self.min = min;
        self.clamp_min = true;
        self
    }

    /// Clamps values above `max`.
    pub fn clamp_max(mut self, max: f64) -> ParDef {
        self.max = max;
        self.clamp_max = true;
        self
    }

    /// Marks the parameter read-only (set by its operator, shown to everyone).
    pub fn read_only(mut self) -> ParDef {
        self.read_only = true;
        self
    }

    /// Sets the default; a fresh parameter's value follows it.
    pub fn set_default(&mut self, v: &ParValue) -> Result<(), String> {
        let v = self.coerce(v)?;
        if self.fresh {
            self.val = v.clone();
        }
        self.default = v;
        Ok(())
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
            s if s.is_float() || s == ParStyle::Int => {
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
            s if s.is_switch() => ParValue::Float(if num(v)? != 0.0 { 1.0 } else { 0.0 }),
            ParStyle::Pulse => ParValue::Float(0.0),
            s if s.is_string() => ParValue::Str(match v {
                ParValue::Str(s) => s.clone(),
                ParValue::Float(f) => fmt_num(*f),
            }),
            _ => {
                // Menu: a token, or an index into the tokens.
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

    /// Replaces the menu entries. A menu whose value or default is no longer an entry falls back
    /// to the first entry, so it never holds a name the menu cannot show.
    pub fn set_menu_names(&mut self, names: Vec<String>) {
        if self.style == ParStyle::Menu {
            if let ParValue::Str(cur) = &self.val {
                if !names.contains(cur) {
                    self.val = ParValue::Str(names.first().cloned().unwrap_or_default());
                }
            }
            if let ParValue::Str(def) = &self.default {
                if !names.contains(def) {
                    self.default = ParValue::Str(names.first().cloned().unwrap_or_default());
                }
            }
        }
        self.menu_names = names;
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

/// A number as TouchDesigner shows a whole value: `3`, not `3.0`.
pub fn fmt_num(f: f64) -> String {
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
    /// Expressions and bindings from the config, by parameter name.
    init_modes: HashMap<String, (ParMode, String)>,
    /// Parameters whose value was set while running, with the config's value for each at that
    /// moment: what a rebuild and a restart bring back.
    runtime: BTreeMap<String, Option<ParValue>>,
    /// Set while `onSetupParameters` runs: the values it sets are the script's defaults, which
    /// a new version of the script may change, not a technician's choice to keep.
    pub setting_up: bool,
}

impl ParSet {
    /// The built-in parameters of a kind, in the order given; their pages in order of first use.
    pub fn builtin(defs: Vec<ParDef>) -> ParSet {
        let mut set = ParSet::default();
        for d in &defs {
            if !set.pages.contains(&d.page) {
                set.pages.push(d.page.clone());
            }
        }
        set.pars = defs;
        set
    }

    /// A parameter's value as a number (0 when there is no such parameter; a menu's index).
    pub fn num(&self, name: &str) -> f64 {
        self.get(name).map_or(0.0, ParDef::num)
    }

    /// A parameter's value as text (a menu's token; empty when there is no such parameter).
    pub fn text(&self, name: &str) -> &str {
        match self.get(name).map(|d| &d.val) {
            Some(ParValue::Str(s)) => s,
            _ => "",
        }
    }

    /// Sets the initial values from the config (`Color = [1, 0, 0]` gives `Color1`…`Color3`).
    pub fn set_init(&mut self, pars: &[(String, ParValue)]) {
        self.init.extend(pars.iter().cloned());
    }

    /// Sets expressions and bindings from the config (`Gain = { expr = "…" }`).
    pub fn set_init_modes(&mut self, modes: &[(String, ParMode, String)]) {
        self.init_modes
            .extend(modes.iter().map(|(n, m, e)| (n.clone(), (*m, e.clone()))));
    }

    /// Config values that name no parameter (reported after `onSetupParameters`).
    pub fn unknown_inits(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .init
            .keys()
            .chain(self.init_modes.keys())
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
    /// `size` is more than 1, else `base`; a vector style names its members by its suffixes
    /// (`Posx Posy Posz` for XYZ, `Colorr`…`Colora` for RGBA) whatever `size` says. An existing parameter of the same name is replaced
    /// (`replace`) keeping its value, or refused. Returns the parameter names.
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
        let names: Vec<String> = match style.suffixes() {
            Some(sfx) => sfx.iter().map(|x| format!("{base}{x}")).collect(),
            None if size == 1 => vec![base.to_string()],
            None => (1..=size).map(|i| format!("{base}{i}")).collect(),
        };
        for n in &names {
            if !replace && self.get(n).is_some() {
                return Err(format!(
                    "parameter \"{n}\" already exists (pass replace=True)"
                ));
            }
        }
        if style.suffixes().is_some() {
            // `Pos = [1, 2, 3]` in the config reads as Pos1…Pos3; this group calls them Posx….
            for (i, n) in names.iter().enumerate() {
                if let Some(v) = self.init.remove(&format!("{base}{}", i + 1)) {
                    self.init.entry(n.clone()).or_insert(v);
                }
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
                    def.fresh = false;
                }
            }
            if let Some((mode, text)) = self.init_modes.get(n) {
                def.mode = *mode;
                match mode {
                    ParMode::Bind => def.bind_expr = text.clone(),
                    _ => def.expr = text.clone(),
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
            .ok_or_else(|| format!("no parameter \"{name}\""))?;
        if def.read_only {
            return Err(format!("parameter \"{name}\" is read-only"));
        }
        match def.mode {
            ParMode::Expression => {
                return Err(format!(
                    "parameter \"{name}\" is driven by its expression \"{}\"",
                    def.expr
                ))
            }
            ParMode::Bind => {
                return Err(format!(
                    "parameter \"{name}\" is bound to \"{}\"; set that one",
                    def.bind_expr
                ))
            }
            _ => {}
        }
        let v = def.coerce(v)?;
        def.fresh = false;
        if def.val == v {
            return Ok(false);
        }
        def.val = v;
        let pulse = def.style == ParStyle::Pulse;
        self.version += 1;
        if !self.setting_up && !pulse {
            let config = self.init.get(name).cloned();
            self.runtime.insert(name.to_string(), config);
        }
        Ok(true)
    }

    /// Every value set while running (a destroyed parameter's remembered value included).
    pub fn runtime_values(&self) -> Vec<(String, KeptPar)> {
        self.runtime
            .iter()
            .filter_map(|(name, config)| {
                let value = match self.get(name) {
                    Some(d) => d.val.clone(),
                    None => self.saved.get(name)?.clone(),
                };
                let config = config.clone();
                Some((name.clone(), KeptPar { value, config }))
            })
            .collect()
    }

    /// Brings back values [`ParSet::runtime_values`] gave, unless the config's value for a
    /// parameter changed since (the edit wins). A parameter that does not exist yet gets its
    /// value when it is created; one whose value no longer fits its style keeps what it has.
    pub fn restore(&mut self, kept: &[(String, KeptPar)]) {
        for (name, k) in kept {
            if self.init.get(name) != k.config.as_ref() {
                continue;
            }
            match self.pars.iter_mut().find(|p| p.name == *name) {
                Some(def) => match def.coerce(&k.value) {
                    Ok(v) if def.style != ParStyle::Pulse => {
                        def.val = v;
                        def.fresh = false;
                        self.version += 1;
                    }
                    _ => continue,
                },
                None => {
                    self.saved.insert(name.clone(), k.value.clone());
                }
            }
            self.runtime.insert(name.clone(), k.config.clone());
        }
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
            .ok_or_else(|| format!("no parameter \"{name}\""))?;
        let r = f(def);
        self.version += 1;
        Ok(r)
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
            ("Speed".into(), ParValue::Float(2.5)),
            ("Color1".into(), ParValue::Float(1.0)),
            ("Color2".into(), ParValue::Float(0.5)),
            ("Color3".into(), ParValue::Float(0.0)),
            ("Nope".into(), ParValue::Float(1.0)),
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
    fn runtime_values_come_back_unless_the_config_changed_them() {
        let mut set = ParSet::default();
        set.set_init(&[("Gain".into(), ParValue::Float(0.5))]);
        set.add_page("P");
        set.setting_up = true;
        for n in ["Gain", "Speed", "Later"] {
            set.append("P", n, ParStyle::Float, None, 1, true).unwrap();
        }
        set.set("Speed", &ParValue::Float(3.0)).unwrap();
        set.setting_up = false;
        assert!(
            set.runtime_values().is_empty(),
            "onSetupParameters' values are defaults"
        );
        set.set("Gain", &ParValue::Float(0.8)).unwrap();
        set.set("Speed", &ParValue::Float(4.0)).unwrap();
        set.set("Later", &ParValue::Float(9.0)).unwrap();
        let kept = set.runtime_values();
        assert_eq!(kept.len(), 3);
        assert_eq!(kept[0].1.config, Some(ParValue::Float(0.5)));

        let mut fresh = ParSet::default();
        fresh.set_init(&[("Gain".into(), ParValue::Float(0.5))]);
        fresh.add_page("P");
        fresh
            .append("P", "Gain", ParStyle::Float, None, 1, true)
            .unwrap();
        fresh
            .append("P", "Speed", ParStyle::Float, None, 1, true)
            .unwrap();
        fresh.restore(&kept);
        assert_eq!(fresh.get("Gain").unwrap().val, ParValue::Float(0.8));
        assert_eq!(fresh.get("Speed").unwrap().val, ParValue::Float(4.0));
        fresh
            .append("P", "Later", ParStyle::Float, None, 1, true)
            .unwrap();
        assert_eq!(
            fresh.get("Later").unwrap().val,
            ParValue::Float(9.0),
            "created after the restore"
        );
        assert_eq!(fresh.runtime_values(), kept);

        let mut edited = ParSet::default();
        edited.set_init(&[("Gain".into(), ParValue::Float(0.25))]);
        edited.add_page("P");
        edited
            .append("P", "Gain", ParStyle::Float, None, 1, true)
            .unwrap();
        edited.restore(&kept);
        assert_eq!(
            edited.get("Gain").unwrap().val,
            ParValue::Float(0.25),
            "the config's edit wins"
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
    #[test]
    fn a_fresh_parameter_follows_its_default_a_set_or_kept_one_does_not() {
        let mut set = ParSet::default();
        set.set_init(&[("Given".into(), ParValue::Float(0.5))]);
        set.add_page("P");
        for n in ["Gain", "Speed", "Given"] {
            set.append("P", n, ParStyle::Float, None, 1, true).unwrap();
        }
        set.set("Speed", &ParValue::Float(5.0)).unwrap();
        for n in ["Gain", "Speed", "Given"] {
            set.edit(n, |d| d.set_default(&ParValue::Float(2.0)))
                .unwrap()
                .unwrap();
        }
        assert_eq!(set.get("Gain").unwrap().val, ParValue::Float(2.0));
        assert_eq!(set.get("Speed").unwrap().val, ParValue::Float(5.0));
        assert_eq!(
            set.get("Given").unwrap().val,
            ParValue::Float(0.5),
            "config wins"
        );
        set.destroy_all();
        set.add_page("P");
        set.append("P", "Gain", ParStyle::Float, None, 1, true)
            .unwrap();
        set.edit("Gain", |d| d.set_default(&ParValue::Float(3.0)))
            .unwrap()
            .unwrap();
        assert_eq!(
            set.get("Gain").unwrap().val,
            ParValue::Float(2.0),
            "a re-created parameter keeps its value"
        );
    }

    #[test]
    fn new_menu_names_move_a_stale_value_and_default_to_the_first_entry() {
        let mut set = ParSet::default();
        set.add_page("P");
        set.append("P", "Mode", ParStyle::Menu, None, 1, true)
            .unwrap();
        set.edit("Mode", |d| {
            d.set_menu_names(vec!["sine".into(), "saw".into()])
        })
        .unwrap();
        let d = set.get("Mode").unwrap();
        assert_eq!(d.val, ParValue::Str("sine".into()));
        assert_eq!(d.default, ParValue::Str("sine".into()));
        set.set("Mode", &ParValue::Str("saw".into())).unwrap();
        set.edit("Mode", |d| {
            d.set_menu_names(vec!["saw".into(), "square".into()])
        })
        .unwrap();
        let d = set.get("Mode").unwrap();
        assert_eq!(
            d.val,
            ParValue::Str("saw".into()),
            "a value still in the menu stays"
        );
        assert_eq!(d.default, ParValue::Str("saw".into()));
        assert_eq!(d.num(), 0.0);
    }
}
