//! Channel values → MIDI messages, sent on change, and the state a reconnected device is brought
//! back to. No I/O: what unit tests drive and the cook thread runs.

use std::collections::HashMap;

use crate::chop::midiin::names::{denorm, unpitch, Addr, Kind, Names};
use crate::chop::midiin::MidiNorm;

/// The longest message [`Encoder::set`] makes (a 14-bit controller pair: two messages).
pub const MAX_SET: usize = 6;

/// What a MIDI Out does with channel values: their names ([`Names`]), normalisation (the
/// `norm` modes of MIDI In, inverted), 14-bit controller pairs; and the raw value last sent for
/// every slot, to send on change only and to resend everything after a reconnection.
#[derive(Clone, Debug)]
pub struct Encoder {
    pub names: Names,
    norm: MidiNorm,
    highres: [bool; 32],
    /// Index into `state` per slot.
    slots: HashMap<Addr, usize>,
    /// Every slot sent so far, in the order first sent.
    state: Vec<Slot>,
}

/// One slot's last message.
#[derive(Clone, Copy, Debug)]
struct Slot {
    addr: Addr,
    /// Its raw value (note: velocity, 0 = off; pitch: 0–16383; 14-bit controllers: 0–16383).
    raw: u16,
    /// A note an all-notes-off (or all-sound-off, or a mode change) has since ended on the
    /// device. Its channel's value still stands, so it is not sent again until it changes,
    /// but a resync leaves it off.
    silenced: bool,
}

impl Encoder {
    pub fn new(names: Names, norm: MidiNorm, highres: &[u8]) -> Encoder {
        let mut hr = [false; 32];
        for &c in highres {
            if let Some(h) = hr.get_mut(usize::from(c)) {
                *h = true;
            }
        }
        Encoder {
            names,
            norm,
            highres: hr,
            slots: HashMap::new(),
            state: Vec::new(),
        }
    }

    /// The slot a channel name stands for (`None`: not a MIDI name; such channels are skipped).
    pub fn addr(&self, name: &str) -> Option<Addr> {
        self.names.parse(name)
    }

    fn pair(&self, a: Addr) -> bool {
        a.kind == Kind::Control && a.num < 32 && self.highres[usize::from(a.num)]
    }

    /// The raw value of `value` in slot `a`.
    fn raw(&self, a: Addr, value: f32) -> u16 {
        match a.kind {
            Kind::Pitch => unpitch(value),
            // A program number is an index, never normalised (as MIDI In shows it).
            Kind::Program => denorm(MidiNorm::Off, value, 127),
            Kind::Control if self.pair(a) => denorm(self.norm, value, 16383),
            _ => denorm(self.norm, value, 127),
        }
    }

    /// Channel `a` has `value`: calls `send` with the message(s) when its raw value changed
    /// (or was never sent). NaN never becomes a message.
    pub fn set(&mut self, a: Addr, value: f32, send: &mut impl FnMut(&[u8])) {
        if !value.is_finite() {
            return;
        }
        let raw = self.raw(a, value);
        if self.slots.get(&a).is_some_and(|&i| self.state[i].raw == raw) {
            return;
        }
        self.put(a, raw);
        self.emit(a, raw, send);
    }

    /// Slot `a` was last sent with `raw`.
    fn put(&mut self, a: Addr, raw: u16) {
        let slot = Slot {
            addr: a,
            raw,
            silenced: false,
        };
        match self.slots.get(&a) {
            Some(&i) => self.state[i] = slot,
            None => {
                self.slots.insert(a, self.state.len());
                self.state.push(slot);
            }
        }
    }

    /// Records a message sent by other means (a script's `sendControl`) as the slot's state,
    /// so a reconnection restores it too.
    pub fn record(&mut self, msg: &[u8]) {
        let [status, d0, ..] = *msg else { return };
        let d1 = msg.get(2).copied().unwrap_or(0);
        let ch = status & 0x0F;
        // Channel mode messages are no controller's state. All sound off (120), all notes off
        // (123) and the mode changes (124–127) end the channel's notes.
        if status & 0xF0 == 0xB0 && d0 >= 120 {
            if d0 != 121 && d0 != 122 {
                for s in &mut self.state {
                    if s.addr.kind == Kind::Note && s.addr.ch == ch {
                        s.silenced = true;
                    }
                }
            }
            return;
        }
        let (kind, num, raw) = match status & 0xF0 {
            0x80 => (Kind::Note, d0, 0),
            0x90 => (Kind::Note, d0, u16::from(d1)),
            0xA0 => (Kind::Poly, d0, u16::from(d1)),
            0xB0 => (Kind::Control, d0, u16::from(d1)),
            0xC0 => (Kind::Program, 0, u16::from(d0)),
            0xD0 => (Kind::Pressure, 0, u16::from(d0)),
            0xE0 => (Kind::Pitch, 0, u16::from(d0) | (u16::from(d1) << 7)),
            _ => return,
        };
        let a = Addr { kind, ch, num };
        // A script's controller message is one 7-bit message, whatever `highres` says.
        let raw = if self.pair(a) { raw << 7 } else { raw };
        self.put(a, raw);
    }

    /// The message(s) of slot `a` at raw value `raw`.
    fn emit(&self, a: Addr, raw: u16, send: &mut impl FnMut(&[u8])) {
        let ch = a.ch & 0x0F;
        let b7 = (raw.min(127)) as u8;
        match a.kind {
            Kind::Note if raw == 0 => send(&[0x80 | ch, a.num, 0]),
            Kind::Note => send(&[0x90 | ch, a.num, b7]),
            Kind::Poly => send(&[0xA0 | ch, a.num, b7]),
            Kind::Control if self.pair(a) => {
                // MSB first (it resets the receiver's LSB), then the LSB on controller + 32.
                send(&[0xB0 | ch, a.num, (raw >> 7) as u8 & 0x7F]);
                send(&[0xB0 | ch, a.num + 32, (raw & 0x7F) as u8]);
            }
            Kind::Control => send(&[0xB0 | ch, a.num, b7]),
            Kind::Pressure => send(&[0xD0 | ch, b7]),
            Kind::Program => send(&[0xC0 | ch, b7]),
            Kind::Pitch => send(&[0xE0 | ch, (raw & 0x7F) as u8, (raw >> 7) as u8 & 0x7F]),
        }
    }

    /// Everything a freshly connected device must be told: every slot's last value, in the
    /// order first sent; notes only while held (a new device has none on).
    pub fn resync(&self, send: &mut impl FnMut(&[u8])) {
        for s in &self.state {
            if s.addr.kind == Kind::Note && (s.raw == 0 || s.silenced) {
                continue;
            }
            self.emit(s.addr, s.raw, send);
        }
    }

    /// How many slots a resync sends at most.
    pub fn slots(&self) -> usize {
        self.state.len()
    }

    /// Forgets what was sent (`reset`): every value is sent again at its next cook.
    pub fn forget(&mut self) {
        self.slots.clear();
        self.state.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(e: &mut Encoder, chans: &[(&str, f32)]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (n, v) in chans {
            let a = e.addr(n).unwrap();
            e.set(a, *v, &mut |m| out.push(m.to_vec()));
        }
        out
    }

    #[test]
    fn td_names_become_messages_on_change() {
        let mut e = Encoder::new(Names::default(), MidiNorm::ZeroToOne, &[]);
        let out = run(
            &mut e,
            &[
                ("ch1c7", 1.0),
                ("ch1c7", 1.0),
                ("ch2n60", 0.5),
                ("ch2n60", 0.0),
                ("ch3pw", 0.0),
                ("ch4pc", 5.0),
                ("ch1pr", 1.0),
                ("ch16a61", 1.0),
                ("ch1c7", f32::NAN),
            ],
        );
        assert_eq!(
            out,
            [
                vec![0xB0, 7, 127],
                vec![0x91, 60, 64],
                vec![0x81, 60, 0],
                vec![0xE2, 0, 0x40],
                vec![0xC3, 5],
                vec![0xD0, 127],
                vec![0xAF, 61, 127],
            ]
        );
    }

    #[test]
    fn norm_modes_and_highres_pairs() {
        let mut e = Encoder::new(Names::default(), MidiNorm::Off, &[1]);
        let out = run(&mut e, &[("ch1c1", 8192.0 + 16.0), ("ch1c2", 5.0), ("ch1n1", 100.0)]);
        assert_eq!(
            out,
            [vec![0xB0, 1, 0x40], vec![0xB0, 33, 0x10], vec![0xB0, 2, 5], vec![0x90, 1, 100]]
        );
        let mut e = Encoder::new(Names::default(), MidiNorm::MinusOneToOne, &[]);
        assert_eq!(run(&mut e, &[("ch1c1", -1.0), ("ch1c2", 1.0)]), [vec![0xB0, 1, 0], vec![0xB0, 2, 127]]);
        let mut e = Encoder::new(Names::default(), MidiNorm::OnOff, &[]);
        assert_eq!(run(&mut e, &[("ch1n5", 0.7), ("ch1n5", 0.2)]), [vec![0x90, 5, 127], vec![0x80, 5, 0]]);
    }

    #[test]
    fn resync_sends_the_last_state_held_notes_only() {
        let mut e = Encoder::new(Names::default(), MidiNorm::ZeroToOne, &[]);
        run(&mut e, &[("ch1c7", 0.0), ("ch1n60", 1.0), ("ch1n61", 1.0), ("ch1n61", 0.0), ("ch1c7", 1.0)]);
        e.record(&[0xB1, 9, 42]);
        let mut out = Vec::new();
        e.resync(&mut |m| out.push(m.to_vec()));
        assert_eq!(out, [vec![0xB0, 7, 127], vec![0x90, 60, 127], vec![0xB1, 9, 42]]);
        e.forget();
        let mut out = Vec::new();
        e.resync(&mut |m| out.push(m.to_vec()));
        assert!(out.is_empty());
    }

    #[test]
    fn all_notes_off_ends_the_channels_held_notes_for_a_resync_too() {
        let mut e = Encoder::new(Names::default(), MidiNorm::ZeroToOne, &[]);
        run(&mut e, &[("ch1n60", 1.0), ("ch2n60", 1.0), ("ch1n62", 1.0), ("ch1c7", 1.0)]);
        e.record(&[0xB0, 123, 0]);
        let mut out = Vec::new();
        e.resync(&mut |m| out.push(m.to_vec()));
        assert_eq!(out, [vec![0x91, 60, 127], vec![0xB0, 7, 127]]);
        // The channels still stand at 1: nothing is sent until one changes.
        assert!(run(&mut e, &[("ch1n60", 1.0), ("ch1n62", 1.0)]).is_empty());
        assert_eq!(run(&mut e, &[("ch1n62", 0.5)]), [vec![0x90, 62, 64]]);
        let mut out = Vec::new();
        e.resync(&mut |m| out.push(m.to_vec()));
        assert_eq!(out, [vec![0x91, 60, 127], vec![0x90, 62, 64], vec![0xB0, 7, 127]]);
        // Reset all controllers is not a note's end, nor a state to resend.
        e.record(&[0xB1, 121, 0]);
        let mut again = Vec::new();
        e.resync(&mut |m| again.push(m.to_vec()));
        assert_eq!(again, out);
    }
}
