//! The OSCQuery server end to end: the real binary with `[oscquery]` on 127.0.0.1, browsed by a
//! plain HTTP client and a websocket client written from the proposal, by python-oscquery (a
//! third-party client), over mDNS inside a network namespace the test makes, and in headless
//! Chromium through WebDriver.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rosc::{OscMessage, OscPacket, OscType};
use serde_json::Value;
use tokio_tungstenite::tungstenite::{self, stream::MaybeTlsStream, Message};

use crate::util::*;

type Ws = tungstenite::WebSocket<MaybeTlsStream<TcpStream>>;

const OQ: &str = "[oscquery]\nport = 0\n";

/// OSC In `in` → Script CHOP `knobs` (every parameter style), exported to `show` at `dest`.
fn knobs(dest: u16) -> Config {
    Config::new()
        .control()
        .dest("show", dest)
        .oscin("in", "")
        .script("knobs", "knobs.py", r#""in""#, TO_SHOW)
        .raw(OQ)
}

fn knobs_files() -> Vec<(&'static str, String)> {
    vec![("knobs.py", oq_fixture("knobs.py"))]
}

fn oq_fixture(name: &str) -> String {
    std::fs::read_to_string(repo().join("tests/fixtures/oscquery").join(name)).unwrap()
}

fn start(config: &Config, files: &[(&'static str, String)]) -> Daemon {
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    Daemon::start(&config.text(), &files)
}

/// The port of the OSCQuery server (its `listening kind=oscquery` line).
fn oq_port(d: &Daemon) -> u16 {
    let f = d
        .wait_logged(
            |f| f.get("kind").is_some_and(|k| k == "oscquery"),
            1,
            TIMEOUT,
        )
        .expect("no oscquery listening line");
    f["addr"].rsplit(':').next().unwrap().parse().unwrap()
}

/// One HTTP/1.1 exchange: (status, body).
fn http(port: u16, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// Waits (bounded by `TIMEOUT`) until `cond` holds, looking every 20 ms.
fn poll(mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < end, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn get(port: u16, target: &str) -> (u16, String) {
    http(
        port,
        &format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    )
}

fn json(port: u16, target: &str) -> Value {
    let (status, body) = get(port, target);
    assert_eq!(status, 200, "{target}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{target}: {e}: {body}"))
}

fn connect(port: u16, query: &str) -> Ws {
    let (ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{port}/{query}")).unwrap();
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
    }
    ws
}

fn command(ws: &mut Ws, cmd: &str, path: &str) {
    let text = serde_json::json!({ "COMMAND": cmd, "DATA": path }).to_string();
    ws.send(Message::Text(text.into())).unwrap();
}

fn write(ws: &mut Ws, path: &str, args: Vec<OscType>) {
    let m = OscPacket::Message(OscMessage {
        addr: path.into(),
        args,
    });
    ws.send(Message::Binary(rosc::encoder::encode(&m).unwrap().into()))
        .unwrap();
}

/// What the server sent: a text command, or the messages of a binary OSC frame.
#[derive(Debug)]
enum Got {
    Text(Value),
    Osc(Vec<OscMessage>),
}

/// Reads until `pred` holds for something received (every wait bounded by `TIMEOUT`); `tick`
/// runs between reads (to send more OSC while waiting).
fn until(ws: &mut Ws, mut tick: impl FnMut(), mut pred: impl FnMut(&Got) -> bool) -> Got {
    let end = Instant::now() + TIMEOUT;
    while Instant::now() < end {
        tick();
        let got = match ws.read() {
            Ok(Message::Text(t)) => Got::Text(serde_json::from_str(t.as_str()).unwrap()),
            Ok(Message::Binary(b)) => Got::Osc(rosc_messages(&b)),
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                continue
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(e) => panic!("websocket: {e}"),
        };
        if pred(&got) {
            return got;
        }
    }
    panic!("timed out on the websocket");
}

fn rosc_messages(bytes: &[u8]) -> Vec<OscMessage> {
    fn walk(p: OscPacket, out: &mut Vec<OscMessage>) {
        match p {
            OscPacket::Message(m) => out.push(m),
            OscPacket::Bundle(b) => b.content.into_iter().for_each(|p| walk(p, out)),
        }
    }
    let mut out = Vec::new();
    walk(rosc::decoder::decode_udp(bytes).unwrap().1, &mut out);
    out
}

fn osc_value(got: &Got, addr: &str) -> Option<OscType> {
    match got {
        Got::Osc(ms) => ms
            .iter()
            .rev()
            .find(|m| m.addr == addr)
            .map(|m| m.args[0].clone()),
        _ => None,
    }
}

fn command_is(got: &Got, cmd: &str, data: impl Fn(&str) -> bool) -> bool {
    matches!(got, Got::Text(v) if v["COMMAND"] == cmd && v["DATA"].as_str().is_some_and(&data))
}

/// The error a write got back (`/chopd/error PATH REASON`).
fn write_error(ws: &mut Ws, path: &str, args: Vec<OscType>) -> String {
    write(ws, path, args);
    let got = until(
        ws,
        || {},
        |g| matches!(g, Got::Osc(ms) if ms.iter().any(|m| m.addr == "/chopd/error")),
    );
    let Got::Osc(ms) = got else { unreachable!() };
    let m = ms.iter().find(|m| m.addr == "/chopd/error").unwrap();
    match &m.args[1] {
        OscType::String(s) => s.clone(),
        a => panic!("{a:?}"),
    }
}

#[test]
fn the_namespace_serves_every_parameter_style_channels_and_statistics() {
    let d = start(&knobs(OscRx::new().port()), &knobs_files());
    let port = oq_port(&d);
    let host = json(port, "/?HOST_INFO");
    assert_eq!(host["NAME"], "chopd");
    assert_eq!(host["OSC_TRANSPORT"], "UDP");
    assert_eq!(host["WS_PORT"], port);
    assert!(host["OSC_PORT"].as_u64().unwrap() > 0);
    for on in [
        "VALUE",
        "RANGE",
        "LISTEN",
        "PATH_ADDED",
        "PATH_CHANGED",
        "HTML",
        "CLIPMODE",
    ] {
        assert_eq!(host["EXTENSIONS"][on], true, "{on}");
    }
    assert_eq!(host["EXTENSIONS"]["TAGS"], false);
    let par = |p: &str| json(port, &format!("/project1/knobs/par/{p}"));
    let gain = par("Gain");
    assert_eq!(gain["TYPE"], "f");
    assert_eq!(gain["ACCESS"], 3);
    assert_eq!(gain["DESCRIPTION"], "Gain");
    assert_eq!(gain["RANGE"][0]["MIN"], 0.0);
    assert_eq!(gain["RANGE"][0]["MAX"], 4.0);
    assert_eq!(gain["CLIPMODE"][0], "both");
    assert_eq!(gain["VALUE"][0], 0.0);
    assert_eq!(par("Steps")["TYPE"], "i");
    assert_eq!(par("On")["TYPE"], "T");
    assert_eq!(par("On")["VALUE"][0], false);
    let mode = par("Mode");
    assert_eq!(mode["TYPE"], "s");
    assert_eq!(
        mode["RANGE"][0]["VALS"],
        serde_json::json!(["slow", "fast"])
    );
    assert_eq!(mode["VALUE"][0], "slow");
    let go = par("Go");
    assert_eq!(
        (go["TYPE"].as_str(), go["ACCESS"].as_u64()),
        (Some("I"), Some(2))
    );
    assert!(go.get("VALUE").is_none());
    assert_eq!(par("Label")["TYPE"], "s");
    let errors = json(port, "/project1/knobs/info/errors");
    assert_eq!(
        (errors["TYPE"].as_str(), errors["ACCESS"].as_u64()),
        (Some("i"), Some(1))
    );
    let x = json(port, "/project1/knobs/chan/x");
    assert_eq!(
        (x["TYPE"].as_str(), x["ACCESS"].as_u64()),
        (Some("f"), Some(1))
    );
    // Attribute queries, and the proposal's answers to what is not there.
    assert_eq!(
        json(port, "/project1/knobs/par/Gain?VALUE"),
        serde_json::json!({"VALUE": [0.0]})
    );
    assert_eq!(
        json(port, "/project1/knobs/par/Gain?TYPE"),
        serde_json::json!({"TYPE": "f"})
    );
    let root = json(port, "/");
    assert_eq!(
        root["CONTENTS"]["project1"]["CONTENTS"]["knobs"]["FULL_PATH"],
        "/project1/knobs"
    );
    assert_eq!(root["CONTENTS"]["chopd"]["CONTENTS"]["reload"]["TYPE"], "I");
    assert_eq!(get(port, "/project1/knobs?VALUE").0, 204);
    assert_eq!(get(port, "/project1/knobs?NOPE").0, 400);
    assert_eq!(get(port, "/project1/nothere").0, 404);
    let (status, _) = http(
        port,
        "POST /project1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 405);
    // Malformed HTTP is answered 400 and costs nothing else.
    assert_eq!(http(port, "GARBAGE\r\n\r\n").0, 400);
    let (status, page) = http(
        port,
        "GET / HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(page.starts_with("<!doctype html>"), "{page:.80}");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page loads nothing from outside"
    );
    assert_eq!(json(port, "/?HOST_INFO")["NAME"], "chopd");
}

#[test]
fn python_oscquery_reads_the_namespace() {
    let d = start(&knobs(OscRx::new().port()), &knobs_files());
    let port = oq_port(&d);
    // python-oscquery's client, pointed at the server as its browser would after discovery.
    let script = format!(
        r#"
import socket
from zeroconf import ServiceInfo
from pythonoscquery.osc_query_client import OSCQueryClient
info = ServiceInfo("_oscjson._tcp.local.", "chopd._oscjson._tcp.local.",
                   addresses=[socket.inet_aton("127.0.0.1")], port={port})
c = OSCQueryClient(info)
h = c.get_host_info()
assert h.name == "chopd", h
assert h.osc_transport == "UDP", h
n = c.query_node("/project1/knobs/par/Gain")
assert n.value == [0.0], n.value
assert n.access == 3, n.access
assert n.description == "Gain"
tree = c.query_node("/project1/knobs/info")
names = sorted(x.full_path for x in tree.contents)
assert "/project1/knobs/info/total_cooks" in names, names
assert c.query_node("/project1/none") is None
print("ok")
"#
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok"),
        "python-oscquery (scripts/setup installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn listen_streams_a_channel_as_osc_arrives_and_announces_it_first() {
    let d = start(&knobs(OscRx::new().port()), &knobs_files());
    let (port, inp) = (oq_port(&d), d.port("in"));
    let mut ws = connect(port, "");
    // Listened to before it exists: it is streamed once it comes.
    command(&mut ws, "LISTEN", "/project1/in/chan/x");
    command(&mut ws, "LISTEN", "/project1/in/chan/y");
    let mut v = 0.0f32;
    let added = until(
        &mut ws,
        || {
            v += 0.125;
            send(inp, "/x", vec![OscType::Float(v)]);
        },
        |g| command_is(g, "PATH_ADDED", |p| "/project1/in/chan/x".starts_with(p)),
    );
    assert!(matches!(added, Got::Text(_)));
    until(
        &mut ws,
        || {},
        |g| osc_value(g, "/project1/in/chan/x").is_some(),
    );
    send(inp, "/x", vec![OscType::Float(7.5)]);
    until(
        &mut ws,
        || {},
        |g| osc_value(g, "/project1/in/chan/x") == Some(OscType::Float(7.5)),
    );
    // IGNORE stops x; y, sent after x, still comes, and x's new value never does.
    command(&mut ws, "IGNORE", "/project1/in/chan/x");
    // The IGNORE is read before anything sent after its reply-less write: a LISTEN round trip
    // (a write's error reply) orders them.
    write_error(&mut ws, "/project1/nothere", vec![OscType::Float(1.0)]);
    send(inp, "/x", vec![OscType::Float(9.0)]);
    send(inp, "/y", vec![OscType::Float(1.0)]);
    until(
        &mut ws,
        || {},
        |g| {
            assert_ne!(
                osc_value(g, "/project1/in/chan/x"),
                Some(OscType::Float(9.0)),
                "IGNOREd"
            );
            osc_value(g, "/project1/in/chan/y") == Some(OscType::Float(1.0))
        },
    );
    // Malformed commands are ignored and counted, the session goes on.
    ws.send(Message::Text("{not json".into())).unwrap();
    command(&mut ws, "EXPLODE", "/project1");
    // A flood of LISTENs: past the bound they are ignored and counted (y is the one kept).
    for i in 0..10_100 {
        command(&mut ws, "LISTEN", &format!("/project1/flood/{i}"));
    }
    // A write's error reply comes after every command sent before it has been read.
    write_error(&mut ws, "/project1/nothere", vec![OscType::Float(1.0)]);
    let counters = json(port, "/_chopd/counters");
    assert_eq!(counters["malformed"], 2, "{counters}");
    assert_eq!(counters["listen_ignored"], 10_100 - 9_999, "{counters}");
    send(inp, "/y", vec![OscType::Float(2.0)]);
    until(
        &mut ws,
        || {},
        |g| osc_value(g, "/project1/in/chan/y") == Some(OscType::Float(2.0)),
    );
}

#[test]
fn writes_over_the_websocket_and_osc_set_parameters_and_refuse_with_reasons() {
    let rx = OscRx::new();
    let d = start(&knobs(rx.port()), &knobs_files());
    let (port, inp) = (oq_port(&d), d.port("in"));
    let osc_port = json(port, "/?HOST_INFO")["OSC_PORT"].as_u64().unwrap() as u16;
    let mut ws = connect(port, "");
    write(
        &mut ws,
        "/project1/knobs/par/Gain",
        vec![OscType::Float(2.0)],
    );
    poll(|| json(port, "/project1/knobs/par/Gain?VALUE")["VALUE"][0] == 2.0);
    send(inp, "/x", vec![OscType::Float(0.5)]);
    rx.wait_value("/show/x", |v| v == 1.0);
    assert_eq!(
        json(port, "/project1/knobs/par/Gain?VALUE")["VALUE"][0],
        2.0
    );
    // Over UDP to OSC_PORT, as any OSC controller would.
    send(osc_port, "/project1/knobs/par/Gain", vec![OscType::Int(3)]);
    rx.wait_value("/show/x", |v| v == 1.5);
    send(osc_port, "/project1/knobs/par/Go", vec![]);
    rx.wait_value("/show/go", |v| v == 1.0);
    send(
        osc_port,
        "/project1/knobs/par/Mode",
        vec![OscType::String("fast".into())],
    );
    send(
        osc_port,
        "/project1/knobs/par/On",
        vec![OscType::Bool(true)],
    );
    poll(|| json(port, "/project1/knobs/par/On?VALUE")["VALUE"][0] == true);
    assert_eq!(
        json(port, "/project1/knobs/par/Mode?VALUE")["VALUE"][0],
        "fast"
    );
    // Clamped as the parameter says.
    write(
        &mut ws,
        "/project1/knobs/par/Gain",
        vec![OscType::Float(99.0)],
    );
    rx.wait_value("/show/x", |v| v == 2.0);
    // Refusals, each with its reason.
    let e = write_error(
        &mut ws,
        "/project1/knobs/par/Gain",
        vec![OscType::String("loud".into())],
    );
    assert!(e.contains("needs a number"), "{e}");
    let e = write_error(
        &mut ws,
        "/project1/knobs/par/Mode",
        vec![OscType::String("warp".into())],
    );
    assert!(e.contains("no entry"), "{e}");
    let e = write_error(&mut ws, "/project1/knobs/par/Gain", vec![OscType::Nil]);
    assert!(e.contains("cannot set"), "{e}");
    let e = write_error(
        &mut ws,
        "/project1/knobs/info/errors",
        vec![OscType::Int(0)],
    );
    assert!(e.contains("read-only"), "{e}");
    let e = write_error(&mut ws, "/project1/knobs/chan/x", vec![OscType::Float(1.0)]);
    assert!(e.contains("read-only"), "{e}");
    let e = write_error(
        &mut ws,
        "/project1/knobs/par/Nope",
        vec![OscType::Float(1.0)],
    );
    assert!(e.contains("no such path"), "{e}");
    ws.send(Message::Binary(vec![1u8, 2, 3].into())).unwrap();
    let got = until(&mut ws, || {}, |g| matches!(g, Got::Osc(_)));
    assert!(format!("{got:?}").contains("malformed"), "{got:?}");
    // An oversized frame ends that connection only.
    let _ = ws.send(Message::Binary(vec![0u8; 200_000].into()));
    let end = Instant::now() + TIMEOUT;
    loop {
        match ws.read() {
            Err(tungstenite::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < end => {}
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    assert_eq!(
        json(port, "/project1/knobs/par/Gain?VALUE")["VALUE"][0],
        4.0
    );
}

#[test]
fn only_the_control_allow_list_and_token_may_write() {
    let token = "0123456789abcdef";
    let rx = OscRx::new();
    let config = Config::new()
        .dest("show", rx.port())
        .oscin("in", "")
        .script("knobs", "knobs.py", r#""in""#, TO_SHOW)
        .raw(&format!("[control]\nport = 0\ntoken = \"{token}\"\n"))
        .raw(OQ);
    let d = start(&config, &knobs_files());
    let port = oq_port(&d);
    let osc_port = json(port, "/?HOST_INFO")["OSC_PORT"].as_u64().unwrap() as u16;
    assert_eq!(json(port, "/_chopd/session")["writable"], false);
    assert_eq!(
        json(port, &format!("/_chopd/session?token={token}"))["writable"],
        true
    );
    let mut anon = connect(port, "");
    let e = write_error(
        &mut anon,
        "/project1/knobs/par/Gain",
        vec![OscType::Float(2.0)],
    );
    assert!(e.contains("token"), "{e}");
    let mut wrong = connect(port, "?token=guessguessguess0");
    let e = write_error(
        &mut wrong,
        "/project1/knobs/par/Gain",
        vec![OscType::Float(2.0)],
    );
    assert!(e.contains("wrong token"), "{e}");
    let mut authed = connect(port, &format!("?token={token}"));
    write(
        &mut authed,
        "/project1/knobs/par/Gain",
        vec![OscType::Float(2.0)],
    );
    poll(|| json(port, "/project1/knobs/par/Gain?VALUE")["VALUE"][0] == 2.0);
    assert_eq!(
        json(port, "/project1/knobs/par/Gain?VALUE")["VALUE"][0],
        2.0
    );
    // Over UDP the token is the address's /chopd/auth/TOKEN prefix, as on the control port.
    send(
        osc_port,
        &format!("/chopd/auth/{token}/project1/knobs/par/Gain"),
        vec![OscType::Float(3.0)],
    );
    poll(|| json(port, "/project1/knobs/par/Gain?VALUE")["VALUE"][0] == 3.0);
    assert_eq!(
        json(port, "/project1/knobs/par/Gain?VALUE")["VALUE"][0],
        3.0
    );
    let c = Control::new(osc_port);
    c.send("/project1/knobs/par/Gain", vec![OscType::Float(1.0)]);
    let r = c
        .replies("/project1/knobs/par/Gain", TIMEOUT)
        .expect("an error reply");
    assert!(format!("{r:?}").contains("token"), "{r:?}");
    drop(d);
    // Without [control], nothing may write.
    let d = start(
        &Config::new()
            .oscin("in", "")
            .script("knobs", "knobs.py", r#""in""#, "")
            .raw(OQ),
        &knobs_files(),
    );
    let mut ws = connect(oq_port(&d), "");
    let e = write_error(
        &mut ws,
        "/project1/knobs/par/Gain",
        vec![OscType::Float(2.0)],
    );
    assert!(e.contains("[control]"), "{e}");
}

#[test]
fn a_reload_is_path_changed_and_an_export_driven_parameter_refuses() {
    let d = start(&knobs(OscRx::new().port()), &knobs_files());
    let port = oq_port(&d);
    let mut ws = connect(port, "");
    command(&mut ws, "LISTEN", "/project1/knobs/par/Gain");
    let text = knobs(OscRx::new().port())
        .oscin(
            "drv",
            r#"export = { method = "autoname", root = "op:knobs" }"#,
        )
        .text();
    d.rewrite_config(&text);
    d.reload_applied(1);
    let drv = d.port("drv");
    until(
        &mut ws,
        || send(drv, "/Gain", vec![OscType::Float(0.5)]),
        |g| command_is(g, "PATH_CHANGED", |p| p == "/project1/knobs/par/Gain"),
    );
    let gain = json(port, "/project1/knobs/par/Gain");
    assert_eq!(gain["ACCESS"], 1, "{gain}");
    assert!(
        gain["DESCRIPTION"].as_str().unwrap().contains("drv"),
        "{gain}"
    );
    let e = write_error(
        &mut ws,
        "/project1/knobs/par/Gain",
        vec![OscType::Float(2.0)],
    );
    assert!(e.contains("driven by the export of \"drv\""), "{e}");
    assert!(json(port, "/project1")
        .to_string()
        .contains("/project1/drv"));
}

#[test]
fn a_client_that_stops_reading_is_dropped_and_the_clock_goes_on() {
    let config = Config::new()
        .rate(100)
        .script("many", "many.py", "", "")
        .raw(OQ);
    let d = start(&config, &[("many.py", oq_fixture("many.py"))]);
    let port = oq_port(&d);
    // A client that LISTENs to 500 channels changing every frame and never reads.
    let mut stalled = connect(port, "");
    if let MaybeTlsStream::Plain(s) = stalled.get_ref() {
        let sock = socket2::SockRef::from(s);
        sock.set_recv_buffer_size(4096).unwrap();
    }
    command(&mut stalled, "LISTEN", "/project1/many");
    let frames = |p| json(p, "/chopd/frames?VALUE")["VALUE"][0].as_u64().unwrap();
    let before = frames(port);
    let end = Instant::now() + Duration::from_secs(30);
    while json(port, "/_chopd/counters")["dropped_slow"] == 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(json(port, "/_chopd/counters")["dropped_slow"], 1);
    // Frames ran all along: the cook thread never waits on a client.
    assert!(frames(port) > before);
    d.wait_logged(|f| f.get("peer").is_some(), 1, TIMEOUT)
        .expect("the drop is logged");
}

/// Whether this machine lets an unprivileged test make its own network namespace.
fn user_namespaces() -> bool {
    Command::new("unshare")
        .args(["-rn", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn mdns_announces_oscjson_and_osc_inside_a_private_network_namespace() {
    if !user_namespaces() {
        eprintln!("SKIPPED: user namespaces are unavailable here (unshare -rn), so no mDNS test");
        return;
    }
    let dir = TempDir::new();
    let config = Config::new()
        .oscin("in", "")
        .raw("[oscquery]\nport = 0\nname = \"stage left\"\nannounce = true\n")
        .text();
    let cfg = dir.write("chopd.toml", &config);
    let browse = repo().join("tests/fixtures/oscquery/browse.py");
    // Everything inside a network namespace of its own: its loopback is the only interface,
    // and nothing leaves it.
    let out = Command::new("unshare")
        .args(["-rn", "sh", "-c"])
        .arg(
            r#"ip link set lo up && ip link set lo multicast on &&
               "$1" run "$2" 2>"$4" & pid=$!
               python3 "$3"; rc=$?; kill $pid; wait $pid; exit $rc"#,
        )
        .args(["sh", BIN])
        .arg(&cfg)
        .arg(&browse)
        .arg(dir.path("chopd.log"))
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
    assert!(stdout.contains("oscjson stage left"), "{stdout}");
    assert!(stdout.contains("osc stage left"), "{stdout}");
    assert!(stdout.contains("host_info stage left"), "{stdout}");
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_browser_sees_values_moves_a_slider_and_sees_a_script_error() {
    let ready = have("chromium")
        && have("chromedriver")
        && Command::new("python3")
            .args(["-c", "import selenium"])
            .status()
            .is_ok_and(|s| s.success());
    if !ready {
        // scripts/test installs them (scripts/setup) and sets CHOPD_REQUIRE_BROWSER.
        assert!(
            std::env::var_os("CHOPD_REQUIRE_BROWSER").is_none(),
            "chromium, chromedriver and selenium are required (scripts/setup installs them)"
        );
        eprintln!("SKIPPED: no chromium/chromedriver/selenium (scripts/setup installs them)");
        return;
    }
    let mut page = Command::new("python3")
        .arg(repo().join("tests/fixtures/oscquery/page.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(page.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let dest: u16 = line.trim().strip_prefix("port ").unwrap().parse().unwrap();
    let config = knobs(dest)
        .script("bad", "fail.py", r#""in""#, "")
        .text()
        .replace("knobs.py", "scale.py")
        .replace("\"knobs\"", "\"s1\"");
    let d = Daemon::start(
        &config,
        &[
            ("scale.py", &fixture("scale.py")),
            ("fail.py", &fixture("fail_on_input.py")),
        ],
    );
    let shot = repo().join("target/oscquery-page.png");
    let mut stdin = page.stdin.take().unwrap();
    writeln!(
        stdin,
        "http://127.0.0.1:{}/ {} {}",
        oq_port(&d),
        d.port("in"),
        shot.display()
    )
    .unwrap();
    let mut rest = String::new();
    let _ = out.read_to_string(&mut rest);
    let status = page.wait().unwrap();
    assert!(
        status.success(),
        "the page test failed: {rest}\nchopd:\n{}",
        d.log_text()
    );
    assert!(shot.exists(), "no screenshot at {}", shot.display());
}
