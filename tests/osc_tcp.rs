//! OSC over TCP end to end: OSC In with `protocol = "tcp"` fed by third-party clients
//! (python-osc in both framings, liblo's `oscsend`) and by hostile streams (truncated frames, a
//! 2 GB size prefix), and TCP destinations read by python-osc's TCP server.

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;

use rosc::{OscMessage, OscPacket, OscType};

use crate::util::*;

/// An OSC In on TCP with `framing`, exported to `show`, and its Info CHOP.
fn tcp_in(rx: &OscRx, framing: &str) -> Config {
    Config::new()
        .dest("show", rx.port())
        .oscin(
            "in",
            &format!("{TO_SHOW}\nprotocol = \"tcp\"\nframing = \"{framing}\""),
        )
        .info("stats", "in", TO_SHOW)
}

/// Waits until `addr` carries `value`, whether it arrived before or after other awaited ones.
fn seen(rx: &OscRx, addr: &str, value: f32) {
    rx.wait_value(addr, |v| (v - value).abs() < 1e-6);
}

/// Runs a python-osc program; panics with its output when it fails.
fn python(program: &str, args: &[&str]) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(program)
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python-osc failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const PY_SEND: &str = r#"
import sys
from pythonosc.tcp_client import SimpleTCPClient
port, mode = int(sys.argv[1]), sys.argv[2]
with SimpleTCPClient("127.0.0.1", port, mode=mode) as c:
    c.send_message("/py/fader", [0.25, 3])
    c.send_message("/py/label", ["text", 0.5])
"#;

#[test]
fn python_osc_tcp_clients_in_both_framings() {
    for (framing, mode) in [("slip", "1.1"), ("size", "1.0")] {
        let rx = OscRx::new();
        let mut d = Daemon::start(&tcp_in(&rx, framing).text(), &[]);
        let port = d.port("in").to_string();
        python(PY_SEND, &[&port, mode]);
        seen(&rx, "/show/py/fader_1", 0.25);
        seen(&rx, "/show/py/fader_2", 3.0);
        seen(&rx, "/show/py/label", 0.5);
        seen(&rx, "/show/connections", 1.0);
        seen(&rx, "/show/frame_errors", 0.0);
        assert!(d.stop().success());
    }
}

#[test]
fn liblo_oscsend_over_tcp() {
    if Command::new("oscsend").arg("--help").output().is_err() {
        panic!("oscsend (liblo-tools) is missing: run scripts/setup");
    }
    // liblo frames TCP with a size prefix (OSC 1.0).
    let rx = OscRx::new();
    let d = Daemon::start(&tcp_in(&rx, "size").text(), &[]);
    let url = format!("osc.tcp://127.0.0.1:{}", d.port("in"));
    let st = Command::new("oscsend")
        .args([&url, "/liblo/tcp", "fi", "0.5", "7"])
        .status()
        .unwrap();
    assert!(st.success());
    seen(&rx, "/show/liblo/tcp_1", 0.5);
    seen(&rx, "/show/liblo/tcp_2", 7.0);
}

fn encoded(addr: &str, v: f32) -> Vec<u8> {
    rosc::encoder::encode(&OscPacket::Message(OscMessage {
        addr: addr.into(),
        args: vec![OscType::Float(v)],
    }))
    .unwrap()
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s
}

#[test]
fn hostile_size_streams_are_counted_and_other_clients_carry_on() {
    let rx = OscRx::new();
    let mut d = Daemon::start(&tcp_in(&rx, "size").text(), &[]);
    let port = d.port("in");
    // A client that connects and never sends stays connected and costs its slot only.
    let idle = connect(port);
    // A 2 GB size prefix: the connection is closed, nothing is allocated for it.
    let mut huge = connect(port);
    huge.write_all(&0x7fff_fff0u32.to_be_bytes()).unwrap();
    huge.write_all(&[0; 16]).unwrap();
    // A frame cut short by the client closing.
    let mut cut = connect(port);
    cut.write_all(&64u32.to_be_bytes()).unwrap();
    cut.write_all(b"/cut\0\0\0\0").unwrap();
    drop(cut);
    seen(&rx, "/show/frame_errors", 2.0);
    // A good client after all of it, its packets split across writes.
    let mut good = connect(port);
    let p = encoded("/ok", 0.5);
    let mut framed = (p.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&p);
    for b in framed.chunks(3) {
        good.write_all(b).unwrap();
        good.flush().unwrap();
    }
    seen(&rx, "/show/ok", 0.5);
    seen(&rx, "/show/clients", 2.0);
    drop(idle);
    drop(huge);
    assert!(d.stop().success());
}

#[test]
fn hostile_slip_streams_are_counted_and_resynchronise() {
    let rx = OscRx::new();
    let mut d = Daemon::start(&tcp_in(&rx, "slip").text(), &[]);
    let port = d.port("in");
    let mut s = connect(port);
    // A bad escape, then 100 KiB without an END (over the 64 KiB limit), then a good packet.
    s.write_all(b"\xC0/x\xDB\x01\xC0").unwrap();
    s.write_all(&vec![0x41; 100 * 1024]).unwrap();
    let mut good = vec![0xC0];
    good.extend_from_slice(&encoded("/after", 0.75));
    good.push(0xC0);
    s.write_all(&good).unwrap();
    seen(&rx, "/show/after", 0.75);
    seen(&rx, "/show/frame_errors", 2.0);
    drop(s);
    assert!(d.stop().success());
}

#[test]
fn max_clients_refuses_the_rest() {
    let rx = OscRx::new();
    let cfg = Config::new()
        .dest("show", rx.port())
        .oscin(
            "in",
            &format!("{TO_SHOW}\nprotocol = \"tcp\"\nmax_clients = 1"),
        )
        .info("stats", "in", TO_SHOW);
    let mut d = Daemon::start(&cfg.text(), &[]);
    let port = d.port("in");
    let _first = connect(port);
    seen(&rx, "/show/clients", 1.0);
    let _second = connect(port);
    seen(&rx, "/show/clients_refused", 1.0);
    assert!(d.stop().success());
}

#[test]
fn tcp_keys_are_checked() {
    let dir = TempDir::new();
    let path = dir.write(
        "c.toml",
        &Config::new()
            .oscin("a", "framing = \"slip\"")
            .oscin("b", "protocol = \"tcp\"\nframing = \"lines\"")
            .text(),
    );
    let (code, text) = check(&path);
    assert_eq!(code, 78, "{text}");
    assert!(
        text.contains("error: framing applies to protocol = \"tcp\" only"),
        "{text}"
    );
    assert!(
        text.contains("unknown value \"lines\"; expected one of \"slip\", \"size\""),
        "{text}"
    );
}

const PY_STRINGS: &str = r#"
import sys
from pythonosc.tcp_client import SimpleTCPClient
from pythonosc.udp_client import SimpleUDPClient
port, proto = int(sys.argv[1]), sys.argv[2]
c = SimpleTCPClient("127.0.0.1", port) if proto == "tcp" else SimpleUDPClient("127.0.0.1", port)
c.send_message("/other", [1])
c.send_message("/ch/01/name", ["X", 0.25])
c.send_message("/ch/01/name", ["Vox", 0.75])
if proto == "tcp":
    c.close()
"#;

/// The OSC In DAT `msgs` (with `protocol`), its callbacks writing into the Constant `k`, which
/// exports to `rx` under `/show`.
fn strings_config(rx: &OscRx, protocol: &str) -> Config {
    Config::new()
        .dest("show", rx.port())
        .op(
            "msgs",
            "oscindat",
            &format!(
                "port = 0\nlocal_address = \"127.0.0.1\"\nprotocol = \"{protocol}\"\ncallbacks = \"osc_receive.py\""
            ),
        )
        .op(
            "k",
            "constant",
            &format!(
                "pars = {{ name0 = \"cell\", name1 = \"strlen\", name2 = \"rows\", name3 = \"message\", name4 = \"peer\" }}\n{TO_SHOW}"
            ),
        )
}

#[test]
fn the_osc_in_dat_keeps_strings_and_runs_on_receive_osc_over_udp_and_tcp() {
    for protocol in ["udp", "tcp"] {
        let rx = OscRx::new();
        let mut d = Daemon::start(
            &strings_config(&rx, protocol).text(),
            &[("osc_receive.py", &fixture("osc_receive.py"))],
        );
        python(PY_STRINGS, &[&d.port("msgs").to_string(), protocol]);
        seen(&rx, "/show/cell", 0.75);
        seen(&rx, "/show/strlen", 3.0);
        // Two addresses, the second written twice: two rows.
        seen(&rx, "/show/rows", 2.0);
        seen(&rx, "/show/message", 1.0);
        seen(&rx, "/show/peer", 1.0);
        assert!(d.stop().success());
    }
}

#[test]
fn the_osc_in_dat_holds_max_lines_rows_and_counts_the_rest() {
    let rx = OscRx::new();
    let cfg = Config::new()
        .dest("show", rx.port())
        .op(
            "msgs",
            "oscindat",
            "port = 0\nlocal_address = \"127.0.0.1\"\nmax_lines = 2\ntypetag = true",
        )
        .info("stats", "msgs", TO_SHOW);
    let mut d = Daemon::start(&cfg.text(), &[]);
    let port = d.port("msgs");
    for a in ["/a", "/b", "/c"] {
        send(port, a, vec![OscType::String("s".into()), OscType::Int(1)]);
    }
    seen(&rx, "/show/rows_dropped", 1.0);
    seen(&rx, "/show/messages", 3.0);
    assert!(d.stop().success());
}
