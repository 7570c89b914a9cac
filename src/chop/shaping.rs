//! What the shaping kinds (math, lag, limit, filter, logic, trigger, speed, slope, count, hold,
//! delay, trail) share: TouchDesigner's parameters read from `pars = { … }` and checked against
//! the kind's [`ParDef`]s (an unknown name or menu token is an error at its `file:line:col` with a
//! did-you-mean), the operator around a kind's cook ([`ShapeOp`]: parameters settable from the
//! control port, exports and scripts, kept across reloads; output never holding NaN or
//! infinity), and the per-channel bookkeeping of stateful filters ([`Chans`]: state by channel
//! name, scope decided once per layout).
//!
//! Time: a shaping kind follows its input 0. A time-sliced input gives one step per sample; an
//! input that is not gives one step per cook, `frame.step` frames long (longer after dropped
//! frames), and one output sample.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::rc::Rc;

use serde::Deserialize;
use toml::Spanned;

use crate::config::diag::suggestion;
use crate::config::refs::OpRefs;
use crate::config::{Checker, OperatorConfig, Settings};
use crate::cook::par::{ParDef, ParSet, ParStyle};
use crate::cook::{
    match_rates, BuildCtx, ChopData, CookCtx, CookError, Frame, KeptPar, KeptPars, NodeState,
    Operator, ParValue, SrSelect,
};
use crate::pattern::Pattern;
use crate::python::registry::{self, ScriptShared, ScriptState};

/// One shaping kind: its TouchDesigner parameters and its cook.
pub trait Shape: Default + 'static {
    /// The kind's `type`.
    const NAME: &'static str;
    /// The built-in parameters, with TouchDesigner's names, pages, defaults and menus.
    fn defs() -> Vec<ParDef>;
    /// Reads the typed values out of `pars` (called on the first cook and after any change).
    fn configure(&mut self, pars: &ParSet);
    /// Computes `out` from the inputs (already at one sample rate).
    fn cook(&mut self, cx: &ShapeCx, out: &mut ChopData) -> Result<(), CookError>;
    /// A pulse parameter was pressed (`reset`…); the default operator forgets its state.
    fn pulse(&mut self, name: &str) {
        if name == "resetpulse" {
            self.reset();
        }
    }
    /// Forgets every channel's state.
    fn reset(&mut self) {}
    /// Must cook this frame even with unchanged inputs (a lag still moving, a trigger's
    /// envelope, a speed integrating).
    fn busy(&self) -> bool {
        false
    }
    /// Its output depends on time (a step's length, state that moves between frames): it cooks
    /// on the clock only, never between frames (`react`). Default: it does.
    const TIMED: bool = true;
}

/// What a shaping cook sees.
pub struct ShapeCx<'a> {
    pub frame: &'a Frame,
    /// The inputs, resampled to one rate as `srselect` says.
    pub inputs: Vec<Cow<'a, ChopData>>,
    /// Input 0 is time-sliced: every sample is one step.
    pub sliced: bool,
    pub scope: &'a Pattern,
}

impl ShapeCx<'_> {
    /// The length of one step, in seconds: a sample of a time-sliced input, else the frames
    /// since the last cook.
    pub fn dt(&self) -> f64 {
        match (self.sliced, self.inputs.first()) {
            (true, Some(i)) if i.rate > 0.0 => 1.0 / i.rate,
            _ => self.frame.step_seconds(),
        }
    }

    /// Output length: input 0's when it is time-sliced, else one sample.
    pub fn out_len(&self) -> usize {
        match (self.sliced, self.inputs.first()) {
            (true, Some(i)) => i.num_samples(),
            _ => 1,
        }
    }

    /// Sample `j` of the step samples of channel `c` of input `k` (its last when not sliced).
    pub fn sample(&self, k: usize, c: usize, j: usize) -> f32 {
        let d = &self.inputs[k];
        let ch = d.chan(c);
        if self.sliced {
            ch[j.min(ch.len() - 1)]
        } else {
            ch[ch.len() - 1]
        }
    }
}

/// Gives `out` the channel names of `names` (rebuilding only when they differ), `len` samples,
/// and input 0's rate and start.
pub fn layout(out: &mut ChopData, names: &[String], len: usize, like: Option<&ChopData>) {
    if out.names() != names {
        out.clear();
        for n in names {
            out.append_chan(n);
        }
    }
    out.set_num_samples(len);
    if let Some(i) = like {
        out.rate = i.rate;
        out.start = i.end() + 1 - len as i64;
    }
}

/// The layout ids of an operator's input 0 and output at its last cook: while both are the
/// same, the output already has the input's channels and nothing needs comparing.
#[derive(Debug, Default)]
pub struct Layout {
    input: u64,
    out: u64,
}

impl Layout {
    /// Gives `out` input 0's channels (compared and rebuilt only when a layout changed), `len`
    /// samples, and the input's rate and end.
    pub fn fit(&mut self, out: &mut ChopData, input: &ChopData, len: usize) {
        if self.input != input.layout_id() || self.out != out.layout_id() {
            layout(out, input.names(), len, Some(input));
            (self.input, self.out) = (input.layout_id(), out.layout_id());
        } else {
            out.set_num_samples(len);
            out.rate = input.rate;
            out.start = input.end() + 1 - len as i64;
        }
    }
}

/// Per-channel state of a filter over input 0, by channel name: kept when channels move or
/// come and go, with the scope decided once per layout.
#[derive(Debug, Default)]
pub struct Chans<S> {
    names: Vec<String>,
    /// Layout id of the input `names` were taken from.
    of: u64,
    pub states: Vec<S>,
    pub scoped: Vec<bool>,
    /// Every channel is in scope.
    pub all: bool,
    pub layout: Layout,
}

impl<S: Default> Chans<S> {
    /// Follows `input`'s channels; a channel of a known name keeps its state, a new one starts
    /// from `S::default()`.
    pub fn follow(&mut self, input: &ChopData, scope: &Pattern) {
        if self.of == input.layout_id() && self.states.len() == input.num_chans() {
            return;
        }
        self.of = input.layout_id();
        if self.names.as_slice() == input.names() {
            return;
        }
        let mut old: HashMap<String, S> = self.names.drain(..).zip(self.states.drain(..)).collect();
        self.names = input.names().to_vec();
        self.states = self
            .names
            .iter()
            .map(|n| old.remove(n).unwrap_or_default())
            .collect();
        self.scoped = self.names.iter().map(|n| scope.matches(n)).collect();
        self.all = self.scoped.iter().all(|&s| s);
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn clear(&mut self) {
        self.names.clear();
        self.states.clear();
        self.scoped.clear();
        self.of = 0;
    }
}

/// Runs a per-sample filter over input 0: `f(state, x, dt)` gives each output sample of a
/// channel in scope; channels outside it pass through. The output has input 0's channels.
pub fn run_filter<S: Default>(
    cx: &ShapeCx,
    chans: &mut Chans<S>,
    out: &mut ChopData,
    mut f: impl FnMut(&mut S, f32, f64) -> f32,
) {
    let Some(input) = cx.inputs.first() else {
        out.clear();
        return;
    };
    chans.follow(input, cx.scope);
    let len = cx.out_len();
    chans.layout.fit(out, input, len);
    let dt = cx.dt();
    if len == 1 && input.num_samples() == 1 && chans.all {
        // One sample a channel, every channel in scope: one flat pass.
        for ((o, &x), st) in out
            .samples_mut()
            .iter_mut()
            .zip(input.samples())
            .zip(&mut chans.states)
        {
            *o = f(st, x, dt);
        }
        return;
    }
    for c in 0..input.num_chans() {
        let src = input.chan(c);
        let dst = out.chan_mut(c);
        if !chans.scoped[c] {
            dst.copy_from_slice(&src[src.len() - len..]);
            continue;
        }
        let st = &mut chans.states[c];
        let from = src.len() - len;
        for (d, &x) in dst.iter_mut().zip(&src[from..]) {
            *d = f(st, x, dt);
        }
    }
}

/// Clamp, loop or zigzag `x` into `min..max` (the Limit CHOP's types, also used by Count and
/// Speed). `kind`: 0 off, 1 clamp, 2 loop, 3 zigzag.
pub fn limit(x: f64, kind: u8, min: f64, max: f64) -> f64 {
    let (lo, hi) = if min <= max { (min, max) } else { (max, min) };
    let span = hi - lo;
    match kind {
        1 => x.clamp(lo, hi),
        2 if span > 0.0 => lo + (x - lo).rem_euclid(span),
        3 if span > 0.0 => {
            let t = (x - lo).rem_euclid(2.0 * span);
            lo + if t > span { 2.0 * span - t } else { t }
        }
        2 | 3 => lo,
        _ => x,
    }
}

/// The tokens of the limit types, in [`limit`]'s order.
pub const LIMIT_TYPES: &[&str] = &["off", "clamp", "loop", "zigzag"];

/// The keys of a shaping operator: TouchDesigner's parameters in `pars`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, bound = "")]
pub struct Raw<S> {
    pars: Option<Spanned<BTreeMap<Spanned<String>, Spanned<toml::Value>>>>,
    #[serde(skip)]
    _kind: PhantomData<fn() -> S>,
}

impl<S> std::fmt::Debug for Raw<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Raw").field("pars", &self.pars).finish()
    }
}

/// The schema lists every parameter of the kind, with its label, page, default and menu tokens.
impl<S: Shape> schemars::JsonSchema for Raw<S> {
    fn schema_name() -> Cow<'static, str> {
        format!("{}Raw", S::NAME).into()
    }

    fn json_schema(_g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut props = serde_json::Map::new();
        for d in S::defs() {
            let mut p = serde_json::Map::new();
            p.insert(
                "description".into(),
                format!("{} ({} page)", d.label, d.page).into(),
            );
            match d.style {
                ParStyle::Menu => {
                    p.insert("enum".into(), d.menu_names.clone().into());
                }
                ParStyle::Toggle => {
                    p.insert("type".into(), serde_json::json!(["boolean", "number"]));
                }
                ParStyle::Str => {
                    p.insert("type".into(), "string".into());
                }
                _ => {
                    p.insert("type".into(), "number".into());
                }
            }
            if d.style != ParStyle::Pulse {
                p.insert(
                    "default".into(),
                    match &d.default {
                        ParValue::Float(f) if d.style == ParStyle::Toggle => (*f != 0.0).into(),
                        ParValue::Float(f) => (*f).into(),
                        ParValue::Str(s) => s.clone().into(),
                    },
                );
                props.insert(d.name.clone(), p.into());
            }
        }
        let pars = serde_json::json!({
            "type": "object",
            "description": "TouchDesigner parameters of the CHOP, by name (a list sets a parameter's members: lag = [0.2, 1] is lag1 and lag2)",
            "additionalProperties": false,
            "properties": props,
        });
        serde_json::json!({
            "type": "object",
            "additionalProperties": false,
            "properties": { "pars": pars },
        })
        .try_into()
        .expect("an object schema")
    }
}

/// The checked settings of a shaping operator: parameter values from the config, coerced.
pub struct ShapeConfig<S> {
    pub pars: Vec<(String, ParValue)>,
    _kind: PhantomData<fn() -> S>,
}

impl<S> PartialEq for ShapeConfig<S> {
    fn eq(&self, other: &Self) -> bool {
        self.pars == other.pars
    }
}

impl<S> std::fmt::Debug for ShapeConfig<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShapeConfig")
            .field("pars", &self.pars)
            .finish()
    }
}

impl<S> Clone for ShapeConfig<S> {
    fn clone(&self) -> Self {
        ShapeConfig {
            pars: self.pars.clone(),
            _kind: PhantomData,
        }
    }
}

impl<S> ShapeConfig<S> {
    pub fn new(pars: Vec<(String, ParValue)>) -> ShapeConfig<S> {
        ShapeConfig {
            pars,
            _kind: PhantomData,
        }
    }
}

/// Checks `pars` against the kind's parameters: each name must be one of them (a list or a
/// single number on a group's base name sets its members), each value must fit its style.
pub fn check<S: Shape>(cx: &mut Checker, r: Raw<S>, _refs: &mut OpRefs) -> Option<ShapeConfig<S>> {
    let defs = S::defs();
    let mut pars = Vec::new();
    let Some(table) = r.pars else {
        return Some(ShapeConfig::new(pars));
    };
    for (key, value) in table.into_inner() {
        let name = key.get_ref().as_str();
        let members: Vec<&ParDef> = match defs.iter().find(|d| d.name == name) {
            Some(d) => vec![d],
            None => (1..=4)
                .map_while(|i| defs.iter().find(|d| d.name == format!("{name}{i}")))
                .collect(),
        };
        if members.is_empty() {
            let names = defs.iter().map(|d| d.name.as_str());
            cx.d.error(
                key.span(),
                format!(
                    "{} has no parameter \"{name}\"{}",
                    S::NAME,
                    suggestion(name, names)
                ),
            );
            continue;
        }
        let values: Vec<ParValue> = match value.get_ref() {
            toml::Value::Array(a) if members.len() > 1 => a.iter().filter_map(to_parval).collect(),
            v => match to_parval(v) {
                Some(p) => vec![p; members.len()],
                None => Vec::new(),
            },
        };
        if values.len() != members.len() {
            let what = if members.len() > 1 {
                format!("a number or a list of {} numbers", members.len())
            } else {
                "a number, a boolean or a string".to_string()
            };
            cx.d.error(value.span(), format!("parameter \"{name}\" must be {what}"));
            continue;
        }
        for (d, v) in members.into_iter().zip(values) {
            if d.style == ParStyle::Pulse || d.read_only {
                cx.d.error(
                    key.span(),
                    format!(
                        "parameter \"{}\" of {} cannot be set in the config",
                        d.name,
                        S::NAME
                    ),
                );
                continue;
            }
            match d.coerce(&v) {
                Ok(v) => pars.push((d.name.clone(), v)),
                Err(e) => {
                    let hint = match &v {
                        ParValue::Str(s) if d.style == ParStyle::Menu => {
                            suggestion(s, d.menu_names.iter().map(String::as_str))
                        }
                        _ => String::new(),
                    };
                    cx.d.error(value.span(), format!("{e}{hint}"));
                }
            }
        }
    }
    Some(ShapeConfig::new(pars))
}

fn to_parval(v: &toml::Value) -> Option<ParValue> {
    match v {
        toml::Value::Boolean(b) => Some(ParValue::Float(f64::from(u8::from(*b)))),
        toml::Value::Integer(i) => Some(ParValue::Float(*i as f64)),
        toml::Value::Float(f) => Some(ParValue::Float(*f)),
        toml::Value::String(s) => Some(ParValue::Str(s.clone())),
        _ => None,
    }
}

impl<S: Shape> Settings for ShapeConfig<S> {
    fn build(&self, op: &OperatorConfig, cx: &BuildCtx) -> Result<Box<dyn Operator>, String> {
        Ok(Box::new(ShapeOp::<S>::new(op, cx.rate, &self.pars)))
    }
}

/// The running operator of every shaping kind. Its parameters are registered under the
/// operator's name in the Python registry, so a script reads and writes `op('lag1').par.lag1`
/// as it does a Script CHOP's; the control port and exports come in through `set_par`.
pub struct ShapeOp<S> {
    shared: ScriptState,
    /// `pars.version` the shape was last configured with.
    seen: Option<u64>,
    shape: S,
    scope: Pattern,
    srselect: SrSelect,
    /// Last finite value of each output channel, by index (what replaces a NaN).
    good: Vec<f32>,
}

impl<S: Shape> ShapeOp<S> {
    pub fn new(op: &OperatorConfig, rate: f64, init: &[(String, ParValue)]) -> ShapeOp<S> {
        let mut shared = ScriptShared::new(&op.name, false, op.timeslice, rate);
        let mut pars = ParSet::builtin(S::defs());
        pars.set_init(init);
        pars.setting_up = true;
        for (name, v) in init {
            // Checked already: every name exists and every value fits.
            if let Err(e) = pars.set(name, v) {
                tracing::warn!("parameter {name}: {e}");
            }
        }
        pars.setting_up = false;
        shared.pars = pars;
        let shared = Rc::new(RefCell::new(shared));
        registry::register(&shared);
        ShapeOp {
            shared,
            seen: None,
            shape: S::default(),
            scope: op.scope.clone(),
            srselect: op.srselect,
            good: Vec::new(),
        }
    }

    /// Replaces NaN and infinity with the channel's last finite value (0 at first); returns
    /// how many were replaced. The common case, all finite, is one pass over the samples.
    fn sanitize(&mut self, out: &mut ChopData) -> usize {
        let (chans, len) = (out.num_chans(), out.num_samples());
        if out.samples().iter().all(|v| v.is_finite()) {
            self.good.clear();
            if len == 1 {
                self.good.extend_from_slice(out.samples());
            } else {
                self.good.extend((0..chans).map(|c| out.last(c)));
            }
            return 0;
        }
        self.good.resize(chans, 0.0);
        let mut bad = 0;
        for c in 0..chans {
            let held = &mut self.good[c];
            for v in out.chan_mut(c) {
                if v.is_finite() {
                    *held = *v;
                } else {
                    *v = *held;
                    bad += 1;
                }
            }
        }
        bad
    }
}

impl<S> Drop for ShapeOp<S> {
    fn drop(&mut self) {
        registry::unregister(&self.shared);
    }
}

impl<S: Shape> Operator for ShapeOp<S> {
    fn wants_cook(&mut self, _frame: &Frame, _nodes: &[NodeState]) -> bool {
        let s = self.shared.borrow();
        self.seen != Some(s.pars.version) || !s.pending_pulses.is_empty() || self.shape.busy()
    }

    fn time_dependent(&self) -> bool {
        S::TIMED
    }

    fn cook(&mut self, ctx: &mut CookCtx, out: &mut ChopData) -> Result<(), CookError> {
        let pulses = {
            let mut s = self.shared.borrow_mut();
            if self.seen != Some(s.pars.version) {
                self.shape.configure(&s.pars);
                self.seen = Some(s.pars.version);
            }
            std::mem::take(&mut s.pending_pulses)
        };
        for p in pulses {
            self.shape.pulse(&p);
        }
        let sliced = ctx.nodes[ctx.me]
            .inputs
            .first()
            .is_some_and(|&i| ctx.nodes[i].timeslice);
        let result = {
            let inputs = ctx.inputs();
            let inputs = match_rates(&inputs, self.srselect)?;
            let cx = ShapeCx {
                frame: ctx.frame,
                inputs,
                sliced,
                scope: &self.scope,
            };
            self.shape.cook(&cx, out)
        };
        ctx.state().timeslice = sliced;
        result?;
        if self.sanitize(out) > 0 {
            ctx.state().stats.warnings += 1;
        }
        Ok(())
    }

    fn set_par(&mut self, name: &str, value: ParValue) -> Result<(), String> {
        let style = self.shared.borrow().pars.get(name).map(|d| d.style);
        match style {
            Some(ParStyle::Pulse) => {
                let on = match &value {
                    ParValue::Float(f) => *f != 0.0,
                    ParValue::Str(s) => !s.is_empty() && s != "0",
                };
                if on {
                    self.pulse_par(name)?;
                }
                Ok(())
            }
            Some(_) => self.shared.borrow_mut().pars.set(name, &value).map(drop),
            None => Err(format!("{} has no parameter \"{name}\"", S::NAME)),
        }
    }

    fn pulse_par(&mut self, name: &str) -> Result<(), String> {
        let mut s = self.shared.borrow_mut();
        match s.pars.get(name).map(|d| d.style) {
            Some(ParStyle::Pulse) => {
                s.pending_pulses.push(name.to_string());
                Ok(())
            }
            Some(_) => Err(format!(
                "parameter \"{name}\" of {} is not a pulse",
                S::NAME
            )),
            None => Err(format!("{} has no parameter \"{name}\"", S::NAME)),
        }
    }

    fn par_defs(&self) -> Vec<ParDef> {
        self.shared.borrow().pars.pars().to_vec()
    }

    fn runtime_pars(&self) -> KeptPars {
        self.shared.borrow().pars.runtime_values()
    }

    fn restore_pars(&mut self, pars: &[(String, KeptPar)]) {
        self.shared.borrow_mut().pars.restore(pars);
    }

    fn reset(&mut self) {
        self.shape.reset();
        self.good.clear();
        self.seen = None;
    }
}

/// Helpers for the kinds' unit tests: a graph-free cook of a shape over given inputs.
#[cfg(test)]
pub mod testing {
    use super::*;
    use std::time::Instant;

    pub fn frame(frame: i64, step: i64, rate: f64) -> Frame {
        let now = Instant::now();
        Frame {
            frame,
            step,
            rate,
            due: now,
            started: now,
        }
    }

    pub fn data(rate: f64, chans: &[(&str, &[f32])]) -> ChopData {
        let mut d = ChopData::new(rate);
        d.set_num_samples(chans.first().map_or(1, |c| c.1.len()));
        for (n, v) in chans {
            d.append_with(n, v);
        }
        d
    }

    /// A shape configured from `pars` (names and values as the config gives them).
    pub fn shape<S: Shape>(pars: &[(&str, ParValue)]) -> S {
        let mut set = ParSet::builtin(S::defs());
        for (n, v) in pars {
            set.set(n, v).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
        let mut s = S::default();
        s.configure(&set);
        s
    }

    /// One cook of `s` on `inputs` at `frame`; `sliced`: input 0 is time-sliced.
    pub fn cook<S: Shape>(s: &mut S, f: &Frame, inputs: &[&ChopData], sliced: bool) -> ChopData {
        let scope = Pattern::all();
        let cx = ShapeCx {
            frame: f,
            inputs: inputs.iter().map(|d| Cow::Borrowed(*d)).collect(),
            sliced,
            scope: &scope,
        };
        let mut out = ChopData::new(f.rate);
        s.cook(&cx, &mut out).unwrap();
        out
    }

    pub fn f(v: f64) -> ParValue {
        ParValue::Float(v)
    }

    pub fn s(v: &str) -> ParValue {
        ParValue::Str(v.to_string())
    }

    pub fn close(a: f32, b: f64) -> bool {
        (a as f64 - b).abs() < 1e-4
    }
}

/// One input's channels, each with its samples, as Math and Logic combine them.
pub type Named<T> = Vec<(String, Vec<T>)>;

/// TouchDesigner's "Combine CHOPs": with no operation or one input, every input's channels
/// side by side; otherwise channel by channel across the inputs, matched by name (the first
/// input's names) or by index (the widest input names them; narrower ones repeat), each sample
/// folded with `fold`.
pub fn combine_inputs<T: Copy>(
    per_input: Vec<Named<T>>,
    combine: bool,
    by_name: bool,
    len: usize,
    fold: impl Fn(&mut dyn Iterator<Item = T>) -> T,
) -> Named<T> {
    if !combine || per_input.len() < 2 {
        return per_input.into_iter().flatten().collect();
    }
    if by_name {
        return per_input[0]
            .iter()
            .map(|(name, v0)| {
                let others: Vec<&Vec<T>> = per_input[1..]
                    .iter()
                    .filter_map(|l| l.iter().find(|(n, _)| n == name).map(|(_, v)| v))
                    .collect();
                let v = (0..len)
                    .map(|j| fold(&mut std::iter::once(v0[j]).chain(others.iter().map(|o| o[j]))))
                    .collect();
                (name.clone(), v)
            })
            .collect();
    }
    let most = per_input.iter().map(Vec::len).max().unwrap_or(0);
    let namer = per_input.iter().position(|l| l.len() == most);
    (0..most)
        .map(|c| {
            let v = (0..len)
                .map(|j| {
                    fold(
                        &mut per_input
                            .iter()
                            .filter(|l| !l.is_empty())
                            .map(|l| l[c % l.len()].1[j]),
                    )
                })
                .collect();
            let name = namer.map_or(String::new(), |k| per_input[k][c].0.clone());
            (name, v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cook::DaemonStats;

    fn built(kind_and_pars: &str) -> (crate::config::OperatorConfig, Box<dyn Operator>) {
        let src = format!(
            "[[operator]]\nname = \"in\"\ntype = \"oscin\"\nport = 0\nlocal_address = \"127.0.0.1\"\n\
             [[operator]]\nname = \"op1\"\ninputs = [\"in\"]\n{kind_and_pars}\n"
        );
        let c = crate::config::check_str(std::path::Path::new("t.toml"), &src, crate::chop::KINDS)
            .unwrap();
        let cfg = c.operators[1].clone();
        let cx = BuildCtx {
            rate: 60.0,
            max_slice: std::time::Duration::from_millis(200),
            own_port: Default::default(),
            wake: Default::default(),
        };
        let op = cfg.settings.build(&cfg, &cx).unwrap();
        (cfg, op)
    }

    /// Cooks `op` once on an input of one channel `a` holding `x`; returns the output and the
    /// operator's warnings.
    fn cook_once(op: &mut dyn Operator, x: f32) -> (ChopData, u64) {
        let mut input = NodeState::new("in", "oscin", 60.0);
        input.output.append_with("a", &[x]);
        let mut me = NodeState::new("op1", "x", 60.0);
        me.inputs = vec![0];
        let mut nodes = vec![input, me];
        let names: HashMap<String, usize> = [("in".into(), 0), ("op1".into(), 1)].into();
        let daemon = DaemonStats::default();
        let f = testing::frame(1, 1, 60.0);
        let mut out = ChopData::new(60.0);
        let mut ctx = CookCtx {
            frame: &f,
            me: 1,
            nodes: &mut nodes,
            names: &names,
            daemon: &daemon,
        };
        op.cook(&mut ctx, &mut out).unwrap();
        (out, nodes[1].stats.warnings)
    }

    #[test]
    fn parameters_are_set_kept_and_restored_and_pulses_are_pulses() {
        let (_cfg, mut op) = built("type = \"lag\"\npars = { lag1 = 0.5 }");
        let val = |op: &dyn Operator, n: &str| {
            op.par_defs()
                .into_iter()
                .find(|d| d.name == n)
                .map(|d| d.val)
                .unwrap()
        };
        assert_eq!(val(op.as_ref(), "lag1"), ParValue::Float(0.5));
        assert!(
            op.runtime_pars().is_empty(),
            "the config's values are not runtime changes"
        );
        op.set_par("lag2", ParValue::Float(2.0)).unwrap();
        op.set_par("lag1", ParValue::Float(-3.0)).unwrap();
        assert_eq!(
            val(op.as_ref(), "lag1"),
            ParValue::Float(0.0),
            "clamped at 0"
        );
        assert!(op
            .set_par("lagmethod", ParValue::Str("mag".into()))
            .unwrap_err()
            .contains("no entry \"mag\""));
        assert!(op.set_par("gian", ParValue::Float(1.0)).is_err());
        assert!(op.pulse_par("lag1").unwrap_err().contains("not a pulse"));
        let kept = op.runtime_pars();
        let (_cfg, mut again) = built("type = \"lag\"\npars = { lag1 = 0.5 }");
        again.restore_pars(&kept);
        assert_eq!(val(again.as_ref(), "lag2"), ParValue::Float(2.0));
        assert!(again.wants_cook(&testing::frame(1, 1, 60.0), &[]));
        let (_cfg, mut count) = built("type = \"count\"");
        assert_eq!(cook_once(count.as_mut(), 1.0).0.chan(0), [1.0]);
        count.set_par("resetpulse", ParValue::Float(1.0)).unwrap();
        assert!(count.wants_cook(&testing::frame(2, 1, 60.0), &[]));
        assert_eq!(
            cook_once(count.as_mut(), 1.0).0.chan(0),
            [1.0],
            "counted again after the reset"
        );
    }

    #[test]
    fn nan_becomes_the_last_good_value_and_a_warning() {
        let (_cfg, mut op) = built("type = \"math\"\npars = { preop = \"inverse\" }");
        assert_eq!(cook_once(op.as_mut(), 0.5).0.chan(0), [2.0]);
        let (out, warnings) = cook_once(op.as_mut(), 0.0);
        assert_eq!((out.chan(0), warnings), (&[2.0][..], 1));
    }

    #[test]
    fn limit_types() {
        assert_eq!(limit(1.5, 1, 0.0, 1.0), 1.0);
        assert!((limit(1.25, 2, 0.0, 1.0) - 0.25).abs() < 1e-12);
        assert!((limit(-0.25, 2, 0.0, 1.0) - 0.75).abs() < 1e-12);
        assert!((limit(1.25, 3, 0.0, 1.0) - 0.75).abs() < 1e-12);
        assert!((limit(2.25, 3, 0.0, 1.0) - 0.25).abs() < 1e-12);
        assert_eq!(limit(5.0, 0, 0.0, 1.0), 5.0);
    }
}
