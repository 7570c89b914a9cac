//! Slope CHOP: the rate of change of channels: `type` `slope` (velocity), `accel`
//! (acceleration) or `slacc` (acceleration of the slope, jerk), per second.
//!
//! Per step of `dt` seconds: `d₁ = (x − x_prev) / dt`, and each higher order the same of the
//! order below. A first sample gives 0. After dropped frames, the change spreads over the whole
//! time since the last cook.

use crate::chop::shaping::{self, run_filter, Chans, Shape, ShapeConfig, ShapeCx};
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind};
use crate::cook::par::{ParDef, ParSet};
use crate::cook::{ChopData, CookError};

/// The Slope CHOP kind.
pub struct Slope;

impl Kind for Slope {
    const NAME: &'static str = "slope";
    const SUMMARY: &'static str = "Slope CHOP: velocity, acceleration or jerk of channels";
    type Raw = shaping::Raw<SlopeShape>;
    type Settings = ShapeConfig<SlopeShape>;

    fn check(cx: &mut Checker, r: Self::Raw, refs: &mut OpRefs) -> Option<Self::Settings> {
        shaping::check(cx, r, refs)
    }
}

/// The previous value of each order (x, d₁, d₂), once started.
#[derive(Default, Clone, Copy)]
pub struct Prev {
    /// Samples seen, up to the order.
    seen: u8,
    v: [f64; 3],
}

#[derive(Default)]
pub struct SlopeShape {
    order: usize,
    chans: Chans<Prev>,
    moving: bool,
}

impl Shape for SlopeShape {
    const NAME: &'static str = "slope";

    fn defs() -> Vec<ParDef> {
        vec![
            ParDef::menu("type", "Slope", &["slope", "accel", "slacc"], "slope")
                .labels(&["Slope", "Acceleration", "Acceleration Of Slope"])
                .label("Type"),
        ]
    }

    fn configure(&mut self, p: &ParSet) {
        self.order = p.num("type") as usize + 1;
    }

    fn cook(&mut self, cx: &ShapeCx, out: &mut ChopData) -> Result<(), CookError> {
        let order = self.order.max(1);
        let mut chans = std::mem::take(&mut self.chans);
        let mut moving = false;
        run_filter(cx, &mut chans, out, |p, x, dt| {
            let mut d = x as f64;
            let mut complete = true;
            for k in 0..order {
                if (p.seen as usize) <= k || dt <= 0.0 {
                    // No earlier value of this order yet: it starts here.
                    p.v[k] = d;
                    complete = false;
                    break;
                }
                let next = (d - p.v[k]) / dt;
                p.v[k] = d;
                d = next;
            }
            p.seen = (p.seen + 1).min(order as u8);
            let d = if complete { d } else { 0.0 };
            moving |= d != 0.0;
            d as f32
        });
        self.chans = chans;
        self.moving = moving;
        Ok(())
    }

    fn reset(&mut self) {
        self.chans.clear();
    }

    /// A slope that is not 0 falls back to 0 on the next frame without a change.
    fn busy(&self) -> bool {
        self.moving
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chop::shaping::testing::*;

    #[test]
    fn velocity_over_the_time_since_the_last_cook() {
        let mut sl: SlopeShape = shape(&[]);
        let run = |sl: &mut SlopeShape, k: i64, step: i64, x: f32| {
            let a = data(10.0, &[("a", &[x])]);
            cook(sl, &frame(k, step, 10.0), &[&a], false).chan(0)[0]
        };
        assert_eq!(run(&mut sl, 1, 1, 1.0), 0.0);
        assert!(close(run(&mut sl, 2, 1, 1.5), 5.0));
        assert_eq!(run(&mut sl, 3, 1, 1.5), 0.0);
        assert!(!sl.busy());
        // Two frames since the last cook: the change over 0.2 s.
        assert!(close(run(&mut sl, 5, 2, 2.5), 5.0));
    }

    #[test]
    fn acceleration_of_a_sliced_parabola() {
        let mut sl: SlopeShape = shape(&[("type", s("accel"))]);
        // x = t² at 10 samples per second: acceleration 2 once two differences exist.
        let xs: Vec<f32> = (0..5).map(|i| (i as f32 / 10.0).powi(2)).collect();
        let a = data(10.0, &[("a", &xs)]);
        let out = cook(&mut sl, &frame(5, 5, 10.0), &[&a], true);
        let got = out.chan(0);
        assert_eq!(got[0], 0.0);
        assert_eq!(got[1], 0.0);
        for &g in &got[2..] {
            assert!(close(g, 2.0), "{got:?}");
        }
    }
}
