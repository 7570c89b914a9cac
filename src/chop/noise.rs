//! Noise CHOP: seeded, repeatable noise over time, one channel per name of `channelname`
//! (each channel its own noise).
//!
//! A sample is a function of time alone, never of what came before: sample `s` of channel `c`
//! is `offset + amp · shape(n)` with `n` the noise at `x = s / rate / period` and `shape` the
//! exponent (`sign(n) · |n|^exp`). So dropped frames, a reload or a second daemon with the same
//! seed give the same values at the same time.
//!
//! `n` is smooth gradient noise (peaks about `period` seconds apart) plus `harmon` harmonics,
//! each `spread` times the frequency and `rough` times the amplitude of the one before, divided
//! by the sum of the amplitudes so it stays within −1…1. `random` is white noise: every sample
//! is drawn anew.

use crate::chop::native::{self, check_pars, expand, Guard, Layout, NativeConfig, ParsRaw, Pars};
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind, OperatorConfig};
use crate::cook::par::ParDef;
use crate::cook::{BuildCtx, ChopData, CookCtx, CookError, Frame, NodeState, Operator};

pub struct Noise;

/// The noise types, by TouchDesigner's tokens. Every type but `random` is the same smooth
/// gradient noise here.
pub const TYPES: &[&str] = &["sparse", "hermite", "harmonic", "brownian", "random"];

fn defs() -> Vec<ParDef> {
    vec![
        ParDef::menu("type", "Noise", TYPES, "sparse")
            .label("Type")
            .labels(&["Sparse", "Hermite", "Harmonic Summation", "Brownian", "Random"]),
        ParDef::float("seed", "Noise", 1.0).label("Seed").range(0.0, 100.0),
        ParDef::float("period", "Noise", 1.0)
            .label("Period")
            .range(0.0, 10.0)
            .clamp_min(1e-6),
        ParDef::int("harmon", "Noise", 0)
            .label("Harmonics")
            .range(0.0, 8.0)
            .clamp_min(0.0)
            .clamp_max(32.0),
        ParDef::float("spread", "Noise", 2.0).label("Harmonic Spread").range(1.0, 4.0),
        ParDef::float("rough", "Noise", 0.5).label("Roughness").range(0.0, 1.0),
        ParDef::float("exp", "Noise", 1.0)
            .label("Exponent")
            .range(0.0, 4.0)
            .clamp_min(0.0),
        ParDef::float("amp", "Noise", 1.0).label("Amplitude").range(0.0, 10.0),
        ParDef::float("offset", "Noise", 0.0).label("Offset").range(-1.0, 1.0),
        ParDef::string("channelname", "Channel", "chan1").label("Channel Name"),
    ]
}

impl Kind for Noise {
    const NAME: &'static str = "noise";
    const SUMMARY: &'static str = "Noise CHOP: seeded smooth or white noise";
    type Raw = ParsRaw;
    type Settings = NativeConfig;

    fn check(cx: &mut Checker, r: ParsRaw, _refs: &mut OpRefs) -> Option<NativeConfig> {
        let pars = check_pars(cx, Self::NAME, &defs(), native::no_alias, &r.pars);
        native::check_names(cx, Self::NAME, &r.pars, &["channelname"]);
        Some(NativeConfig::new(Self::NAME, pars, build))
    }
}

fn build(op: &OperatorConfig, cx: &BuildCtx, c: &NativeConfig) -> Box<dyn Operator> {
    Box::new(NoiseOp {
        pars: Pars::new(op, cx.rate, defs(), &c.pars),
        p: Settings::default(),
        timeslice: op.timeslice,
        guard: Guard::default(),
        lay: Layout::default(),
        cells: Vec::new(),
    })
}

/// A well-mixed 64-bit hash (splitmix64's finaliser).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A value in −1…1 for lattice point `i` of stream `key`.
pub fn lattice(key: u64, i: i64) -> f64 {
    let h = mix(key ^ mix(i as u64));
    (h >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// Smooth 1-D gradient noise at `x` (0 on every integer, about −1…1 between).
pub fn gradient(key: u64, x: f64) -> f64 {
    let i = x.floor();
    let f = x - i;
    let i = i as i64;
    let (g0, g1) = (lattice(key, i), lattice(key, i + 1));
    let u = f * f * (3.0 - 2.0 * f);
    2.0 * (g0 * f + (g1 * (f - 1.0) - g0 * f) * u)
}

/// The two lattice values around the last `x` of one channel's base octave: a cell lasts a
/// whole period, so most samples hash nothing.
#[derive(Clone, Copy, Debug)]
pub struct Cell {
    i: i64,
    g0: f64,
    g1: f64,
}

impl Default for Cell {
    fn default() -> Cell {
        Cell { i: i64::MIN, g0: 0.0, g1: 0.0 }
    }
}

impl Cell {
    /// [`gradient`]`(key, x)`, the same value, hashing only when `x` left the cell.
    pub fn at(&mut self, key: u64, x: f64) -> f64 {
        let fl = x.floor();
        let i = fl as i64;
        if i != self.i {
            *self = Cell { i, g0: lattice(key, i), g1: lattice(key, i + 1) };
        }
        let f = x - fl;
        let u = f * f * (3.0 - 2.0 * f);
        2.0 * (self.g0 * f + (self.g1 * (f - 1.0) - self.g0 * f) * u)
    }
}

/// The stream of one channel under one seed.
pub fn key(seed: f64, chan: usize) -> u64 {
    mix(seed.to_bits() ^ mix(chan as u64 + 1))
}

#[derive(Clone, Debug, Default)]
struct Settings {
    random: bool,
    seed: f64,
    period: f64,
    harmon: u32,
    spread: f64,
    gain: f64,
    exp: f64,
    amp: f64,
    offset: f64,
    names: Vec<String>,
    keys: Vec<u64>,
    /// 1 / the sum of the harmonics' amplitudes.
    norm: f64,
}

impl Settings {
    /// The noise of channel `c` at sample `s`.
    fn at(&self, c: usize, s: i64, rate: f64, cell: &mut Cell) -> f64 {
        let key = self.keys[c];
        let n = if self.random {
            lattice(key, s)
        } else {
            let x = s as f64 / rate / self.period;
            // The base octave from the channel's cached lattice cell.
            let (mut sum, mut a, mut fq) = (cell.at(key, x), self.gain, self.spread);
            for h in 1..=self.harmon {
                sum += a * gradient(key ^ u64::from(h), x * fq);
                a *= self.gain;
                fq *= self.spread;
            }
            sum * self.norm
        };
        let shaped = if self.exp == 1.0 {
            n
        } else {
            n.signum() * n.abs().powf(self.exp)
        };
        self.offset + self.amp * shaped
    }
}

pub struct NoiseOp {
    pars: Pars,
    p: Settings,
    timeslice: bool,
    guard: Guard,
    lay: Layout,
    /// Per channel: the lattice cell of the base octave.
    cells: Vec<Cell>,
}

impl NoiseOp {
    fn read(&mut self) {
        let old = std::mem::take(&mut self.p.names);
        let mut p = self.pars.with(|s| Settings {
            random: s.text("type") == "random",
            seed: s.num("seed"),
            period: s.num("period"),
            harmon: s.num("harmon") as u32,
            spread: s.num("spread"),
            gain: s.num("rough"),
            exp: s.num("exp"),
            amp: s.num("amp"),
            offset: s.num("offset"),
            names: expand(s.text("channelname")).unwrap_or_else(|e| {
                tracing::warn!("noise: channelname: {e}");
                old
            }),
            keys: Vec::new(),
            norm: 1.0,
        });
        p.keys = (0..p.names.len()).map(|c| key(p.seed, c)).collect();
        let total: f64 = (0..=p.harmon).map(|h| p.gain.powi(h as i32)).sum();
        p.norm = if total > 0.0 { 1.0 / total } else { 1.0 };
        self.p = p;
        self.lay.invalidate();
        self.cells.clear();
    }
}

impl Operator for NoiseOp {
    fn wants_cook(&mut self, _frame: &Frame, _nodes: &[NodeState]) -> bool {
        true
    }

    fn cook(&mut self, ctx: &mut CookCtx, out: &mut ChopData) -> Result<(), CookError> {
        if self.pars.changed() {
            self.read();
        }
        let rate = ctx.frame.rate;
        let (n, start) = native::slice(ctx.frame, self.timeslice);
        self.lay.apply(out, &self.p.names, n, start, rate);
        self.cells.resize(self.p.names.len(), Cell::default());
        for (c, cell) in self.cells.iter_mut().enumerate() {
            for (j, v) in out.chan_mut(c).iter_mut().enumerate() {
                *v = self.p.at(c, start + j as i64, rate, cell) as f32;
            }
        }
        if self.guard.clean(out) {
            ctx.state().stats.warnings += 1;
        }
        ctx.state().timeslice = self.timeslice;
        Ok(())
    }

    fn reset(&mut self) {
        self.guard.reset();
    }

    crate::native_pars!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chop::testing::{check_err, Rig};

    fn noise(pars: &str, extra: &str) -> Rig {
        Rig::new(&format!(
            "rate = 60\n[[operator]]\nname = \"n\"\ntype = \"noise\"\n{extra}\npars = {{ {pars} }}\n"
        ))
    }

    #[test]
    fn gradient_noise_is_zero_on_the_lattice_and_bounded_between() {
        let k = key(1.0, 0);
        for i in -5..5 {
            assert_eq!(gradient(k, i as f64), 0.0);
        }
        let mut moved = false;
        for j in 0..1000 {
            let v = gradient(k, j as f64 * 0.0137);
            assert!(v.abs() <= 1.0, "{v}");
            moved |= v.abs() > 0.1;
        }
        assert!(moved);
    }

    #[test]
    fn samples_are_the_formula_at_their_time_dropped_frames_or_not() {
        let mut r = noise("seed = 7, period = 0.5, amp = 2, offset = 1", "timeslice = true");
        r.frame(1);
        r.frame_step(6, 5);
        let o = r.out("n");
        assert_eq!((o.num_samples(), o.start), (5, 2));
        let k = key(7.0, 0);
        for (j, v) in o.chan(0).iter().enumerate() {
            let s = (2 + j) as f64;
            let want = 1.0 + 2.0 * gradient(k, s / 60.0 / 0.5);
            assert!((*v as f64 - want).abs() < 1e-5, "{v} {want}");
        }
    }

    #[test]
    fn a_seed_repeats_and_another_differs() {
        let vals = |seed: &str| {
            let mut r = noise(&format!("seed = {seed}, channelname = \"c[1-3]\""), "");
            (1..30)
                .map(|n| {
                    r.frame(n);
                    r.out("n").samples().to_vec()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(vals("3"), vals("3"));
        assert_ne!(vals("3"), vals("4"));
        let v = vals("3");
        assert_ne!(v[20][0], v[20][1], "each channel has its own noise");
    }

    #[test]
    fn harmonics_stay_within_amp_and_exponent_shapes() {
        let mut r = noise("harmon = 4, rough = 0.9, type = \"harmonic\"", "");
        for n in 1..200 {
            r.frame(n);
            assert!(r.val("n", "chan1").abs() <= 1.0);
        }
        let mut white = noise("type = \"random\", exp = 2", "");
        let mut distinct = std::collections::HashSet::new();
        for n in 1..50 {
            white.frame(n);
            distinct.insert(white.val("n", "chan1").to_bits());
        }
        assert!(distinct.len() > 45, "white noise changes every sample");
    }

    #[test]
    fn bad_parameters_are_check_errors() {
        let e = check_err("[[operator]]\nname = \"n\"\ntype = \"noise\"\npars = { type = \"perlin\" }\n");
        assert!(e.contains("t.toml:4:17: error: noise: menu parameter \"type\" has no entry \"perlin\""), "{e}");
        let e = check_err("[[operator]]\nname = \"n\"\ntype = \"noise\"\npars = { harmonics = 2 }\n");
        assert!(e.contains("noise has no parameter \"harmonics\""), "{e}");
    }
}
