//! Limit CHOP: keeps channels within a range (clamp, loop or zigzag), makes them positive, and
//! quantizes their values to steps.
//!
//! Per sample, in this order: `positive` takes the absolute value; `type` brings the value into
//! `min`…`max` (clamp: cut at the bounds; loop: wrap around, `min + (x − min) mod (max − min)`;
//! zigzag: mirror back at each bound); `quantvalue` snaps it to `voffset + k · vstep`
//! (ceiling, floor or round of `(x − voffset) / vstep`).

use crate::chop::shaping::{self, limit, Layout, Shape, ShapeConfig, ShapeCx, LIMIT_TYPES};
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind};
use crate::cook::par::{ParDef, ParSet};
use crate::cook::{ChopData, CookError};

/// The Limit CHOP kind.
pub struct Limit;

impl Kind for Limit {
    const NAME: &'static str = "limit";
    const SUMMARY: &'static str = "Limit CHOP: clamp, loop, zigzag, quantize";
    type Raw = shaping::Raw<LimitShape>;
    type Settings = ShapeConfig<LimitShape>;

    fn check(cx: &mut Checker, r: Self::Raw, refs: &mut OpRefs) -> Option<Self::Settings> {
        shaping::check(cx, r, refs)
    }
}

#[derive(Default)]
pub struct LimitShape {
    kind: u8,
    min: f64,
    max: f64,
    positive: bool,
    quant: u8,
    step: f64,
    offset: f64,
    layout: Layout,
}

impl LimitShape {
    fn apply(&self, x: f64) -> f64 {
        let x = if self.positive { x.abs() } else { x };
        let x = limit(x, self.kind, self.min, self.max);
        if self.quant == 0 || self.step == 0.0 {
            return x;
        }
        let k = (x - self.offset) / self.step;
        let k = match self.quant {
            1 => k.ceil(),
            2 => k.floor(),
            _ => k.round(),
        };
        self.offset + k * self.step
    }
}

impl Shape for LimitShape {
    const NAME: &'static str = "limit";
    const TIMED: bool = false;

    fn defs() -> Vec<ParDef> {
        vec![
            ParDef::menu("type", "Limit", LIMIT_TYPES, "off").label("Type"),
            ParDef::float("min", "Limit", 0.0)
                .range(-1.0, 1.0)
                .label("Minimum"),
            ParDef::float("max", "Limit", 1.0)
                .range(-1.0, 1.0)
                .label("Maximum"),
            ParDef::toggle("positive", "Limit", false).label("Positive Only"),
            ParDef::menu("quantvalue", "Limit", &["off", "ceiling", "floor", "round"], "off")
                .label("Quantize Value")
                .labels(&["Off", "Ceiling", "Floor", "Round"]),
            ParDef::float("vstep", "Limit", 1.0)
                .range(0.0, 1.0)
                .label("Value Step"),
            ParDef::float("voffset", "Limit", 0.0)
                .range(0.0, 1.0)
                .label("Value Offset"),
        ]
    }

    fn configure(&mut self, p: &ParSet) {
        self.kind = p.num("type") as u8;
        self.min = p.num("min");
        self.max = p.num("max");
        self.positive = p.num("positive") != 0.0;
        self.quant = p.num("quantvalue") as u8;
        self.step = p.num("vstep");
        self.offset = p.num("voffset");
    }

    fn cook(&mut self, cx: &ShapeCx, out: &mut ChopData) -> Result<(), CookError> {
        let Some(input) = cx.inputs.first() else {
            out.clear();
            return Ok(());
        };
        let len = cx.out_len();
        self.layout.fit(out, input, len);
        let all = cx.scope.is_all();
        if all && len == input.num_samples() {
            for (o, &x) in out.samples_mut().iter_mut().zip(input.samples()) {
                *o = self.apply(x as f64) as f32;
            }
            return Ok(());
        }
        for c in 0..input.num_chans() {
            let src = input.chan(c);
            let src = &src[src.len() - len..];
            let dst = out.chan_mut(c);
            if !all && !cx.scope.matches(input.name(c)) {
                dst.copy_from_slice(src);
                continue;
            }
            for (o, &x) in dst.iter_mut().zip(src) {
                *o = self.apply(x as f64) as f32;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chop::shaping::testing::*;

    fn run(pars: &[(&str, crate::cook::ParValue)], xs: &[f32]) -> Vec<f32> {
        let mut l: LimitShape = shape(pars);
        let a = data(60.0, &[("a", xs)]);
        let n = xs.len() as i64;
        cook(&mut l, &frame(n, n, 60.0), &[&a], true).chan(0).to_vec()
    }

    #[test]
    fn clamp_loop_zigzag() {
        let xs = [-0.5, 0.25, 1.25, 2.75];
        assert_eq!(run(&[("type", s("clamp"))], &xs), [0.0, 0.25, 1.0, 1.0]);
        assert_eq!(run(&[("type", s("loop"))], &xs), [0.5, 0.25, 0.25, 0.75]);
        assert_eq!(run(&[("type", s("zigzag"))], &xs), [0.5, 0.25, 0.75, 0.75]);
        assert_eq!(run(&[], &xs), xs);
        let wide = [("type", s("loop")), ("min", f(-1.0)), ("max", f(1.0))];
        assert_eq!(run(&wide, &[1.5, -1.5]), [-0.5, 0.5]);
    }

    #[test]
    fn positive_and_quantize() {
        let q = [
            ("positive", f(1.0)),
            ("quantvalue", s("round")),
            ("vstep", f(0.25)),
        ];
        assert_eq!(run(&q, &[-0.3, 0.1, 0.9]), [0.25, 0.0, 1.0]);
        let fl = [
            ("quantvalue", s("floor")),
            ("vstep", f(0.5)),
            ("voffset", f(0.1)),
        ];
        assert_eq!(run(&fl, &[0.5, 0.7]), [0.1, 0.6]);
    }
}
