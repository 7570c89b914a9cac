//! Trail CHOP: a history of channels, the last `wlength` seconds of them, for plots and for
//! scripts that look back.
//!
//! Every cook appends input 0's new samples (all of a time-sliced input; otherwise its value,
//! once per frame since the last cook, so dropped frames keep the time axis) to each channel's
//! history. The output holds the history, oldest first, growing until it is `wlength` seconds
//! long; its start is the index of its oldest sample. Memory is bounded as the Delay CHOP's.

use crate::chop::delay::MAX_SAMPLES;
use crate::chop::shaping::{self, layout, Shape, ShapeConfig, ShapeCx};
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind};
use crate::cook::par::{ParDef, ParSet};
use crate::cook::{ChopData, CookError};

/// The Trail CHOP kind.
pub struct Trail;

impl Kind for Trail {
    const NAME: &'static str = "trail";
    const SUMMARY: &'static str = "Trail CHOP: the recent history of channels";
    type Raw = shaping::Raw<TrailShape>;
    type Settings = ShapeConfig<TrailShape>;

    fn check(cx: &mut Checker, r: Self::Raw, refs: &mut OpRefs) -> Option<Self::Settings> {
        shaping::check(cx, r, refs)
    }
}

#[derive(Default)]
pub struct TrailShape {
    wlength: f64,
    /// Samples in the history (the same for every channel).
    filled: usize,
    cleared: bool,
}

impl Shape for TrailShape {
    const NAME: &'static str = "trail";

    fn defs() -> Vec<ParDef> {
        vec![
            ParDef::float("wlength", "Trail", 5.0)
                .range(0.0, 10.0)
                .clamp_min(0.0)
                .label("Window Length"),
            ParDef::pulse("resetpulse", "Trail").label("Reset Pulse"),
        ]
    }

    fn configure(&mut self, p: &ParSet) {
        self.wlength = p.num("wlength");
    }

    fn cook(&mut self, cx: &ShapeCx, out: &mut ChopData) -> Result<(), CookError> {
        let Some(input) = cx.inputs.first() else {
            out.clear();
            return Ok(());
        };
        let (rate, new) = if cx.sliced {
            (input.rate, input.num_samples())
        } else {
            (cx.frame.rate, cx.frame.step.max(1) as usize)
        };
        let window = ((self.wlength * rate).round() as usize).max(1);
        if window.saturating_mul(input.num_chans()) > MAX_SAMPLES {
            return Err(CookError::Other(format!(
                "a trail of {} s is {window} samples for each of {} channels, more than {MAX_SAMPLES} in all",
                self.wlength,
                input.num_chans()
            )));
        }
        let restart = std::mem::take(&mut self.cleared)
            || out.names() != input.names()
            || out.num_samples() != self.filled.max(1)
            || out.rate != rate;
        if restart {
            self.filled = 0;
            layout(out, input.names(), 1, None);
        }
        let old = self.filled;
        let len = (old + new).min(window);
        // The history keeps its newest `keep` samples, moved to the front, then the newest
        // `take` of the new samples follow: the buffer is reused, in place.
        let keep = len.saturating_sub(new).min(old);
        let take = len - keep;
        if keep > 0 {
            for c in 0..out.num_chans() {
                out.chan_mut(c).copy_within(old - keep..old, 0);
            }
        }
        out.set_num_samples(len);
        for c in 0..input.num_chans() {
            let src = input.chan(c);
            let dst = &mut out.chan_mut(c)[keep..];
            if cx.sliced {
                dst.copy_from_slice(&src[new - take..]);
            } else {
                dst.fill(src[src.len() - 1]);
            }
        }
        out.rate = rate;
        let end = if cx.sliced {
            input.end()
        } else {
            (cx.frame.frame as f64 * rate / cx.frame.rate).round() as i64
        };
        out.start = end + 1 - len as i64;
        self.filled = len;
        Ok(())
    }

    fn pulse(&mut self, name: &str) {
        if name == "resetpulse" {
            self.reset();
        }
    }

    fn reset(&mut self) {
        self.cleared = true;
        self.filled = 0;
    }

    /// A trail records every frame, changed or not.
    fn busy(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chop::shaping::testing::*;

    #[test]
    fn grows_to_the_window_and_slides() {
        // 0.4 s at 10 fps: four frames.
        let mut t: TrailShape = shape(&[("wlength", f(0.4))]);
        let mut out = ChopData::new(10.0);
        let scope = crate::pattern::Pattern::all();
        let run = |t: &mut TrailShape, k: i64, step: i64, x: f32, out: &mut ChopData| {
            let a = data(10.0, &[("a", &[x])]);
            let f = frame(k, step, 10.0);
            let cx = ShapeCx {
                frame: &f,
                inputs: vec![std::borrow::Cow::Borrowed(&a)],
                sliced: false,
                scope: &scope,
            };
            t.cook(&cx, out).unwrap();
        };
        run(&mut t, 1, 1, 1.0, &mut out);
        run(&mut t, 2, 1, 2.0, &mut out);
        assert_eq!(out.chan(0), [1.0, 2.0]);
        assert_eq!((out.start, out.end()), (1, 2));
        run(&mut t, 3, 1, 3.0, &mut out);
        run(&mut t, 4, 1, 4.0, &mut out);
        run(&mut t, 5, 1, 5.0, &mut out);
        assert_eq!(out.chan(0), [2.0, 3.0, 4.0, 5.0]);
        // Two dropped frames: 8 fills frames 6 to 8.
        run(&mut t, 8, 3, 8.0, &mut out);
        assert_eq!(out.chan(0), [5.0, 8.0, 8.0, 8.0]);
        assert_eq!(out.start, 5);
        t.pulse("resetpulse");
        run(&mut t, 9, 1, 9.0, &mut out);
        assert_eq!(out.chan(0), [9.0]);
    }
}
