//! The in-run anchor: a raw UDP forwarder written with the standard library only. It receives
//! each datagram, multiplies every float argument by 2, puts the destination's prefix in front of
//! each address and sends it on: the least any OSC → ×2 → OSC path can do (no clock, no queue,
//! no other thread). The benchmark runs it as a process of its own, exactly as it runs chopd
//! (the same config file, the same start-up lines, the same /proc sampling), so every figure
//! of a run is also printed as a ratio against this one measured in the same invocation.
//!
//! Started as `e2e-HASH run CONFIG`: the bench binary with `run` as its first argument is the
//! forwarder (the benchmark itself never takes `run`). It reads the destination port from the
//! config's `[destinations.bench]`, binds 127.0.0.1:0 and prints the lines the harness waits for
//! (`bound oscin "bench" on ADDR`, `ready`). SIGTERM ends it (the default action).
//!
//! With `--anchor-callback` the harness also writes [`CALLBACK_FILE`] next to the config: the
//! forwarder then runs that file's `cook()` in the embedded interpreter for every datagram,
//! between receiving and sending it. Its `cook()` is the script scenario's numpy work and
//! nothing else, so this anchor is the floor under any daemon that runs that callback per
//! message: what is left between it and chopd is chopd's own.

use std::ffi::CString;
use std::net::UdpSocket;
use std::path::Path;

use pyo3::prelude::*;
use pyo3::types::PyModule;

/// The callback the forwarder runs per datagram when the harness wrote it (see the module's
/// text).
pub const CALLBACK_FILE: &str = "forwarder-callback.py";

/// The callback's source for `channels` channels: the numpy work of the script scenario's
/// `onCook` (its input copied into the output, the output doubled in place).
pub fn callback_source(channels: usize) -> String {
    format!(
        "# Written by the chopd e2e benchmark (--anchor-callback): the script scenario's numpy\n\
         # work per message, nothing else.\n\
         import numpy\n\
         _input = numpy.zeros(({channels}, 1), numpy.float32)\n\
         def cook():\n    a = _input.copy()\n    a *= 2\n"
    )
}

/// The forwarder's whole life; never returns.
pub fn main(config: &str) -> ! {
    let text = std::fs::read_to_string(config).unwrap_or_else(|e| die(&format!("{config}: {e}")));
    let port = dest_port(&text).unwrap_or_else(|| die("no port in [destinations.bench]"));
    let prefix = crate::scenario::PREFIX.as_bytes();
    let input = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| die(&e.to_string()));
    let output = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| die(&e.to_string()));
    output
        .connect(("127.0.0.1", port))
        .unwrap_or_else(|e| die(&e.to_string()));
    // Before `ready`: the interpreter's start-up is not the traffic's to wait for.
    let cook = callback(&Path::new(config).with_file_name(CALLBACK_FILE));
    eprintln!(
        "forwarder: bound oscin \"bench\" on {}",
        input.local_addr().unwrap()
    );
    eprintln!("forwarder: ready");
    let mut buf = vec![0u8; 65_536];
    let mut out = Vec::with_capacity(65_536 + 1024);
    loop {
        let Ok(n) = input.recv(&mut buf) else {
            continue;
        };
        out.clear();
        if forward(&buf[..n], prefix, &mut out) {
            if let Some(cook) = &cook {
                Python::attach(|py| cook.call0(py))
                    .unwrap_or_else(|e| die(&format!("cook(): {e}")));
            }
            let _ = output.send(&out);
        }
    }
}

/// The `cook` function of the callback file, when the harness wrote one.
fn callback(path: &Path) -> Option<Py<PyAny>> {
    let code = std::fs::read_to_string(path).ok()?;
    chopd::python::init(&[]).unwrap_or_else(|e| die(&e));
    let code = CString::new(code).unwrap_or_else(|_| die("a NUL in the callback"));
    let cook = Python::attach(|py| {
        PyModule::from_code(py, &code, c"forwarder-callback.py", c"forwarder_callback")?
            .getattr("cook")
            .map(Bound::unbind)
    });
    Some(cook.unwrap_or_else(|e| die(&format!("{}: {e}", path.display()))))
}

fn die(why: &str) -> ! {
    eprintln!("forwarder: ERROR {why}");
    std::process::exit(1)
}

/// `port = N` in the `[destinations.bench]` table of the config text.
fn dest_port(text: &str) -> Option<u16> {
    let table = text.split("[destinations.bench]").nth(1)?;
    table
        .lines()
        .take_while(|l| !l.trim_start().starts_with('['))
        .find_map(|l| {
            l.trim()
                .strip_prefix("port")?
                .trim()
                .strip_prefix('=')?
                .trim()
                .parse()
                .ok()
        })
}

/// Writes the forwarded packet (a message or a bundle of them) into `out`; false for a packet
/// that is not OSC as the benchmark sends it.
fn forward(p: &[u8], prefix: &[u8], out: &mut Vec<u8>) -> bool {
    if let Some(mut rest) = p.strip_prefix(b"#bundle\0") {
        if rest.len() < 8 {
            return false;
        }
        out.extend_from_slice(b"#bundle\0");
        out.extend_from_slice(&rest[..8]);
        rest = &rest[8..];
        while rest.len() >= 4 {
            let size = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let Some(elem) = rest.get(4..4 + size) else {
                return false;
            };
            let at = out.len();
            out.extend_from_slice(&[0; 4]);
            if !forward(elem, prefix, out) {
                return false;
            }
            let len = (out.len() - at - 4) as u32;
            out[at..at + 4].copy_from_slice(&len.to_be_bytes());
            rest = &rest[4 + size..];
        }
        return true;
    }
    message(p, prefix, out)
}

/// One message: prefix + address, the type tags as they were, each `f` argument × 2.
fn message(p: &[u8], prefix: &[u8], out: &mut Vec<u8>) -> bool {
    let Some(end) = p.iter().position(|&b| b == 0) else {
        return false;
    };
    let addr = &p[..end];
    let tags_at = padded(end + 1);
    let Some(tag_end) = p
        .get(tags_at..)
        .and_then(|t| t.iter().position(|&b| b == 0))
    else {
        return false;
    };
    let tags = &p[tags_at..tags_at + tag_end];
    let mut args = padded(tags_at + tag_end + 1);
    out.extend_from_slice(prefix);
    out.extend_from_slice(addr);
    out.push(0);
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out.extend_from_slice(&p[tags_at..args.min(p.len())]);
    for &t in tags.iter().skip(1) {
        let Some(a) = p.get(args..args + 4) else {
            return false;
        };
        match t {
            b'f' => {
                let v = f32::from_be_bytes([a[0], a[1], a[2], a[3]]) * 2.0;
                out.extend_from_slice(&v.to_be_bytes());
            }
            b'i' => out.extend_from_slice(a),
            _ => return false,
        }
        args += 4;
    }
    true
}

fn padded(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Checks of the forwarder's parsing (`--self-test`).
pub mod checks {
    use rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};

    pub fn doubles_and_prefixes() {
        let m = |a: &str, v: f32| {
            OscPacket::Message(OscMessage {
                addr: a.into(),
                args: vec![OscType::Float(v)],
            })
        };
        for (input, want) in [
            (m("/bench/c7", 1.5), m("/out/bench/c7", 3.0)),
            (
                OscPacket::Bundle(OscBundle {
                    timetag: OscTime::from((0, 1)),
                    content: vec![m("/bench/c1", 2.0), m("/bench/c22", 5.0)],
                }),
                OscPacket::Bundle(OscBundle {
                    timetag: OscTime::from((0, 1)),
                    content: vec![m("/out/bench/c1", 4.0), m("/out/bench/c22", 10.0)],
                }),
            ),
        ] {
            let bytes = rosc::encoder::encode(&input).unwrap();
            let mut out = Vec::new();
            assert!(super::forward(&bytes, b"/out", &mut out));
            let (_, got) = rosc::decoder::decode_udp(&out).unwrap();
            assert_eq!(got, want);
        }
        let cfg = "[destinations.bench]\nhost = \"127.0.0.1\"\nport = 4321\nprefix = \"/out\"\n";
        assert_eq!(super::dest_port(cfg), Some(4321));
    }
}
