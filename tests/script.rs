//! Script CHOP end to end: the real binary runs real callbacks files (tests/fixtures/scripts)
//! between OSC in and OSC out on 127.0.0.1 — channels, failures and runaway cooks, editing the
//! callbacks file, cooking only on change, numpy and the Python path. Unit tests beside the code
//! (src/chop/script/tests.rs) cover the API shapes one by one; these prove the daemon around them.

use rosc::OscType;

use crate::util::*;

/// One OSC In (`in`, not exported) and a destination `show` (prefix /show) on `dest`: scripts
/// are added to it.
fn with_in(dest: u16) -> Config {
    Config::new().dest("show", dest).oscin("in", "")
}

#[test]
fn osc_in_times_two_osc_out_with_path_parameter_names() {
    let rx = OscRx::new();
    let mut d = Daemon::start(
        &with_in(rx.port())
            .script("double", "double.py", r#""in""#, TO_SHOW)
            .text(),
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
    let _d = Daemon::start(
        &with_in(rx.port())
            .script("names", "names.py", "", TO_SHOW)
            .text(),
        &[("names.py", &fixture("names.py"))],
    );
    rx.wait_value("/show/geo1/transform1/tx", |v| v == 1.5);
    rx.wait_value("/show/light/dimmer", |v| v == 0.75);
}

#[test]
fn python_version_and_prefix_are_logged_at_start() {
    let d = Daemon::start(
        &with_in(OscRx::new().port())
            .script("names", "names.py", "", "")
            .text(),
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
    let cfg = with_in(rx.port())
        .dest("bad", rx.port())
        .script("bad", "fail_on_input.py", r#""in""#, "")
        .script("double", "double.py", r#""in""#, TO_SHOW)
        .info(
            "bad_info",
            "bad",
            r#"export = { method = "autoname", root = "bad" }"#,
        );
    let mut d = Daemon::start(
        &cfg.text(),
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

/// Regression: a failing `onSetupParameters` was logged as "loading callbacks failed" although
/// the file loaded and cooks.
#[test]
fn a_failing_on_setup_parameters_is_logged_as_such_and_the_script_cooks() {
    let rx = OscRx::new();
    let cfg = with_in(rx.port())
        .dest("info", rx.port())
        .script("setup", "setup_fails.py", "", TO_SHOW)
        .info(
            "setup_info",
            "setup",
            r#"export = { method = "autoname", root = "info" }"#,
        );
    let mut d = Daemon::start(
        &cfg.text(),
        &[("setup_fails.py", &fixture("setup_fails.py"))],
    );
    rx.wait_value("/show/alive", |v| v == 1.0);
    rx.wait_value("/info/errors", |v| v == 1.0);
    let line = d
        .wait_for("onSetupParameters failed", TIMEOUT)
        .unwrap_or_else(|| panic!("no onSetupParameters line; log:\n{}", d.log_text()));
    assert!(
        line.contains("setup_fails.py:3: ValueError: no parameters today"),
        "{line}"
    );
    assert!(d.stop().success());
    let log = d.log_text();
    assert!(!log.contains("loading callbacks failed"), "{log}");
}

#[test]
fn an_endless_loop_is_interrupted_and_the_clock_goes_on() {
    let rx = OscRx::new();
    let cfg = with_in(rx.port())
        .dest("spin", rx.port())
        .script(
            "spin",
            "spin_on_input.py",
            r#""in""#,
            "cook_budget_ms = 100",
        )
        .script("double", "double.py", r#""in""#, TO_SHOW)
        .info(
            "spin_info",
            "spin",
            r#"export = { method = "autoname", root = "spin" }"#,
        );
    let mut d = Daemon::start(
        &cfg.text(),
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
    let cfg = with_in(rx.port())
        .script(
            "scale",
            "scale.py",
            r#""in""#,
            &format!("pars = {{ Gain = 3 }}\n{TO_SHOW}"),
        )
        // A second OSC In drives the script's parameters (export to op:scale).
        .oscin(
            "pars",
            r#"export = { method = "autoname", root = "op:scale" }"#,
        );
    let mut d = Daemon::start(&cfg.text(), &[("scale.py", &fixture("scale.py"))]);
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
    let mut cfg = with_in(p);
    for (name, file) in [
        ("reader", "reader_in.py"),
        ("idle", "names.py"),
        ("timer", "timer.py"),
    ] {
        cfg = cfg.dest(name, p).script(name, file, "", "").info(
            &format!("{name}_info"),
            name,
            &format!("export = {{ method = \"autoname\", root = \"{name}\" }}"),
        );
    }
    let mut d = Daemon::start(
        &cfg.text(),
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
    let cfg = with_in(rx.port())
        .script("plain", "plain.py", r#""in""#, TO_SHOW)
        .script("np", "need_numpy.py", r#""in""#, "");
    let no_numpy = repo().join("tests/fixtures/no_numpy");
    let mut d = Daemon::start_env(
        &cfg.text(),
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
    let cfg = with_in(rx.port())
        .script("h", "uses_helper.py", "", TO_SHOW)
        .raw("[python]\npath = [\"site\"]\n");
    let _d = Daemon::start(
        &cfg.text(),
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
}

#[test]
fn touchdesigner_members_scripts_rely_on_work_in_the_daemon() {
    let rx = OscRx::new();
    let _d = Daemon::start(
        &with_in(rx.port())
            .script("fidelity3", "fidelity.py", "", TO_SHOW)
            .text(),
        &[("fidelity.py", &fixture("fidelity.py"))],
    );
    // Exported values are the last samples: x = [7, 8], z = [4, 4]; ok is set after every check.
    rx.wait_value("/show/ok", |v| v == 1.0);
    rx.wait_value("/show/x", |v| v == 8.0);
    rx.wait_value("/show/z", |v| v == 4.0);
}

#[test]
fn touchdesigner_runtime_names_load_and_answer_as_touchdesigner() {
    let rx = OscRx::new();
    let _d = Daemon::start(
        &with_in(rx.port())
            .script("td1", "td_names.py", "", TO_SHOW)
            .text(),
        &[("td_names.py", &fixture("td_names.py"))],
    );
    rx.wait_value("/show/done", |v| v == 1.0);
    rx.wait_value("/show/folder_ok", |v| v == 1.0);
    // The harness's config runs the clock at 100 fps.
    rx.wait_value("/show/cook_rate", |v| v == 100.0);
}

#[test]
fn a_touchdesigner_global_chopd_lacks_is_named_in_the_log() {
    let d = Daemon::start(
        &with_in(OscRx::new().port())
            .script("gui", "td_ui.py", "", "")
            .text(),
        &[("td_ui.py", &fixture("td_ui.py"))],
    );
    let line = d
        .wait_for("is a TouchDesigner global chopd does not provide", TIMEOUT)
        .unwrap_or_else(|| panic!("no explanation logged:\n{}", d.log_text()));
    assert!(line.contains("td_ui.py:5: NameError: 'ui'"), "{line}");
    assert!(line.contains("chopd is headless"), "{line}");
}

#[test]
fn a_script_that_read_a_tdu_dependency_cooks_when_it_changes_and_only_then() {
    let rx = OscRx::new();
    let mut d = Daemon::start(
        &with_in(rx.port())
            .script("writer", "dep_writer.py", r#""in""#, "")
            .script("reader", "dep_reader.py", "", TO_SHOW)
            .text(),
        &[
            ("dep_writer.py", &fixture("dep_writer.py")),
            ("dep_reader.py", &fixture("dep_reader.py")),
        ],
    );
    rx.wait_value("/show/val", |v| v == 0.0);
    let port = d.port("in");
    send(port, "/x", vec![OscType::Float(3.0)]);
    rx.wait_value("/show/val", |v| v == 3.0);
    let before = rx.value_at("/show/cooks");
    send(port, "/x", vec![OscType::Float(5.0)]);
    rx.wait_value("/show/val", |v| v == 5.0);
    // Frames passed between the two messages: one cook per change means it did not cook on them.
    assert_eq!(rx.value_at("/show/cooks"), before + 1.0);
    assert!(d.stop().success());
}
