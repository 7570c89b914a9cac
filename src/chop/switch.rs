//! Switch CHOP: passes one input through whole, the one `index` names (from 0). An index past
//! the last input takes the last, a negative one the first, as TouchDesigner clamps it.

use crate::chop::native::{self, check_pars, NativeConfig, ParsRaw, Pars};
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind, OperatorConfig};
use crate::cook::par::ParDef;
use crate::cook::{BuildCtx, ChopData, CookCtx, CookError, Frame, NodeState, Operator};

pub struct Switch;

fn defs() -> Vec<ParDef> {
    vec![ParDef::int("index", "Switch", 0).label("Index").range(0.0, 4.0)]
}

impl Kind for Switch {
    const NAME: &'static str = "switch";
    const SUMMARY: &'static str = "Switch CHOP: one of its inputs, by index";
    type Raw = ParsRaw;
    type Settings = NativeConfig;

    fn check(cx: &mut Checker, r: ParsRaw, _refs: &mut OpRefs) -> Option<NativeConfig> {
        let pars = check_pars(cx, Self::NAME, &defs(), native::no_alias, &r.pars);
        Some(NativeConfig::new(Self::NAME, pars, build))
    }
}

fn build(op: &OperatorConfig, cx: &BuildCtx, c: &NativeConfig) -> Box<dyn Operator> {
    Box::new(SwitchOp {
        pars: Pars::new(op, cx.rate, defs(), &c.pars),
        index: 0,
    })
}

pub struct SwitchOp {
    pars: Pars,
    index: i64,
}

impl Operator for SwitchOp {
    fn wants_cook(&mut self, _frame: &Frame, _nodes: &[NodeState]) -> bool {
        self.pars.pending()
    }

    fn time_dependent(&self) -> bool {
        false
    }

    fn cook(&mut self, ctx: &mut CookCtx, out: &mut ChopData) -> Result<(), CookError> {
        if self.pars.changed() {
            self.index = self.pars.num("index") as i64;
        }
        let n = ctx.nodes[ctx.me].inputs.len();
        if n == 0 {
            out.clear();
            return Ok(());
        }
        let k = self.index.clamp(0, n as i64 - 1) as usize;
        if let Some(d) = ctx.input(k) {
            out.copy_from(d);
        }
        Ok(())
    }

    crate::native_pars!();
}

#[cfg(test)]
mod tests {
    use crate::chop::testing::Rig;
    use crate::cook::ParValue;

    #[test]
    fn passes_the_indexed_input_clamped_to_the_inputs() {
        let mut r = Rig::new(
            "[[operator]]\nname = \"a\"\ntype = \"constant\"\npars = { name0 = \"a\", value0 = 1 }\n\
             [[operator]]\nname = \"b\"\ntype = \"constant\"\npars = { name0 = \"b\", value0 = 2 }\n\
             [[operator]]\nname = \"s\"\ntype = \"switch\"\ninputs = [\"a\", \"b\"]\npars = { index = 1 }\n",
        );
        r.frame(1);
        assert_eq!(r.out("s").names(), ["b"]);
        for (i, want) in [(0.0, "a"), (7.0, "b"), (-3.0, "a")] {
            r.set("s", "index", ParValue::Float(i));
            r.frame(2 + i as i64);
            assert_eq!(r.out("s").names(), [want], "index {i}");
        }
    }
}
