//! Filter CHOP: smooths channels with a box, Gaussian or left-half Gaussian window `width`
//! seconds wide, or with the One Euro filter (little lag when the value moves fast, strong
//! smoothing when it moves slowly); `effect` blends the filtered value with the input.
//!
//! The windows work on the stream as it arrives, so they look back only: `box` (and `halfbox`) is the mean of
//! the last `width` seconds, `halfgauss` weighs the newest sample most (σ = width / 3), `gauss` is
//! the symmetric Gaussian over the last `width` seconds (σ = width / 6), which is late by half
//! the width. After dropped frames the held input fills the frames missed.
//!
//! One Euro (Casiez, Roussel, Vogel 2012), per step of `dt`: the slope `(x − x̂ₚᵣₑᵥ) / dt` is
//! smoothed with cutoff `slopecutoff`; the cutoff for the value is then
//! `cutoff + speedcoeff · |slope|`, and `x̂ = x̂ₚᵣₑᵥ + α (x − x̂ₚᵣₑᵥ)` with
//! `α = 1 / (1 + 1 / (2π · fc · dt))`.

use std::f64::consts::PI;

use crate::chop::shaping::{self, run_filter, Chans, Shape, ShapeConfig, ShapeCx};
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind};
use crate::cook::par::{ParDef, ParSet};
use crate::cook::{ChopData, CookError};

/// The Filter CHOP kind.
pub struct Filter;

impl Kind for Filter {
    const NAME: &'static str = "filter";
    const SUMMARY: &'static str = "Filter CHOP: box, Gaussian and One Euro smoothing";
    type Raw = shaping::Raw<FilterShape>;
    type Settings = ShapeConfig<FilterShape>;

    fn check(cx: &mut Checker, r: Self::Raw, refs: &mut OpRefs) -> Option<Self::Settings> {
        shaping::check(cx, r, refs)
    }
}

/// Longest window, seconds (a bound on memory: channels × width × rate samples).
pub const MAX_WIDTH: f64 = 10.0;

#[derive(Default, Clone)]
pub struct FilterState {
    /// The last samples, newest at `pos − 1` (windows only).
    ring: Vec<f32>,
    pos: usize,
    filled: usize,
    /// Sum of the ring (box).
    sum: f64,
    /// One Euro: started, the last estimate and the smoothed slope.
    started: bool,
    x: f64,
    dx: f64,
}

#[derive(Default)]
pub struct FilterShape {
    /// 0 box, 1 gauss, 2 halfgauss, 3 oneeuro.
    kind: u8,
    width: f64,
    effect: f64,
    cutoff: f64,
    beta: f64,
    dcutoff: f64,
    /// Window weights by age (0 = newest), for the sample length they were made for.
    weights: Vec<f64>,
    weights_for: Option<(u8, usize)>,
    chans: Chans<FilterState>,
    moving: bool,
}

fn alpha(fc: f64, dt: f64) -> f64 {
    if fc <= 0.0 || dt <= 0.0 {
        return 1.0;
    }
    1.0 / (1.0 + 1.0 / (2.0 * PI * fc * dt))
}

impl FilterShape {
    fn make_weights(&mut self, n: usize) {
        if self.weights_for == Some((self.kind, n)) {
            return;
        }
        self.weights = (0..n)
            .map(|i| {
                let i = i as f64;
                match self.kind {
                    1 => {
                        let sigma = (n as f64 / 6.0).max(1e-9);
                        (-0.5 * ((i - (n as f64 - 1.0) / 2.0) / sigma).powi(2)).exp()
                    }
                    2 => {
                        let sigma = (n as f64 / 3.0).max(1e-9);
                        (-0.5 * (i / sigma).powi(2)).exp()
                    }
                    _ => 1.0,
                }
            })
            .collect();
        self.weights_for = Some((self.kind, n));
    }

    fn window(&self, s: &mut FilterState, x: f32, copies: usize) -> f64 {
        let n = self.weights.len();
        if s.ring.len() != n {
            *s = FilterState {
                ring: vec![0.0; n],
                ..FilterState::default()
            };
        }
        let boxed = self.kind == 0;
        for _ in 0..copies.min(n) {
            if boxed && s.filled == n {
                s.sum -= s.ring[s.pos] as f64;
            }
            s.ring[s.pos] = x;
            s.sum += x as f64;
            s.pos += 1;
            if s.pos == n {
                s.pos = 0;
                // A running sum drifts: once a lap, it is summed again.
                s.sum = s.ring.iter().map(|&v| v as f64).sum();
            }
            s.filled = (s.filled + 1).min(n);
        }
        if boxed {
            return s.sum / s.filled.max(1) as f64;
        }
        // Ages 0, 1, … run backwards from pos − 1: two contiguous runs of the ring.
        let (newer, older) = s.ring.split_at(s.pos);
        let mut ages = newer.iter().rev().chain(older.iter().rev()).take(s.filled);
        let (mut sum, mut wsum) = (0.0, 0.0);
        for (w, &v) in self.weights.iter().zip(&mut ages) {
            sum += w * v as f64;
            wsum += w;
        }
        if wsum > 0.0 {
            sum / wsum
        } else {
            x as f64
        }
    }

    fn one_euro(&self, s: &mut FilterState, x: f64, dt: f64) -> f64 {
        if !s.started {
            (s.started, s.x, s.dx) = (true, x, 0.0);
            return x;
        }
        let slope = if dt > 0.0 { (x - s.x) / dt } else { 0.0 };
        s.dx += alpha(self.dcutoff, dt) * (slope - s.dx);
        let fc = self.cutoff + self.beta * s.dx.abs();
        s.x += alpha(fc, dt) * (x - s.x);
        s.x
    }
}

/// TouchDesigner's tokens, in its order up to `halfbox`; its `edge`, `sharpen`, `despike` and
/// `ramp` are not offered, so `oneeuro` is index 4 here.
const TYPES: &[&str] = &["gauss", "halfgauss", "box", "halfbox", "oneeuro"];

impl Shape for FilterShape {
    const NAME: &'static str = "filter";

    fn defs() -> Vec<ParDef> {
        vec![
            ParDef::menu("type", "Filter", TYPES, "gauss")
                .labels(&[
                    "Gaussian",
                    "Left Half Gaussian",
                    "Box",
                    "Left Half Box",
                    "One Euro",
                ])
                .label("Type"),
            ParDef::float("width", "Filter", 0.1)
                .range(0.0, 1.0)
                .clamp_min(0.0)
                .clamp_max(MAX_WIDTH)
                .label("Filter Width"),
            ParDef::float("effect", "Filter", 1.0)
                .range(0.0, 1.0)
                .label("Effect"),
            ParDef::float("cutoff", "Filter", 1.0)
                .range(0.0, 10.0)
                .clamp_min(0.0)
                .label("Cutoff Frequency (Hz)"),
            ParDef::float("speedcoeff", "Filter", 0.0)
                .range(0.0, 1.0)
                .clamp_min(0.0)
                .label("Speed Coefficient"),
            ParDef::float("slopecutoff", "Filter", 1.0)
                .range(0.0, 10.0)
                .clamp_min(0.0)
                .label("Slope Cutoff Frequency (Hz)"),
            ParDef::pulse("resetpulse", "Filter").label("Reset Pulse"),
        ]
    }

    fn configure(&mut self, p: &ParSet) {
        // Menu index → kind: `box` and `halfbox` are the same here (the window looks back).
        self.kind = [1, 2, 0, 0, 3][(p.num("type") as usize).min(4)];
        self.width = p.num("width");
        self.effect = p.num("effect");
        self.cutoff = p.num("cutoff");
        self.beta = p.num("speedcoeff");
        self.dcutoff = p.num("slopecutoff");
    }

    fn cook(&mut self, cx: &ShapeCx, out: &mut ChopData) -> Result<(), CookError> {
        // One sample of the stream: an input sample when time-sliced, else a frame.
        let base = if cx.sliced {
            cx.dt()
        } else {
            1.0 / cx.frame.rate
        };
        if self.kind != 3 {
            self.make_weights(((self.width / base).round() as usize).max(1));
        }
        let mut chans = std::mem::take(&mut self.chans);
        let mut moving = false;
        let effect = self.effect;
        run_filter(cx, &mut chans, out, |s, x, dt| {
            let f = if self.kind == 3 {
                self.one_euro(s, x as f64, dt)
            } else {
                let copies = ((dt / base).round() as usize).max(1);
                self.window(s, x, copies)
            };
            let y = x as f64 + effect * (f - x as f64);
            moving |= (y - x as f64).abs() > 1e-6;
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
    fn box_is_the_mean_of_the_window_and_dropped_frames_hold_the_input() {
        // 4 frames at 40 fps = 0.1 s.
        let mut b: FilterShape = shape(&[("type", s("box")), ("width", f(0.1))]);
        let mut last = 0.0;
        for (k, x) in [4.0, 0.0, 0.0, 0.0, 0.0].into_iter().enumerate() {
            let a = data(40.0, &[("a", &[x])]);
            last = cook(&mut b, &frame(k as i64 + 1, 1, 40.0), &[&a], false).chan(0)[0];
            if k == 1 {
                assert_eq!(last, 2.0);
            }
        }
        assert_eq!(last, 0.0, "the 4 has left the window");
        let eight = data(40.0, &[("a", &[8.0])]);
        let y = cook(&mut b, &frame(8, 3, 40.0), &[&eight], false).chan(0)[0];
        assert_eq!(y, 6.0, "three frames of 8 and one of 0");
        let mut half: FilterShape = shape(&[("type", s("box")), ("effect", f(0.5))]);
        let a = data(40.0, &[("a", &[2.0])]);
        cook(&mut half, &frame(1, 1, 40.0), &[&a], false);
        let b2 = data(40.0, &[("a", &[0.0])]);
        let y = cook(&mut half, &frame(2, 1, 40.0), &[&b2], false).chan(0)[0];
        assert_eq!(y, 0.5, "halfway between 0 and the mean 1");
    }

    #[test]
    fn gaussians_weigh_by_age() {
        let mut l: FilterShape = shape(&[("type", s("halfgauss")), ("width", f(0.1))]);
        let step = data(40.0, &[("a", &[0.0, 0.0, 0.0, 1.0])]);
        let y = cook(&mut l, &frame(4, 4, 40.0), &[&step], true).chan(0)[3] as f64;
        // Weights exp(−½(i·3/4)²) for ages 0..3; the newest (age 0) is the 1.
        let w: Vec<f64> = (0..4)
            .map(|i| (-0.5 * (i as f64 * 0.75).powi(2)).exp())
            .collect();
        let want = w[0] / w.iter().sum::<f64>();
        assert!((y - want).abs() < 1e-5, "{y} {want}");
        let mut g: FilterShape = shape(&[("type", s("gauss")), ("width", f(0.1))]);
        let flat = data(40.0, &[("a", &[3.0; 4])]);
        assert!(close(cook(&mut g, &frame(4, 4, 40.0), &[&flat], true).chan(0)[3], 3.0));
    }

    #[test]
    fn one_euro_follows_its_formula() {
        let mut e: FilterShape = shape(&[
            ("type", s("oneeuro")),
            ("cutoff", f(1.0)),
            ("speedcoeff", f(0.5)),
            ("slopecutoff", f(1.0)),
        ]);
        let zero = data(60.0, &[("a", &[0.0])]);
        let one = data(60.0, &[("a", &[1.0])]);
        cook(&mut e, &frame(1, 1, 60.0), &[&zero], false);
        let dt = 2.0 / 60.0;
        let y = cook(&mut e, &frame(3, 2, 60.0), &[&one], false).chan(0)[0] as f64;
        let a = |fc: f64| 1.0 / (1.0 + 1.0 / (2.0 * PI * fc * dt));
        let dx = a(1.0) * (1.0 / dt);
        let want = a(1.0 + 0.5 * dx);
        assert!((y - want).abs() < 1e-5, "{y} {want}");
    }
}
