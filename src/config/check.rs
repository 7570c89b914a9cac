//! Checking a config: the TOML tree read key by key into the checked model, every problem
//! reported through [`Diagnostics`] (all of them, not the first). serde does the typing of each
//! item; its messages are rewritten here into ours. Operator kinds check their own keys through
//! the [`Checker`] they are handed (see `kind`); whole-config checks are in `refs`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::diag::{suggestion, Diagnostics};
use super::kind::Kinds;
use super::model::*;
use super::raw;
use super::refs::{self, OpRefs};
use crate::pattern::Pattern;

/// The state of one check: where problems go, where relative files resolve, which kinds exist.
pub struct Checker<'a, 's> {
    pub d: &'a mut Diagnostics<'s>,
    pub(super) dir: &'a Path,
    pub(super) kinds: &'a Kinds,
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
    pub(super) fn check(&mut self, path: &Path, src: &'s str) -> Option<Config> {
        let root = match DeTable::parse(src) {
            Ok(t) => t,
            Err(e) => {
                let at = e.span().unwrap_or(0..0);
                self.d
                    .error(at, format!("TOML syntax: {}", e.message().trim_end()));
                return None;
            }
        };
        let mut config = Config {
            file: path.to_path_buf(),
            rate: DEFAULT_RATE,
            max_slice: Duration::from_millis(DEFAULT_MAX_SLICE_MS),
            watch: true,
            rss_warn_mb: None,
            control: None,
            python_path: Vec::new(),
            destinations: BTreeMap::new(),
            operators: Vec::new(),
            order: Vec::new(),
            warnings: Vec::new(),
        };
        let mut ops_raw = Vec::new();
        for (key, value) in root.into_inner() {
            let span = value.span();
            match key.get_ref().as_ref() {
                "rate" => {
                    if let Some(r) = de::<f64>(self.d, value, "rate", &[]) {
                        if (RATE.0..=RATE.1).contains(&r) {
                            config.rate = r;
                        } else {
                            self.d.error(
                                span,
                                format!("rate {r} is out of range (1 to 1000 frames per second)"),
                            );
                        }
                    }
                }
                "max_slice_ms" => {
                    if let Some(ms) = de::<i64>(self.d, value, "max_slice_ms", &[]) {
                        if let Some(ms) = self.ranged(span, "max_slice_ms", ms, MAX_SLICE_MS) {
                            config.max_slice = Duration::from_millis(ms as u64);
                        }
                    }
                }
                "watch" => {
                    if let Some(w) = de::<bool>(self.d, value, "watch", &[]) {
                        config.watch = w;
                    }
                }
                "rss_warn_mb" => {
                    if let Some(mb) = de::<i64>(self.d, value, "rss_warn_mb", &[]) {
                        if let Some(mb) = self.ranged(span, "rss_warn_mb", mb, RSS_WARN_MB) {
                            config.rss_warn_mb = Some(mb as u64);
                        }
                    }
                }
                "control" => {
                    if let Some(c) = de::<raw::Control>(self.d, value, "[control]", &[]) {
                        config.control = self.control(c);
                    }
                }
                "python" => {
                    if let Some(p) = de::<raw::Python>(self.d, value, "[python]", &[]) {
                        config.python_path =
                            p.path.iter().map(|s| self.dir.join(s.get_ref())).collect();
                    }
                }
                "destinations" => self.destinations(value, &mut config.destinations),
                "operator" => match value.into_inner() {
                    DeValue::Array(items) => ops_raw.extend(items),
                    _ => self.d.error(
                        span,
                        "\"operator\" must be an array of tables: write [[operator]]",
                    ),
                },
                other => {
                    let key_span = key.span();
                    self.d.error(
                        key_span,
                        format!(
                            "unknown key \"{other}\" at the top level{}",
                            suggestion(other, raw::TOP_KEYS.iter().copied())
                        ),
                    );
                }
            }
        }

        let mut spans = Vec::new();
        for item in ops_raw {
            if let Some((op, refs)) = self.operator(item) {
                config.operators.push(op);
                spans.push(refs);
            }
        }
        config.order = refs::check(self.d, &config, &spans);
        Some(config)
    }

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

    fn control(&mut self, c: raw::Control) -> Option<ControlConfig> {
        let ip = match &c.address {
            Some(a) => match a.get_ref().parse::<IpAddr>() {
                Ok(ip) => ip,
                Err(_) => {
                    self.d.error(
                        a.span(),
                        format!("\"{}\" is not an IP address", a.get_ref()),
                    );
                    return None;
                }
            },
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        let allow = match &c.allow {
            Some(list) => self.cidrs(list),
            None => vec![Cidr {
                addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
                prefix: 8,
            }],
        };
        let full_replies = match &c.full_replies {
            Some(list) => self.cidrs(list),
            None => vec![
                Cidr {
                    addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
                    prefix: 8,
                },
                Cidr {
                    addr: IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                    prefix: 128,
                },
            ],
        };
        let token = c.token.as_ref().and_then(|t| {
            let s = t.get_ref();
            let n = s.chars().count() as i64;
            // The token travels as one segment of an OSC address: nothing OSC patterns or
            // the address syntax give a meaning to.
            let legal = s
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.' | '~'));
            if !legal || !(TOKEN_LEN.min..=TOKEN_LEN.max).contains(&n) {
                self.d.error(
                    t.span(),
                    format!(
                        "a control token is {} to {} letters, digits, '-', '_', '.' or '~'",
                        TOKEN_LEN.min, TOKEN_LEN.max
                    ),
                );
                return None;
            }
            Some(s.clone())
        });
        let socket = c.socket.as_ref().map(|s| self.dir.join(s.get_ref()));
        Some(ControlConfig {
            addr: SocketAddr::new(ip, c.port.unwrap_or(DEFAULT_CONTROL_PORT)),
            allow,
            token,
            full_replies,
            socket,
        })
    }

    fn destinations(
        &mut self,
        value: Spanned<DeValue<'s>>,
        out: &mut BTreeMap<String, Destination>,
    ) {
        let span = value.span();
        let DeValue::Table(table) = value.into_inner() else {
            self.d.error(
                span,
                "\"destinations\" must be a table: write [destinations.NAME]",
            );
            return;
        };
        for (name, value) in table {
            let name = name.get_ref().to_string();
            let what = format!("destination \"{name}\"");
            let Some(r) = de::<raw::Destination>(self.d, value, &what, &[]) else {
                continue;
            };
            let prefix = match &r.prefix {
                Some(p) => {
                    let p = p.get_ref().trim_end_matches('/');
                    if p.is_empty() || p.starts_with('/') {
                        p.to_string()
                    } else {
                        format!("/{p}")
                    }
                }
                None => String::new(),
            };
            let max_packet = match &r.max_packet {
                Some(m) => self
                    .ranged(m.span(), "max_packet", *m.get_ref(), MAX_PACKET)
                    .map_or(DEFAULT_MAX_PACKET, |v| v as usize),
                None => DEFAULT_MAX_PACKET,
            };
            let resend = r.resend_ms.as_ref().and_then(|m| {
                self.ranged(m.span(), "resend_ms", *m.get_ref(), RESEND_MS)
                    .map(|v| Duration::from_millis(v as u64))
            });
            if *r.port.get_ref() == 0 {
                self.d
                    .error(r.port.span(), "destination port must not be 0");
            }
            out.insert(
                name.clone(),
                Destination {
                    name,
                    host: r.host.get_ref().clone(),
                    port: *r.port.get_ref(),
                    prefix,
                    format: r.format.unwrap_or(NumFormat::Float),
                    max_packet,
                    timetag: r.timetag.unwrap_or(false),
                    resend,
                },
            );
        }
    }

    fn operator(&mut self, item: Spanned<DeValue<'s>>) -> Option<(OperatorConfig, OpRefs)> {
        let span = item.span();
        let DeValue::Table(table) = item.into_inner() else {
            self.d.error(span, "an operator must be a table");
            return None;
        };
        let mut common = DeTable::new();
        let mut own = DeTable::new();
        let mut kind: Option<Spanned<String>> = None;
        for (k, v) in table {
            if k.get_ref() == "type" {
                match v.get_ref().as_str() {
                    Some(s) => kind = Some(Spanned::new(v.span(), s.to_string())),
                    None => self.d.error(v.span(), "\"type\" must be a string"),
                }
            } else if raw::COMMON_KEYS.contains(&k.get_ref().as_ref()) {
                common.insert(k, v);
            } else {
                own.insert(k, v);
            }
        }
        let common: raw::Common = de(
            self.d,
            Spanned::new(span.clone(), DeValue::Table(common)),
            "operator",
            &[],
        )?;
        let name = common.name.get_ref().clone();
        let what = format!("operator \"{name}\"");
        if name.is_empty() || name.contains(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            self.d.error(
                common.name.span(),
                format!("operator name \"{name}\" may only hold letters, digits and `_`"),
            );
        }
        let kinds = self.kinds;
        let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
        let Some(kind) = kind else {
            self.d.error(
                span,
                format!("{what} needs a \"type\": one of {}", quoted(&names)),
            );
            return None;
        };
        let Some(registered) = kinds.iter().find(|k| k.name() == kind.get_ref()) else {
            let other = kind.get_ref();
            self.d.error(
                kind.span(),
                format!(
                    "unknown operator type \"{other}\"; expected one of {}{}",
                    quoted(&names),
                    suggestion(other, names.iter().copied())
                ),
            );
            return None;
        };
        let own = Spanned::new(span.clone(), DeValue::Table(own));
        let mut refs = OpRefs::new(
            common.name.span(),
            common.inputs.iter().map(|i| i.span()).collect(),
        );
        let settings = registered.check(self, own, &what, raw::COMMON_KEYS, &mut refs)?;
        let scope = common
            .scope
            .as_ref()
            .and_then(|s| self.pattern(s))
            .unwrap_or_else(Pattern::all);
        let export = match &common.export {
            Some(e) => {
                refs.export_root = Some(e.get_ref().root.span());
                self.export(e.get_ref())
            }
            None => None,
        };
        Some((
            OperatorConfig {
                name,
                kind: registered.name(),
                inputs: common.inputs.iter().map(|i| i.get_ref().clone()).collect(),
                reads: refs.read_names(),
                timeslice: common.timeslice.unwrap_or(false),
                scope,
                srselect: common.srselect.unwrap_or_default(),
                export,
                settings,
            },
            refs,
        ))
    }

    fn export(&mut self, e: &raw::Export) -> Option<ExportConfig> {
        let root_s = e.root.get_ref();
        let root = match root_s.strip_prefix("op:") {
            Some("/") => ExportRoot::Op(String::new()),
            Some(name) => ExportRoot::Op(name.trim_start_matches('/').to_string()),
            None => ExportRoot::Destination(root_s.clone()),
        };
        let method_s = e
            .method
            .as_ref()
            .map_or("autoname", |m| m.get_ref().as_str());
        let table = |me: &mut Self| -> Option<ExportTable> {
            let Some(t) = &e.table else {
                me.d.error(
                    e.root.span(),
                    format!("export method \"{method_s}\" needs a \"table\" (a CSV file)"),
                );
                return None;
            };
            let file = me.dir.join(t.get_ref());
            match std::fs::read_to_string(&file) {
                Ok(text) => {
                    match super::tables::parse_export_table(&text, method_s == "datindex") {
                        Ok(rows) => Some(ExportTable { file, rows }),
                        Err(msg) => {
                            me.d.error(
                                t.span(),
                                format!("export table \"{}\": {msg}", t.get_ref()),
                            );
                            None
                        }
                    }
                }
                Err(err) => {
                    me.d.error(
                        t.span(),
                        format!("cannot read export table \"{}\": {err}", file.display()),
                    );
                    None
                }
            }
        };
        let method = match method_s {
            "autoname" => ExportMethod::AutoName,
            "datindex" => ExportMethod::DatIndex(table(self)?),
            "datname" => ExportMethod::DatName(table(self)?),
            other => {
                let span = e.method.as_ref().map_or(e.root.span(), |m| m.span());
                self.d.error(
                    span,
                    format!(
                        "unknown export method \"{other}\"; expected one of \"autoname\", \"datindex\", \"datname\"{}",
                        suggestion(other, ["autoname", "datindex", "datname"])
                    ),
                );
                return None;
            }
        };
        let resend = e.resend_ms.as_ref().and_then(|m| {
            self.ranged(m.span(), "resend_ms", *m.get_ref(), RESEND_MS)
                .map(|v| Duration::from_millis(v as u64))
        });
        Some(ExportConfig {
            method,
            root,
            send: e.send.unwrap_or_default(),
            resend,
        })
    }

    /// Where files named in the config resolve: the config's own directory.
    pub fn dir(&self) -> &Path {
        self.dir
    }
}

fn quoted(list: &[&str]) -> String {
    list.iter()
        .map(|k| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(", ")
}
