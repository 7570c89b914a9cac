//! Any datagram → OSC In's decoder: never panics, and every update it emits names a legal
//! channel and carries only finite values.
#![no_main]

use chopd::chop::oscin::{Counters, Decoder};
use chopd::pattern::Pattern;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoder = Decoder {
        address_scope: Pattern::all(),
        strip_segments: (data.first().copied().unwrap_or(0) % 3) as usize,
        max_address: 1024,
        // Time tags are read whatever they say; a window makes the fuzzer reach that code.
        bundle_window: std::time::Duration::from_secs(1),
    };
    let counters = Counters::default();
    decoder.decode(data, &counters, |u| {
        assert!(!u.name.is_empty());
        assert!(u.name.len() <= 1024);
        assert!(u
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '/')));
        assert!(!u.values.is_empty());
        assert!(u.values.iter().all(|v| v.is_finite()));
    });
});
