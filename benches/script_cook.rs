//! Per-cook cost of Script CHOPs: a real `ScriptOp` with a real callbacks
//! file, cooked directly (the graph's per-node work around it is not included), on an input of
//! 1000 one-sample channels.
//!
//!   cargo bench --bench script_cook            # full run, prints medians (µs per cook)
//!
//! Under `cargo test --all-targets` it runs a few iterations only, as a smoke test.
//! Targets: empty onCook ≤ 5 µs; 1000-channel numpy ×2 ≤ 50 µs.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chopd::chop::script::{ScriptConfig, ScriptOp};
use chopd::config::OperatorConfig;
use chopd::cook::{BuildCtx, ChopData, CookCtx, DaemonStats, Frame, NodeState, Operator, SrSelect};
use chopd::pattern::Pattern;

const CHANNELS: usize = 1000;

const CASES: &[(&str, &str)] = &[
    ("empty onCook", "def onCook(scriptOp):\n    pass\n"),
    (
        "numpy x2, 1000 channels (copy + in-place on the output's memory)",
        "def onCook(scriptOp):\n    scriptOp.copy(scriptOp.inputs[0])\n    a = scriptOp.numpyArray()\n    a *= 2\n",
    ),
    (
        "numpy x2, 1000 channels (copyNumpyArray of input * 2)",
        "def onCook(scriptOp):\n    scriptOp.copyNumpyArray(scriptOp.inputs[0].numpyArray() * 2)\n",
    ),
    (
        "pure Python loop, 1000 channels (clear + appendChan per channel)",
        "def onCook(scriptOp):\n    scriptOp.clear()\n    for c in scriptOp.inputs[0].chans():\n        scriptOp.appendChan(c.name)[0] = c[0] * 2\n",
    ),
    (
        "pure Python loop, 1000 channels (copy, then ch[0] *= 2 per channel)",
        "def onCook(scriptOp):\n    scriptOp.copy(scriptOp.inputs[0])\n    for c in scriptOp.chans():\n        c[0] = c[0] * 2\n",
    ),
];

fn script_op(file: &Path) -> ScriptOp {
    let cfg = ScriptConfig {
        callbacks: file.to_path_buf(),
        cook_budget: Duration::from_millis(1000),
        modoutsidecook: false,
        pars: Vec::new(),
        modes: Vec::new(),
    };
    let op = OperatorConfig {
        name: "bench".into(),
        inputs: vec!["in".into()],
        timeslice: false,
        scope: Pattern::new("*").unwrap(),
        srselect: SrSelect::First,
        export: None,
        kind: "script",
        reads: Vec::new(),
        settings: std::sync::Arc::new(cfg.clone()),
    };
    let cx = BuildCtx {
        rate: 1000.0,
        max_slice: Duration::from_millis(200),
        own_port: Default::default(),
        wake: Default::default(),
    };
    ScriptOp::new(&op, &cfg, &cx).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (warmup, iters) = if full { (2_000, 20_000) } else { (5, 20) };
    chopd::python::ensure_init().unwrap();
    let dir = std::env::temp_dir().join(format!("chopd-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let rate = 1000.0;
    let mut input = NodeState::new("in", "oscin", rate);
    for i in 0..CHANNELS {
        input
            .output
            .append_with(&format!("ch{i}"), &[i as f32 * 0.001]);
    }
    println!("per-cook cost of ScriptOp::cook, {iters} cooks each (after {warmup} warm-up cooks)");
    println!("{:<70} {:>9} {:>9} {:>9}", "case", "median", "p90", "p99");
    for (k, (label, code)) in CASES.iter().enumerate() {
        let file = dir.join(format!("case{k}.py"));
        std::fs::write(&file, code).unwrap();
        let mut op = script_op(&file);
        let mut node = NodeState::new("bench", "script", rate);
        node.inputs = vec![0];
        let mut nodes = vec![
            NodeState {
                output: input.output.clone(),
                ..NodeState::new("in", "oscin", rate)
            },
            node,
        ];
        let names: HashMap<String, usize> =
            [("in".to_string(), 0), ("bench".to_string(), 1)].into();
        let daemon = DaemonStats::default();
        let mut out = ChopData::new(rate);
        let mut samples = Vec::with_capacity(iters);
        for n in 0..warmup + iters {
            let now = Instant::now();
            let frame = Frame {
                frame: n as i64 + 1,
                step: 1,
                rate,
                due: now,
                started: now,
            };
            let t0 = Instant::now();
            {
                let mut ctx = CookCtx {
                    frame: &frame,
                    me: 1,
                    nodes: &mut nodes,
                    names: &names,
                    daemon: &daemon,
                };
                op.cook(&mut ctx, &mut out).unwrap();
            }
            let dt = t0.elapsed();
            if n >= warmup {
                samples.push(dt);
            }
        }
        if k > 0 {
            assert_eq!(out.num_chans(), CHANNELS, "{label}");
            assert!(
                (out.last(CHANNELS - 1) - 2.0 * 0.999).abs() < 1e-4,
                "{label}"
            );
        }
        samples.sort();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "{:<70} {:>7.2}µs {:>7.2}µs {:>7.2}µs",
            label,
            us(percentile(&samples, 0.5)),
            us(percentile(&samples, 0.9)),
            us(percentile(&samples, 0.99))
        );
    }
    println!(
        "resident memory (python + numpy + {CHANNELS} channels, this process): {:.1} MB",
        rss_mb()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
