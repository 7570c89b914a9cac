//! Lag CHOP: slows the rise and fall of channels (a separate lag up and down), with overshoot
//! and optional limits on slope and acceleration.
//!
//! Per step of `dt` seconds, with `T` the lag of the direction the input moves in (up: the
//! value rises, or with `lagmethod = "amp"` moves away from zero): the lagged value `l` moves
//! by `(x − l) · (1 − 10^(−dt/T))`, so it covers 90 % of a step in `T` seconds, as
//! TouchDesigner describes its lag. `clamp` limits that move to `slope · dt`,
//! `aclamp` the change of its speed to `accel · dt`. The output is
//! `l + overshoot · (x − l)`: 0 is a plain lag, above 1 the output shoots past the change and
//! settles back. A first sample starts the lag at the input.

use crate::chop::shaping::{self, run_filter, Chans, Shape, ShapeConfig, ShapeCx};
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind};
use crate::cook::par::{ParDef, ParSet};
use crate::cook::{ChopData, CookError};

/// The Lag CHOP kind.
pub struct Lag;

impl Kind for Lag {
    const NAME: &'static str = "lag";
    const SUMMARY: &'static str = "Lag CHOP: lag up and down, overshoot, slope limits";
    type Raw = shaping::Raw<LagShape>;
    type Settings = ShapeConfig<LagShape>;

    fn check(cx: &mut Checker, r: Self::Raw, refs: &mut OpRefs) -> Option<Self::Settings> {
        shaping::check(cx, r, refs)
    }
}

#[derive(Default, Clone, Copy)]
pub struct LagState {
    started: bool,
    l: f64,
    /// Speed of the last move, per second (for `aclamp`).
    v: f64,
}

#[derive(Default)]
pub struct LagShape {
    amp: bool,
    lag: [f64; 2],
    overshoot: [f64; 2],
    maxslope: Option<[f64; 2]>,
    maxaccel: Option<[f64; 2]>,
    chans: Chans<LagState>,
    moving: bool,
}

impl LagShape {
    /// The share of the distance a step of `dt` covers, up and down.
    fn coefficients(&self, dt: f64) -> [f64; 2] {
        self.lag.map(|t| if t <= 0.0 { 1.0 } else { 1.0 - 10f64.powf(-dt / t) })
    }

    fn step(&self, s: &mut LagState, x: f64, dt: f64, coef: [f64; 2]) -> f64 {
        if !s.started {
            *s = LagState {
                started: true,
                l: x,
                v: 0.0,
            };
            return x;
        }
        let up = if self.amp {
            x.abs() > s.l.abs()
        } else {
            x > s.l
        };
        let d = usize::from(!up);
        let mut mv = (x - s.l) * coef[d];
        if let Some(m) = self.maxslope {
            mv = mv.clamp(-m[1] * dt, m[0] * dt);
        }
        if let (Some(m), true) = (self.maxaccel, dt > 0.0) {
            let v = (mv / dt).clamp(s.v - m[1] * dt, s.v + m[0] * dt);
            mv = v * dt;
        }
        s.v = if dt > 0.0 { mv / dt } else { 0.0 };
        s.l += mv;
        s.l + self.overshoot[d] * (x - s.l)
    }
}

impl Shape for LagShape {
    const NAME: &'static str = "lag";

    fn defs() -> Vec<ParDef> {
        vec![
            ParDef::menu("lagmethod", "Lag", &["value", "amp"], "value")
                .label("Method")
                .labels(&["Lag Value", "Lag Amplitude"]),
            ParDef::float("lag1", "Lag", 0.2)
                .range(0.0, 1.0)
                .clamp_min(0.0)
                .label("Lag"),
            ParDef::float("lag2", "Lag", 0.2)
                .range(0.0, 1.0)
                .clamp_min(0.0)
                .label("Lag"),
            ParDef::float("overshoot1", "Lag", 0.0)
                .range(0.0, 1.0)
                .label("Overshoot"),
            ParDef::float("overshoot2", "Lag", 0.0)
                .range(0.0, 1.0)
                .label("Overshoot"),
            ParDef::toggle("clamp", "Lag", false).label("Clamp Slope"),
            ParDef::float("slope1", "Lag", 1.0)
                .range(0.0, 10.0)
                .clamp_min(0.0)
                .label("Max Slope"),
            ParDef::float("slope2", "Lag", 1.0)
                .range(0.0, 10.0)
                .clamp_min(0.0)
                .label("Max Slope"),
            ParDef::toggle("aclamp", "Lag", false).label("Clamp Acceleration"),
            ParDef::float("accel1", "Lag", 1.0)
                .range(0.0, 10.0)
                .clamp_min(0.0)
                .label("Max Acceleration"),
            ParDef::float("accel2", "Lag", 1.0)
                .range(0.0, 10.0)
                .clamp_min(0.0)
                .label("Max Acceleration"),
        ]
    }

    fn configure(&mut self, p: &ParSet) {
        let pair = |a: &str, b: &str| [p.num(a), p.num(b)];
        self.amp = p.text("lagmethod") == "amp";
        self.lag = pair("lag1", "lag2");
        self.overshoot = pair("overshoot1", "overshoot2");
        self.maxslope = (p.num("clamp") != 0.0).then(|| pair("slope1", "slope2"));
        self.maxaccel = (p.num("aclamp") != 0.0).then(|| pair("accel1", "accel2"));
    }

    fn cook(&mut self, cx: &ShapeCx, out: &mut ChopData) -> Result<(), CookError> {
        let mut chans = std::mem::take(&mut self.chans);
        let mut moving = false;
        let coef = self.coefficients(cx.dt());
        run_filter(cx, &mut chans, out, |s, x, dt| {
            let x = x as f64;
            let y = self.step(s, x, dt, coef);
            moving |= (y - x).abs() > 1e-6;
            y as f32
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
    fn a_step_is_ninety_percent_there_after_the_lag() {
        let mut l: LagShape = shape(&[("lag1", f(0.5)), ("lag2", f(0.25))]);
        let zero = data(60.0, &[("a", &[0.0])]);
        let one = data(60.0, &[("a", &[1.0])]);
        assert_eq!(cook(&mut l, &frame(1, 1, 60.0), &[&zero], false).chan(0), [0.0]);
        // 30 frames of 1/60 s = the lag up: 90 %.
        let mut y = 0.0;
        for k in 0..30 {
            y = cook(&mut l, &frame(2 + k, 1, 60.0), &[&one], false).chan(0)[0];
        }
        assert!(close(y, 0.9), "{y}");
        assert!(l.busy());
        // Down, after dropped frames: one cook of 15 frames = the lag down, 90 % of the fall.
        let y = cook(&mut l, &frame(47, 15, 60.0), &[&zero], false).chan(0)[0];
        assert!(close(y, 0.09), "{y}");
    }

    #[test]
    fn time_sliced_input_lags_every_sample() {
        let mut l: LagShape = shape(&[("lag1", f(0.1))]);
        let first = data(10.0, &[("a", &[0.0])]);
        cook(&mut l, &frame(1, 1, 10.0), &[&first], true);
        let x = data(10.0, &[("a", &[1.0, 1.0])]);
        let out = cook(&mut l, &frame(3, 2, 10.0), &[&x], true);
        // dt = lag: 90 %, then 99 %.
        assert!(close(out.chan(0)[0], 0.9) && close(out.chan(0)[1], 0.99));
    }

    #[test]
    fn slope_clamp_and_overshoot() {
        let mut l: LagShape = shape(&[
            ("lag1", f(0.0)),
            ("clamp", f(1.0)),
            ("slope1", f(6.0)),
        ]);
        let zero = data(60.0, &[("a", &[0.0])]);
        let one = data(60.0, &[("a", &[1.0])]);
        cook(&mut l, &frame(1, 1, 60.0), &[&zero], false);
        let y = cook(&mut l, &frame(2, 1, 60.0), &[&one], false).chan(0)[0];
        assert!(close(y, 0.1), "6 per second for 1/60 s: {y}");
        let mut o: LagShape = shape(&[("lag1", f(1.0)), ("overshoot1", f(2.0))]);
        cook(&mut o, &frame(1, 1, 60.0), &[&zero], false);
        let y = cook(&mut o, &frame(2, 1, 60.0), &[&one], false).chan(0)[0];
        assert!(y > 1.0, "overshoots: {y}");
    }
}
