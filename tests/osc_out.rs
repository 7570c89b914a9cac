//! Destinations beyond plain UDP: TCP in both framings (read by python-osc's TCP server, and
//! by a listener here that drops the connection or never reads), keep-alive messages, and
//! multicast with its TTL and interface inside a network namespace of the test's own.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Command, Stdio};

use rosc::{OscMessage, OscPacket, OscType};

use crate::util::*;

/// A TCP destination `name` on 127.0.0.1:`port` with `framing` and further `keys`.
fn tcp_dest(name: &str, port: u16, framing: &str, keys: &str) -> String {
    format!(
        "[destinations.{name}]\nhost = \"127.0.0.1\"\nport = {port}\nprefix = \"/{name}\"\nprotocol = \"tcp\"\nframing = \"{framing}\"\n{keys}\n"
    )
}

/// Receives with python-osc's threading TCP server in `mode` and prints `address args` for
/// every message until it has seen `/xremote` and `/show/x 0.5` (or 10 s have passed).
const PY_SERVER: &str = r#"
import sys, threading
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_tcp_server import ThreadingOSCTCPServer
mode = sys.argv[1]
seen, done = [], threading.Event()
def each(addr, *args):
    seen.append((addr, args))
    print(addr, *args, flush=True)
    if any(a == "/xremote" for a, _ in seen) and any(a == "/show/x" and v == (0.5,) for a, v in seen):
        done.set()
d = Dispatcher()
d.set_default_handler(each)
server = ThreadingOSCTCPServer(("127.0.0.1", 0), d, mode=mode)
server.daemon_threads = True
print(server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.exit(0 if done.wait(10) else 1)
"#;

#[test]
fn python_osc_tcp_servers_receive_exports_and_keepalives_in_both_framings() {
    for (framing, mode) in [("slip", "1.1"), ("size", "1.0")] {
        let mut py = Command::new("python3")
            .args(["-c", PY_SERVER, mode])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(py.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let port: u16 = line.trim().parse().expect("the server's port");
        let cfg = Config::new()
            .raw(&tcp_dest(
                "show",
                port,
                framing,
                "keepalive = [{ address = \"/xremote\", every_s = 9 }]",
            ))
            .oscin("in", TO_SHOW);
        let mut d = Daemon::start(&cfg.text(), &[]);
        send(d.port("in"), "/x", vec![OscType::Float(0.5)]);
        let status = py.wait().unwrap();
        let mut rest = String::new();
        out.read_to_string(&mut rest).unwrap();
        assert!(status.success(), "{framing}: python-osc saw:\n{rest}");
        assert!(rest.contains("/xremote"), "{rest}");
        assert!(d.stop().success());
    }
}

/// Reads OSC packets from an accepted stream, SLIP-framed, until `pred` holds for a message.
fn read_until(stream: &mut std::net::TcpStream, mut pred: impl FnMut(&OscMessage) -> bool) {
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut d = chopd::osc::framing::Deframer::new(chopd::osc::framing::Framing::Slip, 65_536);
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).expect("a message within the timeout");
        assert!(n > 0, "the connection closed");
        let mut hit = false;
        d.feed(&buf[..n], |p| {
            let p = rosc::decoder::decode_udp(p.unwrap()).unwrap().1;
            let msgs = match p {
                OscPacket::Message(m) => vec![m],
                OscPacket::Bundle(b) => b
                    .content
                    .into_iter()
                    .filter_map(|p| match p {
                        OscPacket::Message(m) => Some(m),
                        OscPacket::Bundle(_) => None,
                    })
                    .collect(),
            };
            hit |= msgs.iter().any(&mut pred);
        })
        .unwrap();
        if hit {
            return;
        }
    }
}

fn is(addr: &'static str, v: f32) -> impl Fn(&OscMessage) -> bool {
    move |m| m.addr == addr && m.args.first().is_some_and(|a| (float(a) - v).abs() < 1e-6)
}

#[test]
fn a_dropped_connection_is_logged_once_counted_and_the_state_is_sent_again() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stats = OscRx::new();
    let cfg = Config::new()
        .raw(&tcp_dest(
            "show",
            port,
            "slip",
            "keepalive = [{ address = \"/hello\", every_s = 3600, args = [\"sub\", 2] }]",
        ))
        .dest("stats", stats.port())
        .oscin("in", TO_SHOW)
        .info(
            "daemon",
            "/",
            r#"export = { method = "autoname", root = "stats" }"#,
        );
    let mut d = Daemon::start(&cfg.text(), &[]);
    let (mut first, _) = listener.accept().unwrap();
    read_until(&mut first, |m| {
        m.addr == "/hello" && m.args == [OscType::String("sub".into()), OscType::Int(2)]
    });
    send(d.port("in"), "/x", vec![OscType::Float(0.25)]);
    read_until(&mut first, is("/show/x", 0.25));
    drop(first);
    // The destination reconnects, says hello again and sends the current state unasked.
    let (mut second, _) = listener.accept().unwrap();
    read_until(&mut second, |m| m.addr == "/hello");
    read_until(&mut second, is("/show/x", 0.25));
    stats.wait_value("/stats/dest_outages", |v| v == 1.0);
    stats.wait_value("/stats/dests_down", |v| v == 0.0);
    assert_eq!(
        d.logged(|f| f.get("destination").is_some_and(|n| n == "show") && f.contains_key("error"))
            .len(),
        1,
        "{}",
        d.log_text()
    );
    assert!(d.stop().success());
}

#[test]
fn a_receiver_that_never_reads_costs_drops_not_the_clock() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stats = OscRx::new();
    // 1000 channels sent every frame at 100 fps to a receiver that reads nothing.
    let cfg = Config::new()
        .raw(&tcp_dest("show", port, "size", ""))
        .dest("stats", stats.port())
        .op(
            "wave",
            "lfo",
            "pars = { channelname = \"c[1-1000]\" }\nexport = { method = \"autoname\", root = \"show\", send = \"every_cook\" }",
        )
        .info("daemon", "/", r#"export = { method = "autoname", root = "stats" }"#);
    let mut d = Daemon::start(&cfg.text(), &[]);
    let (_held, _) = listener.accept().unwrap();
    stats.wait_value("/stats/dest_drops", |v| v > 0.0);
    // The clock runs on: frames keep coming, none dropped for the socket's sake.
    let frames = stats.value_at("/stats/frames");
    stats.wait_value("/stats/frames", |v| v > frames + 100.0);
    assert!(d.stop().success());
}

#[test]
fn destination_transport_keys_are_checked() {
    let dir = TempDir::new();
    let path = dir.write(
        "c.toml",
        &Config::new()
            .raw("[destinations.a]\nhost = \"127.0.0.1\"\nport = 9\nmulticast_ttl = 2\n")
            .raw("[destinations.b]\nhost = \"239.0.0.1\"\nport = 9\nprotocol = \"tcp\"\n")
            .raw("[destinations.c]\nhost = \"127.0.0.1\"\nport = 9\nkeepalive = [{ address = \"xremote\", every_s = 0 }]\n")
            .text(),
    );
    let (code, text) = check(&path);
    assert_eq!(code, 78, "{text}");
    for needle in [
        "multicast settings need an IPv4 multicast group (224.0.0.0/4) as host",
        "a multicast group cannot be reached over TCP",
        "an OSC address starts with \"/\": \"xremote\"",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}

/// Whether this machine lets an unprivileged test make its own network namespace.
fn user_namespaces() -> bool {
    Command::new("unshare")
        .args(["-rn", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Joins 239.1.2.3 on 127.0.0.1 and prints the TTL and content of the first message at
/// `/mc/chan1`.
const PY_GROUP: &str = r#"
import socket, struct, sys
from pythonosc.osc_packet import OscPacket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("239.1.2.3", int(sys.argv[1])))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             socket.inet_aton("239.1.2.3") + socket.inet_aton("127.0.0.1"))
s.setsockopt(socket.IPPROTO_IP, 12, 1)  # IP_RECVTTL
s.settimeout(10)
while True:
    data, anc, _, _ = s.recvmsg(65536, 64)
    ttl = [struct.unpack("i", d[:4])[0] for (l, t, d) in anc if l == socket.IPPROTO_IP and t == 2]
    for m in OscPacket(data).messages:
        if m.message.address == "/mc/chan1":
            print("ttl", ttl[0], "value", m.message.params[0])
            sys.exit(0)
"#;

#[test]
fn multicast_output_with_ttl_and_interface_inside_a_private_network_namespace() {
    if !user_namespaces() {
        eprintln!(
            "SKIPPED: user namespaces are unavailable here (unshare -rn), so no multicast test"
        );
        return;
    }
    let dir = TempDir::new();
    let port = 9123;
    let config = Config::new()
        .raw(&format!(
            "[destinations.mc]\nhost = \"239.1.2.3\"\nport = {port}\nprefix = \"/mc\"\nmulticast_ttl = 3\nmulticast_interface = \"127.0.0.1\"\n"
        ))
        .op(
            "k",
            "constant",
            "pars = { name0 = \"chan1\", value0 = 0.5 }\nexport = { method = \"autoname\", root = \"mc\", send = \"every_cook\" }",
        )
        .text();
    let cfg = dir.write("chopd.toml", &config);
    // Its loopback is the namespace's only interface, multicast routed to it; nothing leaves.
    let out = Command::new("unshare")
        .args(["-rn", "sh", "-c"])
        .arg(
            r#"ip link set lo up && ip link set lo multicast on &&
               ip route add 224.0.0.0/4 dev lo &&
               "$1" run "$2" 2>"$4" & pid=$!
               python3 -c "$3" "$5"; rc=$?; kill $pid; wait $pid; exit $rc"#,
        )
        .args(["sh", BIN])
        .arg(&cfg)
        .arg(PY_GROUP)
        .arg(dir.path("chopd.log"))
        .arg(port.to_string())
        .env("RUNTIME_DIRECTORY", dir.path(""))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\nchopd:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.path("chopd.log")).unwrap_or_default()
    );
    assert!(stdout.contains("ttl 3 value 0.5"), "{stdout}");
}

#[test]
fn scripts_send_any_osc_through_an_osc_out_dat() {
    let rx = OscRx::new();
    let cfg = Config::new()
        .dest_unprefixed("x32", rx.port())
        .op("out", "oscout", "destination = \"x32\"")
        .op("tbl", "table", "rows = [[\"a\"]]")
        .script("sender", "send_osc.py", "", "");
    let mut d = Daemon::start(&cfg.text(), &[("send_osc.py", &fixture("send_osc.py"))]);
    let m = rx.until(TIMEOUT, |m| m.addr == "/ch/01/mix/fader");
    assert_eq!(
        m.args,
        [
            OscType::Float(0.5),
            OscType::String("on".into()),
            OscType::Int(3),
            OscType::Bool(true),
            OscType::Nil,
            OscType::Array(rosc::OscArray {
                content: vec![OscType::Int(1), OscType::Int(2)]
            }),
            OscType::Blob(vec![1]),
            OscType::Long(1 << 40),
        ]
    );
    // Messages are packed in the order sent; packets (asBundle, sendBytes) follow them.
    let plain = rx.until(TIMEOUT, |m| m.addr == "/plain");
    assert_eq!(plain.args, [OscType::Int(1), OscType::Int(7)]);
    let one = rx.until(TIMEOUT, |m| m.addr == "/one");
    assert_eq!(one.args, [OscType::String("alone".into())]);
    let checks = rx.until(TIMEOUT, |m| m.addr == "/checks");
    // sendOSC on a table DAT raises tdError, a None without non-standard types TypeError; the
    // first sendOSC returned the size of its message.
    assert_eq!(checks.args[..2], [OscType::Int(1), OscType::Int(1)]);
    assert!(
        matches!(checks.args[2], OscType::Int(n) if n > 40 && n % 4 == 0),
        "{checks:?}"
    );
    let b1 = rx.until(TIMEOUT, |m| m.addr == "/b");
    let b2 = rx.until(TIMEOUT, |m| m.addr == "/b");
    assert_eq!(
        (b1.args, b2.args),
        (vec![OscType::Int(1)], vec![OscType::Int(2)])
    );
    let raw = rx.until(TIMEOUT, |m| m.addr == "/raw");
    assert!(raw.args.is_empty());
    assert!(d.stop().success());
}

#[test]
fn an_osc_out_dat_names_a_destination() {
    let dir = TempDir::new();
    let path = dir.write(
        "c.toml",
        &Config::new()
            .dest("x32", 9)
            .op("out", "oscout", "destination = \"x31\"")
            .text(),
    );
    let (code, text) = check(&path);
    assert_eq!(code, 78, "{text}");
    assert!(
        text.contains(
            "destination \"x31\" is not defined (add [destinations.x31]); did you mean \"x32\"?"
        ),
        "{text}"
    );
}

#[test]
fn liblo_oscdump_reads_a_size_framed_tcp_destination() {
    if Command::new("oscdump").arg("-h").output().is_err() {
        panic!("oscdump (liblo-tools) is missing: run scripts/setup");
    }
    // A free port for oscdump; the destination retries until it listens.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut dump = Command::new("oscdump")
        .args(["-L", &format!("osc.tcp://:{port}")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = dump.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let cfg = Config::new()
        .raw(&tcp_dest("show", port, "size", ""))
        .oscin("in", TO_SHOW);
    let mut d = Daemon::start(&cfg.text(), &[]);
    send(d.port("in"), "/x", vec![OscType::Float(0.5)]);
    let mut seen = Vec::new();
    let found = loop {
        match rx.recv_timeout(TIMEOUT) {
            Ok(l) if l.contains("/show/x f 0.5") => break true,
            Ok(l) => seen.push(l),
            Err(_) => break false,
        }
    };
    let _ = dump.kill();
    let _ = dump.wait();
    assert!(found, "oscdump printed: {seen:?}\n{}", d.log_text());
    assert!(d.stop().success());
}
