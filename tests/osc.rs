//! OSC In end to end: what arrives on its socket becomes channels (exported to OSC to see them),
//! its filters and counters, bind failures, a third-party sender, and its own exports coming back.

use std::time::Duration;

use rosc::OscType;

use crate::util::*;

#[test]
fn osc_in_is_exported_under_the_root() {
    let rx = OscRx::new();
    let mut d = Daemon::start(&in_to_show(rx.port()).text(), &[]);
    let port = d.port("in");
    send(port, "/geo1/transform1:tx", vec![OscType::Float(0.25)]);
    rx.expect("/show/geo1/transform1/tx", 0.25);
    send(port, "/mixer/fader1", vec![OscType::Int(3)]);
    rx.expect("/show/mixer/fader1", 3.0);
    // Several arguments: name_1, name_2, …; T/F are 1/0.
    send(
        port,
        "/xy",
        vec![
            OscType::Float(0.1),
            OscType::Bool(true),
            OscType::Bool(false),
        ],
    );
    rx.expect("/show/xy_1", 0.1);
    rx.expect("/show/xy_2", 1.0);
    rx.expect("/show/xy_3", 0.0);
    assert!(d.stop().success());
}

#[test]
fn strip_segments_and_address_scope() {
    let rx = OscRx::new();
    let d = Daemon::start(
        &Config::new()
            .dest("show", rx.port())
            .oscin(
                "in",
                &format!("{TO_SHOW}\nstrip_segments = 1\naddress_scope = \"/1/* ^/1/debug*\""),
            )
            .text(),
        &[],
    );
    let port = d.port("in");
    send(port, "/2/fader", vec![OscType::Float(9.0)]);
    send(port, "/1/debug", vec![OscType::Float(9.0)]);
    send(port, "/1/fader 1", vec![OscType::Float(0.5)]);
    let m = rx.until(TIMEOUT, |_| true);
    assert_eq!(m.addr, "/show/fader_1");
    let later = rx.drain(Duration::from_millis(200));
    assert!(
        later.is_empty(),
        "out-of-scope messages were exported: {later:?}"
    );
}

#[test]
fn bad_packets_are_counted_and_good_ones_still_arrive() {
    let rx = OscRx::new();
    let mut d = Daemon::start(
        &in_to_show(rx.port()).info("stats", "in", TO_SHOW).text(),
        &[],
    );
    let port = d.port("in");
    for bad in [
        &b"garbage"[..],
        b"",
        b"/x\0\0,f\0\0\0",
        b"#bundle\0\0\0\0\0\0\0\0\x01\0\0\0\xff",
    ] {
        send_raw(port, bad);
    }
    send(port, "/s", vec![OscType::String("text".into())]);
    send(
        port,
        "/nan",
        vec![OscType::Float(f32::NAN), OscType::Float(f32::INFINITY)],
    );
    send(port, "/good", vec![OscType::Float(0.75)]);
    rx.expect("/show/good", 0.75);
    rx.expect("/show/malformed", 4.0);
    rx.expect("/show/ignored_args", 1.0);
    rx.expect("/show/nonfinite", 2.0);
    assert!(d.stop().success());
}

#[test]
fn refused_senders_are_counted() {
    let rx = OscRx::new();
    let cfg = Config::new()
        .dest("show", rx.port())
        .oscin("in", &format!("{TO_SHOW}\nallow = [\"10.0.0.0/8\"]"))
        .info("stats", "in", TO_SHOW);
    let d = Daemon::start(&cfg.text(), &[]);
    send(d.port("in"), "/a", vec![OscType::Float(1.0)]);
    rx.expect("/show/refused", 1.0);
}

#[test]
fn queued_timeslice_keeps_every_message() {
    // A script-free way to see the slice: Info reports the oscin's length.
    let rx = OscRx::new();
    let cfg = Config::new()
        .dest("show", rx.port())
        .oscin("in", "queued = true\ntimeslice = true")
        .info("stats", "in", TO_SHOW);
    let d = Daemon::start(&cfg.text(), &[]);
    let port = d.port("in");
    let bundle = rosc::OscPacket::Bundle(rosc::OscBundle {
        timetag: rosc::OscTime::from((0, 1)),
        content: (0..7)
            .map(|i| {
                rosc::OscPacket::Message(rosc::OscMessage {
                    addr: "/a".into(),
                    args: vec![OscType::Float(i as f32)],
                })
            })
            .collect(),
    });
    send_raw(port, &rosc::encoder::encode(&bundle).unwrap());
    // Seven messages in one frame make a slice of seven samples.
    rx.expect("/show/length", 7.0);
}

#[test]
fn bind_failure_fails_the_start_with_a_clear_message() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = Config::new()
        .dest("show", 9)
        .oscin_at("in", port, TO_SHOW)
        .text();
    let mut d = Daemon::spawn(&cfg, &[], &[]);
    let status = d.child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    // The log reader may still be draining stderr after the exit: wait for the line.
    let needle = format!("bind oscin \"in\" on 127.0.0.1:{port}");
    assert!(d.wait_for(&needle, TIMEOUT).is_some(), "{}", d.log_text());
}

#[test]
fn liblo_oscsend_is_understood() {
    // A third-party OSC implementation as the peer (liblo-tools, installed by scripts/setup).
    if std::process::Command::new("oscsend")
        .arg("--help")
        .output()
        .is_err()
    {
        panic!("oscsend (liblo-tools) is missing: run scripts/setup");
    }
    let rx = OscRx::new();
    let d = Daemon::start(&in_to_show(rx.port()).text(), &[]);
    let port = d.port("in");
    let st = std::process::Command::new("oscsend")
        .args([
            "127.0.0.1",
            &port.to_string(),
            "/liblo/fader",
            "fiT",
            "0.5",
            "7",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    rx.expect("/show/liblo/fader_1", 0.5);
    rx.expect("/show/liblo/fader_2", 7.0);
    rx.expect("/show/liblo/fader_3", 1.0);
}

#[test]
fn own_exports_coming_back_are_dropped_as_feedback() {
    // An export destination pointing at the daemon's own input: a loop waiting to happen.
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let rx = OscRx::new();
    let cfg = Config::new()
        .raw(&format!(
            "[destinations.self]\nhost = \"127.0.0.1\"\nport = {port}\nprefix = \"/loop\"\n"
        ))
        .dest_unprefixed("watch", rx.port())
        .oscin_at("in", port, r#"export = { root = "self" }"#)
        .info("stats", "in", r#"export = { root = "watch" }"#);
    let d = Daemon::start(&cfg.text(), &[]);
    send(port, "/a", vec![OscType::Float(1.0)]);
    // Values are sent on change, in one bundle: watch both until each has been seen.
    let (mut looped, mut channels) = (false, f32::NAN);
    rx.until(TIMEOUT, |m| {
        match m.addr.as_str() {
            "/feedback" => looped |= float(&m.args[0]) >= 1.0,
            "/num_channels" => channels = float(&m.args[0]),
            _ => {}
        }
        looped && channels >= 1.0
    });
    // The looped message never became a channel: only "a" exists.
    assert_eq!(channels, 1.0);
    assert!(
        d.wait_for("feedback loop", TIMEOUT).is_some(),
        "{}",
        d.log_text()
    );
}
