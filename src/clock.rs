//! The frame clock: frame n is due at `t0 + n / rate` on the monotonic clock (absolute
//! deadlines, so no drift). It sleeps until shortly before the deadline and spins the rest
//! (p99 lateness under 10 µs at 1 kHz this way, about 80 µs with sleep alone: docs/platform.md). How long it
//! spins adapts to how late this machine's sleeps wake up (see `Spin`), so an idle daemon does
//! not burn a fixed 200 µs per frame, and it is left out when the caller says the frames' exact
//! time does not matter ([`Clock::set_precise`]). Frames the caller was too late for are dropped and
//! reported as a step > 1, never replayed.
//!
//! Owns timing only; it knows nothing of operators.

use std::time::{Duration, Instant};

use crate::wake::Wake;

/// How long before a deadline sleeping stops and spinning starts, at first and at most. Linux
/// wakes ~50–80 µs late with the default timer slack; 200 µs covers that with margin
/// (docs/platform.md). Waiting longer for rare multi-ms VM hiccups would cost far more CPU than the
/// frames it saves: those show in the lateness statistics instead.
const SPIN_MAX: Duration = Duration::from_micros(200);
/// Floor of the adaptive spin, and the margin kept above the typical wake-up delay.
const SPIN_MIN: Duration = Duration::from_micros(40);
const SPIN_MARGIN: Duration = Duration::from_micros(30);
/// Wake-up delays per adaptation window (about one second at 60 fps).
const SPIN_WINDOW: usize = 64;

/// Longest single sleep, so a stop request is seen quickly even at `rate = 1`.
const MAX_SLEEP: Duration = Duration::from_millis(20);

/// Lateness samples kept for percentiles (about 4 s at 1 kHz, a minute at 60 Hz).
const WINDOW: usize = 4096;

pub struct Clock {
    rate: f64,
    t0: Instant,
    /// Last frame handed out.
    frame: i64,
    dropped: u64,
    lateness: Lateness,
    spin: Spin,
    /// Whether frames are worth the spin (see [`Clock::set_precise`]).
    precise: bool,
}

/// The adaptive spin: after each final sleep before a deadline, how late the sleep woke is
/// recorded; once per window the spin becomes the window's 90th percentile plus a margin,
/// between `SPIN_MIN` and `SPIN_MAX`. On a quiet machine it settles near 80–120 µs, so an idle
/// daemon at 60 fps spins about half as long as with the fixed 200 µs.
struct Spin {
    now: Duration,
    window: Vec<Duration>,
}

impl Spin {
    fn new() -> Spin {
        Spin {
            now: SPIN_MAX,
            window: Vec::with_capacity(SPIN_WINDOW),
        }
    }

    fn record(&mut self, overshoot: Duration) {
        self.window.push(overshoot);
        if self.window.len() == SPIN_WINDOW {
            self.window.sort_unstable();
            let p90 = self.window[SPIN_WINDOW * 9 / 10];
            self.now = (p90 + SPIN_MARGIN).clamp(SPIN_MIN, SPIN_MAX);
            self.window.clear();
        }
    }
}

/// What ended a wait: the next frame is due, or input arrived before it (see [`Clock::wait_for`]).
#[derive(Clone, Copy, Debug)]
pub enum Woke {
    Frame(Tick),
    Input,
}

/// One due frame.
#[derive(Clone, Copy, Debug)]
pub struct Tick {
    pub frame: i64,
    /// Frames since the previous tick (1, or more after dropped frames).
    pub step: i64,
    pub due: Instant,
    /// How late the wake-up was.
    pub late: Duration,
}

impl Clock {
    pub fn new(rate: f64) -> Clock {
        // Ask the kernel for precise sleeps; harmless if refused.
        // SAFETY: prctl(PR_SET_TIMERSLACK) takes plain integers and touches only this thread.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
        }
        Clock {
            rate,
            t0: Instant::now(),
            frame: 0,
            dropped: 0,
            lateness: Lateness::default(),
            spin: Spin::new(),
            precise: true,
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Changes the rate from the next frame on, keeping frame numbers continuous.
    pub fn set_rate(&mut self, rate: f64) {
        if rate == self.rate {
            return;
        }
        // Re-anchor so that the current frame's deadline stays where it is.
        let now_due = self.due(self.frame);
        self.rate = rate;
        self.t0 = now_due - Duration::from_secs_f64(self.frame as f64 / rate);
    }

    /// Whether the next frames are worth spinning for (the default). Without the spin a
    /// frame starts when the kernel wakes the thread, tens of µs after its deadline on an idle
    /// machine, and costs that much less CPU: the right trade when nothing on the frame
    /// depends on its exact time (see the engine).
    pub fn set_precise(&mut self, on: bool) {
        self.precise = on;
    }

    fn due(&self, frame: i64) -> Instant {
        self.t0 + Duration::from_secs_f64(frame as f64 / self.rate)
    }

    /// Waits for the next frame, or returns at once with a step > 1 when frames were missed.
    /// `keep_waiting` is polled between sleeps; returning false abandons the wait (`None`).
    pub fn wait(&mut self, keep_waiting: impl FnMut() -> bool) -> Option<Tick> {
        match self.wait_for(keep_waiting, None) {
            Some(Woke::Frame(t)) => Some(t),
            Some(Woke::Input) | None => None,
        }
    }

    /// [`Clock::wait`], but with `wake` the sleep before the deadline also ends when input
    /// arrives (`Woke::Input`; the frame is still to come: call again). Input that arrives
    /// within the final spin before the deadline waits for the frame.
    pub fn wait_for(
        &mut self,
        mut keep_waiting: impl FnMut() -> bool,
        wake: Option<&Wake>,
    ) -> Option<Woke> {
        let next = self.frame + 1;
        let mut due = self.due(next);
        let mut now = Instant::now();
        let spin = self.final_spin();
        if now < due {
            loop {
                let left = due.saturating_duration_since(now);
                if left <= spin {
                    break;
                }
                let nap = (left - spin).min(MAX_SLEEP);
                let woken_at = now + nap;
                let input = match wake {
                    Some(w) => w.sleep(nap),
                    None => {
                        std::thread::sleep(nap);
                        false
                    }
                };
                if input {
                    return Some(Woke::Input);
                }
                now = Instant::now();
                if nap < MAX_SLEEP {
                    // The final approach: how late did the kernel wake us?
                    self.spin.record(now.saturating_duration_since(woken_at));
                }
                if !keep_waiting() {
                    return None;
                }
            }
            while Instant::now() < due {
                std::hint::spin_loop();
            }
            now = Instant::now();
        }
        // The newest frame that is due now; anything between was missed.
        let elapsed = now.saturating_duration_since(self.t0).as_secs_f64();
        let newest = ((elapsed * self.rate).floor() as i64).max(next);
        if newest > next {
            due = self.due(newest);
            self.dropped += (newest - next) as u64;
        }
        let step = newest - self.frame;
        self.frame = newest;
        let late = now.saturating_duration_since(due);
        // The statistics measure against the frame that was next, so a stall shows as the
        // stall it was (tens of ms), not as the sub-frame lateness of the newest frame.
        self.lateness
            .push(now.saturating_duration_since(self.due(next)));
        Some(Woke::Frame(Tick {
            frame: newest,
            step,
            due,
            late,
        }))
    }

    /// When the next frame is due.
    pub fn next_due(&self) -> Instant {
        self.due(self.frame + 1)
    }

    /// Until when input may still be taken before the next frame: its deadline less the final
    /// spin ([`Clock::wait_for`] leaves what arrives after that to the frame).
    pub fn listen_until(&self) -> Instant {
        self.next_due() - self.final_spin()
    }

    /// How long before a deadline the wait stops sleeping and spins.
    fn final_spin(&self) -> Duration {
        if self.precise {
            self.spin.now
        } else {
            Duration::ZERO
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The current spin before each deadline.
    pub fn spin(&self) -> Duration {
        self.spin.now
    }

    pub fn lateness(&mut self) -> LatenessSummary {
        self.lateness.summary()
    }
}

/// Rolling lateness window plus an all-time maximum.
#[derive(Default)]
struct Lateness {
    ring: Vec<u32>,
    next: usize,
    max_us: u32,
    sorted: Vec<u32>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LatenessSummary {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Lateness {
    fn push(&mut self, late: Duration) {
        let us = late.as_micros().min(u32::MAX as u128) as u32;
        self.max_us = self.max_us.max(us);
        if self.ring.len() < WINDOW {
            self.ring.push(us);
        } else {
            self.ring[self.next] = us;
        }
        self.next = (self.next + 1) % WINDOW;
    }

    fn summary(&mut self) -> LatenessSummary {
        if self.ring.is_empty() {
            return LatenessSummary::default();
        }
        self.sorted.clone_from(&self.ring);
        self.sorted.sort_unstable();
        let pick = |q: f64| {
            let i = ((self.sorted.len() - 1) as f64 * q).round() as usize;
            Duration::from_micros(self.sorted[i] as u64)
        };
        LatenessSummary {
            p50: pick(0.5),
            p99: pick(0.99),
            max: Duration::from_micros(self.max_us as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_advance_and_steps_add_up() {
        let mut c = Clock::new(1000.0);
        let a = c.wait(|| true).unwrap();
        let b = c.wait(|| true).unwrap();
        // Frame 1 comes first unless this thread was held up (a loaded machine): then the
        // frames it missed are in the step, never replayed.
        assert_eq!(a.frame, a.step);
        assert!(a.frame >= 1);
        assert_eq!(b.frame, a.frame + b.step);
        assert!(b.due > a.due);
    }

    #[test]
    fn missed_frames_become_one_step() {
        let mut c = Clock::new(1000.0);
        c.wait(|| true).unwrap();
        // The first wait may itself have dropped frames on a loaded machine: count from here.
        let before = c.dropped();
        std::thread::sleep(Duration::from_millis(30));
        let t = c.wait(|| true).unwrap();
        assert!(t.step >= 20, "step {}", t.step);
        assert_eq!(c.dropped() - before, (t.step - 1) as u64);
        // The deadline handed out is the newest due frame's, so lateness stays under a frame…
        assert!(t.late < Duration::from_millis(1), "late {:?}", t.late);
        // …while the statistics show the stall.
        assert!(c.lateness().max >= Duration::from_millis(20));
    }

    #[test]
    fn input_is_taken_until_the_final_spin_or_the_deadline_without_one() {
        let mut c = Clock::new(60.0);
        assert_eq!(c.listen_until(), c.next_due() - c.spin());
        assert!(c.spin() > Duration::ZERO);
        c.set_precise(false);
        assert_eq!(c.listen_until(), c.next_due());
    }

    #[test]
    fn without_the_spin_a_frame_is_still_never_early() {
        let mut c = Clock::new(500.0);
        c.set_precise(false);
        let mut last = 0;
        for _ in 0..20 {
            let t = c.wait(|| true).unwrap();
            assert!(Instant::now() >= t.due);
            assert!(t.frame > last);
            last = t.frame;
        }
    }

    #[test]
    fn spin_follows_the_90th_percentile_of_wake_up_delays() {
        let us = Duration::from_micros;
        let mut s = Spin::new();
        assert_eq!(s.now, SPIN_MAX);
        // 60 quiet wake-ups and 4 hiccups: the hiccups are above the 90th percentile.
        for k in 0..SPIN_WINDOW {
            s.record(if k % 16 == 0 { us(3000) } else { us(50) });
        }
        assert_eq!(s.now, us(80));
        // Never below the floor, never above the ceiling.
        for _ in 0..SPIN_WINDOW {
            s.record(Duration::ZERO);
        }
        assert_eq!(s.now, SPIN_MIN);
        for _ in 0..SPIN_WINDOW {
            s.record(Duration::from_secs(1));
        }
        assert_eq!(s.now, SPIN_MAX);
    }

    #[test]
    fn input_ends_the_wait_before_the_frame() {
        let mut c = Clock::new(1.0);
        let w = Wake::new();
        w.notify();
        assert!(matches!(c.wait_for(|| true, Some(&w)), Some(Woke::Input)));
        // The frame is still to come: the next wait hands out frame 1.
        let next = c.next_due();
        match c.wait_for(|| true, Some(&w)) {
            Some(Woke::Frame(t)) => {
                assert_eq!(t.frame, 1);
                assert_eq!(t.due, next);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wait_can_be_abandoned() {
        let mut c = Clock::new(1.0);
        c.wait(|| true).unwrap();
        assert!(c.wait(|| false).is_none());
    }

    #[test]
    fn percentiles_of_the_window() {
        let mut l = Lateness::default();
        for us in 1..=100 {
            l.push(Duration::from_micros(us));
        }
        let s = l.summary();
        assert_eq!(s.p50, Duration::from_micros(51));
        assert_eq!(s.p99, Duration::from_micros(99));
        assert_eq!(s.max, Duration::from_micros(100));
    }
}
