//! The daemon's status: one [`Status`] taken from the graph on the cook thread, rendered by the
//! control port as `/chopd/status/…` OSC messages or as JSON, and read back from that JSON by
//! `chopd ctl`. Its numbers keep the names the Info CHOP gives the same quantities.

use std::time::Duration;

use rosc::{OscMessage, OscType};
use serde::{Deserialize, Deserializer, Serialize};

use super::request::PREFIX;
use crate::cook::{DaemonStats, ParValue};
use crate::graph::Graph;

/// Everything `/chopd/status` reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    /// Seconds since the daemon started.
    #[serde(deserialize_with = "number")]
    pub uptime: f64,
    pub daemon: DaemonStatus,
    pub control: ControlStatus,
    pub operators: Vec<OpStatus>,
}

/// The clock and traffic of the whole daemon; times in ms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    #[serde(deserialize_with = "number")]
    pub rate: f64,
    pub frames: u64,
    pub dropped_frames: u64,
    #[serde(deserialize_with = "number")]
    pub lateness_p50: f64,
    #[serde(deserialize_with = "number")]
    pub lateness_p99: f64,
    #[serde(deserialize_with = "number")]
    pub lateness_max: f64,
    #[serde(deserialize_with = "number")]
    pub frame_time: f64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub messages_out: u64,
    #[serde(default)]
    pub dests_down: u64,
    #[serde(default)]
    pub dest_outages: u64,
    #[serde(default)]
    pub dest_drops: u64,
    #[serde(deserialize_with = "number")]
    pub rss_mb: f64,
    /// Reaction passes between frames (`react = true`), and arrivals that waited for the frame
    /// because the interval's reaction budget was spent.
    #[serde(default)]
    pub react_passes: u64,
    #[serde(default)]
    pub react_deferred: u64,
}

/// The control port's own counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ControlStatus {
    pub packets: u64,
    pub requests: u64,
    pub malformed: u64,
    pub refused: u64,
    pub failed: u64,
    /// Requests past the bound per packet, refused unread.
    #[serde(default)]
    pub excess: u64,
    /// Requests refused by the sender's rate limit.
    #[serde(default)]
    pub limited: u64,
    /// Mutating requests refused for a missing or wrong token.
    #[serde(default)]
    pub denied: u64,
    /// Replies not sent whole because the sender may not have replies larger than its request.
    #[serde(default)]
    pub clipped: u64,
}

/// Marks a string value cut short in an OSC status reply; the full value is over the local
/// socket.
pub const CLIPPED_MARK: &str = "…[clipped]";

/// Longest string value, in bytes, an OSC status reply carries.
pub const OSC_STRING_MAX: usize = 1024;

/// One operator; `cook_time` in ms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpStatus {
    pub name: String,
    pub kind: String,
    pub total_cooks: u64,
    /// The cooks between frames (`react = true`), in `total_cooks` too.
    #[serde(default)]
    pub react_cooks: u64,
    #[serde(deserialize_with = "number")]
    pub cook_time: f64,
    pub cook_frame: i64,
    pub errors: u64,
    pub warnings: u64,
    pub last_error: Option<String>,
    pub export_sernum: u64,
    pub num_channels: usize,
    /// Kind-specific: OSC counters and bound `port`, MIDI `connected`, script state, …
    #[serde(serialize_with = "in_order::serialize", deserialize_with = "extras")]
    pub extras: Vec<(String, f64)>,
    /// Parameters the operator lists, then those only an export drives.
    #[serde(with = "in_order")]
    pub pars: Vec<(String, ParStatus)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParStatus {
    /// `None` when the operator does not list the parameter (an export drives it).
    pub value: Option<ParValue>,
    /// The operator whose export drives the parameter.
    pub driven_by: Option<String>,
}

impl Status {
    /// Takes the status of every operator, or of `only`, on the cook thread.
    pub fn of(
        g: &Graph,
        only: Option<&str>,
        control: ControlStatus,
        uptime: Duration,
    ) -> Result<Status, String> {
        if let Some(name) = only {
            if g.node(name).is_none() {
                return Err(format!("no operator \"{name}\""));
            }
        }
        let operators = g
            .nodes()
            .iter()
            .filter(|n| only.is_none_or(|o| o == n.name))
            .map(|n| {
                let s = &n.stats;
                let mut pars: Vec<(String, ParStatus)> = g
                    .operator(&n.name)
                    .map(|op| op.pars())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(p, v)| {
                        let driven_by = g.driven_by(&n.name, &p).map(str::to_string);
                        let value = Some(v);
                        (p, ParStatus { value, driven_by })
                    })
                    .collect();
                for (p, by) in g.driven_pars(&n.name) {
                    if !pars.iter().any(|(q, _)| q == p) {
                        let driven_by = Some(by.to_string());
                        pars.push((
                            p.to_string(),
                            ParStatus {
                                value: None,
                                driven_by,
                            },
                        ));
                    }
                }
                OpStatus {
                    name: n.name.clone(),
                    kind: n.kind.to_string(),
                    total_cooks: s.total_cooks,
                    react_cooks: s.react_cooks,
                    cook_time: s.cook_time_ms,
                    cook_frame: s.cook_frame,
                    errors: s.errors,
                    warnings: s.warnings,
                    last_error: s.last_error.clone(),
                    export_sernum: s.export_sernum,
                    num_channels: n.output.num_chans(),
                    extras: n.extras.iter().map(|&(k, v)| (k.to_string(), v)).collect(),
                    pars,
                }
            })
            .collect();
        Ok(Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime: uptime.as_secs_f64(),
            daemon: DaemonStatus::new(&g.daemon, g.rate()),
            control,
            operators,
        })
    }

    /// Cuts every string value longer than `max` bytes (at a character boundary) and marks it
    /// with [`CLIPPED_MARK`], so that a status fits a datagram whatever a script stores.
    pub fn clip_strings(&mut self, max: usize) {
        let clip = |s: &mut String| {
            if s.len() > max {
                let mut end = max;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.truncate(end);
                s.push_str(CLIPPED_MARK);
            }
        };
        for op in &mut self.operators {
            if let Some(e) = &mut op.last_error {
                clip(e);
            }
            for (_, p) in &mut op.pars {
                if let Some(ParValue::Str(v)) = &mut p.value {
                    clip(v);
                }
            }
        }
    }

    /// As OSC messages: `/chopd/status/daemon/*`, `/chopd/status/control/*`, then
    /// `/chopd/status/op/NAME/*` for each operator.
    pub fn messages(&self) -> Vec<OscMessage> {
        let d = &self.daemon;
        let p = |k: &str| format!("{PREFIX}/status/daemon/{k}");
        let mut out = vec![
            msg(p("version"), OscType::String(self.version.clone())),
            msg(p("uptime"), float(self.uptime)),
            msg(p("rate"), float(d.rate)),
            msg(p("frames"), int(d.frames)),
            msg(p("dropped_frames"), int(d.dropped_frames)),
            msg(p("lateness_p50"), float(d.lateness_p50)),
            msg(p("lateness_p99"), float(d.lateness_p99)),
            msg(p("lateness_max"), float(d.lateness_max)),
            msg(p("frame_time"), float(d.frame_time)),
            msg(p("packets_in"), int(d.packets_in)),
            msg(p("packets_out"), int(d.packets_out)),
            msg(p("messages_out"), int(d.messages_out)),
            msg(p("dests_down"), int(d.dests_down)),
            msg(p("dest_outages"), int(d.dest_outages)),
            msg(p("dest_drops"), int(d.dest_drops)),
            msg(p("rss_mb"), float(d.rss_mb)),
            msg(p("react_passes"), int(d.react_passes)),
            msg(p("react_deferred"), int(d.react_deferred)),
        ];
        for (k, v) in self.control.list() {
            out.push(msg(format!("{PREFIX}/status/control/{k}"), int(v)));
        }
        for op in &self.operators {
            let p = |k: &str| format!("{PREFIX}/status/op/{}/{k}", op.name);
            out.extend([
                msg(p("kind"), OscType::String(op.kind.clone())),
                msg(p("total_cooks"), int(op.total_cooks)),
                msg(p("react_cooks"), int(op.react_cooks)),
                msg(p("cook_time"), float(op.cook_time)),
                msg(p("cook_frame"), int(op.cook_frame.max(0) as u64)),
                msg(p("errors"), int(op.errors)),
                msg(p("warnings"), int(op.warnings)),
                msg(
                    p("last_error"),
                    OscType::String(op.last_error.clone().unwrap_or_default()),
                ),
                msg(p("export_sernum"), int(op.export_sernum)),
                msg(p("num_channels"), int(op.num_channels as u64)),
            ]);
            for (k, v) in &op.extras {
                out.push(msg(p(k), float(*v)));
            }
            for (par, s) in &op.pars {
                if let Some(v) = &s.value {
                    out.push(msg(p(&format!("par/{par}")), par_arg(v)));
                }
                if let Some(by) = &s.driven_by {
                    out.push(msg(
                        p(&format!("driven/{par}")),
                        OscType::String(by.clone()),
                    ));
                }
            }
        }
        out
    }

    /// As one JSON document. Going through a JSON value orders object keys as serde_json's
    /// maps do, as the status has always been written.
    pub fn json(&self) -> serde_json::Value {
        // A tree of strings, numbers and maps always converts.
        serde_json::to_value(self).expect("status as JSON")
    }

    /// The JSON status as a few lines per operator, for people.
    pub fn human(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let (d, c) = (&self.daemon, &self.control);
        let _ = writeln!(
            s,
            "chopd {}  up {:.0} s  {} fps  frames {}  dropped {}  lateness p99 {:.3} ms  frame {:.3} ms  rss {:.0} MB",
            self.version,
            or0(self.uptime),
            json_number(d.rate),
            d.frames,
            d.dropped_frames,
            or0(d.lateness_p99),
            or0(d.frame_time),
            or0(d.rss_mb),
        );
        let _ = writeln!(
            s,
            "control  requests {}  failed {}  malformed {}  refused {}",
            c.requests, c.failed, c.malformed, c.refused
        );
        if d.react_passes + d.react_deferred > 0 {
            let _ = writeln!(
                s,
                "react    passes {}  deferred to the frame {}",
                d.react_passes, d.react_deferred
            );
        }
        if c.excess + c.limited + c.denied + c.clipped > 0 {
            let _ = writeln!(
                s,
                "         excess {}  limited {}  denied {}  clipped {}",
                c.excess, c.limited, c.denied, c.clipped
            );
        }
        for op in &self.operators {
            let _ = writeln!(
                s,
                "{} ({})  cooks {}  errors {}  warnings {}  channels {}",
                op.name, op.kind, op.total_cooks, op.errors, op.warnings, op.num_channels,
            );
            if let Some(e) = &op.last_error {
                let _ = writeln!(s, "    last error: {e}");
            }
            if !op.extras.is_empty() {
                let line: Vec<String> = op
                    .extras
                    .iter()
                    .map(|(k, v)| match *v {
                        // Counters are whole numbers: no ".0".
                        f if f.fract() == 0.0 && f.abs() < 1e15 => format!("{k} {}", f as i64),
                        f => format!("{k} {}", json_number(f)),
                    })
                    .collect();
                let _ = writeln!(s, "    {}", line.join("  "));
            }
            for (name, p) in &op.pars {
                let value = match &p.value {
                    None => String::new(),
                    Some(ParValue::Float(f)) => format!(" = {}", json_number(*f)),
                    Some(ParValue::Str(v)) => format!(" = {}", serde_json::Value::from(v.as_str())),
                };
                let by = match &p.driven_by {
                    Some(by) => format!("  (driven by the export of \"{by}\")"),
                    None => String::new(),
                };
                let _ = writeln!(s, "    par {name}{value}{by}");
            }
        }
        s.trim_end().to_string()
    }
}

impl DaemonStatus {
    fn new(d: &DaemonStats, rate: f64) -> DaemonStatus {
        DaemonStatus {
            rate,
            frames: d.frames,
            dropped_frames: d.dropped_frames,
            lateness_p50: d.lateness_p50_ms,
            lateness_p99: d.lateness_p99_ms,
            lateness_max: d.lateness_max_ms,
            frame_time: d.frame_time_ms,
            packets_in: d.packets_in,
            packets_out: d.packets_out,
            messages_out: d.messages_out,
            dests_down: d.dests_down,
            dest_outages: d.dest_outages,
            dest_drops: d.dest_drops,
            rss_mb: d.rss_mb,
            react_passes: d.react_passes,
            react_deferred: d.react_deferred,
        }
    }
}

impl ControlStatus {
    /// In the order the OSC status sends them.
    fn list(&self) -> [(&'static str, u64); 9] {
        [
            ("packets", self.packets),
            ("requests", self.requests),
            ("malformed", self.malformed),
            ("refused", self.refused),
            ("failed", self.failed),
            ("excess", self.excess),
            ("limited", self.limited),
            ("denied", self.denied),
            ("clipped", self.clipped),
        ]
    }
}

/// What JSON cannot carry (`null`) shows as 0.
fn or0(f: f64) -> f64 {
    if f.is_finite() {
        f
    } else {
        0.0
    }
}

/// A number as JSON writes it (`100.0`, `0.5`, `null` when not finite).
fn json_number(f: f64) -> serde_json::Value {
    serde_json::Value::from(f)
}

fn msg(addr: String, arg: OscType) -> OscMessage {
    OscMessage {
        addr,
        args: vec![arg],
    }
}

/// Counters as OSC ints, saturating.
pub(crate) fn int(v: u64) -> OscType {
    OscType::Int(v.min(i32::MAX as u64) as i32)
}

fn float(v: f64) -> OscType {
    OscType::Float(v as f32)
}

fn par_arg(v: &ParValue) -> OscType {
    match v {
        ParValue::Float(f) => OscType::Float(*f as f32),
        ParValue::Str(s) => OscType::String(s.clone()),
    }
}

/// JSON writes a number that is not finite as `null`: read back as NaN.
fn number<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn extras<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, f64)>, D::Error> {
    struct Number(f64);
    impl<'de> Deserialize<'de> for Number {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Number, D::Error> {
            number(d).map(Number)
        }
    }
    let list: Vec<(String, Number)> = in_order::deserialize(d)?;
    Ok(list.into_iter().map(|(k, n)| (k, n.0)).collect())
}

/// A list of (key, value) as a JSON object, keys in list order.
mod in_order {
    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
    use serde::ser::{Serialize, Serializer};
    use std::marker::PhantomData;

    pub fn serialize<S: Serializer, V: Serialize>(
        list: &[(String, V)],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(list.iter().map(|(k, v)| (k, v)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<(String, V)>, D::Error> {
        struct List<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for List<V> {
            type Value = Vec<(String, V)>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(out)
            }
        }
        d.deserialize_map(List(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chop::info::{DAEMON_CHANNELS, OP_CHANNELS};

    fn sample() -> Status {
        Status {
            version: "1.2.3".into(),
            uptime: 12.5,
            daemon: DaemonStatus {
                rate: 100.0,
                frames: 1250,
                dropped_frames: 1,
                lateness_p50: 0.05,
                lateness_p99: 0.25,
                lateness_max: 1.5,
                frame_time: 0.125,
                packets_in: 7,
                packets_out: 9,
                messages_out: 11,
                dests_down: 1,
                dest_outages: 2,
                dest_drops: 3,
                rss_mb: 21.0,
                react_passes: 4,
                react_deferred: 1,
            },
            control: ControlStatus {
                packets: 5,
                requests: 4,
                malformed: 1,
                refused: 0,
                failed: 2,
                ..ControlStatus::default()
            },
            operators: vec![OpStatus {
                name: "in".into(),
                kind: "oscin".into(),
                total_cooks: 3,
                react_cooks: 2,
                cook_time: 0.01,
                cook_frame: -1,
                errors: 0,
                warnings: 2,
                last_error: Some("boom".into()),
                export_sernum: 1,
                num_channels: 2,
                extras: vec![("port".into(), 9000.0), ("packets".into(), 4.0)],
                pars: vec![
                    (
                        "Gain".into(),
                        ParStatus {
                            value: Some(ParValue::Float(0.5)),
                            driven_by: None,
                        },
                    ),
                    (
                        "Mode".into(),
                        ParStatus {
                            value: Some(ParValue::Str("fast".into())),
                            driven_by: Some("src".into()),
                        },
                    ),
                    (
                        "Level".into(),
                        ParStatus {
                            value: None,
                            driven_by: Some("src".into()),
                        },
                    ),
                ],
            }],
        }
    }

    /// The JSON `chopd ctl` reads back is the status it was written from.
    #[test]
    fn json_reads_back() {
        let mut s = sample();
        let back: Status = serde_json::from_str(&s.json().to_string()).unwrap();
        assert_eq!(back.json(), s.json());
        assert_eq!(back.operators[0].pars.len(), 3);
        // Not finite: null in JSON, NaN again when read.
        s.daemon.lateness_max = f64::NAN;
        s.operators[0].extras[0].1 = f64::INFINITY;
        let back: Status = serde_json::from_str(&s.json().to_string()).unwrap();
        assert!(back.daemon.lateness_max.is_nan());
        assert!(back.operators[0].extras.iter().any(|(_, v)| v.is_nan()));
    }

    #[test]
    fn json_keys() {
        let j = sample().json();
        assert_eq!(j["version"], "1.2.3");
        assert_eq!(j["daemon"]["lateness_p99"], 0.25);
        assert_eq!(j["control"]["failed"], 2);
        let op = &j["operators"][0];
        assert_eq!(op["cook_frame"], -1);
        assert_eq!(op["extras"]["port"], 9000.0);
        assert_eq!(op["pars"]["Gain"]["value"], 0.5);
        assert!(op["pars"]["Gain"]["driven_by"].is_null());
        assert_eq!(op["pars"]["Mode"]["value"], "fast");
        assert!(op["pars"]["Level"]["value"].is_null());
        assert_eq!(op["pars"]["Level"]["driven_by"], "src");
    }

    #[test]
    fn osc_messages() {
        let m = sample().messages();
        let find = |a: &str| {
            m.iter()
                .find(|m| m.addr == a)
                .unwrap_or_else(|| panic!("no {a}"))
                .args
                .clone()
        };
        assert_eq!(find("/chopd/status/daemon/uptime"), [OscType::Float(12.5)]);
        assert_eq!(find("/chopd/status/daemon/frames"), [OscType::Int(1250)]);
        assert_eq!(find("/chopd/status/control/failed"), [OscType::Int(2)]);
        assert_eq!(find("/chopd/status/op/in/cook_frame"), [OscType::Int(0)]);
        assert_eq!(
            find("/chopd/status/op/in/last_error"),
            [OscType::String("boom".into())]
        );
        assert_eq!(find("/chopd/status/op/in/port"), [OscType::Float(9000.0)]);
        assert_eq!(find("/chopd/status/op/in/par/Gain"), [OscType::Float(0.5)]);
        assert_eq!(
            find("/chopd/status/op/in/driven/Level"),
            [OscType::String("src".into())]
        );
        assert!(!m.iter().any(|m| m.addr == "/chopd/status/op/in/par/Level"));
        assert_eq!(int(u64::MAX), OscType::Int(i32::MAX));
    }

    /// A number of the status and an Info CHOP channel of the same name are the same quantity;
    /// the status invents no names of its own for them.
    #[test]
    fn numbers_keep_the_info_chop_names() {
        let j = sample().json();
        let daemon: Vec<&str> = DAEMON_CHANNELS.iter().map(|c| c.0).collect();
        for k in j["daemon"].as_object().unwrap().keys() {
            assert!(daemon.contains(&k.as_str()), "daemon {k}");
        }
        let op: Vec<&str> = OP_CHANNELS.iter().map(|c| c.0).collect();
        for (k, v) in j["operators"][0].as_object().unwrap() {
            if v.is_number() {
                assert!(op.contains(&k.as_str()), "operator {k}");
            }
        }
    }

    #[test]
    fn human_lines() {
        let h = sample().human();
        assert!(h.starts_with("chopd 1.2.3  up 12 s  100.0 fps  frames 1250  dropped 1"));
        assert!(h.contains("\ncontrol  requests 4  failed 2  malformed 1  refused 0\n"));
        assert!(h.contains("\nreact    passes 4  deferred to the frame 1\n"));
        assert!(h.contains("\nin (oscin)  cooks 3  errors 0  warnings 2  channels 2\n"));
        assert!(h.contains("\n    last error: boom\n"));
        assert!(h.contains("\n    port 9000  packets 4\n"));
        assert!(h.contains("\n    par Gain = 0.5\n"));
        assert!(h.contains("\n    par Mode = \"fast\"  (driven by the export of \"src\")\n"));
        assert!(h.ends_with("\n    par Level  (driven by the export of \"src\")"));
    }
}
