//! Per-cook cost of the shaping kinds at 1000 channels × 1 sample, and of the same operation
//! as a pure-Python and a numpy Script CHOP, measured in the same run.
//!
//!   cargo bench --bench native_shape           # full run, prints medians (µs per cook)
//!
//! Each operator is built from a config string by its kind (`config::check_str`, then
//! `Settings::build`), then cooked directly on an input node of 1000 one-sample channels whose
//! values move every frame (so filters always have work); only the cook is timed. Under
//! `cargo test --all-targets` it runs a few iterations only, as a smoke test.
//! Targets: ≤ 10 µs for math, limit, logic; ≤ 25 µs for lag, filter, speed, slope, trigger,
//! count, hold, delay, trail.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chopd::cook::{BuildCtx, ChopData, CookCtx, DaemonStats, Frame, NodeState, Operator};

const CHANNELS: usize = 1000;
const RATE: f64 = 1000.0;

/// One row of the table: a kind with its `pars`, how many inputs it gets (each a copy of the
/// moving 1000-channel input), and the same operation as pure Python and as numpy, where one is
/// written.
pub struct Case {
    pub kind: &'static str,
    pub pars: &'static str,
    pub inputs: usize,
    pub python: Option<&'static str>,
    pub numpy: Option<&'static str>,
}

pub const CASES: &[Case] = &[
    Case {
        kind: "math",
        pars: "{ gain = 2, postoff = 0.5 }",
        inputs: 1,
        python: Some(
            "def onCook(scriptOp):\n    scriptOp.copy(scriptOp.inputs[0])\n    for c in scriptOp.chans():\n        c[0] = c[0] * 2 + 0.5\n",
        ),
        numpy: Some(
            "def onCook(scriptOp):\n    scriptOp.copyNumpyArray(scriptOp.inputs[0].numpyArray() * 2 + 0.5)\n",
        ),
    },
    Case {
        kind: "math",
        pars: "{ chopop = \"add\" }",
        inputs: 2,
        python: None,
        numpy: None,
    },
    Case {
        kind: "limit",
        pars: "{ type = \"clamp\", min = 0.2, max = 0.8 }",
        inputs: 1,
        python: Some(
            "def onCook(scriptOp):\n    scriptOp.copy(scriptOp.inputs[0])\n    for c in scriptOp.chans():\n        c[0] = min(max(c[0], 0.2), 0.8)\n",
        ),
        numpy: Some(
            "import numpy as np\ndef onCook(scriptOp):\n    scriptOp.copyNumpyArray(np.clip(scriptOp.inputs[0].numpyArray(), 0.2, 0.8))\n",
        ),
    },
    Case {
        kind: "logic",
        pars: "{ convert = \"pos\", preop = \"offtoon\" }",
        inputs: 1,
        python: None,
        numpy: None,
    },
    Case {
        kind: "lag",
        pars: "{ lag = 0.2 }",
        inputs: 1,
        python: Some(
            "A = 1 - 10 ** (-(1 / 1000) / 0.2)\nstate = {}\ndef onCook(scriptOp):\n    scriptOp.copy(scriptOp.inputs[0])\n    for c in scriptOp.chans():\n        x = c[0]\n        y = state.get(c.name, x)\n        y += (x - y) * A\n        state[c.name] = y\n        c[0] = y\n",
        ),
        numpy: Some(
            "A = 1 - 10 ** (-(1 / 1000) / 0.2)\nst = [None]\ndef onCook(scriptOp):\n    x = scriptOp.inputs[0].numpyArray()\n    if st[0] is None or st[0].shape != x.shape:\n        st[0] = x.copy()\n    st[0] += (x - st[0]) * A\n    scriptOp.copyNumpyArray(st[0])\n",
        ),
    },
    Case {
        kind: "filter",
        pars: "{ type = \"oneeuro\", cutoff = 1, speedcoeff = 0.1 }",
        inputs: 1,
        python: None,
        numpy: None,
    },
    Case {
        kind: "filter",
        pars: "{ type = \"box\", width = 0.01 }",
        inputs: 1,
        python: None,
        numpy: None,
    },
    Case {
        kind: "speed",
        pars: "{}",
        inputs: 1,
        python: Some(
            "state = {}\ndef onCook(scriptOp):\n    scriptOp.copy(scriptOp.inputs[0])\n    for c in scriptOp.chans():\n        y = state.get(c.name, 0.0) + c[0] / 1000\n        state[c.name] = y\n        c[0] = y\n",
        ),
        numpy: Some(
            "st = [None]\ndef onCook(scriptOp):\n    x = scriptOp.inputs[0].numpyArray()\n    if st[0] is None or st[0].shape != x.shape:\n        st[0] = x * 0\n    st[0] += x / 1000\n    scriptOp.copyNumpyArray(st[0])\n",
        ),
    },
    Case {
        kind: "slope",
        pars: "{}",
        inputs: 1,
        python: Some(
            "prev = {}\ndef onCook(scriptOp):\n    scriptOp.copy(scriptOp.inputs[0])\n    for c in scriptOp.chans():\n        x = c[0]\n        c[0] = (x - prev.get(c.name, x)) * 1000\n        prev[c.name] = x\n",
        ),
        numpy: Some(
            "st = [None]\ndef onCook(scriptOp):\n    x = scriptOp.inputs[0].numpyArray()\n    p = st[0] if st[0] is not None and st[0].shape == x.shape else x\n    scriptOp.copyNumpyArray((x - p) * 1000)\n    st[0] = x.copy()\n",
        ),
    },
    Case {
        kind: "trigger",
        pars: "{ attack = 0.05, decay = 0.05, release = 0.1 }",
        inputs: 1,
        python: None,
        numpy: None,
    },
    Case {
        kind: "count",
        pars: "{}",
        inputs: 1,
        python: None,
        numpy: None,
    },
    Case {
        kind: "hold",
        pars: "{}",
        inputs: 2,
        python: None,
        numpy: None,
    },
    Case {
        kind: "delay",
        pars: "{ delay = 0.05 }",
        inputs: 1,
        python: None,
        numpy: None,
    },
    Case {
        kind: "trail",
        pars: "{ wlength = 0.01 }",
        inputs: 1,
        python: None,
        numpy: None,
    },
];

/// Builds the operator `op` of a config holding `inputs` OSC Ins (`in0`…) and `op` itself.
fn build(op_toml: &str, inputs: usize, dir: &Path) -> Box<dyn Operator> {
    let mut src = format!("rate = {RATE}\n");
    for i in 0..inputs {
        src += &format!(
            "[[operator]]\nname = \"in{i}\"\ntype = \"oscin\"\nport = 0\nlocal_address = \"127.0.0.1\"\n"
        );
    }
    let list: Vec<String> = (0..inputs).map(|i| format!("\"in{i}\"")).collect();
    src += &format!(
        "[[operator]]\nname = \"bench\"\ninputs = [{}]\n{op_toml}\n",
        list.join(", ")
    );
    let config = chopd::config::check_str(&dir.join("bench.toml"), &src, chopd::chop::KINDS)
        .unwrap_or_else(|d| panic!("{d:?}\n{src}"));
    let cfg = config.operators.last().unwrap();
    let cx = BuildCtx {
        rate: RATE,
        max_slice: Duration::from_millis(200),
        own_port: Default::default(),
    };
    cfg.settings.build(cfg, &cx).unwrap()
}

/// Median cook time of `op` over `iters` frames after `warmup`, in µs.
fn time(op: &mut dyn Operator, inputs: usize, warmup: usize, iters: usize) -> f64 {
    let mut nodes: Vec<NodeState> = (0..inputs)
        .map(|i| {
            let mut n = NodeState::new(&format!("in{i}"), "oscin", RATE);
            for c in 0..CHANNELS {
                n.output.append_with(&format!("ch{c}"), &[0.0]);
            }
            n
        })
        .collect();
    let mut me = NodeState::new("bench", "bench", RATE);
    me.inputs = (0..inputs).collect();
    nodes.push(me);
    let names: HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.clone(), i))
        .collect();
    let daemon = DaemonStats::default();
    let mut out = ChopData::new(RATE);
    let mut samples = Vec::with_capacity(iters);
    for n in 0..warmup + iters {
        // Moving input, outside the timing: a square wave per channel, offset by channel.
        for node in nodes.iter_mut().take(inputs) {
            for (c, v) in node.output.samples_mut().iter_mut().enumerate() {
                *v = if (n + c) % 50 < 25 { 0.9 } else { 0.1 };
            }
        }
        let now = Instant::now();
        let frame = Frame {
            frame: n as i64 + 1,
            step: 1,
            rate: RATE,
            due: now,
            started: now,
        };
        let me = nodes.len() - 1;
        let t0 = Instant::now();
        {
            let mut ctx = CookCtx {
                frame: &frame,
                me,
                nodes: &mut nodes,
                names: &names,
                daemon: &daemon,
            };
            op.wants_cook(&frame, &*ctx.nodes);
            op.cook(&mut ctx, &mut out).unwrap();
        }
        let dt = t0.elapsed();
        if n >= warmup {
            samples.push(dt);
        }
    }
    assert!(out.num_chans() >= 1);
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e6
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (warmup, iters) = if full { (1_000, 10_000) } else { (3, 10) };
    let py_iters = if full { 2_000 } else { 5 };
    chopd::python::ensure_init().unwrap();
    let dir = std::env::temp_dir().join(format!("chopd-bench-shape-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    println!("median per-cook cost at {CHANNELS} channels x 1 sample, rate {RATE} ({iters} native cooks, {py_iters} Python cooks each)");
    println!(
        "{:<8} {:<48} {:>9} {:>11} {:>11} {:>8} {:>8}",
        "kind", "pars", "native", "python", "numpy", "py/nat", "np/nat"
    );
    for (k, case) in CASES.iter().enumerate() {
        let native = {
            let toml = format!("type = \"{}\"\npars = {}", case.kind, case.pars);
            let mut op = build(&toml, case.inputs, &dir);
            time(op.as_mut(), case.inputs, warmup, iters)
        };
        let mut script = |code: Option<&str>, tag: &str| -> Option<f64> {
            let code = code?;
            let file = dir.join(format!("case{k}_{tag}.py"));
            std::fs::write(&file, code).unwrap();
            let toml = format!("type = \"script\"\ncallbacks = \"{}\"", file.display());
            let mut op = build(&toml, case.inputs, &dir);
            Some(time(op.as_mut(), case.inputs, warmup.min(100), py_iters))
        };
        let py = script(case.python, "py");
        let np = script(case.numpy, "np");
        let us = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}µs"));
        let ratio = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}x", v / native));
        println!(
            "{:<8} {:<48} {:>7.2}µs {:>11} {:>11} {:>8} {:>8}",
            case.kind,
            case.pars,
            native,
            us(py),
            us(np),
            ratio(py),
            ratio(np)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
