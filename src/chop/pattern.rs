//! Pattern CHOP: a static curve of `length` samples (not moving with time), for lookup tables,
//! steps and ramps: sample `i` of `length` is `offset + amp · wave(frac(numcycles · i / length +
//! phase))`, with the LFO CHOP's sine, triangle, ramp and square, plus `const` (always 1), `cos`,
//! `rampsamples` (the sample's index within its cycle), `pulse` (1 where a cycle starts) and
//! `random` (seeded). It cooks only when a parameter changes.

use crate::chop::lfo::wave;
use crate::chop::native::{self, check_pars, expand, Guard, NativeConfig, ParsRaw, Pars};
use crate::chop::noise;
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind, OperatorConfig};
use crate::cook::par::ParDef;
use crate::cook::{BuildCtx, ChopData, CookCtx, CookError, Frame, NodeState, Operator};

pub struct PatternKind;

/// The shapes, by TouchDesigner's tokens, in its order (its `randomcycle` and later are not
/// offered).
pub const TYPES: &[&str] = &[
    "const",
    "sin",
    "cos",
    "tri",
    "ramp",
    "rampsamples",
    "square",
    "pulse",
    "random",
];

/// The longest pattern, samples.
pub const MAX_LENGTH: f64 = 1_000_000.0;

fn defs() -> Vec<ParDef> {
    vec![
        ParDef::menu("wavetype", "Pattern", TYPES, "sin")
            .label("Type")
            .labels(&[
                "Constant",
                "Sine",
                "Cosine",
                "Triangle",
                "Ramp",
                "Ramp Samples",
                "Square",
                "Pulse",
                "Random",
            ]),
        ParDef::int("length", "Pattern", 20)
            .label("Length")
            .range(1.0, 100.0)
            .clamp_min(1.0)
            .clamp_max(MAX_LENGTH),
        ParDef::float("numcycles", "Pattern", 1.0)
            .label("Number of Cycles")
            .range(0.0, 10.0),
        ParDef::float("phase", "Pattern", 0.0).label("Phase").range(0.0, 1.0),
        ParDef::float("bias", "Pattern", 0.0)
            .label("Bias")
            .range(-1.0, 1.0)
            .clamp_min(-1.0)
            .clamp_max(1.0),
        ParDef::float("amp", "Pattern", 1.0).label("Amplitude").range(0.0, 1.0),
        ParDef::float("offset", "Pattern", 0.0).label("Offset").range(-1.0, 1.0),
        ParDef::float("seed", "Pattern", 1.0).label("Seed").range(0.0, 100.0),
        ParDef::string("channelname", "Channel", "chan1").label("Channel Name"),
    ]
}

impl Kind for PatternKind {
    const NAME: &'static str = "pattern";
    const SUMMARY: &'static str = "Pattern CHOP: a static curve of a given length";
    type Raw = ParsRaw;
    type Settings = NativeConfig;

    fn check(cx: &mut Checker, r: ParsRaw, _refs: &mut OpRefs) -> Option<NativeConfig> {
        let pars = check_pars(cx, Self::NAME, &defs(), native::no_alias, &r.pars);
        native::check_names(cx, Self::NAME, &r.pars, &["channelname"]);
        Some(NativeConfig::new(Self::NAME, pars, build))
    }
}

fn build(op: &OperatorConfig, cx: &BuildCtx, c: &NativeConfig) -> Box<dyn Operator> {
    Box::new(PatternOp {
        pars: Pars::new(op, cx.rate, defs(), &c.pars),
        names: Vec::new(),
        guard: Guard::default(),
    })
}

pub struct PatternOp {
    pars: Pars,
    names: Vec<String>,
    guard: Guard,
}

/// Sample `i` of a pattern of `len` samples.
#[allow(clippy::too_many_arguments)]
pub fn sample(kind: &str, i: usize, len: usize, cycles: f64, phase: f64, bias: f64, key: u64) -> f64 {
    let at = |i: f64| cycles * i / len as f64 + phase;
    let t = at(i as f64);
    let x = t.rem_euclid(1.0);
    match kind {
        "const" => 1.0,
        "cos" => (std::f64::consts::TAU * x).cos(),
        "rampsamples" if cycles > 0.0 => (x * len as f64 / cycles).floor(),
        "rampsamples" => i as f64,
        "pulse" => {
            let start = if i == 0 {
                x == 0.0
            } else {
                t.floor() != at(i as f64 - 1.0).floor()
            };
            f64::from(u8::from(start))
        }
        "random" => noise::lattice(key, i as i64),
        // The LFO's waves: 0 sine, 2 triangle, 3 ramp, 4 square.
        "tri" => wave(2, x, bias),
        "ramp" => wave(3, x, bias),
        "square" => wave(4, x, bias),
        _ => wave(0, x, bias),
    }
}

impl Operator for PatternOp {
    fn wants_cook(&mut self, _frame: &Frame, _nodes: &[NodeState]) -> bool {
        self.pars.pending()
    }

    fn time_dependent(&self) -> bool {
        false
    }

    fn cook(&mut self, ctx: &mut CookCtx, out: &mut ChopData) -> Result<(), CookError> {
        self.pars.changed();
        let (kind, len, cycles, phase, bias, amp, offset, seed, names) = self.pars.with(|s| {
            (
                s.text("wavetype").to_string(),
                s.num("length") as usize,
                s.num("numcycles"),
                s.num("phase"),
                s.num("bias"),
                s.num("amp"),
                s.num("offset"),
                s.num("seed"),
                expand(s.text("channelname")),
            )
        });
        match names {
            Ok(n) => self.names = n,
            Err(e) => tracing::warn!("pattern: channelname: {e}"),
        }
        native::Layout::default().apply(out, &self.names, len.max(1), 0, ctx.frame.rate);
        for c in 0..self.names.len() {
            let key = noise::key(seed, c);
            for (i, v) in out.chan_mut(c).iter_mut().enumerate() {
                *v = (offset + amp * sample(&kind, i, len, cycles, phase, bias, key)) as f32;
            }
        }
        if self.guard.clean(out) {
            ctx.state().stats.warnings += 1;
        }
        Ok(())
    }

    crate::native_pars!();
}

#[cfg(test)]
mod tests {
    use crate::chop::testing::{check_err, Rig};
    use crate::cook::ParValue;

    #[test]
    fn a_ramp_of_length_samples_and_cycles() {
        let mut r = Rig::new(
            "[[operator]]\nname = \"p\"\ntype = \"pattern\"\npars = { wavetype = \"ramp\", length = 4, numcycles = 2, amp = 2, offset = 1 }\n",
        );
        r.frame(1);
        let o = r.out("p");
        assert_eq!((o.num_samples(), o.start), (4, 0));
        assert_eq!(o.chan(0), [1.0, 2.0, 1.0, 2.0]);
        r.set("p", "wavetype", ParValue::Str("square".into()));
        r.set("p", "numcycles", ParValue::Float(1.0));
        r.frame(2);
        assert_eq!(r.out("p").chan(0), [3.0, 3.0, -1.0, -1.0]);
        r.set("p", "wavetype", ParValue::Str("rampsamples".into()));
        r.set("p", "amp", ParValue::Float(1.0));
        r.set("p", "offset", ParValue::Float(0.0));
        r.frame(3);
        assert_eq!(r.out("p").chan(0), [0.0, 1.0, 2.0, 3.0]);
        r.set("p", "wavetype", ParValue::Str("pulse".into()));
        r.set("p", "numcycles", ParValue::Float(2.0));
        r.frame(4);
        assert_eq!(r.out("p").chan(0), [1.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn a_sine_pattern_and_a_seeded_random_one() {
        let mut r = Rig::new(
            "[[operator]]\nname = \"p\"\ntype = \"pattern\"\npars = { length = 8 }\n\
             [[operator]]\nname = \"q\"\ntype = \"pattern\"\npars = { wavetype = \"random\", length = 8, seed = 5, channelname = \"a b\" }\n",
        );
        r.frame(1);
        for (i, v) in r.out("p").chan(0).iter().enumerate() {
            let want = (std::f64::consts::TAU * i as f64 / 8.0).sin();
            assert!((*v as f64 - want).abs() < 1e-6);
        }
        let q = r.out("q");
        assert_ne!(q.chan(0), q.chan(1));
        assert!(q.chan(0).iter().all(|v| v.abs() <= 1.0));
    }

    #[test]
    fn length_is_clamped_and_tokens_checked() {
        let e = check_err("[[operator]]\nname = \"p\"\ntype = \"pattern\"\npars = { wavetype = \"saw\" }\n");
        assert!(e.contains("t.toml:4:21: error: pattern: menu parameter \"wavetype\" has no entry \"saw\""), "{e}");
        let mut r = Rig::new("[[operator]]\nname = \"p\"\ntype = \"pattern\"\npars = { length = 0 }\n");
        r.frame(1);
        assert_eq!(r.out("p").num_samples(), 1);
    }
}
