//! What the native CHOP kinds (constant, lfo, math, …) share, so that each kind's file holds its
//! TouchDesigner semantics and little else:
//!
//! - the `pars = { … }` table of the config, checked against the kind's built-in [`ParDef`]s:
//!   an unknown parameter or menu token is an error at its `file:line:col` with a did-you-mean
//!   from TouchDesigner's names, numbers are clamped as the parameter's range says;
//! - [`NativeConfig`], the checked settings of a kind whose only keys are `pars`;
//! - [`Pars`], the running parameter set. It is registered under the operator's name in the
//!   Python registry, so a script reads and writes `op('lfo1').par.frequency` and pulses
//!   `op('timer1').par.start` exactly as it does a Script CHOP's parameters; the control port and
//!   exports to `op:` come in through `set_par`/`pulse_par`. Values set while running survive a
//!   reload and a restart ([`ParSet::runtime_values`]);
//! - time slices ([`slice`]), name lists with TouchDesigner's expansion (`chan[1-4]`), and the
//!   output guard that keeps NaN and infinities from leaving an operator ([`Guard`]).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::config::diag::suggestion;
use crate::config::{Checker, OperatorConfig, Settings};
use crate::cook::par::{ParDef, ParSet, ParStyle};
use crate::cook::{BuildCtx, ChopData, Frame, KeptPar, KeptPars, Operator, ParValue};
use crate::python::registry::{self, ScriptShared, ScriptState};

/// The `pars` table as written: each key and value keeps its position.
pub type RawPars = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

/// The keys of a native kind that has nothing but parameters.
#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParsRaw {
    /// TouchDesigner parameters by their names (`gain = 2`, `wavetype = "square"`); menus take
    /// a token or an index
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub pars: Option<RawPars>,
}

/// Checks `pars` against the kind's parameters. `alias` maps another spelling TouchDesigner
/// accepts (`value0` for `const0value`) to the parameter's name. Read-only and pulse
/// parameters cannot be given. Returns the values in file order, converted to each
/// parameter's style (clamped, rounded, menu tokens for indices).
pub fn check_pars(
    cx: &mut Checker,
    kind: &str,
    defs: &[ParDef],
    alias: fn(&str) -> Option<String>,
    raw: &Option<RawPars>,
) -> Vec<(String, ParValue)> {
    let mut out = Vec::new();
    let Some(raw) = raw else {
        return out;
    };
    for (key, value) in raw {
        let name = alias(key.get_ref()).unwrap_or_else(|| key.get_ref().clone());
        let Some(def) = defs.iter().find(|d| d.name == name) else {
            let names = defs.iter().map(|d| d.name.as_str());
            cx.d.error(
                key.span(),
                format!(
                    "{kind} has no parameter \"{}\"{}",
                    key.get_ref(),
                    suggestion(key.get_ref(), names)
                ),
            );
            continue;
        };
        if def.read_only || def.style == ParStyle::Pulse {
            let what = if def.read_only {
                "read-only"
            } else {
                "a pulse"
            };
            cx.d.error(
                key.span(),
                format!("parameter \"{name}\" of {kind} is {what} and cannot be set in the config"),
            );
            continue;
        }
        let v = match value.get_ref() {
            toml::Value::Boolean(b) => ParValue::Float(f64::from(u8::from(*b))),
            toml::Value::Integer(i) => ParValue::Float(*i as f64),
            toml::Value::Float(f) => ParValue::Float(*f),
            toml::Value::String(s) => ParValue::Str(s.clone()),
            other => {
                cx.d.error(
                    value.span(),
                    format!(
                        "parameter \"{name}\" must be a number, a boolean or a string (found {})",
                        other.type_str()
                    ),
                );
                continue;
            }
        };
        match def.coerce(&v) {
            Ok(v) => out.push((name, v)),
            Err(e) => {
                let hint = match (&v, def.style) {
                    (ParValue::Str(s), ParStyle::Menu) => {
                        suggestion(s, def.menu_names.iter().map(String::as_str))
                    }
                    _ => String::new(),
                };
                cx.d.error(value.span(), format!("{kind}: {e}{hint}"));
            }
        }
    }
    out
}

/// Checks that the name lists among `keys` of `raw` expand (`chan[1-4]`), reporting at the
/// value's position.
pub fn check_names(cx: &mut Checker, kind: &str, raw: &Option<RawPars>, keys: &[&str]) {
    for (key, value) in raw.iter().flatten() {
        if let (true, Some(s)) = (
            keys.contains(&key.get_ref().as_str()),
            value.get_ref().as_str(),
        ) {
            if let Err(e) = expand(s) {
                cx.d.error(value.span(), format!("{kind}: {e}"));
            }
        }
    }
}

/// No alias: every parameter has one name.
pub fn no_alias(_: &str) -> Option<String> {
    None
}

/// Builds a native operator from its name, the build context and its checked parameters.
pub type BuildFn = fn(&OperatorConfig, &BuildCtx, &NativeConfig) -> Box<dyn Operator>;

/// The checked settings of a native kind: its parameter values from the config.
#[derive(Clone, Debug)]
pub struct NativeConfig {
    pub kind: &'static str,
    pub pars: Vec<(String, ParValue)>,
    pub build: BuildFn,
}

impl PartialEq for NativeConfig {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.pars == other.pars
    }
}

impl NativeConfig {
    pub fn new(kind: &'static str, pars: Vec<(String, ParValue)>, build: BuildFn) -> NativeConfig {
        NativeConfig { kind, pars, build }
    }
}

impl Settings for NativeConfig {
    fn build(&self, op: &OperatorConfig, cx: &BuildCtx) -> Result<Box<dyn Operator>, String> {
        Ok((self.build)(op, cx, self))
    }
}

/// The running parameters of one native operator, shared with Python through the registry.
pub struct Pars {
    shared: ScriptState,
    /// `ParSet::version` when the operator last read its values.
    seen: u64,
}

impl Pars {
    /// The parameter set `defs` with the config's values applied (as the config's, not as
    /// runtime changes), registered under `name`.
    pub fn new(
        op: &OperatorConfig,
        rate: f64,
        defs: Vec<ParDef>,
        init: &[(String, ParValue)],
    ) -> Pars {
        let mut shared = ScriptShared::new(&op.name, false, op.timeslice, rate);
        let mut set = ParSet::builtin(defs);
        set.set_init(init);
        set.setting_up = true;
        for (name, v) in init {
            // Checked already; a refusal here would be a bug in the kind's check.
            if let Err(e) = set.set(name, v) {
                tracing::warn!("parameter {name}: {e}");
            }
        }
        set.setting_up = false;
        shared.pars = set;
        let shared = std::rc::Rc::new(std::cell::RefCell::new(shared));
        registry::register(&shared);
        Pars {
            shared,
            seen: u64::MAX,
        }
    }

    /// The state Python handles resolve to (a callback's scope needs it).
    pub fn shared(&self) -> &ScriptState {
        &self.shared
    }

    /// True once after each change of a value (the first call included): read them again.
    pub fn changed(&mut self) -> bool {
        let v = self.shared.borrow().pars.version;
        if v == self.seen {
            return false;
        }
        self.seen = v;
        true
    }

    /// Whether a value changed or a pulse waits, without taking either.
    pub fn pending(&self) -> bool {
        let s = self.shared.borrow();
        s.pars.version != self.seen || !s.pending_pulses.is_empty()
    }

    /// Runs `f` on the parameter set (reading typed values after [`Pars::changed`]).
    pub fn with<R>(&self, f: impl FnOnce(&ParSet) -> R) -> R {
        f(&self.shared.borrow().pars)
    }

    /// Changes the set from the operator itself (keeping two spellings in step), without
    /// counting it as a runtime change.
    pub fn edit<R>(&self, f: impl FnOnce(&mut ParSet) -> R) -> R {
        let mut s = self.shared.borrow_mut();
        s.pars.setting_up = true;
        let r = f(&mut s.pars);
        s.pars.setting_up = false;
        r
    }

    pub fn num(&self, name: &str) -> f64 {
        self.shared.borrow().pars.num(name)
    }

    pub fn text(&self, name: &str) -> String {
        self.shared.borrow().pars.text(name).to_string()
    }

    /// Sets a value (control port, export, Python): a pulse parameter given a non-zero value
    /// is pulsed.
    pub fn set(&self, name: &str, value: ParValue) -> Result<(), String> {
        let style = self.shared.borrow().pars.get(name).map(|d| d.style);
        match style {
            Some(ParStyle::Pulse) => {
                let on = match &value {
                    ParValue::Float(f) => *f != 0.0,
                    ParValue::Str(s) => !s.is_empty() && s != "0",
                };
                if on {
                    self.pulse(name)?;
                }
                Ok(())
            }
            Some(_) => self.shared.borrow_mut().pars.set(name, &value).map(drop),
            None => Err(format!("no parameter \"{name}\"")),
        }
    }

    /// Queues a pulse for the next cook.
    pub fn pulse(&self, name: &str) -> Result<(), String> {
        let mut s = self.shared.borrow_mut();
        match s.pars.get(name).map(|d| d.style) {
            Some(ParStyle::Pulse) => {
                s.pending_pulses.push(name.to_string());
                Ok(())
            }
            Some(_) => Err(format!("parameter \"{name}\" is not a pulse")),
            None => Err(format!("no pulse parameter \"{name}\"")),
        }
    }

    /// The pulses pushed since the last call, oldest first.
    pub fn take_pulses(&self) -> Vec<String> {
        std::mem::take(&mut self.shared.borrow_mut().pending_pulses)
    }

    pub fn defs(&self) -> Vec<ParDef> {
        self.shared.borrow().pars.pars().to_vec()
    }

    pub fn runtime(&self) -> KeptPars {
        self.shared.borrow().pars.runtime_values()
    }

    pub fn restore(&self, kept: &[(String, KeptPar)]) {
        self.shared.borrow_mut().pars.restore(kept);
    }
}

impl Drop for Pars {
    fn drop(&mut self) {
        registry::unregister(&self.shared);
    }
}

/// Implements the parameter half of [`Operator`] for a native operator whose [`Pars`] is the
/// field `pars`: `set_par`, `pulse_par`, `par_defs`, `runtime_pars`, `restore_pars`.
#[macro_export]
macro_rules! native_pars {
    () => {
        fn set_par(&mut self, name: &str, value: $crate::cook::ParValue) -> Result<(), String> {
            self.pars.set(name, value)
        }

        fn pulse_par(&mut self, name: &str) -> Result<(), String> {
            self.pars.pulse(name)
        }

        fn par_defs(&self) -> Vec<$crate::cook::par::ParDef> {
            self.pars.defs()
        }

        fn runtime_pars(&self) -> $crate::cook::KeptPars {
            self.pars.runtime()
        }

        fn restore_pars(&mut self, kept: &[(String, $crate::cook::KeptPar)]) {
            self.pars.restore(kept)
        }
    };
}

/// The samples a generator outputs this cook: `frame.step` of them time-sliced (every frame
/// since the last cook, dropped ones included), else one; and the index of the first, at the
/// clock rate. Sample `k` is at time `(start + k) / rate`.
pub fn slice(frame: &Frame, timeslice: bool) -> (usize, i64) {
    let n = if timeslice { frame.step.max(1) } else { 1 };
    (n as usize, frame.frame - n + 1)
}

/// Lays out a generator's output: `names` in order, `n` samples from `start`, at `rate`. It
/// remembers the layout it made ([`ChopData::layout_id`]), so while neither the names (the
/// operator calls [`Layout::invalidate`] when they change) nor the output's channels changed,
/// nothing is compared or rebuilt.
#[derive(Debug, Default)]
pub struct Layout {
    out: u64,
}

impl Layout {
    pub fn invalidate(&mut self) {
        self.out = 0;
    }

    pub fn apply(&mut self, out: &mut ChopData, names: &[String], n: usize, start: i64, rate: f64) {
        if out.layout_id() != self.out && out.names() != names {
            out.clear();
            for name in names {
                out.append_chan(name);
            }
        }
        self.out = out.layout_id();
        out.set_num_samples(n);
        out.start = start;
        out.rate = rate;
    }
}

/// The most names one expansion may give (`chan[1-100000000]` is refused, not allocated).
pub const MAX_NAMES: usize = 10_000;

/// Expands a space-separated list of names with TouchDesigner's brackets: `chan[1-3]` is
/// `chan1 chan2 chan3`, `t[xyz]` is `tx ty tz`, `a[1-5:2]` is `a1 a3 a5`, `b[2,7]` is `b2 b7`;
/// several brackets multiply. Names are made legal (`sanitize_name`).
pub fn expand(list: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for word in list.split_whitespace() {
        for n in expand_raw(word)? {
            let n = crate::cook::sanitize_name(&n);
            // A name given twice is one channel.
            if seen.insert(n.clone()) {
                out.push(n);
            }
        }
        if out.len() > MAX_NAMES {
            return Err(format!("more than {MAX_NAMES} names"));
        }
    }
    Ok(out)
}

/// The alternatives of one bracket: integer ranges and lists, or single characters.
fn bracket(inside: &str) -> Option<Vec<String>> {
    let numeric = inside
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '-' | ',' | ':'));
    if !numeric {
        return (!inside.is_empty()).then(|| inside.chars().map(String::from).collect());
    }
    let mut v = Vec::new();
    for part in inside.split(',') {
        let (range, step) = match part.split_once(':') {
            Some((r, s)) => (r, s.parse::<u64>().ok().filter(|&s| s > 0)?),
            None => (part, 1),
        };
        let (lo, hi) = match range.split_once('-') {
            Some((a, b)) => (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?),
            None => {
                let x = range.parse::<u64>().ok()?;
                (x, x)
            }
        };
        let (lo, hi) = (lo.min(hi), lo.max(hi));
        if (hi - lo) / step > MAX_NAMES as u64 {
            return None;
        }
        let mut x = lo;
        while x <= hi {
            v.push(x.to_string());
            x += step;
        }
    }
    Some(v)
}

/// Keeps NaN and infinities from leaving an operator: each bad sample becomes the channel's
/// last good value (0 before it has one), and each cook that had some counts one warning.
#[derive(Default)]
pub struct Guard {
    last_good: Vec<f32>,
    /// Bad samples replaced since the start.
    pub replaced: u64,
}

impl Guard {
    /// Cleans `out`; returns whether anything was replaced (count a warning then).
    pub fn clean(&mut self, out: &mut ChopData) -> bool {
        let n = out.num_samples();
        self.last_good.resize(out.num_chans(), 0.0);
        let mut bad = 0;
        for (i, chan) in out.samples_mut().chunks_mut(n).enumerate() {
            let good = &mut self.last_good[i];
            for v in chan {
                if v.is_finite() {
                    *good = *v;
                } else {
                    *v = *good;
                    bad += 1;
                }
            }
        }
        self.replaced += bad;
        bad > 0
    }

    pub fn reset(&mut self) {
        self.last_good.clear();
    }
}

/// TouchDesigner's rename: `from` and `to` are lists of terms, paired by position (brackets
/// expanded first, so `t[xyz]` → `r[xyz]` pairs `tx` with `rx`…). A name takes the first `from`
/// term it matches (`*` any run, `?` one character); each `*` and `?` of the `to` term is
/// filled with what the same wildcard of `from` matched, in order. A `to` list shorter than
/// `from` reuses its last term; names no term matches keep their name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Renamer {
    pairs: Vec<(Vec<char>, String)>,
}

impl Renamer {
    pub fn new(from: &str, to: &str) -> Result<Renamer, String> {
        let from = expand_terms(from)?;
        let to = expand_terms(to)?;
        let Some(last) = to.last() else {
            return Ok(Renamer::default());
        };
        let pairs = from
            .into_iter()
            .enumerate()
            .map(|(i, f)| (f.chars().collect(), to.get(i).unwrap_or(last).clone()))
            .collect();
        Ok(Renamer { pairs })
    }

    /// Whether it renames nothing (`*` to `*`, or empty).
    pub fn is_identity(&self) -> bool {
        self.pairs.is_empty() || self.pairs.iter().all(|(f, t)| f == &['*'] && t == "*")
    }

    pub fn rename(&self, name: &str) -> String {
        let n: Vec<char> = name.chars().collect();
        for (from, to) in &self.pairs {
            let mut caps = Vec::new();
            if glob(from, &n, &mut caps) {
                let mut caps = caps.into_iter();
                let mut out = String::new();
                for c in to.chars() {
                    match c {
                        '*' | '?' => out.push_str(&caps.next().unwrap_or_default()),
                        c => out.push(c),
                    }
                }
                return crate::cook::sanitize_name(&out);
            }
        }
        name.to_string()
    }
}

/// Terms with their brackets expanded, wildcards kept (`expand` would make them `_`).
fn expand_terms(list: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for word in list.split_whitespace() {
        if word.contains('[') {
            // Expand with placeholders for the wildcards, then put them back.
            let masked = word.replace('*', "\u{1}").replace('?', "\u{2}");
            for n in expand_raw(&masked)? {
                out.push(n.replace('\u{1}', "*").replace('\u{2}', "?"));
            }
        } else {
            out.push(word.to_string());
        }
    }
    Ok(out)
}

/// [`expand`] without making the names legal.
fn expand_raw(word: &str) -> Result<Vec<String>, String> {
    let mut names = vec![String::new()];
    let mut rest = word;
    while let Some(open) = rest.find('[') {
        let close = rest[open..]
            .find(']')
            .map(|c| open + c)
            .ok_or_else(|| format!("unclosed \"[\" in \"{word}\""))?;
        let parts =
            bracket(&rest[open + 1..close]).ok_or_else(|| format!("cannot expand \"{word}\""))?;
        if names.len().saturating_mul(parts.len()) > MAX_NAMES {
            return Err(format!("\"{word}\" expands to more than {MAX_NAMES} names"));
        }
        let lit = &rest[..open];
        names = names
            .iter()
            .flat_map(|n| parts.iter().map(move |p| format!("{n}{lit}{p}")))
            .collect();
        rest = &rest[close + 1..];
    }
    Ok(names.into_iter().map(|n| n + rest).collect())
}

/// Matches `name` against `pat` (`*`, `?`, literals), recording each wildcard's text.
fn glob(pat: &[char], name: &[char], caps: &mut Vec<String>) -> bool {
    match pat.first() {
        None => name.is_empty(),
        Some('*') => {
            // Shortest first, so a later literal anchors as early as it can.
            for k in 0..=name.len() {
                caps.push(name[..k].iter().collect());
                if glob(&pat[1..], &name[k..], caps) {
                    return true;
                }
                caps.pop();
            }
            false
        }
        Some('?') if !name.is_empty() => {
            caps.push(name[0].to_string());
            if glob(&pat[1..], &name[1..], caps) {
                return true;
            }
            caps.pop();
            false
        }
        Some(c) => name.first() == Some(c) && glob(&pat[1..], &name[1..], caps),
    }
}

/// The channels one cook takes from an input, worked out again only when the input's channels
/// change (its [`ChopData::layout_id`]): which input channels, under which output names.
#[derive(Debug, Default)]
pub struct Picks {
    /// The input layout these picks were made for (0: none yet).
    seen: u64,
    pub from: Vec<usize>,
    pub names: Vec<String>,
    out: Layout,
}

impl Picks {
    /// Whether `input`'s channels changed since the last [`Picks::set`].
    pub fn stale(&self, input: &ChopData) -> bool {
        self.seen != input.layout_id()
    }

    /// Takes the picks for `input`: channel `from[k]` under `names[k]`. Of several picks under
    /// one name the last wins, as appending a channel of an existing name replaces it.
    pub fn set(&mut self, input: &ChopData, mut from: Vec<usize>, mut names: Vec<String>) {
        self.seen = input.layout_id();
        let mut last = std::collections::HashMap::with_capacity(names.len());
        for (k, n) in names.iter().enumerate() {
            last.insert(n.as_str(), k);
        }
        if last.len() < names.len() {
            let keep: Vec<bool> = names
                .iter()
                .enumerate()
                .map(|(k, n)| last[n.as_str()] == k)
                .collect();
            let mut it = keep.iter();
            from.retain(|_| *it.next().unwrap_or(&true));
            let mut it = keep.iter();
            names.retain(|_| *it.next().unwrap_or(&true));
        }
        self.from = from;
        self.names = names;
        self.out.invalidate();
    }

    /// Forgets the input, so the next cook picks again (a parameter changed).
    pub fn clear(&mut self) {
        self.seen = 0;
    }

    /// Writes the picked channels of `input` to `out` (its rate, start and length).
    pub fn copy(&mut self, input: &ChopData, out: &mut ChopData) {
        self.out.apply(
            out,
            &self.names,
            input.num_samples(),
            input.start,
            input.rate,
        );
        for (k, &i) in self.from.iter().enumerate() {
            out.chan_mut(k).copy_from_slice(input.chan(i));
        }
    }
}

/// The operator a `chop` parameter names: a plain name, or TouchDesigner's path under
/// `/project1/`.
pub fn op_name(path: &str) -> &str {
    path.strip_prefix("/project1/").unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_expand_as_touchdesigner_does() {
        assert_eq!(expand("chan1").unwrap(), ["chan1"]);
        assert_eq!(
            expand("c[1-3] t[xyz]").unwrap(),
            ["c1", "c2", "c3", "tx", "ty", "tz"]
        );
        assert_eq!(expand("a[1-5:2]b").unwrap(), ["a1b", "a3b", "a5b"]);
        assert_eq!(expand("p[1,4][xy]").unwrap(), ["p1x", "p1y", "p4x", "p4y"]);
        assert!(expand("c[1-3").is_err());
        assert!(expand("c[1-100000000]").is_err());
        assert_eq!(expand("").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn rename_pairs_terms_and_fills_wildcards() {
        let r = Renamer::new("t[xyz] chan*", "r[xyz] out*").unwrap();
        assert_eq!(r.rename("ty"), "ry");
        assert_eq!(r.rename("chan12"), "out12");
        assert_eq!(r.rename("other"), "other");
        let r = Renamer::new("*_?", "*/?").unwrap();
        assert_eq!(r.rename("fader_3"), "fader/3");
        assert!(Renamer::new("*", "*").unwrap().is_identity());
        let r = Renamer::new("a b c", "z").unwrap();
        assert_eq!(r.rename("c"), "z");
    }

    #[test]
    fn the_guard_replaces_bad_samples_with_the_last_good_one() {
        let mut d = ChopData::new(60.0);
        d.set_num_samples(3);
        d.append_with("a", &[1.0, f32::NAN, f32::INFINITY]);
        d.append_with("b", &[f32::NAN, 2.0, 3.0]);
        let mut g = Guard::default();
        assert!(g.clean(&mut d));
        assert_eq!(d.chan(0), [1.0, 1.0, 1.0]);
        assert_eq!(d.chan(1), [0.0, 2.0, 3.0]);
        assert_eq!(g.replaced, 3);
        assert!(!g.clean(&mut d));
    }
}
