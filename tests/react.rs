//! `react = true`: input that arrives between frames is cooked and exported at once by the
//! operators that do not depend on time, while the frame counter stays where it is; operators
//! that depend on time wait for the clock; a flood cannot take the clock's frames. Proved by
//! the order in which things arrive at one destination socket and by the Info CHOP counters,
//! never by how long something took.

use rosc::OscType;

use crate::util::*;

/// Every export goes to the one socket of `rx`, so arrival order is the daemon's send order.
/// `clock` (Info of the daemon, first: its `frame` opens every frame's export) → /show;
/// `in` (OSC In) → `double` (Script CHOP ×2) → /show; `lag` (Lag CHOP of `in`, time-dependent);
/// Info CHOPs of `in`, `double` and `lag` sent every cook → /ini, /dbl, /lagi.
fn graph(rx: &OscRx, rate: u32) -> Config {
    graph_with(rx, rate, "")
}

/// [`graph`] with more keys for the OSC In.
fn graph_with(rx: &OscRx, rate: u32, oscin_keys: &str) -> Config {
    let every = |root: &str| format!(r#"export = {{ root = "{root}", send = "every_cook" }}"#);
    Config::new()
        .rate(rate)
        .top("react = true")
        .dest("show", rx.port())
        .dest("ini", rx.port())
        .dest("dbl", rx.port())
        .dest("lagi", rx.port())
        .info("clock", "/", TO_SHOW)
        .oscin("in", oscin_keys)
        .script("double", "double.py", r#""in""#, TO_SHOW)
        .op("lag", "lag", "inputs = [\"in\"]\npars = { lag = 0.5 }")
        .info("ini", "in", &every("ini"))
        .info("dbl", "double", &every("dbl"))
        .info("lagi", "lag", &every("lagi"))
}

#[test]
fn input_between_frames_is_cooked_and_exported_before_the_next_frame() {
    let rx = OscRx::new();
    // One frame a second: a reaction comes back long before the next frame.
    let d = Daemon::start(
        &graph(&rx, 1).text(),
        &[("double.py", &fixture("double.py"))],
    );
    let port = d.port("in");
    let frame = reacted_before_the_next_frame(&rx, |v| send(port, "/x", vec![OscType::Float(v)]));
    // The next frame's export: the reaction was counted, on the operators that reacted only.
    let next = float(&rx.until(TIMEOUT, |m| m.addr == "/show/frame").args[0]);
    assert_eq!(
        next,
        frame + 1.0,
        "the frame counter did not move for the reaction"
    );
    let passes = rx.wait_value("/show/react_passes", |v| v >= 1.0);
    assert!(passes >= 1.0);
    let at_next = |prefix: &str, key: &str| {
        // Sent every cook: the first one after the frame marker is this frame's.
        float(
            &rx.until(TIMEOUT, |m| m.addr == format!("/{prefix}/{key}"))
                .args[0],
        )
    };
    assert!(at_next("ini", "react_cooks") >= 1.0);
    assert!(at_next("dbl", "react_cooks") >= 1.0);
    // The lag cooks on the frame (its input changed in the reaction before it).
    let lag_cooks = at_next("lagi", "total_cooks");
    assert_eq!(at_next("lagi", "react_cooks"), 0.0, "a lag depends on time");
    assert!(lag_cooks >= 1.0);
}

/// Right after a frame's export, sends a value and sees its double arrive before the next
/// frame's; returns the frame it followed. A frame may still fold it if this test was held up
/// for the whole second between the two: then it tries again with another value (a daemon that
/// does not react never passes).
fn reacted_before_the_next_frame(rx: &OscRx, send: impl Fn(f32)) -> f32 {
    for attempt in 1..=5 {
        let frame = float(&rx.until(TIMEOUT, |m| m.addr == "/show/frame").args[0]);
        let v = attempt as f32;
        send(v);
        let m = rx.until(TIMEOUT, |m| {
            m.addr == "/show/frame" || (m.addr == "/show/x" && float(&m.args[0]) == 2.0 * v)
        });
        if m.addr == "/show/x" {
            return frame;
        }
    }
    panic!("no value came back before the next frame in 5 tries");
}

/// OSC over TCP (SLIP) rings the same doorbell as UDP.
#[test]
fn input_over_tcp_reacts_too() {
    use std::io::Write;
    let rx = OscRx::new();
    let cfg = graph_with(&rx, 1, "protocol = \"tcp\"\nframing = \"slip\"");
    let d = Daemon::start(&cfg.text(), &[("double.py", &fixture("double.py"))]);
    let stream = std::net::TcpStream::connect(("127.0.0.1", d.port("in"))).unwrap();
    let frame = reacted_before_the_next_frame(&rx, |v| {
        let packet = rosc::encoder::encode(&rosc::OscPacket::Message(rosc::OscMessage {
            addr: "/x".into(),
            args: vec![OscType::Float(v)],
        }))
        .unwrap();
        // SLIP (RFC 1055): END, the bytes with END and ESC escaped, END.
        let mut frame = vec![0xC0];
        for b in packet {
            match b {
                0xC0 => frame.extend([0xDB, 0xDC]),
                0xDB => frame.extend([0xDB, 0xDD]),
                b => frame.push(b),
            }
        }
        frame.push(0xC0);
        (&stream).write_all(&frame).unwrap();
    });
    let next = float(&rx.until(TIMEOUT, |m| m.addr == "/show/frame").args[0]);
    assert_eq!(
        next,
        frame + 1.0,
        "the frame counter did not move for the reaction"
    );
}

#[test]
fn without_react_input_waits_for_the_frame() {
    let rx = OscRx::new();
    let text = graph(&rx, 100)
        .text()
        .replace("react = true", "react = false");
    let d = Daemon::start(&text, &[("double.py", &fixture("double.py"))]);
    send(d.port("in"), "/x", vec![OscType::Float(4.0)]);
    rx.expect("/show/x", 8.0);
    // Cooked on a frame, not between frames.
    assert_eq!(
        float(&rx.until(TIMEOUT, |m| m.addr == "/dbl/react_cooks").args[0]),
        0.0
    );
    assert_eq!(rx.wait_value("/show/react_passes", |_| true), 0.0);
}

/// A flood of input into a slow reacting script (3 ms a cook at 100 fps, whose reaction budget
/// is four fifths of each 10 ms interval): the reactions stop at the budget (`react_deferred` counts
/// the arrivals that waited for the frame) and the frames go on.
#[test]
fn a_flood_does_not_take_the_frames() {
    let rx = OscRx::new();
    let cfg = Config::new()
        .top("react = true")
        .dest("show", rx.port())
        .info("clock", "/", TO_SHOW)
        .oscin("in", "")
        .script("slow", "slow.py", r#""in""#, "");
    let slow = "import time\n\ndef onCook(scriptOp):\n    time.sleep(0.003)\n    scriptOp.copy(scriptOp.inputs[0])\n";
    let d = Daemon::start(&cfg.text(), &[("slow.py", slow)]);
    let port = d.port("in");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // A new value each time, so every reaction has the script to cook.
                let p = rosc::encoder::encode(&rosc::OscPacket::Message(rosc::OscMessage {
                    addr: "/x".into(),
                    args: vec![OscType::Float((sent % 1_000_000) as f32)],
                }))
                .unwrap();
                let _ = s.send_to(&p, ("127.0.0.1", port));
                sent += 1;
            }
            sent
        })
    };
    // While the flood goes on: 50 more frames, and the bound engaged.
    let first = rx.wait_value("/show/frame", |_| true);
    rx.wait_value("/show/react_passes", |v| v >= 1.0);
    let deferred = rx.wait_value("/show/react_deferred", |v| v >= 1.0);
    rx.wait_value("/show/frame", |f| f >= first + 50.0);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = flood.join().unwrap();
    assert!(sent > 0 && deferred >= 1.0);
}

/// The cook thread reads an OSC In's socket itself once it listens (`cook_reads` of the OSC
/// In's Info CHOP), hands it back to the receive thread when a flood spends the reaction budget
/// and takes it again afterwards; through the handovers a channel's last value wins: after a
/// flood of rising values, the one sent last is exported, and nothing older follows it.
#[test]
fn the_cook_thread_reads_the_socket_itself_and_the_last_value_wins() {
    let rx = OscRx::new();
    let d = Daemon::start(
        &graph(&rx, 100).text(),
        &[("double.py", &fixture("double.py"))],
    );
    let port = d.port("in");
    // One value at a time, each answered before the next is sent, until the cook thread read
    // one itself (it takes the socket after the OSC In's first cook).
    let mut v = 0.0;
    let mut one_by_one = |rx: &OscRx, above: f32| loop {
        v += 1.0;
        assert!(v < 500.0, "the cook thread never read the socket itself");
        send(port, "/x", vec![OscType::Float(v)]);
        rx.expect("/show/x", 2.0 * v);
        let reads = rx.value_at("/ini/cook_reads");
        if reads > above {
            return reads;
        }
    };
    let reads = one_by_one(&rx, 0.0);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut x = 1000.0f32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && x < 4_000_000.0 {
                let _ = s.send_to(&osc_packet("/x", x), ("127.0.0.1", port));
                x += 1.0;
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(1500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flood.join().unwrap();
    let deferred = rx.wait_value("/show/react_deferred", |d| d >= 1.0);
    assert!(deferred >= 1.0, "the flood never spent the budget");
    // What the flood left in the socket's buffer is read before the last value is sent (into a
    // full buffer the kernel would drop it): the packet count stops moving.
    let last_packets = |rx: &OscRx| {
        rx.drain(std::time::Duration::from_millis(200))
            .iter()
            .rev()
            .find(|m| m.addr == "/ini/packets")
            .map(|m| float(&m.args[0]))
    };
    let mut packets = last_packets(&rx);
    loop {
        let now = last_packets(&rx);
        if now.is_some() && now == packets {
            break;
        }
        packets = now;
    }
    let last = 5_000_000.0f32;
    send(port, "/x", vec![OscType::Float(last)]);
    rx.expect("/show/x", 2.0 * last);
    let after = rx.drain(std::time::Duration::from_millis(300));
    let stale: Vec<f32> = after
        .iter()
        .filter(|m| m.addr == "/show/x")
        .map(|m| float(&m.args[0]))
        .filter(|&x| x != 2.0 * last)
        .collect();
    assert!(
        stale.is_empty(),
        "older values after the last one: {stale:?}"
    );
    // The socket came back to the cook thread.
    let reads_now = rx.wait_value("/ini/cook_reads", |_| true);
    one_by_one(&rx, reads_now.max(reads));
}

fn osc_packet(addr: &str, v: f32) -> Vec<u8> {
    rosc::encoder::encode(&rosc::OscPacket::Message(rosc::OscMessage {
        addr: addr.into(),
        args: vec![OscType::Float(v)],
    }))
    .unwrap()
}

/// The cook thread held up (a script that sleeps 0.8 s in a reaction) while it holds an OSC
/// In's socket: the receive thread takes the socket back and queues what arrives, so a burst
/// many times the kernel's receive buffer (512 KiB) during the stall still arrives, every
/// channel with its value.
#[test]
fn a_stalled_cook_thread_does_not_lose_input_held_on_its_socket() {
    let rx = OscRx::new();
    let cfg = Config::new()
        .rate(50)
        .top("react = true")
        .dest("show", rx.port())
        .oscin("in", &format!("receive_buffer = 524288\n{TO_SHOW}"))
        .oscin("ctl", "")
        .script("stall", "stall.py", r#""ctl""#, "");
    let stall = "import time\n\ndef onCook(scriptOp):\n    scriptOp.copy(scriptOp.inputs[0])\n    if scriptOp.inputs[0]['go'] is not None and scriptOp.inputs[0]['go'].eval() > 0:\n        time.sleep(0.8)\n";
    let d = Daemon::start(&cfg.text(), &[("stall.py", stall)]);
    let (port, ctl) = (d.port("in"), d.port("ctl"));
    // The cook thread holds `in`'s socket once it listens: values come back one by one.
    send(port, "/warm", vec![OscType::Float(1.0)]);
    rx.expect("/show/warm", 1.0);
    send(ctl, "/go", vec![OscType::Float(1.0)]);
    std::thread::sleep(std::time::Duration::from_millis(100));
    // 3000 channels in 0.5 s, all during the stall: about 3 MB of kernel buffer if nobody read.
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let n = 3000;
    let started = std::time::Instant::now();
    for i in 0..n {
        let _ = s.send_to(
            &osc_packet(&format!("/c{i}"), i as f32),
            ("127.0.0.1", port),
        );
        let due = started + std::time::Duration::from_micros(500_000 * (i + 1) / n);
        while std::time::Instant::now() < due {
            std::thread::yield_now();
        }
    }
    let mut seen = std::collections::HashSet::new();
    while seen.len() < n as usize {
        let m = rx.until(TIMEOUT, |m| m.addr.starts_with("/show/c"));
        let i: u64 = m.addr["/show/c".len()..].parse().unwrap();
        assert_eq!(float(&m.args[0]), i as f32);
        seen.insert(i);
    }
}
