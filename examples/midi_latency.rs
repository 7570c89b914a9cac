//! MIDI in → OSC export out latency of a running `chopd`, measured from outside.
//!
//! Creates a virtual MIDI output port, starts `chopd run` on a config whose MIDI In connects to
//! it and exports to a UDP socket of this program, then plays ping-pong: send one controller
//! message, wait for its OSC message, wait a random part of a frame (so messages land at every
//! phase of the frame clock), repeat. Latency = OSC receive time − MIDI send time, both on this
//! process's monotonic clock; it includes the MIDI system (one JACK period or the ALSA
//! sequencer), the wait for the next frame, the cook, the export and the UDP hop.
//!
//! Run through `scripts/bench-midi` (builds chopd and this program with the `jack` feature and
//! starts a JACK server), or by hand:
//!
//!   cargo run --release --features jack --example midi_latency -- target/release/chopd 1000 500
//!
//! Arguments: CHOPD [RATE=60] [MESSAGES=500].

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use midir::os::unix::VirtualOutput;
use midir::MidiOutput;
use rosc::{OscPacket, OscType};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let chopd = args.first().cloned().unwrap_or_else(|| {
        eprintln!("usage: midi_latency CHOPD [RATE=60] [MESSAGES=500]");
        std::process::exit(2)
    });
    let rate: f64 = args
        .get(1)
        .map_or(60.0, |s| s.parse().expect("RATE is a number"));
    let n: usize = args
        .get(2)
        .map_or(500, |s| s.parse().expect("MESSAGES is a number"));

    let client = format!("chopdbench-{}", std::process::id());
    let out = MidiOutput::new(&client).expect("open a MIDI client (is a JACK server running?)");
    let mut port = out
        .create_virtual("out")
        .expect("create a virtual MIDI port");

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dir = std::env::temp_dir().join(format!("chopd-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            r#"
rate = {rate}

[destinations.bench]
host = "127.0.0.1"
port = {port}

[[operator]]
name = "keys"
type = "midiin"
device = "{client}:out"
norm = "off"
export = {{ root = "bench" }}

[[operator]]
name = "keysinfo"
type = "info"
op = "keys"
export = {{ root = "bench" }}
"#,
            port = sock.local_addr().unwrap().port()
        ),
    )
    .unwrap();
    let mut child = Command::new(&chopd)
        .arg("run")
        .arg(&config)
        .env("CHOPD_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("start chopd");

    let mut buf = vec![0u8; 65536];
    // Wait for the MIDI In to connect (Info CHOP's `connected`).
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            Instant::now() < deadline,
            "chopd did not connect to the MIDI port"
        );
        let Ok(len) = sock.recv(&mut buf) else {
            continue;
        };
        if values(&buf[..len])
            .iter()
            .any(|(a, v)| a == "/connected" && *v == 1.0)
        {
            break;
        }
    }

    // JACK applies a new connection a few periods after it is made: send a warm-up controller
    // until it comes out, so the first measured message is not lost to that.
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    'warm: for i in 0u32.. {
        assert!(
            Instant::now() < deadline + Duration::from_secs(10),
            "MIDI never came through"
        );
        port.send(&[0xB0, 8, 1 + (i % 2) as u8]).unwrap();
        let until = Instant::now() + Duration::from_millis(20);
        while Instant::now() < until {
            let Ok(len) = sock.recv(&mut buf) else {
                continue;
            };
            if values(&buf[..len]).iter().any(|(a, _)| a == "/ch1c8") {
                break 'warm;
            }
        }
    }

    let frame = Duration::from_secs_f64(1.0 / rate);
    let mut lat = Vec::with_capacity(n);
    let mut lost = 0;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    for i in 0..n {
        // Controller 7 steps through 1..=127 so that every message changes the value.
        let value = (i % 127 + 1) as u8;
        let sent = Instant::now();
        port.send(&[0xB0, 7, value]).unwrap();
        let timeout = sent + Duration::from_secs(1);
        let got = loop {
            if Instant::now() > timeout {
                break None;
            }
            let Ok(len) = sock.recv(&mut buf) else {
                continue;
            };
            let now = Instant::now();
            if values(&buf[..len])
                .iter()
                .any(|(a, v)| a == "/ch1c7" && *v == f32::from(value))
            {
                break Some(now - sent);
            }
        };
        match got {
            Some(d) => lat.push(d.as_secs_f64() * 1e3),
            None => lost += 1,
        }
        // xorshift: a random pause of up to one frame.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(frame.mul_f64((seed % 1000) as f64 / 1000.0));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);

    lat.sort_by(f64::total_cmp);
    let q = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    if lat.is_empty() {
        println!("rate {rate} fps: all {n} messages lost");
        std::process::exit(1);
    }
    println!(
        "rate {rate} fps, {} messages: MIDI in -> OSC out latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, min {:.2} ms; lost {lost} (frame period {:.2} ms)",
        n,
        q(0.5),
        q(0.99),
        lat[lat.len() - 1],
        lat[0],
        frame.as_secs_f64() * 1e3,
    );
}

/// (address, value) of every numeric message in a packet.
fn values(bytes: &[u8]) -> Vec<(String, f32)> {
    let mut out = Vec::new();
    if let Ok((_, p)) = rosc::decoder::decode_udp(bytes) {
        walk(p, &mut out);
    }
    out
}

fn walk(p: OscPacket, out: &mut Vec<(String, f32)>) {
    match p {
        OscPacket::Message(m) => {
            let v = match m.args.first() {
                Some(OscType::Float(f)) => *f,
                Some(OscType::Double(d)) => *d as f32,
                Some(OscType::Int(i)) => *i as f32,
                _ => return,
            };
            out.push((m.addr, v));
        }
        OscPacket::Bundle(b) => b.content.into_iter().for_each(|p| walk(p, out)),
    }
}
