//! MIDI In DAT: every MIDI message from one port as a row of a table DAT (the newest
//! `maxlines` of them), and TouchDesigner's `onReceiveMIDI(dat, rowIndex, message, channel,
//! index, value, input, bytes)` in a callbacks file, once for each message — SysEx included,
//! with all its bytes. The port side (hot-plug, JACK, the bounded queues) is MIDI In's: this
//! operator owns a [`MidiInOp`] that keeps a log of each frame's messages.
//!
//! Rows: `message type channel index value bytes` (a header row first). Channels are 1–16 and
//! indices 1–128 as TouchDesigner reports them (0 where a message has none); values are raw
//! (0–127, pitch bend 0–16383, song position in MIDI beats, a SysEx's length); `bytes` is the
//! message in hex.

use std::path::PathBuf;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde::Deserialize;
use toml::Spanned;

use crate::chop::midiin::config::SCAN_MS;
use crate::chop::midiin::{Event, Logged, MidiInConfig, MidiInOp, Sys};
use crate::chop::native::{self, check_pars, Pars, RawPars};
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind, OperatorConfig, Settings};
use crate::cook::dat::{DatBody, DatContent, Table};
use crate::cook::par::ParDef;
use crate::cook::{BuildCtx, ChopData, CookCtx, CookError, Frame, NodeState, Operator, ParValue};
use crate::pattern::Pattern;
use crate::python::kindcb::{Arity, KindCallbacks, Me, Spec};

pub struct MidiInDat;

/// The table's columns (its first row).
pub const COLUMNS: [&str; 6] = ["message", "type", "channel", "index", "value", "bytes"];

/// The callbacks file: `onReceiveMIDI` with the DAT as `me`, given as many of its eight
/// arguments as it takes (all of them when it cannot be asked).
static CB: Spec = Spec {
    kind: "midiindat",
    me: Me::Dat,
    names: &["onReceiveMIDI"],
    arity: Arity::Declared { unknown: usize::MAX },
};

/// The most rows kept: a bound on memory whatever `maxlines` says.
const MAX_LINES: f64 = 100_000.0;

fn defs() -> Vec<ParDef> {
    vec![
        ParDef::toggle("active", "Connect", true).label("Active"),
        ParDef::toggle("skiptiming", "Filter", true).label("Skip Timing"),
        ParDef::int("maxlines", "Received Messages", 100)
            .label("Maximum Lines")
            .range(1.0, 1000.0)
            .clamp_min(1.0)
            .clamp_max(MAX_LINES),
        ParDef::pulse("clear", "Received Messages").label("Clear Output"),
    ]
}

/// The keys of a `midiindat` operator.
#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    /// Pattern on the MIDI port name (as MIDI In's `device`)
    #[schemars(with = "String")]
    pub device: Spanned<String>,
    /// A missing device is an error at start (default: a warning)
    pub required: Option<bool>,
    /// MIDI channels of channel messages logged, e.g. "1-7 12" (system messages always are)
    #[schemars(with = "Option<String>")]
    pub channel: Option<Spanned<String>>,
    /// How often ports are scanned for hot-plug (ms)
    #[schemars(with = "Option<i64>", range(min = SCAN_MS.min, max = SCAN_MS.max))]
    pub scan_ms: Option<Spanned<i64>>,
    /// Python callbacks file (onReceiveMIDI), relative to this config
    #[schemars(with = "Option<String>")]
    pub callbacks: Option<Spanned<String>>,
    /// TouchDesigner parameters by their names (`maxlines = 500`, `skiptiming = false`)
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub pars: Option<RawPars>,
}

/// The checked settings of a MIDI In DAT.
#[derive(Clone, Debug, PartialEq)]
pub struct MidiInDatConfig {
    pub midi: MidiInConfig,
    pub pars: Vec<(String, ParValue)>,
    pub callbacks: Option<PathBuf>,
}

impl Kind for MidiInDat {
    const NAME: &'static str = "midiindat";
    const SUMMARY: &'static str = "MIDI In DAT: every MIDI message as a table row, with callbacks";
    type Raw = Raw;
    type Settings = MidiInDatConfig;

    fn check(cx: &mut Checker, r: Raw, _refs: &mut OpRefs) -> Option<MidiInDatConfig> {
        let pars = check_pars(cx, Self::NAME, &defs(), native::no_alias, &r.pars);
        let device = cx.pattern(&r.device).unwrap_or_else(Pattern::all);
        let channels = match &r.channel {
            Some(c) => crate::config::parse_midi_channels(c.get_ref()).unwrap_or_else(|e| {
                cx.d.error(c.span(), e);
                [true; 16]
            }),
            None => [true; 16],
        };
        let scan = cx.ranged_or(&r.scan_ms, "scan_ms", SCAN_MS, 500) as u64;
        let callbacks = r.callbacks.as_ref().map(|c| cx.callbacks_file(c));
        Some(MidiInDatConfig {
            midi: MidiInConfig {
                device,
                required: r.required.unwrap_or(false),
                channels,
                scan: Duration::from_millis(scan),
                ..MidiInConfig::default()
            },
            pars,
            callbacks,
        })
    }
}

impl Settings for MidiInDatConfig {
    fn build(&self, op: &OperatorConfig, cx: &BuildCtx) -> Result<Box<dyn Operator>, String> {
        Ok(Box::new(MidiInDatOp::new(op, cx, self)?))
    }

    fn uses_python(&self) -> bool {
        self.callbacks.is_some()
    }

    fn identity(&self) -> String {
        self.callbacks
            .as_ref()
            .map_or(String::new(), |p| p.display().to_string())
    }

    fn is_table_dat(&self) -> bool {
        true
    }
}

/// One row's fields: message, type, channel, index, value, and the bytes.
struct Row {
    message: &'static str,
    kind: &'static str,
    channel: i64,
    index: i64,
    value: i64,
    bytes: Vec<u8>,
}

/// A logged message as TouchDesigner's MIDI In DAT shows it.
fn row(m: &Logged) -> Row {
    let r = |message, kind, channel: u8, index: Option<u8>, value: i64, bytes: Vec<u8>| Row {
        message,
        kind,
        channel: i64::from(channel) + 1,
        index: index.map_or(0, |i| i64::from(i) + 1),
        value,
        bytes,
    };
    let sys = |message, kind, value: i64, bytes: Vec<u8>| Row {
        message,
        kind,
        channel: 0,
        index: 0,
        value,
        bytes,
    };
    match *m {
        Logged::Voice(e) => match e {
            Event::NoteOn { ch, note, vel } => {
                let message = if vel > 0 { "Note On" } else { "Note Off" };
                r(message, "note", ch, Some(note), vel.into(), vec![0x90 | ch, note, vel])
            }
            Event::NoteOff { ch, note, vel } => {
                r("Note Off", "note", ch, Some(note), vel.into(), vec![0x80 | ch, note, vel])
            }
            Event::PolyPressure { ch, note, value } => r(
                "Polyphonic Aftertouch",
                "polypressure",
                ch,
                Some(note),
                value.into(),
                vec![0xA0 | ch, note, value],
            ),
            Event::Control { ch, num, value } => r(
                "Control Change",
                "control",
                ch,
                Some(num),
                value.into(),
                vec![0xB0 | ch, num, value],
            ),
            Event::Program { ch, program } => r(
                "Program Change",
                "program",
                ch,
                None,
                program.into(),
                vec![0xC0 | ch, program],
            ),
            Event::Pressure { ch, value } => r(
                "Channel Pressure",
                "pressure",
                ch,
                None,
                value.into(),
                vec![0xD0 | ch, value],
            ),
            Event::Pitch { ch, value } => r(
                "Pitch Bend",
                "pitchbend",
                ch,
                None,
                value.into(),
                vec![0xE0 | ch, (value & 0x7F) as u8, (value >> 7) as u8],
            ),
        },
        Logged::Sys(s) => match s {
            Sys::Clock => sys("Timing Clock", "timing", 0, vec![0xF8]),
            Sys::Start => sys("Start", "timing", 0, vec![0xFA]),
            Sys::Continue => sys("Continue", "timing", 0, vec![0xFB]),
            Sys::Stop => sys("Stop", "timing", 0, vec![0xFC]),
            Sys::SongPosition(p) => sys(
                "Song Position",
                "timing",
                p.into(),
                vec![0xF2, (p & 0x7F) as u8, (p >> 7) as u8],
            ),
            Sys::QuarterFrame(d) => sys("MTC Quarter Frame", "timecode", d.into(), vec![0xF1, d]),
        },
        Logged::Sysex(ref b) => sys("System Exclusive", "sysex", b.len() as i64, b.clone()),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&format!("{b:02X}"));
    }
    s
}

fn header() -> Table {
    Table::from_rows(vec![COLUMNS.iter().map(|c| c.to_string()).collect()])
}

pub struct MidiInDatOp {
    midi: MidiInOp,
    pars: Pars,
    cb: Option<KindCallbacks>,
    /// Rows added since the start (what `rows_in` counts).
    rows_in: u64,
}

impl MidiInDatOp {
    pub fn new(op: &OperatorConfig, cx: &BuildCtx, c: &MidiInDatConfig) -> Result<Self, String> {
        let pars = Pars::new(op, cx.rate, defs(), &c.pars);
        let cb = match &c.callbacks {
            Some(path) => Some(KindCallbacks::load(&CB, &op.name, path, pars.shared())?),
            None => None,
        };
        // A DAT cooks on the clock: its MIDI need not wake anyone.
        let mut midi = MidiInOp::new(op, &c.midi, cx.max_slice, None)?;
        midi.keep_log();
        Ok(MidiInDatOp {
            midi,
            pars,
            cb,
            rows_in: 0,
        })
    }
}

impl Operator for MidiInDatOp {
    fn wants_cook(&mut self, frame: &Frame, nodes: &[NodeState]) -> bool {
        self.midi.wants_cook(frame, nodes);
        self.midi.has_log()
            || self.pars.pending()
            || self.cb.as_ref().is_some_and(|c| c.pending.is_some())
    }

    fn cook(&mut self, ctx: &mut CookCtx, out: &mut ChopData) -> Result<(), CookError> {
        self.pars.changed();
        let clear = self.pars.take_pulses().iter().any(|p| p == "clear");
        let (active, skip_timing, max_lines) = self.pars.with(|s| {
            (
                s.num("active") != 0.0,
                s.num("skiptiming") != 0.0,
                s.num("maxlines").clamp(1.0, MAX_LINES) as usize,
            )
        });
        let log = self.midi.take_log();
        let rows: Vec<Row> = if active {
            log.iter()
                .filter(|m| {
                    !(skip_timing
                        && matches!(m, Logged::Sys(Sys::Clock) | Logged::Sys(Sys::QuarterFrame(_))))
                })
                .map(row)
                .collect()
        } else {
            Vec::new()
        };
        let node = ctx.state();
        let dat = node
            .dat
            .get_or_insert_with(|| Box::new(DatContent::new(DatBody::Table(header()))));
        if !matches!(dat.body, DatBody::Table(_)) {
            dat.body = DatBody::Table(header());
        }
        let DatBody::Table(table) = &mut dat.body else {
            unreachable!("made a table above")
        };
        if clear {
            *table = header();
        }
        let first = table.num_rows();
        for r in &rows {
            table.insert_row(
                usize::MAX,
                vec![
                    r.message.to_string(),
                    r.kind.to_string(),
                    r.channel.to_string(),
                    r.index.to_string(),
                    r.value.to_string(),
                    hex(&r.bytes),
                ],
            );
        }
        // The oldest rows go first; the header stays.
        let excess = (table.num_rows() - 1).saturating_sub(max_lines);
        table.drop_rows(1, excess);
        if !rows.is_empty() || clear {
            dat.touch();
            node.mark_changed();
        }
        self.rows_in += rows.len() as u64;
        if let Some(cb) = &mut self.cb {
            let mut failures = Vec::new();
            if !rows.is_empty() && cb.has(0) {
                let input = self.midi.port_name();
                // Row k of this frame is at `first + k - excess` (−1 once pushed out).
                let first = first as i64 - excess as i64;
                // `onReceiveMIDI` once for each row, in order.
                failures = cb.run(self.pars.shared(), ctx, out, |py, calls| {
                    for (k, r) in rows.iter().enumerate() {
                        let at = first + k as i64;
                        let args = vec![
                            obj(py, if at >= 1 { at } else { -1 }),
                            obj(py, r.message),
                            obj(py, r.channel),
                            obj(py, r.index),
                            obj(py, r.value),
                            obj(py, input.as_str()),
                            PyBytes::new(py, &r.bytes).into_any().unbind(),
                        ];
                        calls.call(py, 0, args);
                    }
                    Ok(())
                });
            }
            cb.record(&mut ctx.state().stats, failures, "callback", |_| true);
        }
        Ok(())
    }

    fn extras(&self, out: &mut Vec<(&'static str, f64)>) {
        self.midi.extras(out);
        out.push(("rows_in", self.rows_in as f64));
        out.push(("log_dropped", self.midi.log_dropped as f64));
    }

    fn initial_dat(&self) -> Option<DatContent> {
        Some(DatContent::new(DatBody::Table(header())))
    }

    crate::native_pars!();
}

fn obj<'py, T>(py: Python<'py>, v: T) -> Py<PyAny>
where
    T: IntoPyObject<'py, Output = Bound<'py, <T as IntoPyObject<'py>>::Target>>,
{
    v.into_pyobject(py)
        .ok()
        .map(|b| b.into_any().unbind())
        .unwrap_or_else(|| py.None())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_name_messages_as_touchdesigner_does() {
        let r = row(&Logged::Voice(Event::Control {
            ch: 2,
            num: 7,
            value: 100,
        }));
        assert_eq!(
            (r.message, r.kind, r.channel, r.index, r.value),
            ("Control Change", "control", 3, 8, 100)
        );
        assert_eq!(hex(&r.bytes), "B2 07 64");
        let r = row(&Logged::Voice(Event::NoteOn {
            ch: 0,
            note: 60,
            vel: 0,
        }));
        assert_eq!((r.message, r.index, r.value), ("Note Off", 61, 0));
        let r = row(&Logged::Voice(Event::Pitch { ch: 15, value: 8192 }));
        assert_eq!((r.channel, r.index, r.value), (16, 0, 8192));
        assert_eq!(r.bytes, [0xEF, 0, 0x40]);
        let r = row(&Logged::Sysex(vec![0xF0, 0x7D, 1, 0xF7]));
        assert_eq!((r.message, r.kind, r.channel, r.value), ("System Exclusive", "sysex", 0, 4));
        assert_eq!(hex(&r.bytes), "F0 7D 01 F7");
        let r = row(&Logged::Sys(Sys::SongPosition(200)));
        assert_eq!((r.value, r.bytes), (200, vec![0xF2, 200 & 0x7F, 1]));
    }
}
