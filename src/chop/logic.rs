//! Logic CHOP: turns channels into on/off (0 or 1) and combines them.
//!
//! Per sample: `convert` makes each input value binary (`nonzero`: on when not 0; `pos`: on when
//! above 0; `bound`: on when within `boundmin`…`boundmax`); `preop` then transforms each channel
//! (`invert`; `rise` / `fall`: on for the one sample where it turns on / off; `toggle`: flips at
//! each turn on); `chanop` combines the channels of each input (`and`, `or`, `xor`, `nand`,
//! `nor`, `eqv`: on when all agree), `chopop` the inputs, channels paired by index (repeating
//! up to the longest input) or by name. Without `chopop`, several inputs are merged.

use crate::chop::shaping::{self, layout, Chans, Shape, ShapeConfig, ShapeCx};
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind};
use crate::cook::par::{ParDef, ParSet};
use crate::cook::{ChopData, CookError};

/// The Logic CHOP kind.
pub struct Logic;

impl Kind for Logic {
    const NAME: &'static str = "logic";
    const SUMMARY: &'static str = "Logic CHOP: on/off conversions and combinations";
    type Raw = shaping::Raw<LogicShape>;
    type Settings = ShapeConfig<LogicShape>;

    fn check(cx: &mut Checker, r: Self::Raw, refs: &mut OpRefs) -> Option<Self::Settings> {
        shaping::check(cx, r, refs)
    }
}

const PREOP: &[&str] = &["off", "invert", "toggle", "rise", "fall"];
const COMBINE: &[&str] = &["off", "and", "or", "xor", "nand", "nor", "eqv"];

/// Per channel of input 0: its previous binary value and the toggle state.
#[derive(Default, Clone, Copy)]
pub struct Edge {
    prev: bool,
    toggled: bool,
}

#[derive(Default)]
pub struct LogicShape {
    convert: u8,
    bounds: (f64, f64),
    preop: u8,
    chanop: u8,
    chopop: u8,
    by_name: bool,
    chans: Chans<Edge>,
    names: Vec<String>,
}

fn fold(op: u8, xs: impl Iterator<Item = bool>) -> bool {
    let (mut all, mut any, mut odd) = (true, false, false);
    for x in xs {
        all &= x;
        any |= x;
        odd ^= x;
    }
    match op {
        1 => all,
        2 => any,
        3 => odd,
        4 => !all,
        5 => !any,
        6 => all || !any,
        _ => any,
    }
}

impl LogicShape {
    fn binary(&self, x: f32) -> bool {
        let x = x as f64;
        match self.convert {
            1 => x > 0.0,
            2 => {
                let (a, b) = self.bounds;
                x >= a.min(b) && x <= a.max(b)
            }
            _ => x != 0.0,
        }
    }

    /// `preop` on one binary sample; `edge` is the channel's state (input 0 only).
    fn pre(&self, on: bool, edge: Option<&mut Edge>) -> bool {
        let Some(e) = edge else {
            return if self.preop == 1 { !on } else { on };
        };
        let was = std::mem::replace(&mut e.prev, on);
        match self.preop {
            1 => !on,
            3 => on && !was,
            4 => !on && was,
            2 => {
                if on && !was {
                    e.toggled = !e.toggled;
                }
                e.toggled
            }
            _ => on,
        }
    }
}

impl Shape for LogicShape {
    const NAME: &'static str = "logic";
    const TIMED: bool = false;

    fn defs() -> Vec<ParDef> {
        vec![
            ParDef::menu("convert", "Logic", &["nonzero", "pos", "bound"], "nonzero")
                .label("Convert Input")
                .labels(&[
                    "Off When Zero",
                    "Off When Zero Or Less",
                    "Off When Outside Bounds",
                ]),
            ParDef::float("boundmin", "Logic", 0.0).label("Bounds"),
            ParDef::float("boundmax", "Logic", 1.0).label("Bounds"),
            ParDef::menu("preop", "Logic", PREOP, "off")
                .label("Channel Pre OP")
                .labels(&["Off", "Invert", "Toggle", "Rising Edge", "Falling Edge"]),
            ParDef::menu("chanop", "Logic", COMBINE, "off").label("Combine Channels"),
            ParDef::menu("chopop", "Logic", COMBINE, "off").label("Combine CHOPs"),
            ParDef::menu("match", "Logic", &["index", "name"], "index")
                .label("Match by")
                .labels(&["Channel Number", "Channel Name"]),
        ]
    }

    fn configure(&mut self, p: &ParSet) {
        self.convert = p.num("convert") as u8;
        self.bounds = (p.num("boundmin"), p.num("boundmax"));
        self.preop = p.num("preop") as u8;
        self.chanop = p.num("chanop") as u8;
        self.chopop = p.num("chopop") as u8;
        self.by_name = p.text("match") == "name";
    }

    fn cook(&mut self, cx: &ShapeCx, out: &mut ChopData) -> Result<(), CookError> {
        let Some(input) = cx.inputs.first() else {
            out.clear();
            return Ok(());
        };
        let len = cx.out_len();
        let mut chans = std::mem::take(&mut self.chans);
        chans.follow(input, cx.scope);
        if cx.inputs.len() == 1 && self.chanop == 0 {
            chans.layout.fit(out, input, len);
            if chans.all && len == 1 && input.num_samples() == 1 {
                for ((o, &x), e) in out
                    .samples_mut()
                    .iter_mut()
                    .zip(input.samples())
                    .zip(&mut chans.states)
                {
                    *o = f32::from(u8::from(self.pre(self.binary(x), Some(e))));
                }
                self.chans = chans;
                return Ok(());
            }
            for c in 0..input.num_chans() {
                let src = input.chan(c);
                let src = &src[src.len() - len..];
                if !chans.scoped[c] {
                    out.chan_mut(c).copy_from_slice(src);
                    continue;
                }
                let e = &mut chans.states[c];
                for (o, &x) in out.chan_mut(c).iter_mut().zip(src) {
                    *o = f32::from(u8::from(self.pre(self.binary(x), Some(e))));
                }
            }
            self.chans = chans;
            return Ok(());
        }
        // Each input as (name, samples) after convert, preop and chanop.
        let mut per_input: Vec<Vec<(String, Vec<bool>)>> = Vec::new();
        for (k, d) in cx.inputs.iter().enumerate() {
            let mut list = Vec::new();
            for c in 0..d.num_chans() {
                if k == 0 && !chans.scoped[c] {
                    continue;
                }
                let src = d.chan(c);
                let src = &src[src.len().saturating_sub(len)..];
                let mut edge = (k == 0).then(|| &mut chans.states[c]);
                let v: Vec<bool> = (0..len)
                    .map(|j| {
                        let x = src[j.min(src.len() - 1)];
                        self.pre(self.binary(x), edge.as_deref_mut())
                    })
                    .collect();
                list.push((d.name(c).to_string(), v));
            }
            if self.chanop != 0 && !list.is_empty() {
                let v = (0..len)
                    .map(|j| fold(self.chanop, list.iter().map(|(_, v)| v[j])))
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
            |it| fold(self.chopop, it),
        );
        let mut names: Vec<String> = combined.iter().map(|(n, _)| n.clone()).collect();
        let passed: Vec<usize> = (0..input.num_chans())
            .filter(|&c| !chans.scoped[c] && !names.iter().any(|n| n == input.name(c)))
            .collect();
        names.extend(passed.iter().map(|&c| input.name(c).to_string()));
        if names != self.names {
            self.names = names;
        }
        layout(out, &self.names, len, Some(input));
        for (i, (_, v)) in combined.iter().enumerate() {
            for (o, &b) in out.chan_mut(i).iter_mut().zip(v) {
                *o = f32::from(u8::from(b));
            }
        }
        for (i, &c) in passed.iter().enumerate() {
            let src = input.chan(c);
            out.chan_mut(combined.len() + i)
                .copy_from_slice(&src[src.len() - len..]);
        }
        self.chans = chans;
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
    fn conversions() {
        let a = data(60.0, &[("a", &[-1.0, 0.0, 0.5, 2.0])]);
        let run = |pars: &[(&str, crate::cook::ParValue)]| {
            let mut l: LogicShape = shape(pars);
            cook(&mut l, &frame(4, 4, 60.0), &[&a], true).chan(0).to_vec()
        };
        assert_eq!(run(&[]), [1.0, 0.0, 1.0, 1.0]);
        assert_eq!(run(&[("convert", s("pos"))]), [0.0, 0.0, 1.0, 1.0]);
        assert_eq!(run(&[("convert", s("bound"))]), [0.0, 1.0, 1.0, 0.0]);
        assert_eq!(run(&[("preop", s("invert"))]), [0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn edges_keep_state_across_cooks_and_dropped_frames() {
        let mut on: LogicShape = shape(&[("preop", s("rise"))]);
        let mut tog: LogicShape = shape(&[("preop", s("toggle"))]);
        let mut got = (Vec::new(), Vec::new());
        for (k, x) in [0.0, 1.0, 1.0, 0.0, 1.0].into_iter().enumerate() {
            let a = data(60.0, &[("a", &[x])]);
            // Every other cook comes after a dropped frame.
            let f = frame(2 * k as i64 + 1, 1 + (k % 2) as i64, 60.0);
            got.0.push(cook(&mut on, &f, &[&a], false).chan(0)[0]);
            got.1.push(cook(&mut tog, &f, &[&a], false).chan(0)[0]);
        }
        assert_eq!(got.0, [0.0, 1.0, 0.0, 0.0, 1.0]);
        assert_eq!(got.1, [0.0, 1.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn combine_channels_and_inputs() {
        let a = data(60.0, &[("x", &[1.0]), ("y", &[0.0])]);
        let b = data(60.0, &[("y", &[3.0])]);
        let mut and: LogicShape = shape(&[("chanop", s("and"))]);
        assert_eq!(cook(&mut and, &frame(1, 1, 60.0), &[&a], false).samples(), [0.0]);
        let mut or: LogicShape = shape(&[("chopop", s("or"))]);
        let out = cook(&mut or, &frame(1, 1, 60.0), &[&a, &b], false);
        assert_eq!((out.names(), out.samples()), (&["x".to_string(), "y".to_string()][..], &[1.0, 1.0][..]));
        let mut xor: LogicShape = shape(&[("chopop", s("xor")), ("match", s("name"))]);
        let out = cook(&mut xor, &frame(1, 1, 60.0), &[&a, &b], false);
        assert_eq!(out.samples(), [1.0, 1.0]);
        let mut nor: LogicShape = shape(&[("chopop", s("nor"))]);
        assert_eq!(cook(&mut nor, &frame(1, 1, 60.0), &[&a, &b], false).samples(), [0.0, 0.0]);
        // Equivalence: on where every input agrees.
        let mut eqv: LogicShape = shape(&[("chopop", s("eqv"))]);
        assert_eq!(cook(&mut eqv, &frame(1, 1, 60.0), &[&a, &b], false).samples(), [1.0, 0.0]);
    }
}
