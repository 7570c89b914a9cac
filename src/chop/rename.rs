//! Rename CHOP: input 0's channels under new names. `renamefrom` and `renameto` are lists of
//! terms paired by position, brackets expanded (`t[xyz]` → `r[xyz]`), `*` and `?` carried
//! over in order (`chan*` → `out*`); a channel no term matches keeps its name. Samples are
//! copied as they are.

use crate::chop::native::{self, check_pars, NativeConfig, ParsRaw, Pars, Picks, Renamer};
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind, OperatorConfig};
use crate::cook::par::ParDef;
use crate::cook::{BuildCtx, ChopData, CookCtx, CookError, Frame, NodeState, Operator};

pub struct Rename;

fn defs() -> Vec<ParDef> {
    vec![
        ParDef::string("renamefrom", "Rename", "*").label("From"),
        ParDef::string("renameto", "Rename", "*").label("To"),
    ]
}

impl Kind for Rename {
    const NAME: &'static str = "rename";
    const SUMMARY: &'static str = "Rename CHOP: new channel names from from/to patterns";
    type Raw = ParsRaw;
    type Settings = NativeConfig;

    fn check(cx: &mut Checker, r: ParsRaw, _refs: &mut OpRefs) -> Option<NativeConfig> {
        let pars = check_pars(cx, Self::NAME, &defs(), native::no_alias, &r.pars);
        for (key, value) in r.pars.iter().flatten() {
            if let Some(text) = value.get_ref().as_str() {
                if key.get_ref().starts_with("rename") {
                    if let Err(e) = Renamer::new(text, "*") {
                        cx.d.error(value.span(), format!("rename: {e}"));
                    }
                }
            }
        }
        Some(NativeConfig::new(Self::NAME, pars, build))
    }
}

fn build(op: &OperatorConfig, cx: &BuildCtx, c: &NativeConfig) -> Box<dyn Operator> {
    Box::new(RenameOp {
        pars: Pars::new(op, cx.rate, defs(), &c.pars),
        renamer: Renamer::default(),
        picks: Picks::default(),
    })
}

pub struct RenameOp {
    pars: Pars,
    renamer: Renamer,
    picks: Picks,
}

impl Operator for RenameOp {
    fn wants_cook(&mut self, _frame: &Frame, _nodes: &[NodeState]) -> bool {
        self.pars.pending()
    }

    fn time_dependent(&self) -> bool {
        false
    }

    fn cook(&mut self, ctx: &mut CookCtx, out: &mut ChopData) -> Result<(), CookError> {
        if self.pars.changed() {
            let (from, to) = self.pars.with(|s| {
                (s.text("renamefrom").to_string(), s.text("renameto").to_string())
            });
            match Renamer::new(&from, &to) {
                Ok(r) => self.renamer = r,
                Err(e) => return Err(CookError::Other(format!("rename: {e}"))),
            }
            self.picks.clear();
        }
        let Some(input) = ctx.input(0) else {
            out.clear();
            return Ok(());
        };
        if self.picks.stale(input) {
            let names = input.names().iter().map(|n| self.renamer.rename(n)).collect();
            self.picks.set(input, (0..input.num_chans()).collect(), names);
        }
        // Inputs are guarded already: a copy cannot bring a NaN in.
        self.picks.copy(input, out);
        Ok(())
    }

    fn reset(&mut self) {
        self.picks.clear();
    }

    crate::native_pars!();
}

#[cfg(test)]
mod tests {
    use crate::chop::testing::{check_err, Rig};
    use crate::cook::ParValue;

    #[test]
    fn renames_by_paired_terms_and_follows_changes() {
        let mut r = Rig::new(
            "[[operator]]\nname = \"c\"\ntype = \"constant\"\npars = { name0 = \"tx ty fader3\", value0 = 2 }\n\
             [[operator]]\nname = \"n\"\ntype = \"rename\"\ninputs = [\"c\"]\n\
             pars = { renamefrom = \"t[xy] fader*\", renameto = \"r[xy] level*\" }\n",
        );
        r.frame(1);
        assert_eq!(r.out("n").names(), ["rx", "ry", "level3"]);
        assert_eq!(r.out("n").samples(), [2.0, 2.0, 2.0]);
        r.set("n", "renameto", ParValue::Str("out".into()));
        r.frame(2);
        assert_eq!(r.out("n").names(), ["out"], "one name for all: the last wins");
    }

    #[test]
    fn a_bad_bracket_is_a_check_error() {
        let e = check_err("[[operator]]\nname = \"n\"\ntype = \"rename\"\npars = { renamefrom = \"a[1-\" }\n");
        assert!(e.contains("t.toml:4:23: error: rename: unclosed"), "{e}");
    }
}
