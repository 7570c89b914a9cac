//! The control port end to end: status, actions on operators (pulse, set, reset, Setup
//! Parameters, reload), garbage and refused senders, `chopd ctl`, and a port that is taken;
//! what it bounds (reply sizes, requests per packet, the token) and the local socket.

use std::time::{Duration, Instant};

use rosc::OscType;

use crate::util::*;

/// Runs `chopd ctl ARGS`; returns (exit code, stdout, stderr).
fn ctl(args: &[&str]) -> (i32, String, String) {
    ctl_env(args, &[])
}

fn ctl_env(args: &[&str], env: &[(&str, &std::path::Path)]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("ctl").args(args).env_remove("RUNTIME_DIRECTORY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
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
    let (code, _, err) = ctl(&["--osc", cfg, "ping"]);
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

/// Every datagram that arrives on `c` within `window` after the reply (or error) to `addr`,
/// that reply included: (bytes, messages).
fn reply_bytes(c: &Control, addr: &str, window: Duration) -> (usize, Vec<rosc::OscMessage>) {
    let mut buf = vec![0u8; 65536];
    let (mut bytes, mut msgs) = (0, Vec::new());
    let mut deadline = Instant::now() + TIMEOUT;
    let mut answered = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            assert!(answered, "no reply to {addr}");
            return (bytes, msgs);
        }
        c.sock.set_read_timeout(Some(left)).unwrap();
        let Ok(n) = c.sock.recv(&mut buf) else {
            continue;
        };
        bytes += n;
        let (_, p) = rosc::decoder::decode_udp(&buf[..n]).unwrap();
        let mut stack = vec![p];
        while let Some(p) = stack.pop() {
            match p {
                rosc::OscPacket::Message(m) => {
                    if !answered
                        && (m.addr == "/chopd/reply" || m.addr == "/chopd/error")
                        && matches!(m.args.first(), Some(OscType::String(a)) if a == addr)
                    {
                        answered = true;
                        deadline = Instant::now() + window;
                    }
                    msgs.push(m);
                }
                rosc::OscPacket::Bundle(b) => stack.extend(b.content.into_iter().rev()),
            }
        }
    }
}

fn bundle_of(msgs: Vec<rosc::OscMessage>) -> Vec<u8> {
    let p = rosc::OscPacket::Bundle(rosc::OscBundle {
        timetag: rosc::OscTime::from((0, 1)),
        content: msgs.into_iter().map(rosc::OscPacket::Message).collect(),
    });
    rosc::encoder::encode(&p).unwrap()
}

fn message(addr: &str, args: Vec<OscType>) -> rosc::OscMessage {
    rosc::OscMessage {
        addr: addr.into(),
        args,
    }
}

#[test]
fn control_replies_to_a_sender_without_full_replies_do_not_amplify() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let cfg = in_and_stats(show.port(), stats.port()).text().replace(
        "[control]\nport = 0",
        "[control]\nport = 0\nfull_replies = [\"127.0.0.1/32\"]",
    );
    let d = Daemon::start(&cfg, &[]);
    // 127.0.0.2 is allowed (127.0.0.0/8) but not given full replies: it stands for any sender
    // whose address could be spoofed.
    let other = Control::from_ip("127.0.0.2", d.control_port());
    let request =
        rosc::encoder::encode(&rosc::OscPacket::Message(message("/chopd/status", vec![]))).unwrap();
    other.send_raw(&request);
    let (bytes, msgs) = reply_bytes(&other, "/chopd/status", Duration::from_millis(200));
    let ratio = bytes as f64 / request.len() as f64;
    eprintln!("status: {} B → {bytes} B (×{ratio:.1})", request.len());
    assert!(ratio <= 4.0, "{} B → {bytes} B", request.len());
    let last = msgs.last().unwrap();
    assert_eq!(last.addr, "/chopd/error", "{msgs:?}");
    // One Ethernet frame of status requests.
    let mtu = bundle_of((0..60).map(|_| message("/chopd/status", vec![])).collect());
    assert!(mtu.len() <= 1472, "{}", mtu.len());
    other.send_raw(&mtu);
    let (bytes, _) = reply_bytes(&other, "/chopd/status", Duration::from_millis(500));
    let ratio = bytes as f64 / mtu.len() as f64;
    eprintln!("bundle: {} B → {bytes} B (×{ratio:.1})", mtu.len());
    assert!(ratio <= 4.0, "{} B → {bytes} B", mtu.len());
    // The host itself still gets the whole status, and the refusals were counted.
    let s = Control::new(d.control_port()).status();
    assert!(num(&s, "/chopd/status/control/clipped") >= 2.0);
    assert!(s.contains_key("/chopd/status/op/in/kind"));
}

#[test]
fn a_64k_bundle_of_control_requests_is_answered_at_once_with_the_excess_refused() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let d = Daemon::start(&in_and_stats(show.port(), stats.port()).text(), &[]);
    let c = Control::new(d.control_port());
    let one = message("/chopd/op/in/reset", vec![]);
    let per = bundle_of(vec![one.clone()]).len() - 16;
    let n = (65_507 - 16) / per;
    let bundle = bundle_of(vec![one; n]);
    assert!(bundle.len() <= 65_507);
    c.send_raw(&bundle);
    // Each request of the bound gets its reply, then one error for all the rest, and the port
    // answers the next request without working through them.
    let mut ok = 0;
    let mut buf = vec![0u8; 65536];
    let refused = loop {
        c.sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        let got = c
            .sock
            .recv(&mut buf)
            .expect("every reply within the timeout");
        let (_, p) = rosc::decoder::decode_udp(&buf[..got]).unwrap();
        let rosc::OscPacket::Bundle(b) = p else {
            panic!("{p:?}")
        };
        let rosc::OscPacket::Message(m) = &b.content[0] else {
            panic!()
        };
        if m.addr == "/chopd/reply" {
            ok += 1;
            continue;
        }
        assert_eq!(m.addr, "/chopd/error", "{m:?}");
        break m.args[1].clone();
    };
    assert_eq!(ok, 32);
    let OscType::String(why) = refused else {
        panic!()
    };
    assert!(
        why.contains(&format!(
            "{} requests refused: at most 32 per packet",
            n - 32
        )),
        "{why}"
    );
    c.ok("/chopd/ping", vec![]);
    let s = c.status();
    assert_eq!(num(&s, "/chopd/status/control/excess"), (n - 32) as f64);
    assert_eq!(num(&s, "/chopd/status/control/requests"), 32.0 + 1.0 + 1.0);
    d.wait_for("requests past the first 32 of a packet", TIMEOUT)
        .unwrap();
}

#[test]
fn mutating_control_requests_need_the_token_when_one_is_set() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let token = "show-token-0123456789";
    let cfg = in_and_stats(show.port(), stats.port()).text().replace(
        "[control]\nport = 0",
        &format!("[control]\nport = 0\ntoken = \"{token}\""),
    );
    let d = Daemon::start(&cfg, &[]);
    let c = Control::new(d.control_port());
    // Reading needs no token.
    c.ok("/chopd/ping", vec![]);
    assert!(num(&c.status(), "/chopd/status/op/in/total_cooks") >= 1.0);
    for addr in [
        "/chopd/op/in/reset",
        "/chopd/op/in/pulse/reset_values",
        "/chopd/reload",
    ] {
        let why = c.err(addr, vec![]);
        assert!(why.contains("needs the token"), "{addr}: {why}");
    }
    let why = c.err("/chopd/op/in/par/x", vec![OscType::Float(1.0)]);
    assert!(why.contains("needs the token"), "{why}");
    c.send("/chopd/auth/not-the-token-000000/op/in/reset", vec![]);
    let r = c.replies("/chopd/op/in/reset", TIMEOUT).unwrap();
    assert_eq!(
        r.last().unwrap().args[1],
        OscType::String("wrong token".into())
    );
    // With the token: served, and the reply names the address without it.
    c.send(&format!("/chopd/auth/{token}/op/in/reset"), vec![]);
    let r = c.replies("/chopd/op/in/reset", TIMEOUT).unwrap();
    assert_eq!(r.last().unwrap().addr, "/chopd/reply", "{r:?}");
    d.wait_for("control: reset \"in\"", TIMEOUT).unwrap();
    assert!(!d.log_text().contains(token));
    assert_eq!(num(&c.status(), "/chopd/status/control/denied"), 5.0);
    // chopd ctl takes the token from the config.
    let cfg_path = d.config.to_str().unwrap().to_string();
    let fixed = cfg.replace(
        "port = 0\ntoken",
        &format!("port = {}\ntoken", d.control_port()),
    );
    let fixed_path = d.dir.write("fixed.toml", &fixed);
    let (code, out, err) = ctl(&["--osc", fixed_path.to_str().unwrap(), "reset", "in"]);
    assert_eq!((code, out.trim()), (0, "ok"), "{err}");
    let (code, _, err) = ctl(&["--osc", &d.control_port().to_string(), "reset", "in"]);
    assert_eq!(code, 1);
    assert!(err.contains("needs the token"), "{err}");
    // The local socket needs none.
    let (code, _, err) = ctl_env(
        &[&cfg_path, "reset", "in"],
        &[("RUNTIME_DIRECTORY", &d.dir.0)],
    );
    assert_eq!(code, 0, "{err}");
}

#[test]
fn the_local_control_socket_is_private_and_chopd_ctl_uses_it() {
    use std::os::unix::fs::PermissionsExt;
    let (show, stats) = (OscRx::new(), OscRx::new());
    let mut d = Daemon::start(&in_and_stats(show.port(), stats.port()).text(), &[]);
    let sock = d.socket();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "{mode:o}");
    let listening = d
        .wait_logged(
            |f| f.get("kind").is_some_and(|k| k == "control-socket"),
            1,
            TIMEOUT,
        )
        .unwrap();
    assert_eq!(listening["path"], sock.to_str().unwrap());
    let s = sock.to_str().unwrap();
    let (code, out, err) = ctl(&["--socket", s, "ping"]);
    assert_eq!((code, out.trim()), (0, env!("CARGO_PKG_VERSION")), "{err}");
    // By default, ctl finds the socket of its environment's runtime directory.
    let env = [("RUNTIME_DIRECTORY", d.dir.0.as_path())];
    let (code, out, err) = ctl_env(&["status"], &env);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\nin (oscin)  cooks "), "{out}");
    assert_eq!(ctl_env(&["reset", "in"], &env).0, 0);
    stats.wait_value("/stats/num_channels", |v| v == 0.0);
    let (code, out, err) = ctl_env(&["reload"], &env);
    assert_eq!((code, out.trim()), (0, "nothing changed"), "{err}");
    d.wait_for("control socket", TIMEOUT).unwrap();
    // A config names its daemon's socket.
    let (code, _, err) = ctl_env(&[d.config.to_str().unwrap(), "ping"], &env);
    assert_eq!(code, 0, "{err}");
    // Removed on a clean stop.
    assert!(d.stop().success());
    assert!(!sock.exists());
    let (code, _, err) = ctl(&["--socket", s, "ping"]);
    assert_eq!(code, 1);
    assert!(err.contains("is chopd running"), "{err}");
}

#[test]
fn a_stale_control_socket_is_replaced_and_a_live_one_kept() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let cfg = in_and_stats(show.port(), stats.port()).text();
    let first = Daemon::start(&cfg, &[]);
    let dir = first.dir.0.clone();
    let env = [("RUNTIME_DIRECTORY", dir.to_str().unwrap())];
    // A second daemon with the same runtime directory must not take the first one's socket.
    let mut second = Daemon::spawn(&cfg, &[], &env);
    let (status, _) = second.wait_exit(TIMEOUT).expect("did not exit");
    assert_eq!(status.code(), Some(1));
    second.wait_for("another chopd serves", TIMEOUT).unwrap();
    // A crash leaves the socket file behind; the next start replaces it.
    let mut first = first;
    first.signal(libc::SIGKILL);
    first.wait_exit(TIMEOUT).expect("did not die");
    assert!(first.socket().exists());
    let third = Daemon::start_env(&cfg, &[], &env);
    third
        .wait_for("replacing the stale socket", TIMEOUT)
        .unwrap();
    let (code, _, err) = ctl(&["--socket", first.socket().to_str().unwrap(), "ping"]);
    assert_eq!(code, 0, "{err}");
    drop(third);
}

#[test]
fn a_60000_character_string_parameter_leaves_the_status_answerable() {
    let rx = OscRx::new();
    let cfg = Config::new()
        .control()
        .dest("show", rx.port())
        .script("noted", "noted.py", "", TO_SHOW);
    let d = Daemon::start(&cfg.text(), &[("noted.py", &fixture("noted.py"))]);
    let c = Control::new(d.control_port());
    let long = "n".repeat(60_000);
    c.ok(
        "/chopd/op/noted/par/Note",
        vec![OscType::String(long.clone())],
    );
    rx.wait_value("/show/note_len", |v| v == 60_000.0);
    // Over UDP: answered, the value cut short and marked.
    let j = c.status_json(None);
    let note = j["operators"][0]["pars"]["Note"]["value"].as_str().unwrap();
    assert!(note.ends_with("…[clipped]"), "{}", note.len());
    assert!(note.len() < 2_000, "{}", note.len());
    let s = c.status();
    let OscType::String(v) = &s["/chopd/status/op/noted/par/Note"] else {
        panic!()
    };
    assert!(v.ends_with("…[clipped]"));
    // Over the local socket: whole.
    let (code, out, err) = ctl(&["--socket", d.socket().to_str().unwrap(), "json"]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["operators"][0]["pars"]["Note"]["value"], long.as_str());
}
