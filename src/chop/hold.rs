//! Hold CHOP: samples the channels of input 0 when input 1 turns on, and holds them.
//!
//! Input 1's channel of the same index (repeating; one channel holds them all) is on above 0.
//! With `sample = "offtoon"` a channel takes input 0's value on the sample where its hold input
//! turns on; with `whileon` it follows input 0 while on. Before its first sample, a channel
//! holds 0. Without input 1, input 0 passes through.

use crate::chop::shaping::{self, Chans, Shape, ShapeConfig, ShapeCx};
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind};
use crate::cook::par::{ParDef, ParSet};
use crate::cook::{ChopData, CookError};

/// The Hold CHOP kind.
pub struct Hold;

impl Kind for Hold {
    const NAME: &'static str = "hold";
    const SUMMARY: &'static str = "Hold CHOP: samples and holds input 0 when input 1 turns on";
    type Raw = shaping::Raw<HoldShape>;
    type Settings = ShapeConfig<HoldShape>;

    fn check(cx: &mut Checker, r: Self::Raw, refs: &mut OpRefs) -> Option<Self::Settings> {
        shaping::check(cx, r, refs)
    }
}

#[derive(Default, Clone, Copy)]
pub struct Held {
    was_on: bool,
    value: f32,
}

#[derive(Default)]
pub struct HoldShape {
    while_on: bool,
    chans: Chans<Held>,
}

impl Shape for HoldShape {
    const NAME: &'static str = "hold";
    const TIMED: bool = false;

    fn defs() -> Vec<ParDef> {
        vec![
            ParDef::menu("sample", "Hold", &["offtoon", "whileon"], "offtoon")
                .labels(&["Off to On", "While On"])
                .label("Sample"),
        ]
    }

    fn configure(&mut self, p: &ParSet) {
        self.while_on = p.text("sample") == "whileon";
    }

    fn cook(&mut self, cx: &ShapeCx, out: &mut ChopData) -> Result<(), CookError> {
        let Some(input) = cx.inputs.first() else {
            out.clear();
            return Ok(());
        };
        let len = cx.out_len();
        self.chans.follow(input, cx.scope);
        self.chans.layout.fit(out, input, len);
        let trig = cx.inputs.get(1).filter(|t| t.num_chans() > 0);
        for c in 0..input.num_chans() {
            let src = input.chan(c);
            let src = &src[src.len() - len..];
            let (Some(t), true) = (trig, self.chans.scoped[c]) else {
                out.chan_mut(c).copy_from_slice(src);
                continue;
            };
            let tc = t.chan(c % t.num_chans());
            let h = &mut self.chans.states[c];
            for (j, o) in out.chan_mut(c).iter_mut().enumerate() {
                // The hold input's sample at the same step (its last when shorter).
                let on = tc[(tc.len() + j).saturating_sub(len).min(tc.len() - 1)] > 0.0;
                if on && (self.while_on || !h.was_on) {
                    h.value = src[j];
                }
                h.was_on = on;
                *o = h.value;
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.chans.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chop::shaping::testing::*;

    #[test]
    fn samples_when_the_hold_input_turns_on() {
        let mut h: HoldShape = shape(&[]);
        let v = data(60.0, &[("a", &[1.0, 2.0, 3.0, 4.0]), ("b", &[5.0, 6.0, 7.0, 8.0])]);
        let t = data(60.0, &[("t", &[0.0, 1.0, 1.0, 0.0])]);
        let out = cook(&mut h, &frame(4, 4, 60.0), &[&v, &t], true);
        assert_eq!(out.chan(0), [0.0, 2.0, 2.0, 2.0]);
        assert_eq!(out.chan(1), [0.0, 6.0, 6.0, 6.0]);
        let mut w: HoldShape = shape(&[("sample", s("whileon"))]);
        let out = cook(&mut w, &frame(4, 4, 60.0), &[&v, &t], true);
        assert_eq!(out.chan(0), [0.0, 2.0, 3.0, 3.0]);
        // Not sliced: one sample a cook; the hold stays across cooks.
        let one = data(60.0, &[("a", &[9.0]), ("b", &[9.0])]);
        let on = data(60.0, &[("t", &[1.0])]);
        let out = cook(&mut h, &frame(5, 1, 60.0), &[&one, &on], false);
        assert_eq!(out.samples(), [9.0, 9.0]);
    }
}
