//! Any byte stream → MIDI In's parser and channel mapper: never panics; every update names an
//! existing, legal channel and carries a finite value in the widest legal range (raw 14-bit).
#![no_main]

use chopd::chop::midiin::{Mapper, MidiInConfig, MidiNorm, StreamParser};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&opts, bytes)) = data.split_first() else { return };
    let norm = match opts & 3 {
        0 => MidiNorm::ZeroToOne,
        1 => MidiNorm::MinusOneToOne,
        2 => MidiNorm::Off,
        _ => MidiNorm::OnOff,
    };
    let mut channels = [true; 16];
    if opts & 4 != 0 {
        channels[1..].iter_mut().for_each(|c| *c = false);
    }
    let cfg = MidiInConfig {
        norm,
        channels,
        highres: if opts & 8 != 0 { vec![1, 7, 31] } else { Vec::new() },
        ..MidiInConfig::default()
    };
    let mut parser = StreamParser::new();
    let mut mapper = Mapper::new(&cfg);
    parser.feed(bytes, |ev| {
        if let Some(u) = mapper.map(ev) {
            let names = mapper.names();
            assert!(u.chan < names.len());
            assert!(names[u.chan].chars().all(|c| c.is_ascii_alphanumeric()));
            assert!(u.value.is_finite() && (-1.0..=16383.0).contains(&u.value), "{u:?}");
        }
    });
});
