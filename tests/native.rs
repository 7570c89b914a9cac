//! Native CHOP kinds end to end (generators and routing): OSC in → the kind → export, their
//! parameters set from the control port, driven by an export to `op:`, read and written by a
//! Script CHOP, and a Timer CHOP's callbacks running a cue.

use rosc::OscType;

use crate::util::*;

#[test]
fn osc_in_through_select_rename_and_switch_to_export() {
    let rx = OscRx::new();
    let cfg = Config::new()
        .control()
        .dest("show", rx.port())
        .oscin("in", "")
        .op(
            "sel",
            "select",
            "inputs = [\"in\"]\npars = { channames = \"fader*\", renamefrom = \"fader*\", renameto = \"level*\" }",
        )
        .op("off", "constant", "pars = { name0 = \"level1\", value0 = -1 }")
        .op(
            "sw",
            "switch",
            &format!("inputs = [\"off\", \"sel\"]\npars = {{ index = 1 }}\n{TO_SHOW}"),
        );
    let d = Daemon::start(&cfg.text(), &[]);
    send(d.port("in"), "/fader1", vec![OscType::Float(0.25)]);
    send(d.port("in"), "/other", vec![OscType::Float(9.0)]);
    rx.expect("/show/level1", 0.25);
    // The switch's index set from the control port picks the constant.
    let c = Control::new(d.control_port());
    c.ok("/chopd/op/sw/par/index", vec![OscType::Int(0)]);
    rx.wait_value("/show/level1", |v| v == -1.0);
    assert!(c
        .err(
            "/chopd/op/sel/par/channamez",
            vec![OscType::String("x".into())]
        )
        .contains("no parameter"));
}

#[test]
fn an_export_to_op_drives_a_constant_and_the_lfo_runs_from_it() {
    let rx = OscRx::new();
    let cfg = Config::new()
        .dest("show", rx.port())
        .oscin("in", r#"export = { method = "autoname", root = "op:c" }"#)
        .op(
            "c",
            "constant",
            &format!("pars = {{ name0 = \"speed\" }}\n{TO_SHOW}"),
        )
        .op(
            "l",
            "lfo",
            &format!("pars = {{ wavetype = \"square\", frequency = 1 }}\n{TO_SHOW}"),
        );
    let d = Daemon::start(&cfg.text(), &[]);
    // Channel value0 of `in` drives parameter value0 of `c`.
    send(d.port("in"), "/value0", vec![OscType::Float(0.75)]);
    rx.expect("/show/speed", 0.75);
    // A square wave at 1 Hz: both levels within a couple of seconds, nothing else.
    rx.wait_value("/show/chan1", |v| v == 1.0);
    rx.wait_value("/show/chan1", |v| v == -1.0);
}

#[test]
fn a_script_reads_and_writes_native_parameters() {
    let rx = OscRx::new();
    let script = "def onCook(scriptOp):\n    scriptOp.clear()\n    \
                  scriptOp.appendChan('freq')[0] = op('l').par.frequency\n    \
                  op('c').par.value0 = op('l').par.frequency * 2\n";
    let cfg = Config::new()
        .control()
        .dest("show", rx.port())
        .op("l", "lfo", "pars = { frequency = 1.5 }")
        .op(
            "c",
            "constant",
            &format!("pars = {{ name0 = \"twice\" }}\n{TO_SHOW}"),
        )
        .script("s", "s.py", "\"l\"", TO_SHOW);
    let d = Daemon::start(&cfg.text(), &[("s.py", script)]);
    rx.expect("/show/freq", 1.5);
    rx.wait_value("/show/twice", |v| v == 3.0);
    let c = Control::new(d.control_port());
    c.ok("/chopd/op/l/par/frequency", vec![OscType::Float(2.0)]);
    rx.wait_value("/show/twice", |v| v == 4.0);
}

#[test]
fn a_timer_cue_started_from_the_control_port_runs_its_callbacks() {
    let rx = OscRx::new();
    let cue = "def onStart(timerOp):\n    op('c').par.value0 = 1\n\n\
               def onDone(timerOp, segment, interrupt):\n    op('c').par.value0 = 2\n";
    let cfg = Config::new()
        .control()
        .dest("show", rx.port())
        .op(
            "c",
            "constant",
            &format!("pars = {{ name0 = \"cue\" }}\n{TO_SHOW}"),
        )
        .op(
            "t",
            "timer",
            &format!("callbacks = \"cue.py\"\npars = {{ length = 0.2 }}\n{TO_SHOW}"),
        );
    let d = Daemon::start(&cfg.text(), &[("cue.py", cue)]);
    rx.expect("/show/cue", 0.0);
    let c = Control::new(d.control_port());
    c.ok("/chopd/op/t/pulse/start", vec![]);
    rx.wait_value("/show/cue", |v| v == 1.0);
    // Channels go out in order: the fraction reaches 1 in the frame the timer is done.
    rx.wait_value("/show/timer_fraction", |v| v == 1.0);
    rx.wait_value("/show/done", |v| v == 1.0);
    rx.wait_value("/show/cue", |v| v == 2.0);
}

#[test]
fn an_unknown_parameter_fails_check_with_its_position() {
    let cfg = Config::new()
        .op("l", "lfo", "pars = { wavetype = \"sine\" }")
        .text();
    let dir = TempDir::new();
    let path = dir.write("c.toml", &cfg);
    let out = std::process::Command::new(BIN)
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stdout);
    assert!(
        err.contains("c.toml:7:21: error: lfo: menu parameter \"wavetype\" has no entry \"sine\""),
        "{err}"
    );
    assert!(err.contains("did you mean \"sin\"?"), "{err}");
}
