//! Show state across restarts and rebuilds: a parameter set over the control port or by another
//! script and the `store()`d values come back after the daemon is killed (SIGKILL: a crash, a
//! watchdog or OOM kill) and started again on the same config; a parameter an export drives is
//! not kept; a clean stop writes the latest values; a corrupt state file is set aside and the
//! show starts; a value beyond the size cap is left out with one warning; a rebuild of the same
//! operator keeps its runtime-set values, a different operator under the same name starts
//! clean.

use std::path::Path;

use rosc::OscType;

use crate::util::*;

/// Gain, Trim and Level (floats); `starts` counts onSetupParameters runs in storage; `token`
/// and `mix` are stored once, on the first cook that finds no token. Channels: gain, trim,
/// level, starts, token and `mixlist` (1 when `mix["pair"]` is a list: it came back from JSON,
/// where a tuple is a list).
const KEEP: &str = r#"
import random

def onSetupParameters(scriptOp):
    page = scriptOp.appendCustomPage('Custom')
    page.appendFloat('Gain')
    page.appendFloat('Trim')
    page.appendFloat('Level')
    scriptOp.store('starts', scriptOp.fetch('starts', 0) + 1)

def onCook(scriptOp):
    if scriptOp.fetch('token', 0) == 0:
        scriptOp.store('token', random.randint(1, 1000000))
        scriptOp.store('mix', {'pair': (2, 3.5), 'list': [1, 'a', None, True]})
        scriptOp.store('unkept', {1, 2})
    mix = scriptOp.fetch('mix')
    scriptOp.clear()
    scriptOp.numSamples = 1
    for name, v in (
        ('gain', scriptOp.par.Gain.eval()),
        ('trim', scriptOp.par.Trim.eval()),
        ('level', scriptOp.par.Level.eval()),
        ('starts', scriptOp.fetch('starts')),
        ('token', scriptOp.fetch('token')),
        ('mixlist', int(isinstance(mix['pair'], list) and mix['list'] == [1, 'a', None, True])),
    ):
        scriptOp.appendChan(name)[0] = v
"#;

/// Sets `keep`'s Level once, remembering in the top's storage that it did.
const BOSS: &str = r#"
def onCook(scriptOp):
    if parent().fetch('bossed', 0) == 0:
        op('keep').par.Level = 0.5
        parent().store('bossed', 1)
"#;

/// A control port; `keep` (KEEP) exports to `show`; `boss` (BOSS) sets one of its parameters;
/// `lfo` (OSC In) drives `keep`'s parameters by export; the state is kept in `state/` next to
/// the config.
fn keeper(show: u16) -> Config {
    Config::new()
        .top(r#"state_dir = "state""#)
        .control()
        .dest("show", show)
        .script("keep", "keep.py", "", TO_SHOW)
        .script("boss", "boss.py", "", "")
        .oscin(
            "lfo",
            r#"export = { method = "autoname", root = "op:keep" }"#,
        )
}

fn state_file(d: &Daemon) -> std::path::PathBuf {
    d.dir.path("state/chopd.state.json")
}

/// Waits (bounded) until the file at `path` exists and its text satisfies `pred`; returns it.
fn wait_file(path: &Path, pred: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if pred(&text) {
                return text;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never satisfied the test; it holds: {:?}",
            path.display(),
            std::fs::read_to_string(path)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn par(c: &Control, op: &str, name: &str) -> serde_json::Value {
    c.status_json(Some(op))["operators"][0]["pars"][name]["value"].clone()
}

fn kill(d: &mut Daemon) {
    d.signal(libc::SIGKILL);
    d.wait_exit(TIMEOUT).expect("chopd did not die of SIGKILL");
}

#[test]
fn a_parameter_set_by_hand_and_stored_values_survive_a_crash_and_an_exported_one_does_not() {
    let rx = OscRx::new();
    let port = rx.port();
    let mut d = Daemon::start(
        &keeper(port).text(),
        &[("keep.py", KEEP), ("boss.py", BOSS)],
    );
    let c = Control::new(d.control_port());
    let token = rx.wait_value("/show/token", |v| v > 0.0);
    rx.wait_value("/show/mixlist", |v| v == 0.0);
    c.ok("/chopd/op/keep/par/Gain", vec![OscType::Float(0.75)]);
    rx.wait_value("/show/gain", |v| v == 0.75);
    send(d.port("lfo"), "/Trim", vec![OscType::Float(0.5)]);
    rx.wait_value("/show/trim", |v| v == 0.5);
    rx.wait_value("/show/level", |v| v == 0.5);
    let text = wait_file(&state_file(&d), |t| {
        t.contains(r#""Gain":{"value":0.75"#) && t.contains(r#""token""#)
    });
    assert!(text.contains(r#""Level":{"value":0.5"#), "{text}");
    assert!(text.contains(r#""top":{"bossed":1}"#), "{text}");
    assert!(
        !text.contains("Trim"),
        "an exported value is not kept: {text}"
    );
    assert!(!text.contains("unkept"), "a set is not JSON: {text}");
    assert!(
        d.count(r#"store("unkept") of "keep" is not kept across restarts: a set"#) == 1,
        "{}",
        d.log_text()
    );

    kill(&mut d);
    drop(rx);
    let rx = OscRx::at(port);
    let d = d.restart();
    let restored = d
        .wait_logged(
            |f| f.get("state").is_some_and(|s| s == "restored"),
            1,
            TIMEOUT,
        )
        .unwrap();
    assert_eq!(restored["operators"], "1");
    let c = Control::new(d.control_port());
    // onSetupParameters saw the restored storage: this is its second run.
    rx.wait_value("/show/starts", |v| v == 2.0);
    rx.wait_value("/show/token", |v| v == token);
    rx.wait_value("/show/mixlist", |v| v == 1.0);
    rx.wait_value("/show/gain", |v| v == 0.75);
    // Set once by another script, which finds in the top's storage that it did so already.
    rx.wait_value("/show/level", |v| v == 0.5);
    rx.wait_value("/show/trim", |v| v == 0.0);
    assert_eq!(par(&c, "keep", "Gain"), 0.75);
}

#[test]
fn a_clean_stop_writes_what_changed_last() {
    let rx = OscRx::new();
    let mut d = Daemon::start(
        &keeper(rx.port()).text(),
        &[("keep.py", KEEP), ("boss.py", BOSS)],
    );
    let c = Control::new(d.control_port());
    c.ok("/chopd/op/keep/par/Gain", vec![OscType::Float(0.125)]);
    assert!(d.stop().success());
    let text = std::fs::read_to_string(state_file(&d)).unwrap();
    assert!(text.contains(r#""Gain":{"value":0.125"#), "{text}");
}

#[test]
fn a_corrupt_state_file_is_set_aside_and_the_show_starts_without_it() {
    let rx = OscRx::new();
    let d = Daemon::start(
        &keeper(rx.port()).text(),
        &[
            ("keep.py", KEEP),
            ("boss.py", BOSS),
            (
                "state/chopd.state.json",
                r#"{"format": 1, "operators": {"keep": "#,
            ),
        ],
    );
    let aside = d
        .wait_logged(
            |f| f.get("state").is_some_and(|s| s == "set_aside"),
            1,
            TIMEOUT,
        )
        .unwrap();
    assert!(aside["to"].contains("chopd.state.json.bad-"), "{aside:?}");
    assert_eq!(
        std::fs::read_to_string(&aside["to"]).unwrap(),
        r#"{"format": 1, "operators": {"keep": "#
    );
    rx.wait_value("/show/starts", |v| v == 1.0);
    // The show goes on keeping its state in a new file.
    let c = Control::new(d.control_port());
    c.ok("/chopd/op/keep/par/Gain", vec![OscType::Float(0.25)]);
    wait_file(&state_file(&d), |t| t.contains(r#""Gain":{"value":0.25"#));
}

#[test]
fn a_rebuild_keeps_runtime_set_values_unless_the_operator_is_another_one() {
    let rx = OscRx::new();
    let cfg = keeper(rx.port()).text();
    let d = Daemon::start(
        &cfg,
        &[("keep.py", KEEP), ("other.py", KEEP), ("boss.py", BOSS)],
    );
    let c = Control::new(d.control_port());
    rx.wait_value("/show/starts", |v| v == 1.0);
    c.ok("/chopd/op/keep/par/Gain", vec![OscType::Float(0.75)]);
    rx.wait_value("/show/gain", |v| v == 0.75);

    // Another key of the same operator: rebuilt, same identity.
    let budget = cfg.replace(
        "callbacks = \"keep.py\"",
        "callbacks = \"keep.py\"\ncook_budget_ms = 500",
    );
    assert_ne!(budget, cfg);
    d.rewrite_config(&budget);
    assert!(d.reload_applied(1).contains(r#"built script "keep""#));
    rx.wait_value("/show/starts", |v| v == 2.0);
    assert_eq!(par(&c, "keep", "Gain"), 0.75);

    // Another callbacks file: another operator under the same name.
    d.rewrite_config(&budget.replace("keep.py", "other.py"));
    assert!(d.reload_applied(2).contains(r#"built script "keep""#));
    rx.wait_value("/show/starts", |v| v == 1.0);
    assert_eq!(par(&c, "keep", "Gain"), 0.0);
}

#[test]
fn a_value_beyond_the_size_cap_is_left_out_with_one_warning() {
    const BIG: &str = r#"
def onSetupParameters(scriptOp):
    scriptOp.appendCustomPage('Custom').appendFloat('Gain')
    scriptOp.store('huge', 'x' * 2000000)
    scriptOp.store('small', 7)

def onCook(scriptOp):
    pass
"#;
    let cfg = Config::new()
        .top(r#"state_dir = "state""#)
        .control()
        .script("big", "big.py", "", "");
    let d = Daemon::start(&cfg.text(), &[("big.py", BIG)]);
    let c = Control::new(d.control_port());
    for gain in [1.0, 2.0] {
        c.ok("/chopd/op/big/par/Gain", vec![OscType::Float(gain)]);
        let text = wait_file(&state_file(&d), |t| {
            t.contains(&format!(r#""Gain":{{"value":{gain:?}"#))
        });
        assert!(text.contains(r#""small":7"#), "{text}");
        assert!(!text.contains("huge"), "{}", &text[..200.min(text.len())]);
    }
    let warned = d.logged(|f| f.get("state").is_some_and(|s| s == "too_large"));
    assert_eq!(warned.len(), 1, "{}", d.log_text());
    assert_eq!(warned[0]["max_bytes"], "1048576");
}
