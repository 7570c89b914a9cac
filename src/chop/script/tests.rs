//! Script CHOP unit tests: real callbacks files (tests/fixtures/scripts) driven through a small
//! stand-in for the graph that follows the engine's cook rules (cook when new, when an input
//! changed this frame, or when `wants_cook` says so; restore the last good output on error).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;
use crate::cook::{newest_input, CookStats, DaemonStats};
use crate::pattern::Pattern;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/scripts")
        .join(name)
}

pub(super) struct Rig {
    pub nodes: Vec<NodeState>,
    names: HashMap<String, usize>,
    daemon: DaemonStats,
    pub ops: Vec<Option<ScriptOp>>,
    /// Each node's `scope` (the graph passes unscoped input-0 channels through).
    scopes: Vec<Pattern>,
    pub frame: i64,
    rate: f64,
    /// `max_slice_ms` of the config the scripts are built from.
    pub max_slice: Duration,
}

impl Rig {
    pub fn new(rate: f64) -> Rig {
        Rig {
            nodes: Vec::new(),
            names: HashMap::new(),
            daemon: DaemonStats::default(),
            ops: Vec::new(),
            scopes: Vec::new(),
            frame: 0,
            rate,
            max_slice: Duration::from_millis(200),
        }
    }

    fn build_ctx(&self) -> crate::cook::BuildCtx {
        crate::cook::BuildCtx {
            rate: self.rate,
            max_slice: self.max_slice,
            own_port: Default::default(),
            wake: Default::default(),
        }
    }

    /// A plain node whose output the test sets (stands in for an `oscin`).
    pub fn add_input(&mut self, name: &str, chans: &[(&str, &[f32])]) -> usize {
        let mut n = NodeState::new(name, "oscin", self.rate);
        set_chans(&mut n.output, chans);
        self.push(n, None)
    }

    fn push(&mut self, n: NodeState, op: Option<ScriptOp>) -> usize {
        let i = self.nodes.len();
        self.scopes.push(Pattern::new("*").unwrap());
        self.names.insert(n.name.clone(), i);
        self.nodes.push(n);
        self.ops.push(op);
        i
    }

    pub fn add_script(&mut self, name: &str, file: &Path, inputs: &[&str]) -> usize {
        self.add_script_with(name, file, inputs, |_, _| {})
    }

    pub fn add_script_with(
        &mut self,
        name: &str,
        file: &Path,
        inputs: &[&str],
        tweak: impl FnOnce(&mut OperatorConfig, &mut ScriptConfig),
    ) -> usize {
        let mut cfg = ScriptConfig {
            callbacks: file.to_path_buf(),
            cook_budget: Duration::from_millis(1000),
            modoutsidecook: false,
            pars: Vec::new(),
            modes: Vec::new(),
        };
        let mut op = OperatorConfig {
            name: name.to_string(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            timeslice: false,
            scope: Pattern::new("*").unwrap(),
            srselect: SrSelect::First,
            export: None,
            kind: "script",
            reads: Vec::new(),
            settings: std::sync::Arc::new(cfg.clone()),
        };
        tweak(&mut op, &mut cfg);
        op.settings = std::sync::Arc::new(cfg.clone());
        let script = ScriptOp::new(&op, &cfg, &self.build_ctx()).unwrap();
        let mut n = NodeState::new(name, "script", self.rate);
        n.inputs = inputs.iter().map(|i| self.names[*i]).collect();
        let i = self.push(n, Some(script));
        self.scopes[i] = op.scope.clone();
        i
    }

    pub fn set_input(&mut self, i: usize, chans: &[(&str, &[f32])]) {
        set_chans(&mut self.nodes[i].output, chans);
        // Changed: the nodes it feeds cook on the next step.
        self.nodes[i].mark_changed();
    }

    pub fn op(&mut self, i: usize) -> &mut ScriptOp {
        self.ops[i].as_mut().unwrap()
    }

    /// Runs one frame; returns which nodes cooked.
    #[allow(clippy::needless_range_loop)]
    pub fn step(&mut self) -> Vec<bool> {
        self.frame += 1;
        let now = Instant::now();
        let frame = Frame {
            frame: self.frame,
            step: 1,
            rate: self.rate,
            due: now,
            started: now,
        };
        let mut cooked = vec![false; self.nodes.len()];
        for i in 0..self.nodes.len() {
            self.nodes[i].stats.cooked_this_frame = false;
            let Some(op) = self.ops[i].as_mut() else {
                continue;
            };
            let seen = newest_input(&self.nodes, i);
            let input_changed = seen > self.nodes[i].inputs_seen;
            let first = self.nodes[i].stats.total_cooks == 0;
            let wants = op.wants_cook(&frame, &self.nodes);
            if first || input_changed || wants {
                self.nodes[i].inputs_seen = seen;
                let mut out = std::mem::take(&mut self.nodes[i].output);
                let before = out.clone();
                let r = {
                    let mut ctx = CookCtx {
                        frame: &frame,
                        me: i,
                        nodes: &mut self.nodes,
                        names: &self.names,
                        daemon: &self.daemon,
                    };
                    op.cook(&mut ctx, &mut out)
                };
                let st = &mut self.nodes[i].stats;
                st.total_cooks += 1;
                st.cooked_this_frame = true;
                st.cook_frame = self.frame;
                match r {
                    Ok(()) => {
                        if let (false, Some(&j)) =
                            (self.scopes[i].is_all(), self.nodes[i].inputs.first())
                        {
                            out.pass_through(&self.nodes[j].output, &self.scopes[i]);
                        }
                        if out != before {
                            self.nodes[i].mark_changed();
                        }
                    }
                    Err(e) => {
                        st.errors += 1;
                        st.last_error = Some(e.to_string());
                        out = before;
                    }
                }
                self.nodes[i].output = out;
                cooked[i] = true;
            }
            op.housekeeping();
        }
        cooked
    }

    pub fn chan(&self, i: usize, name: &str) -> Vec<f32> {
        self.nodes[i]
            .output
            .chan_by_name(name)
            .unwrap_or_else(|| panic!("no channel {name} in {:?}", self.nodes[i].output.names()))
            .to_vec()
    }

    pub fn val(&self, i: usize, name: &str) -> f32 {
        *self.chan(i, name).last().unwrap()
    }

    pub fn stats(&self, i: usize) -> &CookStats {
        &self.nodes[i].stats
    }
}

fn set_chans(d: &mut ChopData, chans: &[(&str, &[f32])]) {
    d.clear();
    d.set_num_samples(chans.first().map_or(1, |c| c.1.len()));
    for (n, v) in chans {
        d.append_with(n, v);
    }
}

/// Copies fixture `name` into a fresh temp dir (for tests that edit it).
fn temp_copy(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "chopd-script-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::copy(fixture(name), &p).unwrap();
    p
}

/// Writes a new version of a callbacks file with a distinct mtime and length.
fn rewrite(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(5))
        .unwrap();
}

#[test]
fn build_channels_by_index_and_one_liners() {
    let mut rig = Rig::new(60.0);
    let s = rig.add_script("build", &fixture("build.py"), &[]);
    rig.step();
    assert_eq!(rig.chan(s, "x"), [0.0, 0.5, 1.0, 1.5]);
    assert_eq!(rig.chan(s, "y"), [7.0, 0.0, 0.0, 0.0]);
    assert_eq!(rig.nodes[s].output.rate, 60.0);
    assert_eq!(rig.stats(s).errors, 0);
}

#[test]
fn numpy_input_vals_and_module_state() {
    let mut rig = Rig::new(60.0);
    let i = rig.add_input("in", &[("a", &[1.0]), ("b", &[2.0])]);
    let s = rig.add_script("gain", &fixture("gain.py"), &["in"]);
    rig.step();
    assert_eq!(rig.val(s, "a"), 2.0);
    assert_eq!(rig.val(s, "b"), 4.0);
    assert_eq!(rig.val(s, "cooks"), 1.0);
    // Nothing changed: no cook, the module global stays.
    assert!(!rig.step()[s]);
    rig.set_input(i, &[("a", &[3.0]), ("b", &[2.0])]);
    assert!(rig.step()[s]);
    assert_eq!(rig.val(s, "a"), 6.0);
    assert_eq!(rig.val(s, "cooks"), 2.0);
    assert!(!rig.nodes[s].timeslice);
}

#[test]
fn pulse_copy_second_input_and_iterate_chans() {
    let mut rig = Rig::new(60.0);
    rig.add_input("in0", &[("z", &[0.0])]);
    rig.add_input("in1", &[("p", &[1.0]), ("q", &[2.0])]);
    let s = rig.add_script_with("pc", &fixture("pulse_copy.py"), &["in0", "in1"], |_, c| {
        c.pars = vec![("Offset".into(), ParValue::Float(10.0))];
    });
    rig.step();
    assert_eq!(rig.nodes[s].output.names(), ["p", "q"]);
    assert_eq!(rig.val(s, "p"), 11.0);
    assert!(!rig.step()[s]);
    rig.op(s).pulse_par("Bump").unwrap();
    rig.op(s).pulse_par("Bump").unwrap();
    assert!(rig.step()[s]);
    assert_eq!(rig.val(s, "q"), 14.0);
    rig.op(s).pulse_par("Reset").unwrap();
    rig.step();
    assert_eq!(rig.val(s, "q"), 12.0);
    assert!(rig.op(s).pulse_par("Offset").is_err());
    assert!(rig.op(s).pulse_par("Nope").is_err());
    // A parameter set from outside (control port, export) cooks it once.
    rig.op(s).set_par("Offset", ParValue::Float(0.0)).unwrap();
    assert!(rig.step()[s]);
    assert_eq!(rig.val(s, "p"), 1.0);
    assert!(!rig.step()[s]);
}

#[test]
fn stock_template_and_parameter_members() {
    let mut rig = Rig::new(60.0);
    let s = rig.add_script_with("tpl", &fixture("template.py"), &[], |_, c| {
        c.pars = vec![
            ("Valuea".into(), ParValue::Float(0.25)),
            ("Color1".into(), ParValue::Float(1.0)),
            ("Color2".into(), ParValue::Float(0.5)),
            ("Color3".into(), ParValue::Float(0.0)),
            ("Shape".into(), ParValue::Str("square".into())),
            ("Active".into(), ParValue::Float(1.0)),
            ("Steps".into(), ParValue::Float(2.6)),
        ];
    });
    rig.step();
    assert_eq!(rig.nodes[s].output.names().len(), 8);
    assert_eq!(rig.val(s, "a"), 0.25);
    assert_eq!(rig.val(s, "gain"), 0.5);
    assert_eq!(rig.val(s, "default"), 1.0);
    assert_eq!(rig.val(s, "normmin"), -1.0);
    assert_eq!(rig.val(s, "shape"), 1.0);
    assert_eq!(rig.val(s, "color2"), 0.5);
    assert_eq!(rig.val(s, "active"), 1.0);
    assert_eq!(rig.val(s, "steps"), 3.0);
    let shared = rig.op(s).shared().clone();
    let sh = shared.borrow();
    let pages = sh.pars.pages().to_vec();
    assert_eq!(pages, ["Custom"]);
    let names: Vec<&str> = sh.pars.pars().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Valuea", "Valueb", "Gain", "Shape", "Color1", "Color2", "Color3", "Active", "Label",
            "Steps"
        ]
    );
    assert_eq!(sh.pars.get("Valuea").unwrap().label, "Value A");
}

#[test]
fn one_liners_copy_numpy_rate_and_add_error() {
    let mut rig = Rig::new(120.0);
    let s = rig.add_script("one", &fixture("oneliners.py"), &[]);
    rig.step();
    let out = &rig.nodes[s].output;
    assert_eq!(
        out.names(),
        ["c1", "c2", "x", "geo1/transform1:tx", "show/light:dimmer"]
    );
    assert_eq!(rig.chan(s, "x"), [0.25, 0.0]);
    assert_eq!(out.num_samples(), 2);
    assert_eq!(rig.chan(s, "c2"), [3.0, 4.0]);
    assert_eq!(rig.chan(s, "geo1/transform1:tx")[0], 1.5);
    assert_eq!(out.rate, 120.0);
    // addError/addWarning count without failing the cook.
    assert_eq!(rig.stats(s).errors, 1);
    assert_eq!(rig.stats(s).warnings, 1);
    assert_eq!(
        rig.stats(s).last_error.as_deref(),
        Some("two samples is suspicious")
    );
}

#[test]
fn cooks_when_something_it_read_changed() {
    let mut rig = Rig::new(60.0);
    let src = rig.add_input("src", &[("v", &[1.0])]);
    let r = rig.add_script("reader", &fixture("reader.py"), &[]);
    assert!(rig.step()[r]);
    assert_eq!(rig.val(r, "v"), 10.0);
    for _ in 0..3 {
        assert!(!rig.step()[r]);
    }
    assert_eq!(rig.stats(r).total_cooks, 1);
    assert!(!rig.stats(r).cooked_this_frame);
    rig.set_input(src, &[("v", &[2.0])]);
    assert!(rig.step()[r]);
    assert!(rig.stats(r).cooked_this_frame);
    assert_eq!(rig.val(r, "v"), 20.0);
    assert_eq!(rig.val(r, "n"), 2.0);
    assert!(!rig.step()[r]);
    assert_eq!(rig.stats(r).total_cooks, 2);
}

#[test]
fn reading_time_or_always_cooks_every_frame() {
    let mut rig = Rig::new(60.0);
    let t = rig.add_script("timer", &fixture("timer.py"), &[]);
    let a = rig.add_script("always", &fixture("always.py"), &[]);
    let i = rig.add_script("idle", &fixture("idle.py"), &[]);
    for _ in 0..5 {
        rig.step();
    }
    assert_eq!(rig.stats(t).total_cooks, 5);
    assert_eq!(rig.val(t, "frame"), 5.0);
    assert_eq!(rig.stats(a).total_cooks, 5);
    assert_eq!(rig.val(a, "n"), 4.0);
    assert_eq!(rig.stats(i).total_cooks, 1);
    assert!(rig.stats(t).cooked_this_frame && !rig.stats(i).cooked_this_frame);
}

#[test]
fn cooks_when_a_parameter_it_read_changed() {
    let mut rig = Rig::new(60.0);
    let i = rig.add_script("idle", &fixture("idle.py"), &[]);
    let p = rig.add_script("parreader", &fixture("parreader.py"), &[]);
    rig.step();
    rig.step();
    assert_eq!((rig.stats(i).total_cooks, rig.stats(p).total_cooks), (1, 1));
    rig.op(i).set_par("Speed", ParValue::Float(3.0)).unwrap();
    let cooked = rig.step();
    assert!(cooked[i] && cooked[p]);
    assert_eq!(rig.val(i, "speed"), 3.0);
    assert_eq!(rig.val(p, "speed"), 6.0);
    assert!(!rig.step().iter().any(|c| *c));
    // Setting the same value again is no change.
    rig.op(i).set_par("Speed", ParValue::Float(3.0)).unwrap();
    assert!(!rig.step().iter().any(|c| *c));
    assert_eq!(
        rig.op(i).set_par("Nope", ParValue::Float(1.0)).unwrap_err(),
        "script \"idle\" has no parameter \"Nope\""
    );
}

#[test]
fn exception_counts_keeps_last_good_output_and_others_cook() {
    let mut rig = Rig::new(60.0);
    let b = rig.add_script_with("boom", &fixture("boom.py"), &[], |_, _| {});
    let t = rig.add_script("timer", &fixture("timer.py"), &[]);
    // boom must cook every frame to hit its error: make it read time via CookLevel? It reads
    // nothing, so force cooks through a parameter-less pulse: setuppars.
    rig.step();
    assert_eq!(rig.val(b, "calls"), 1.0);
    rig.op(b).pulse_par(SETUP_PULSE).unwrap();
    rig.step();
    assert_eq!(rig.stats(b).errors, 1);
    let err = rig.stats(b).last_error.clone().unwrap();
    assert!(
        err.contains("boom.py:10: ZeroDivisionError: division by zero"),
        "{err}"
    );
    // The last good output stays; the other operator keeps cooking.
    assert_eq!(rig.val(b, "calls"), 1.0);
    assert_eq!(rig.stats(t).total_cooks, 2);
    rig.op(b).pulse_par(SETUP_PULSE).unwrap();
    rig.step();
    assert_eq!(rig.stats(b).errors, 2);
    assert_eq!(rig.stats(t).total_cooks, 3);
}

#[test]
fn endless_loop_is_interrupted_after_the_budget() {
    let mut rig = Rig::new(60.0);
    let s = rig.add_script_with("spin", &fixture("spin.py"), &[], |_, c| {
        c.cook_budget = Duration::from_millis(100);
    });
    let t = rig.add_script("timer", &fixture("timer.py"), &[]);
    rig.step();
    rig.op(s).pulse_par(SETUP_PULSE).unwrap();
    let t0 = Instant::now();
    rig.step();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_millis(600),
        "{took:?}"
    );
    assert_eq!(rig.stats(s).errors, 1);
    let err = rig.stats(s).last_error.clone().unwrap();
    assert!(
        err.contains("spin.py:1") && err.contains(": interrupted after the cook budget of 100 ms"),
        "{err}"
    );
    assert_eq!(rig.val(s, "calls"), 1.0);
    // The clock goes on: the next frames cook normally.
    rig.step();
    assert_eq!(rig.stats(t).total_cooks, 3);
    let mut ex = Vec::new();
    rig.op(s).extras(&mut ex);
    assert!(ex.contains(&("script_interrupts", 1.0)));
}

#[test]
fn reload_applies_new_code_keeps_old_on_syntax_error_and_keeps_pars() {
    let file = temp_copy("idle.py");
    let mut rig = Rig::new(60.0);
    let s = rig.add_script("idle", &file, &[]);
    rig.step();
    rig.op(s).set_par("Speed", ParValue::Float(4.0)).unwrap();
    rig.step();
    assert_eq!(rig.val(s, "speed"), 4.0);

    // A broken edit: reported, old code keeps running.
    rewrite(&file, "def onCook(scriptOp):\n    scriptOp.clear(\n");
    rig.op(s).poll_file(true);
    let errors_before = rig.stats(s).errors;
    rig.step();
    assert_eq!(rig.stats(s).errors, errors_before + 1);
    let err = rig.stats(s).last_error.clone().unwrap();
    assert!(err.contains("idle.py:2: SyntaxError"), "{err}");
    assert!(rig.op(s).loaded());
    rig.op(s).set_par("Speed", ParValue::Float(5.0)).unwrap();
    rig.step();
    assert_eq!(rig.val(s, "speed"), 5.0);

    // A good edit applies without a restart; the parameter value survives.
    rewrite(
        &file,
        "def onSetupParameters(scriptOp):\n    scriptOp.appendCustomPage('Custom').appendFloat('Speed')\n\n\
         def onCook(scriptOp):\n    scriptOp.clear()\n    scriptOp.appendChan('speed3')[0] = scriptOp.par.Speed * 3\n",
    );
    rig.op(s).poll_file(true);
    assert!(rig.step()[s]);
    assert_eq!(rig.val(s, "speed3"), 15.0);
    assert_eq!(rig.op(s).par("Speed"), Some(ParValue::Float(5.0)));
    let mut ex = Vec::new();
    rig.op(s).extras(&mut ex);
    assert!(ex.contains(&("script_reloads", 1.0)));
}

/// Regression: a file starting with a UTF-8 byte order mark was refused ("invalid non-printable
/// character U+FEFF"), because it was decoded before Python saw it; Python itself accepts it.
#[test]
fn a_callbacks_file_with_a_utf8_bom_loads_as_python_loads_it() {
    let mut rig = Rig::new(60.0);
    let s = rig.add_script("bom", &fixture("bom.py"), &[]);
    rig.step();
    assert!(rig.op(s).loaded(), "{:?}", rig.stats(s).last_error);
    assert_eq!(rig.stats(s).errors, 0, "{:?}", rig.stats(s).last_error);
    // The rest of the file is decoded as UTF-8: 'café' is four characters.
    assert_eq!(rig.val(s, "chars"), 4.0);
}

/// Regression: a failing `onSetupParameters` was reported as the whole file failing to load
/// ("loading callbacks failed", on a reload "old code keeps running") although the file had
/// loaded and cooked. It is the operator's error; the new code is applied and cooks.
#[test]
fn a_failing_on_setup_parameters_is_an_error_and_the_file_still_loads_and_reloads() {
    let file = temp_copy("setup_fails.py");
    let mut rig = Rig::new(60.0);
    let s = rig.add_script("setup", &file, &[]);
    rig.step();
    assert!(rig.op(s).loaded());
    assert_eq!(rig.val(s, "alive"), 1.0);
    assert_eq!(rig.stats(s).errors, 1);
    let err = rig.stats(s).last_error.clone().unwrap();
    assert!(
        err.contains("setup_fails.py:3: ValueError: no parameters today"),
        "{err}"
    );

    // An edit whose onSetupParameters fails too is applied: it is a reload, and it cooks.
    rewrite(
        &file,
        "def onSetupParameters(scriptOp):\n    raise ValueError('still none')\n\n\
         def onCook(scriptOp):\n    scriptOp.clear()\n    scriptOp.appendChan('alive')[0] = 2\n",
    );
    rig.op(s).poll_file(true);
    assert!(rig.step()[s]);
    assert_eq!(rig.val(s, "alive"), 2.0);
    assert_eq!(rig.stats(s).errors, 2);
    let mut ex = Vec::new();
    rig.op(s).extras(&mut ex);
    assert!(ex.contains(&("script_reloads", 1.0)), "{ex:?}");
}

/// Regression (a leaking script): a reload left the old module alive — its functions
/// and its dict refer to each other — so whatever its globals held (a leaking list) stayed
/// until a full garbage collection. Now it is released with the reload.
#[test]
fn a_reload_releases_the_old_modules_globals_at_once() {
    let file = temp_copy("hoarder.py");
    let mut rig = Rig::new(60.0);
    let s = rig.add_script("hoarder", &file, &[]);
    rig.step();
    assert_eq!(rig.val(s, "held"), 1.0);
    let freed = || {
        Python::attach(|py| {
            let b = py.import("builtins").unwrap();
            b.getattr("chopd_probe_hoard_freed")
                .ok()
                .is_some_and(|v| v.is_truthy().unwrap())
        })
    };
    assert!(!freed());
    // Automatic collections must not do the work the reload should do.
    Python::attach(|py| {
        py.import("gc").unwrap().call_method0("disable").unwrap();
    });
    rewrite(
        &file,
        "def onCook(scriptOp):\n    scriptOp.clear()\n    scriptOp.appendChan('held')[0] = 0\n",
    );
    rig.op(s).poll_file(true);
    rig.step();
    let released = freed();
    Python::attach(|py| {
        py.import("gc").unwrap().call_method0("enable").unwrap();
    });
    assert_eq!(rig.val(s, "held"), 0.0);
    assert!(released, "the old module's globals outlived the reload");
}

#[test]
fn modoutsidecook_guards_writes_from_other_scripts() {
    for allow in [false, true] {
        let mut rig = Rig::new(60.0);
        let t = rig.add_script_with("target", &fixture("target.py"), &[], |_, c| {
            c.modoutsidecook = allow
        });
        let w = rig.add_script("writer", &fixture("writer.py"), &[]);
        rig.step();
        if allow {
            assert_eq!(rig.stats(w).errors, 0);
            assert_eq!(rig.val(t, "v"), 1.0);
            assert_ne!(rig.nodes[t].version, 0, "marked changed");
        } else {
            assert_eq!(rig.stats(w).errors, 1);
            let err = rig.stats(w).last_error.clone().unwrap();
            assert!(err.contains("PermissionError"), "{err}");
            assert!(err.contains("modoutsidecook"), "{err}");
            assert_eq!(rig.val(t, "v"), 0.0);
        }
    }
}

#[test]
fn srselect_resamples_inputs_and_err_refuses() {
    let mut rig = Rig::new(60.0);
    let a = rig.add_input("a", &[("x", &[0.0, 1.0])]);
    let b = rig.add_input("b", &[("y", &[0.0, 1.0, 2.0, 3.0])]);
    rig.nodes[b].output.rate = 120.0;
    let _ = a;
    let file = temp_copy("idle.py");
    rewrite(
        &file,
        "def onCook(scriptOp):\n    scriptOp.copy(scriptOp.inputs[1])\n    scriptOp.appendChan('n')[0] = scriptOp.inputs[1].numSamples\n",
    );
    let s = rig.add_script("s", &file, &["a", "b"]);
    let e = rig.add_script_with("e", &file, &["a", "b"], |o, _| o.srselect = SrSelect::Err);
    rig.step();
    assert_eq!(rig.nodes[s].output.rate, 60.0);
    assert_eq!(rig.chan(s, "y"), [0.0, 3.0]);
    assert_eq!(rig.stats(e).errors, 1);
    assert!(rig
        .stats(e)
        .last_error
        .as_deref()
        .unwrap()
        .contains("srselect is \"err\""));
}

#[test]
fn scope_passes_unscoped_channels_through() {
    let mut rig = Rig::new(60.0);
    rig.add_input("in", &[("tx", &[1.0]), ("debug", &[9.0])]);
    let s = rig.add_script_with("g", &fixture("gain.py"), &["in"], |o, _| {
        o.scope = Pattern::new("t*").unwrap()
    });
    rig.step();
    // gain.py doubles every input channel itself; pass-through adds nothing it already made.
    assert_eq!(rig.val(s, "tx"), 2.0);
    assert_eq!(rig.val(s, "debug"), 18.0);
    let file = temp_copy("idle.py");
    rewrite(
        &file,
        "def onCook(scriptOp):\n    scriptOp.clear()\n    scriptOp.appendChan('tx')[0] = 5\n",
    );
    let t = rig.add_script_with("h", &file, &["in"], |o, _| {
        o.scope = Pattern::new("t*").unwrap()
    });
    rig.step();
    assert_eq!(rig.nodes[t].output.names(), ["tx", "debug"]);
    assert_eq!(rig.val(t, "debug"), 9.0);
}

#[test]
fn timeslice_outputs_the_span_since_the_last_cook() {
    let mut rig = Rig::new(60.0);
    let file = temp_copy("idle.py");
    rewrite(
        &file,
        "def onCook(scriptOp):\n    scriptOp.clear()\n    scriptOp.appendChan('t').vals = [absTime.frame] * scriptOp.numSamples\n    scriptOp.appendChan('n')[0] = scriptOp.numSamples\n",
    );
    let s = rig.add_script_with("ts", &file, &[], |o, _| o.timeslice = true);
    rig.step();
    assert_eq!(rig.nodes[s].output.num_samples(), 1);
    assert!(rig.nodes[s].timeslice);
    rig.step();
    assert_eq!(rig.nodes[s].output.num_samples(), 1);
    assert_eq!(rig.nodes[s].output.start, 2);
}

/// The slice a Script CHOP lays after frames without a cook is bounded by the config's
/// `max_slice_ms`, not by a constant of its own (it was hard-coded to 200 ms).
#[test]
fn a_script_chop_slice_follows_max_slice_ms() {
    let mut rig = Rig::new(60.0);
    rig.max_slice = Duration::from_secs(1);
    let file = temp_copy("idle.py");
    rewrite(
        &file,
        "def onCook(scriptOp):\n    scriptOp.clear()\n    scriptOp.appendChan('f')[0] = absTime.frame\n",
    );
    let s = rig.add_script_with("ts", &file, &[], |o, _| o.timeslice = true);
    rig.step();
    // Half a second (30 frames at 60 fps) passes without a cook.
    rig.frame += 29;
    rig.step();
    assert_eq!(rig.nodes[s].output.num_samples(), 30);
    // Beyond max_slice the slice is cut: 2 s later only the last second (60 frames) is laid.
    rig.frame += 119;
    rig.step();
    assert_eq!(rig.nodes[s].output.num_samples(), 60);
}

#[test]
fn the_api_surface_behaves_as_documented() {
    let mut rig = Rig::new(60.0);
    rig.add_input(
        "src",
        &[
            ("tx", &[1.0, 3.0]),
            ("ty", &[0.0, 0.0]),
            ("rz", &[5.0, 5.0]),
        ],
    );
    let s = rig.add_script("api", &fixture("api.py"), &["src"]);
    rig.step();
    assert_eq!(rig.stats(s).errors, 0, "{:?}", rig.stats(s).last_error);
    assert_eq!(rig.chan(s, "done")[0], 1.0);
    assert_eq!(rig.chan(s, "out"), [8.0, 9.0]);
    assert_eq!(rig.nodes[s].output.start, 10);
    assert_eq!(rig.chan(s, "setup_runs")[0], 1.0);
    assert_eq!(rig.op(s).par("Level"), Some(ParValue::Float(2.5)));
    assert_eq!(rig.op(s).par("Title"), Some(ParValue::Str("hello".into())));
    // Setup Parameters again (control port): runs onSetupParameters, values stay, cooks.
    rig.op(s).pulse_par(SETUP_PULSE).unwrap();
    rig.step();
    assert_eq!(rig.stats(s).errors, 0, "{:?}", rig.stats(s).last_error);
    assert_eq!(rig.chan(s, "setup_runs")[0], 2.0);
    assert_eq!(rig.op(s).par("Title"), Some(ParValue::Str("hello".into())));
}

#[test]
fn handles_used_outside_a_callback_raise_a_clear_error() {
    let mut rig = Rig::new(60.0);
    rig.add_script("outside", &fixture("outside.py"), &[]);
    rig.step();
    Python::attach(|py| {
        let m = py
            .import("sys")
            .unwrap()
            .getattr("modules")
            .unwrap()
            .get_item("chopd_callbacks_outside")
            .unwrap();
        let saved = m.getattr("saved").unwrap();
        let op = saved.get_item("op").unwrap();
        let chan = saved.get_item("chan").unwrap();
        for err in [
            op.getattr("numChans").unwrap_err(),
            chan.call_method0("eval").unwrap_err(),
        ] {
            assert!(
                err.to_string().contains("only be used inside a callback"),
                "{err}"
            );
        }
        // The name needs no graph.
        let name: String = saved
            .get_item("op")
            .unwrap()
            .getattr("name")
            .unwrap()
            .extract()
            .unwrap();
        assert_eq!(name, "outside");
    });
}

#[test]
fn on_pulse_writes_own_channels_only_with_modoutsidecook() {
    for allow in [false, true] {
        let mut rig = Rig::new(60.0);
        let s = rig.add_script_with("pw", &fixture("pulse_write.py"), &[], |_, c| {
            c.modoutsidecook = allow
        });
        rig.step();
        rig.op(s).pulse_par("Poke").unwrap();
        rig.step();
        if allow {
            assert_eq!(rig.stats(s).errors, 0, "{:?}", rig.stats(s).last_error);
            assert_eq!(rig.val(s, "v"), 42.0);
        } else {
            assert_eq!(rig.stats(s).errors, 1);
            let err = rig.stats(s).last_error.clone().unwrap();
            assert!(err.contains("pulse_write.py:6: PermissionError"), "{err}");
            assert!(err.contains("turn on modoutsidecook"), "{err}");
            assert_eq!(rig.val(s, "v"), 0.0);
        }
    }
}

#[test]
fn another_script_can_pulse_a_parameter() {
    let mut rig = Rig::new(60.0);
    let pw = rig.add_script_with("pw", &fixture("pulse_write.py"), &[], |_, c| {
        c.modoutsidecook = true
    });
    let r = rig.add_script("remote", &fixture("remote_pulse.py"), &[]);
    rig.step();
    assert_eq!(rig.stats(r).errors, 0, "{:?}", rig.stats(r).last_error);
    assert_eq!(rig.val(pw, "v"), 0.0);
    // The pulse is queued for pw's next cook.
    assert!(rig.step()[pw]);
    assert_eq!(rig.val(pw, "v"), 42.0);
}

#[test]
fn numpy_views_are_zero_copy_and_survive_the_data_moving() {
    let mut rig = Rig::new(60.0);
    rig.add_input("src", &[("a", &[1.0]), ("b", &[2.0])]);
    let file = temp_copy("idle.py");
    rewrite(
        &file,
        "import numpy as np\nkept = []\n\
         def onCook(scriptOp):\n\
         \x20   a = scriptOp.inputs[0].numpyArray()\n\
         \x20   kept.append(a)\n\
         \x20   scriptOp.clear()\n\
         \x20   scriptOp.appendChan('first')[0] = kept[0][1, 0]\n\
         \x20   scriptOp.appendChan('n')[0] = len(kept)\n\
         \x20   for k in kept:\n\
         \x20       assert k.shape[1] == 1\n",
    );
    let s = rig.add_script("views", &file, &["src"]);
    let i = 0;
    rig.step();
    assert_eq!(rig.val(s, "first"), 2.0);
    // The input's data is replaced many times while the first view is kept in a global.
    for k in 0..50 {
        let v = k as f32;
        rig.set_input(i, &[("a", &[v]), ("b", &[v]), ("c", &[v]), ("d", &[v])]);
        rig.step();
    }
    assert_eq!(rig.stats(s).errors, 0, "{:?}", rig.stats(s).last_error);
    assert_eq!(
        rig.val(s, "first"),
        2.0,
        "the kept view still reads its snapshot"
    );
    assert_eq!(rig.val(s, "n"), 51.0);
}

#[test]
fn a_replacement_dropped_by_a_rejected_reload_leaves_the_running_one_findable() {
    let mut rig = Rig::new(60.0);
    let s = rig.add_script("idle", &fixture("idle.py"), &[]);
    rig.step();
    // A reload builds a new "idle", then the reload is rejected and the new one dropped.
    let op = OperatorConfig {
        name: "idle".into(),
        inputs: Vec::new(),
        timeslice: false,
        scope: Pattern::new("*").unwrap(),
        srselect: SrSelect::First,
        export: None,
        kind: "script",
        reads: Vec::new(),
        settings: std::sync::Arc::new(ScriptConfig {
            callbacks: fixture("idle.py"),
            cook_budget: Duration::from_millis(1000),
            modoutsidecook: false,
            pars: Vec::new(),
            modes: Vec::new(),
        }),
    };
    drop(op.settings.build(&op, &rig.build_ctx()).unwrap());
    rig.op(s).set_par("Speed", ParValue::Float(2.0)).unwrap();
    assert!(rig.step()[s]);
    assert_eq!(rig.stats(s).errors, 0, "{:?}", rig.stats(s).last_error);
    assert_eq!(rig.val(s, "speed"), 2.0);
}

#[test]
fn touchdesigner_members_scripts_rely_on() {
    let mut rig = Rig::new(60.0);
    // Time-sliced by the config; its onSetupParameters turns that off.
    let s = rig.add_script_with("fidelity3", &fixture("fidelity.py"), &[], |op, _| {
        op.timeslice = true
    });
    for _ in 0..2 {
        rig.frame += 5;
        rig.step();
        assert_eq!(rig.stats(s).errors, 0, "{:?}", rig.stats(s).last_error);
        assert_eq!(rig.chan(s, "x"), [7.0, 8.0]);
        assert_eq!(rig.chan(s, "z"), [4.0, 4.0]);
        assert_eq!(rig.val(s, "ok"), 1.0);
    }
    assert_eq!(rig.op(s).par("Gain"), Some(ParValue::Float(2.0)));
    assert_eq!(rig.op(s).par("Color3"), Some(ParValue::Float(0.75)));
}

#[test]
fn zero_samples_publish_one_zero_sample_and_grow_from_nothing() {
    let mut rig = Rig::new(60.0);
    let s = rig.add_script("empty", &fixture("empty.py"), &[]);
    rig.step();
    assert_eq!(rig.stats(s).errors, 0, "{:?}", rig.stats(s).last_error);
    assert_eq!(rig.chan(s, "a"), [0.0], "other operators see one zero sample");
    rig.frame += 1;
    rig.step();
    assert_eq!(rig.stats(s).errors, 0, "{:?}", rig.stats(s).last_error);
    assert_eq!(rig.chan(s, "a"), [0.0]);
}
