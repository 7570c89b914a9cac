//! Export end to end: what is sent (on change, every cook), under which addresses (autoname,
//! export tables), to a third-party receiver, and exports to operators' parameters, which the
//! control port then may not set by hand.

use std::time::{Duration, Instant};

use rosc::OscType;

use crate::util::*;

#[test]
fn only_changed_values_are_sent_by_default() {
    let rx = OscRx::new();
    let d = Daemon::start(&in_to_show(rx.port()).text(), &[]);
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
    let cfg = Config::new().dest("show", rx.port()).oscin(
        "in",
        r#"export = { method = "autoname", root = "show", send = "every_cook" }
timeslice = true"#,
    );
    let d = Daemon::start(&cfg.text(), &[]);
    send(d.port("in"), "/a", vec![OscType::Float(1.0)]);
    rx.expect("/show/a", 1.0);
    let later = rx.drain(Duration::from_millis(300));
    let n = later.iter().filter(|m| m.addr == "/show/a").count();
    assert!(n >= 5, "only {n} resends in 300 ms at 100 fps");
}

#[test]
fn export_table_by_name() {
    let rx = OscRx::new();
    let cfg = Config::new()
        .dest("show", rx.port())
        .oscin(
            "in",
            r#"export = { method = "datname", root = "show", table = "map.csv" }"#,
        )
        .text();
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
    let d = Daemon::start(&in_to_show(dump_port).text(), &[]);
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
fn an_export_to_an_operator_drives_its_parameter_and_refuses_control_sets() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    // `src` exports to `in`'s parameters: channel Gain → parameter Gain of `in` (root op:in),
    // channel in/Level → parameter Level of `in` (root op:/ in `src2`).
    let cfg = in_and_stats(show.port(), stats.port())
        .oscin("src", r#"export = { method = "autoname", root = "op:in" }"#)
        .oscin("src2", r#"export = { method = "autoname", root = "op:/" }"#);
    let d = Daemon::start(&cfg.text(), &[]);
    send(d.port("src"), "/Gain", vec![OscType::Float(0.5)]);
    send(d.port("src2"), "/in/Level", vec![OscType::Float(0.5)]);
    let c = Control::new(d.control_port());
    let deadline = Instant::now() + TIMEOUT;
    let s = loop {
        let s = c.status();
        let both = ["Gain", "Level"].map(|p| format!("/chopd/status/op/in/driven/{p}"));
        // The two sources' first packets may land on different frames: wait for both.
        if both.iter().all(|k| s.contains_key(k)) || Instant::now() > deadline {
            break s;
        }
    };
    assert_eq!(
        s["/chopd/status/op/in/driven/Gain"],
        OscType::String("src".into())
    );
    assert_eq!(
        s["/chopd/status/op/in/driven/Level"],
        OscType::String("src2".into())
    );
    let j = c.status_json(Some("in"));
    assert_eq!(j["operators"][0]["pars"]["Gain"]["driven_by"], "src");
    let why = c.err("/chopd/op/in/par/Gain", vec![OscType::Float(1.0)]);
    assert_eq!(
        why,
        "parameter \"Gain\" of \"in\" is driven by the export of \"src\"; change that export to set it by hand"
    );
    // A parameter no export drives goes to the operator (OSC In has none to set).
    assert!(c
        .err("/chopd/op/in/par/Other", vec![OscType::Float(1.0)])
        .contains("no parameter"));
    // OSC In cannot take the exported values: counted as warnings of `in`, once per change.
    assert!(num(&c.status(), "/chopd/status/op/in/warnings") >= 2.0);
}

#[test]
fn an_export_drives_a_script_parameter_and_control_sets_on_it_are_refused() {
    let (show, stats) = (OscRx::new(), OscRx::new());
    let d = Daemon::start(
        &synth(show.port(), stats.port(), 1000).text(),
        &[("synth.py", &fixture("synth.py"))],
    );
    send(d.port("lfo"), "/Gain", vec![OscType::Float(0.25)]);
    show.wait_value("/show/gain", |v| v == 0.25);
    let c = Control::new(d.control_port());
    let s = c.status();
    assert_eq!(
        s["/chopd/status/op/synth/driven/Gain"],
        OscType::String("lfo".into())
    );
    assert!(c
        .err("/chopd/op/synth/par/Gain", vec![OscType::Float(1.0)])
        .contains("driven by the export of \"lfo\""));
    // A parameter no export drives is set.
    c.ok("/chopd/op/synth/par/Offset", vec![OscType::Float(0.75)]);
    show.wait_value("/show/offset", |v| v == 0.75);
}
