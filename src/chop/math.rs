//! Math CHOP: per-sample arithmetic on channels, combining the channels of an input and the
//! inputs of the operator, then pre-offset, gain, post-offset, a from/to range and rounding.
//!
//! Per sample, in TouchDesigner's order: `preop` on every channel; `chanop` combines the
//! channels of each input into one (named as its first); `chopop` combines the inputs, channels
//! paired by index (each input's channels repeating up to the longest) or by name (input 0's
//! channels, others' of the same name); `postop`; then `(x + preoff) * gain + postoff`; then
//! `fromrange` → `torange`; then `integer`. Without `chopop`, several inputs are merged.

use crate::chop::shaping::{self, layout, Layout, Shape, ShapeConfig, ShapeCx};
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind};
use crate::cook::par::{ParDef, ParSet};
use crate::cook::{ChopData, CookError};

/// The Math CHOP kind.
pub struct Math;

impl Kind for Math {
    const NAME: &'static str = "math";
    const SUMMARY: &'static str = "Math CHOP: offset, gain, range, combine channels and inputs";
    type Raw = shaping::Raw<MathShape>;
    type Settings = ShapeConfig<MathShape>;

    fn check(cx: &mut Checker, r: Self::Raw, refs: &mut OpRefs) -> Option<Self::Settings> {
        shaping::check(cx, r, refs)
    }
}

const UNARY: &[&str] = &["off", "negate", "pos", "root", "square", "inverse"];
const COMBINE: &[&str] = &["off", "add", "sub", "mul", "div", "avg", "min", "max", "len"];
const INTEGER: &[&str] = &["off", "ceiling", "floor", "round"];

#[derive(Default)]
pub struct MathShape {
    preop: u8,
    chanop: u8,
    chopop: u8,
    postop: u8,
    by_name: bool,
    preoff: f64,
    gain: f64,
    postoff: f64,
    from: (f64, f64),
    to: (f64, f64),
    integer: u8,
    /// Output channel names of the last general cook (reused when unchanged).
    names: Vec<String>,
    layout: Layout,
    /// Scratch for combining inputs.
    acc: Vec<f64>,
}

fn unary(op: u8, x: f64) -> f64 {
    match op {
        1 => -x,
        2 => x.abs(),
        3 => x.sqrt(),
        4 => x * x,
        5 => 1.0 / x,
        _ => x,
    }
}

/// Folds `xs` with the combine operation `op` (1 add … 8 length).
fn combine(op: u8, xs: impl Iterator<Item = f64>) -> f64 {
    let mut n = 0usize;
    let mut acc = 0.0;
    for x in xs {
        acc = if n == 0 {
            match op {
                8 => x * x,
                _ => x,
            }
        } else {
            match op {
                1 | 5 => acc + x,
                2 => acc - x,
                3 => acc * x,
                4 => acc / x,
                6 => acc.min(x),
                7 => acc.max(x),
                8 => acc + x * x,
                _ => x,
            }
        };
        n += 1;
    }
    match op {
        5 if n > 0 => acc / n as f64,
        8 => acc.sqrt(),
        _ => acc,
    }
}

impl MathShape {
    /// Everything after the combining: post-op, mult-add, range, integer.
    fn finish(&self, x: f64) -> f64 {
        let x = (unary(self.postop, x) + self.preoff) * self.gain + self.postoff;
        let (f0, f1) = self.from;
        let (t0, t1) = self.to;
        let x = if (f0, f1, t0, t1) == (0.0, 1.0, 0.0, 1.0) {
            x
        } else {
            t0 + (x - f0) * (t1 - t0) / (f1 - f0)
        };
        match self.integer {
            1 => x.ceil(),
            2 => x.floor(),
            3 => x.round(),
            _ => x,
        }
    }

    /// Inputs combined channel by channel, paired by index, every channel in scope: no
    /// allocation.
    fn cook_by_index(&mut self, cx: &ShapeCx, out: &mut ChopData) {
        let len = cx.out_len();
        // The output is named after the first of the inputs with the most channels.
        let most = cx.inputs.iter().map(|d| d.num_chans()).max().unwrap_or(0);
        let Some(widest) = cx.inputs.iter().find(|d| d.num_chans() == most) else {
            return;
        };
        self.layout.fit(out, widest, len);
        let n = widest.num_chans() * len;
        if cx.inputs.iter().all(|d| d.samples().len() == n) {
            // Same channels and lengths everywhere: one flat pass per input.
            let mut acc = std::mem::take(&mut self.acc);
            acc.clear();
            acc.resize(n, 0.0);
            let pre = self.preop;
            for (k, d) in cx.inputs.iter().enumerate() {
                let xs = d.samples().iter().map(|&x| unary(pre, x as f64));
                let pairs = acc.iter_mut().zip(xs);
                // One loop per operation, so that the loop body has no branch.
                match (k, self.chopop) {
                    (0, 8) => pairs.for_each(|(a, x)| *a = x * x),
                    (0, _) => pairs.for_each(|(a, x)| *a = x),
                    (_, 1 | 5) => pairs.for_each(|(a, x)| *a += x),
                    (_, 2) => pairs.for_each(|(a, x)| *a -= x),
                    (_, 3) => pairs.for_each(|(a, x)| *a *= x),
                    (_, 4) => pairs.for_each(|(a, x)| *a /= x),
                    (_, 6) => pairs.for_each(|(a, x)| *a = a.min(x)),
                    (_, 7) => pairs.for_each(|(a, x)| *a = a.max(x)),
                    _ => pairs.for_each(|(a, x)| *a += x * x),
                }
            }
            let k = cx.inputs.len() as f64;
            for (o, &a) in out.samples_mut().iter_mut().zip(&acc) {
                let a = match self.chopop {
                    5 => a / k,
                    8 => a.sqrt(),
                    _ => a,
                };
                *o = self.finish(a) as f32;
            }
            self.acc = acc;
            return;
        }
        for c in 0..widest.num_chans() {
            for j in 0..len {
                let xs = cx.inputs.iter().filter(|d| d.num_chans() > 0).map(|d| {
                    let ch = d.chan(c % d.num_chans());
                    unary(
                        self.preop,
                        ch[(ch.len() + j).saturating_sub(len).min(ch.len() - 1)] as f64,
                    )
                });
                let v = self.finish(combine(self.chopop, xs));
                out.chan_mut(c)[j] = v as f32;
            }
        }
    }

    /// The general path: combining channels or inputs, or merging several inputs.
    fn cook_general(&mut self, cx: &ShapeCx, out: &mut ChopData) {
        let len = cx.out_len();
        let at = |d: &ChopData, c: usize, j: usize| -> f64 {
            let ch = d.chan(c);
            ch[(ch.len() + j).saturating_sub(len).min(ch.len() - 1)] as f64
        };
        // Each input as (name, samples) after preop and chanop; only input 0's scoped channels.
        let mut per_input: Vec<Vec<(String, Vec<f64>)>> = Vec::new();
        for (k, d) in cx.inputs.iter().enumerate() {
            let chans: Vec<usize> = (0..d.num_chans())
                .filter(|&c| k > 0 || cx.scope.matches(d.name(c)))
                .collect();
            let mut list: Vec<(String, Vec<f64>)> = chans
                .iter()
                .map(|&c| {
                    let v = (0..len).map(|j| unary(self.preop, at(d, c, j))).collect();
                    (d.name(c).to_string(), v)
                })
                .collect();
            if self.chanop != 0 && !list.is_empty() {
                let v = (0..len)
                    .map(|j| combine(self.chanop, list.iter().map(|(_, v)| v[j])))
                    .collect();
                list = vec![(list[0].0.clone(), v)];
            }
            per_input.push(list);
        }
        let combined = super::shaping::combine_inputs(
            per_input,
            self.chopop != 0,
            self.by_name,
            len,
            |it| combine(self.chopop, it),
        );
        let mut names: Vec<String> = combined.iter().map(|(n, _)| n.clone()).collect();
        // Input 0's channels outside the scope pass through, in place of nothing.
        let input0 = cx.inputs.first();
        let passed: Vec<usize> = input0.map_or(Vec::new(), |d| {
            (0..d.num_chans())
                .filter(|&c| !cx.scope.matches(d.name(c)) && !names.iter().any(|n| n == d.name(c)))
                .collect()
        });
        if let Some(d) = input0 {
            names.extend(passed.iter().map(|&c| d.name(c).to_string()));
        }
        if names != self.names {
            self.names = names;
        }
        layout(out, &self.names, len, input0.map(|c| &**c));
        for (i, (_, v)) in combined.iter().enumerate() {
            for (o, &x) in out.chan_mut(i).iter_mut().zip(v) {
                *o = self.finish(x) as f32;
            }
        }
        if let Some(d) = input0 {
            for (i, &c) in passed.iter().enumerate() {
                let src = d.chan(c);
                out.chan_mut(combined.len() + i)
                    .copy_from_slice(&src[src.len() - len..]);
            }
        }
    }
}

impl Shape for MathShape {
    const NAME: &'static str = "math";
    const TIMED: bool = false;

    fn defs() -> Vec<ParDef> {
        vec![
            ParDef::menu("preop", "OP", UNARY, "off").label("Channel Pre OP"),
            ParDef::menu("chanop", "OP", COMBINE, "off").label("Combine Channels"),
            ParDef::menu("chopop", "OP", COMBINE, "off").label("Combine CHOPs"),
            ParDef::menu("postop", "OP", UNARY, "off").label("Channel Post OP"),
            ParDef::menu("match", "OP", &["index", "name"], "index")
                .label("Match by")
                .labels(&["Channel Number", "Channel Name"]),
            ParDef::menu("integer", "OP", INTEGER, "off").label("Integer"),
            ParDef::float("preoff", "Mult-Add", 0.0)
                .range(-1.0, 1.0)
                .label("Pre-Add"),
            ParDef::float("gain", "Mult-Add", 1.0)
                .range(-1.0, 1.0)
                .label("Multiply"),
            ParDef::float("postoff", "Mult-Add", 0.0)
                .range(-1.0, 1.0)
                .label("Post-Add"),
            ParDef::float("fromrange1", "Range", 0.0).label("From Range"),
            ParDef::float("fromrange2", "Range", 1.0).label("From Range"),
            ParDef::float("torange1", "Range", 0.0).label("To Range"),
            ParDef::float("torange2", "Range", 1.0).label("To Range"),
        ]
    }

    fn configure(&mut self, p: &ParSet) {
        self.preop = p.num("preop") as u8;
        self.chanop = p.num("chanop") as u8;
        self.chopop = p.num("chopop") as u8;
        self.postop = p.num("postop") as u8;
        self.by_name = p.text("match") == "name";
        self.integer = p.num("integer") as u8;
        self.preoff = p.num("preoff");
        self.gain = p.num("gain");
        self.postoff = p.num("postoff");
        self.from = (p.num("fromrange1"), p.num("fromrange2"));
        self.to = (p.num("torange1"), p.num("torange2"));
    }

    fn cook(&mut self, cx: &ShapeCx, out: &mut ChopData) -> Result<(), CookError> {
        let Some(input) = cx.inputs.first() else {
            out.clear();
            return Ok(());
        };
        let by_index = self.chanop == 0 && self.chopop != 0 && !self.by_name;
        if cx.inputs.len() > 1 && by_index && cx.scope.is_all() {
            self.cook_by_index(cx, out);
            return Ok(());
        }
        if cx.inputs.len() > 1 || self.chanop != 0 {
            self.cook_general(cx, out);
            return Ok(());
        }
        // One input, channel by channel: the common case, with no allocation.
        let len = cx.out_len();
        self.layout.fit(out, input, len);
        let all = cx.scope.is_all();
        if all && len == input.num_samples() {
            // Every channel, every sample: one flat pass.
            for (o, &x) in out.samples_mut().iter_mut().zip(input.samples()) {
                *o = self.finish(unary(self.preop, x as f64)) as f32;
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
                *o = self.finish(unary(self.preop, x as f64)) as f32;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chop::shaping::testing::*;

    #[test]
    fn mult_add_range_and_integer_follow_the_formula() {
        let mut m: MathShape = shape(&[("preoff", f(1.0)), ("gain", f(2.0)), ("postoff", f(0.5))]);
        let a = data(60.0, &[("a", &[0.25]), ("b", &[-1.0])]);
        let out = cook(&mut m, &frame(1, 1, 60.0), &[&a], false);
        assert_eq!(out.names(), ["a", "b"]);
        assert_eq!(out.chan(0), [3.0]);
        assert_eq!(out.chan(1), [0.5]);
        let mut r: MathShape = shape(&[
            ("fromrange1", f(0.0)),
            ("fromrange2", f(127.0)),
            ("torange1", f(-1.0)),
            ("torange2", f(1.0)),
            ("integer", s("round")),
        ]);
        let a = data(60.0, &[("cc", &[0.0, 63.5, 127.0, 100.0])]);
        let out = cook(&mut r, &frame(4, 4, 60.0), &[&a], true);
        assert_eq!(out.chan(0), [-1.0, 0.0, 1.0, 1.0]);
        // Not time-sliced after dropped frames: one sample, the newest.
        let out = cook(&mut r, &frame(4, 4, 60.0), &[&a], false);
        assert_eq!(out.chan(0), [1.0]);
    }

    #[test]
    fn pre_and_post_ops() {
        let mut m: MathShape = shape(&[("preop", s("negate")), ("postop", s("square"))]);
        let a = data(60.0, &[("a", &[3.0])]);
        assert_eq!(cook(&mut m, &frame(1, 1, 60.0), &[&a], false).chan(0), [9.0]);
        let mut m: MathShape = shape(&[("preop", s("pos")), ("postop", s("inverse"))]);
        let a = data(60.0, &[("a", &[-4.0])]);
        assert_eq!(cook(&mut m, &frame(1, 1, 60.0), &[&a], false).chan(0), [0.25]);
    }

    #[test]
    fn combine_channels_and_inputs() {
        let a = data(60.0, &[("x", &[3.0]), ("y", &[4.0])]);
        let mut len: MathShape = shape(&[("chanop", s("len"))]);
        let out = cook(&mut len, &frame(1, 1, 60.0), &[&a], false);
        assert_eq!(out.names(), ["x"]);
        assert_eq!(out.chan(0), [5.0]);
        let b = data(60.0, &[("k", &[10.0])]);
        let mut add: MathShape = shape(&[("chopop", s("add"))]);
        let out = cook(&mut add, &frame(1, 1, 60.0), &[&a, &b], false);
        // By index, the one channel of the second input repeats.
        assert_eq!(out.names(), ["x", "y"]);
        assert_eq!(out.samples(), [13.0, 14.0]);
        let c = data(60.0, &[("y", &[2.0])]);
        let mut by_name: MathShape = shape(&[("chopop", s("mul")), ("match", s("name"))]);
        let out = cook(&mut by_name, &frame(1, 1, 60.0), &[&a, &c], false);
        assert_eq!(out.samples(), [3.0, 8.0]);
        let mut avg: MathShape = shape(&[("chopop", s("avg"))]);
        let out = cook(&mut avg, &frame(1, 1, 60.0), &[&a, &c], false);
        assert_eq!(out.samples(), [2.5, 3.0]);
        // No chopop: the inputs are merged.
        let mut merge: MathShape = shape(&[]);
        let out = cook(&mut merge, &frame(1, 1, 60.0), &[&a, &b], false);
        assert_eq!(out.names(), ["x", "y", "k"]);
    }

    #[test]
    fn a_shorter_input_holds_its_last_sample_against_a_sliced_one() {
        let a = data(60.0, &[("x", &[1.0, 2.0, 3.0])]);
        let b = data(60.0, &[("k", &[10.0])]);
        let mut add: MathShape = shape(&[("chopop", s("add"))]);
        let out = cook(&mut add, &frame(3, 3, 60.0), &[&a, &b], true);
        assert_eq!(out.chan(0), [11.0, 12.0, 13.0]);
    }

    #[test]
    fn division_by_zero_is_left_to_the_sanitizer() {
        let mut m: MathShape = shape(&[("preop", s("inverse"))]);
        let a = data(60.0, &[("a", &[0.0])]);
        let out = cook(&mut m, &frame(1, 1, 60.0), &[&a], false);
        assert!(!out.chan(0)[0].is_finite());
    }
}
