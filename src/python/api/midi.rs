//! The MIDI Out CHOP's Python methods (TouchDesigner's `midioutCHOP` class): `send`,
//! `sendExclusive`, `sendNoteOn`, `sendNoteOff`, `sendControl`, `sendPolyKeyPressure`,
//! `sendAftertouch`, `sendProgram`, `sendPitchBend`, `sendBalance`, `sendPan`. Each queues a
//! [`ScriptMidi`] on the operator's mirror; the graph hands it to the operator after the cook,
//! and the operator makes the bytes (it knows its `norm`: values of notes, controllers and
//! pressure are in it, as TouchDesigner reads them in its normalisation; pitch bend is −1..1;
//! program, balance and pan are raw 0–127). See docs/midi.md, "MIDI Out from scripts".

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;

use super::op::OpHandle;
use crate::cook::ScriptMidi;
use crate::python::{registry, scope};

/// Messages one operator may have waiting between two cooks; more raise an error in the script
/// (a loop that never ends must not fill the memory).
pub const MAX_PENDING: usize = 16_384;
/// The longest message a script may send (SysEx included).
pub const MAX_MESSAGE: usize = 16_384;

impl OpHandle {
    fn queue_midi(&self, msg: ScriptMidi) -> PyResult<()> {
        let kind = scope::with(|s| {
            let t = self.target(s)?;
            Ok(s.node_state(t)?.kind)
        })
        .unwrap_or("");
        if kind != "midiout" {
            return Err(PyTypeError::new_err(format!(
                "{} is no MIDI Out CHOP: only a midiout operator sends MIDI",
                crate::path::td_path(&self.name)
            )));
        }
        let shared = registry::lookup(&self.name)
            .ok_or_else(|| PyRuntimeError::new_err("the MIDI Out is not running"))?;
        let mut s = shared.borrow_mut();
        if s.midi_sent.len() >= MAX_PENDING {
            return Err(PyRuntimeError::new_err(format!(
                "{MAX_PENDING} MIDI messages are waiting for this MIDI Out already"
            )));
        }
        s.midi_sent.push(msg);
        drop(s);
        registry::note_par_write();
        Ok(())
    }

    fn voice(
        &self,
        status: u8,
        channel: i64,
        index: Option<u8>,
        value: Option<f64>,
    ) -> PyResult<()> {
        if !(1..=16).contains(&channel) {
            return Err(PyValueError::new_err(format!(
                "MIDI channel {channel} is out of range 1 to 16"
            )));
        }
        if let Some(v) = value.filter(|v| !v.is_finite()) {
            return Err(PyValueError::new_err(format!(
                "MIDI value {v} is not a number"
            )));
        }
        self.queue_midi(ScriptMidi::Level {
            status: status | (channel - 1) as u8,
            index,
            value,
        })
    }
}

fn index(i: i64) -> PyResult<u8> {
    u8::try_from(i)
        .ok()
        .filter(|i| *i <= 127)
        .ok_or_else(|| PyValueError::new_err(format!("MIDI index {i} is out of range 0 to 127")))
}

fn raw7(v: i64) -> PyResult<f64> {
    if (0..=127).contains(&v) {
        Ok(v as f64)
    } else {
        Err(PyValueError::new_err(format!(
            "MIDI value {v} is out of range 0 to 127"
        )))
    }
}

fn bytes_of(values: &[i64]) -> PyResult<Vec<u8>> {
    if values.is_empty() || values.len() > MAX_MESSAGE {
        return Err(PyValueError::new_err(format!(
            "a MIDI message has 1 to {MAX_MESSAGE} bytes, not {}",
            values.len()
        )));
    }
    values
        .iter()
        .map(|&b| {
            u8::try_from(b)
                .map_err(|_| PyValueError::new_err(format!("byte {b} is out of range 0 to 255")))
        })
        .collect()
}

#[pymethods]
impl OpHandle {
    /// Sends the bytes as they are, as one message.
    #[pyo3(signature = (*messages))]
    fn send(&self, messages: Vec<i64>) -> PyResult<()> {
        self.queue_midi(ScriptMidi::Bytes(bytes_of(&messages)?))
    }

    /// Sends a System Exclusive message: the bytes between 0xF0 and 0xF7 (given with or
    /// without them); data bytes must be 0–127.
    #[pyo3(name = "sendExclusive", signature = (*messages))]
    fn send_exclusive(&self, messages: Vec<i64>) -> PyResult<()> {
        let mut body = bytes_of(&messages)?;
        if body.first() == Some(&0xF0) {
            body.remove(0);
        }
        if body.last() == Some(&0xF7) {
            body.pop();
        }
        if let Some(b) = body.iter().find(|b| **b > 0x7F) {
            return Err(PyValueError::new_err(format!(
                "SysEx data byte {b:#04x} is out of range 0 to 127"
            )));
        }
        let mut msg = Vec::with_capacity(body.len() + 2);
        msg.push(0xF0);
        msg.extend_from_slice(&body);
        msg.push(0xF7);
        self.queue_midi(ScriptMidi::Bytes(msg))
    }

    /// `value` in the operator's `norm`; full velocity when not given.
    #[pyo3(name = "sendNoteOn", signature = (channel, index, value=None))]
    fn send_note_on(&self, channel: i64, index: i64, value: Option<f64>) -> PyResult<()> {
        self.voice(0x90, channel, Some(self::index(index)?), value)
    }

    /// `value` (release velocity) in the operator's `norm`; 0 when not given.
    #[pyo3(name = "sendNoteOff", signature = (channel, index, value=None))]
    fn send_note_off(&self, channel: i64, index: i64, value: Option<f64>) -> PyResult<()> {
        self.voice(0x80, channel, Some(self::index(index)?), value)
    }

    #[pyo3(name = "sendControl")]
    fn send_control(&self, channel: i64, index: i64, value: f64) -> PyResult<()> {
        self.voice(0xB0, channel, Some(self::index(index)?), Some(value))
    }

    #[pyo3(name = "sendPolyKeyPressure")]
    fn send_poly(&self, channel: i64, index: i64, value: f64) -> PyResult<()> {
        self.voice(0xA0, channel, Some(self::index(index)?), Some(value))
    }

    /// Channel pressure.
    #[pyo3(name = "sendAftertouch")]
    fn send_aftertouch(&self, channel: i64, value: f64) -> PyResult<()> {
        self.voice(0xD0, channel, None, Some(value))
    }

    /// The program number 0–127 (raw).
    #[pyo3(name = "sendProgram")]
    fn send_program(&self, channel: i64, value: i64) -> PyResult<()> {
        self.voice(0xC0, channel, None, Some(raw7(value)?))
    }

    /// −1..1, the centre at 0.
    #[pyo3(name = "sendPitchBend")]
    fn send_pitch_bend(&self, channel: i64, value: f64) -> PyResult<()> {
        self.voice(0xE0, channel, None, Some(value))
    }

    /// Controller 8, raw 0–127.
    #[pyo3(name = "sendBalance")]
    fn send_balance(&self, channel: i64, value: i64) -> PyResult<()> {
        self.queue_raw_control(channel, 8, value)
    }

    /// Controller 10, raw 0–127.
    #[pyo3(name = "sendPan")]
    fn send_pan(&self, channel: i64, value: i64) -> PyResult<()> {
        self.queue_raw_control(channel, 10, value)
    }
}

impl OpHandle {
    fn queue_raw_control(&self, channel: i64, num: u8, value: i64) -> PyResult<()> {
        raw7(value)?;
        if !(1..=16).contains(&channel) {
            return Err(PyValueError::new_err(format!(
                "MIDI channel {channel} is out of range 1 to 16"
            )));
        }
        self.queue_midi(ScriptMidi::Bytes(vec![
            0xB0 | (channel - 1) as u8,
            num,
            value as u8,
        ]))
    }
}
