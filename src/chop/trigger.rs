//! Trigger CHOP: an attack / peak / decay / sustain / release envelope started on each channel
//! whenever its input crosses the trigger threshold.
//!
//! A channel triggers when its input rises above `threshup` (falls below it with
//! `triggeron = "decrease"`), no sooner than `retrigger` seconds after its last trigger. From
//! then, at `t` seconds: 0 for `delay`; a ramp from 0 to `peak` over `attack`; `peak` for
//! `peaklen`; a ramp to `sustain` over `decay`; then `sustain`. It releases when the input comes
//! back below `threshdown` (the trigger threshold when `threshold` is on), but not before
//! `mintrigger` seconds, nor before the sustain has lasted `minsustain` when `complete` is on;
//! the release ramps from the value reached to 0 over `release`. Ramps follow their shape:
//! `linear`, `easein` (t²), `easeout` (1 − (1 − t)²), `halfcos` (ease in ease out, 3t² − 2t³).

use crate::chop::shaping::{self, run_filter, Chans, Shape, ShapeConfig, ShapeCx};
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind};
use crate::cook::par::{ParDef, ParSet};
use crate::cook::{ChopData, CookError};

/// The Trigger CHOP kind.
pub struct Trigger;

impl Kind for Trigger {
    const NAME: &'static str = "trigger";
    const SUMMARY: &'static str = "Trigger CHOP: attack/decay/sustain/release envelopes";
    type Raw = shaping::Raw<TriggerShape>;
    type Settings = ShapeConfig<TriggerShape>;

    fn check(cx: &mut Checker, r: Self::Raw, refs: &mut OpRefs) -> Option<Self::Settings> {
        shaping::check(cx, r, refs)
    }
}

const SHAPES: &[&str] = &["linear", "easein", "easeout", "halfcos"];

fn shaped(kind: u8, t: f64) -> f64 {
    let t = t.clamp(0.0, 1.0);
    match kind {
        1 => t * t,
        2 => 1.0 - (1.0 - t) * (1.0 - t),
        3 => t * t * (3.0 - 2.0 * t),
        _ => t,
    }
}

#[derive(Default, Clone, Copy, PartialEq)]
enum Phase {
    #[default]
    Idle,
    /// Seconds since the trigger.
    Held(f64),
    /// Seconds since the release, and the value released from.
    Release(f64, f64),
}

#[derive(Default, Clone, Copy)]
pub struct Env {
    phase: Phase,
    was_on: bool,
    /// Seconds since the last trigger (for `retrigger`).
    since: f64,
    value: f64,
}

#[derive(Default)]
pub struct TriggerShape {
    up: f64,
    down: f64,
    decrease: bool,
    retrigger: f64,
    minlength: f64,
    delay: f64,
    attack: f64,
    attackshape: u8,
    peak: f64,
    peaklen: f64,
    decay: f64,
    decayshape: u8,
    sustain: f64,
    minsustain: f64,
    release: f64,
    releaseshape: u8,
    complete: bool,
    chans: Chans<Env>,
    active: bool,
}

impl TriggerShape {
    fn held(&self, t: f64) -> f64 {
        let mut t = t - self.delay;
        if t < 0.0 {
            return 0.0;
        }
        if t < self.attack {
            return self.peak * shaped(self.attackshape, t / self.attack);
        }
        t -= self.attack;
        if t < self.peaklen {
            return self.peak;
        }
        t -= self.peaklen;
        if t < self.decay {
            return self.peak + (self.sustain - self.peak) * shaped(self.decayshape, t / self.decay);
        }
        self.sustain
    }

    fn step(&self, e: &mut Env, x: f64, dt: f64) -> f64 {
        let (on, off) = if self.decrease {
            (x < self.up, x > self.down)
        } else {
            (x > self.up, x < self.down)
        };
        e.since += dt;
        let crossed = on && !e.was_on;
        e.was_on = on || (e.was_on && !off);
        if crossed && (e.since >= self.retrigger || e.phase == Phase::Idle) {
            e.phase = Phase::Held(0.0);
            e.since = 0.0;
        } else {
            e.phase = match e.phase {
                Phase::Held(t) => Phase::Held(t + dt),
                Phase::Release(t, from) => Phase::Release(t + dt, from),
                Phase::Idle => Phase::Idle,
            };
        }
        if let Phase::Held(t) = e.phase {
            let full = self.delay + self.attack + self.peaklen + self.decay + self.minsustain;
            let may_release = t >= self.minlength && (!self.complete || t >= full);
            if !e.was_on && may_release {
                e.phase = Phase::Release(0.0, self.held(t));
            }
        }
        e.value = match e.phase {
            Phase::Idle => 0.0,
            Phase::Held(t) => self.held(t),
            Phase::Release(t, from) if t < self.release => {
                from * (1.0 - shaped(self.releaseshape, t / self.release))
            }
            Phase::Release(..) => {
                e.phase = Phase::Idle;
                0.0
            }
        };
        e.value
    }
}

impl Shape for TriggerShape {
    const NAME: &'static str = "trigger";

    fn defs() -> Vec<ParDef> {
        let secs = |name: &str, default: f64, label: &str| {
            ParDef::float(name, "Trigger", default)
                .range(0.0, 1.0)
                .clamp_min(0.0)
                .label(label)
        };
        vec![
            ParDef::toggle("threshold", "Trigger", true).label("Release = Trigger Threshold"),
            ParDef::float("threshup", "Trigger", 0.5)
                .range(0.0, 1.0)
                .label("Trigger Threshold"),
            ParDef::float("threshdown", "Trigger", 0.5)
                .range(0.0, 1.0)
                .label("Release Threshold"),
            secs("retrigger", 0.0, "Re-Trigger Delay"),
            secs("mintrigger", 0.0, "Min Trigger Length"),
            ParDef::menu("triggeron", "Trigger", &["increase", "decrease"], "increase")
                .label("Trigger On"),
            secs("delay", 0.0, "Delay Length"),
            secs("attack", 0.1, "Attack Length"),
            ParDef::menu("ashape", "Trigger", SHAPES, "linear").label("Attack Shape"),
            ParDef::float("peak", "Trigger", 1.0)
                .range(0.0, 1.0)
                .label("Peak Level"),
            secs("peaklen", 0.0, "Peak Length"),
            secs("decay", 0.1, "Decay Length"),
            ParDef::menu("dshape", "Trigger", SHAPES, "linear").label("Decay Shape"),
            ParDef::float("sustain", "Trigger", 0.5)
                .range(0.0, 1.0)
                .label("Sustain Level"),
            secs("minsustain", 0.0, "Min Sustain Length"),
            secs("release", 0.2, "Release Length"),
            ParDef::menu("rshape", "Trigger", SHAPES, "linear").label("Release Shape"),
            ParDef::toggle("complete", "Trigger", false).label("Complete Envelope"),
            ParDef::pulse("resetpulse", "Trigger").label("Reset Pulse"),
        ]
    }

    fn configure(&mut self, p: &ParSet) {
        self.up = p.num("threshup");
        self.down = if p.num("threshold") != 0.0 {
            self.up
        } else {
            p.num("threshdown")
        };
        self.decrease = p.text("triggeron") == "decrease";
        self.retrigger = p.num("retrigger");
        self.minlength = p.num("mintrigger");
        self.delay = p.num("delay");
        self.attack = p.num("attack");
        self.attackshape = p.num("ashape") as u8;
        self.peak = p.num("peak");
        self.peaklen = p.num("peaklen");
        self.decay = p.num("decay");
        self.decayshape = p.num("dshape") as u8;
        self.sustain = p.num("sustain");
        self.minsustain = p.num("minsustain");
        self.release = p.num("release");
        self.releaseshape = p.num("rshape") as u8;
        self.complete = p.num("complete") != 0.0;
    }

    fn cook(&mut self, cx: &ShapeCx, out: &mut ChopData) -> Result<(), CookError> {
        let mut chans = std::mem::take(&mut self.chans);
        let mut active = false;
        run_filter(cx, &mut chans, out, |e, x, dt| {
            let y = self.step(e, x as f64, dt);
            active |= e.phase != Phase::Idle;
            y as f32
        });
        self.chans = chans;
        self.active = active;
        Ok(())
    }

    fn reset(&mut self) {
        self.chans.clear();
    }

    fn busy(&self) -> bool {
        self.active
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chop::shaping::testing::*;

    /// Cooks `t` at 10 fps, one frame at a time, with the input `x(frame)`.
    fn run(t: &mut TriggerShape, frames: std::ops::Range<i64>, x: impl Fn(i64) -> f32) -> Vec<f32> {
        frames
            .map(|k| {
                let a = data(10.0, &[("a", &[x(k)])]);
                cook(t, &frame(k, 1, 10.0), &[&a], false).chan(0)[0]
            })
            .collect()
    }

    #[test]
    fn attack_decay_sustain_release() {
        let mut t: TriggerShape = shape(&[
            ("attack", f(0.2)),
            ("decay", f(0.2)),
            ("sustain", f(0.5)),
            ("release", f(0.4)),
        ]);
        // On at frame 2, off at frame 8.
        let got = run(&mut t, 1..14, |k| if (2..8).contains(&k) { 1.0 } else { 0.0 });
        let want = [
            0.0, 0.0, 0.5, 1.0, 0.75, 0.5, 0.5, 0.5, 0.375, 0.25, 0.125, 0.0, 0.0,
        ];
        for (g, w) in got.iter().zip(want) {
            assert!(close(*g, w), "{got:?}");
        }
        assert!(!t.busy());
    }

    #[test]
    fn dropped_frames_advance_the_envelope_by_their_time() {
        let mut t: TriggerShape = shape(&[("attack", f(1.0)), ("decay", f(0.0)), ("sustain", f(1.0))]);
        let one = data(10.0, &[("a", &[1.0])]);
        assert_eq!(cook(&mut t, &frame(1, 1, 10.0), &[&one], false).chan(0), [0.0]);
        let y = cook(&mut t, &frame(5, 4, 10.0), &[&one], false).chan(0)[0];
        assert!(close(y, 0.4), "{y}");
    }

    #[test]
    fn complete_envelope_and_ease() {
        let mut t: TriggerShape = shape(&[
            ("attack", f(0.2)),
            ("ashape", s("easein")),
            ("decay", f(0.0)),
            ("sustain", f(1.0)),
            ("release", f(0.1)),
            ("complete", f(1.0)),
        ]);
        // A one-frame pulse still plays the attack to its end.
        let got = run(&mut t, 1..6, |k| if k == 1 { 1.0 } else { 0.0 });
        assert!(close(got[0], 0.0) && close(got[1], 0.25) && close(got[2], 1.0), "{got:?}");
        assert!(close(got[3], 0.0), "{got:?}");
    }
}
