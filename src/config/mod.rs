//! Config: TOML text → checked model, with every problem reported at once as
//! `file:line:col: error: …` (sorted, with "did you mean"). The raw serde mirror lives in `raw`
//! and is seen by nothing outside this module; the rest of the daemon uses the types below.
//!
//! Checking is pure apart from reading files the config names (export tables; script files are
//! only checked for existence here, the Script CHOP loads them).

pub mod diag;
mod raw;
pub mod schema;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use diag::{suggestion, Diagnostics};
pub use diag::{Diagnostic, Severity};

use crate::chop::SrSelect;
use crate::pattern::Pattern;

/// The checked config of one daemon.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub file: PathBuf,
    /// Frames per second.
    pub rate: f64,
    /// Longest time slice a cook may see; older samples are cut.
    pub max_slice: Duration,
    /// Reload when the config or a file it names changes on disk.
    pub watch: bool,
    /// Warn when the process's resident memory passes this many MB (`rss_warn_mb`); `None`:
    /// twice the RSS at start-up, at least 256 MB (see `daemon::memory`).
    pub rss_warn_mb: Option<u64>,
    pub control: Option<ControlConfig>,
    /// Site directories added to Python's path (a venv's site-packages).
    pub python_path: Vec<PathBuf>,
    pub destinations: BTreeMap<String, Destination>,
    /// In file order.
    pub operators: Vec<OperatorConfig>,
    /// Warnings found while checking (the config is usable).
    pub warnings: Vec<Diagnostic>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ControlConfig {
    pub addr: SocketAddr,
    pub allow: Vec<Cidr>,
}

/// Control port default: loopback only (SPEC §7).
pub const DEFAULT_CONTROL_PORT: u16 = 9002;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NumFormat {
    Float,
    Double,
    Int,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SendMode {
    /// Only values that changed since the last send.
    #[default]
    OnChange,
    /// Every channel every cook.
    EveryCook,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
pub enum MidiNorm {
    #[default]
    #[serde(rename = "0to1")]
    ZeroToOne,
    #[serde(rename = "-1to1")]
    MinusOneToOne,
    #[serde(rename = "off")]
    Off,
    #[serde(rename = "onoff")]
    OnOff,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Destination {
    pub name: String,
    pub host: String,
    pub port: u16,
    /// Address prefix, `""` or `/something` without a trailing `/`.
    pub prefix: String,
    pub format: NumFormat,
    /// Largest bundle sent, bytes.
    pub max_packet: usize,
    pub timetag: bool,
    /// Periodic full resend for receivers that missed a packet.
    pub resend: Option<Duration>,
}

/// Fits one Ethernet frame: 1500 − 20 (IPv4) − 8 (UDP).
pub const DEFAULT_MAX_PACKET: usize = 1472;

#[derive(Clone, Debug, PartialEq)]
pub struct OperatorConfig {
    pub name: String,
    pub inputs: Vec<String>,
    pub timeslice: bool,
    pub scope: Pattern,
    pub srselect: SrSelect,
    pub export: Option<ExportConfig>,
    pub kind: Kind,
}

impl OperatorConfig {
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::OscIn(_) => "oscin",
            Kind::MidiIn(_) => "midiin",
            Kind::Script(_) => "script",
            Kind::Info(_) => "info",
        }
    }

    /// Same operator apart from its export settings (reload keeps such an operator).
    pub fn same_but_export(&self, other: &OperatorConfig) -> bool {
        self.name == other.name
            && self.inputs == other.inputs
            && self.timeslice == other.timeslice
            && self.scope == other.scope
            && self.srselect == other.srselect
            && self.kind == other.kind
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    OscIn(OscInConfig),
    MidiIn(MidiInConfig),
    Script(ScriptConfig),
    Info(InfoConfig),
}

#[derive(Clone, Debug, PartialEq)]
pub struct OscInConfig {
    pub bind: SocketAddr,
    pub multicast: Option<(Ipv4Addr, Ipv4Addr)>,
    pub address_scope: Pattern,
    pub strip_segments: usize,
    pub queued: bool,
    pub allow: Vec<Cidr>,
    /// Receive buffer requested with SO_RCVBUF, bytes.
    pub receive_buffer: usize,
    pub max_channels: usize,
}

/// 4 MiB: `net.core.rmem_max` on these machines; an 8 MB buffer loses nothing at 400k pkt/s
/// (PLATFORM.md), the default ~208 KB does.
pub const DEFAULT_RECEIVE_BUFFER: usize = 4 << 20;
pub const DEFAULT_MAX_CHANNELS: usize = 10_000;

#[derive(Clone, Debug, PartialEq)]
pub struct MidiInConfig {
    pub device: Pattern,
    pub required: bool,
    /// MIDI channels 1–16 accepted; index 0 is channel 1.
    pub channels: [bool; 16],
    pub norm: MidiNorm,
    pub prefix: String,
    pub notename: String,
    pub controlname: String,
    pub polyname: String,
    pub pressurename: String,
    pub pitchname: String,
    pub programname: String,
    /// Controllers (0–31) read as 14-bit MSB/LSB pairs with controller + 32.
    pub highres: Vec<u8>,
    pub preserve_pulses: bool,
    pub queued: bool,
    /// How often the port list is scanned for hot-plug.
    pub scan: Duration,
}

/// TouchDesigner's defaults: every channel, `ch` + `n`/`c`/`a`/`pr`/`pw`/`pc` names, 0–1.
impl Default for MidiInConfig {
    fn default() -> Self {
        MidiInConfig {
            device: Pattern::all(),
            required: false,
            channels: [true; 16],
            norm: MidiNorm::ZeroToOne,
            prefix: "ch".into(),
            notename: "n".into(),
            controlname: "c".into(),
            polyname: "a".into(),
            pressurename: "pr".into(),
            pitchname: "pw".into(),
            programname: "pc".into(),
            highres: Vec::new(),
            preserve_pulses: true,
            queued: false,
            scan: Duration::from_millis(500),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScriptConfig {
    /// Absolute path of the callbacks file.
    pub callbacks: PathBuf,
    pub cook_budget: Duration,
    pub modoutsidecook: bool,
    /// Initial custom parameter values from the config.
    pub pars: Vec<(String, ParInit)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ParInit {
    Float(f64),
    Str(String),
    Floats(Vec<f64>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct InfoConfig {
    /// Operator to inspect; `"/"` is the daemon itself.
    pub op: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ExportConfig {
    pub method: ExportMethod,
    pub root: ExportRoot,
    pub send: SendMode,
    pub resend: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExportMethod {
    /// Channel Name is Path:Parameter.
    AutoName,
    /// DAT Table by Index.
    DatIndex(ExportTable),
    /// DAT Table by Name.
    DatName(ExportTable),
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExportRoot {
    /// A `[destinations.NAME]`.
    Destination(String),
    /// An operator of this daemon; `""` is the top (`op:/`).
    Op(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ExportTable {
    pub file: PathBuf,
    pub rows: Vec<ExportRow>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ExportRow {
    pub chan: ChanRef,
    pub path: String,
    pub parameter: String,
    pub enable: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ChanRef {
    Index(usize),
    Name(String),
}

/// An IP network (`192.168.1.0/24`, `::1/128`, or a single address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("\"{s}\" is not an IP address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("bad prefix length in \"{s}\" (0–{max})"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Reads and checks a config file. `Err` holds every error (and the warnings) sorted by
/// position; `Ok` holds the model with its warnings.
pub fn load(path: &Path) -> Result<Config, Vec<Diagnostic>> {
    let label = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic {
            file: label.clone(),
            line: 1,
            col: 1,
            severity: Severity::Error,
            message: format!("cannot read config: {e}"),
        }]
    })?;
    check_str(path, &src)
}

/// Checks config text as if read from `path` (relative files resolve next to it).
pub fn check_str(path: &Path, src: &str) -> Result<Config, Vec<Diagnostic>> {
    let label = path.display().to_string();
    let mut d = Diagnostics::new(&label, src);
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let config = Checker {
        d: &mut d,
        dir: &dir,
    }
    .check(path, src);
    let has_errors = d.has_errors();
    let list = d.into_sorted();
    match config {
        Some(mut c) if !has_errors => {
            c.warnings = list;
            Ok(c)
        }
        _ => Err(list),
    }
}

struct Checker<'a, 's> {
    d: &'a mut Diagnostics<'s>,
    dir: &'a Path,
}

/// Deserializes one spanned TOML value, reporting a failure at the value's position (or the
/// finer one serde gives) and rewriting serde's unknown-key message into ours.
fn de<'i, T: Deserialize<'i>>(
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
    fn check(&mut self, path: &Path, src: &'s str) -> Option<Config> {
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
            rate: 60.0,
            max_slice: Duration::from_millis(200),
            watch: true,
            rss_warn_mb: None,
            control: None,
            python_path: Vec::new(),
            destinations: BTreeMap::new(),
            operators: Vec::new(),
            warnings: Vec::new(),
        };
        let mut ops_raw = Vec::new();
        for (key, value) in root.into_inner() {
            let span = value.span();
            match key.get_ref().as_ref() {
                "rate" => {
                    if let Some(r) = de::<f64>(self.d, value, "rate", &[]) {
                        if (1.0..=1000.0).contains(&r) {
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
                        if let Some(ms) = self.ranged(span, "max_slice_ms", ms, 1, 10_000) {
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
                        if let Some(mb) = self.ranged(span, "rss_warn_mb", mb, 1, 1 << 20) {
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
        self.graph_checks(&config, &spans);
        Some(config)
    }

    fn ranged(
        &mut self,
        span: std::ops::Range<usize>,
        what: &str,
        v: i64,
        lo: i64,
        hi: i64,
    ) -> Option<i64> {
        if (lo..=hi).contains(&v) {
            Some(v)
        } else {
            self.d
                .error(span, format!("{what} = {v} is out of range ({lo} to {hi})"));
            None
        }
    }

    /// An optional integer key within `lo..=hi`, or `default` (absent or reported as bad).
    fn ranged_or(
        &mut self,
        v: &Option<Spanned<i64>>,
        what: &str,
        lo: i64,
        hi: i64,
        default: i64,
    ) -> i64 {
        v.as_ref()
            .and_then(|v| self.ranged(v.span(), what, *v.get_ref(), lo, hi))
            .unwrap_or(default)
    }

    fn cidrs(&mut self, list: &[Spanned<String>]) -> Vec<Cidr> {
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

    fn pattern(&mut self, s: &Spanned<String>) -> Option<Pattern> {
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
        Some(ControlConfig {
            addr: SocketAddr::new(ip, c.port.unwrap_or(DEFAULT_CONTROL_PORT)),
            allow,
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
                    .ranged(m.span(), "max_packet", *m.get_ref(), 64, 65_507)
                    .map_or(DEFAULT_MAX_PACKET, |v| v as usize),
                None => DEFAULT_MAX_PACKET,
            };
            let resend = r.resend_ms.as_ref().and_then(|m| {
                self.ranged(m.span(), "resend_ms", *m.get_ref(), 10, 3_600_000)
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

    fn operator(&mut self, item: Spanned<DeValue<'s>>) -> Option<(OperatorConfig, OpSpans)> {
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
        let Some(kind) = kind else {
            self.d.error(
                span,
                format!("{what} needs a \"type\": one of {}", quoted(raw::KINDS)),
            );
            return None;
        };
        let own = Spanned::new(span.clone(), DeValue::Table(own));
        let common_keys: Vec<&str> = raw::COMMON_KEYS.to_vec();
        let mut refs = OpSpans {
            name: common.name.span(),
            inputs: common.inputs.iter().map(|i| i.span()).collect(),
            export_root: None,
            info_op: None,
            port: None,
        };
        let kind = match kind.get_ref().as_str() {
            "oscin" => {
                let r: raw::OscIn = de(self.d, own, &what, &common_keys)?;
                refs.port = Some(r.port.span());
                Kind::OscIn(self.oscin(r)?)
            }
            "midiin" => {
                let r: raw::MidiIn = de(self.d, own, &what, &common_keys)?;
                Kind::MidiIn(self.midiin(r)?)
            }
            "script" => {
                let r: raw::Script = de(self.d, own, &what, &common_keys)?;
                Kind::Script(self.script(r)?)
            }
            "info" => {
                let r: raw::Info = de(self.d, own, &what, &common_keys)?;
                refs.info_op = Some(r.op.span());
                Kind::Info(InfoConfig {
                    op: r.op.get_ref().clone(),
                })
            }
            other => {
                self.d.error(
                    kind.span(),
                    format!(
                        "unknown operator type \"{other}\"; expected one of {}{}",
                        quoted(raw::KINDS),
                        suggestion(other, raw::KINDS.iter().copied())
                    ),
                );
                return None;
            }
        };
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
                inputs: common.inputs.iter().map(|i| i.get_ref().clone()).collect(),
                timeslice: common.timeslice.unwrap_or(false),
                scope,
                srselect: common.srselect.unwrap_or_default(),
                export,
                kind,
            },
            refs,
        ))
    }

    fn oscin(&mut self, r: raw::OscIn) -> Option<OscInConfig> {
        let ip = match &r.local_address {
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
            // Dual-stack by default: `oscsend localhost …` may arrive over IPv6.
            None => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        let multicast = match &r.multicast {
            Some(g) => match g.get_ref().parse::<Ipv4Addr>() {
                Ok(group) if group.is_multicast() => {
                    let iface = match &r.multicast_interface {
                        Some(i) => match i.get_ref().parse::<Ipv4Addr>() {
                            Ok(a) => a,
                            Err(_) => {
                                self.d.error(
                                    i.span(),
                                    format!("\"{}\" is not an IPv4 address", i.get_ref()),
                                );
                                return None;
                            }
                        },
                        None => Ipv4Addr::UNSPECIFIED,
                    };
                    Some((group, iface))
                }
                _ => {
                    self.d.error(
                        g.span(),
                        format!(
                            "\"{}\" is not an IPv4 multicast group (224.0.0.0/4)",
                            g.get_ref()
                        ),
                    );
                    return None;
                }
            },
            None => None,
        };
        // A bad field is reported and replaced by its default, so the operator still takes part
        // in the whole-graph checks (ports, names); the config is rejected anyway.
        let address_scope = r
            .address_scope
            .as_ref()
            .and_then(|s| self.pattern(s))
            .unwrap_or_else(Pattern::all);
        let strip_segments = self.ranged_or(&r.strip_segments, "strip_segments", 0, 64, 0) as usize;
        let receive_buffer = self.ranged_or(
            &r.receive_buffer,
            "receive_buffer",
            4096,
            1 << 30,
            DEFAULT_RECEIVE_BUFFER as i64,
        ) as usize;
        let max_channels = self.ranged_or(
            &r.max_channels,
            "max_channels",
            1,
            1_000_000,
            DEFAULT_MAX_CHANNELS as i64,
        ) as usize;
        Some(OscInConfig {
            bind: SocketAddr::new(ip, *r.port.get_ref()),
            multicast,
            address_scope,
            strip_segments,
            queued: r.queued.unwrap_or(false),
            allow: r
                .allow
                .as_deref()
                .map(|l| self.cidrs(l))
                .unwrap_or_default(),
            receive_buffer,
            max_channels,
        })
    }

    fn midiin(&mut self, r: raw::MidiIn) -> Option<MidiInConfig> {
        let device = self.pattern(&r.device).unwrap_or_else(Pattern::all);
        let channels = match &r.channel {
            Some(c) => parse_midi_channels(c.get_ref()).unwrap_or_else(|e| {
                self.d.error(c.span(), e);
                [true; 16]
            }),
            None => [true; 16],
        };
        let mut highres = Vec::new();
        for h in r.highres.iter().flatten() {
            if let Some(c) = self.ranged(h.span(), "highres controller", *h.get_ref(), 0, 31) {
                highres.push(c as u8);
            }
        }
        let scan =
            Duration::from_millis(self.ranged_or(&r.scan_ms, "scan_ms", 50, 60_000, 500) as u64);
        let name = |s: &Option<Spanned<String>>, default: &str| {
            s.as_ref().map_or(default.to_string(), |s| {
                crate::chop::sanitize_name(s.get_ref())
            })
        };
        Some(MidiInConfig {
            device,
            required: r.required.unwrap_or(false),
            channels,
            norm: r.norm.unwrap_or_default(),
            prefix: name(&r.prefix, "ch"),
            notename: name(&r.notename, "n"),
            controlname: name(&r.controlname, "c"),
            polyname: name(&r.polyname, "a"),
            pressurename: name(&r.pressurename, "pr"),
            pitchname: name(&r.pitchname, "pw"),
            programname: name(&r.programname, "pc"),
            highres,
            preserve_pulses: r.preserve_pulses.unwrap_or(true),
            queued: r.queued.unwrap_or(false),
            scan,
        })
    }

    fn script(&mut self, r: raw::Script) -> Option<ScriptConfig> {
        let callbacks = self.dir.join(r.callbacks.get_ref());
        if !callbacks.is_file() {
            self.d.error(
                r.callbacks.span(),
                format!("callbacks file \"{}\" does not exist", callbacks.display()),
            );
        }
        let cook_budget = Duration::from_millis(self.ranged_or(
            &r.cook_budget_ms,
            "cook_budget_ms",
            1,
            60_000,
            1000,
        ) as u64);
        let mut pars = Vec::new();
        if let Some(t) = &r.pars {
            for (k, v) in t.get_ref() {
                let init = match v {
                    toml::Value::Integer(i) => ParInit::Float(*i as f64),
                    toml::Value::Float(f) => ParInit::Float(*f),
                    toml::Value::Boolean(b) => ParInit::Float(f64::from(u8::from(*b))),
                    toml::Value::String(s) => ParInit::Str(s.clone()),
                    toml::Value::Array(a)
                        if a.iter().all(|x| {
                            x.as_float().or(x.as_integer().map(|i| i as f64)).is_some()
                        }) =>
                    {
                        ParInit::Floats(
                            a.iter()
                                .map(|x| {
                                    x.as_float()
                                        .unwrap_or_else(|| x.as_integer().unwrap_or(0) as f64)
                                })
                                .collect(),
                        )
                    }
                    _ => {
                        self.d.error(
                            t.span(),
                            format!("parameter \"{k}\" must be a number, a boolean, a string or a list of numbers"),
                        );
                        continue;
                    }
                };
                pars.push((k.clone(), init));
            }
        }
        Some(ScriptConfig {
            callbacks,
            cook_budget,
            modoutsidecook: r.modoutsidecook.unwrap_or(false),
            pars,
        })
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
                Ok(text) => match parse_export_table(&text, method_s == "datindex") {
                    Ok(rows) => Some(ExportTable { file, rows }),
                    Err(msg) => {
                        me.d.error(t.span(), format!("export table \"{}\": {msg}", t.get_ref()));
                        None
                    }
                },
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
            self.ranged(m.span(), "resend_ms", *m.get_ref(), 10, 3_600_000)
                .map(|v| Duration::from_millis(v as u64))
        });
        Some(ExportConfig {
            method,
            root,
            send: e.send.unwrap_or_default(),
            resend,
        })
    }

    /// Checks that need the whole operator list: names, inputs, cycles, ports, export roots.
    fn graph_checks(&mut self, config: &Config, spans: &[OpSpans]) {
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, op) in config.operators.iter().enumerate() {
            if let Some(&first) = index.get(op.name.as_str()) {
                let (line, _) = diag::line_col(self.src(), spans[first].name.start);
                self.d.error(
                    spans[i].name.clone(),
                    format!(
                        "duplicate operator name \"{}\" (first defined on line {line})",
                        op.name
                    ),
                );
            } else {
                index.insert(&op.name, i);
            }
        }
        let names: Vec<&str> = config.operators.iter().map(|o| o.name.as_str()).collect();
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); config.operators.len()];
        for (i, op) in config.operators.iter().enumerate() {
            for (k, input) in op.inputs.iter().enumerate() {
                match index.get(input.as_str()) {
                    Some(&j) => edges[i].push(j),
                    None => self.d.error(
                        spans[i].inputs[k].clone(),
                        format!(
                            "input \"{input}\" is not an operator{}",
                            suggestion(input, names.iter().copied())
                        ),
                    ),
                }
            }
            if let Kind::Info(info) = &op.kind {
                if info.op != "/" {
                    match index.get(info.op.as_str()) {
                        Some(&j) if j == i => {
                            if let Some(s) = spans[i].info_op.clone() {
                                self.d.error(s, "an info operator cannot inspect itself");
                            }
                        }
                        Some(&j) => edges[i].push(j),
                        None => {
                            if let Some(s) = spans[i].info_op.clone() {
                                self.d.error(
                                    s,
                                    format!(
                                        "op \"{}\" is not an operator (use \"/\" for the daemon itself){}",
                                        info.op,
                                        suggestion(&info.op, names.iter().copied())
                                    ),
                                );
                            }
                        }
                    }
                }
            }
            if let (Some(export), Some(root_span)) = (&op.export, spans[i].export_root.clone()) {
                match &export.root {
                    ExportRoot::Destination(d) if !config.destinations.contains_key(d) => {
                        let known: Vec<&str> =
                            config.destinations.keys().map(String::as_str).collect();
                        self.d.error(
                            root_span,
                            format!(
                                "export root \"{d}\" names no destination (define [destinations.{d}], or use \"op:NAME\"){}",
                                suggestion(d, known.iter().copied())
                            ),
                        );
                    }
                    ExportRoot::Op(name)
                        if !name.is_empty() && !index.contains_key(name.as_str()) =>
                    {
                        self.d.error(
                            root_span,
                            format!(
                                "export root \"op:{name}\" names no operator{}",
                                suggestion(name, names.iter().copied())
                            ),
                        );
                    }
                    _ => {}
                }
            }
        }
        if let Some(cycle) = find_cycle(&edges) {
            let path: Vec<&str> = cycle.iter().map(|&i| names[i]).collect();
            self.d.error(
                spans[cycle[0]].name.clone(),
                format!(
                    "operators form a cycle: {} -> {}",
                    path.join(" -> "),
                    path[0]
                ),
            );
        }
        // Two operators on one UDP port (and the control port) cannot both bind.
        let mut ports: HashMap<u16, usize> = HashMap::new();
        for (i, op) in config.operators.iter().enumerate() {
            if let Kind::OscIn(o) = &op.kind {
                let port = o.bind.port();
                if port == 0 {
                    continue;
                }
                if let Some(&j) = ports.get(&port) {
                    if let Some(s) = spans[i].port.clone() {
                        self.d.error(
                            s,
                            format!("port {port} is already used by operator \"{}\"", names[j]),
                        );
                    }
                } else {
                    ports.insert(port, i);
                }
                if config
                    .control
                    .as_ref()
                    .is_some_and(|c| c.addr.port() == port)
                {
                    if let Some(s) = spans[i].port.clone() {
                        self.d.error(s, format!("port {port} is the control port"));
                    }
                }
                // Feedback guard: exporting into our own input makes a loop.
                for d in config.destinations.values() {
                    if d.port == port && is_local_host(&d.host) {
                        if let Some(s) = spans[i].port.clone() {
                            self.d.warning(
                                s,
                                format!(
                                    "destination \"{}\" sends to this operator's own port {port}: exports into it can loop",
                                    d.name
                                ),
                            );
                        }
                    }
                }
            }
        }
    }

    fn src(&self) -> &'s str {
        self.d.src()
    }
}

/// Positions kept for the whole-graph checks.
struct OpSpans {
    name: std::ops::Range<usize>,
    inputs: Vec<std::ops::Range<usize>>,
    export_root: Option<std::ops::Range<usize>>,
    info_op: Option<std::ops::Range<usize>>,
    port: Option<std::ops::Range<usize>>,
}

fn quoted(list: &[&str]) -> String {
    list.iter()
        .map(|k| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_local_host(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

/// Returns one cycle (as node indices in order) if the graph `edges[i] = dependencies of i` has
/// any.
fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        i: usize,
        edges: &[Vec<usize>],
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[i] = Mark::Open;
        stack.push(i);
        for &j in &edges[i] {
            match marks[j] {
                Mark::Open => {
                    let at = stack.iter().position(|&s| s == j).unwrap_or(0);
                    let mut cycle: Vec<usize> = stack[at..].to_vec();
                    // Print in dataflow order (input first), starting at the operator written
                    // first in the file.
                    cycle.reverse();
                    let first = cycle
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, &n)| n)
                        .map_or(0, |(k, _)| k);
                    cycle.rotate_left(first);
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(j, edges, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[i] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; edges.len()];
    let mut stack = Vec::new();
    (0..edges.len()).find_map(|i| {
        if marks[i] == Mark::New {
            visit(i, edges, &mut marks, &mut stack)
        } else {
            None
        }
    })
}

/// `"1-7 12"` → the accepted MIDI channels.
pub fn parse_midi_channels(s: &str) -> Result<[bool; 16], String> {
    let mut out = [false; 16];
    for part in s.split([' ', ',']).filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let parse = |x: &str| {
            x.trim()
                .parse::<usize>()
                .ok()
                .filter(|c| (1..=16).contains(c))
                .ok_or_else(|| format!("MIDI channel \"{part}\" must be 1–16, or a range like 1-7"))
        };
        let (lo, hi) = (parse(lo)?, parse(hi)?);
        if lo > hi {
            return Err(format!("MIDI channel range \"{part}\" runs backwards"));
        }
        for c in lo..=hi {
            out[c - 1] = true;
        }
    }
    Ok(out)
}

/// Parses an export table: CSV with a header naming `chan`, `path`, `parameter` and optionally
/// `enable`, in any order. `by_index` reads `chan` as a channel index.
pub fn parse_export_table(text: &str, by_index: bool) -> Result<Vec<ExportRow>, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let Some((_, header)) = lines.next() else {
        return Err("empty table (needs a header: chan,path,parameter[,enable])".into());
    };
    let cols: Vec<String> = header
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let col = |name: &str| cols.iter().position(|c| c == name);
    let (Some(ci), Some(pi), Some(ri)) = (col("chan"), col("path"), col("parameter")) else {
        return Err(format!(
            "the header must name chan, path and parameter (found \"{}\")",
            header.trim()
        ));
    };
    let ei = col("enable");
    let mut rows = Vec::new();
    let mut seen = HashSet::new();
    for (n, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let cell = |i: usize| cells.get(i).copied().unwrap_or("");
        let chan = cell(ci);
        let chan =
            if by_index {
                ChanRef::Index(chan.parse().map_err(|_| {
                    format!("line {}: chan \"{chan}\" is not a channel index", n + 1)
                })?)
            } else {
                if chan.is_empty() {
                    return Err(format!("line {}: empty chan", n + 1));
                }
                ChanRef::Name(chan.to_string())
            };
        let parameter = cell(ri);
        if parameter.is_empty() {
            return Err(format!("line {}: empty parameter", n + 1));
        }
        let enable = match ei.map(cell) {
            None | Some("") | Some("1") | Some("on") | Some("true") => true,
            Some("0") | Some("off") | Some("false") => false,
            Some(other) => return Err(format!("line {}: enable \"{other}\" is not 1/0", n + 1)),
        };
        if !seen.insert(format!("{chan:?}")) {
            return Err(format!("line {}: channel {chan:?} is mapped twice", n + 1));
        }
        rows.push(ExportRow {
            chan,
            path: cell(pi).trim_matches('/').to_string(),
            parameter: parameter.to_string(),
            enable,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests;
