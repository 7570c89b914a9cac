//! MIDI In (docs/midi.md): channel voice messages from one MIDI port become TouchDesigner-style
//! channels (`ch1n60`, `ch1c7`, `ch1pw`, …), with hot-plug.
//!
//! Three threads touch an operator:
//! - midir's callback thread (ALSA) or JACK's realtime thread (the `jack` feature, see
//!   `midiin/jack.rs`) parses bytes into events and pushes them into a bounded queue — nothing
//!   else;
//! - the scanner thread ([`ports::Scanner`]) lists ports every `scan_ms`, connects, notices a
//!   vanished port and reconnects; it publishes `connected` and counters as atomics and logs one
//!   line per change;
//! - the cook thread (this file) folds the queue into channel values. It never blocks and never
//!   touches the MIDI system.
//!
//! Decisions (also in the README, "MIDI In"): a note's value is its normalised velocity while
//! held (1 with `norm = "onoff"`), and the normalised velocity 0 after its note-off (0, or −1
//! with `-1to1`); pitch wheel is −1..1 in every mode; a program change is the raw program
//! number; `preserve_pulses` applies to every channel whose raw value rests at 0 (notes,
//! controllers, aftertouch): one that rose and fell back within a frame shows its last raised
//! value for that frame and rests the next. When the device vanishes, held notes are released
//! (no note-off can come any more); controllers keep their values.

pub(crate) mod cancel;
#[cfg(feature = "jack")]
pub(crate) mod jack;
pub mod names;
mod parse;
pub(crate) mod ports;
pub mod ring;
pub mod sync;

pub use parse::{Event, Mapper, Msg, StreamParser, Sys, Update, SYSEX_MAX};
pub use ports::{list_ports, DeviceMatcher, Level, Selection, Unavailable, BACKEND};

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cook::slice::max_samples;
use crate::cook::{ChopData, CookCtx, CookError, Frame, NodeState, Operator, SliceQueue};
use crate::config::OperatorConfig;
use crate::wake::Wake;

pub mod config;
pub use config::{MidiIn, MidiInConfig, MidiNorm};
use ports::{ScanState, Scanner, PortState, Wire};
use sync::{BeatClock, Mtc, CLOCK_CHANNELS, MTC_CHANNELS};

/// Events waiting for the cook thread. A fast controller sweep is ~1000 messages/s; 16k holds
/// several seconds of that from every control at once, or a 250 ms stall of a full DIN-speed
/// stream (3125 bytes/s) many times over. Beyond it messages are dropped and counted.
const QUEUE: usize = 16_384;

/// The SysEx ring between the MIDI callback and the cook thread: four of the longest SysEx.
const SYSEX_RING: usize = 4 * SYSEX_MAX;

/// A message as the MIDI In DAT logs it (only kept when an operator asks for the log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Logged {
    Voice(Event),
    Sys(Sys),
    Sysex(Vec<u8>),
}

/// Messages logged in one frame at most (and SysEx bytes among them): a flood beyond it is
/// counted in `log_dropped`, not kept.
const LOG_MAX: usize = 4096;
const LOG_BYTES: usize = 1 << 20;

pub struct MidiInOp {
    name: String,
    timeslice: bool,
    queued: bool,
    preserve_pulses: bool,
    mapper: Mapper,
    queue: Receiver<Wire>,
    shared: Arc<PortState>,
    /// Dropping it stops the scanner thread (it wakes at once).
    _stop: SyncSender<()>,
    /// Updates folded since the last cook, in arrival order.
    pending: Vec<Update>,
    max_slice: Duration,
    /// With `queued` and `timeslice`: this frame's messages per channel.
    slices: SliceQueue,
    /// Current value and resting state of every channel.
    values: Vec<f32>,
    rest: Vec<bool>,
    /// Channels showing a preserved pulse, with its value: shown until the next frame, which
    /// shows them at rest.
    pulsing: Vec<(usize, f32)>,
    /// Scratch for the cook: per channel, the last raised value of a pulse seen this frame.
    peak: Vec<Option<f32>>,
    layout_changed: bool,
    /// A clock or timecode message arrived since the last cook.
    sync_changed: bool,
    /// Messages the cook thread folded (the queue's other end counts `messages`).
    folded: u64,
    /// The device went away since the last frame: `connected` shows 0 for this frame even when
    /// the scanner has reconnected already (a replug shorter than a frame would not show at all).
    dropped_out: bool,
    /// SysEx bytes, each behind the `Wire::Sysex` that names it.
    sysex_rx: ring::Consumer,
    clock: BeatClock,
    mtc: Mtc,
    /// Every message of this frame, for the MIDI In DAT; `None` for the CHOP.
    log: Option<Vec<Logged>>,
    log_bytes: usize,
    pub log_dropped: u64,
    /// A dropped SysEx was logged (once per operator).
    sysex_drop_logged: bool,
}

impl MidiInOp {
    /// Starts the scanner thread, which opens the MIDI system and connects to the device when
    /// it is there. With `required`, the first scan runs here instead (it blocks for as long as
    /// opening a MIDI client and connecting take, a few ms) and a missing device or MIDI system
    /// is an error; otherwise nothing here blocks and the operator starts disconnected.
    /// `wake`: rung when MIDI arrives, for an operator that reacts between frames.
    pub fn new(
        op: &OperatorConfig,
        cfg: &MidiInConfig,
        max_slice: Duration,
        wake: Option<Wake>,
    ) -> Result<MidiInOp, String> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let (sysex_tx, sysex_rx) = ring::ring(SYSEX_RING);
        let mut scanner = Scanner::new(&op.name, &cfg.device, tx, sysex_tx, wake);
        let scanned = cfg.required;
        if cfg.required {
            let why = match scanner.scan() {
                ScanState::Connected => None,
                ScanState::Missing => Some(format!(
                    "no MIDI port matches device \"{}\" (see `chopd midi-ports`)",
                    cfg.device
                )),
                ScanState::Unavailable(e) => Some(format!("MIDI is unavailable: {e}")),
                ScanState::Failed(e) => Some(format!("cannot connect: {e}")),
            };
            if let Some(why) = why {
                return Err(format!("midiin \"{}\" is required: {why}", op.name));
            }
        }
        let shared = scanner.shared.clone();
        let (stop_tx, stop_rx) = mpsc::sync_channel(1);
        let interval = cfg.scan;
        let thread = std::thread::Builder::new()
            .name(format!("midiin-{}", op.name))
            .spawn(move || scanner.run(interval, !scanned, stop_rx))
            .map_err(|e| format!("midiin \"{}\": cannot start the port scanner: {e}", op.name))?;
        register_thread(thread);
        Ok(MidiInOp::with_queue(
            &op.name,
            op.timeslice,
            cfg,
            (rx, sysex_rx),
            shared,
            stop_tx,
            max_slice,
        ))
    }

    /// The operator on the cook thread's ends of the queues (what unit tests make without a
    /// MIDI system).
    fn with_queue(
        name: &str,
        timeslice: bool,
        cfg: &MidiInConfig,
        (queue, sysex_rx): (Receiver<Wire>, ring::Consumer),
        shared: Arc<PortState>,
        stop: SyncSender<()>,
        max_slice: Duration,
    ) -> MidiInOp {
        MidiInOp {
            name: name.to_string(),
            timeslice,
            queued: cfg.queued,
            preserve_pulses: cfg.preserve_pulses,
            mapper: Mapper::new(cfg),
            queue,
            shared,
            _stop: stop,
            pending: Vec::new(),
            max_slice,
            slices: SliceQueue::default(),
            values: Vec::new(),
            rest: Vec::new(),
            pulsing: Vec::new(),
            peak: Vec::new(),
            layout_changed: false,
            sync_changed: false,
            folded: 0,
            dropped_out: false,
            sysex_rx,
            clock: BeatClock::new(cfg.beats_per_bar),
            mtc: Mtc::default(),
            log: None,
            log_bytes: 0,
            log_dropped: 0,
            sysex_drop_logged: false,
        }
    }

    /// Keeps every message of a frame for [`take_log`](Self::take_log) (the MIDI In DAT).
    pub fn keep_log(&mut self) {
        self.log = Some(Vec::new());
    }

    /// The messages since the last call, in arrival order (empty without [`keep_log`]).
    pub fn take_log(&mut self) -> Vec<Logged> {
        self.log_bytes = 0;
        self.log.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Messages wait in the log.
    pub fn has_log(&self) -> bool {
        self.log.as_ref().is_some_and(|l| !l.is_empty())
    }

    /// The MIDI port connected to now ("" when none).
    pub fn port_name(&self) -> String {
        self.shared
            .port
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    fn record(&mut self, m: Logged) {
        let Some(log) = &mut self.log else { return };
        let bytes = match &m {
            Logged::Sysex(b) => b.len(),
            _ => 3,
        };
        if log.len() >= LOG_MAX || self.log_bytes + bytes > LOG_BYTES {
            self.log_dropped += 1;
            return;
        }
        self.log_bytes += bytes;
        log.push(m);
    }

    /// A clock, transport or timecode message.
    fn system(&mut self, s: Sys, t: u64) {
        let seen = (self.clock.seen, self.mtc.seen);
        match s {
            Sys::QuarterFrame(d) => self.mtc.quarter(d),
            _ => {
                self.clock.on(s, t);
            }
        }
        if seen != (self.clock.seen, self.mtc.seen) {
            self.layout_changed = true;
        }
        self.sync_changed = true;
        self.record(Logged::Sys(s));
    }

    /// Takes the SysEx tagged `seq` out of the ring (and the ones before it whose notice the
    /// full queue lost).
    fn sysex(&mut self, seq: u32) {
        let mut got: Option<Vec<u8>> = None;
        let mut full = None;
        let keep = self.log.is_some();
        loop {
            let mut found = false;
            let popped = self.sysex_rx.pop_with(|m| {
                if m.len() >= 4 && u32::from_le_bytes([m[0], m[1], m[2], m[3]]) == seq {
                    found = true;
                    full = sync::full_frame(&m[4..]);
                    if keep {
                        got = Some(m[4..].to_vec());
                    }
                }
                true
            });
            if found || popped.is_none() {
                break;
            }
        }
        if let Some(f) = full {
            let seen = self.mtc.seen;
            self.mtc.full(f);
            self.layout_changed |= !seen;
            self.sync_changed = true;
        }
        if let Some(b) = got {
            self.record(Logged::Sysex(b));
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn connected(&self) -> bool {
        self.shared.connected.load(Relaxed)
    }

    /// Folds one event; public so tests (and benchmarks) can drive the operator without a port.
    pub fn fold(&mut self, ev: Event) {
        self.folded += 1;
        if self.log.is_some() {
            // The DAT keeps messages, not channels.
            if self.mapper.accepts(ev) {
                self.record(Logged::Voice(ev));
            }
            return;
        }
        if let Some(u) = self.mapper.map(ev) {
            if u.chan >= self.values.len() {
                // A new channel: it starts at rest (its first update follows at once).
                self.values.push(self.mapper.rest_value(u.chan));
                self.rest.push(true);
                self.peak.push(None);
                self.layout_changed = true;
            }
            self.pending.push(u);
        }
    }

    /// Held notes can never receive their note-off once the device is gone.
    fn release_notes(&mut self) {
        for i in 0..self.values.len() {
            if self.mapper.is_note(i) && !self.rest[i] {
                self.pending.push(Update {
                    chan: i,
                    value: self.mapper.rest_value(i),
                    rest: true,
                });
            }
        }
    }

    fn drain(&mut self) {
        self.dropped_out = false;
        // At most a full queue per frame, so a sender as fast as this loop cannot hold it.
        for _ in 0..QUEUE {
            let Ok(w) = self.queue.try_recv() else { break };
            match w {
                Wire::Midi(ev) => self.fold(ev),
                Wire::Sys(s, t) => self.system(s, t),
                Wire::Sysex(seq) => self.sysex(seq),
                Wire::Disconnected => {
                    self.dropped_out = true;
                    self.release_notes();
                    self.clock.restart_tempo();
                    self.mtc.restart();
                }
            }
        }
        if !self.sysex_drop_logged && self.shared.sysex_dropped.load(Relaxed) > 0 {
            self.sysex_drop_logged = true;
            tracing::warn!(op = %self.name, "midiin \"{}\": a SysEx was dropped: longer than {SYSEX_MAX} bytes, cut short by another message before its end byte (F7), or cut off by the device going away; later ones are only counted (sysex_dropped)", self.name);
        }
    }
}

/// Scanner threads, so that [`close_all`] can wait for them at exit. A dropped operator's
/// scanner closes its MIDI clients on its own thread (closing a JACK client takes a server round
/// trip: the cook thread must not wait for it).
static SCANNERS: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());

pub(crate) fn register_thread(thread: JoinHandle<()>) {
    // A poisoned lock only means a panic elsewhere while pushing; the list is still usable.
    let mut list = SCANNERS.lock().unwrap_or_else(|e| e.into_inner());
    list.retain(|t| !t.is_finished());
    list.push(thread);
}

/// Waits (at most `timeout`) for the scanner threads of dropped operators to close their MIDI
/// clients. Call at exit, after the graph is dropped: a process that exits with JACK clients
/// open leaves the server to find them dead, which disturbs every other client for a while.
pub fn close_all(timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let threads: Vec<JoinHandle<()>> =
        std::mem::take(&mut *SCANNERS.lock().unwrap_or_else(|e| e.into_inner()));
    for t in threads {
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if t.is_finished() {
            let _ = t.join();
        }
    }
}

impl Operator for MidiInOp {
    fn wants_cook(&mut self, frame: &Frame, _nodes: &[NodeState]) -> bool {
        self.drain();
        !self.pending.is_empty()
            || self.layout_changed
            || (!self.pulsing.is_empty() && !frame.is_reaction())
            || self.sync_changed
    }

    /// A time-sliced MIDI In lays its samples on the frame's time slice: it folds at frames.
    fn time_dependent(&self) -> bool {
        self.timeslice
    }

    fn cook(&mut self, ctx: &mut CookCtx, out: &mut ChopData) -> Result<(), CookError> {
        self.cook_frame(ctx.frame, out);
        Ok(())
    }

    fn extras(&self, out: &mut Vec<(&'static str, f64)>) {
        let s = &self.shared;
        let f = |a: &AtomicU64| a.load(Relaxed) as f64;
        out.extend([
            (
                "connected",
                f64::from(u8::from(s.connected.load(Relaxed) && !self.dropped_out)),
            ),
            (
                "midi_available",
                f64::from(u8::from(s.available.load(Relaxed))),
            ),
            ("messages", f(&s.messages)),
            ("dropped", f(&s.dropped)),
            ("ignored", f(&s.ignored)),
            ("filtered", self.mapper.filtered as f64),
            ("connects", f(&s.connects)),
            ("reconnects", f(&s.reconnects)),
            ("matches", f(&s.matches)),
            ("slice_drops", self.slices.dropped as f64),
            ("sysex_in", f(&s.sysex_in)),
            ("sysex_dropped", f(&s.sysex_dropped)),
            ("clock_ticks", self.clock.ticks as f64),
            ("mtc_quarter_frames", self.mtc.quarter_frames as f64),
        ]);
    }

    /// The MIDI In CHOP's pulses, as TouchDesigner names them.
    fn par_defs(&self) -> Vec<crate::cook::par::ParDef> {
        use crate::cook::par::ParDef;
        vec![
            ParDef::pulse("resetchannels", "MIDI").label("Reset Channels"),
            ParDef::pulse("resetvalues", "MIDI").label("Reset Values"),
        ]
    }

    fn pulse_par(&mut self, name: &str) -> Result<(), String> {
        match name {
            "reset_channels" | "resetchannels" => self.reset(),
            "reset_values" | "resetvalues" => {
                for i in 0..self.values.len() {
                    // Back to each channel's resting value (raw 0; the pitch wheel's centre).
                    self.pending.push(Update {
                        chan: i,
                        value: self.mapper.rest_value(i),
                        rest: true,
                    });
                }
            }
            other => {
                return Err(format!(
                    "midiin has no pulse \"{other}\" (reset_channels, reset_values)"
                ))
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.mapper.reset();
        self.values.clear();
        self.rest.clear();
        self.peak.clear();
        self.pending.clear();
        self.slices.clear();
        self.slices.reset();
        self.pulsing.clear();
        self.layout_changed = true;
    }
}

impl MidiInOp {
    /// The cook proper, on a [`Frame`] alone (what unit tests drive).
    pub fn cook_frame(&mut self, frame: &Frame, out: &mut ChopData) {
        let step = frame.step.max(1) as usize;
        let sliced_queue = self.queued && self.timeslice;
        if sliced_queue {
            self.slices.set_cap(max_samples(self.max_slice, frame.rate));
            for u in &self.pending {
                self.slices.push(u.chan, u.value);
                self.rest[u.chan] = u.rest;
            }
        }
        let len = match (self.timeslice, sliced_queue) {
            (false, _) => 1,
            (true, false) => step,
            (true, true) => self.slices.slice_len(step),
        };

        let names = self.mapper.names();
        let sync: Vec<&str> = self.sync_names().collect();
        let n = names.len();
        let same = out.num_chans() == n + sync.len()
            && out.names()[..n] == *names
            && out.names()[n..].iter().zip(&sync).all(|(a, b)| a == b);
        if !same {
            out.clear();
            for c in names.iter().map(String::as_str).chain(sync.iter().copied()) {
                out.append_chan(c);
            }
        }
        out.rate = frame.rate;
        out.set_num_samples(len);
        out.start = frame.frame - len as i64 + 1;

        // Pulses shown at the last frame rest now (their values already hold the resting
        // value). One a reaction showed holds until the next frame, so the operators that cook
        // on the clock see it too.
        if !frame.is_reaction() {
            self.pulsing.clear();
        }

        if sliced_queue {
            // Queued: the previous value over the slice, then every message as one sample.
            self.slices.lay(out, &mut self.values);
        } else {
            for u in &self.pending {
                let i = u.chan;
                // Track a pulse from its onset (rest → raised) within this frame on.
                if !u.rest && (self.rest[i] || self.peak[i].is_some()) {
                    self.peak[i] = Some(u.value);
                }
                self.values[i] = u.value;
                self.rest[i] = u.rest;
            }
            for (i, v) in self.values.iter().enumerate() {
                out.chan_mut(i).fill(*v);
            }
            // A held pulse gives way to a newer message on its channel.
            let pending = &self.pending;
            self.pulsing
                .retain(|(i, _)| !pending.iter().any(|u| u.chan == *i));
            for &(i, p) in &self.pulsing {
                out.chan_mut(i).fill(p);
            }
            for k in 0..self.pending.len() {
                let i = self.pending[k].chan;
                if let Some(p) = self.peak[i].take() {
                    if self.preserve_pulses && self.rest[i] {
                        out.chan_mut(i).fill(p);
                        self.pulsing.push((i, p));
                    }
                }
            }
        }
        // The clock and timecode channels hold their value over the slice.
        let mut k = n;
        if self.clock.seen {
            for v in self.clock.values() {
                out.chan_mut(k).fill(v);
                k += 1;
            }
        }
        if self.mtc.seen {
            for v in self.mtc.values() {
                out.chan_mut(k).fill(v);
                k += 1;
            }
        }
        self.pending.clear();
        self.layout_changed = false;
        self.sync_changed = false;
    }

    /// The names of the clock and timecode channels there are (after the MIDI channels).
    fn sync_names(&self) -> impl Iterator<Item = &'static str> {
        let clock = if self.clock.seen { &CLOCK_CHANNELS[..] } else { &[] };
        let mtc = if self.mtc.seen { &MTC_CHANNELS[..] } else { &[] };
        clock.iter().chain(mtc).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::MidiNorm;
    use crate::pattern::Pattern;

    fn cfg() -> MidiInConfig {
        MidiInConfig {
            device: Pattern::new("chopd-unit-test-no-such-port").unwrap(),
            ..MidiInConfig::default()
        }
    }

    /// An operator with no MIDI system behind it: only the queue side is exercised.
    fn op(cfg: &MidiInConfig, timeslice: bool) -> MidiInOp {
        let (_tx, rx) = mpsc::sync_channel(4);
        let (stop, _) = mpsc::sync_channel(1);
        let (_, sysex) = ring::ring(64);
        MidiInOp::with_queue(
            "m",
            timeslice,
            cfg,
            (rx, sysex),
            Arc::new(PortState::default()),
            stop,
            Duration::from_millis(200),
        )
    }

    struct Run {
        op: MidiInOp,
        out: ChopData,
        frame: i64,
    }

    impl Run {
        fn new(cfg: &MidiInConfig, timeslice: bool) -> Run {
            Run {
                op: op(cfg, timeslice),
                out: ChopData::new(60.0),
                frame: 0,
            }
        }

        /// Feeds `bytes`, then runs a frame of `step`; returns whether it cooked.
        fn frame(&mut self, bytes: &[u8], step: i64) -> bool {
            let mut p = StreamParser::new();
            let mut evs = Vec::new();
            p.feed(bytes, |e| evs.push(e));
            for e in evs {
                self.op.fold(e);
            }
            self.frame += step;
            let now = Instant::now();
            let f = Frame {
                frame: self.frame,
                step,
                rate: 60.0,
                due: now,
                started: now,
            };
            let nodes: Vec<NodeState> = Vec::new();
            let cook = self.op.wants_cook(&f, &nodes);
            if cook {
                self.op.cook_frame(&f, &mut self.out);
            }
            cook
        }

        fn get(&self, name: &str) -> Vec<f32> {
            self.out
                .chan_by_name(name)
                .map(<[f32]>::to_vec)
                .unwrap_or_default()
        }
    }

    #[test]
    fn clock_and_timecode_channels_follow_the_midi_ones() {
        let mut r = Run::new(&cfg(), false);
        r.op.system(Sys::Start, 0);
        for k in 0..25u64 {
            r.op.system(Sys::Clock, 1_000_000 + k * 20_833);
        }
        assert!(r.frame(&[0xB0, 7, 127], 1));
        let names: Vec<&str> = r.out.names().iter().map(String::as_str).collect();
        assert_eq!(names, ["ch1c7", "running", "bpm", "beat", "bar", "songposition"]);
        assert_eq!(r.get("running"), [1.0]);
        assert!((r.get("bpm")[0] - 120.0).abs() < 0.01);
        assert_eq!(r.get("beat"), [2.0]);
        assert!(!r.frame(&[], 1), "nothing new: no cook");
        r.op.system(Sys::QuarterFrame(0x05), 0);
        assert!(r.frame(&[], 1));
        assert_eq!(r.out.num_chans(), 12);
        assert_eq!(r.get("fps"), [30.0]);
        assert_eq!(r.get("timecode"), [0.0], "no whole time yet");
    }

    #[test]
    fn note_held_then_released() {
        let mut r = Run::new(&cfg(), false);
        assert!(r.frame(&[0x90, 60, 127], 1));
        assert_eq!(r.get("ch1n60"), [1.0]);
        assert!(!r.frame(&[], 1), "nothing new: no cook");
        assert!(r.frame(&[0x80, 60, 0], 1));
        assert_eq!(r.get("ch1n60"), [0.0]);
    }

    #[test]
    fn pulse_within_one_frame_shows_for_one_frame() {
        let mut r = Run::new(&cfg(), false);
        assert!(r.frame(&[0x90, 60, 127, 0x90, 60, 0], 1));
        assert_eq!(r.get("ch1n60"), [1.0]);
        assert!(r.frame(&[], 1), "the pulse's end cooks the next frame");
        assert_eq!(r.get("ch1n60"), [0.0]);
        assert!(!r.frame(&[], 1));
        // Controllers pulse too (a button sending 127 then 0).
        assert!(r.frame(&[0xB0, 20, 127, 0xB0, 20, 0], 1));
        assert_eq!(r.get("ch1c20"), [1.0]);
        r.frame(&[], 1);
        assert_eq!(r.get("ch1c20"), [0.0]);
    }

    /// Between frames (`react = true`) a pulse shows at once and holds until the next frame,
    /// so operators that cook on the clock see it too; a newer message on its channel wins.
    #[test]
    fn a_pulse_a_reaction_showed_holds_until_the_next_frame() {
        let mut r = Run::new(&cfg(), false);
        r.frame(&[0xB0, 7, 0], 1);
        assert!(r.frame(&[0x90, 60, 127, 0x90, 60, 0, 0x90, 62, 127, 0x90, 62, 0], 0));
        assert_eq!(r.get("ch1n60"), [1.0]);
        // Other MIDI in a later reaction: the pulses still show, one of them ends by a note.
        assert!(r.frame(&[0xB0, 7, 127, 0x90, 62, 64], 0));
        assert_eq!(r.get("ch1c7"), [1.0]);
        assert_eq!(r.get("ch1n60"), [1.0]);
        assert_eq!(r.get("ch1n62"), [64.0 / 127.0]);
        // Nothing new: a reaction does not cook for the held pulse.
        assert!(!r.frame(&[], 0));
        assert!(r.frame(&[], 1), "the pulse's end cooks the next frame");
        assert_eq!(r.get("ch1n60"), [0.0]);
        assert_eq!(r.get("ch1n62"), [64.0 / 127.0]);
        assert!(!r.frame(&[], 1));
    }

    #[test]
    fn pulse_shows_the_last_raised_value() {
        let mut r = Run::new(&cfg(), false);
        r.frame(
            &[
                0x90,
                60,
                127,
                0x80,
                60,
                0,
                0x90,
                60,
                127 / 2 + 1,
                0x80,
                60,
                0,
            ],
            1,
        );
        assert_eq!(r.get("ch1n60"), [64.0 / 127.0]);
    }

    #[test]
    fn without_preserve_pulses_a_short_note_vanishes() {
        let mut c = cfg();
        c.preserve_pulses = false;
        let mut r = Run::new(&c, false);
        r.frame(&[0x90, 60, 127, 0x90, 60, 0], 1);
        assert_eq!(r.get("ch1n60"), [0.0]);
        assert!(!r.frame(&[], 1));
    }

    #[test]
    fn a_note_on_after_a_pulse_is_not_cut() {
        let mut r = Run::new(&cfg(), false);
        r.frame(&[0x90, 60, 127, 0x90, 60, 0], 1);
        r.frame(&[0x90, 60, 127], 1);
        assert_eq!(r.get("ch1n60"), [1.0]);
        r.frame(&[], 1);
        assert_eq!(r.get("ch1n60"), [1.0]);
    }

    #[test]
    fn latest_wins_without_queue() {
        let mut r = Run::new(&cfg(), true);
        r.frame(&[0xB0, 7, 10, 0xB0, 7, 20, 0xB0, 7, 127], 1);
        assert_eq!(r.get("ch1c7"), [1.0]);
        // A slice of 3 frames holds the value over the whole span.
        r.frame(&[0xB0, 7, 0], 3);
        assert_eq!(r.get("ch1c7"), [0.0; 3]);
        assert_eq!(r.out.start, r.frame - 2);
    }

    #[test]
    fn queued_timeslice_keeps_every_message() {
        let mut c = cfg();
        c.queued = true;
        c.norm = MidiNorm::Off;
        let mut r = Run::new(&c, true);
        r.frame(&[0xB0, 7, 1], 1);
        assert_eq!(r.get("ch1c7"), [1.0]);
        r.frame(&[0xB0, 7, 2, 0xB0, 7, 3, 0xB0, 7, 4, 0xB0, 8, 9], 1);
        assert_eq!(r.out.num_samples(), 3);
        assert_eq!(r.get("ch1c7"), [2.0, 3.0, 4.0]);
        // Fewer messages than samples: the previous value first.
        assert_eq!(r.get("ch1c8"), [0.0, 0.0, 9.0]);
        // A note on and off both appear; the pulse logic stays out of the way.
        r.frame(&[0x90, 1, 100, 0x80, 1, 0], 1);
        assert_eq!(r.get("ch1n1"), [100.0, 0.0]);
        assert!(!r.frame(&[], 1));
    }

    /// A burst on one controller made every channel's slice as long as the burst.
    #[test]
    fn a_queued_burst_is_bounded_by_max_slice() {
        let mut c = cfg();
        c.queued = true;
        c.norm = MidiNorm::Off;
        let mut r = Run::new(&c, true);
        r.frame(&[0xB0, 8, 9], 1);
        let mut burst = Vec::new();
        for v in 0..3000u32 {
            burst.extend_from_slice(&[0xB0, 7, (v % 128) as u8]);
        }
        r.frame(&burst, 1);
        // 200 ms at 60 fps; the newest messages, and the other channel holds.
        assert_eq!(r.out.num_samples(), 12);
        let newest: Vec<f32> = (2988..3000).map(|v| (v % 128) as f32).collect();
        assert_eq!(r.get("ch1c7"), newest);
        assert_eq!(r.get("ch1c8"), [9.0; 12]);
        let mut ex = Vec::new();
        r.op.extras(&mut ex);
        assert!(ex.contains(&("slice_drops", 2988.0)), "{ex:?}");
    }

    #[test]
    fn queued_without_timeslice_is_one_sample() {
        let mut c = cfg();
        c.queued = true;
        let mut r = Run::new(&c, false);
        r.frame(&[0xB0, 7, 0, 0xB0, 7, 127], 1);
        assert_eq!(r.get("ch1c7"), [1.0]);
    }

    #[test]
    fn channels_appear_in_arrival_order() {
        let mut r = Run::new(&cfg(), false);
        r.frame(&[0xE0, 0, 0x40, 0x91, 3, 3], 1);
        assert_eq!(r.out.names(), ["ch1pw", "ch2n3"]);
        r.frame(&[0xB0, 1, 1], 1);
        assert_eq!(r.out.names(), ["ch1pw", "ch2n3", "ch1c1"]);
        assert_eq!(r.get("ch1pw"), [0.0]);
    }

    #[test]
    fn disconnect_releases_held_notes_only() {
        let mut r = Run::new(&cfg(), false);
        r.frame(&[0x90, 60, 127, 0xB0, 7, 127], 1);
        r.op.release_notes();
        r.frame(&[], 1);
        assert_eq!(r.get("ch1n60"), [0.0]);
        assert_eq!(r.get("ch1c7"), [1.0]);
    }

    #[test]
    fn reset_channels_and_values() {
        let mut r = Run::new(&cfg(), false);
        r.frame(&[0xB0, 7, 127], 1);
        r.op.pulse_par("reset_values").unwrap();
        assert!(r.frame(&[], 1));
        assert_eq!(r.get("ch1c7"), [0.0]);
        r.op.reset();
        assert!(r.frame(&[], 1));
        assert_eq!(r.out.num_chans(), 0);
        assert!(r.op.pulse_par("nope").is_err());
    }

    #[test]
    fn minus_one_to_one_notes_rest_at_minus_one() {
        let mut c = cfg();
        c.norm = MidiNorm::MinusOneToOne;
        let mut r = Run::new(&c, false);
        r.frame(&[0x90, 60, 127], 1);
        assert_eq!(r.get("ch1n60"), [1.0]);
        r.frame(&[0x80, 60, 0], 1);
        assert_eq!(r.get("ch1n60"), [-1.0]);
    }

    /// Without a MIDI system (no /dev/snd/seq here, or no JACK server) an optional operator
    /// starts disconnected and a required one refuses to start.
    #[test]
    fn missing_device() {
        let oc = OperatorConfig {
            name: "m".into(),
            inputs: Vec::new(),
            timeslice: false,
            scope: Pattern::all(),
            srselect: Default::default(),
            export: None,
            kind: "midiin",
            reads: Vec::new(),
            settings: std::sync::Arc::new(cfg()),
        };
        let m = MidiInOp::new(&oc, &cfg(), Duration::from_millis(200), None).unwrap();
        assert!(!m.connected());
        let mut ex = Vec::new();
        m.extras(&mut ex);
        assert!(ex.contains(&("connected", 0.0)));
        let mut c = cfg();
        c.required = true;
        let err = MidiInOp::new(&oc, &c, Duration::from_millis(200), None)
            .err()
            .unwrap();
        assert!(err.starts_with("midiin \"m\" is required: "), "{err}");
    }
}
