//! Reading a config file: the TOML tree key by key into the checked model, every problem
//! reported (all of them, not the first). Operator kinds check their own keys (see `kind`);
//! whole-config checks and the cook order are in `refs`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::checker::{de, Checker};
use super::diag::suggestion;
use super::kind::Kinds;
use super::model::*;
use super::raw;
use super::refs::{self, OpRefs};
use crate::pattern::Pattern;

/// Reads one config file with the kinds it may use.
pub(super) struct Reader<'c, 'a, 's> {
    pub cx: &'c mut Checker<'a, 's>,
    pub kinds: &'c Kinds,
}

impl<'s> Reader<'_, '_, 's> {
    pub(super) fn check(&mut self, path: &Path, src: &'s str) -> Option<Config> {
        let root = match DeTable::parse(src) {
            Ok(t) => t,
            Err(e) => {
                let at = e.span().unwrap_or(0..0);
                self.cx
                    .d
                    .error(at, format!("TOML syntax: {}", e.message().trim_end()));
                return None;
            }
        };
        let mut config = Config {
            file: path.to_path_buf(),
            rate: DEFAULT_RATE,
            max_slice: Duration::from_millis(DEFAULT_MAX_SLICE_MS),
            watch: true,
            react: false,
            rss_warn_mb: None,
            state_dir: None,
            control: None,
            oscquery: None,
            python_path: Vec::new(),
            destinations: BTreeMap::new(),
            midi_destinations: BTreeMap::new(),
            operators: Vec::new(),
            order: Vec::new(),
            warnings: Vec::new(),
        };
        let mut ops_raw = Vec::new();
        for (key, value) in root.into_inner() {
            let span = value.span();
            match key.get_ref().as_ref() {
                "rate" => {
                    if let Some(r) = de::<f64>(self.cx.d, value, "rate", &[]) {
                        if (RATE.0..=RATE.1).contains(&r) {
                            config.rate = r;
                        } else {
                            self.cx.d.error(
                                span,
                                format!("rate {r} is out of range (1 to 1000 frames per second)"),
                            );
                        }
                    }
                }
                "max_slice_ms" => {
                    if let Some(ms) = de::<i64>(self.cx.d, value, "max_slice_ms", &[]) {
                        if let Some(ms) = self.cx.ranged(span, "max_slice_ms", ms, MAX_SLICE_MS) {
                            config.max_slice = Duration::from_millis(ms as u64);
                        }
                    }
                }
                "watch" => {
                    if let Some(w) = de::<bool>(self.cx.d, value, "watch", &[]) {
                        config.watch = w;
                    }
                }
                "react" => {
                    if let Some(r) = de::<bool>(self.cx.d, value, "react", &[]) {
                        config.react = r;
                    }
                }
                "rss_warn_mb" => {
                    if let Some(mb) = de::<i64>(self.cx.d, value, "rss_warn_mb", &[]) {
                        if let Some(mb) = self.cx.ranged(span, "rss_warn_mb", mb, RSS_WARN_MB) {
                            config.rss_warn_mb = Some(mb as u64);
                        }
                    }
                }
                "state_dir" => {
                    if let Some(d) = de::<String>(self.cx.d, value, "state_dir", &[]) {
                        config.state_dir = Some(self.cx.dir().join(d));
                    }
                }
                "control" => {
                    if let Some(c) = de::<raw::Control>(self.cx.d, value, "[control]", &[]) {
                        config.control = self.control(c);
                    }
                }
                "oscquery" => {
                    if let Some(q) = de::<raw::OscQuery>(self.cx.d, value, "[oscquery]", &[]) {
                        config.oscquery = self.oscquery(q);
                    }
                }
                "python" => {
                    if let Some(p) = de::<raw::Python>(self.cx.d, value, "[python]", &[]) {
                        config.python_path = p
                            .path
                            .iter()
                            .map(|s| self.cx.dir().join(s.get_ref()))
                            .collect();
                    }
                }
                "destinations" => self.destinations(
                    value,
                    &mut config.destinations,
                    &mut config.midi_destinations,
                ),
                "operator" => match value.into_inner() {
                    DeValue::Array(items) => ops_raw.extend(items),
                    _ => self.cx.d.error(
                        span,
                        "\"operator\" must be an array of tables: write [[operator]]",
                    ),
                },
                other => {
                    let key_span = key.span();
                    self.cx.d.error(
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
        refs::place(self.cx.d, &mut config, &mut spans);
        config.order = refs::check(self.cx.d, &config, &spans);
        Some(config)
    }

    fn control(&mut self, c: raw::Control) -> Option<ControlConfig> {
        let ip = match &c.address {
            Some(a) => self.cx.ip(a)?,
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        let allow = match &c.allow {
            Some(list) => self.cx.cidrs(list),
            None => vec![Cidr {
                addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
                prefix: 8,
            }],
        };
        let full_replies = match &c.full_replies {
            Some(list) => self.cx.cidrs(list),
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
                self.cx.d.error(
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
        let socket = c.socket.as_ref().map(|s| self.cx.dir().join(s.get_ref()));
        Some(ControlConfig {
            addr: SocketAddr::new(ip, c.port.unwrap_or(DEFAULT_CONTROL_PORT)),
            allow,
            token,
            full_replies,
            socket,
        })
    }

    fn oscquery(&mut self, q: raw::OscQuery) -> Option<OscQueryConfig> {
        let ip = match &q.address {
            Some(a) => self.cx.ip(a)?,
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        let name = match &q.name {
            Some(n) => {
                let s = n.get_ref().trim();
                // The name is a DNS-SD instance label: at most 63 bytes, printable.
                if s.is_empty() || s.len() > 63 || s.chars().any(char::is_control) {
                    self.cx.d.error(
                        n.span(),
                        "the OSCQuery name is 1 to 63 bytes without control characters",
                    );
                    return None;
                }
                s.to_string()
            }
            None => "chopd".to_string(),
        };
        Some(OscQueryConfig {
            addr: SocketAddr::new(ip, q.port.unwrap_or(DEFAULT_OSCQUERY_PORT)),
            name,
            announce: q.announce.unwrap_or(false),
        })
    }

    fn destinations(
        &mut self,
        value: Spanned<DeValue<'s>>,
        out: &mut BTreeMap<String, Destination>,
        midi: &mut BTreeMap<String, std::sync::Arc<dyn Settings>>,
    ) {
        let span = value.span();
        let DeValue::Table(table) = value.into_inner() else {
            self.cx.d.error(
                span,
                "\"destinations\" must be a table: write [destinations.NAME]",
            );
            return;
        };
        for (name, value) in table {
            let name = name.get_ref().to_string();
            let what = format!("destination \"{name}\"");
            let value = match self.midi_destination(&name, &what, value, midi) {
                Some(osc) => osc,
                None => continue,
            };
            let Some(r) = de::<raw::Destination>(self.cx.d, value, &what, &[]) else {
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
                    .cx
                    .ranged(m.span(), "max_packet", *m.get_ref(), MAX_PACKET)
                    .map_or(DEFAULT_MAX_PACKET, |v| v as usize),
                None => DEFAULT_MAX_PACKET,
            };
            let resend = r.resend_ms.as_ref().and_then(|m| {
                self.cx
                    .ranged(m.span(), "resend_ms", *m.get_ref(), RESEND_MS)
                    .map(|v| Duration::from_millis(v as u64))
            });
            let transport = self.transport(&r);
            let keepalive = self.keepalives(r.keepalive.as_deref().unwrap_or_default());
            if *r.port.get_ref() == 0 {
                self.cx
                    .d
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
                    transport,
                    keepalive,
                },
            );
        }
    }

    /// A `type = "midi"` destination: its keys are those of the `midiout` kind, checked by it
    /// and kept as its settings in `midi_destinations`; `None` then. Any other destination is
    /// handed back without its `type` (`"osc"`, the default) for the OSC checks.
    fn midi_destination(
        &mut self,
        name: &str,
        what: &str,
        value: Spanned<DeValue<'s>>,
        midi: &mut BTreeMap<String, std::sync::Arc<dyn Settings>>,
    ) -> Option<Spanned<DeValue<'s>>> {
        let span = value.span();
        let DeValue::Table(table) = value.into_inner() else {
            self.cx.d.error(span, format!("{what} must be a table"));
            return None;
        };
        let mut own = DeTable::new();
        let mut is_midi = false;
        for (k, v) in table {
            if k.get_ref() != "type" {
                own.insert(k, v);
                continue;
            }
            match v.get_ref().as_str() {
                Some("midi") => is_midi = true,
                Some("osc") => {}
                _ => self.cx.d.error(
                    v.span(),
                    format!("{what}: \"type\" is \"osc\" (the default) or \"midi\""),
                ),
            }
        }
        let own = Spanned::new(span, DeValue::Table(own));
        if !is_midi {
            return Some(own);
        }
        let kind = self.kinds.iter().find(|k| k.name() == "midiout")?;
        let mut refs = OpRefs::new(0..0, Vec::new());
        if let Some(settings) = kind.check(self.cx, own, what, &[], &mut refs) {
            midi.insert(name.to_string(), settings);
        }
        None
    }

    /// A destination's transport: UDP, multicast when the host is an IPv4 group, or TCP.
    fn transport(&mut self, r: &raw::Destination) -> Transport {
        let group = r
            .host
            .get_ref()
            .parse::<Ipv4Addr>()
            .ok()
            .filter(Ipv4Addr::is_multicast);
        let d = &mut *self.cx.d;
        let tcp = r.protocol == Some(OscProtocol::Tcp);
        if let (false, Some(f)) = (tcp, &r.framing) {
            d.error(f.span(), "framing applies to protocol = \"tcp\" only");
        }
        if group.is_none() || tcp {
            let why = if tcp {
                "multicast needs protocol = \"udp\""
            } else {
                "multicast settings need an IPv4 multicast group (224.0.0.0/4) as host"
            };
            for span in [
                r.multicast_ttl.as_ref().map(Spanned::span),
                r.multicast_interface.as_ref().map(Spanned::span),
            ]
            .into_iter()
            .flatten()
            {
                d.error(span, why);
            }
        }
        if tcp {
            if group.is_some() {
                d.error(
                    r.host.span(),
                    "a multicast group cannot be reached over TCP",
                );
            }
            let framing = r
                .framing
                .as_ref()
                .map_or(OscFraming::Slip, |f| *f.get_ref());
            return Transport::Tcp(framing.into());
        }
        if group.is_none() {
            return Transport::Udp;
        }
        let ttl =
            self.cx
                .ranged_or(&r.multicast_ttl, "multicast_ttl", MULTICAST_TTL, 1) as u32;
        let interface = match &r.multicast_interface {
            Some(i) => match i.get_ref().parse::<Ipv4Addr>() {
                Ok(a) => a,
                Err(_) => {
                    self.cx.d.error(
                        i.span(),
                        format!("\"{}\" is not an IPv4 address", i.get_ref()),
                    );
                    Ipv4Addr::UNSPECIFIED
                }
            },
            None => Ipv4Addr::UNSPECIFIED,
        };
        Transport::Multicast { ttl, interface }
    }

    /// A destination's keep-alive messages.
    fn keepalives(&mut self, list: &[raw::Keepalive]) -> Vec<Keepalive> {
        let mut out = Vec::new();
        for k in list {
            let address = k.address.get_ref();
            if !address.starts_with('/') {
                self.cx.d.error(
                    k.address.span(),
                    format!("an OSC address starts with \"/\": \"{address}\""),
                );
                continue;
            }
            let every = *k.every_s.get_ref();
            if !(KEEPALIVE_MIN_S..=KEEPALIVE_MAX_S).contains(&every) {
                self.cx.d.error(
                    k.every_s.span(),
                    format!(
                        "every_s must be between {KEEPALIVE_MIN_S} and {KEEPALIVE_MAX_S} (is {every})"
                    ),
                );
                continue;
            }
            let mut args = Vec::new();
            for a in k.args.as_ref().map_or(&[][..], |a| a.get_ref()) {
                args.push(match a {
                    raw::KeepaliveArg::Int(i) => match i32::try_from(*i) {
                        Ok(i) => rosc::OscType::Int(i),
                        Err(_) => {
                            let span = k
                                .args
                                .as_ref()
                                .map(Spanned::span)
                                .unwrap_or(k.address.span());
                            self.cx
                                .d
                                .error(span, format!("{i} does not fit an OSC int32"));
                            continue;
                        }
                    },
                    raw::KeepaliveArg::Float(f) => rosc::OscType::Float(*f as f32),
                    raw::KeepaliveArg::Str(s) => rosc::OscType::String(s.clone()),
                });
            }
            out.push(Keepalive {
                address: address.clone(),
                every: Duration::from_secs_f64(every),
                args,
            });
        }
        out
    }

    fn operator(&mut self, item: Spanned<DeValue<'s>>) -> Option<(OperatorConfig, OpRefs)> {
        let span = item.span();
        let DeValue::Table(table) = item.into_inner() else {
            self.cx.d.error(span, "an operator must be a table");
            return None;
        };
        let mut common = DeTable::new();
        let mut own = DeTable::new();
        let mut kind: Option<Spanned<String>> = None;
        for (k, v) in table {
            if k.get_ref() == "type" {
                match v.get_ref().as_str() {
                    Some(s) => kind = Some(Spanned::new(v.span(), s.to_string())),
                    None => self.cx.d.error(v.span(), "\"type\" must be a string"),
                }
            } else if raw::COMMON_KEYS.contains(&k.get_ref().as_ref()) {
                common.insert(k, v);
            } else {
                own.insert(k, v);
            }
        }
        let common: raw::Common = de(
            self.cx.d,
            Spanned::new(span.clone(), DeValue::Table(common)),
            "operator",
            &[],
        )?;
        let name = common.name.get_ref().clone();
        let what = format!("operator \"{name}\"");
        if !name.split('/').all(crate::path::valid_segment) {
            self.cx.d.error(
                common.name.span(),
                format!(
                    "operator name \"{name}\" may only hold letters, digits and `_` (and `/` \
                     between a component's name and an operator inside it: \"show/gain\")"
                ),
            );
        }
        let kinds = self.kinds;
        let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
        let Some(kind) = kind else {
            self.cx.d.error(
                span,
                format!("{what} needs a \"type\": one of {}", quoted(&names)),
            );
            return None;
        };
        let Some(registered) = kinds.iter().find(|k| k.name() == kind.get_ref()) else {
            let other = kind.get_ref();
            self.cx.d.error(
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
        let settings = registered.check(self.cx, own, &what, raw::COMMON_KEYS, &mut refs)?;
        let scope = common
            .scope
            .as_ref()
            .and_then(|s| self.cx.pattern(s))
            .unwrap_or_else(Pattern::all);
        let export = match &common.export {
            Some(e) => {
                refs.export_root = Some(e.get_ref().root.span());
                self.export(e.get_ref(), &mut refs.export_dat)
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

    /// Reads an export; a table operator it names (`dat`) goes into `dat_ref`, for the
    /// whole-config checks.
    fn export(
        &mut self,
        e: &raw::Export,
        dat_ref: &mut Option<(String, std::ops::Range<usize>)>,
    ) -> Option<ExportConfig> {
        let root_s = e.root.get_ref();
        let root = match root_s.strip_prefix("op:") {
            Some("/") => ExportRoot::Op(String::new()),
            Some(name) => ExportRoot::Op(crate::path::key_of(name).unwrap_or_default()),
            None => ExportRoot::Destination(root_s.clone()),
        };
        let method_s = e
            .method
            .as_ref()
            .map_or("autoname", |m| m.get_ref().as_str());
        let mut table = |me: &mut Self| -> Option<ExportTable> {
            let t = match (&e.table, &e.dat) {
                (Some(_), Some(d)) => {
                    me.cx.d.error(
                        d.span(),
                        "an export table is a file (\"table\") or a table operator (\"dat\"), not both",
                    );
                    return None;
                }
                (None, Some(d)) => {
                    *dat_ref = Some((d.get_ref().clone(), d.span()));
                    return Some(ExportTable {
                        source: TableSource::Dat(d.get_ref().clone()),
                        rows: Vec::new(),
                    });
                }
                (Some(t), None) => t,
                (None, None) => {
                    me.cx.d.error(
                        e.root.span(),
                        format!("export method \"{method_s}\" needs a \"table\" (a CSV file) or a \"dat\" (a table operator)"),
                    );
                    return None;
                }
            };
            let file = me.cx.dir().join(t.get_ref());
            match std::fs::read_to_string(&file) {
                Ok(text) => {
                    match super::tables::parse_export_table(&text, method_s == "datindex") {
                        Ok(rows) => Some(ExportTable {
                            source: TableSource::File(file),
                            rows,
                        }),
                        Err(msg) => {
                            me.cx.d.error(
                                t.span(),
                                format!("export table \"{}\": {msg}", t.get_ref()),
                            );
                            None
                        }
                    }
                }
                Err(err) => {
                    me.cx.d.error(
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
                self.cx.d.error(
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
            self.cx
                .ranged(m.span(), "resend_ms", *m.get_ref(), RESEND_MS)
                .map(|v| Duration::from_millis(v as u64))
        });
        Some(ExportConfig {
            method,
            root,
            send: e.send.unwrap_or_default(),
            resend,
        })
    }
}

fn quoted(list: &[&str]) -> String {
    list.iter()
        .map(|k| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(", ")
}
