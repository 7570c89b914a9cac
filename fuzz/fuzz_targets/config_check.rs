//! Any text → config checking: never panics; a rejected config has at least one error, and
//! diagnostics are sorted by position.
#![no_main]

use std::path::Path;

use chopd::config::{check_str, Severity};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match check_str(Path::new("/nonexistent/fuzz.toml"), text, chopd::chop::KINDS) {
        Ok(config) => assert!(config.warnings.iter().all(|d| d.severity == Severity::Warning)),
        Err(diags) => {
            assert!(diags.iter().any(|d| d.severity == Severity::Error));
            assert!(diags.windows(2).all(|w| (w[0].line, w[0].col) <= (w[1].line, w[1].col)));
        }
    }
});
