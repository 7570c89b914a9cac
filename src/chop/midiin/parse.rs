//! MIDI bytes → channel updates, with no I/O: the part of MIDI In that unit tests drive with plain
//! byte slices.
//!
//! [`StreamParser`] turns a byte stream (running status, interleaved real-time bytes, SysEx) into
//! channel voice [`Event`]s. [`Mapper`] turns events into updates of named channels
//! (TouchDesigner's `ch1n60`, `ch1c7`, …) with the configured MIDI channel filter, normalisation
//! and 14-bit controller pairs. Neither allocates per message once a channel exists, so the
//! parser can run inside midir's (realtime) callback and the mapper on the cook thread.

use super::{MidiInConfig, MidiNorm};

/// One channel voice message. `ch` is the MIDI channel 0–15 (shown to users as 1–16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    NoteOff {
        ch: u8,
        note: u8,
        vel: u8,
    },
    NoteOn {
        ch: u8,
        note: u8,
        vel: u8,
    },
    PolyPressure {
        ch: u8,
        note: u8,
        value: u8,
    },
    Control {
        ch: u8,
        num: u8,
        value: u8,
    },
    Program {
        ch: u8,
        program: u8,
    },
    Pressure {
        ch: u8,
        value: u8,
    },
    /// 14-bit, 8192 is the centre.
    Pitch {
        ch: u8,
        value: u16,
    },
}

/// The MIDI channel (0–15) of an event.
fn channel(ev: Event) -> u8 {
    match ev {
        Event::NoteOff { ch, .. }
        | Event::NoteOn { ch, .. }
        | Event::PolyPressure { ch, .. }
        | Event::Control { ch, .. }
        | Event::Program { ch, .. }
        | Event::Pressure { ch, .. }
        | Event::Pitch { ch, .. } => ch,
    }
}

/// Data bytes that follow a channel voice status byte (0x80–0xEF).
fn data_len(status: u8) -> usize {
    match status & 0xF0 {
        0xC0 | 0xD0 => 1,
        _ => 2,
    }
}

fn event(status: u8, d0: u8, d1: u8) -> Event {
    let ch = status & 0x0F;
    match status & 0xF0 {
        0x80 => Event::NoteOff {
            ch,
            note: d0,
            vel: d1,
        },
        0x90 => Event::NoteOn {
            ch,
            note: d0,
            vel: d1,
        },
        0xA0 => Event::PolyPressure {
            ch,
            note: d0,
            value: d1,
        },
        0xB0 => Event::Control {
            ch,
            num: d0,
            value: d1,
        },
        0xC0 => Event::Program { ch, program: d0 },
        0xD0 => Event::Pressure { ch, value: d0 },
        _ => Event::Pitch {
            ch,
            value: u16::from(d0) | (u16::from(d1) << 7),
        },
    }
}

/// A system message that carries no MIDI channel but drives the clock and timecode channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sys {
    /// Timing clock (0xF8), 24 a quarter note.
    Clock,
    /// 0xFA: the song starts from its beginning.
    Start,
    /// 0xFB: the song goes on from where it stopped (or from a song position).
    Continue,
    /// 0xFC.
    Stop,
    /// 0xF2: the position in MIDI beats (sixteenth notes, six clocks each).
    SongPosition(u16),
    /// 0xF1: one MIDI Time Code quarter frame, its data byte.
    QuarterFrame(u8),
}

/// What a byte did to the parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A complete channel voice message.
    Event(Event),
    /// A clock, transport or timecode message.
    System(Sys),
    /// A SysEx ended with 0xF7: its bytes (0xF0 … 0xF7) are [`StreamParser::sysex`].
    Sysex,
    /// A SysEx was dropped: longer than the parser's bound, or cut short by another status
    /// byte before its 0xF7. Reported once per message.
    SysexDropped,
    /// The byte belongs to a message still incomplete (or to a dropped SysEx).
    Partial,
    /// A message no channel is made of (active sensing, tune request, song select, reset) or a
    /// stray data byte ended here.
    Ignored,
}

/// One complete message, as [`StreamParser::feed`] hands them on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg<'a> {
    Voice(Event),
    Sys(Sys),
    /// The whole SysEx, 0xF0 to 0xF7.
    Sysex(&'a [u8]),
    SysexDropped,
}

/// The longest SysEx kept, 0xF0 and 0xF7 included: a long device dump (a synth's
/// whole patch bank is a few KiB to a few tens of KiB).
pub const SYSEX_MAX: usize = 32_768;

/// A MIDI 1.0 byte-stream parser. Keeps running status across messages (and across calls),
/// lets real-time bytes (0xF8–0xFF) interleave anywhere without breaking a message, collects
/// SysEx up to a bound in a buffer allocated once, and decodes the system messages clocks and
/// timecode need.
#[derive(Clone, Debug)]
pub struct StreamParser {
    /// Running status: the last channel voice status byte, 0 when none.
    status: u8,
    data: [u8; 2],
    have: usize,
    in_sysex: bool,
    /// The SysEx being collected, 0xF0 first; never grows past its capacity.
    sysex: Vec<u8>,
    sysex_max: usize,
    /// The SysEx in progress passed the bound: its bytes are skipped up to its end.
    over: bool,
    /// The system common status whose data bytes are being read (0xF1–0xF3), 0 when none.
    common: u8,
    /// Data bytes still to read after `common`.
    skip: usize,
}

impl Default for StreamParser {
    fn default() -> Self {
        StreamParser::with_sysex_max(SYSEX_MAX)
    }
}

impl StreamParser {
    pub fn new() -> StreamParser {
        StreamParser::default()
    }

    /// A parser that keeps SysEx messages of up to `max` bytes (0xF0 and 0xF7 included, at
    /// least 3); longer ones are dropped. The buffer is allocated here, once.
    pub fn with_sysex_max(max: usize) -> StreamParser {
        let max = max.max(3);
        StreamParser {
            status: 0,
            data: [0; 2],
            have: 0,
            in_sysex: false,
            sysex: Vec::with_capacity(max),
            sysex_max: max,
            over: false,
            common: 0,
            skip: 0,
        }
    }

    /// The last complete SysEx (valid right after [`Parsed::Sysex`]).
    pub fn sysex(&self) -> &[u8] {
        &self.sysex
    }

    /// Forgets everything in progress (the device went away): no half message survives into
    /// the next connection. True when a SysEx was cut off by it.
    pub fn reset(&mut self) -> bool {
        let cut = self.in_sysex && !self.over;
        self.status = 0;
        self.have = 0;
        self.in_sysex = false;
        self.over = false;
        self.common = 0;
        self.skip = 0;
        self.sysex.clear();
        cut
    }

    pub fn push(&mut self, b: u8) -> Parsed {
        if b >= 0xF8 {
            // Real-time: may appear between any two bytes and changes nothing else.
            return match b {
                0xF8 => Parsed::System(Sys::Clock),
                0xFA => Parsed::System(Sys::Start),
                0xFB => Parsed::System(Sys::Continue),
                0xFC => Parsed::System(Sys::Stop),
                _ => Parsed::Ignored,
            };
        }
        if b >= 0x80 {
            self.have = 0;
            self.skip = 0;
            self.common = 0;
            let mut cut = false;
            if self.in_sysex {
                self.in_sysex = false;
                let over = std::mem::take(&mut self.over);
                if b == 0xF7 {
                    if over {
                        return Parsed::Partial;
                    }
                    self.sysex.push(0xF7);
                    return Parsed::Sysex;
                }
                // Any other status byte ends a SysEx: one without its 0xF7 is incomplete.
                cut = !over;
            }
            let parsed = match b {
                0x80..=0xEF => {
                    self.status = b;
                    Parsed::Partial
                }
                0xF0 => {
                    self.status = 0;
                    self.in_sysex = true;
                    self.sysex.clear();
                    self.sysex.push(0xF0);
                    Parsed::Partial
                }
                _ => {
                    // System common cancels running status (MIDI 1.0 spec).
                    self.status = 0;
                    self.skip = match b {
                        0xF1 | 0xF3 => 1,
                        0xF2 => 2,
                        _ => 0,
                    };
                    self.common = b;
                    if self.skip == 0 {
                        Parsed::Ignored
                    } else {
                        Parsed::Partial
                    }
                }
            };
            return if cut { Parsed::SysexDropped } else { parsed };
        }
        // A data byte.
        if self.in_sysex {
            if self.over {
                return Parsed::Partial;
            }
            // Room is kept for the 0xF7.
            if self.sysex.len() + 1 < self.sysex_max {
                self.sysex.push(b);
                return Parsed::Partial;
            }
            self.over = true;
            return Parsed::SysexDropped;
        }
        if self.skip > 0 {
            self.data[self.have] = b;
            self.have += 1;
            self.skip -= 1;
            if self.skip > 0 {
                return Parsed::Partial;
            }
            self.have = 0;
            return match self.common {
                0xF1 => Parsed::System(Sys::QuarterFrame(self.data[0])),
                0xF2 => Parsed::System(Sys::SongPosition(
                    u16::from(self.data[0]) | (u16::from(self.data[1]) << 7),
                )),
                _ => Parsed::Ignored,
            };
        }
        if self.status == 0 {
            return Parsed::Ignored;
        }
        self.data[self.have] = b;
        self.have += 1;
        if self.have < data_len(self.status) {
            return Parsed::Partial;
        }
        self.have = 0;
        Parsed::Event(event(self.status, self.data[0], self.data[1]))
    }

    /// Feeds `bytes`, calling `emit` for every complete message; returns how many ignored
    /// messages or stray bytes ended.
    pub fn feed_all(&mut self, bytes: &[u8], mut emit: impl FnMut(Msg<'_>)) -> usize {
        let mut ignored = 0;
        for &b in bytes {
            match self.push(b) {
                Parsed::Event(e) => emit(Msg::Voice(e)),
                Parsed::System(s) => emit(Msg::Sys(s)),
                Parsed::Sysex => emit(Msg::Sysex(&self.sysex)),
                Parsed::SysexDropped => emit(Msg::SysexDropped),
                Parsed::Ignored => ignored += 1,
                Parsed::Partial => {}
            }
        }
        ignored
    }

    /// Feeds `bytes`, calling `emit` for every channel voice event; returns how many other
    /// messages (system ones included) or stray bytes ended.
    pub fn feed(&mut self, bytes: &[u8], mut emit: impl FnMut(Event)) -> usize {
        let mut other = 0;
        let ignored = self.feed_all(bytes, |m| match m {
            Msg::Voice(e) => emit(e),
            _ => other += 1,
        });
        ignored + other
    }
}

use super::names::{norm, pitch, Addr, Kind, Names, KINDS};
/// Slots per kind: 16 MIDI channels × 128 numbers.
const SLOTS: usize = 16 * 128;
const NONE: u32 = u32::MAX;

/// One channel update produced by [`Mapper::map`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Update {
    /// Index of the channel in [`Mapper::names`].
    pub chan: usize,
    pub value: f32,
    /// The raw value is the resting one (note off, controller 0, no pressure): what
    /// `preserve_pulses` watches for.
    pub rest: bool,
}

/// Turns MIDI events into updates of named channels. Channels are numbered in order of first
/// arrival (channels appear when their first message arrives, as in TouchDesigner).
#[derive(Clone, Debug)]
pub struct Mapper {
    channels: [bool; 16],
    norm: MidiNorm,
    names_cfg: Names,
    /// Controllers read as 14-bit MSB (n) / LSB (n + 32) pairs.
    highres: [bool; 32],
    /// Last MSB/LSB of every 14-bit pair, per MIDI channel.
    pair: [[(u8, u8); 32]; 16],
    /// Channel index per (kind, MIDI channel, number), `NONE` when not yet seen.
    slot: Vec<u32>,
    names: Vec<String>,
    /// The kind of every channel.
    kinds: Vec<Kind>,
    /// Events dropped by the MIDI channel filter.
    pub filtered: u64,
}

impl Mapper {
    pub fn new(cfg: &MidiInConfig) -> Mapper {
        let mut highres = [false; 32];
        for &c in &cfg.highres {
            if let Some(h) = highres.get_mut(usize::from(c)) {
                *h = true;
            }
        }
        Mapper {
            channels: cfg.channels,
            norm: cfg.norm,
            names_cfg: cfg.names(),
            highres,
            pair: [[(0, 0); 32]; 16],
            slot: vec![NONE; KINDS * SLOTS],
            names: Vec::new(),
            kinds: Vec::new(),
            filtered: 0,
        }
    }

    /// Channel names, in order of first arrival.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn is_note(&self, chan: usize) -> bool {
        self.kinds[chan] == Kind::Note
    }

    /// The value of channel `chan` at rest: raw 0 normalised (a released note, a controller at
    /// 0), the centre for the pitch wheel, program 0.
    pub fn rest_value(&self, chan: usize) -> f32 {
        match self.kinds[chan] {
            Kind::Pitch | Kind::Program => 0.0,
            _ => self.norm7(0),
        }
    }

    /// Forgets every channel (operator reset); 14-bit pairs restart from 0.
    pub fn reset(&mut self) {
        self.slot.fill(NONE);
        self.names.clear();
        self.kinds.clear();
        self.pair = [[(0, 0); 32]; 16];
    }

    fn chan(&mut self, kind: Kind, ch: u8, num: u8) -> usize {
        let key = kind as usize * SLOTS + usize::from(ch) * 128 + usize::from(num & 0x7F);
        let i = self.slot[key];
        if i != NONE {
            return i as usize;
        }
        let i = self.names.len();
        let num = if kind.numbered() { num & 0x7F } else { 0 };
        let name = self.names_cfg.format(Addr { kind, ch, num });
        self.names.push(name);
        self.kinds.push(kind);
        self.slot[key] = i as u32;
        i
    }

    fn norm7(&self, v: u8) -> f32 {
        norm(self.norm, f32::from(v), 127.0)
    }

    fn norm14(&self, v: u16) -> f32 {
        norm(self.norm, f32::from(v), 16383.0)
    }

    /// Whether the MIDI channel filter lets `ev` through (counting it in `filtered` if not).
    pub fn accepts(&mut self, ev: Event) -> bool {
        let ok = self.channels[usize::from(channel(ev) & 0x0F)];
        if !ok {
            self.filtered += 1;
        }
        ok
    }

    /// Maps one event; `None` when the MIDI channel filter drops it or it changes no channel
    /// by itself.
    pub fn map(&mut self, ev: Event) -> Option<Update> {
        if !self.accepts(ev) {
            return None;
        }
        let ch = channel(ev) & 0x0F;
        let (chan, value, rest) = match ev {
            Event::NoteOn { note, vel, .. } if vel > 0 => {
                let v = if self.norm == MidiNorm::OnOff {
                    1.0
                } else {
                    self.norm7(vel)
                };
                (self.chan(Kind::Note, ch, note), v, false)
            }
            // Note-off, or note-on with velocity 0 (running-status note-off).
            Event::NoteOn { note, .. } | Event::NoteOff { note, .. } => {
                (self.chan(Kind::Note, ch, note), self.norm7(0), true)
            }
            Event::PolyPressure { note, value, .. } => (
                self.chan(Kind::Poly, ch, note),
                self.norm7(value),
                value == 0,
            ),
            Event::Control { num, value, .. } => {
                let n = usize::from(num & 0x7F);
                if n < 32 && self.highres[n] {
                    // MSB: the LSB restarts from 0, as MIDI 1.0 asks of receivers.
                    self.pair[usize::from(ch)][n] = (value, 0);
                    let v = u16::from(value) << 7;
                    (self.chan(Kind::Control, ch, num), self.norm14(v), v == 0)
                } else if (32..64).contains(&n) && self.highres[n - 32] {
                    let msb = self.pair[usize::from(ch)][n - 32].0;
                    self.pair[usize::from(ch)][n - 32] = (msb, value);
                    let v = (u16::from(msb) << 7) | u16::from(value);
                    let c = self.chan(Kind::Control, ch, (n - 32) as u8);
                    (c, self.norm14(v), v == 0)
                } else {
                    (
                        self.chan(Kind::Control, ch, num),
                        self.norm7(value),
                        value == 0,
                    )
                }
            }
            Event::Pressure { value, .. } => (
                self.chan(Kind::Pressure, ch, 0),
                self.norm7(value),
                value == 0,
            ),
            Event::Pitch { value, .. } => (self.chan(Kind::Pitch, ch, 0), pitch(value), false),
            // A program number is an index, not a level: never normalised.
            Event::Program { program, .. } => {
                (self.chan(Kind::Program, ch, 0), f32::from(program), false)
            }
        };
        Some(Update { chan, value, rest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MidiInConfig {
        MidiInConfig::default()
    }

    /// Bytes → (channel name, value) in arrival order.
    fn run(cfg: &MidiInConfig, bytes: &[u8]) -> Vec<(String, f32)> {
        let mut p = StreamParser::new();
        let mut m = Mapper::new(cfg);
        let mut out = Vec::new();
        p.feed(bytes, |e| {
            if let Some(u) = m.map(e) {
                out.push((m.names()[u.chan].clone(), u.value));
            }
        });
        out
    }

    fn pairs(v: &[(&str, f32)]) -> Vec<(String, f32)> {
        v.iter().map(|(n, x)| (n.to_string(), *x)).collect()
    }

    #[test]
    fn notes_on_off_and_velocity_zero() {
        let out = run(
            &cfg(),
            &[0x90, 60, 127, 0x80, 60, 64, 0x92, 61, 100, 0x92, 61, 0],
        );
        assert_eq!(
            out,
            pairs(&[
                ("ch1n60", 1.0),
                ("ch1n60", 0.0),
                ("ch3n61", 100.0 / 127.0),
                ("ch3n61", 0.0)
            ])
        );
    }

    #[test]
    fn running_status_and_interleaved_realtime() {
        // Note-on with running status, a clock tick in the middle of a message.
        let out = run(&cfg(), &[0x90, 60, 0xF8, 127, 62, 64, 60, 0]);
        assert_eq!(
            out,
            pairs(&[("ch1n60", 1.0), ("ch1n62", 64.0 / 127.0), ("ch1n60", 0.0)])
        );
    }

    #[test]
    fn sysex_and_system_common_are_skipped() {
        let mut p = StreamParser::new();
        let mut events = Vec::new();
        // SysEx, song position (2 data bytes), then a data byte with no running status (cancelled
        // by the system common message), then a controller.
        let ignored = p.feed(
            &[
                0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7, 0xF2, 0x10, 0x20, 0x33, 0xB0, 7, 100,
            ],
            |e| events.push(e),
        );
        assert_eq!(
            events,
            [Event::Control {
                ch: 0,
                num: 7,
                value: 100
            }]
        );
        assert_eq!(ignored, 3);
    }

    /// Bytes → messages, SysEx as owned bytes.
    fn msgs(p: &mut StreamParser, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        p.feed_all(bytes, |m| {
            out.push(match m {
                Msg::Voice(e) => format!("{e:?}"),
                Msg::Sys(s) => format!("{s:?}"),
                Msg::Sysex(b) => format!("sysex {b:02X?}"),
                Msg::SysexDropped => "dropped".to_string(),
            })
        });
        out
    }

    #[test]
    fn sysex_whole_across_calls_with_realtime_inside() {
        let mut p = StreamParser::new();
        assert!(msgs(&mut p, &[0xF0, 0x7D, 0x01]).is_empty());
        // A clock between two SysEx bytes is its own message and leaves the SysEx whole.
        assert_eq!(
            msgs(&mut p, &[0x02, 0xF8, 0x03, 0xF7, 0xB0, 7, 1]),
            [
                "Clock",
                "sysex [F0, 7D, 01, 02, 03, F7]",
                "Control { ch: 0, num: 7, value: 1 }"
            ]
        );
    }

    #[test]
    fn sysex_beyond_the_bound_or_cut_short_is_dropped_once() {
        let mut p = StreamParser::with_sysex_max(8);
        // 8 bytes with F0 and F7: kept.
        let mut ok = vec![0xF0, 1, 2, 3, 4, 5, 6, 0xF7];
        assert_eq!(msgs(&mut p, &ok), ["sysex [F0, 01, 02, 03, 04, 05, 06, F7]"]);
        // One more data byte: dropped when the bound is passed, once, and nothing at its F7.
        ok.insert(1, 9);
        let mut long = ok.clone();
        long.extend([7; 100]);
        long.push(0xF7);
        assert_eq!(msgs(&mut p, &long), ["dropped"]);
        // Without its F7: the next status byte ends it, and is itself parsed.
        assert_eq!(
            msgs(&mut p, &[0xF0, 1, 2, 0x90, 60, 100]),
            ["dropped", "NoteOn { ch: 0, note: 60, vel: 100 }"]
        );
        // A stray F7 is ignored.
        assert_eq!(p.feed_all(&[0xF7], |_| {}), 1);
    }

    #[test]
    fn reset_leaves_no_half_message() {
        let mut p = StreamParser::new();
        msgs(&mut p, &[0xF0, 1, 2]);
        assert!(p.reset(), "a SysEx was cut off");
        // The rest of the old SysEx are stray bytes now; nothing half-made comes out.
        assert!(msgs(&mut p, &[3, 4, 0xF7]).is_empty());
        msgs(&mut p, &[0x90, 60]);
        assert!(!p.reset());
        assert!(msgs(&mut p, &[100]).is_empty(), "running status is gone too");
    }

    #[test]
    fn clock_transport_song_position_and_quarter_frames() {
        let mut p = StreamParser::new();
        assert_eq!(
            msgs(
                &mut p,
                &[0xFA, 0xF8, 0xFC, 0xFB, 0xF2, 0x10, 0x01, 0xF1, 0x35, 0xFE, 0xF3, 2]
            ),
            [
                "Start",
                "Clock",
                "Stop",
                "Continue",
                "SongPosition(144)",
                "QuarterFrame(53)"
            ]
        );
    }

    #[test]
    fn one_message_per_slice_as_midir_delivers_them() {
        let mut p = StreamParser::new();
        let mut events = Vec::new();
        for msg in [
            &[0xE0u8, 0x00, 0x40][..],
            &[0xC5, 12],
            &[0xD1, 90],
            &[0xA0, 60, 30],
        ] {
            p.feed(msg, |e| events.push(e));
        }
        assert_eq!(
            events,
            [
                Event::Pitch { ch: 0, value: 8192 },
                Event::Program { ch: 5, program: 12 },
                Event::Pressure { ch: 1, value: 90 },
                Event::PolyPressure {
                    ch: 0,
                    note: 60,
                    value: 30
                },
            ]
        );
    }

    #[test]
    fn td_channel_names() {
        let out = run(
            &cfg(),
            &[
                0xB0, 7, 127, 0xAF, 60, 127, 0xD1, 127, 0xE2, 0x7F, 0x7F, 0xC3, 5, 0x9F, 127, 1,
            ],
        );
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["ch1c7", "ch16a60", "ch2pr", "ch3pw", "ch4pc", "ch16n127"]
        );
    }

    #[test]
    fn base_names_are_parameters() {
        let mut c = cfg();
        c.prefix = "m".into();
        c.notename = "note".into();
        c.controlname = "cc".into();
        c.pitchname = "bend".into();
        let out = run(&c, &[0x90, 1, 1, 0xB1, 2, 3, 0xE0, 0, 64]);
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["m1note1", "m2cc2", "m1bend"]);
    }

    #[test]
    fn norm_modes() {
        let bytes = [0xB0, 1, 0, 0xB0, 1, 63, 0xB0, 1, 64, 0xB0, 1, 127];
        let vals = |norm| -> Vec<f32> {
            let mut c = cfg();
            c.norm = norm;
            run(&c, &bytes).into_iter().map(|x| x.1).collect()
        };
        assert_eq!(
            vals(MidiNorm::ZeroToOne),
            [0.0, 63.0 / 127.0, 64.0 / 127.0, 1.0]
        );
        assert_eq!(
            vals(MidiNorm::MinusOneToOne),
            [
                -1.0,
                63.0 / 127.0 * 2.0 - 1.0,
                64.0 / 127.0 * 2.0 - 1.0,
                1.0
            ]
        );
        assert_eq!(vals(MidiNorm::Off), [0.0, 63.0, 64.0, 127.0]);
        assert_eq!(vals(MidiNorm::OnOff), [0.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn onoff_notes_are_on_while_held() {
        let mut c = cfg();
        c.norm = MidiNorm::OnOff;
        let out = run(&c, &[0x90, 60, 10, 0x90, 60, 0]);
        assert_eq!(out, pairs(&[("ch1n60", 1.0), ("ch1n60", 0.0)]));
    }

    #[test]
    fn pitch_wheel_spans_minus_one_to_one_in_every_norm() {
        for norm in [MidiNorm::ZeroToOne, MidiNorm::Off, MidiNorm::OnOff] {
            let mut c = cfg();
            c.norm = norm;
            let out = run(
                &c,
                &[0xE0, 0, 0, 0xE0, 0, 0x40, 0xE0, 0x7F, 0x7F, 0xE0, 0, 0x20],
            );
            let vals: Vec<f32> = out.into_iter().map(|x| x.1).collect();
            assert_eq!(vals, [-1.0, 0.0, 1.0, -0.5]);
        }
    }

    #[test]
    fn program_change_is_the_raw_number() {
        let out = run(&cfg(), &[0xC0, 42]);
        assert_eq!(out, pairs(&[("ch1pc", 42.0)]));
    }

    #[test]
    fn highres_pairs() {
        let mut c = cfg();
        c.highres = vec![1];
        c.norm = MidiNorm::Off;
        // MSB 1 = 0x40, LSB 33 = 0x10, then a new MSB resets the LSB; controller 2 stays 7-bit,
        // controller 34 (not paired) is its own channel.
        let out = run(
            &c,
            &[
                0xB0, 1, 0x40, 0xB0, 33, 0x10, 0xB0, 1, 0x41, 0xB0, 2, 5, 0xB0, 34, 6,
            ],
        );
        assert_eq!(
            out,
            pairs(&[
                ("ch1c1", 8192.0),
                ("ch1c1", 8192.0 + 16.0),
                ("ch1c1", 0x41 as f32 * 128.0),
                ("ch1c2", 5.0),
                ("ch1c34", 6.0),
            ])
        );
        c.norm = MidiNorm::ZeroToOne;
        let out = run(&c, &[0xB0, 1, 0x7F, 0xB0, 33, 0x7F]);
        assert_eq!(out[1], ("ch1c1".to_string(), 1.0));
        // Pairs are kept per MIDI channel.
        c.norm = MidiNorm::Off;
        let out = run(&c, &[0xB0, 1, 1, 0xB1, 1, 2, 0xB0, 33, 3]);
        assert_eq!(out[2], ("ch1c1".to_string(), 128.0 + 3.0));
    }

    #[test]
    fn channel_filter() {
        let mut c = cfg();
        c.channels = crate::config::parse_midi_channels("2-3 16").unwrap();
        let mut p = StreamParser::new();
        let mut m = Mapper::new(&c);
        let mut names = Vec::new();
        p.feed(
            &[
                0x90, 60, 1, 0x91, 60, 1, 0x92, 60, 1, 0x93, 60, 1, 0xBF, 1, 1,
            ],
            |e| {
                if let Some(u) = m.map(e) {
                    names.push(m.names()[u.chan].clone());
                }
            },
        );
        assert_eq!(names, ["ch2n60", "ch3n60", "ch16c1"]);
        assert_eq!(m.filtered, 2);
    }

    #[test]
    fn rest_flags() {
        let mut p = StreamParser::new();
        let mut m = Mapper::new(&cfg());
        let mut rest = Vec::new();
        p.feed(
            &[
                0x90, 60, 1, 0x90, 60, 0, 0xB0, 1, 0, 0xB0, 1, 1, 0xE0, 0, 0x40, 0xC0, 0,
            ],
            |e| rest.push(m.map(e).unwrap().rest),
        );
        assert_eq!(rest, [false, true, true, false, false, false]);
    }

    #[test]
    fn channels_are_numbered_by_first_arrival_and_reset_forgets_them() {
        let mut p = StreamParser::new();
        let mut m = Mapper::new(&cfg());
        let mut idx = Vec::new();
        p.feed(&[0xB0, 9, 1, 0x90, 1, 1, 0xB0, 9, 2], |e| {
            idx.push(m.map(e).unwrap().chan)
        });
        assert_eq!(idx, [0, 1, 0]);
        assert!(m.is_note(1) && !m.is_note(0));
        m.reset();
        assert!(m.names().is_empty());
        p.feed(&[0x90, 1, 1], |e| idx.push(m.map(e).unwrap().chan));
        assert_eq!(idx[3], 0);
    }
}
