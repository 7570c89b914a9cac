//! Per-cook cost of the native CHOP kinds at 1000 channels × 1 sample, against the same
//! operation written as a pure-Python and as a numpy Script CHOP, measured in the same run.
//!
//!   cargo bench --bench native            # full run: medians and p90, µs per cook
//!
//! Each case runs through the real graph (`chopd::graph::Graph` built from a config string).
//! The time is the graph's own measure of the one operator's cook (`cook_time`, what an Info
//! CHOP shows), so the input operators cooking around it are not counted. Inputs move every
//! frame (an LFO over 1000 channels), so every operator under test cooks every frame.
//!
//! Under `cargo test --all-targets` it runs a few frames per case only, as a smoke test.
//! Targets (issue 12): ≤ 10 µs for constant, select, merge, rename, switch; ≤ 25 µs for lfo and
//! noise (and the shaping kinds, whose rows join this table).

use std::path::Path;
use std::time::Instant;

use chopd::cook::{Frame, ParValue};
use chopd::graph::Graph;

/// What feeds the operator under test.
#[derive(Clone, Copy)]
pub enum Input {
    /// Nothing: a generator.
    None,
    /// One input, `chan1`…`chan1000`, moving every frame.
    One,
    /// Two inputs, `a1`…`a500` and `b1`…`b500`, moving every frame.
    Two,
    /// Two inputs of 1000 channels each (`a1`…, `b1`…), moving every frame.
    Pair,
}

/// One row: the kind and its `pars`, its input, and the same operation as a Script CHOP's
/// `onCook` body, pure Python and numpy (`inp`, `inp2` are the inputs, `NAMES` the 1000 names,
/// `np`, `math`, `random` imported).
pub struct Case {
    pub kind: &'static str,
    pub pars: &'static str,
    pub input: Input,
    /// A parameter set anew every frame, so that an operator that cooks only on change cooks.
    pub poke: Option<&'static str>,
    pub target_us: f64,
    pub python: &'static str,
    pub numpy: &'static str,
}

pub const CASES: &[Case] = &[
    Case {
        kind: "constant",
        pars: "name0 = \"chan[1-1000]\", value0 = 0.5",
        input: Input::None,
        poke: Some("value0"),
        target_us: 10.0,
        python: "scriptOp.clear()\n    for n in NAMES:\n        scriptOp.appendChan(n)[0] = 0.5",
        numpy: "scriptOp.copyNumpyArray(np.full((1000, 1), 0.5, dtype=np.float32))",
    },
    Case {
        kind: "lfo",
        pars: "channelname = \"chan[1-1000]\", frequency = 2, amp = 0.5",
        input: Input::None,
        poke: None,
        target_us: 25.0,
        python: "t = absTime.seconds\n    scriptOp.clear()\n    for n in NAMES:\n        scriptOp.appendChan(n)[0] = 0.5 * math.sin(math.tau * 2 * t)",
        numpy: "t = absTime.seconds\n    scriptOp.copyNumpyArray(np.full((1000, 1), 0.5 * np.sin(2 * np.pi * 2 * t), dtype=np.float32))",
    },
    Case {
        kind: "noise",
        pars: "channelname = \"chan[1-1000]\", period = 0.5",
        input: Input::None,
        poke: None,
        target_us: 25.0,
        python: "scriptOp.clear()\n    for n in NAMES:\n        scriptOp.appendChan(n)[0] = random.uniform(-1, 1)",
        numpy: "scriptOp.copyNumpyArray(np.random.uniform(-1, 1, (1000, 1)).astype(np.float32))",
    },
    Case {
        kind: "select",
        pars: "channames = \"chan*\"",
        input: Input::One,
        poke: None,
        target_us: 10.0,
        python: "scriptOp.clear()\n    for c in inp.chans('chan*'):\n        scriptOp.appendChan(c.name)[0] = c[0]",
        numpy: "scriptOp.copyNumpyArray(inp.numpyArray())",
    },
    Case {
        kind: "merge",
        pars: "",
        input: Input::Two,
        poke: None,
        target_us: 10.0,
        python: "scriptOp.clear()\n    for i in (inp, inp2):\n        for c in i.chans():\n            scriptOp.appendChan(c.name)[0] = c[0]",
        numpy: "scriptOp.copyNumpyArray(np.concatenate((inp.numpyArray(), inp2.numpyArray())))",
    },
    Case {
        kind: "rename",
        pars: "renamefrom = \"chan*\", renameto = \"out*\"",
        input: Input::One,
        poke: None,
        target_us: 10.0,
        python: "scriptOp.clear()\n    for c in inp.chans():\n        scriptOp.appendChan('out' + c.name[4:])[0] = c[0]",
        numpy: "scriptOp.copyNumpyArray(inp.numpyArray())",
    },
    Case {
        kind: "switch",
        pars: "index = 1",
        input: Input::Pair,
        poke: None,
        target_us: 10.0,
        python: "scriptOp.clear()\n    for c in inp2.chans():\n        scriptOp.appendChan(c.name)[0] = c[0]",
        numpy: "scriptOp.copyNumpyArray(inp2.numpyArray())",
    },
];

const RATE: f64 = 1000.0;

/// The config of one case: its inputs, then `op` (of `kind` with `pars`).
fn config(input: Input, op: &str) -> String {
    let lfo = |name: &str, chans: &str| {
        format!(
            "[[operator]]\nname = \"{name}\"\ntype = \"lfo\"\npars = {{ channelname = \"{chans}\", frequency = 3 }}\n"
        )
    };
    let (inputs, list) = match input {
        Input::None => (String::new(), ""),
        Input::One => (lfo("in", "chan[1-1000]"), "inputs = [\"in\"]\n"),
        Input::Two => (
            lfo("in", "a[1-500]") + &lfo("in2", "b[1-500]"),
            "inputs = [\"in\", \"in2\"]\n",
        ),
        Input::Pair => (
            lfo("in", "a[1-1000]") + &lfo("in2", "b[1-1000]"),
            "inputs = [\"in\", \"in2\"]\n",
        ),
    };
    format!("rate = {RATE}\n{inputs}[[operator]]\nname = \"op\"\n{list}{op}")
}

/// Medians and p90 of the cook time of operator `op`, µs, over `iters` frames after `warmup`.
fn measure(src: &str, poke: Option<&str>, warmup: usize, iters: usize) -> (f64, f64, usize) {
    let config = chopd::config::check_str(Path::new("bench.toml"), src, chopd::chop::KINDS)
        .unwrap_or_else(|d| panic!("{d:?}\n{src}"));
    let (mut graph, _) = Graph::build(&config).unwrap_or_else(|e| panic!("{e:?}"));
    let mut samples = Vec::with_capacity(iters);
    for n in 0..warmup + iters {
        if let Some(p) = poke {
            graph
                .set_par_by_hand("op", p, ParValue::Float((n % 7) as f64 * 0.1))
                .unwrap();
        }
        let now = Instant::now();
        graph.frame(&Frame {
            frame: n as i64 + 1,
            step: 1,
            rate: RATE,
            due: now,
            started: now,
        });
        let node = graph.node("op").unwrap();
        assert!(
            node.stats.cooked_this_frame,
            "op must cook every frame:\n{src}"
        );
        if n >= warmup {
            samples.push(node.stats.cook_time_ms * 1e3);
        }
    }
    let chans = graph.node("op").unwrap().output.num_chans();
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    (at(0.5), at(0.9), chans)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (warmup, iters, py_iters) = if full { (500, 5000, 1000) } else { (3, 10, 5) };
    let dir = std::env::temp_dir().join(format!("chopd-bench-native-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let python = chopd::python::ensure_init().is_ok();

    println!("per-cook cost at 1000 channels x 1 sample, rate {RATE}: median (p90), µs");
    println!(
        "{:<10} {:>18} {:>8} {:>18} {:>18} {:>9} {:>9}",
        "kind", "native", "target", "pure Python", "numpy", "py/nat", "np/nat"
    );
    let mut over = Vec::new();
    for (k, c) in CASES.iter().enumerate() {
        let native = format!("type = \"{}\"\npars = {{ {} }}\n", c.kind, c.pars);
        let (med, p90, chans) = measure(&config(c.input, &native), c.poke, warmup, iters);
        assert!(chans >= 1000, "{}: {chans} channels", c.kind);
        if med > c.target_us {
            over.push(c.kind);
        }
        let script = |body: &str, tag: &str| -> Option<(f64, f64)> {
            if !python {
                return None;
            }
            let file = dir.join(format!("case{k}_{tag}.py"));
            let code = format!(
                "import math, random\nimport numpy as np\nNAMES = ['chan%d' % i for i in range(1, 1001)]\n\
                 def onCook(scriptOp):\n    inp = scriptOp.inputs[0] if scriptOp.inputs else None\n    \
                 inp2 = scriptOp.inputs[1] if len(scriptOp.inputs) > 1 else None\n    {body}\n"
            );
            std::fs::write(&file, code).unwrap();
            // A script without inputs is fed the moving input anyway, so it cooks every frame.
            let input = match c.input {
                Input::None => Input::One,
                i => i,
            };
            let op = format!("type = \"script\"\ncallbacks = \"{}\"\n", file.display());
            let (m, p, _) = measure(&config(input, &op), None, warmup.min(50), py_iters);
            Some((m, p))
        };
        let py = script(c.python, "py");
        let np = script(c.numpy, "np");
        let cell =
            |v: Option<(f64, f64)>| v.map_or("-".to_string(), |(m, p)| format!("{m:.2} ({p:.2})"));
        let ratio =
            |v: Option<(f64, f64)>| v.map_or("-".to_string(), |(m, _)| format!("{:.1}x", m / med));
        println!(
            "{:<10} {:>18} {:>8} {:>18} {:>18} {:>9} {:>9}",
            c.kind,
            format!("{med:.2} ({p90:.2})"),
            format!("≤ {}", c.target_us),
            cell(py),
            cell(np),
            ratio(py),
            ratio(np)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    if full && !over.is_empty() {
        println!("over target: {}", over.join(", "));
    }
}
