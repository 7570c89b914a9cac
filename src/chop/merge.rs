//! Merge CHOP: the channels of every input side by side, in input order. Inputs of different
//! rates are matched first (the common `srselect`); inputs of different lengths are extended
//! to the longest, each channel holding its last value. Of channels of one name in several
//! inputs, `duplicate` keeps the first (`first`, TouchDesigner's default) or the last (`last`).

use std::borrow::Cow;

use crate::chop::native::{self, check_pars, NativeConfig, ParsRaw, Pars};
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind, OperatorConfig};
use crate::cook::par::ParDef;
use crate::cook::{match_rates, BuildCtx, ChopData, CookCtx, CookError, Frame, NodeState, Operator, SrSelect};

pub struct Merge;

fn defs() -> Vec<ParDef> {
    vec![ParDef::menu("duplicate", "Merge", &["first", "last"], "first")
        .label("Duplicate Names")
        .labels(&["Keep First", "Keep Last"])]
}

impl Kind for Merge {
    const NAME: &'static str = "merge";
    const SUMMARY: &'static str = "Merge CHOP: the channels of all inputs together";
    type Raw = ParsRaw;
    type Settings = NativeConfig;

    fn check(cx: &mut Checker, r: ParsRaw, _refs: &mut OpRefs) -> Option<NativeConfig> {
        let pars = check_pars(cx, Self::NAME, &defs(), native::no_alias, &r.pars);
        Some(NativeConfig::new(Self::NAME, pars, build))
    }
}

fn build(op: &OperatorConfig, cx: &BuildCtx, c: &NativeConfig) -> Box<dyn Operator> {
    Box::new(MergeOp {
        pars: Pars::new(op, cx.rate, defs(), &c.pars),
        srselect: op.srselect,
        last_wins: false,
        seen: Vec::new(),
        plan: Vec::new(),
        names: Vec::new(),
        lay: native::Layout::default(),
    })
}

pub struct MergeOp {
    pars: Pars,
    srselect: SrSelect,
    last_wins: bool,
    /// Each input's layout when the plan was made.
    seen: Vec<u64>,
    /// Output channel k is channel `.1` of input `.0`.
    plan: Vec<(usize, usize)>,
    names: Vec<String>,
    lay: native::Layout,
}

impl MergeOp {
    fn stale(&self, inputs: &[Cow<'_, ChopData>]) -> bool {
        self.seen.len() != inputs.len()
            || self.seen.iter().zip(inputs).any(|(s, d)| *s != d.layout_id())
    }

    fn plan(&mut self, inputs: &[Cow<'_, ChopData>]) {
        let mut at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        let mut plan: Vec<(usize, usize)> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for (k, d) in inputs.iter().enumerate() {
            for (i, n) in d.names().iter().enumerate() {
                match at.get(n.as_str()) {
                    Some(&j) if self.last_wins => plan[j] = (k, i),
                    Some(_) => {}
                    None => {
                        at.insert(n, plan.len());
                        plan.push((k, i));
                        names.push(n.clone());
                    }
                }
            }
        }
        self.seen = inputs.iter().map(|d| d.layout_id()).collect();
        self.lay.invalidate();
        self.plan = plan;
        self.names = names;
    }
}

impl Operator for MergeOp {
    fn wants_cook(&mut self, _frame: &Frame, _nodes: &[NodeState]) -> bool {
        self.pars.pending()
    }

    fn time_dependent(&self) -> bool {
        false
    }

    fn cook(&mut self, ctx: &mut CookCtx, out: &mut ChopData) -> Result<(), CookError> {
        if self.pars.changed() {
            self.last_wins = self.pars.with(|s| s.text("duplicate") == "last");
            self.seen.clear();
        }
        let inputs = ctx.inputs();
        let inputs = match_rates(&inputs, self.srselect)?;
        let Some(first) = inputs.first() else {
            out.clear();
            return Ok(());
        };
        if self.stale(&inputs) {
            self.plan(&inputs);
        }
        let len = inputs.iter().map(|d| d.num_samples()).max().unwrap_or(1);
        self.lay.apply(out, &self.names, len, first.start, first.rate);
        for (k, &(d, i)) in self.plan.iter().enumerate() {
            let src = inputs[d].chan(i);
            let dst = out.chan_mut(k);
            let n = src.len().min(len);
            dst[..n].copy_from_slice(&src[..n]);
            dst[n..].fill(src.last().copied().unwrap_or(0.0));
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.seen.clear();
    }

    crate::native_pars!();
}

#[cfg(test)]
mod tests {
    use crate::chop::testing::Rig;
    use crate::cook::ParValue;

    fn rig(dup: &str) -> Rig {
        Rig::new(&format!(
            "[[operator]]\nname = \"a\"\ntype = \"constant\"\npars = {{ name0 = \"x y\", value0 = 1 }}\n\
             [[operator]]\nname = \"b\"\ntype = \"constant\"\ntimeslice = true\npars = {{ name0 = \"y z\", value0 = 2 }}\n\
             [[operator]]\nname = \"m\"\ntype = \"merge\"\ninputs = [\"a\", \"b\"]\npars = {{ duplicate = \"{dup}\" }}\n"
        ))
    }

    #[test]
    fn merges_inputs_in_order_keeping_the_first_duplicate() {
        let mut r = rig("first");
        r.frame(1);
        assert_eq!(r.out("m").names(), ["x", "y", "z"]);
        assert_eq!(r.out("m").samples(), [1.0, 1.0, 2.0]);
        r.set("m", "duplicate", ParValue::Str("last".into()));
        r.frame(2);
        assert_eq!(r.out("m").samples(), [1.0, 2.0, 2.0]);
    }

    #[test]
    fn shorter_inputs_hold_their_last_value_to_the_longest() {
        let mut r = rig("first");
        r.frame(1);
        r.frame_step(4, 3);
        let o = r.out("m");
        assert_eq!(o.num_samples(), 3, "b is time-sliced: 3 samples");
        assert_eq!(o.chan(0), [1.0, 1.0, 1.0]);
        assert_eq!(o.chan(2), [2.0, 2.0, 2.0]);
    }
}
