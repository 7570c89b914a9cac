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

/// What feeds the operator under test (the same rows as benches/native.rs's `Input`).
#[derive(Clone, Copy)]
pub enum Input {
    /// One input, `chan1`…`chan1000`, moving every frame.
    One,
    /// Two inputs of 1000 channels each, `chan…` and `b…`, moving every frame.
    Two,
}

/// One row: the kind and its `pars`, its input, its target, and the same operation as a Script
/// CHOP's `onCook` body, pure Python and numpy (`inp`, `inp2` are the inputs, `np` and `math`
/// imported; state lives in the module's globals). The fields are those of the generator
/// kinds' table in benches/native.rs, so these rows can join it.
pub struct Case {
    pub kind: &'static str,
    pub pars: &'static str,
    pub input: Input,
    pub target_us: f64,
    pub python: &'static str,
    pub numpy: &'static str,
}

pub const CASES: &[Case] = &[
    Case {
        kind: "math",
        pars: "gain = 2, postoff = 0.5",
        input: Input::One,
        target_us: 10.0,
        python: "scriptOp.copy(inp)\n    for c in scriptOp.chans():\n        c[0] = c[0] * 2 + 0.5",
        numpy: "scriptOp.copyNumpyArray(inp.numpyArray() * 2 + 0.5)",
    },
    Case {
        kind: "math",
        pars: "chopop = \"add\"",
        input: Input::Two,
        target_us: 10.0,
        python: "scriptOp.copy(inp)\n    for c, d in zip(scriptOp.chans(), inp2.chans()):\n        c[0] = c[0] + d[0]",
        numpy: "scriptOp.copyNumpyArray(inp.numpyArray() + inp2.numpyArray())",
    },
    Case {
        kind: "limit",
        pars: "type = \"clamp\", min = 0.2, max = 0.8",
        input: Input::One,
        target_us: 10.0,
        python: "scriptOp.copy(inp)\n    for c in scriptOp.chans():\n        c[0] = min(max(c[0], 0.2), 0.8)",
        numpy: "scriptOp.copyNumpyArray(np.clip(inp.numpyArray(), 0.2, 0.8))",
    },
    Case {
        kind: "logic",
        pars: "convert = \"pos\"",
        input: Input::One,
        target_us: 10.0,
        python: "scriptOp.copy(inp)\n    for c in scriptOp.chans():\n        c[0] = 1.0 if c[0] > 0 else 0.0",
        numpy: "scriptOp.copyNumpyArray((inp.numpyArray() > 0).astype(np.float32))",
    },
    Case {
        kind: "lag",
        pars: "lag = 0.2",
        input: Input::One,
        target_us: 25.0,
        python: "a = 1 - 10 ** (-(1 / 1000) / 0.2)\n    st = globals().setdefault('st', {})\n    scriptOp.copy(inp)\n    for c in scriptOp.chans():\n        x = c[0]\n        y = st.get(c.name, x)\n        y += (x - y) * a\n        st[c.name] = y\n        c[0] = y",
        numpy: "a = 1 - 10 ** (-(1 / 1000) / 0.2)\n    x = inp.numpyArray()\n    y = globals().get('y')\n    if y is None or y.shape != x.shape:\n        y = x.copy()\n    y += (x - y) * a\n    globals()['y'] = y\n    scriptOp.copyNumpyArray(y)",
    },
    Case {
        kind: "filter",
        pars: "type = \"oneeuro\", cutoff = 1, speedcoeff = 0.1",
        input: Input::One,
        target_us: 25.0,
        python: "dt = 1 / 1000\n    al = lambda fc: 1 / (1 + 1 / (2 * math.pi * fc * dt))\n    st = globals().setdefault('st', {})\n    scriptOp.copy(inp)\n    for c in scriptOp.chans():\n        x = c[0]\n        p, dx = st.get(c.name, (x, 0.0))\n        dx += al(1) * ((x - p) / dt - dx)\n        p += al(1 + 0.1 * abs(dx)) * (x - p)\n        st[c.name] = (p, dx)\n        c[0] = p",
        numpy: "dt = 1 / 1000\n    x = inp.numpyArray()\n    s = globals().get('s')\n    if s is None or s[0].shape != x.shape:\n        s = (x.copy(), x * 0)\n    p, dx = s\n    al = lambda fc: 1 / (1 + 1 / (2 * np.pi * fc * dt))\n    dx += al(1) * ((x - p) / dt - dx)\n    p += al(1 + 0.1 * np.abs(dx)) * (x - p)\n    globals()['s'] = (p, dx)\n    scriptOp.copyNumpyArray(p)",
    },
    Case {
        kind: "filter",
        pars: "type = \"box\", width = 0.01",
        input: Input::One,
        target_us: 25.0,
        python: "",
        numpy: "",
    },
    Case {
        kind: "speed",
        pars: "",
        input: Input::One,
        target_us: 25.0,
        python: "st = globals().setdefault('st', {})\n    scriptOp.copy(inp)\n    for c in scriptOp.chans():\n        y = st.get(c.name, 0.0) + c[0] / 1000\n        st[c.name] = y\n        c[0] = y",
        numpy: "x = inp.numpyArray()\n    y = globals().get('y')\n    if y is None or y.shape != x.shape:\n        y = x * 0\n    y += x / 1000\n    globals()['y'] = y\n    scriptOp.copyNumpyArray(y)",
    },
    Case {
        kind: "slope",
        pars: "",
        input: Input::One,
        target_us: 25.0,
        python: "st = globals().setdefault('st', {})\n    scriptOp.copy(inp)\n    for c in scriptOp.chans():\n        x = c[0]\n        c[0] = (x - st.get(c.name, x)) * 1000\n        st[c.name] = x",
        numpy: "x = inp.numpyArray()\n    p = globals().get('p')\n    if p is None or p.shape != x.shape:\n        p = x\n    scriptOp.copyNumpyArray((x - p) * 1000)\n    globals()['p'] = x.copy()",
    },
    Case {
        kind: "trigger",
        pars: "attack = 0.05, decay = 0.05, release = 0.1",
        input: Input::One,
        target_us: 25.0,
        python: "",
        numpy: "",
    },
    Case {
        kind: "count",
        pars: "",
        input: Input::One,
        target_us: 25.0,
        python: "st = globals().setdefault('st', {})\n    scriptOp.copy(inp)\n    for c in scriptOp.chans():\n        on = c[0] > 0.5\n        was, n = st.get(c.name, (False, 0))\n        n += on and not was\n        st[c.name] = (on, n)\n        c[0] = n",
        numpy: "x = inp.numpyArray() > 0.5\n    s = globals().get('s')\n    if s is None or s[0].shape != x.shape:\n        s = (x & False, np.zeros(x.shape, np.float32))\n    was, n = s\n    n += x & ~was\n    globals()['s'] = (x, n)\n    scriptOp.copyNumpyArray(n)",
    },
    Case {
        kind: "hold",
        pars: "",
        input: Input::Two,
        target_us: 25.0,
        python: "",
        numpy: "",
    },
    Case {
        kind: "delay",
        pars: "delay = 0.05",
        input: Input::One,
        target_us: 25.0,
        python: "",
        numpy: "x = inp.numpyArray()\n    r = globals().get('r')\n    if r is None or r.shape[1] != x.shape[0]:\n        r = np.repeat(x.T, 50, axis=0)\n    i = globals().get('i', 0)\n    out = r[i].copy()\n    r[i] = x[:, 0]\n    globals()['r'], globals()['i'] = r, (i + 1) % 50\n    scriptOp.copyNumpyArray(out.reshape(-1, 1))",
    },
    Case {
        kind: "trail",
        pars: "wlength = 0.01",
        input: Input::One,
        target_us: 25.0,
        python: "",
        numpy: "",
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
        wake: Default::default(),
    };
    cfg.settings.build(cfg, &cx).unwrap()
}

/// Median cook time of `op` over `iters` frames after `warmup`, in µs.
fn time(op: &mut dyn Operator, inputs: usize, warmup: usize, iters: usize) -> f64 {
    let mut nodes: Vec<NodeState> = (0..inputs)
        .map(|i| {
            let mut n = NodeState::new(&format!("in{i}"), "oscin", RATE);
            for c in 0..CHANNELS {
                let prefix = if i == 0 { "chan" } else { "b" };
                n.output.append_with(&format!("{prefix}{}", c + 1), &[0.0]);
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
        "{:<8} {:<48} {:>9} {:>7} {:>11} {:>11} {:>8} {:>8}",
        "kind", "pars", "native", "target", "python", "numpy", "py/nat", "np/nat"
    );
    let mut over = Vec::new();
    for (k, case) in CASES.iter().enumerate() {
        let inputs = match case.input {
            Input::One => 1,
            Input::Two => 2,
        };
        let native = {
            let toml = format!("type = \"{}\"\npars = {{ {} }}", case.kind, case.pars);
            let mut op = build(&toml, inputs, &dir);
            time(op.as_mut(), inputs, warmup, iters)
        };
        if native > case.target_us {
            over.push(case.kind);
        }
        let script = |body: &str, tag: &str| -> Option<f64> {
            if body.is_empty() {
                return None;
            }
            let file = dir.join(format!("case{k}_{tag}.py"));
            let code = format!(
                "import math\nimport numpy as np\n\
                 def onCook(scriptOp):\n    inp = scriptOp.inputs[0]\n    \
                 inp2 = scriptOp.inputs[1] if len(scriptOp.inputs) > 1 else None\n    {body}\n"
            );
            std::fs::write(&file, code).unwrap();
            let toml = format!("type = \"script\"\ncallbacks = \"{}\"", file.display());
            let mut op = build(&toml, inputs, &dir);
            Some(time(op.as_mut(), inputs, warmup.min(100), py_iters))
        };
        let py = script(case.python, "py");
        let np = script(case.numpy, "np");
        let us = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}µs"));
        let ratio = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}x", v / native));
        println!(
            "{:<8} {:<48} {:>7.2}µs {:>7} {:>11} {:>11} {:>8} {:>8}",
            case.kind,
            case.pars,
            native,
            format!("≤ {}", case.target_us),
            us(py),
            us(np),
            ratio(py),
            ratio(np)
        );
    }
    if full && !over.is_empty() {
        println!("over target: {}", over.join(", "));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
