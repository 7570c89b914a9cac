//! Select CHOP: the channels of input 0, or of another operator named by `chop`, whose names
//! match `channames` (a pattern), in the source's order, optionally renamed (`renamefrom` →
//! `renameto`, as the Rename CHOP does).
//!
//! `chop` is fixed by the config (it decides the cook order: the source cooks first); the
//! other parameters may change while running.

use crate::chop::native::{self, check_pars, Guard, NativeConfig, ParsRaw, Pars, Picks, Renamer};
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind, OperatorConfig};
use crate::cook::par::ParDef;
use crate::cook::{BuildCtx, ChopData, CookCtx, CookError, Frame, NodeState, Operator, ParValue};
use crate::pattern::Pattern;

pub struct Select;

/// The parameters; `chop` read-only once built.
fn defs(chop: Option<&str>) -> Vec<ParDef> {
    let source = ParDef::string("chop", "Select", chop.unwrap_or("")).label("CHOP");
    vec![
        if chop.is_some() { source.read_only() } else { source },
        ParDef::string("channames", "Select", "*").label("Channel Names"),
        ParDef::string("renamefrom", "Select", "*").label("Rename From"),
        ParDef::string("renameto", "Select", "*").label("Rename To"),
    ]
}

impl Kind for Select {
    const NAME: &'static str = "select";
    const SUMMARY: &'static str = "Select CHOP: channels by name, from the input or another operator";
    type Raw = ParsRaw;
    type Settings = NativeConfig;

    fn check(cx: &mut Checker, r: ParsRaw, refs: &mut OpRefs) -> Option<NativeConfig> {
        let pars = check_pars(cx, Self::NAME, &defs(None), native::no_alias, &r.pars);
        for (key, value) in r.pars.iter().flatten() {
            let Some(text) = value.get_ref().as_str() else {
                continue;
            };
            match key.get_ref().as_str() {
                "chop" if !text.is_empty() => refs.reads(
                    "chop",
                    native::op_name(text),
                    value.span(),
                    "",
                    "a select operator cannot select from itself",
                ),
                "channames" => {
                    if let Err(e) = Pattern::new(text) {
                        cx.d.error(value.span(), format!("select: {e}"));
                    }
                }
                _ => {}
            }
        }
        Some(NativeConfig::new(Self::NAME, pars, build))
    }
}

fn build(op: &OperatorConfig, cx: &BuildCtx, c: &NativeConfig) -> Box<dyn Operator> {
    let chop = c
        .pars
        .iter()
        .find(|(k, _)| k == "chop")
        .and_then(|(_, v)| match v {
            ParValue::Str(s) if !s.is_empty() => Some(native::op_name(s).to_string()),
            _ => None,
        });
    let init: Vec<(String, ParValue)> = c.pars.iter().filter(|(k, _)| k != "chop").cloned().collect();
    Box::new(SelectOp {
        pars: Pars::new(op, cx.rate, defs(Some(chop.as_deref().unwrap_or(""))), &init),
        source: chop,
        source_at: None,
        seen: 0,
        pattern: Pattern::all(),
        renamer: Renamer::default(),
        picks: Picks::default(),
        guard: Guard::default(),
    })
}

pub struct SelectOp {
    pars: Pars,
    /// The operator selected from; `None`: input 0.
    source: Option<String>,
    /// Its node index, as last found (checked by name before use).
    source_at: Option<usize>,
    /// The source's `version` when this Select last looked.
    seen: u64,
    pattern: Pattern,
    renamer: Renamer,
    picks: Picks,
    guard: Guard,
}

impl SelectOp {
    fn read(&mut self) {
        let (names, from, to) = self.pars.with(|s| {
            (
                s.text("channames").to_string(),
                s.text("renamefrom").to_string(),
                s.text("renameto").to_string(),
            )
        });
        match Pattern::new(&names) {
            Ok(p) => self.pattern = p,
            Err(e) => tracing::warn!("select: channames: {e}"),
        }
        match Renamer::new(&from, &to) {
            Ok(r) => self.renamer = r,
            Err(e) => tracing::warn!("select: rename: {e}"),
        }
        self.picks.clear();
    }

    /// The source's node index in `nodes`.
    fn find(&mut self, nodes: &[NodeState]) -> Option<usize> {
        let name = self.source.as_deref()?;
        match self.source_at {
            Some(i) if nodes.get(i).is_some_and(|n| n.name == name) => Some(i),
            _ => {
                self.source_at = nodes.iter().position(|n| n.name == name);
                self.source_at
            }
        }
    }
}

impl Operator for SelectOp {
    /// Cooks for a changed parameter or a changed source (inputs are the graph's business).
    fn wants_cook(&mut self, _frame: &Frame, nodes: &[NodeState]) -> bool {
        let version = self.find(nodes).map(|i| nodes[i].version);
        let moved = version.is_some_and(|v| v != self.seen);
        if let Some(c) = version {
            self.seen = c;
        }
        self.pars.pending() || moved
    }

    fn time_dependent(&self) -> bool {
        false
    }

    fn cook(&mut self, ctx: &mut CookCtx, out: &mut ChopData) -> Result<(), CookError> {
        if self.pars.changed() {
            self.read();
        }
        let input = match self.source.clone() {
            Some(name) => {
                let i = self
                    .find(ctx.nodes)
                    .ok_or_else(|| CookError::Other(format!("select: no operator \"{name}\"")))?;
                &ctx.nodes[i].output
            }
            None => match ctx.input(0) {
                Some(d) => d,
                None => {
                    out.clear();
                    return Ok(());
                }
            },
        };
        if self.picks.stale(input) {
            let mut from = Vec::new();
            let mut names = Vec::new();
            for (i, n) in input.names().iter().enumerate() {
                if self.pattern.matches(n) {
                    from.push(i);
                    names.push(self.renamer.rename(n));
                }
            }
            self.picks.set(input, from, names);
        }
        self.picks.copy(input, out);
        if self.guard.clean(out) {
            ctx.state().stats.warnings += 1;
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.picks.clear();
        self.guard.reset();
    }

    crate::native_pars!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chop::testing::{check_err, Rig};

    const SRC: &str = "[[operator]]\nname = \"c\"\ntype = \"constant\"\n\
        pars = { name0 = \"tx ty tz rx\", value0 = 1, name1 = \"debug\", value1 = 9 }\n";

    #[test]
    fn selects_by_pattern_from_its_input_and_renames() {
        let mut r = Rig::new(&format!(
            "{SRC}[[operator]]\nname = \"s\"\ntype = \"select\"\ninputs = [\"c\"]\n\
             pars = {{ channames = \"t* ^tz\", renamefrom = \"t*\", renameto = \"pos*\" }}\n"
        ));
        r.frame(1);
        assert_eq!(r.out("s").names(), ["posx", "posy"]);
        r.set("s", "channames", ParValue::Str("debug".into()));
        r.frame(2);
        assert_eq!(r.out("s").names(), ["debug"]);
        assert_eq!(r.out("s").chan(0), [9.0]);
    }

    #[test]
    fn selects_from_another_operator_and_follows_its_changes() {
        let mut r = Rig::new(&format!(
            "[[operator]]\nname = \"s\"\ntype = \"select\"\npars = {{ chop = \"/project1/c\", channames = \"r*\" }}\n{SRC}"
        ));
        r.frame(1);
        assert_eq!(r.out("s").names(), ["rx"]);
        r.set("c", "value0", ParValue::Float(4.0));
        r.frame(2);
        assert_eq!(r.val("s", "rx"), 4.0);
        assert!(r.graph.set_par_by_hand("s", "chop", ParValue::Str("x".into())).is_err());
    }

    /// A change the source made in a reaction is stamped for the next frame; with that frame
    /// dropped, the Select still follows it at the one after, and does not cook again for it.
    #[test]
    fn follows_a_change_made_between_frames_across_a_dropped_frame() {
        let mut r = Rig::new(&format!(
            "[[operator]]\nname = \"s\"\ntype = \"select\"\npars = {{ chop = \"c\", channames = \"r*\" }}\n{SRC}"
        ));
        r.frame(1);
        r.set("c", "value0", ParValue::Float(4.0));
        r.react(1);
        assert_eq!(r.val("c", "rx"), 4.0);
        r.frame_step(3, 2);
        assert_eq!(r.val("s", "rx"), 4.0);
        let cooks = r.graph.node("s").unwrap().stats.total_cooks;
        r.frame(4);
        r.react(4);
        assert_eq!(r.graph.node("s").unwrap().stats.total_cooks, cooks);
    }

    #[test]
    fn an_unknown_source_is_a_check_error() {
        let e = check_err("[[operator]]\nname = \"s\"\ntype = \"select\"\npars = { chop = \"nope\" }\n");
        assert!(e.contains("t.toml:4:17: error:"), "{e}");
        assert!(e.contains("nope"), "{e}");
    }
}
