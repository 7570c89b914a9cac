//! Count CHOP: counts how often channels turn on (or off, or for how long they stay so), with
//! limits, and resets by a pulse or by a second input.
//!
//! A channel is on above `threshup` and off again below `threshdown` (the same threshold while
//! `threshold` is on). Each of `offtoon`, `on` (while on), `ontooff` and `off` (while off) says what happens
//! then: `none`, `inc` (+1), `dec` (−1) or `reset`; `while…` act on every step, and after dropped
//! frames once per frame missed. The count starts at, and resets to, `resetvalue`, and is kept
//! within `limitmin`…`limitmax` by `output` (loop, clamp, one of each, zigzag). Input 1 resets as
//! `resetcondition` says (its channel of the same index, repeating, once per cook).

use crate::chop::shaping::{self, limit, run_filter, Chans, Shape, ShapeConfig, ShapeCx};
use crate::chop::speed::{reset_input, CONDITIONS};
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind};
use crate::cook::par::{ParDef, ParSet};
use crate::cook::{ChopData, CookError};

/// The Count CHOP kind.
pub struct Count;

impl Kind for Count {
    const NAME: &'static str = "count";
    const SUMMARY: &'static str = "Count CHOP: counts channels turning on and off";
    type Raw = shaping::Raw<CountShape>;
    type Settings = ShapeConfig<CountShape>;

    fn check(cx: &mut Checker, r: Self::Raw, refs: &mut OpRefs) -> Option<Self::Settings> {
        shaping::check(cx, r, refs)
    }
}

const ACTIONS: &[&str] = &["none", "inc", "dec", "reset"];

/// The `output` (Limit) menu: off, loop, clamp (`min`), loop below and clamp above (`lc`),
/// clamp below and loop above (`cl`), zigzag.
const OUTPUT: &[&str] = &["off", "loop", "min", "lc", "cl", "zigzag"];

/// The count `n` kept within `min…max` as the `output` menu entry `kind` says.
fn keep(n: f64, kind: u8, min: f64, max: f64) -> f64 {
    let (lo, hi) = if min <= max { (min, max) } else { (max, min) };
    match kind {
        1 => limit(n, 2, lo, hi),
        2 => limit(n, 1, lo, hi),
        3 if n > hi => hi,
        3 => limit(n, 2, lo, hi),
        4 if n < lo => lo,
        4 => limit(n, 2, lo, hi),
        5 => limit(n, 3, lo, hi),
        _ => n,
    }
}

#[derive(Default, Clone, Copy)]
pub struct Counter {
    started: bool,
    on: bool,
    n: f64,
}

#[derive(Default)]
pub struct CountShape {
    up: f64,
    down: f64,
    /// Actions of offtoon, on (while on), ontooff, off (while off).
    act: [u8; 4],
    kind: u8,
    min: f64,
    max: f64,
    cond: u8,
    resetvalue: f64,
    chans: Chans<Counter>,
    reset_was: Vec<bool>,
    busy: bool,
}

impl CountShape {
    fn apply(&self, n: f64, action: u8, times: f64) -> f64 {
        match action {
            1 => n + times,
            2 => n - times,
            3 => self.resetvalue,
            _ => n,
        }
    }
}

impl Shape for CountShape {
    const NAME: &'static str = "count";

    fn defs() -> Vec<ParDef> {
        vec![
            ParDef::toggle("threshold", "Count", true).label("Release = Trigger Threshold"),
            ParDef::float("threshup", "Count", 0.5)
                .range(0.0, 1.0)
                .label("Trigger Threshold"),
            ParDef::float("threshdown", "Count", 0.5)
                .range(0.0, 1.0)
                .label("Release Threshold"),
            ParDef::menu("offtoon", "Count", ACTIONS, "inc").label("Off to On"),
            ParDef::menu("on", "Count", ACTIONS, "none").label("While On"),
            ParDef::menu("ontooff", "Count", ACTIONS, "none").label("On to Off"),
            ParDef::menu("off", "Count", ACTIONS, "none").label("While Off"),
            ParDef::menu("output", "Count", OUTPUT, "off")
                .label("Limit")
                .labels(&[
                    "Off",
                    "Loop Min/Max",
                    "Clamp Min/Max",
                    "Loop Min, Clamp Max",
                    "Clamp Min, Loop Max",
                    "Zigzag Min/Max",
                ]),
            ParDef::float("limitmin", "Count", 0.0)
                .range(0.0, 10.0)
                .label("Limit Minimum"),
            ParDef::float("limitmax", "Count", 1.0)
                .range(0.0, 10.0)
                .label("Limit Maximum"),
            ParDef::menu("resetcondition", "Count", CONDITIONS, "offtoon")
                .label("Reset Condition"),
            ParDef::float("resetvalue", "Count", 0.0).label("Reset Value"),
            ParDef::pulse("resetpulse", "Count").label("Reset Pulse"),
        ]
    }

    fn configure(&mut self, p: &ParSet) {
        self.up = p.num("threshup");
        self.down = if p.num("threshold") != 0.0 {
            self.up
        } else {
            p.num("threshdown")
        };
        self.act = ["offtoon", "on", "ontooff", "off"].map(|n| p.num(n) as u8);
        self.kind = p.num("output") as u8;
        self.min = p.num("limitmin");
        self.max = p.num("limitmax");
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
                st.n = self.resetvalue;
            }
        }
        // Frames a step stands for (more than one after dropped frames, never sliced).
        let frames = if cx.sliced {
            1.0
        } else {
            cx.frame.step.max(1) as f64
        };
        let mut busy = false;
        run_filter(cx, &mut chans, out, |s, x, _dt| {
            let x = x as f64;
            if !s.started {
                (s.started, s.n) = (true, self.resetvalue);
            }
            let on = if s.on { x >= self.down } else { x > self.up };
            let n = match (s.on, on) {
                (false, true) => self.apply(s.n, self.act[0], 1.0),
                (true, false) => self.apply(s.n, self.act[2], 1.0),
                (true, true) => self.apply(s.n, self.act[1], frames),
                (false, false) => self.apply(s.n, self.act[3], frames),
            };
            s.on = on;
            s.n = keep(n, self.kind, self.min, self.max);
            busy |= self.act[if on { 1 } else { 3 }] != 0;
            s.n as f32
        });
        self.chans = chans;
        self.busy = busy;
        Ok(())
    }

    fn reset(&mut self) {
        self.chans.clear();
    }

    fn busy(&self) -> bool {
        self.busy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chop::shaping::testing::*;

    fn run(c: &mut CountShape, xs: &[f32]) -> Vec<f32> {
        xs.iter()
            .enumerate()
            .map(|(k, &x)| {
                let a = data(60.0, &[("a", &[x])]);
                cook(c, &frame(k as i64 + 1, 1, 60.0), &[&a], false).chan(0)[0]
            })
            .collect()
    }

    #[test]
    fn counts_turns_on_with_limits() {
        let mut c: CountShape = shape(&[]);
        assert_eq!(run(&mut c, &[0.0, 1.0, 1.0, 0.0, 1.0]), [0.0, 1.0, 1.0, 1.0, 2.0]);
        let mut l: CountShape = shape(&[("output", s("loop")), ("limitmax", f(2.0))]);
        assert_eq!(run(&mut l, &[1.0, 0.0, 1.0, 0.0, 1.0]), [1.0, 1.0, 0.0, 0.0, 1.0]);
        c.pulse("resetpulse");
        assert_eq!(run(&mut c, &[1.0]), [1.0]);
        // Clamp above, loop below; loop above, clamp below.
        assert_eq!(keep(5.0, 3, 0.0, 2.0), 2.0);
        assert_eq!(keep(-0.5, 3, 0.0, 2.0), 1.5);
        assert_eq!(keep(2.5, 4, 0.0, 2.0), 0.5);
        assert_eq!(keep(-3.0, 4, 0.0, 2.0), 0.0);
        assert_eq!(keep(3.0, 2, 0.0, 2.0), 2.0);
    }

    #[test]
    fn while_on_counts_frames_even_dropped_ones() {
        let mut c: CountShape = shape(&[("offtoon", s("none")), ("on", s("inc"))]);
        let one = data(60.0, &[("a", &[1.0])]);
        assert_eq!(cook(&mut c, &frame(1, 1, 60.0), &[&one], false).chan(0), [0.0]);
        assert_eq!(cook(&mut c, &frame(2, 1, 60.0), &[&one], false).chan(0), [1.0]);
        assert_eq!(cook(&mut c, &frame(5, 3, 60.0), &[&one], false).chan(0), [4.0]);
        assert!(c.busy());
    }

    #[test]
    fn second_input_resets() {
        let mut c: CountShape = shape(&[("resetvalue", f(10.0))]);
        let a = |x: f32| data(60.0, &[("a", &[x])]);
        let r = |x: f32| data(60.0, &[("r", &[x])]);
        let f1 = frame(1, 1, 60.0);
        assert_eq!(cook(&mut c, &f1, &[&a(1.0), &r(0.0)], false).chan(0), [11.0]);
        assert_eq!(cook(&mut c, &f1, &[&a(0.0), &r(1.0)], false).chan(0), [10.0]);
        assert_eq!(cook(&mut c, &f1, &[&a(1.0), &r(1.0)], false).chan(0), [11.0]);
    }
}
