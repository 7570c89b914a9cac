//! The checker's tools: where problems go, where relative files resolve, and the typed reading
//! of one TOML value with serde, whose messages are rewritten here into ours. Both the reading of
//! the file (`check`) and each operator kind's own checks (`kind`) use them.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::DeValue;
use toml::Spanned;

use super::diag::{suggestion, Diagnostics};
use super::model::{Bounds, Cidr};
use crate::cook::par::ParMode;
use crate::cook::ParValue;
use crate::pattern::Pattern;

/// The state of one check: where problems go and where relative files resolve.
pub struct Checker<'a, 's> {
    pub d: &'a mut Diagnostics<'s>,
    pub(super) dir: &'a Path,
}

/// Deserializes one spanned TOML value, reporting a failure at the value's position (or the
/// finer one serde gives) and rewriting serde's unknown-key message into ours.
pub fn de<'i, T: Deserialize<'i>>(
    d: &mut Diagnostics,
    value: Spanned<DeValue<'i>>,
    what: &str,
    extra_keys: &[&str],
) -> Option<T> {
    let span = value.span();
    match T::deserialize(toml::de::ValueDeserializer::from(value)) {
        Ok(v) => Some(v),
        Err(e) => {
            let at = e.span().unwrap_or(span);
            let key = key_at(d.src(), at.start);
            d.error(at, render_serde_error(e.message(), what, key, extra_keys));
            None
        }
    }
}

/// The key of the `key = value` line whose value starts at byte `at`, if there is one.
fn key_at(src: &str, at: usize) -> Option<&str> {
    let line_start = src[..at.min(src.len())].rfind('\n').map_or(0, |i| i + 1);
    let before = &src[line_start..at.min(src.len())];
    let (key, _) = before.rsplit_once('=')?;
    let key = key.rsplit([',', '{']).next()?.trim().trim_matches('"');
    (!key.is_empty()).then_some(key)
}

/// serde says "unknown field `prot`, expected one of `port`, …"; we say which key, where, and
/// suggest the closest known one.
fn render_serde_error(msg: &str, what: &str, key: Option<&str>, extra_keys: &[&str]) -> String {
    let msg = msg.trim_end();
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            let expected = match expected {
                "f64" | "f32" => "a number",
                "i64" | "u16" | "u32" | "u64" | "usize" => "a whole number",
                "u8" => "a whole number 0–255",
                other => other,
            };
            return match key {
                Some(k) if k == what => format!("\"{k}\" must be {expected} (found {found})"),
                Some(k) => format!("\"{k}\" in {what} must be {expected} (found {found})"),
                None => format!("{what} must be {expected} (found {found})"),
            };
        }
    }
    if let (Some(k), Some(rest)) = (key, msg.strip_prefix("invalid value: ")) {
        return format!("\"{k}\" in {what}: invalid value {rest}");
    }
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some((key, tail)) = rest.split_once('`') {
            let mut known: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
            known.extend_from_slice(extra_keys);
            return format!(
                "unknown key \"{key}\" in {what}{}",
                suggestion(key, known.iter().copied())
            );
        }
    }
    if let Some(rest) = msg.strip_prefix("unknown variant `") {
        if let Some((val, tail)) = rest.split_once('`') {
            let known: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
            let place = key.map_or(String::new(), |k| format!("\"{k}\" in "));
            return format!(
                "{place}{what}: unknown value \"{val}\"; expected one of {}",
                known
                    .iter()
                    .map(|k| format!("\"{k}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    if let Some(key) = msg
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        return format!("{what} needs the key \"{key}\"");
    }
    format!("{what}: {msg}")
}

impl<'a, 's> Checker<'a, 's> {
    /// `v` when it is within `b`; otherwise an error at `span`.
    pub fn ranged(
        &mut self,
        span: std::ops::Range<usize>,
        what: &str,
        v: i64,
        b: Bounds,
    ) -> Option<i64> {
        if (b.min..=b.max).contains(&v) {
            Some(v)
        } else {
            let (lo, hi) = (b.min, b.max);
            self.d
                .error(span, format!("{what} = {v} is out of range ({lo} to {hi})"));
            None
        }
    }

    /// An optional integer key within `lo..=hi`, or `default` (absent or reported as bad).
    pub fn ranged_or(
        &mut self,
        v: &Option<Spanned<i64>>,
        what: &str,
        b: Bounds,
        default: i64,
    ) -> i64 {
        v.as_ref()
            .and_then(|v| self.ranged(v.span(), what, *v.get_ref(), b))
            .unwrap_or(default)
    }

    pub fn cidrs(&mut self, list: &[Spanned<String>]) -> Vec<Cidr> {
        list.iter()
            .filter_map(|s| match Cidr::parse(s.get_ref()) {
                Ok(c) => Some(c),
                Err(e) => {
                    self.d.error(s.span(), e);
                    None
                }
            })
            .collect()
    }

    pub fn pattern(&mut self, s: &Spanned<String>) -> Option<Pattern> {
        match Pattern::new(s.get_ref()) {
            Ok(p) => Some(p),
            Err(e) => {
                self.d.error(s.span(), e.to_string());
                None
            }
        }
    }

    /// An IP address, or an error at its position.
    pub fn ip(&mut self, s: &Spanned<String>) -> Option<std::net::IpAddr> {
        match s.get_ref().parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.d.error(
                    s.span(),
                    format!("\"{}\" is not an IP address", s.get_ref()),
                );
                None
            }
        }
    }

    /// Parameter values by name (`pars = { Gain = 2, Color = [1, 0.5, 0], Mode = "saw" }`): a
    /// boolean is 0 or 1, and a list of numbers sets a group's members (`Color1`…`Color3`, as
    /// TouchDesigner numbers a tuplet's members).
    pub fn par_values(&mut self, t: &Option<Spanned<toml::Table>>) -> Vec<(String, ParValue)> {
        let mut pars = Vec::new();
        let Some(t) = t else {
            return pars;
        };
        let number = |x: &toml::Value| x.as_float().or(x.as_integer().map(|i| i as f64));
        for (k, v) in t.get_ref() {
            match v {
                toml::Value::Boolean(b) => {
                    pars.push((k.clone(), ParValue::Float(f64::from(u8::from(*b)))))
                }
                toml::Value::String(s) => pars.push((k.clone(), ParValue::Str(s.clone()))),
                toml::Value::Array(a) if a.iter().all(|x| number(x).is_some()) => {
                    for (i, x) in a.iter().enumerate() {
                        let f = number(x).unwrap_or_default();
                        pars.push((format!("{k}{}", i + 1), ParValue::Float(f)));
                    }
                }
                // `{ expr = "…" }` / `{ bind = "…" }`: see `par_modes`.
                toml::Value::Table(m)
                    if m.len() == 1 && (m.contains_key("expr") || m.contains_key("bind")) => {}
                x => match number(x) {
                    Some(f) => pars.push((k.clone(), ParValue::Float(f))),
                    None => self.d.error(
                        t.span(),
                        format!(
                            "parameter \"{k}\" must be a number, a boolean, a string or a list \
                             of numbers"
                        ),
                    ),
                },
            }
        }
        pars
    }

    /// The parameters of a `pars` table given as an expression or a binding, TouchDesigner's
    /// other parameter modes: `Gain = { expr = "parent().par.Master * 2" }` is evaluated when
    /// the parameter is read; `Level = { bind = "parent().par.Level" }` follows that parameter
    /// and writes go to it.
    pub fn par_modes(
        &mut self,
        t: &Option<Spanned<toml::Table>>,
    ) -> Vec<(String, ParMode, String)> {
        let mut out = Vec::new();
        let Some(t) = t else {
            return out;
        };
        for (k, v) in t.get_ref() {
            let Some(m) = v.as_table() else { continue };
            let (mode, text) = match (m.get("expr"), m.get("bind")) {
                (Some(toml::Value::String(e)), None) if m.len() == 1 => (ParMode::Expression, e),
                (None, Some(toml::Value::String(b))) if m.len() == 1 => (ParMode::Bind, b),
                _ => {
                    self.d.error(
                        t.span(),
                        format!(
                            "parameter \"{k}\": a table must be {{ expr = \"…\" }} or \
                             {{ bind = \"…\" }}"
                        ),
                    );
                    continue;
                }
            };
            if let Err(e) = python_syntax(text) {
                self.d.error(t.span(), format!("parameter \"{k}\": {e}"));
                continue;
            }
            out.push((k.clone(), mode, text.clone()));
        }
        out
    }

    /// Where files named in the config resolve: the config's own directory.
    pub fn dir(&self) -> &Path {
        self.dir
    }

    /// A `callbacks` file named in the config, resolved against [`Checker::dir`]; an error at
    /// its span when it is not a file.
    pub fn callbacks_file(&mut self, c: &Spanned<String>) -> PathBuf {
        let path = self.dir.join(c.get_ref());
        if !path.is_file() {
            self.d.error(
                c.span(),
                format!("callbacks file \"{}\" does not exist", path.display()),
            );
        }
        path
    }
}

/// A light check of an expression before Python sees it: not empty, brackets balanced.
fn python_syntax(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("the expression is empty".into());
    }
    let mut depth: Vec<char> = Vec::new();
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '[' | '{') => depth.push(c),
            (None, ')' | ']' | '}') => {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if depth.pop() != Some(open) {
                    return Err(format!("unbalanced \"{c}\" in \"{text}\""));
                }
            }
            _ => {}
        }
    }
    if quote.is_some() || !depth.is_empty() {
        return Err(format!("unclosed bracket or quote in \"{text}\""));
    }
    Ok(())
}
