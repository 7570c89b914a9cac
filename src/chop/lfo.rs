//! LFO CHOP: a low-frequency oscillator stepping through a waveform at `frequency` cycles per
//! second, one channel per octave-control channel (input 0) or per name of `channelname`.
//!
//! Each channel keeps its own position in the cycle and advances it by `frequency · 2^octave /
//! rate` per sample, so a frequency change bends the wave without a jump, as TouchDesigner's
//! LFO does. With a constant frequency, the sample of frame `n` is
//! `offset + amp · wave(frac(frequency · n / rate + phase))`. Input 1 (reset) restarts every
//! channel at the start of the wave when its first channel goes from ≤ 0 to > 0.

use crate::chop::native::{self, check_pars, expand, Guard, Layout, NativeConfig, ParsRaw, Pars};
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind, OperatorConfig};
use crate::cook::par::ParDef;
use crate::cook::{BuildCtx, ChopData, CookCtx, CookError, Frame, NodeState, Operator};

pub struct Lfo;

/// The waveforms, by TouchDesigner's tokens.
pub const WAVES: &[&str] = &["sin", "normal", "tri", "ramp", "square", "pulse"];

fn defs() -> Vec<ParDef> {
    vec![
        ParDef::menu("wavetype", "LFO", WAVES, "sin")
            .label("Type")
            .labels(&["Sine", "Gaussian", "Triangle", "Ramp", "Square", "Pulse"]),
        ParDef::float("frequency", "LFO", 1.0).label("Frequency").range(0.0, 10.0),
        ParDef::float("offset", "LFO", 0.0).label("Offset").range(-1.0, 1.0),
        ParDef::float("amp", "LFO", 1.0).label("Amplitude").range(0.0, 1.0),
        ParDef::float("bias", "LFO", 0.0)
            .label("Bias")
            .range(-1.0, 1.0)
            .clamp_min(-1.0)
            .clamp_max(1.0),
        ParDef::float("phase", "LFO", 0.0).label("Phase").range(0.0, 1.0),
        ParDef::string("channelname", "Channel", "chan1").label("Channel Name"),
    ]
}

impl Kind for Lfo {
    const NAME: &'static str = "lfo";
    const SUMMARY: &'static str = "LFO CHOP: sine, gaussian, triangle, ramp, square and pulse waves";
    type Raw = ParsRaw;
    type Settings = NativeConfig;

    fn check(cx: &mut Checker, r: ParsRaw, _refs: &mut OpRefs) -> Option<NativeConfig> {
        let pars = check_pars(cx, Self::NAME, &defs(), native::no_alias, &r.pars);
        native::check_names(cx, Self::NAME, &r.pars, &["channelname"]);
        Some(NativeConfig::new(Self::NAME, pars, build))
    }
}

fn build(op: &OperatorConfig, cx: &BuildCtx, c: &NativeConfig) -> Box<dyn Operator> {
    Box::new(LfoOp {
        pars: Pars::new(op, cx.rate, defs(), &c.pars),
        p: Settings::default(),
        timeslice: op.timeslice,
        names: Vec::new(),
        phase: Vec::new(),
        reset_was_on: false,
        guard: Guard::default(),
        lay: Layout::default(),
        in_layout: 0,
        names_dirty: true,
    })
}

/// The waveform of `x` in [0, 1): sine and triangle start at 0 going up, gaussian is a bell
/// peaking at 1 mid-cycle, ramp rises from 0 to 1, square is +1 for the first `(1 + bias) / 2`
/// of the cycle and −1 after.
pub fn wave(kind: usize, x: f64, bias: f64) -> f64 {
    match kind {
        0 => (std::f64::consts::TAU * x).sin(),
        1 => {
            let d = (x - 0.5) * 6.0;
            (-0.5 * d * d).exp()
        }
        2 => {
            let y = (x + 0.25).fract();
            1.0 - 4.0 * (y - 0.5).abs()
        }
        3 => x,
        4 => {
            if x < (1.0 + bias) / 2.0 {
                1.0
            } else {
                -1.0
            }
        }
        _ => 0.0,
    }
}

#[derive(Clone, Debug, Default)]
struct Settings {
    kind: usize,
    frequency: f64,
    offset: f64,
    amp: f64,
    bias: f64,
    phase: f64,
    names: Vec<String>,
}

/// Where a channel is in its wave: at sample `s0` it was at `x0` cycles, and it moves `fr`
/// cycles a second since. Kept as an anchor rather than a running sum, so that with a steady
/// frequency the position of sample `s` is `fr · s / rate` to the last bit, however long it runs.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cycle {
    x0: f64,
    s0: i64,
    fr: f64,
}

impl Cycle {
    fn at(&self, s: i64, rate: f64) -> f64 {
        self.x0 + (s - self.s0) as f64 * self.fr / rate
    }
}

pub struct LfoOp {
    pars: Pars,
    p: Settings,
    timeslice: bool,
    /// The output channels' names as last laid out.
    names: Vec<String>,
    /// Each channel's cycle; `None` until its first sample.
    phase: Vec<Option<Cycle>>,
    reset_was_on: bool,
    guard: Guard,
    lay: Layout,
    /// Input 0's layout when `names` were taken from it (0: no input).
    in_layout: u64,
    /// `channelname` changed: take the names again.
    names_dirty: bool,
}

impl LfoOp {
    fn read(&mut self) {
        let p = self.pars.with(|s| Settings {
            kind: s.num("wavetype") as usize,
            frequency: s.num("frequency"),
            offset: s.num("offset"),
            amp: s.num("amp"),
            bias: s.num("bias"),
            phase: s.num("phase"),
            names: expand(s.text("channelname")).unwrap_or_else(|e| {
                tracing::warn!("lfo: channelname: {e}");
                self.p.names.clone()
            }),
        });
        self.p = p;
        self.names_dirty = true;
    }
}

impl Operator for LfoOp {
    /// A wave moves every frame.
    fn wants_cook(&mut self, _frame: &Frame, _nodes: &[NodeState]) -> bool {
        true
    }

    fn cook(&mut self, ctx: &mut CookCtx, out: &mut ChopData) -> Result<(), CookError> {
        if self.pars.changed() {
            self.read();
        }
        let frame = *ctx.frame;
        let rate = frame.rate;
        let (n, start) = native::slice(&frame, self.timeslice);
        // Samples each output sample advances: all the frames since the last cook when only
        // the last one is output.
        let advance = if self.timeslice { 1 } else { frame.step.max(1) };
        let octave = ctx.input(0);
        let id = octave.map_or(0, |o| o.layout_id());
        if self.names_dirty || id != self.in_layout {
            let names: &[String] = octave.map_or(&self.p.names, |o| o.names());
            if names != self.names.as_slice() {
                self.names = names.to_vec();
                self.phase.clear();
                self.lay.invalidate();
            }
            self.in_layout = id;
            self.names_dirty = false;
        }
        self.phase.resize(self.names.len(), None);
        self.lay.apply(out, &self.names, n, start, rate);

        let reset = ctx
            .input(1)
            .filter(|r| r.num_chans() > 0)
            .is_some_and(|r| r.last(0) > 0.0);
        let restart = reset && !self.reset_was_on;
        self.reset_was_on = reset;

        let p = &self.p;
        let octave = ctx.input(0);
        let mut prev: Option<Cycle> = None;
        for (k, ch) in self.phase.iter_mut().enumerate() {
            let oct = octave.map_or(0.0, |o| o.last(k) as f64);
            let fr = p.frequency * oct.exp2();
            let c = ch.get_or_insert(Cycle { x0: 0.0, s0: 0, fr });
            if restart {
                // The first sample of this cook is the start of the wave.
                *c = Cycle { x0: 0.0, s0: start, fr };
            } else if c.fr != fr {
                *c = Cycle { x0: c.at(start - advance, rate).rem_euclid(1.0), s0: start - advance, fr };
            }
            let c = *c;
            // Channels in step (no octave input: all of them) share their samples.
            if k > 0 && prev == Some(c) {
                let (done, rest) = out.samples_mut().split_at_mut(k * n);
                rest[..n].copy_from_slice(&done[(k - 1) * n..]);
                continue;
            }
            prev = Some(c);
            for (j, v) in out.chan_mut(k).iter_mut().enumerate() {
                let s = start + j as i64;
                let x = c.at(s, rate) + p.phase;
                let w = if p.kind == 5 {
                    // A pulse on the sample that starts a cycle (one of the dropped frames
                    // included, so a non-sliced cook never loses one).
                    let before = c.at(s - advance, rate) + p.phase;
                    let starts = x.floor() > before.floor() || (restart && j == 0);
                    f64::from(u8::from(starts))
                } else {
                    wave(p.kind, x.rem_euclid(1.0), p.bias)
                };
                *v = (p.offset + p.amp * w) as f32;
            }
        }
        if self.guard.clean(out) {
            ctx.state().stats.warnings += 1;
        }
        ctx.state().timeslice = self.timeslice;
        Ok(())
    }

    fn reset(&mut self) {
        self.reset_was_on = false;
        self.phase.clear();
        self.names.clear();
        self.guard.reset();
    }

    crate::native_pars!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chop::testing::{check_err, Rig};
    use crate::cook::ParValue;

    const RATE: f64 = 60.0;

    fn lfo(pars: &str, extra: &str) -> Rig {
        Rig::new(&format!(
            "rate = 60\n[[operator]]\nname = \"l\"\ntype = \"lfo\"\n{extra}\npars = {{ {pars} }}\n"
        ))
    }

    fn close(a: f32, b: f64) {
        assert!((a as f64 - b).abs() < 1e-5, "{a} != {b}");
    }

    #[test]
    fn a_sine_follows_frequency_times_time_plus_phase() {
        let mut r = lfo("frequency = 2, amp = 3, offset = 0.5, phase = 0.1", "");
        for n in 1..=10 {
            r.frame(n);
            let x = 2.0 * n as f64 / RATE + 0.1;
            close(r.val("l", "chan1"), 0.5 + 3.0 * (std::f64::consts::TAU * x).sin());
        }
    }

    #[test]
    fn dropped_frames_advance_the_wave_sliced_or_not() {
        let mut plain = lfo("wavetype = \"ramp\", frequency = 1", "");
        let mut sliced = lfo("wavetype = \"ramp\", frequency = 1", "timeslice = true");
        for r in [&mut plain, &mut sliced] {
            r.frame(1);
            r.frame_step(5, 4);
        }
        close(plain.val("l", "chan1"), 5.0 / RATE);
        let o = sliced.out("l");
        assert_eq!((o.num_samples(), o.start), (4, 2));
        for (j, v) in o.chan(0).iter().enumerate() {
            close(*v, (2 + j) as f64 / RATE);
        }
    }

    #[test]
    fn square_bias_moves_the_duty_cycle_and_triangle_starts_at_zero() {
        assert_eq!(wave(4, 0.7, 0.5), 1.0);
        assert_eq!(wave(4, 0.7, 0.0), -1.0);
        assert_eq!(wave(2, 0.0, 0.0), 0.0);
        assert_eq!(wave(2, 0.25, 0.0), 1.0);
        assert_eq!(wave(2, 0.75, 0.0), -1.0);
        assert_eq!(wave(1, 0.5, 0.0), 1.0);
        assert!(wave(1, 0.0, 0.0) < 0.02);
    }

    #[test]
    fn a_pulse_marks_each_cycle_start_even_in_dropped_frames() {
        // 10 cycles a second at 60 fps: a cycle starts every 6 frames.
        let mut r = lfo("wavetype = \"pulse\", frequency = 10", "");
        let mut pulses = Vec::new();
        for n in 1..=24 {
            r.frame(n);
            if r.val("l", "chan1") == 1.0 {
                pulses.push(n);
            }
        }
        assert_eq!(pulses, [6, 12, 18, 24]);
        r.frame_step(28, 4);
        assert_eq!(r.val("l", "chan1"), 0.0);
        r.frame_step(31, 3);
        assert_eq!(r.val("l", "chan1"), 1.0, "frame 30 started a cycle");
    }

    #[test]
    fn octave_input_doubles_per_unit_and_names_the_channels() {
        let mut r = Rig::new(
            "rate = 60\n[[operator]]\nname = \"o\"\ntype = \"constant\"\npars = { name0 = \"a b\", value0 = 0, name1 = \"b\", value1 = 1 }\n\
             [[operator]]\nname = \"l\"\ntype = \"lfo\"\ninputs = [\"o\"]\npars = { wavetype = \"ramp\", frequency = 0.5 }\n",
        );
        r.frame(1);
        r.frame(2);
        close(r.val("l", "a"), 0.5 * 2.0 / RATE);
        close(r.val("l", "b"), 1.0 * 2.0 / RATE);
    }

    #[test]
    fn a_frequency_change_keeps_the_wave_continuous() {
        let mut r = lfo("wavetype = \"ramp\", frequency = 1", "");
        r.frame(1);
        r.frame(2);
        r.set("l", "frequency", ParValue::Float(3.0));
        r.frame(3);
        close(r.val("l", "chan1"), 2.0 / RATE + 3.0 / RATE);
    }

    #[test]
    fn unknown_tokens_suggest_touchdesigners() {
        let e = check_err("[[operator]]\nname = \"l\"\ntype = \"lfo\"\npars = { wavetype = \"squar\" }\n");
        assert!(e.contains("t.toml:4:21: error: lfo: menu parameter \"wavetype\" has no entry \"squar\""), "{e}");
        assert!(e.contains("did you mean \"square\"?"), "{e}");
        let e = check_err("[[operator]]\nname = \"l\"\ntype = \"lfo\"\npars = { frequncy = 2 }\n");
        assert!(e.contains("did you mean \"frequency\"?"), "{e}");
    }

    #[test]
    fn bias_is_clamped_as_touchdesigner_does() {
        let mut r = lfo("bias = 3", "");
        r.frame(1);
        assert_eq!(r.par("l", "bias"), ParValue::Float(1.0));
    }
}
