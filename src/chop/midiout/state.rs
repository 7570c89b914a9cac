//! What the cook thread, a sender's thread and JACK's process callback share: the counters
//! and switches of one MIDI sender, and the MIDI clock master that the callback (or the ALSA
//! thread) advances.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

/// Counters and state shared by the cook thread, the sender thread and JACK's callback.
#[derive(Debug, Default)]
pub struct OutState {
    pub connected: AtomicBool,
    pub available: AtomicBool,
    /// Messages handed to the device (SysEx included).
    pub messages: AtomicU64,
    pub sysex_out: AtomicU64,
    /// Messages not queued: the queue was full.
    pub dropped: AtomicU64,
    /// Messages that can never be sent: longer than the queue or a JACK period's buffer.
    pub too_long: AtomicU64,
    pub clock_ticks: AtomicU64,
    pub connects: AtomicU64,
    pub reconnects: AtomicU64,
    pub matches: AtomicU64,
    /// MIDI clock master: on, and its tempo (f32 bits).
    pub clock_on: AtomicBool,
    pub bpm: AtomicU32,
}

impl OutState {
    pub fn count_sent(&self, m: &[u8]) {
        self.messages.fetch_add(1, Relaxed);
        if m.first() == Some(&0xF0) {
            self.sysex_out.fetch_add(1, Relaxed);
        }
    }
}

/// The MIDI clock as master: 24 ticks per quarter note, start when it is switched on and stop
/// when it is switched off. Advanced per JACK period (`rate` = sample rate, `n` = frames) or, on
/// the ALSA thread, per span of microseconds.
#[derive(Debug, Default)]
pub struct Clock {
    running: bool,
    /// Time units until the next tick.
    phase: f64,
}

impl Clock {
    pub fn running(&self) -> bool {
        self.running
    }

    /// The start (0xFA) or stop (0xFC) due at the span's start, and the offsets of the ticks in
    /// it (at most `ticks.len()`).
    pub fn period(
        &mut self,
        shared: &OutState,
        rate: f64,
        n: u32,
        ticks: &mut [u32],
    ) -> (Option<u8>, usize) {
        let on = shared.clock_on.load(Relaxed);
        let mut edge = None;
        if on != self.running {
            self.running = on;
            self.phase = 0.0;
            edge = Some(if on { 0xFA } else { 0xFC });
        }
        if !on {
            return (edge, 0);
        }
        let bpm = f64::from(f32::from_bits(shared.bpm.load(Relaxed))).clamp(BPM.0, BPM.1);
        let step = rate * 60.0 / (bpm * 24.0);
        let mut k = 0;
        while self.phase < f64::from(n) && k < ticks.len() {
            ticks[k] = self.phase as u32;
            k += 1;
            self.phase += step;
        }
        // A stall longer than `ticks` holds is not made up for with a burst.
        self.phase = (self.phase - f64::from(n)).max(0.0);
        (edge, k)
    }
}

/// The clock master's tempo range.
pub const BPM: (f64, f64) = (1.0, 999.0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_ticks_24_per_beat_and_starts_and_stops() {
        let s = OutState::default();
        s.bpm.store(120f32.to_bits(), Relaxed);
        let mut c = Clock::default();
        let mut ticks = [0u32; 32];
        assert_eq!(c.period(&s, 48000.0, 64, &mut ticks), (None, 0));
        s.clock_on.store(true, Relaxed);
        // 120 bpm: 48 ticks a second, one every 1000 frames at 48 kHz.
        let mut total = 0;
        let mut edges = Vec::new();
        for _ in 0..750 {
            let (e, n) = c.period(&s, 48000.0, 64, &mut ticks);
            edges.extend(e);
            total += n;
        }
        assert_eq!(edges, [0xFA]);
        assert_eq!(total, 48);
        s.clock_on.store(false, Relaxed);
        assert_eq!(c.period(&s, 48000.0, 64, &mut ticks), (Some(0xFC), 0));
    }
}
