//! The shaping kinds end to end: OSC In → math, lag, count… → export, their TouchDesigner
//! parameters set from the control port and driven by exports to `op:`, time-sliced input, and
//! no NaN ever leaving for the network.

use std::time::Duration;

use rosc::OscType;

use crate::util::*;

fn export(root: &str) -> String {
    format!(r#"export = {{ method = "autoname", root = "{root}" }}"#)
}

#[test]
fn math_scales_faders_and_its_parameters_are_set_by_control_and_by_export() {
    let rx = OscRx::new();
    let cfg = Config::new()
        .control()
        .dest("show", rx.port())
        .oscin("faders", "")
        .oscin("knobs", &export("op:math1"))
        .op(
            "math1",
            "math",
            &format!(
                "inputs = [\"faders\"]\npars = {{ gain = 2, postoff = 0.5, fromrange = [0, 10], torange = [0, 100] }}\n{}",
                export("show")
            ),
        );
    let d = Daemon::start(&cfg.text(), &[]);
    send(d.port("faders"), "/level", vec![OscType::Float(1.0)]);
    // ((1 + 0) * 2 + 0.5) mapped from 0..10 to 0..100.
    rx.wait_value("/show/level", |v| (v - 25.0).abs() < 1e-4);
    let c = Control::new(d.control_port());
    c.ok("/chopd/op/math1/par/postoff", vec![OscType::Float(1.0)]);
    rx.wait_value("/show/level", |v| (v - 30.0).abs() < 1e-4);
    // An export to op:math1 drives its gain; the control port may then not set it.
    send(d.port("knobs"), "/gain", vec![OscType::Float(3.0)]);
    rx.wait_value("/show/level", |v| (v - 40.0).abs() < 1e-4);
    assert!(c
        .err("/chopd/op/math1/par/gain", vec![OscType::Float(1.0)])
        .contains("driven by the export of \"knobs\""));
    // TouchDesigner's names only, with a did-you-mean.
    assert!(c
        .err("/chopd/op/math1/par/gian", vec![OscType::Float(1.0)])
        .contains("no parameter"));
}

#[test]
fn a_lag_rises_smoothly_to_the_fader() {
    let rx = OscRx::new();
    let cfg = Config::new()
        .dest("show", rx.port())
        .oscin("faders", "")
        .op(
            "lag1",
            "lag",
            &format!(
                "inputs = [\"faders\"]\npars = {{ lag = 0.3 }}\n{}",
                export("show")
            ),
        );
    let d = Daemon::start(&cfg.text(), &[]);
    send(d.port("faders"), "/a", vec![OscType::Float(1.0)]);
    rx.wait_value("/show/a", |v| v > 0.99);
    // The first sample starts the lag at the input: 1 at once. A later step lags.
    send(d.port("faders"), "/a", vec![OscType::Float(0.0)]);
    let mut fall = Vec::new();
    rx.until(TIMEOUT, |m| {
        if let (true, Some(OscType::Float(v))) = (m.addr == "/show/a", m.args.first()) {
            fall.push(*v);
            return *v < 0.01;
        }
        false
    });
    assert!(
        fall.len() >= 5,
        "a lag of 0.3 s at 100 fps moves over many frames: {fall:?}"
    );
    assert!(
        fall.windows(2).all(|w| w[1] < w[0]),
        "falls without a bounce: {fall:?}"
    );
    assert!(fall.iter().all(|v| (0.0..1.0).contains(v)), "{fall:?}");
}

#[test]
fn count_sees_every_queued_message_of_a_time_sliced_input() {
    let rx = OscRx::new();
    let cfg = Config::new()
        .dest("show", rx.port())
        .oscin("buttons", "queued = true\ntimeslice = true")
        .op(
            "count1",
            "count",
            &format!("inputs = [\"buttons\"]\n{}", export("show")),
        );
    let d = Daemon::start(&cfg.text(), &[]);
    let port = d.port("buttons");
    // Three presses, sent at once: one frame or several, each message is a sample.
    for v in [1.0, 0.0, 1.0, 0.0, 1.0] {
        send(port, "/go", vec![OscType::Float(v)]);
    }
    rx.wait_value("/show/go", |v| v == 3.0);
}

#[test]
fn nan_and_infinity_never_reach_an_export() {
    let rx = OscRx::new();
    let cfg = Config::new()
        .control()
        .dest("show", rx.port())
        .oscin("faders", "")
        .op(
            "math1",
            "math",
            &format!(
                "inputs = [\"faders\"]\npars = {{ preop = \"inverse\" }}\n{}",
                export("show")
            ),
        );
    let d = Daemon::start(&cfg.text(), &[]);
    let port = d.port("faders");
    send(port, "/a", vec![OscType::Float(0.5)]);
    rx.wait_value("/show/a", |v| v == 2.0);
    // 1 / 0: the last good value stays, and a warning is counted.
    send(port, "/a", vec![OscType::Float(0.0)]);
    let c = Control::new(d.control_port());
    let mut warned = false;
    for _ in 0..400 {
        if num(&c.status(), "/chopd/status/op/math1/warnings") >= 1.0 {
            warned = true;
            break;
        }
        rx.drain(Duration::from_millis(20));
    }
    assert!(warned, "no warning counted for 1/0");
    send(port, "/a", vec![OscType::Float(0.25)]);
    rx.wait_value("/show/a", |v| v == 4.0);
    let all = rx.drain(Duration::from_millis(100));
    assert!(
        all.iter()
            .all(|m| matches!(m.args.first(), Some(OscType::Float(v)) if v.is_finite())),
        "{all:?}"
    );
}

#[test]
fn check_names_the_bad_parameter_and_token_with_their_position() {
    let dir = TempDir::new();
    let cfg = Config::new()
        .oscin("faders", "")
        .op(
            "lag1",
            "lag",
            "inputs = [\"faders\"]\npars = { lagg = 0.3, lagmethod = \"ampp\" }",
        )
        .text();
    let path = dir.write("chopd.toml", &cfg);
    let out = std::process::Command::new(BIN)
        .args(["check", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("chopd.toml:")
            && err.contains("lag has no parameter \"lagg\"; did you mean \"lag1\"?"),
        "{err}"
    );
    assert!(err.contains("did you mean \"amp\"?"), "{err}");
}

#[test]
fn a_script_reads_and_writes_a_native_operators_parameters() {
    let rx = OscRx::new();
    let script = r#"
def onCook(scriptOp):
    scriptOp.clear()
    m = op('math1')
    scriptOp.appendChan('gain')[0] = m.par.gain.eval()
    scriptOp.appendChan('menu')[0] = 1 if m.par.preop.isMenu else 0
    if m.par.postoff.eval() == 0:
        m.par.postoff = 0.25
"#;
    let cfg = Config::new()
        .dest("show", rx.port())
        .oscin("faders", "")
        .op(
            "math1",
            "math",
            &format!(
                "inputs = [\"faders\"]\npars = {{ gain = 2 }}\n{}",
                export("show")
            ),
        )
        .script("reader", "reader.py", "", &export("show"));
    let d = Daemon::start(&cfg.text(), &[("reader.py", script)]);
    rx.wait_value("/show/gain", |v| v == 2.0);
    rx.wait_value("/show/menu", |v| v == 1.0);
    send(d.port("faders"), "/level", vec![OscType::Float(1.0)]);
    rx.wait_value("/show/level", |v| (v - 2.25).abs() < 1e-6);
}
