//! Any websocket frame → the OSCQuery server's parsers: as a binary frame, the OSC writes
//! parsed against a namespace with every parameter style (decoding, the token prefix, the
//! bound per packet, each write checked against its parameter); as a text frame, a
//! LISTEN/IGNORE command. Never panics nor overflows the stack, keeps its bound, never hands the
//! token on, and never lets a non-finite number through.
#![no_main]

use std::sync::Arc;

use chopd::cook::par::ParDef;
use chopd::cook::ParValue;
use chopd::daemon::oscquery::namespace::Index;
use chopd::daemon::oscquery::snapshot::{OpTree, ParInfo, Tree};
use chopd::daemon::oscquery::writes::parse_writes;
use chopd::daemon::oscquery::ws::parse_command;
use chopd::daemon::request::{Request, MAX_REQUESTS_PER_PACKET};
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "fuzz-token-0123456789";

fn index() -> Index {
    let par = |def: ParDef| ParInfo { def, driven_by: None };
    let pars = vec![
        par(ParDef::float("gain", "p", 1.0).clamp_min(0.0).clamp_max(4.0)),
        par(ParDef::int("steps", "p", 2)),
        par(ParDef::toggle("on", "p", false)),
        par(ParDef::menu("mode", "p", &["slow", "fast"], "slow")),
        par(ParDef::pulse("go", "p")),
        par(ParDef::string("label", "p", "")),
        par(ParDef::float("stat", "p", 0.0).read_only()),
    ];
    Index::build(Arc::new(Tree {
        ops: vec![OpTree {
            name: "s".into(),
            kind: "script",
            chans: vec!["x".into(), "a/b".into()],
            pars,
        }],
        chan_at: vec![0],
        par_at: vec![0],
    }))
}

fuzz_target!(|data: &[u8]| {
    thread_local!(static IX: Index = index());
    IX.with(|ix| {
        if let Ok((writes, excess)) = parse_writes(ix, data, Some(TOKEN)) {
            assert!(writes.len() <= MAX_REQUESTS_PER_PACKET);
            assert!(excess == 0 || writes.len() == MAX_REQUESTS_PER_PACKET);
            for (path, _, r) in &writes {
                assert!(!path.contains(TOKEN), "{path}");
                match r {
                    Ok(Request::Set(_, _, ParValue::Float(f))) => assert!(f.is_finite()),
                    Ok(Request::Set(..) | Request::Pulse(..) | Request::Reload | Request::Release) => {}
                    Ok(other) => panic!("a write became {other:?}"),
                    Err(why) => assert!(why.len() < 300, "{why}"),
                }
            }
        }
    });
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_command(text);
    }
});
