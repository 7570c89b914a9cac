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

/// Resident memory of the daemon, MB (`VmRSS` in /proc).
fn rss_mb(d: &Daemon) -> f64 {
    let kb: f64 = proc_status(d.child.id(), "VmRSS")
        .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

/// `in` (OSC In with `settings`) and `stats`, its Info CHOP, exported under `/stats`.
fn in_with_stats(stats: &OscRx, settings: &str) -> Daemon {
    let cfg = Config::new()
        .dest("stats", stats.port())
        .oscin("in", settings)
        .info(
            "stats",
            "in",
            r#"export = { method = "autoname", root = "stats" }"#,
        );
    Daemon::start(&cfg.text(), &[])
}

/// Waits (without failing: the memory check below says what went wrong) until the Info CHOP's
/// `chan` reaches `n`.
fn settle(stats: &OscRx, chan: &str, n: f32) {
    let addr = format!("/stats/{chan}");
    let _ = stats.try_until(TIMEOUT, |m| m.addr == addr && float(&m.args[0]) >= n);
}

/// 2,000 datagrams, each a distinct 60 kB address: every one became a channel whose name was
/// held several times over (hundreds of MB here; 10,000 of 64 kB took 5.8 GB), as `max_channels`
/// counts channels, not bytes.
#[test]
fn long_distinct_addresses_do_not_blow_memory() {
    let stats = OscRx::new();
    let d = in_with_stats(&stats, "");
    let port = d.port("in");
    settle(&stats, "packets", 0.0);
    let before = rss_mb(&d);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    const N: usize = 2_000;
    for i in 0..N {
        let p = rosc::OscPacket::Message(rosc::OscMessage {
            addr: format!("/{i:0>60000}"),
            args: vec![OscType::Float(1.0)],
        });
        sock.send_to(&rosc::encoder::encode(&p).unwrap(), ("127.0.0.1", port))
            .unwrap();
        // Paced so that the receive buffer (4 MiB) never overflows.
        if i % 20 == 19 {
            settle(&stats, "packets", (i + 1) as f32);
        }
    }
    settle(&stats, "packets", N as f32);
    let grown = rss_mb(&d) - before;
    assert!(
        grown < 64.0,
        "RSS grew by {grown:.0} MB ({before:.0} MB before)"
    );
    stats.wait_value("/stats/long_addresses", |n| n == N as f32);
    stats.wait_value("/stats/num_channels", |n| n == 0.0);
    // Addresses within max_address_length (1024) fill max_name_bytes (10,000 × 64) instead.
    for i in 0..N {
        send(port, &format!("/{i:0>999}"), vec![OscType::Float(1.0)]);
        if i % 200 == 199 {
            settle(&stats, "packets", (N + i + 1) as f32);
        }
    }
    stats.wait_value("/stats/name_limit", |n| n == (N - 640) as f32);
    stats.wait_value("/stats/num_channels", |n| n == 640.0);
    assert!(rss_mb(&d) - before < 64.0);
    for limit in [
        "max_address_length (1024 bytes)",
        "max_name_bytes (640000 bytes)",
    ] {
        assert!(d.wait_for(limit, TIMEOUT).is_some(), "{}", d.log_text());
        assert_eq!(d.count(limit), 1, "{}", d.log_text());
    }
}

/// One frame's burst of 12,000 messages to one channel of an OSC In with `queued` and
/// `timeslice`: the slice of every one of its 4,000 channels was as long as the burst (four 48 kB
/// datagrams took 935 MB and a 2.2 s frame).
#[test]
fn a_queued_burst_to_one_channel_does_not_lengthen_every_channel() {
    let stats = OscRx::new();
    let d = in_with_stats(&stats, "queued = true\ntimeslice = true");
    let port = d.port("in");
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let bundle = |addrs: &mut dyn Iterator<Item = String>| {
        let p = rosc::OscPacket::Bundle(rosc::OscBundle {
            timetag: rosc::OscTime::from((0, 1)),
            content: addrs
                .map(|addr| {
                    rosc::OscPacket::Message(rosc::OscMessage {
                        addr,
                        args: vec![OscType::Float(1.0)],
                    })
                })
                .collect(),
        });
        rosc::encoder::encode(&p).unwrap()
    };
    const CHANNELS: usize = 4_000;
    for k in 0..CHANNELS / 200 {
        let b = bundle(&mut (k * 200..(k + 1) * 200).map(|i| format!("/c/{i}")));
        sock.send_to(&b, ("127.0.0.1", port)).unwrap();
    }
    stats.wait_value("/stats/num_channels", |n| n == CHANNELS as f32);
    settle(&stats, "length", 0.0);
    let before = rss_mb(&d);
    let burst = bundle(&mut std::iter::repeat_n("/a".to_string(), 3_000));
    assert!(burst.len() > 48_000);
    for _ in 0..4 {
        sock.send_to(&burst, ("127.0.0.1", port)).unwrap();
    }
    let mut longest = 0.0f32;
    let _ = stats.try_until(TIMEOUT, |m| {
        if m.addr == "/stats/length" {
            longest = longest.max(float(&m.args[0]));
        }
        m.addr == "/stats/messages" && float(&m.args[0]) >= (CHANNELS + 12_000) as f32
    });
    for m in stats.drain(Duration::from_millis(300)) {
        if m.addr == "/stats/length" {
            longest = longest.max(float(&m.args[0]));
        }
    }
    let grown = rss_mb(&d) - before;
    // 100 fps and max_slice_ms = 200: at most 20 samples.
    assert!(longest <= 20.0, "a slice of {longest} samples");
    // The 20 newest of each burst frame were kept.
    assert!(stats.wait_value("/stats/slice_drops", |n| n > 0.0) <= 12_000.0 - 20.0);
    assert!(
        grown < 64.0,
        "RSS grew by {grown:.0} MB ({before:.0} MB before)"
    );
}

/// A bundle whose middle element is well framed but no OSC message: the elements after it were
/// lost and nothing was counted.
#[test]
fn bundle_elements_after_a_bad_one_still_arrive() {
    let rx = OscRx::new();
    let d = Daemon::start(
        &in_to_show(rx.port()).info("stats", "in", TO_SHOW).text(),
        &[],
    );
    let element = |addr: &str| {
        let p = rosc::OscPacket::Message(rosc::OscMessage {
            addr: addr.into(),
            args: vec![OscType::Float(0.5)],
        });
        rosc::encoder::encode(&p).unwrap()
    };
    let mut b = b"#bundle\0\0\0\0\0\0\0\0\x01".to_vec();
    for e in [element("/g1"), b"garbage!".to_vec(), element("/g2")] {
        b.extend_from_slice(&(e.len() as u32).to_be_bytes());
        b.extend_from_slice(&e);
    }
    send_raw(d.port("in"), &b);
    rx.expect("/show/g1", 0.5);
    rx.expect("/show/g2", 0.5);
    rx.expect("/show/malformed", 1.0);
}

/// A bundle time-tagged `ahead` from now, holding `addr` = `v`.
fn bundle_ahead(ahead: Duration, addr: &str, v: f32) -> Vec<u8> {
    let t = std::time::SystemTime::now() + ahead;
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap();
    let secs = (d.as_secs() + 2_208_988_800) as u32;
    let frac = ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000) as u32;
    rosc::encoder::encode(&rosc::OscPacket::Bundle(rosc::OscBundle {
        timetag: rosc::OscTime::from((secs, frac)),
        content: vec![rosc::OscPacket::Message(rosc::OscMessage {
            addr: addr.into(),
            args: vec![OscType::Float(v)],
        })],
    }))
    .unwrap()
}

#[test]
fn future_bundles_wait_for_their_time_within_the_window_and_skew_is_counted() {
    let rx = OscRx::new();
    let cfg = Config::new()
        .dest("show", rx.port())
        .oscin("in", &format!("{TO_SHOW}\nbundle_window_ms = 10000"))
        .info("stats", "in", TO_SHOW);
    let mut d = Daemon::start(&cfg.text(), &[]);
    let port = d.port("in");
    // An hour ahead is no schedule but a wrong clock: applied at once, counted.
    send_raw(
        port,
        &bundle_ahead(Duration::from_secs(3600), "/skewed", 1.0),
    );
    rx.wait_value("/show/timetag_skew", |v| v == 1.0);
    rx.wait_value("/show/skewed", |v| v == 1.0);
    // Three seconds ahead: held (seen in `held`), then applied.
    send_raw(port, &bundle_ahead(Duration::from_secs(3), "/later", 0.5));
    rx.wait_value("/show/held", |v| v == 1.0);
    rx.wait_value("/show/later", |v| v == 0.5);
    rx.wait_value("/show/held", |v| v == 0.0);
    assert!(d.stop().success());
}
