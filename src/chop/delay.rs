//! Delay CHOP: channels as they were `delay` seconds ago.
//!
//! Each channel keeps the last `delay` seconds of samples (one per frame, or per sample of a
//! time-sliced input; after dropped frames the held input fills the frames missed). Until that
//! much has arrived, the first sample stands for the time before it. Memory is bounded:
//! channels × delay samples may not pass [`MAX_SAMPLES`]; a longer delay is a cook error.

use crate::chop::shaping::{self, Chans, Shape, ShapeConfig, ShapeCx};
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind};
use crate::cook::par::{ParDef, ParSet};
use crate::cook::{ChopData, CookError};

/// The Delay CHOP kind.
pub struct Delay;

impl Kind for Delay {
    const NAME: &'static str = "delay";
    const SUMMARY: &'static str = "Delay CHOP: channels as they were some time ago";
    type Raw = shaping::Raw<DelayShape>;
    type Settings = ShapeConfig<DelayShape>;

    fn check(cx: &mut Checker, r: Self::Raw, refs: &mut OpRefs) -> Option<Self::Settings> {
        shaping::check(cx, r, refs)
    }
}

/// Most samples a delay or trail operator keeps, over all its channels (64 MB of f32).
pub const MAX_SAMPLES: usize = 16 << 20;

/// A ring of the last samples of one channel, oldest at `pos` once full.
#[derive(Default, Clone)]
pub struct Ring {
    buf: Vec<f32>,
    pos: usize,
    filled: usize,
}

impl Ring {
    /// Makes room for `n` samples, keeping nothing when the size changes.
    pub fn size(&mut self, n: usize) {
        if self.buf.len() != n {
            *self = Ring {
                buf: vec![0.0; n],
                pos: 0,
                filled: 0,
            };
        }
    }

    /// The sample `n` samples before the next one pushed (the first one pushed while the ring
    /// is not that full), then pushes `x`.
    pub fn delay_push(&mut self, x: f32) -> f32 {
        let n = self.buf.len();
        if n == 0 {
            return x;
        }
        let out = if self.filled == n {
            self.buf[self.pos]
        } else if self.filled == 0 {
            x
        } else {
            self.buf[0]
        };
        self.buf[self.pos] = x;
        self.pos = (self.pos + 1) % n;
        self.filled = (self.filled + 1).min(n);
        out
    }
}

#[derive(Default)]
pub struct DelayShape {
    delay: f64,
    chans: Chans<Ring>,
}

impl Shape for DelayShape {
    const NAME: &'static str = "delay";

    fn defs() -> Vec<ParDef> {
        vec![
            ParDef::float("delay", "Delay", 1.0)
                .range(0.0, 10.0)
                .clamp_min(0.0)
                .label("Delay"),
            ParDef::pulse("resetpulse", "Delay").label("Reset Pulse"),
        ]
    }

    fn configure(&mut self, p: &ParSet) {
        self.delay = p.num("delay");
    }

    fn cook(&mut self, cx: &ShapeCx, out: &mut ChopData) -> Result<(), CookError> {
        let Some(input) = cx.inputs.first() else {
            out.clear();
            return Ok(());
        };
        let base = if cx.sliced {
            cx.dt()
        } else {
            1.0 / cx.frame.rate
        };
        let n = (self.delay / base).round().max(0.0) as usize;
        if n.saturating_mul(input.num_chans()) > MAX_SAMPLES {
            return Err(CookError::Other(format!(
                "a delay of {} s is {n} samples for each of {} channels, more than {MAX_SAMPLES} in all",
                self.delay,
                input.num_chans()
            )));
        }
        let len = cx.out_len();
        let copies = if cx.sliced {
            1
        } else {
            cx.frame.step.max(1) as usize
        };
        self.chans.follow(input, cx.scope);
        self.chans.layout.fit(out, input, len);
        for c in 0..input.num_chans() {
            let src = input.chan(c);
            let src = &src[src.len() - len..];
            if !self.chans.scoped[c] {
                out.chan_mut(c).copy_from_slice(src);
                continue;
            }
            let ring = &mut self.chans.states[c];
            ring.size(n);
            for (o, &x) in out.chan_mut(c).iter_mut().zip(src) {
                for _ in 1..copies {
                    ring.delay_push(x);
                }
                *o = ring.delay_push(x);
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.chans.clear();
    }

    /// The output moves while the delayed past does.
    fn busy(&self) -> bool {
        self.delay > 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chop::shaping::testing::*;

    #[test]
    fn delays_by_frames_and_counts_dropped_ones() {
        // 0.3 s at 10 fps: three frames.
        let mut d: DelayShape = shape(&[("delay", f(0.3))]);
        let mut got = Vec::new();
        for k in 1..=6 {
            let a = data(10.0, &[("a", &[k as f32])]);
            got.push(cook(&mut d, &frame(k, 1, 10.0), &[&a], false).chan(0)[0]);
        }
        assert_eq!(got, [1.0, 1.0, 1.0, 1.0, 2.0, 3.0]);
        // Two frames dropped: 9 stands for frames 7 to 9; three frames ago is frame 6.
        let a = data(10.0, &[("a", &[9.0])]);
        assert_eq!(cook(&mut d, &frame(9, 3, 10.0), &[&a], false).chan(0), [6.0]);
    }

    #[test]
    fn sliced_samples_and_the_memory_bound() {
        let mut d: DelayShape = shape(&[("delay", f(0.2))]);
        let a = data(10.0, &[("a", &[1.0, 2.0, 3.0, 4.0])]);
        assert_eq!(cook(&mut d, &frame(4, 4, 10.0), &[&a], true).chan(0), [1.0, 1.0, 1.0, 2.0]);
        let mut long: DelayShape = shape(&[("delay", f(1e6))]);
        let scope = crate::pattern::Pattern::all();
        let f = frame(1, 1, 1000.0);
        let cx = ShapeCx {
            frame: &f,
            inputs: vec![std::borrow::Cow::Owned(a)],
            sliced: false,
            scope: &scope,
        };
        assert!(long.cook(&cx, &mut ChopData::default()).is_err());
    }
}
