//! Config checking: `chopd check` on every example config and on the bad-config fixtures.

use crate::util::*;

#[test]
fn every_example_config_passes_check() {
    let mut n = 0;
    for entry in std::fs::read_dir(repo().join("config")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            let (code, out) = check(&p);
            assert_eq!(code, 0, "{}: {out}", p.display());
            n += 1;
        }
    }
    assert!(n >= 2, "expected the example configs, found {n}");
}

/// Each `tests/fixtures/bad/NAME.toml` fails `chopd check` with exactly the lines of
/// `NAME.expected` (paths shown relative to the fixture directory).
#[test]
fn bad_config_fixtures_report_their_expected_messages() {
    let dir = repo().join("tests/fixtures/bad");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let out = std::process::Command::new(BIN)
            .current_dir(&dir)
            .arg("check")
            .arg(p.file_name().unwrap())
            .output()
            .unwrap();
        let expected = std::fs::read_to_string(p.with_extension("expected")).unwrap();
        assert_eq!(out.status.code(), Some(78), "{}", p.display());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            expected,
            "{}",
            p.display()
        );
        n += 1;
    }
    assert!(n >= 5, "expected bad-config fixtures, found {n}");
}
