//! Any byte stream, in any pieces → the TCP deframers: never panic, never hand back a packet
//! longer than the limit, and what was framed comes back whole after the noise.
#![no_main]

use chopd::osc::framing::{encode, Deframer, Framing};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 512;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let framing = if first & 1 == 0 { Framing::Slip } else { Framing::Size };
    let chunk = usize::from(first >> 1).max(1);
    let mut d = Deframer::new(framing, MAX);
    let mut dead = false;
    for piece in rest.chunks(chunk) {
        if d.feed(piece, |p| {
            if let Ok(p) = p {
                assert!(!p.is_empty() && p.len() <= MAX);
            }
        })
        .is_err()
        {
            dead = true;
            break;
        }
    }
    // SLIP resynchronises on END: a packet framed after any noise arrives intact.
    if framing == Framing::Slip && !dead {
        let mut tail = Vec::new();
        encode(Framing::Slip, b"/ok\0,\0\0\0", &mut tail);
        let mut got = Vec::new();
        d.feed(&tail, |p| got.push(p.map(<[u8]>::to_vec))).unwrap();
        assert_eq!(got.last(), Some(&Ok(b"/ok\0,\0\0\0".to_vec())));
    }
});
