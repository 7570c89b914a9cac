//! TouchDesigner's MIDI channel names, both ways: what MIDI In names a channel (`ch1c7`,
//! `ch16n60`, `ch2pw`) and which message a MIDI Out channel of that name stands for. One place,
//! so a name MIDI In makes is a name MIDI Out understands, with the same base-name parameters
//! and the same normalisation modes.

use super::MidiNorm;

/// The channel kinds, in the order of TouchDesigner's base-name parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Note = 0,
    Control = 1,
    Poly = 2,
    Pressure = 3,
    Pitch = 4,
    Program = 5,
}

pub const KINDS: usize = 6;

impl Kind {
    /// Kinds that carry a number (`n60`, `c7`, `a60`); the others are one per MIDI channel.
    pub fn numbered(self) -> bool {
        matches!(self, Kind::Note | Kind::Control | Kind::Poly)
    }
}

/// A message slot a channel stands for: kind, MIDI channel 0–15 and number 0–127 (0 for the
/// kinds without one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Addr {
    pub kind: Kind,
    pub ch: u8,
    pub num: u8,
}

/// The prefix and base names (TouchDesigner's `ch`, `n`, `c`, `a`, `pr`, `pw`, `pc`).
#[derive(Clone, Debug, PartialEq)]
pub struct Names {
    pub prefix: String,
    /// By [`Kind`].
    pub base: [String; KINDS],
}

impl Default for Names {
    fn default() -> Self {
        Names {
            prefix: "ch".into(),
            base: ["n", "c", "a", "pr", "pw", "pc"].map(String::from),
        }
    }
}

impl Names {
    /// `prefix` + MIDI channel (1–16) + base name (+ number).
    pub fn format(&self, a: Addr) -> String {
        let base = &self.base[a.kind as usize];
        if a.kind.numbered() {
            format!("{}{}{}{}", self.prefix, a.ch + 1, base, a.num)
        } else {
            format!("{}{}{}", self.prefix, a.ch + 1, base)
        }
    }

    /// The slot a channel name stands for, or `None` when it is no MIDI name. A base name that
    /// is the start of another (`p` and `pw`) is told apart by trying the longest first.
    pub fn parse(&self, name: &str) -> Option<Addr> {
        let rest = name.strip_prefix(self.prefix.as_str())?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let ch: u8 = rest[..digits].parse().ok().filter(|c| (1..=16).contains(c))?;
        let rest = &rest[digits..];
        let mut order: Vec<usize> = (0..KINDS).collect();
        order.sort_by_key(|&k| std::cmp::Reverse(self.base[k].len()));
        for k in order {
            let kind = KIND_ORDER[k];
            let Some(tail) = rest.strip_prefix(self.base[k].as_str()) else {
                continue;
            };
            if kind.numbered() {
                if tail.is_empty() || !tail.bytes().all(|b| b.is_ascii_digit()) {
                    continue;
                }
                let num: u8 = match tail.parse() {
                    Ok(n) if n <= 127 => n,
                    _ => continue,
                };
                return Some(Addr { kind, ch: ch - 1, num });
            } else if tail.is_empty() {
                return Some(Addr { kind, ch: ch - 1, num: 0 });
            }
        }
        None
    }
}

const KIND_ORDER: [Kind; KINDS] = [
    Kind::Note,
    Kind::Control,
    Kind::Poly,
    Kind::Pressure,
    Kind::Pitch,
    Kind::Program,
];

/// A raw value (0..=`max`) as a channel value in `mode`.
pub fn norm(mode: MidiNorm, v: f32, max: f32) -> f32 {
    match mode {
        MidiNorm::ZeroToOne => v / max,
        MidiNorm::MinusOneToOne => v / max * 2.0 - 1.0,
        MidiNorm::Off => v,
        // "≥ 64 → 1" for 7-bit values; the same half-way point for 14-bit ones.
        MidiNorm::OnOff => {
            if v >= (max + 1.0) / 2.0 {
                1.0
            } else {
                0.0
            }
        }
    }
}

/// The inverse of [`norm`]: a channel value as the raw value 0..=`max` (rounded, clamped; NaN
/// is 0). With `onoff`, on is `max` and off 0.
pub fn denorm(mode: MidiNorm, v: f32, max: u16) -> u16 {
    let m = f32::from(max);
    let raw = match mode {
        MidiNorm::ZeroToOne => v * m,
        MidiNorm::MinusOneToOne => (v + 1.0) / 2.0 * m,
        MidiNorm::Off => v,
        MidiNorm::OnOff => {
            if v >= 0.5 {
                m
            } else {
                0.0
            }
        }
    };
    if raw.is_nan() {
        return 0;
    }
    raw.round().clamp(0.0, m) as u16
}

/// Pitch wheel −1..1 with 8192 → 0 exactly; the two halves have different sizes (8192 steps
/// down, 8191 up) so both ends reach ±1.
pub fn pitch(v: u16) -> f32 {
    let d = f32::from(v) - 8192.0;
    if d >= 0.0 {
        d / 8191.0
    } else {
        d / 8192.0
    }
}

/// The inverse of [`pitch`] (clamped; NaN is the centre).
pub fn unpitch(v: f32) -> u16 {
    if v.is_nan() {
        return 8192;
    }
    let v = v.clamp(-1.0, 1.0);
    let d = if v >= 0.0 { v * 8191.0 } else { v * 8192.0 };
    (8192.0 + d).round() as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let n = Names::default();
        for (name, kind, ch, num) in [
            ("ch1c7", Kind::Control, 0, 7),
            ("ch16n127", Kind::Note, 15, 127),
            ("ch3a60", Kind::Poly, 2, 60),
            ("ch2pr", Kind::Pressure, 1, 0),
            ("ch2pw", Kind::Pitch, 1, 0),
            ("ch4pc", Kind::Program, 3, 0),
        ] {
            let a = Addr { kind, ch, num };
            assert_eq!(n.parse(name), Some(a), "{name}");
            assert_eq!(n.format(a), name);
        }
        for bad in ["ch0c7", "ch17c7", "ch1c128", "ch1c", "ch1pw2", "c7", "ch1x7", "ch1n6x"] {
            assert_eq!(n.parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn base_names_that_share_a_start() {
        let mut n = Names::default();
        n.base[Kind::Pressure as usize] = "p".into();
        assert_eq!(n.parse("ch1p").unwrap().kind, Kind::Pressure);
        assert_eq!(n.parse("ch1pw").unwrap().kind, Kind::Pitch);
        assert_eq!(n.parse("ch1pc").unwrap().kind, Kind::Program);
    }

    #[test]
    fn denorm_inverts_norm() {
        for mode in [MidiNorm::ZeroToOne, MidiNorm::MinusOneToOne, MidiNorm::Off] {
            for raw in [0u16, 1, 63, 64, 127] {
                assert_eq!(denorm(mode, norm(mode, f32::from(raw), 127.0), 127), raw);
            }
            assert_eq!(denorm(mode, norm(mode, 9000.0, 16383.0), 16383), 9000);
        }
        assert_eq!(denorm(MidiNorm::OnOff, 1.0, 127), 127);
        assert_eq!(denorm(MidiNorm::OnOff, 0.2, 127), 0);
        assert_eq!(denorm(MidiNorm::ZeroToOne, 7.0, 127), 127);
        assert_eq!(denorm(MidiNorm::ZeroToOne, f32::NAN, 127), 0);
        for raw in [0u16, 1, 8191, 8192, 8193, 16383] {
            assert_eq!(unpitch(pitch(raw)), raw);
        }
        assert_eq!(unpitch(f32::NAN), 8192);
    }
}
