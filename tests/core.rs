//! The core slice end to end: OSC in → channels → export to OSC, Info CHOP, config checking,
//! signals. Every test runs the real binary on 127.0.0.1.

use std::time::Duration;

use rosc::OscType;

use crate::util::*;

fn config(dest_port: u16, extra: &str) -> String {
    format!(
        r#"
rate = 100

[destinations.show]
host = "127.0.0.1"
port = {dest_port}
prefix = "/show"

[[operator]]
name = "in"
type = "oscin"
port = 0
local_address = "127.0.0.1"
export = {{ method = "autoname", root = "show" }}
{extra}
"#
    )
}

#[test]
fn osc_in_is_exported_under_the_root() {
    let rx = OscRx::new();
    let mut d = Daemon::start(&config(rx.port(), ""), &[]);
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
fn only_changed_values_are_sent_by_default() {
    let rx = OscRx::new();
    let d = Daemon::start(&config(rx.port(), ""), &[]);
    let port = d.port("in");
    send(port, "/a", vec![OscType::Float(1.0)]);
    rx.expect("/show/a", 1.0);
    // The same value again changes nothing: nothing is sent.
    send(port, "/a", vec![OscType::Float(1.0)]);
    send(port, "/b", vec![OscType::Float(2.0)]);
    rx.expect("/show/b", 2.0);
    let later = rx.drain(Duration::from_millis(200));
    assert!(
        later.iter().all(|m| m.addr != "/show/a"),
        "resent unchanged /show/a: {later:?}"
    );
}

#[test]
fn every_cook_sends_every_frame() {
    let rx = OscRx::new();
    let cfg = config(rx.port(), "").replace(
        r#"export = { method = "autoname", root = "show" }"#,
        r#"export = { method = "autoname", root = "show", send = "every_cook" }
timeslice = true"#,
    );
    let d = Daemon::start(&cfg, &[]);
    send(d.port("in"), "/a", vec![OscType::Float(1.0)]);
    rx.expect("/show/a", 1.0);
    let later = rx.drain(Duration::from_millis(300));
    let n = later.iter().filter(|m| m.addr == "/show/a").count();
    assert!(n >= 5, "only {n} resends in 300 ms at 100 fps");
}

#[test]
fn strip_segments_and_address_scope() {
    let rx = OscRx::new();
    let extra = "strip_segments = 1\naddress_scope = \"/1/* ^/1/debug*\"";
    let d = Daemon::start(&config(rx.port(), extra), &[]);
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
    let extra = r#"
[[operator]]
name = "stats"
type = "info"
op = "in"
export = { method = "autoname", root = "show" }
"#;
    let mut d = Daemon::start(&config(rx.port(), extra), &[]);
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
    let extra = r#"allow = ["10.0.0.0/8"]

[[operator]]
name = "stats"
type = "info"
op = "in"
export = { method = "autoname", root = "show" }
"#;
    let d = Daemon::start(&config(rx.port(), extra), &[]);
    send(d.port("in"), "/a", vec![OscType::Float(1.0)]);
    rx.expect("/show/refused", 1.0);
}

#[test]
fn export_table_by_name() {
    let rx = OscRx::new();
    let cfg = config(rx.port(), "").replace(
        r#"export = { method = "autoname", root = "show" }"#,
        r#"export = { method = "datname", root = "show", table = "map.csv" }"#,
    );
    let table = "chan,path,parameter,enable\nfader1,console/dimmer,level,1\nfader2,x,y,0\n";
    let d = Daemon::start(&cfg, &[("map.csv", table)]);
    let port = d.port("in");
    send(port, "/fader2", vec![OscType::Float(0.3)]);
    send(port, "/fader1", vec![OscType::Float(0.6)]);
    let m = rx.until(TIMEOUT, |_| true);
    assert_eq!(m.addr, "/show/console/dimmer/level");
    assert!(rx.drain(Duration::from_millis(200)).is_empty());
}

#[test]
fn info_of_the_daemon_reports_the_clock() {
    let rx = OscRx::new();
    let extra = r#"
[[operator]]
name = "clock"
type = "info"
op = "/"
export = { method = "autoname", root = "show" }
"#;
    let _d = Daemon::start(&config(rx.port(), extra), &[]);
    // Frames count up while the clock runs.
    let first = rx.value_at("/show/frames");
    rx.until(TIMEOUT, |m| {
        m.addr == "/show/frames" && float(&m.args[0]) >= first + 10.0
    });
    rx.until(TIMEOUT, |m| m.addr == "/show/lateness_p99");
}

#[test]
fn queued_timeslice_keeps_every_message() {
    // A script-free way to see the slice: Info reports the oscin's length.
    let rx = OscRx::new();
    let cfg = config(rx.port(), "queued = true\ntimeslice = true")
        .replace(r#"export = { method = "autoname", root = "show" }"#, "")
        + r#"
[[operator]]
name = "stats"
type = "info"
op = "in"
export = { method = "autoname", root = "show" }
"#;
    let d = Daemon::start(&cfg, &[]);
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
fn sigterm_stops_cleanly() {
    let rx = OscRx::new();
    let mut d = Daemon::start(&config(rx.port(), ""), &[]);
    let status = d.stop();
    assert!(status.success(), "{status:?}");
    assert!(d.log_text().contains("stopping"));
}

#[test]
fn bind_failure_fails_the_start_with_a_clear_message() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = config(9, "").replace("port = 0", &format!("port = {port}"));
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
    let d = Daemon::start(&config(rx.port(), ""), &[]);
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
fn liblo_oscdump_reads_our_bundles() {
    let dump_port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let mut dump = std::process::Command::new("oscdump")
        .args(["-L", &dump_port.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("oscdump (liblo-tools) is missing: run scripts/setup");
    let out = dump.stdout.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let lines = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        });
    }
    let d = Daemon::start(&config(dump_port, ""), &[]);
    let port = d.port("in");
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut v = 0.0f32;
    // oscdump may not be listening yet: keep changing the value until it prints one.
    let found = loop {
        v += 0.125;
        send(port, "/a/b", vec![OscType::Float(v)]);
        send(port, "/c", vec![OscType::Float(v)]);
        std::thread::sleep(Duration::from_millis(50));
        let l = lines.lock().unwrap().clone();
        if l.iter().any(|l| l.contains("/show/a/b f")) && l.iter().any(|l| l.contains("/show/c f"))
        {
            break true;
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
    };
    let _ = dump.kill();
    let _ = dump.wait();
    assert!(found, "oscdump printed: {:?}", lines.lock().unwrap());
}

#[test]
fn every_example_config_passes_check() {
    let mut n = 0;
    for entry in std::fs::read_dir(repo().join("config")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            let (code, out) = check(&p);
            assert_eq!(code, 0, "{}: {out}", p.display());
            n += 1;
        }
    }
    assert!(n >= 2, "expected the example configs, found {n}");
}

/// Each `tests/fixtures/bad/NAME.toml` fails `chopd check` with exactly the lines of
/// `NAME.expected` (paths shown relative to the fixture directory).
#[test]
fn bad_config_fixtures_report_their_expected_messages() {
    let dir = repo().join("tests/fixtures/bad");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let out = std::process::Command::new(BIN)
            .current_dir(&dir)
            .arg("check")
            .arg(p.file_name().unwrap())
            .output()
            .unwrap();
        let expected = std::fs::read_to_string(p.with_extension("expected")).unwrap();
        assert_eq!(out.status.code(), Some(78), "{}", p.display());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            expected,
            "{}",
            p.display()
        );
        n += 1;
    }
    assert!(n >= 5, "expected bad-config fixtures, found {n}");
}

#[test]
fn own_exports_coming_back_are_dropped_as_feedback() {
    // An export destination pointing at the daemon's own input: a loop waiting to happen.
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let rx = OscRx::new();
    let cfg = format!(
        r#"
rate = 100

[destinations.self]
host = "127.0.0.1"
port = {port}
prefix = "/loop"

[destinations.watch]
host = "127.0.0.1"
port = {watch}

[[operator]]
name = "in"
type = "oscin"
port = {port}
local_address = "127.0.0.1"
export = {{ root = "self" }}

[[operator]]
name = "stats"
type = "info"
op = "in"
export = {{ root = "watch" }}
"#,
        watch = rx.port()
    );
    let d = Daemon::start(&cfg, &[]);
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
