//! MIDI Out throughput of a running `chopd`: how many controller messages per second reach a
//! MIDI input through JACK, and how many are lost.
//!
//! Creates a virtual MIDI input port, starts `chopd run` on a config whose OSC In feeds a MIDI
//! Out connected to it, waits until the path carries MIDI, then sends one OSC message per
//! controller change at RATE changes a second (16 controllers in turn, each value differing
//! from that controller's last, so every change is one MIDI message) for SECONDS, and counts
//! what arrives. Loss = sent − received (the OSC hop is on loopback; where a loss happened,
//! chopd's own `dropped` counter, on an Info CHOP of the `midiout`, says whether it was chopd).
//!
//!   scripts/bench-midi-out            (release build, JACK server started if none)
//!   cargo run --release --features jack --example midi_out_rate -- target/release/chopd 1000 10
//!
//! Arguments: CHOPD [RATE=1000] [SECONDS=10].

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use midir::os::unix::VirtualInput;
use midir::{Ignore, MidiInput};
use rosc::{OscMessage, OscPacket, OscType};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let chopd = args.first().cloned().unwrap_or_else(|| {
        eprintln!("usage: midi_out_rate CHOPD [RATE=1000] [SECONDS=10]");
        std::process::exit(2)
    });
    let rate: f64 = args.get(1).map_or(1000.0, |s| s.parse().expect("RATE"));
    let secs: f64 = args.get(2).map_or(10.0, |s| s.parse().expect("SECONDS"));

    let client = format!("chopdbench-out-{}", std::process::id());
    let mut mi = MidiInput::new(&client).expect("a MIDI client (is a JACK server running?)");
    mi.ignore(Ignore::None);
    let got = Arc::new(AtomicU64::new(0));
    let warm = Arc::new(AtomicU64::new(0));
    let (g, w) = (got.clone(), warm.clone());
    let _conn = mi
        .create_virtual(
            "in",
            move |_, b, _| {
                if b.len() == 3 && b[0] == 0xB0 && b[1] < 16 {
                    g.fetch_add(1, Ordering::Relaxed);
                } else if b.len() == 3 && b[1] == 100 {
                    w.fetch_add(1, Ordering::Relaxed);
                }
            },
            (),
        )
        .expect("a virtual MIDI input");

    let dir = std::env::temp_dir().join(format!("chopd-bench-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("bench.toml");
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    let in_port = probe.local_addr().unwrap().port();
    drop(probe);
    std::fs::write(
        &config,
        format!(
            "[[operator]]\nname = \"in\"\ntype = \"oscin\"\nport = {in_port}\nlocal_address = \"127.0.0.1\"\nqueued = true\ntimeslice = true\n\n\
             [[operator]]\nname = \"out\"\ntype = \"midiout\"\ninputs = [\"in\"]\ntimeslice = true\ndevice = \"{client}:in\"\nnorm = \"off\"\nscan_ms = 50\n"
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
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |addr: &str, v: f32| {
        let p = OscPacket::Message(OscMessage {
            addr: addr.into(),
            args: vec![OscType::Float(v)],
        });
        let _ = sock.send_to(&rosc::encoder::encode(&p).unwrap(), ("127.0.0.1", in_port));
    };
    // Until the path carries MIDI: controller 100 toggling.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut k = 0;
    while warm.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "MIDI never came through");
        send("/ch1c100", (k % 2 + 1) as f32);
        k += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    got.store(0, Ordering::Relaxed);
    let n = (rate * secs) as u64;
    let start = Instant::now();
    for i in 0..n {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        if let Some(d) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let cc = i % 16;
        // Controller cc's k-th value: 1..=126, never the same twice in a row.
        send(&format!("/ch1c{cc}"), ((i / 16) % 126 + 1) as f32);
    }
    let sent_in = start.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let received = got.load(Ordering::Relaxed);
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    println!(
        "MIDI Out: sent {n} controller changes at {:.0}/s ({:.1} s), received {received}, lost {} ({:.3} %)",
        n as f64 / sent_in.as_secs_f64(),
        sent_in.as_secs_f64(),
        n.saturating_sub(received),
        n.saturating_sub(received) as f64 * 100.0 / n as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
