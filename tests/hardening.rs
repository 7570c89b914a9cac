//! A corpus of bad input against the real binary: everything is counted and visible in the
//! Info CHOP, nothing crashes, and good traffic interleaved with the bad arrives intact.

use std::time::Duration;

use rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};

use crate::util::*;

fn config(dest: u16, stats: u16, extra: &str) -> String {
    format!(
        r#"
rate = 200

[destinations.out]
host = "127.0.0.1"
port = {dest}

[destinations.stats]
host = "127.0.0.1"
port = {stats}

[[operator]]
name = "in"
type = "oscin"
port = 0
local_address = "127.0.0.1"
max_channels = 1000
export = {{ root = "out" }}
{extra}

[[operator]]
name = "in_info"
type = "info"
op = "in"
export = {{ root = "stats" }}
"#
    )
}

fn encode(p: &OscPacket) -> Vec<u8> {
    rosc::encoder::encode(p).unwrap()
}

fn msg(addr: &str, args: Vec<OscType>) -> OscPacket {
    OscPacket::Message(OscMessage {
        addr: addr.into(),
        args,
    })
}

fn bundle(content: Vec<OscPacket>) -> OscPacket {
    OscPacket::Bundle(OscBundle {
        timetag: OscTime::from((0, 1)),
        content,
    })
}

/// Waits until the Info CHOP reports `chan` ≥ `at_least`; returns the value.
fn stat(rx: &OscRx, chan: &str, at_least: f32) -> f32 {
    rx.wait_value(&format!("/{chan}"), |v| v >= at_least)
}

#[test]
fn bad_packets_are_counted_and_good_traffic_survives() {
    let out = OscRx::new();
    let stats = OscRx::new();
    let mut d = Daemon::start(&config(out.port(), stats.port(), ""), &[]);
    let port = d.port("in");
    let good = encode(&msg("/good", vec![OscType::Float(0.5)]));

    let mut corpus: Vec<Vec<u8>> = Vec::new();
    // Truncations of a good message at every length.
    let full = encode(&msg(
        "/cut/here",
        vec![OscType::Float(1.0), OscType::Int(2)],
    ));
    corpus.extend((1..full.len()).map(|n| full[..n].to_vec()));
    // Wrong type tags: a tag the arguments don't carry, a tag string without the comma.
    corpus.push(b"/t\0\0,ff\0\0\0\0\0".to_vec());
    corpus.push(b"/t\0\0ff\0\0\0\0\0\0\0\0\0\0".to_vec());
    // Non-UTF-8 address.
    corpus.push(b"/\xff\xfe\0,f\0\0\0\0\0\0".to_vec());
    // Bundles nested deeper than anyone sends, and one whose element size overruns it.
    let mut deep = msg("/deep", vec![OscType::Float(1.0)]);
    for _ in 0..40 {
        deep = bundle(vec![deep]);
    }
    corpus.push(encode(&deep));
    corpus.push(b"#bundle\0\0\0\0\0\0\0\0\x01\0\0\x10\0/x\0\0".to_vec());
    // Oversized: one big datagram whose 60 kB blob is ignored, with a number beside it.
    corpus.push(encode(&msg(
        "/big",
        vec![OscType::Blob(vec![7; 60_000]), OscType::Float(3.0)],
    )));
    // NaN and infinities are dropped, the finite value beside them kept.
    corpus.push(encode(&msg(
        "/nan",
        vec![
            OscType::Float(f32::NAN),
            OscType::Double(f64::INFINITY),
            OscType::Float(-1.0),
        ],
    )));
    // What the decoder itself calls malformed: the daemon must count exactly these.
    let counters = chopd::chop::oscin::Counters::default();
    let decoder = chopd::chop::oscin::Decoder {
        address_scope: chopd::pattern::Pattern::all(),
        strip_segments: 0,
    };
    for p in &corpus {
        decoder.decode(p, &counters, |_| {});
    }
    let malformed = counters
        .malformed
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        malformed >= 20,
        "the corpus has only {malformed} malformed packets"
    );
    for p in &corpus {
        send_raw(port, p);
        send_raw(port, &good);
    }

    stat(&stats, "malformed", malformed as f32);
    stat(&stats, "ignored_args", 1.0);
    stat(&stats, "nonfinite", 2.0);
    out.expect("/good", 0.5);
    out.expect("/big", 3.0);
    out.expect("/nan", -1.0);
    // A good change after all that still goes through.
    send(port, "/good", vec![OscType::Float(0.25)]);
    out.expect("/good", 0.25);
    assert!(d.stop().success(), "{}", d.log_text());
}

#[test]
fn a_flood_of_distinct_addresses_is_capped_by_max_channels() {
    let out = OscRx::new();
    let stats = OscRx::new();
    let mut d = Daemon::start(&config(out.port(), stats.port(), ""), &[]);
    let port = d.port("in");
    // 100k distinct addresses, 50 to a bundle, paced so the kernel buffer keeps up.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for chunk in 0..2000 {
        let content = (0..50)
            .map(|i| {
                msg(
                    &format!("/flood/{}", chunk * 50 + i),
                    vec![OscType::Float(1.0)],
                )
            })
            .collect();
        sock.send_to(&encode(&bundle(content)), ("127.0.0.1", port))
            .unwrap();
        if chunk % 100 == 99 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let dropped = stat(&stats, "channel_limit", 90_000.0);
    assert!(dropped <= 99_000.0);
    stats.wait_value("/num_channels", |v| v == 1000.0);
    assert!(
        d.wait_for("updates over max_channels (1000)", TIMEOUT)
            .is_some(),
        "{}",
        d.log_text()
    );
    // Known channels still update.
    send(port, "/flood/0", vec![OscType::Float(2.0)]);
    out.expect("/flood/0", 2.0);
    assert!(d.stop().success());
}

#[test]
fn senders_outside_the_allow_list_are_refused() {
    let out = OscRx::new();
    let stats = OscRx::new();
    let cfg = config(out.port(), stats.port(), r#"allow = ["192.0.2.0/24"]"#);
    let d = Daemon::start(&cfg, &[]);
    let port = d.port("in");
    for _ in 0..5 {
        send(port, "/nope", vec![OscType::Float(1.0)]);
    }
    stat(&stats, "refused", 5.0);
    assert!(out.drain(Duration::from_millis(100)).is_empty());
}
