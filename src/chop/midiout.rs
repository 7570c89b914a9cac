//! MIDI Out (docs/midi.md, "MIDI Out"): channels named the TouchDesigner way (`ch1c7`,
//! `ch1n60`, `ch1pw`, …) become MIDI messages, sent when they change, to one MIDI port found by
//! a `device` pattern and followed through hot-plug; on every (re)connection the device is sent
//! the last state again, so LEDs and motor faders come back. Scripts send through it too
//! (`op('leds').sendControl(1, 7, 0.5)`, `python::api::midi`). It also is the MIDI clock master
//! when its `clock` parameter is on.
//!
//! [`MidiPort`] is the one sender: the `midiout` kind ([`MidiOutOp`]) and the MIDI
//! destinations of exports (`MidiDestinations`, in `dests.rs`) each own one.

pub mod config;
mod dests;
pub use dests::MidiDestinations;
pub mod encode;
#[cfg(feature = "jack")]
mod jack;
pub mod sender;
mod state;

pub use config::{MidiOut, MidiOutConfig};
pub use encode::Encoder;
pub use sender::MidiSender;

use crate::chop::midiin::names::{denorm, unpitch, Addr};
use crate::chop::midiin::MidiNorm;
use crate::config::OperatorConfig;
use crate::cook::par::ParDef;
use crate::cook::{ChopData, CookCtx, CookError, Frame, NodeState, Operator, ParValue, ScriptMidi};

/// Channel values → messages → a MIDI port: an [`Encoder`] and the [`MidiSender`] it feeds.
pub struct MidiPort {
    pub enc: Encoder,
    pub sender: MidiSender,
    norm: MidiNorm,
}

impl MidiPort {
    /// `label` names the owner in log lines (`midiout "leds"`, `destination "surface"`).
    pub fn new(label: &str, cfg: &MidiOutConfig) -> Result<MidiPort, String> {
        let sender = MidiSender::new(label, &cfg.device, cfg.scan)?;
        sender.set_clock(cfg.clock, cfg.bpm);
        Ok(MidiPort {
            enc: Encoder::new(cfg.names.clone(), cfg.norm, &cfg.highres),
            sender,
            norm: cfg.norm,
        })
    }

    /// Channel `a` has `value` (sent when it changed).
    pub fn set(&mut self, a: Addr, value: f32) {
        let s = &mut self.sender;
        self.enc.set(a, value, &mut |m| {
            s.send(m);
        });
    }

    /// Once per frame on the cook thread: after a new connection, sends the device the state
    /// (every value last sent, held notes). True when it did.
    pub fn poll(&mut self) -> bool {
        if !self.sender.take_connected() {
            return false;
        }
        let s = &mut self.sender;
        self.enc.resync(&mut |m| {
            s.send(m);
        });
        s.flush();
        true
    }

    /// The channels of `data` that are MIDI names, every sample of the slice in order (each
    /// change is a message); skips the names that are none (`addrs` is the cache per channel,
    /// rebuilt when the names change: when `data`'s layout id is not `layout`).
    pub fn send_chop(&mut self, data: &ChopData, layout: &mut u64, addrs: &mut Vec<Option<Addr>>) {
        if *layout != data.layout_id() {
            *layout = data.layout_id();
            *addrs = data.names().iter().map(|n| self.enc.addr(n)).collect();
        }
        let len = data.num_samples();
        for s in 0..len {
            for (i, a) in addrs.iter().enumerate() {
                if let Some(a) = a {
                    self.set(*a, data.chan(i)[s]);
                }
            }
        }
        self.sender.flush();
    }

    /// A message a script sent, made into bytes in this port's `norm`.
    pub fn send_script(&mut self, m: &ScriptMidi) -> Result<(), String> {
        let bytes: Vec<u8> = match m {
            ScriptMidi::Bytes(b) => b.clone(),
            &ScriptMidi::Level { status, index, value } => {
                let level = |v: Option<f64>, none: u8| match v {
                    Some(v) => denorm(self.norm, v as f32, 127) as u8,
                    None => none,
                };
                match status & 0xF0 {
                    0x90 => vec![status, index.unwrap_or(0), level(value, 127)],
                    0x80 => vec![status, index.unwrap_or(0), level(value, 0)],
                    0xA0 | 0xB0 => vec![status, index.unwrap_or(0), level(value, 0)],
                    0xD0 => vec![status, level(value, 0)],
                    0xC0 => vec![status, denorm(MidiNorm::Off, value.unwrap_or(0.0) as f32, 127) as u8],
                    0xE0 => {
                        let v = unpitch(value.unwrap_or(0.0) as f32);
                        vec![status, (v & 0x7F) as u8, (v >> 7) as u8]
                    }
                    _ => return Err(format!("no MIDI message with status {status:#04x}")),
                }
            }
        };
        self.enc.record(&bytes);
        if self.sender.send(&bytes) {
            self.sender.flush();
            Ok(())
        } else {
            Err(format!("the {}-byte message was dropped (see `dropped`, `too_long`)", bytes.len()))
        }
    }
}

/// The `midiout` operator: its inputs' channels out as MIDI; its output is its first input.
pub struct MidiOutOp {
    port: MidiPort,
    /// The layout id (`ChopData::layout_id`) `addrs` was made for; 0 = none yet.
    layout: u64,
    addrs: Vec<Option<Addr>>,
    norm: MidiNorm,
    clock: bool,
    bpm: f64,
}

impl MidiOutOp {
    pub fn new(op: &OperatorConfig, cfg: &MidiOutConfig) -> Result<MidiOutOp, String> {
        Ok(MidiOutOp {
            port: MidiPort::new(&format!("midiout \"{}\"", op.name), cfg)?,
            layout: 0,
            addrs: Vec::new(),
            norm: cfg.norm,
            clock: cfg.clock,
            bpm: cfg.bpm,
        })
    }
}

/// The `norm` tokens, as the config writes them.
fn norm_token(n: MidiNorm) -> &'static str {
    match n {
        MidiNorm::ZeroToOne => "0to1",
        MidiNorm::MinusOneToOne => "-1to1",
        MidiNorm::Off => "off",
        MidiNorm::OnOff => "onoff",
    }
}

impl Operator for MidiOutOp {
    /// What it sends follows its input alone (the clock master runs on the sender's own
    /// thread), so with `react = true` input reaches the device between frames.
    fn time_dependent(&self) -> bool {
        false
    }

    fn wants_cook(&mut self, _frame: &Frame, _nodes: &[NodeState]) -> bool {
        // A new connection: the device gets its state now, whether or not anything changed.
        self.port.poll();
        false
    }

    fn cook(&mut self, ctx: &mut CookCtx, out: &mut ChopData) -> Result<(), CookError> {
        let Some(input) = ctx.input(0) else {
            out.clear();
            return Ok(());
        };
        self.port.send_chop(input, &mut self.layout, &mut self.addrs);
        out.copy_from(input);
        Ok(())
    }

    fn extras(&self, out: &mut Vec<(&'static str, f64)>) {
        self.port.sender.extras(out);
    }

    /// TouchDesigner's MIDI Out has its normalisation as a parameter; here it is fixed by the
    /// config (scripts read it). The clock is chopd's own.
    fn par_defs(&self) -> Vec<ParDef> {
        vec![
            ParDef::menu("norm", "MIDI", &["0to1", "-1to1", "off", "onoff"], norm_token(self.norm))
                .label("Normalize")
                .read_only(),
            ParDef::toggle("clock", "Clock", self.clock).label("Send Clock"),
            ParDef::float("bpm", "Clock", self.bpm)
                .range(state::BPM.0, state::BPM.1)
                .label("Tempo"),
            ParDef::pulse("allnotesoff", "MIDI").label("All Notes Off"),
            ParDef::pulse("resend", "MIDI").label("Resend State"),
        ]
    }

    fn set_par(&mut self, name: &str, value: ParValue) -> Result<(), String> {
        let ParValue::Float(v) = value else {
            return Err(format!("{name} takes a number"));
        };
        match name {
            "clock" => self.clock = v >= 0.5,
            "bpm" if (state::BPM.0..=state::BPM.1).contains(&v) => self.bpm = v,
            "bpm" => return Err(format!("bpm {v} is out of range (1 to 999)")),
            _ => return Err(format!("midiout has no parameter \"{name}\" (clock, bpm)")),
        }
        self.port.sender.set_clock(self.clock, self.bpm);
        Ok(())
    }

    fn pulse_par(&mut self, name: &str) -> Result<(), String> {
        match name {
            "allnotesoff" => {
                for ch in 0..16u8 {
                    self.port.send_script(&ScriptMidi::Bytes(vec![0xB0 | ch, 123, 0]))?;
                }
                Ok(())
            }
            "resend" => {
                let s = &mut self.port.sender;
                self.port.enc.resync(&mut |m| {
                    s.send(m);
                });
                s.flush();
                Ok(())
            }
            other => Err(format!("midiout has no pulse \"{other}\" (allnotesoff, resend)")),
        }
    }

    fn send_midi(&mut self, m: &ScriptMidi) -> Result<(), String> {
        self.port.send_script(m)
    }

    fn reset(&mut self) {
        self.port.enc.forget();
        self.layout = 0;
    }
}
