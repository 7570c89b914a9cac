//! Speed CHOP: integrates channels over time (a speed in, a position out), optionally limited,
//! and reset by a pulse or by a second input.
//!
//! Per step of `dt` seconds: `y ← limit(y + x · dt)` with `limittype` (clamp, loop, zigzag)
//! between `min` and `max`. The `reset` pulse, or input 1 as `resetcondition` says (its channel
//! of the same index, repeating, checked once per cook), sets `y` to `resetvalue`.

use crate::chop::shaping::{self, limit, run_filter, Chans, Shape, ShapeConfig, ShapeCx, LIMIT_TYPES};
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind};
use crate::cook::par::{ParDef, ParSet};
use crate::cook::{ChopData, CookError};

/// The Speed CHOP kind.
pub struct Speed;

impl Kind for Speed {
    const NAME: &'static str = "speed";
    const SUMMARY: &'static str = "Speed CHOP: integrates channels over time";
    type Raw = shaping::Raw<SpeedShape>;
    type Settings = ShapeConfig<SpeedShape>;

    fn check(cx: &mut Checker, r: Self::Raw, refs: &mut OpRefs) -> Option<Self::Settings> {
        shaping::check(cx, r, refs)
    }
}

/// When input 1 resets: 0 offtoon, 1 on (while on), 2 ontooff, 3 off (while off).
pub const CONDITIONS: &[&str] = &["offtoon", "on", "ontooff", "off"];

/// Whether a reset input with `cond` fires, given its previous and current on state.
pub fn fires(cond: u8, was: bool, on: bool) -> bool {
    match cond {
        0 => on && !was,
        1 => on,
        2 => !on && was,
        _ => !on,
    }
}

/// Each channel's on state of the reset input (input 1), by output channel index, and whether
/// its reset fires this cook.
pub fn reset_input(cx: &ShapeCx, cond: u8, prev: &mut Vec<bool>, n: usize) -> Vec<bool> {
    let Some(r) = cx.inputs.get(1).filter(|r| r.num_chans() > 0) else {
        prev.clear();
        return vec![false; n];
    };
    prev.resize(n, false);
    (0..n)
        .map(|c| {
            let on = r.last(c % r.num_chans()) > 0.0;
            fires(cond, std::mem::replace(&mut prev[c], on), on)
        })
        .collect()
}

#[derive(Default)]
pub struct SpeedShape {
    kind: u8,
    min: f64,
    max: f64,
    cond: u8,
    resetvalue: f64,
    chans: Chans<Option<f64>>,
    reset_was: Vec<bool>,
    moving: bool,
}

impl Shape for SpeedShape {
    const NAME: &'static str = "speed";

    fn defs() -> Vec<ParDef> {
        vec![
            ParDef::menu("limittype", "Speed", LIMIT_TYPES, "off").label("Limit Type"),
            ParDef::float("min", "Speed", 0.0)
                .range(-1.0, 1.0)
                .label("Minimum"),
            ParDef::float("max", "Speed", 1.0)
                .range(-1.0, 1.0)
                .label("Maximum"),
            ParDef::menu("resetcondition", "Speed", CONDITIONS, "on")
                .label("Reset Condition"),
            ParDef::float("resetvalue", "Speed", 0.0).label("Reset Value"),
            ParDef::pulse("resetpulse", "Speed").label("Reset Pulse"),
        ]
    }

    fn configure(&mut self, p: &ParSet) {
        self.kind = p.num("limittype") as u8;
        self.min = p.num("min");
        self.max = p.num("max");
        self.cond = p.num("resetcondition") as u8;
        self.resetvalue = p.num("resetvalue");
    }

    fn cook(&mut self, cx: &ShapeCx, out: &mut ChopData) -> Result<(), CookError> {
        let n = cx.inputs.first().map_or(0, |i| i.num_chans());
        let resets = reset_input(cx, self.cond, &mut self.reset_was, n);
        let mut chans = std::mem::take(&mut self.chans);
        if let Some(i) = cx.inputs.first() {
            chans.follow(i, cx.scope);
        }
        for (c, st) in chans.states.iter_mut().enumerate() {
            if resets.get(c).copied().unwrap_or(false) {
                *st = Some(self.resetvalue);
            }
        }
        let mut moving = false;
        run_filter(cx, &mut chans, out, |y, x, dt| {
            let x = x as f64;
            moving |= x != 0.0;
            let v = limit(y.unwrap_or(self.resetvalue) + x * dt, self.kind, self.min, self.max);
            *y = Some(v);
            v as f32
        });
        self.chans = chans;
        self.moving = moving;
        Ok(())
    }

    fn reset(&mut self) {
        self.chans.clear();
    }

    fn busy(&self) -> bool {
        self.moving
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chop::shaping::testing::*;

    #[test]
    fn integrates_by_the_time_of_each_step() {
        let mut sp: SpeedShape = shape(&[]);
        let two = data(10.0, &[("a", &[2.0])]);
        assert!(close(cook(&mut sp, &frame(1, 1, 10.0), &[&two], false).chan(0)[0], 0.2));
        // Three frames dropped: 0.4 s at 2 per second.
        assert!(close(cook(&mut sp, &frame(5, 4, 10.0), &[&two], false).chan(0)[0], 1.0));
        let sliced = data(10.0, &[("a", &[1.0, -1.0])]);
        let out = cook(&mut sp, &frame(7, 2, 10.0), &[&sliced], true);
        assert!(close(out.chan(0)[0], 1.1) && close(out.chan(0)[1], 1.0));
        assert!(sp.busy());
    }

    #[test]
    fn limits_and_resets() {
        let mut sp: SpeedShape = shape(&[("limittype", s("loop")), ("resetvalue", f(0.5))]);
        let v = data(10.0, &[("a", &[3.0])]);
        let off = data(10.0, &[("r", &[0.0])]);
        let on = data(10.0, &[("r", &[1.0])]);
        // Starts from the reset value: 0.5 + 0.3.
        assert!(close(cook(&mut sp, &frame(1, 1, 10.0), &[&v, &off], false).chan(0)[0], 0.8));
        assert!(close(cook(&mut sp, &frame(2, 1, 10.0), &[&v, &off], false).chan(0)[0], 0.1));
        // While on: back to the reset value before this cook's step.
        assert!(close(cook(&mut sp, &frame(3, 1, 10.0), &[&v, &on], false).chan(0)[0], 0.8));
        sp.pulse("resetpulse");
        assert!(close(cook(&mut sp, &frame(4, 1, 10.0), &[&v], false).chan(0)[0], 0.8));
    }
}
