//! Constant CHOP: channels holding fixed values, one per name slot, set in the config, by a
//! script (`op('constant1').par.value0 = 3`), the control port or an export.
//!
//! TouchDesigner has written the slots two ways: `name0`/`value0` … (older, what most public
//! scripts use) and the sequence `const0name`/`const0value` … (current). Both spellings are
//! parameters here and always hold the same value: writing either moves both. A name may
//! expand to several channels (`t[xyz]`, `chan[1-8]`), each holding the slot's value.

use crate::chop::native::{self, check_pars, expand, Guard, Layout, NativeConfig, ParsRaw, Pars};
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind, OperatorConfig};
use crate::cook::par::ParDef;
use crate::cook::{BuildCtx, ChopData, CookCtx, CookError, Frame, NodeState, Operator, ParValue};

/// Name slots, as many as TouchDesigner's older Constant CHOP had.
pub const SLOTS: usize = 40;

pub struct Constant;

fn defs() -> Vec<ParDef> {
    let mut v = Vec::with_capacity(SLOTS * 4);
    for i in 0..SLOTS {
        let name = if i == 0 { "chan1" } else { "" };
        v.push(ParDef::string(&format!("const{i}name"), "Constant", name).label("Name"));
        v.push(ParDef::float(&format!("const{i}value"), "Constant", 0.0).label("Value").range(-1.0, 1.0));
    }
    for i in 0..SLOTS {
        let name = if i == 0 { "chan1" } else { "" };
        v.push(ParDef::string(&format!("name{i}"), "Constant", name).label("Name"));
        v.push(ParDef::float(&format!("value{i}"), "Constant", 0.0).label("Value").range(-1.0, 1.0));
    }
    v
}

impl Kind for Constant {
    const NAME: &'static str = "constant";
    const SUMMARY: &'static str = "Constant CHOP: channels with fixed values";
    type Raw = ParsRaw;
    type Settings = NativeConfig;

    fn check(cx: &mut Checker, r: ParsRaw, _refs: &mut OpRefs) -> Option<NativeConfig> {
        let pars = check_pars(cx, Self::NAME, &defs(), native::no_alias, &r.pars);
        let names: Vec<String> = (0..SLOTS)
            .flat_map(|i| [format!("name{i}"), format!("const{i}name")])
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        native::check_names(cx, Self::NAME, &r.pars, &names);
        Some(NativeConfig::new(Self::NAME, pars, build))
    }
}

fn build(op: &OperatorConfig, cx: &BuildCtx, c: &NativeConfig) -> Box<dyn Operator> {
    Box::new(ConstantOp::new(op, cx.rate, &c.pars))
}

/// One slot's name and value, as last read.
#[derive(Clone, Debug, Default, PartialEq)]
struct Slot {
    name: String,
    value: f64,
}

pub struct ConstantOp {
    pars: Pars,
    slots: Vec<Slot>,
    /// The channels: expanded names, and for each the slot whose value it holds.
    names: Vec<String>,
    of_slot: Vec<usize>,
    timeslice: bool,
    dirty: bool,
    guard: Guard,
    lay: Layout,
}

impl ConstantOp {
    pub fn new(op: &OperatorConfig, rate: f64, init: &[(String, ParValue)]) -> ConstantOp {
        let pars = Pars::new(op, rate, defs(), init);
        // The config may use either spelling: the older one wins where it was given.
        let given = |n: &str| init.iter().any(|(k, _)| k == n);
        let mut slots = Vec::with_capacity(SLOTS);
        for i in 0..SLOTS {
            let (old_n, new_n) = (format!("name{i}"), format!("const{i}name"));
            let (old_v, new_v) = (format!("value{i}"), format!("const{i}value"));
            let name = pars.text(if given(&old_n) { &old_n } else { &new_n });
            let value = pars.num(if given(&old_v) { &old_v } else { &new_v });
            slots.push(Slot { name, value });
        }
        let mut c = ConstantOp {
            pars,
            slots: Vec::new(),
            names: Vec::new(),
            of_slot: Vec::new(),
            timeslice: op.timeslice,
            dirty: true,
            guard: Guard::default(),
            lay: Layout::default(),
        };
        c.write_both(&slots);
        c.apply(slots);
        c
    }

    /// Writes every slot under both spellings.
    fn write_both(&self, slots: &[Slot]) {
        self.write_slots(slots, &vec![true; slots.len()]);
    }

    /// Writes the slots marked in `which` under both spellings.
    fn write_slots(&self, slots: &[Slot], which: &[bool]) {
        self.pars.edit(|set| {
            for (i, s) in slots.iter().enumerate().filter(|(i, _)| which[*i]) {
                for n in [format!("name{i}"), format!("const{i}name")] {
                    let _ = set.set(&n, &ParValue::Str(s.name.clone()));
                }
                for n in [format!("value{i}"), format!("const{i}value")] {
                    let _ = set.set(&n, &ParValue::Float(s.value));
                }
            }
        });
    }

    /// Takes new slot values, re-expanding names when they changed.
    fn apply(&mut self, slots: Vec<Slot>) {
        let names_same = slots.len() == self.slots.len()
            && slots.iter().zip(&self.slots).all(|(a, b)| a.name == b.name);
        if !names_same {
            let mut names = Vec::new();
            let mut of_slot = Vec::new();
            for (i, s) in slots.iter().enumerate() {
                match expand(&s.name) {
                    Ok(list) => {
                        of_slot.extend(std::iter::repeat_n(i, list.len()));
                        names.extend(list);
                    }
                    Err(e) => tracing::warn!("constant: const{i}name: {e}"),
                }
            }
            // A later slot of the same name wins, as appending the same channel twice does.
            let mut seen = std::collections::HashMap::new();
            for (k, n) in names.iter().enumerate() {
                seen.insert(n.clone(), k);
            }
            let keep: Vec<bool> = names.iter().enumerate().map(|(k, n)| seen[n] == k).collect();
            let mut it = keep.iter();
            names.retain(|_| *it.next().unwrap_or(&true));
            let mut it = keep.iter();
            of_slot.retain(|_| *it.next().unwrap_or(&true));
            self.names = names;
            self.of_slot = of_slot;
            self.lay.invalidate();
        }
        self.slots = slots;
    }

    /// Reads the parameters after a change: per slot, the spelling that moved wins.
    fn read(&mut self) {
        let mut slots = self.slots.clone();
        let mut moved = false;
        // By position: `defs` lays the slots out as const0name, const0value, … then name0,
        // value0, … (no lookups by name, this runs on every change).
        self.pars.with(|set| {
            let pars = set.pars();
            let text = |k: usize| match &pars[k].val {
                ParValue::Str(s) => s.as_str(),
                ParValue::Float(_) => "",
            };
            for (i, s) in slots.iter_mut().enumerate() {
                let (new, old) = (2 * i, 2 * SLOTS + 2 * i);
                for k in [old, new] {
                    if text(k) != s.name {
                        s.name = text(k).to_string();
                        moved = true;
                        break;
                    }
                }
                for k in [old + 1, new + 1] {
                    let v = pars[k].num();
                    if v != s.value {
                        s.value = v;
                        moved = true;
                        break;
                    }
                }
            }
        });
        if moved {
            let which: Vec<bool> = slots.iter().zip(&self.slots).map(|(a, b)| a != b).collect();
            self.write_slots(&slots, &which);
            self.pars.changed();
        }
        self.apply(slots);
    }
}

impl Operator for ConstantOp {
    fn wants_cook(&mut self, _frame: &Frame, _nodes: &[NodeState]) -> bool {
        self.dirty || self.timeslice || self.pars.pending()
    }

    fn time_dependent(&self) -> bool {
        self.timeslice
    }

    fn cook(&mut self, ctx: &mut CookCtx, out: &mut ChopData) -> Result<(), CookError> {
        if self.pars.changed() {
            self.read();
        }
        self.dirty = false;
        let (n, start) = native::slice(ctx.frame, self.timeslice);
        self.lay.apply(out, &self.names, n, start, ctx.frame.rate);
        for (k, &slot) in self.of_slot.iter().enumerate() {
            out.chan_mut(k).fill(self.slots[slot].value as f32);
        }
        if self.guard.clean(out) {
            ctx.state().stats.warnings += 1;
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.dirty = true;
    }

    crate::native_pars!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chop::testing::{check_err, Rig};

    #[test]
    fn a_default_constant_is_chan1_at_zero() {
        let mut r = Rig::new("[[operator]]\nname = \"c\"\ntype = \"constant\"\n");
        r.frame(1);
        assert_eq!(r.out("c").names(), ["chan1"]);
        assert_eq!(r.out("c").chan(0), [0.0]);
    }

    #[test]
    fn both_spellings_set_the_same_slot() {
        let mut r = Rig::new(
            "[[operator]]\nname = \"c\"\ntype = \"constant\"\n\
             pars = { name0 = \"a\", value0 = 2, const1name = \"t[xy]\", const1value = -1 }\n",
        );
        r.frame(1);
        assert_eq!(r.out("c").names(), ["a", "tx", "ty"]);
        assert_eq!(r.out("c").samples(), [2.0, -1.0, -1.0]);
        r.set("c", "const0value", ParValue::Float(5.0));
        r.frame(2);
        assert_eq!(r.out("c").chan(0), [5.0]);
        assert_eq!(r.par("c", "value0"), ParValue::Float(5.0));
        r.set("c", "value1", ParValue::Float(7.0));
        r.frame(3);
        assert_eq!(r.out("c").samples(), [5.0, 7.0, 7.0]);
        assert_eq!(r.par("c", "const1value"), ParValue::Float(7.0));
    }

    #[test]
    fn time_sliced_it_fills_every_frame_since_the_last_cook() {
        let mut r = Rig::new(
            "[[operator]]\nname = \"c\"\ntype = \"constant\"\ntimeslice = true\npars = { value0 = 3 }\n",
        );
        r.frame(1);
        r.frame_step(4, 3);
        let o = r.out("c");
        assert_eq!((o.num_samples(), o.start), (3, 2));
        assert_eq!(o.chan(0), [3.0, 3.0, 3.0]);
    }

    #[test]
    fn unknown_parameters_and_bad_names_are_check_errors() {
        let e = check_err("[[operator]]\nname = \"c\"\ntype = \"constant\"\npars = { valeu0 = 1 }\n");
        assert!(e.contains("t.toml:4:10: error: constant has no parameter \"valeu0\"; did you mean \"value0\"?"), "{e}");
        let e = check_err("[[operator]]\nname = \"c\"\ntype = \"constant\"\npars = { name0 = \"c[1-\" }\n");
        assert!(e.contains("t.toml:4:18: error: constant: unclosed"), "{e}");
    }

    #[test]
    fn values_set_while_running_survive_a_rebuild() {
        let src = "[[operator]]\nname = \"c\"\ntype = \"constant\"\npars = { value0 = 1 }\n";
        let mut r = Rig::new(src);
        r.frame(1);
        r.set("c", "value0", ParValue::Float(4.0));
        let kept = r.graph.kept_pars();
        let kept: Vec<_> = kept.into_iter().map(|(n, i, p)| (n.to_string(), i, p)).collect();
        let mut r2 = Rig::new(src);
        for (n, i, p) in &kept {
            assert!(r2.graph.restore_pars(n, i, p));
        }
        r2.frame(1);
        assert_eq!(r2.out("c").chan(0), [4.0]);
    }
}
