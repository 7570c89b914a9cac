//! Any datagram → the control port's packet parser (decoding, the token prefix, the bound on
//! requests per packet, each request parsed): never panics nor overflows the stack, keeps its
//! bound, never hands the token on, and says why in a few words, never by echoing the input.
//! A datagram is at most 65,507 bytes: run with `-max_len=65507`.
#![no_main]

use chopd::daemon::request::{parse_packet, Auth, AUTH, MAX_REQUESTS_PER_PACKET};
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "fuzz-token-0123456789";

fuzz_target!(|data: &[u8]| {
    let Ok(p) = parse_packet(data, Some(TOKEN), MAX_REQUESTS_PER_PACKET) else {
        return;
    };
    assert!(p.requests.len() <= MAX_REQUESTS_PER_PACKET);
    assert_eq!(p.excess > 0, p.first_excess.is_some());
    for r in &p.requests {
        assert!(!r.addr.starts_with(AUTH), "{}", r.addr);
        if r.auth == Auth::None {
            assert!(!data.starts_with(AUTH.as_bytes()) || data.starts_with(b"#bundle"));
        }
        if let Err(why) = &r.request {
            assert!(why.len() < 200, "{why}");
        }
    }
});
