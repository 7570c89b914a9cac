//! Script CHOP end to end: the real binary runs real callbacks files (tests/fixtures/scripts)
//! between OSC in and OSC out on 127.0.0.1. Unit tests beside the code (src/chop/script/tests.rs)
//! cover the API shapes one by one; these prove the daemon around them.

use std::time::Duration;

use rosc::OscType;

use crate::util::*;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(repo().join("tests/fixtures/scripts").join(name)).unwrap()
}

/// One OSC In ("in") and a destination "show" (prefix /show) on `dest`, then `ops`.
fn config(dest: u16, ops: &str) -> String {
    format!(
        r#"
rate = 100

[destinations.show]
host = "127.0.0.1"
port = {dest}
prefix = "/show"

[[operator]]
name = "in"
type = "oscin"
port = 0
local_address = "127.0.0.1"
{ops}
"#
    )
}

/// A destination for one more prefix on the same receiver.
fn dest(name: &str, port: u16) -> String {
    format!("\n[destinations.{name}]\nhost = \"127.0.0.1\"\nport = {port}\nprefix = \"/{name}\"\n")
}

fn script(name: &str, file: &str, inputs: &str, extra: &str) -> String {
    format!(
        r#"
[[operator]]
name = "{name}"
type = "script"
callbacks = "{file}"
inputs = [{inputs}]
{extra}
"#
    )
}

#[test]
fn osc_in_times_two_osc_out_with_path_parameter_names() {
    let rx = OscRx::new();
    let ops = script(
        "double",
        "double.py",
        r#""in""#,
        r#"export = { method = "autoname", root = "show" }"#,
    );
    let mut d = Daemon::start(
        &config(rx.port(), &ops),
        &[("double.py", &fixture("double.py"))],
    );
    let port = d.port("in");
    send(port, "/geo1/transform1:tx", vec![OscType::Float(0.25)]);
    rx.expect("/show/geo1/transform1/tx", 0.5);
    send(port, "/geo1/transform1:tx", vec![OscType::Float(-1.5)]);
    rx.expect("/show/geo1/transform1/tx", -3.0);
    send(port, "/mixer/fader1", vec![OscType::Int(3)]);
    rx.expect("/show/mixer/fader1", 6.0);
    assert!(d.stop().success());
}

#[test]
fn channels_a_script_names_with_slash_and_colon_export_as_path_parameter() {
    let rx = OscRx::new();
    let ops = script(
        "names",
        "names.py",
        "",
        r#"export = { method = "autoname", root = "show" }"#,
    );
    let _d = Daemon::start(
        &config(rx.port(), &ops),
        &[("names.py", &fixture("names.py"))],
    );
    rx.wait_value("/show/geo1/transform1/tx", |v| v == 1.5);
    rx.wait_value("/show/light/dimmer", |v| v == 0.75);
}

#[test]
fn python_version_and_prefix_are_logged_at_start() {
    let ops = script("names", "names.py", "", "");
    let d = Daemon::start(
        &config(OscRx::new().port(), &ops),
        &[("names.py", &fixture("names.py"))],
    );
    let f = d
        .wait_logged(|f| f.contains_key("python"), 1, TIMEOUT)
        .expect("no python start-up line");
    assert!(f["python"].starts_with("3."), "{f:?}");
    assert!(!f["prefix"].is_empty(), "{f:?}");
    assert!(!f["numpy"].is_empty(), "{f:?}");
}

#[test]
fn an_exception_is_logged_with_file_and_line_and_the_rest_keeps_cooking() {
    let rx = OscRx::new();
    let mut ops = script("bad", "fail_on_input.py", r#""in""#, "");
    ops += &script(
        "double",
        "double.py",
        r#""in""#,
        r#"export = { method = "autoname", root = "show" }"#,
    );
    ops += r#"
[[operator]]
name = "bad_info"
type = "info"
op = "bad"
export = { method = "autoname", root = "bad" }
"#;
    let cfg = config(rx.port(), &ops) + &dest("bad", rx.port());
    let mut d = Daemon::start(
        &cfg,
        &[
            ("fail_on_input.py", &fixture("fail_on_input.py")),
            ("double.py", &fixture("double.py")),
        ],
    );
    let port = d.port("in");
    for i in 1..=3 {
        send(port, "/x", vec![OscType::Float(i as f32)]);
        rx.expect("/show/x", 2.0 * i as f32);
    }
    rx.wait_value("/bad/errors", |v| v >= 2.0);
    let line = d
        .wait_for("fail_on_input.py:13: KeyError: 'missing'", TIMEOUT)
        .unwrap_or_else(|| panic!("no error line; log:\n{}", d.log_text()));
    assert!(line.contains("bad"), "{line}");
    let log = d.log_text();
    assert!(log.contains("Traceback (most recent call last)"), "{log}");
    assert!(log.contains("in helper"), "{log}");
    // The last good output stays (its channel still reads the first cook's value).
    rx.wait_value("/bad/num_channels", |v| v == 1.0);
    assert!(d.stop().success());
}

#[test]
fn an_endless_loop_is_interrupted_and_the_clock_goes_on() {
    let rx = OscRx::new();
    let mut ops = script(
        "spin",
        "spin_on_input.py",
        r#""in""#,
        "cook_budget_ms = 100",
    );
    ops += &script(
        "double",
        "double.py",
        r#""in""#,
        r#"export = { method = "autoname", root = "show" }"#,
    );
    ops += r#"
[[operator]]
name = "spin_info"
type = "info"
op = "spin"
export = { method = "autoname", root = "spin" }
"#;
    let cfg = config(rx.port(), &ops) + &dest("spin", rx.port());
    let mut d = Daemon::start(
        &cfg,
        &[
            ("spin_on_input.py", &fixture("spin_on_input.py")),
            ("double.py", &fixture("double.py")),
        ],
    );
    let port = d.port("in");
    send(port, "/x", vec![OscType::Float(1.0)]);
    rx.expect("/show/x", 2.0);
    d.wait_for("interrupted after the cook budget of 100 ms", TIMEOUT)
        .unwrap_or_else(|| panic!("not interrupted; log:\n{}", d.log_text()));
    rx.wait_value("/spin/errors", |v| v >= 1.0);
    // The clock recovers: later messages flow, and each runaway cook is cut again.
    for i in 2..=4 {
        send(port, "/x", vec![OscType::Float(i as f32)]);
        rx.expect("/show/x", 2.0 * i as f32);
    }
    rx.wait_value("/spin/errors", |v| v >= 3.0);
    assert!(d.stop().success());
}

#[test]
fn editing_the_callbacks_file_reloads_it_and_keeps_parameter_values() {
    let rx = OscRx::new();
    let mut ops = script(
        "scale",
        "scale.py",
        r#""in""#,
        "pars = { Gain = 3 }\nexport = { method = \"autoname\", root = \"show\" }",
    );
    // A second OSC In drives the script's parameters (export to op:scale).
    ops += r#"
[[operator]]
name = "pars"
type = "oscin"
port = 0
local_address = "127.0.0.1"
export = { method = "autoname", root = "op:scale" }
"#;
    let mut d = Daemon::start(
        &config(rx.port(), &ops),
        &[("scale.py", &fixture("scale.py"))],
    );
    let (port, pars) = (d.port("in"), d.port("pars"));
    send(port, "/v", vec![OscType::Float(2.0)]);
    rx.expect("/show/v", 6.0);
    send(pars, "/Gain", vec![OscType::Float(5.0)]);
    rx.expect("/show/v", 10.0);

    // A broken edit is reported; the old code keeps running.
    let file = d.dir.path("scale.py");
    std::fs::write(&file, "def onCook(scriptOp):\n    scriptOp.copy(\n").unwrap();
    d.wait_for("SyntaxError", TIMEOUT)
        .unwrap_or_else(|| panic!("syntax error not reported; log:\n{}", d.log_text()));
    assert!(d.log_text().contains("scale.py:2"), "{}", d.log_text());
    send(port, "/v", vec![OscType::Float(1.0)]);
    rx.expect("/show/v", 5.0);

    // A good edit applies without a restart; Gain is still 5.
    let new = fixture("scale.py").replace(
        "c.vals = [v * g for v in c.vals]",
        "c.vals = [v * g + 100 for v in c.vals]",
    );
    std::fs::write(&file, new).unwrap();
    d.wait_for("new callbacks applied", TIMEOUT)
        .unwrap_or_else(|| panic!("not reloaded; log:\n{}", d.log_text()));
    rx.wait_value("/show/v", |v| v == 105.0);
    send(port, "/v", vec![OscType::Float(2.0)]);
    rx.expect("/show/v", 110.0);
    assert!(d.stop().success());
}

#[test]
fn a_script_cooks_only_when_what_it_read_changed() {
    let rx = OscRx::new();
    let p = rx.port();
    let mut ops = String::new();
    for (name, file) in [
        ("reader", "reader_in.py"),
        ("idle", "names.py"),
        ("timer", "timer.py"),
    ] {
        ops += &script(name, file, "", "");
        ops += &format!(
            "\n[[operator]]\nname = \"{name}_info\"\ntype = \"info\"\nop = \"{name}\"\nexport = {{ method = \"autoname\", root = \"{name}\" }}\n"
        );
    }
    let cfg = config(p, &ops) + &dest("reader", p) + &dest("idle", p) + &dest("timer", p);
    let mut d = Daemon::start(
        &cfg,
        &[
            ("reader_in.py", &fixture("reader_in.py")),
            ("names.py", &fixture("names.py")),
            ("timer.py", &fixture("timer.py")),
        ],
    );
    // The time reader cooks every frame.
    let t0 = rx.value_at("/timer/total_cooks");
    rx.wait_value("/timer/total_cooks", |v| v >= t0 + 20.0);
    // Nothing changed for the others: one cook each.
    assert_eq!(rx.wait_value("/idle/total_cooks", |_| true), 1.0);
    assert_eq!(rx.wait_value("/reader/total_cooks", |_| true), 1.0);
    // "in" changes: the reader (which read it through op()) cooks again; idle does not.
    let port = d.port("in");
    send(port, "/x", vec![OscType::Float(1.0)]);
    rx.wait_value("/reader/total_cooks", |v| v == 2.0);
    send(port, "/x", vec![OscType::Float(2.0)]);
    rx.wait_value("/reader/total_cooks", |v| v == 3.0);
    let t1 = rx.wait_value("/timer/total_cooks", |_| true);
    rx.wait_value("/timer/total_cooks", |v| v >= t1 + 20.0);
    assert_eq!(rx.wait_value("/reader/total_cooks", |_| true), 3.0);
    assert_eq!(rx.wait_value("/idle/total_cooks", |_| true), 1.0);
    assert!(d.stop().success());
}

#[test]
fn without_numpy_plain_scripts_run_and_numpy_ones_name_the_fix() {
    let rx = OscRx::new();
    let mut ops = script(
        "plain",
        "plain.py",
        r#""in""#,
        r#"export = { method = "autoname", root = "show" }"#,
    );
    ops += &script("np", "need_numpy.py", r#""in""#, "");
    let no_numpy = repo().join("tests/fixtures/no_numpy");
    let mut d = Daemon::start_env(
        &config(rx.port(), &ops),
        &[
            ("plain.py", &fixture("plain.py")),
            ("need_numpy.py", &fixture("need_numpy.py")),
        ],
        &[("PYTHONPATH", no_numpy.to_str().unwrap())],
    );
    let f = d
        .wait_logged(|f| f.contains_key("python"), 1, TIMEOUT)
        .unwrap();
    assert_eq!(f["numpy"], "not installed", "{f:?}");
    let port = d.port("in");
    send(port, "/a", vec![OscType::Float(1.0)]);
    rx.expect("/show/plain_a", 2.0);
    let line = d
        .wait_for("need_numpy.py:4: ModuleNotFoundError", TIMEOUT)
        .unwrap_or_else(|| panic!("no numpy error; log:\n{}", d.log_text()));
    assert!(line.contains("python3 -m pip install numpy"), "{line}");
    send(port, "/a", vec![OscType::Float(2.0)]);
    rx.expect("/show/plain_a", 3.0);
    assert!(d.stop().success());
}

#[test]
fn python_path_adds_a_site_directory() {
    let rx = OscRx::new();
    let ops = script(
        "h",
        "uses_helper.py",
        "",
        r#"export = { method = "autoname", root = "show" }"#,
    );
    let cfg = config(rx.port(), &ops) + "\n[python]\npath = [\"site\"]\n";
    let _d = Daemon::start(
        &cfg,
        &[
            ("uses_helper.py", &fixture("uses_helper.py")),
            ("site/chopd_helper.py", "VALUE = 42\n"),
        ],
    );
    rx.wait_value("/show/helper", |v| v == 42.0);
}

#[test]
fn the_example_script_config_runs() {
    // config/script-gain.toml uses fixed ports; run it on free ones.
    let text = std::fs::read_to_string(repo().join("config/script-gain.toml")).unwrap();
    let rx = OscRx::new();
    let text = text
        .replace("port = 9000", "port = 0\nlocal_address = \"127.0.0.1\"")
        .replace("port = 9001", &format!("port = {}", rx.port()))
        .replace("[control]\nport = 9002\n", "");
    let scripts = repo().join("config/scripts");
    let mut files: Vec<(String, String)> = Vec::new();
    for e in std::fs::read_dir(&scripts).unwrap() {
        let p = e.unwrap().path();
        let name = format!("scripts/{}", p.file_name().unwrap().to_string_lossy());
        files.push((name, std::fs::read_to_string(&p).unwrap()));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let mut d = Daemon::start(&text, &refs);
    let port = d.port("faders");
    send(port, "/mixer/fader1", vec![OscType::Float(0.5)]);
    rx.wait_value("/show/mixer/fader1", |v| (v - 0.5 * 2.0).abs() < 1e-6);
    rx.wait_value("/show/lfo/wave", |_| true);
    assert!(d.stop().success());
    let _ = Duration::ZERO;
}

#[test]
fn the_control_port_sets_pulses_and_sets_up_script_parameters() {
    let rx = OscRx::new();
    let ops = script(
        "ctl",
        "controlled.py",
        "",
        r#"export = { method = "autoname", root = "show" }"#,
    );
    let cfg = config(rx.port(), &ops) + "\n[control]\nport = 0\n";
    let d = Daemon::start(&cfg, &[("controlled.py", &fixture("controlled.py"))]);
    let c = Control::new(d.control_port());
    rx.wait_value("/show/setups", |v| v == 1.0);
    c.ok("/chopd/op/ctl/par/Level", vec![OscType::Float(0.5)]);
    rx.wait_value("/show/level", |v| v == 0.5);
    c.ok("/chopd/op/ctl/pulse/Bump", vec![]);
    rx.wait_value("/show/bumps", |v| v == 1.0);
    c.ok("/chopd/op/ctl/setuppars", vec![]);
    rx.wait_value("/show/setups", |v| v == 2.0);
    let reason = c.err("/chopd/op/ctl/par/Nope", vec![OscType::Float(1.0)]);
    assert!(reason.contains("no parameter \"Nope\""), "{reason}");
    let reason = c.err("/chopd/op/ctl/pulse/Level", vec![]);
    assert!(reason.contains("not a pulse"), "{reason}");
    // Status lists the custom parameters with their values.
    let r = c.ok("/chopd/status/json", vec![OscType::String("ctl".into())]);
    let json = match &r[0] {
        OscType::String(s) => s.clone(),
        other => panic!("{other:?}"),
    };
    assert!(json.contains("Level") && json.contains("0.5"), "{json}");
    // Level survived Setup Parameters.
    rx.wait_value("/show/level", |v| v == 0.5);
}
