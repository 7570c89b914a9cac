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

#[test]
fn check_warns_when_the_control_port_or_an_input_is_open_to_the_network() {
    let dir = TempDir::new();
    let open = dir.write(
        "open.toml",
        "[control]\naddress = \"0.0.0.0\"\nport = 0\nallow = [\"0.0.0.0/0\"]\n\
         [[operator]]\nname = \"in\"\ntype = \"oscin\"\nport = 0\n\
         [[operator]]\nname = \"any\"\ntype = \"oscin\"\nport = 0\nallow = [\"::/0\"]\n",
    );
    let (code, out) = check(&open);
    assert_eq!(code, 0, "{out}");
    let warnings: Vec<&str> = out.lines().filter(|l| l.contains(": warning: ")).collect();
    assert!(
        warnings.iter().any(|w| w.contains(
            "open.toml:1:1: warning: the control port listens on 0.0.0.0:0 and allows 0.0.0.0/0"
        )),
        "{out}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("without a token")),
        "{out}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("oscin \"in\" listens on [::]:0 without an allow-list")),
        "{out}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("oscin \"any\" listens on [::]:0 allowing ::/0")),
        "{out}"
    );
    // Loopback, or an allow-list of the show network: nothing to say.
    let closed = dir.write(
        "closed.toml",
        "[control]\nport = 0\n\
         [[operator]]\nname = \"in\"\ntype = \"oscin\"\nport = 0\nallow = [\"10.0.0.0/24\"]\n\
         [[operator]]\nname = \"lo\"\ntype = \"oscin\"\nport = 0\nlocal_address = \"127.0.0.1\"\n",
    );
    let (code, out) = check(&closed);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("warning"), "{out}");
    // The start says it too.
    let text = std::fs::read_to_string(&open).unwrap();
    let d = Daemon::start(&text, &[]);
    d.wait_for("allows 0.0.0.0/0", TIMEOUT).unwrap();
}
