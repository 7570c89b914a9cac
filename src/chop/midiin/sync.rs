//! MIDI clock and MIDI Time Code in, with no I/O: system messages with their arrival times
//! (microseconds, from the MIDI system's own clock: JACK frame time, ALSA's timestamps) become
//! the values of the sync channels. Unit tests drive them with made-up times.
//!
//! - [`BeatClock`]: timing clock (24 a quarter note), start / continue / stop and song
//!   position → `running`, `bpm`, `beat`, `bar`, `songposition`.
//! - [`Mtc`]: quarter frames and full-frame SysEx → `hours`, `minutes`, `seconds`, `frames`,
//!   `fps` and `timecode` (the position in seconds).

use super::parse::Sys;

/// Timing clocks a quarter note.
pub const PPQN: i64 = 24;
/// Intervals the tempo is averaged over: one beat.
const WINDOW: usize = 24;
/// A pause between two clocks longer than this is a stopped clock, not a tempo (it would be
/// below 2.5 bpm): the average starts again and the tempo holds meanwhile.
const GAP_US: u64 = 1_000_000;
/// At most this many clocks lost in a row are made up for by splitting the interval.
const MAX_LOST: u64 = 4;

/// The clock channels, in order.
pub const CLOCK_CHANNELS: [&str; 5] = ["running", "bpm", "beat", "bar", "songposition"];
/// The timecode channels, in order.
pub const MTC_CHANNELS: [&str; 6] = ["hours", "minutes", "seconds", "frames", "fps", "timecode"];

/// Follows a MIDI clock master.
#[derive(Clone, Debug)]
pub struct BeatClock {
    beats_per_bar: i64,
    running: bool,
    /// Position of the last clock, in clocks from the song's start; −1 before the first.
    pos: i64,
    last: Option<u64>,
    /// The last intervals between clocks, µs (a ring of `n` of them).
    intervals: [u64; WINDOW],
    n: usize,
    next: usize,
    sum: u64,
    /// The tempo, held while no clock comes; 0 until two clocks were seen.
    bpm: f64,
    /// Any clock, transport or song position message arrived: the channels exist.
    pub seen: bool,
    /// Timing clocks received.
    pub ticks: u64,
}

impl BeatClock {
    pub fn new(beats_per_bar: u32) -> BeatClock {
        BeatClock {
            beats_per_bar: i64::from(beats_per_bar.max(1)),
            running: false,
            pos: -1,
            last: None,
            intervals: [0; WINDOW],
            n: 0,
            next: 0,
            sum: 0,
            bpm: 0.0,
            seen: false,
            ticks: 0,
        }
    }

    fn mean(&self) -> f64 {
        self.sum as f64 / self.n as f64
    }

    fn add(&mut self, d: u64) {
        if self.n == WINDOW {
            self.sum -= self.intervals[self.next];
        } else {
            self.n += 1;
        }
        self.intervals[self.next] = d;
        self.sum += d;
        self.next = (self.next + 1) % WINDOW;
    }

    /// Forgets the interval history (the clock stopped, or the device went away); the tempo
    /// holds until new clocks give a new one.
    pub fn restart_tempo(&mut self) {
        self.last = None;
        self.n = 0;
        self.next = 0;
        self.sum = 0;
    }

    /// Takes one system message that arrived at `t_us`; false when it is no clock message.
    pub fn on(&mut self, s: Sys, t_us: u64) -> bool {
        match s {
            Sys::Clock => {
                self.ticks += 1;
                if let Some(last) = self.last {
                    let d = t_us.wrapping_sub(last);
                    if t_us < last || d > GAP_US {
                        self.restart_tempo();
                    } else if d > 0 {
                        // Clocks lost on the way make one long interval: split it, so a lost
                        // message does not make the tempo dip.
                        let k = if self.n >= 4 {
                            ((d as f64 / self.mean()).round() as u64).max(1)
                        } else {
                            1
                        };
                        if k <= MAX_LOST {
                            for _ in 0..k {
                                self.add(d / k);
                            }
                        } else {
                            self.restart_tempo();
                        }
                    }
                }
                self.last = Some(t_us);
                if self.n > 0 && self.sum > 0 {
                    self.bpm = 60e6 / (PPQN as f64 * self.mean());
                }
                if self.running {
                    self.pos += 1;
                }
            }
            // The first clock after a start or continue comes when the master's transport
            // says, not a tempo interval after the clock before it: the chain of intervals
            // starts again there (the average and the tempo are kept).
            Sys::Start => {
                self.running = true;
                self.pos = -1;
                self.last = None;
            }
            Sys::Continue => {
                self.running = true;
                self.last = None;
            }
            Sys::Stop => self.running = false,
            // The next clock is at the position (MIDI beats are six clocks).
            Sys::SongPosition(p) => self.pos = i64::from(p) * 6 - 1,
            Sys::QuarterFrame(_) => return false,
        }
        self.seen = true;
        true
    }

    /// The values of [`CLOCK_CHANNELS`].
    pub fn values(&self) -> [f32; 5] {
        let p = self.pos.max(0);
        let bar = PPQN * self.beats_per_bar;
        [
            f32::from(u8::from(self.running)),
            self.bpm as f32,
            (1 + (p / PPQN) % self.beats_per_bar) as f32,
            (1 + p / bar) as f32,
            (p / 6) as f32,
        ]
    }
}

/// MIDI Time Code frame rates (the two rate bits of the hours).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    Fps24,
    Fps25,
    /// 29.97, drop frame.
    Fps2997,
    Fps30,
}

impl Rate {
    fn of_bits(b: u8) -> Rate {
        match b & 3 {
            0 => Rate::Fps24,
            1 => Rate::Fps25,
            2 => Rate::Fps2997,
            _ => Rate::Fps30,
        }
    }

    /// Frames a timecode second counts (30 for 29.97: its labels count 0–29).
    pub fn nominal(self) -> i64 {
        match self {
            Rate::Fps24 => 24,
            Rate::Fps25 => 25,
            Rate::Fps2997 | Rate::Fps30 => 30,
        }
    }

    pub fn fps(self) -> f64 {
        match self {
            Rate::Fps24 => 24.0,
            Rate::Fps25 => 25.0,
            Rate::Fps2997 => 29.97,
            Rate::Fps30 => 30.0,
        }
    }
}

/// A full-frame message (`F0 7F dev 01 01 hr mn sc fr F7`): hours, minutes, seconds, frames and
/// rate; `None` for any other SysEx.
pub fn full_frame(msg: &[u8]) -> Option<(u8, u8, u8, u8, Rate)> {
    match *msg {
        [0xF0, 0x7F, _, 0x01, 0x01, hr, mn, sc, fr, 0xF7] => Some((
            hr & 0x1F,
            mn & 0x3F,
            sc & 0x3F,
            fr & 0x1F,
            Rate::of_bits(hr >> 5),
        )),
        _ => None,
    }
}

/// Follows MIDI Time Code.
#[derive(Clone, Debug)]
pub struct Mtc {
    /// The nibbles of the set being collected, and which have arrived.
    pieces: [u8; 8],
    have: u8,
    last: Option<u8>,
    /// +1 forward, −1 backward.
    dir: i64,
    /// The position in quarter frames (of the timecode's own count), once known.
    qf: Option<i64>,
    rate: Rate,
    /// Any timecode arrived: the channels exist.
    pub seen: bool,
    pub quarter_frames: u64,
}

impl Default for Mtc {
    fn default() -> Self {
        Mtc {
            pieces: [0; 8],
            have: 0,
            last: None,
            dir: 1,
            qf: None,
            rate: Rate::Fps30,
            seen: false,
            quarter_frames: 0,
        }
    }
}

impl Mtc {
    /// One quarter-frame data byte (`0nnndddd`: piece n, nibble d).
    pub fn quarter(&mut self, d: u8) {
        self.seen = true;
        self.quarter_frames += 1;
        let piece = (d >> 4) & 7;
        // How far this piece is from the last one tells the direction and whether quarter
        // frames were lost; a jump that says neither (4 pieces, or a first piece) restarts.
        let step = self.last.map(|l| (i64::from(piece) - i64::from(l)).rem_euclid(8));
        match step {
            Some(s @ 1..=3) | Some(s @ 5..=7) => {
                let (dir, dist) = if s <= 3 { (1, s) } else { (-1, 8 - s) };
                if dist > 1 {
                    self.have = 0;
                } else if dir != self.dir {
                    // Turned round: the last piece starts the set of the new direction.
                    self.have = self.last.map_or(0, |l| 1 << l);
                }
                self.dir = dir;
                if let Some(q) = &mut self.qf {
                    *q += dir * dist;
                }
            }
            _ => self.have = 0,
        }
        self.last = Some(piece);
        self.pieces[usize::from(piece)] = d & 0x0F;
        self.have |= 1 << piece;
        let ends = if self.dir > 0 { 7 } else { 0 };
        if self.have == 0xFF && piece == ends {
            let p = &self.pieces;
            let frames = p[0] | (p[1] & 1) << 4;
            let secs = p[2] | (p[3] & 3) << 4;
            let mins = p[4] | (p[5] & 3) << 4;
            let hours = p[6] | (p[7] & 1) << 4;
            self.rate = Rate::of_bits(p[7] >> 1);
            // The set took two frames to send: its last quarter frame came 7 quarter frames
            // after (forward) or before (backward) the time it carries.
            let t = self.total(hours, mins, secs, frames);
            self.qf = Some(t * 4 + 7 * self.dir);
            self.have = 0;
        }
    }

    /// A full-frame message: the position jumps there (a locate); quarter frames go on from it.
    pub fn full(&mut self, (h, m, s, f, rate): (u8, u8, u8, u8, Rate)) {
        self.seen = true;
        self.rate = rate;
        let t = self.total(h, m, s, f);
        self.qf = Some(t * 4);
        self.have = 0;
        self.last = None;
    }

    fn total(&self, h: u8, m: u8, s: u8, f: u8) -> i64 {
        ((i64::from(h) * 60 + i64::from(m)) * 60 + i64::from(s)) * self.rate.nominal()
            + i64::from(f)
    }

    /// The device went away: the position is kept, a half-collected set is not.
    pub fn restart(&mut self) {
        self.have = 0;
        self.last = None;
    }

    /// The values of [`MTC_CHANNELS`]; zeros until a position is known.
    pub fn values(&self) -> [f32; 6] {
        let fps = self.rate.fps() as f32;
        let Some(qf) = self.qf else {
            return [0.0, 0.0, 0.0, 0.0, fps, 0.0];
        };
        let nominal = self.rate.nominal();
        let qf = qf.max(0);
        let frames = qf / 4;
        let secs = frames / nominal;
        let timecode = secs as f64 + ((frames % nominal) as f64 + (qf % 4) as f64 / 4.0) / nominal as f64;
        [
            (secs / 3600 % 24) as f32,
            (secs / 60 % 60) as f32,
            (secs % 60) as f32,
            (frames % nominal) as f32,
            fps,
            timecode as f32,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clocks at `bpm` from `t0` µs, `n` of them, with a jitter pattern of ±`jitter` µs.
    fn ticks(c: &mut BeatClock, t0: u64, bpm: f64, n: usize, jitter: i64) -> u64 {
        let dt = 60e6 / (bpm * 24.0);
        let mut t = t0;
        for k in 0..n {
            let j = if k % 2 == 0 { jitter } else { -jitter };
            t = t0 + (k as f64 * dt) as u64;
            c.on(Sys::Clock, (t as i64 + j) as u64);
        }
        t
    }

    #[test]
    fn tempo_from_clock_intervals_with_jitter_and_a_lost_clock() {
        let mut c = BeatClock::new(4);
        assert_eq!(c.values()[1], 0.0);
        let t = ticks(&mut c, 1_000_000, 120.0, 49, 0);
        assert!((c.values()[1] - 120.0).abs() < 0.01, "{:?}", c.values());
        // ±2 ms of jitter on every clock (a quarter of the interval at 120 bpm).
        let t = ticks(&mut c, t + 20_833, 120.0, 48, 2000);
        assert!((c.values()[1] - 120.0).abs() < 0.5, "{:?}", c.values());
        // A lost clock: one interval twice as long, split in two.
        c.on(Sys::Clock, t + 2 * 20_833);
        assert!((c.values()[1] - 120.0).abs() < 0.5, "{:?}", c.values());
        // A tempo change is followed within a beat.
        ticks(&mut c, t + 3 * 20_833, 90.0, 30, 0);
        assert!((c.values()[1] - 90.0).abs() < 0.01, "{:?}", c.values());
        assert_eq!(c.ticks, 49 + 48 + 1 + 30);
    }

    #[test]
    fn a_stopped_clock_holds_the_tempo_and_its_pause_is_not_one() {
        let mut c = BeatClock::new(4);
        let t = ticks(&mut c, 0, 100.0, 30, 0);
        // Five seconds of silence, then the clock again at the same tempo.
        ticks(&mut c, t + 5_000_000, 100.0, 3, 0);
        assert!((c.values()[1] - 100.0).abs() < 0.01, "{:?}", c.values());
    }

    #[test]
    fn the_pause_before_a_continue_or_start_is_not_a_tempo_interval() {
        let mut c = BeatClock::new(4);
        let t = ticks(&mut c, 0, 150.0, 48, 0);
        // Stopped for 60 ms (a bit under four intervals, so it would be split as lost clocks),
        // then continue and one clock; then the same with a start.
        for (k, s) in [Sys::Continue, Sys::Start].into_iter().enumerate() {
            let t = t + (k as u64 + 1) * 100_000;
            c.on(Sys::Stop, t);
            c.on(s, t + 60_000);
            c.on(Sys::Clock, t + 61_000);
            assert!((c.values()[1] - 150.0).abs() < 0.01, "{s:?}: {:?}", c.values());
        }
        // The clocks after it count again.
        ticks(&mut c, 1_000_000, 100.0, 30, 0);
        assert!((c.values()[1] - 100.0).abs() < 0.01, "{:?}", c.values());
    }

    #[test]
    fn transport_beats_bars_and_song_position() {
        let mut c = BeatClock::new(4);
        // Clocks before start move nothing.
        ticks(&mut c, 0, 120.0, 10, 0);
        assert_eq!(c.values()[0], 0.0);
        assert!(c.on(Sys::Start, 0));
        assert_eq!(c.values()[2..], [1.0, 1.0, 0.0]);
        // 4 beats and 6 clocks: the first clock after start is position 0.
        ticks(&mut c, 1_000_000, 120.0, 24 * 4 + 7, 0);
        assert_eq!(c.values(), [1.0, c.values()[1], 1.0, 2.0, 17.0]);
        c.on(Sys::Stop, 0);
        ticks(&mut c, 4_000_000, 120.0, 24, 0);
        assert_eq!(c.values()[0..1], [0.0]);
        assert_eq!(c.values()[3], 2.0, "stopped: the position holds");
        // Song position 32 (two bars of sixteenths), continue: the next clock is there.
        c.on(Sys::SongPosition(32), 0);
        c.on(Sys::Continue, 0);
        c.on(Sys::Clock, 5_000_000);
        assert_eq!(c.values()[2..], [1.0, 3.0, 32.0]);
        assert!(!c.on(Sys::QuarterFrame(0), 0));
    }

    /// The eight quarter frames of `h:m:s:f` at `rate` bits, forward order.
    fn set(h: u8, m: u8, s: u8, f: u8, rate: u8) -> [u8; 8] {
        [
            f & 0xF,
            0x10 | f >> 4,
            0x20 | (s & 0xF),
            0x30 | s >> 4,
            0x40 | (m & 0xF),
            0x50 | m >> 4,
            0x60 | (h & 0xF),
            0x70 | (h >> 4) | rate << 1,
        ]
    }

    #[test]
    fn quarter_frames_forward_backward_and_dropped() {
        let mut m = Mtc::default();
        for b in set(1, 2, 3, 4, 1) {
            m.quarter(b);
        }
        // 01:02:03:04 at 25 fps, plus the 7 quarter frames the set took.
        let v = m.values();
        assert_eq!(v[..5], [1.0, 2.0, 3.0, 5.0, 25.0]);
        let want = 3600.0 + 120.0 + 3.0 + (4.0 + 1.75) / 25.0;
        assert!((v[5] as f64 - want).abs() < 1e-3, "{v:?}");
        // The next set (two frames on) confirms it; one quarter frame of it is lost.
        let next = set(1, 2, 3, 6, 1);
        for (k, b) in next.iter().enumerate() {
            if k != 3 {
                m.quarter(*b);
            }
        }
        let v = m.values();
        let want = 3600.0 + 120.0 + 3.0 + (6.0 + 1.75) / 25.0;
        assert!((v[5] as f64 - want).abs() < 1e-3, "{v:?}");
        // Backward: pieces 7 to 0; the set says 01:02:03:00.
        let back = set(1, 2, 3, 0, 1);
        for b in back.iter().rev() {
            m.quarter(*b);
        }
        let v = m.values();
        let want = 3600.0 + 120.0 + 3.0 - 1.75 / 25.0;
        assert!((v[5] as f64 - want).abs() < 1e-3, "{v:?}");
        assert_eq!(m.quarter_frames, 23);
    }

    #[test]
    fn full_frame_locates_and_rates() {
        let msg = [0xF0, 0x7F, 0x7F, 0x01, 0x01, 0x40 | 10, 20, 30, 15, 0xF7];
        let f = full_frame(&msg).unwrap();
        assert_eq!(f, (10, 20, 30, 15, Rate::Fps2997));
        assert_eq!(full_frame(&msg[..9]), None);
        assert_eq!(full_frame(&[0xF0, 0x7D, 1, 0xF7]), None);
        let mut m = Mtc::default();
        assert_eq!(m.values()[5], 0.0);
        m.full(f);
        assert_eq!(m.values()[..5], [10.0, 20.0, 30.0, 15.0, 29.97]);
        // Quarter frames go on from the located position.
        m.quarter(0x00);
        m.quarter(0x10);
        let v = m.values();
        assert!((v[5] - (37_230.0 + 15.25 / 30.0)).abs() < 1e-2, "{v:?}");
    }
}
