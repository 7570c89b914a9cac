//! The control port end to end: status, actions on operators (pulse, set, reset, Setup
//! Parameters, reload), garbage and refused senders, `chopd ctl`, and a port that is taken.

use std::time::{Duration, Instant};

use rosc::OscType;

use crate::util::*;

/// Runs `chopd ctl ARGS`; returns (exit code, stdout, stderr).
fn ctl(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(BIN)
        .arg("ctl")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn control_status_reports_every_operator() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let d = Daemon::start(&in_and_stats(show.port(), stats.port()).text(), &[]);
    let port = d.port("in");
    send(port, "/a", vec![OscType::Float(0.5)]);
    show.expect("/show/a", 0.5);
    let c = Control::new(d.control_port());
    let s = c.status();
    assert_eq!(
        s["/chopd/status/op/in/kind"],
        OscType::String("oscin".into())
    );
    assert!(num(&s, "/chopd/status/op/in/total_cooks") >= 1.0);
    assert_eq!(num(&s, "/chopd/status/op/in/errors"), 0.0);
    assert_eq!(
        s["/chopd/status/op/in/last_error"],
        OscType::String(String::new())
    );
    assert_eq!(num(&s, "/chopd/status/op/in/port"), port as f64);
    assert_eq!(num(&s, "/chopd/status/op/in/num_channels"), 1.0);
    assert!(num(&s, "/chopd/status/op/stats/total_cooks") >= 1.0);
    assert!(num(&s, "/chopd/status/daemon/frames") >= 1.0);
    assert_eq!(num(&s, "/chopd/status/daemon/rate"), 100.0);
    // The final reply carries the number of operators.
    let r = c.request("/chopd/status", vec![OscType::String("in".into())]);
    let last = r.last().unwrap();
    assert_eq!(
        last.args,
        vec![OscType::String("/chopd/status".into()), OscType::Int(1)]
    );
    assert!(r.iter().all(|m| !m.addr.contains("/op/stats/")));

    let j = c.status_json(None);
    let ops = j["operators"].as_array().unwrap();
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0]["name"], "in");
    assert_eq!(ops[0]["extras"]["port"], port as f64);
    assert!(ops[0]["last_error"].is_null());
    assert_eq!(j["daemon"]["rate"], 100.0);
    let one = c.status_json(Some("stats"));
    assert_eq!(one["operators"].as_array().unwrap().len(), 1);
    assert!(c
        .err("/chopd/status", vec![OscType::String("nope".into())])
        .contains("no operator \"nope\""));
}

#[test]
fn control_actions_pulse_set_reset_setup_and_reload() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let cfg = in_and_stats(show.port(), stats.port()).text();
    let d = Daemon::start(&cfg, &[]);
    let port = d.port("in");
    send(port, "/a", vec![OscType::Float(0.5)]);
    show.expect("/show/a", 0.5);
    let c = Control::new(d.control_port());
    assert_eq!(
        c.ok("/chopd/ping", vec![]),
        vec![OscType::String(env!("CARGO_PKG_VERSION").into())]
    );

    // Pulse: OSC In's reset_values zeroes its channels.
    c.ok("/chopd/op/in/pulse/reset_values", vec![]);
    show.expect("/show/a", 0.0);
    // A button's release (0) does nothing.
    send(port, "/a", vec![OscType::Float(0.75)]);
    show.expect("/show/a", 0.75);
    c.ok("/chopd/op/in/pulse/reset_values", vec![OscType::Int(0)]);
    assert!(show
        .drain(Duration::from_millis(150))
        .iter()
        .all(|m| m.addr != "/show/a"));
    assert!(c
        .err("/chopd/op/in/pulse/explode", vec![])
        .contains("no pulse \"explode\""));

    // Reset drops the channels: the Info CHOP sees none.
    c.ok("/chopd/op/in/reset", vec![]);
    stats.until(TIMEOUT, |m| {
        m.addr == "/stats/num_channels" && float(&m.args[0]) == 0.0
    });
    d.wait_for("control: reset \"in\"", TIMEOUT).unwrap();

    // OSC In has no settable parameters and no set-up.
    assert!(c
        .err("/chopd/op/in/par/Gain", vec![OscType::Float(1.0)])
        .contains("no parameter \"Gain\""));
    assert!(!c.err("/chopd/op/in/setuppars", vec![]).is_empty());
    assert!(c
        .err("/chopd/op/nope/reset", vec![])
        .contains("no operator \"nope\""));
    assert!(c
        .err("/chopd/debug/stall", vec![OscType::Float(1.0)])
        .contains("CHOPD_DEBUG_CONTROL=1"));

    // Reload: a good config says what changed, a bad one why it was refused.
    let with_in2 = cfg.clone()
        + "\n[[operator]]\nname = \"in2\"\ntype = \"oscin\"\nport = 0\nlocal_address = \"127.0.0.1\"\n";
    // Let the watcher not race the request: it would reload the same file anyway, but the
    // reply must then say "nothing changed"; so write with watching off.
    let no_watch = |s: &str| s.replace("rate = 100", "rate = 100\nwatch = false");
    d.rewrite_config(&no_watch(&cfg));
    d.reload_applied(1);
    d.rewrite_config(&no_watch(&with_in2));
    assert_eq!(
        c.ok("/chopd/reload", vec![]),
        vec![OscType::String("built oscin \"in2\"".into())]
    );
    d.rewrite_config(&no_watch(&with_in2).replace(
        "type = \"oscin\"\nport = 0\nlocal",
        "type = \"oscin\"\nport = 70000\nlocal",
    ));
    let why = c.err("/chopd/reload", vec![]);
    assert!(
        why.starts_with("reload refused, the running config stays: "),
        "{why}"
    );
    assert!(why.contains("chopd.toml:"), "{why}");
    c.ok("/chopd/ping", vec![]);
}

#[test]
fn garbage_on_the_control_port_is_counted_and_never_crashes() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let d = Daemon::start(&in_and_stats(show.port(), stats.port()).text(), &[]);
    let c = Control::new(d.control_port());
    for bad in [
        &b"garbage"[..],
        b"",
        b"/chopd/ping\0,s\0\0",
        b"#bundle\0\0\0\0\0\0\0\0\x01\0\0\0\xff",
    ] {
        c.send_raw(bad);
    }
    // Requests that decode but make no sense get an error each.
    assert!(c.err("/nope", vec![]).contains("/chopd/"));
    assert!(c.err("/chopd/op/in", vec![]).contains("unknown address"));
    assert!(c
        .err("/chopd/op/in/par/x", vec![OscType::Nil])
        .contains("cannot set"));
    let s = c.status();
    assert_eq!(num(&s, "/chopd/status/control/malformed"), 4.0);
    assert_eq!(num(&s, "/chopd/status/control/failed"), 3.0);
    assert!(num(&s, "/chopd/status/control/packets") >= 8.0);
    d.wait_for("control: malformed packet from", TIMEOUT)
        .unwrap();
    // A bundle of requests gets one reply each.
    let bundle = rosc::OscPacket::Bundle(rosc::OscBundle {
        timetag: rosc::OscTime::from((0, 1)),
        content: vec![
            rosc::OscPacket::Message(rosc::OscMessage {
                addr: "/chopd/ping".into(),
                args: vec![],
            }),
            rosc::OscPacket::Message(rosc::OscMessage {
                addr: "/chopd/op/in/reset".into(),
                args: vec![],
            }),
        ],
    });
    c.send_raw(&rosc::encoder::encode(&bundle).unwrap());
    c.replies("/chopd/ping", TIMEOUT).unwrap();
    c.replies("/chopd/op/in/reset", TIMEOUT).unwrap();
}

#[test]
fn the_control_port_refuses_senders_outside_its_allow_list() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let cfg = in_and_stats(show.port(), stats.port()).text().replace(
        "[control]\nport = 0",
        "[control]\nport = 0\nallow = [\"127.0.0.2/32\"]",
    );
    let d = Daemon::start(&cfg, &[]);
    let outsider = Control::from_ip("127.0.0.1", d.control_port());
    outsider.send("/chopd/ping", vec![]);
    assert!(outsider
        .replies("/chopd/ping", Duration::from_millis(300))
        .is_none());
    let insider = Control::from_ip("127.0.0.2", d.control_port());
    insider.ok("/chopd/ping", vec![]);
    let s = insider.status();
    assert_eq!(num(&s, "/chopd/status/control/refused"), 1.0);
    d.wait_for("control: refused a packet from 127.0.0.1:", TIMEOUT)
        .unwrap();
}

#[test]
fn the_control_port_sets_pulses_and_sets_up_script_parameters() {
    let rx = OscRx::new();
    let cfg = Config::new()
        .control()
        .dest("show", rx.port())
        .oscin("in", "")
        .script("ctl", "controlled.py", "", TO_SHOW);
    let d = Daemon::start(&cfg.text(), &[("controlled.py", &fixture("controlled.py"))]);
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

#[test]
fn control_pulse_runs_onpulse_and_setuppars_runs_onsetupparameters() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let d = Daemon::start(
        &synth(show.port(), stats.port(), 1000).text(),
        &[("synth.py", &fixture("synth.py"))],
    );
    let c = Control::new(d.control_port());
    show.wait_value("/show/setups", |v| v == 1.0);
    c.ok("/chopd/op/synth/pulse/Go", vec![]);
    show.wait_value("/show/pulses", |v| v == 1.0);
    // Press and release: one pulse.
    c.ok("/chopd/op/synth/pulse/Go", vec![OscType::Int(1)]);
    c.ok("/chopd/op/synth/pulse/Go", vec![OscType::Int(0)]);
    show.wait_value("/show/pulses", |v| v == 2.0);
    c.ok("/chopd/op/synth/setuppars", vec![]);
    show.wait_value("/show/setups", |v| v == 2.0);
    assert!(c
        .err("/chopd/op/synth/pulse/Gain", vec![])
        .contains("not a pulse"));
}

#[test]
fn chopd_ctl_shows_status_and_acts() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let d = Daemon::start(
        &in_and_stats(show.port(), stats.port())
            .oscin("src", r#"export = { method = "autoname", root = "op:in" }"#)
            .text(),
        &[],
    );
    send(d.port("in"), "/a", vec![OscType::Float(0.5)]);
    show.expect("/show/a", 0.5);
    send(d.port("src"), "/Gain", vec![OscType::Float(0.5)]);
    let port = d.control_port().to_string();
    let (code, out, _) = ctl(&[&port, "ping"]);
    assert_eq!((code, out.trim()), (0, env!("CARGO_PKG_VERSION")));
    // The export mapping is built on the frame after the first value: ask until it shows.
    let deadline = Instant::now() + TIMEOUT;
    let out = loop {
        let (code, out, err) = ctl(&[&port, "status"]);
        assert_eq!(code, 0, "{err}");
        if out.contains("driven by") || Instant::now() > deadline {
            break out;
        }
    };
    assert!(out.contains("\nin (oscin)  cooks "), "{out}");
    assert!(out.contains("\nstats (info)  cooks "), "{out}");
    assert!(
        out.contains("    par Gain  (driven by the export of \"src\")"),
        "{out}"
    );
    let (code, out, _) = ctl(&[&port, "json", "in"]);
    assert_eq!(code, 0);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["operators"][0]["name"], "in");
    assert_eq!(ctl(&[&port, "reset", "in"]).0, 0);
    stats.wait_value("/stats/num_channels", |v| v == 0.0);
    let (code, _, err) = ctl(&[&port, "set", "in", "Gain", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("driven by the export of \"src\""), "{err}");
    let (code, _, err) = ctl(&[&port, "explode"]);
    assert_eq!(code, 2, "{err}");
    // A config names its control port.
    let free = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let fixed = free.local_addr().unwrap().port();
    drop(free);
    let cfg = d.dir.write(
        "fixed.toml",
        &format!(
            "[control]\nport = {fixed}\n[[operator]]\nname = \"x\"\ntype = \"info\"\nop = \"/\"\n"
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let (code, _, err) = ctl(&[cfg, "ping"]);
    assert_eq!(code, 1);
    assert!(err.contains("nothing listens on 127.0.0.1:"), "{err}");
}

#[test]
fn a_taken_control_port_fails_the_start() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (show, stats) = (OscRx::new(), OscRx::new());
    let cfg = in_and_stats(show.port(), stats.port())
        .text()
        .replace("[control]\nport = 0", &format!("[control]\nport = {port}"));
    let ns = Notify::at_path();
    let mut d = Daemon::spawn(&cfg, &[], &[("NOTIFY_SOCKET", &ns.env)]);
    let (status, _) = d.wait_exit(TIMEOUT).expect("did not exit");
    assert_eq!(status.code(), Some(1));
    d.wait_for(&format!("bind control on 127.0.0.1:{port}"), TIMEOUT)
        .unwrap();
    // Never announced ready.
    assert!(ns.next(Duration::from_millis(100)).is_none());
}
