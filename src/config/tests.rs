//! Config snippets with their exact diagnostics, and the schema kept in step with the parser.

use std::time::Duration;

use serde::Deserialize;

use super::*;
use crate::chop::oscin::config::DEFAULT_RECEIVE_BUFFER;
use crate::chop::{
    base, constant, info, math, midiin, oscin, oscindat, oscout, script, table, text, KINDS,
};

fn check_str(path: &Path, src: &str) -> Result<Config, Vec<Diagnostic>> {
    super::check_str(path, src, KINDS)
}

fn errors(src: &str) -> Vec<String> {
    match check_str(Path::new("show.toml"), src) {
        Ok(c) => panic!(
            "expected errors, got a config with {} operators",
            c.operators.len()
        ),
        Err(d) => d.iter().map(ToString::to_string).collect(),
    }
}

fn ok(src: &str) -> Config {
    check_str(Path::new("show.toml"), src).unwrap_or_else(|d| panic!("{d:?}"))
}

#[test]
fn defaults() {
    let c = ok("[[operator]]\nname = \"a\"\ntype = \"oscin\"\nport = 9000\n");
    assert_eq!(c.rate, 60.0);
    assert_eq!(c.max_slice, Duration::from_millis(200));
    let o: &oscin::OscInConfig = c.operators[0].settings().unwrap();
    assert_eq!(o.bind.port(), 9000);
    assert!(o.address_scope.is_all());
    assert_eq!(o.receive_buffer, DEFAULT_RECEIVE_BUFFER);
    assert!(c.control.is_none());
    assert_eq!(c.rss_warn_mb, None);
    assert!(!c.react);
}

#[test]
fn react_is_a_boolean() {
    let op = "[[operator]]\nname = \"a\"\ntype = \"info\"\nop = \"/\"\n";
    assert!(ok(&format!("react = true\n{op}")).react);
    let e = errors(&format!("react = 1\n{op}"));
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("show.toml:1:9: error: "), "{e:?}");
}

#[test]
fn rss_warn_mb_is_a_positive_number_of_megabytes() {
    let op = "[[operator]]\nname = \"a\"\ntype = \"info\"\nop = \"/\"\n";
    assert_eq!(
        ok(&format!("rss_warn_mb = 512\n{op}")).rss_warn_mb,
        Some(512)
    );
    assert_eq!(
        errors(&format!("rss_warn_mb = 0\n{op}")),
        ["show.toml:1:15: error: rss_warn_mb = 0 is out of range (1 to 1048576)"]
    );
}

#[test]
fn misspelled_input_suggests_the_close_name() {
    let src = r#"
[[operator]]
name = "lfo1"
type = "info"
op = "/"

[[operator]]
name = "out"
type = "info"
op = "lfo1"
inputs = ["lfo2"]
"#;
    assert_eq!(
        errors(src),
        ["show.toml:11:11: error: input \"lfo2\" is not an operator; did you mean \"lfo1\"?"]
    );
}

#[test]
fn all_errors_at_once_sorted_by_position() {
    let src = r#"rate = 0
bogus = 1

[[operator]]
name = "a"
type = "oscin"
port = 9000
address_scope = "[9-1]"
"#;
    assert_eq!(
        errors(src),
        [
            "show.toml:1:8: error: rate 0 is out of range (1 to 1000 frames per second)",
            "show.toml:2:1: error: unknown key \"bogus\" at the top level",
            "show.toml:8:17: error: bad range `[9-1]`: range runs backwards",
        ]
    );
}

#[test]
fn cycle_is_printed() {
    let src = r#"
[[operator]]
name = "a"
type = "info"
op = "/"
inputs = ["c"]

[[operator]]
name = "b"
type = "info"
op = "/"
inputs = ["a"]

[[operator]]
name = "c"
type = "info"
op = "/"
inputs = ["b"]
"#;
    assert_eq!(
        errors(src),
        ["show.toml:3:8: error: operators form a cycle: a -> b -> c -> a"]
    );
}

#[test]
fn export_into_own_input_is_a_warning() {
    let c = ok(r#"
[destinations.loop]
host = "127.0.0.1"
port = 9000

[[operator]]
name = "a"
type = "oscin"
port = 9000
export = { root = "loop" }
"#);
    let w: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        ["show.toml:9:8: warning: destination \"loop\" sends to this operator's own port 9000: exports into it can loop"]
    );
}

#[test]
fn export_roots_and_tables() {
    let c = ok(r#"
[[operator]]
name = "a"
type = "info"
op = "/"
export = { root = "op:/" }

[[operator]]
name = "b"
type = "info"
op = "/"
export = { root = "op:a", send = "every_cook" }
"#);
    assert_eq!(
        c.operators[0].export.as_ref().unwrap().root,
        ExportRoot::Op(String::new())
    );
    let e = c.operators[1].export.as_ref().unwrap();
    assert_eq!(e.root, ExportRoot::Op("a".into()));
    assert_eq!(e.send, SendMode::EveryCook);
    assert_eq!(
        errors("[[operator]]\nname = \"a\"\ntype = \"info\"\nop = \"/\"\nexport = { root = \"op:nope\" }\n"),
        ["show.toml:5:19: error: export root \"op:nope\" names no operator"]
    );
}

#[test]
fn export_table_parsing() {
    let rows =
        parse_export_table("# comment\nparameter,chan,path\nlevel,f1,/dimmer/\n", false).unwrap();
    assert_eq!(
        rows,
        [ExportRow {
            chan: ChanRef::Name("f1".into()),
            path: "dimmer".into(),
            parameter: "level".into(),
            enable: true
        }]
    );
    assert_eq!(
        parse_export_table("chan,path\n", false).unwrap_err(),
        "the header must name chan, path and parameter (found \"chan,path\")"
    );
    assert_eq!(
        parse_export_table("chan,path,parameter\n0,a,b\n0,c,d\n", true).unwrap_err(),
        "line 3: channel Index(0) is mapped twice"
    );
}

#[test]
fn midi_channel_lists() {
    let c = parse_midi_channels("1-3 12").unwrap();
    assert_eq!(c.iter().filter(|x| **x).count(), 4);
    assert!(c[11]);
    assert!(parse_midi_channels("0").is_err());
    assert!(parse_midi_channels("9-2").is_err());
}

#[test]
fn cidr() {
    let n = Cidr::parse("192.168.1.0/24").unwrap();
    assert!(n.contains("192.168.1.77".parse().unwrap()));
    assert!(!n.contains("192.168.2.1".parse().unwrap()));
    assert!(Cidr::parse("0.0.0.0/0")
        .unwrap()
        .contains("8.8.8.8".parse().unwrap()));
    assert!(Cidr::parse("nope").is_err());
}

/// The keys serde accepts for a raw struct, read from its unknown-field error.
fn accepted<'de, T: Deserialize<'de> + std::fmt::Debug>() -> Vec<String> {
    let e = toml::from_str::<T>("zzz_unknown = 1\n").unwrap_err();
    let msg = e.message().to_string();
    let tail = msg
        .split("expected one of ")
        .nth(1)
        .unwrap_or_else(|| msg.split("expected ").nth(1).unwrap());
    tail.split('`')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

fn schema_keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

#[test]
fn schema_matches_the_parser() {
    let schema = schema::schema(KINDS);
    let mut top: Vec<String> = raw::TOP_KEYS.iter().map(|s| s.to_string()).collect();
    top.sort();
    assert_eq!(schema_keys(&schema), top);
    let kinds = schema["properties"]["operator"]["items"]["oneOf"]
        .as_array()
        .unwrap();
    // Each kind's own keys, by its type name; every kind in the schema must be listed here.
    let own: Vec<(&str, Vec<String>)> = vec![
        ("oscin", accepted::<oscin::config::Raw>()),
        ("oscindat", accepted::<oscindat::Raw>()),
        ("oscout", accepted::<oscout::Raw>()),
        ("midiin", accepted::<midiin::config::Raw>()),
        ("midiout", accepted::<crate::chop::midiout::config::Raw>()),
        ("midiindat", accepted::<crate::chop::midiindat::Raw>()),
        ("script", accepted::<script::config::Raw>()),
        ("info", accepted::<info::InfoRaw>()),
        ("base", accepted::<<base::Base as Kind>::Raw>()),
        ("table", accepted::<<table::TableDat as Kind>::Raw>()),
        ("text", accepted::<<text::TextDat as Kind>::Raw>()),
        ("math", accepted::<<math::Math as Kind>::Raw>()),
        ("constant", accepted::<<constant::Constant as Kind>::Raw>()),
    ];
    let mut checked = 0;
    for k in kinds {
        let name = k["properties"]["type"]["const"].as_str().unwrap();
        let Some((_, own)) = own.iter().find(|(n, _)| *n == name) else {
            // Native kinds share one raw shape (`pars`), checked through math and constant.
            assert!(
                k["properties"].get("pars").is_some(),
                "give kind \"{name}\" its keys here"
            );
            continue;
        };
        checked += 1;
        let mut expect: Vec<String> = raw::COMMON_KEYS
            .iter()
            .map(|s| s.to_string())
            .chain(own.iter().cloned())
            .collect();
        expect.sort();
        assert_eq!(schema_keys(k), expect, "{name}");
    }
    assert_eq!(checked, own.len());
    let mut dest = accepted::<raw::Destination>();
    dest.sort();
    let dests = &schema["properties"]["destinations"]["additionalProperties"]["oneOf"];
    let mut d: Vec<String> = dests[0]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "type")
        .cloned()
        .collect();
    d.sort();
    assert_eq!(d, dest);
    let mut midi: Vec<String> = dests[1]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "type")
        .cloned()
        .collect();
    midi.sort();
    let mut want = accepted::<crate::chop::midiout::config::Raw>();
    want.sort();
    assert_eq!(midi, want);
    let mut exp = accepted::<raw::Export>();
    exp.sort();
    let export = &kinds[0]["properties"]["export"];
    assert_eq!(schema_keys(export), exp);
}

#[test]
fn committed_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/chopd.schema.json");
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        committed,
        schema::schema(KINDS),
        "run: chopd schema > config/chopd.schema.json"
    );
}

/// Every numeric range the JSON Schema states is the range the checker enforces: at each bound
/// a value is accepted, one step past it the config is rejected with an error naming the key.
#[test]
fn schema_ranges_are_the_checkers() {
    let schema = schema::schema(KINDS);
    let script = "tests/fixtures/scripts/idle.py";
    let minimal = |kind: &str| match kind {
        "oscin" | "oscindat" => "port = 0".to_string(),
        "oscout" => "destination = \"d\"".to_string(),
        "midiin" | "midiout" | "midiindat" => "device = \"x\"".to_string(),
        "script" => format!(
            "callbacks = \"{}\"",
            Path::new(env!("CARGO_MANIFEST_DIR")).join(script).display()
        ),
        "info" => "op = \"/\"".to_string(),
        "base" => String::new(),
        "table" | "text" => String::new(),
        // The shaping kinds need no key: every parameter has TouchDesigner's default.
        "math" | "lag" | "limit" | "filter" | "logic" | "trigger" | "speed" | "slope" | "count"
        | "hold" | "delay" | "trail" => String::new(),
        // Native kinds need no key: every parameter has TouchDesigner's default.
        "constant" | "lfo" | "noise" | "timer" | "select" | "merge" | "rename" | "switch"
        | "pattern" => String::new(),
        other => panic!("give kind \"{other}\" its minimal keys here"),
    };
    let mut probed = 0;
    let mut probe = |props: &serde_json::Value, config: &dyn Fn(&str, &str) -> String| {
        for (key, p) in props.as_object().unwrap() {
            let (p, list) = match p["type"].as_str() {
                Some("array") => (&p["items"], true),
                _ => (p, false),
            };
            let (Some(min), Some(max)) = (p["minimum"].as_f64(), p["maximum"].as_f64()) else {
                continue;
            };
            let step = if p["type"] == "integer" { 1.0 } else { 0.5 };
            for (v, good) in [
                (min, true),
                (max, true),
                (min - step, false),
                (max + step, false),
            ] {
                let v = if p["type"] == "integer" {
                    format!("{}", v as i64)
                } else {
                    format!("{v:?}")
                };
                let v = if list { format!("[{v}]") } else { v };
                let src = config(key, &v);
                match check_str(Path::new("show.toml"), &src) {
                    Ok(_) => assert!(good, "{key} = {v} was accepted:\n{src}"),
                    Err(d) => {
                        assert!(!good, "{key} = {v} was refused: {d:?}\n{src}");
                        assert!(
                            d.iter().any(|d| d.message.contains(key.as_str())),
                            "{key} = {v}: {d:?}"
                        );
                    }
                }
            }
            probed += 1;
        }
    };
    let info = "[[operator]]\nname = \"i\"\ntype = \"info\"\nop = \"/\"\n";
    let top = schema["properties"].clone();
    probe(&top, &|k, v| format!("{k} = {v}\n{info}"));
    probe(&top["control"]["properties"], &|k, v| {
        format!("[control]\n{k} = {v}\n{info}")
    });
    probe(
        &top["destinations"]["additionalProperties"]["oneOf"][0]["properties"],
        &|k, v| {
            // Multicast settings need a group as host.
            let host = if k.starts_with("multicast_") {
                "\"239.1.2.3\""
            } else {
                "\"127.0.0.1\""
            };
            let base = [("host", host), ("port", "9")];
            let keys: String = base
                .iter()
                .filter(|(b, _)| *b != k)
                .map(|(b, x)| format!("{b} = {x}\n"))
                .collect();
            format!("[destinations.d]\n{keys}{k} = {v}\n{info}")
        },
    );
    for kind in top["operator"]["items"]["oneOf"].as_array().unwrap() {
        let name = kind["properties"]["type"]["const"]
            .as_str()
            .unwrap()
            .to_string();
        let base = minimal(&name);
        let config = |k: &str, v: &str| {
            let base: String = base
                .lines()
                .filter(|l| !l.starts_with(&format!("{k} ")))
                .map(|l| format!("{l}\n"))
                .collect();
            // Keys of OSC over TCP need it.
            let tcp = if k == "max_clients" {
                "protocol = \"tcp\"\n"
            } else {
                ""
            };
            format!("[[operator]]\nname = \"a\"\ntype = \"{name}\"\n{base}{tcp}{k} = {v}\n")
        };
        probe(&kind["properties"], &config);
        probe(&kind["properties"]["export"]["properties"], &|k, v| {
            format!("[destinations.d]\nhost = \"127.0.0.1\"\nport = 9\n{}export = {{ root = \"d\", {k} = {v} }}\n", config("timeslice", "false"))
        });
    }
    assert!(probed >= 15, "only {probed} ranges probed");
}

#[test]
fn shaping_parameters_are_touchdesigners_with_did_you_mean() {
    let src = r#"
[[operator]]
name = "lag1"
type = "lag"
pars = { lag1 = 0.5, lagg2 = 1, lagmethod = "ampp" }

[[operator]]
name = "math1"
type = "math"
inputs = ["lag1"]
pars = { gain = "loud", fromrange = [0, 127, 5], reset = 1 }

[[operator]]
name = "filter1"
type = "filter"
pars = { type = "oneeuro", width = -1, cutoff = 2 }
"#;
    assert_eq!(
        errors(src),
        [
            "show.toml:5:22: error: lag has no parameter \"lagg2\"; did you mean \"lag2\"?",
            "show.toml:5:45: error: menu parameter \"lagmethod\" has no entry \"ampp\" (menuNames: value, amp); did you mean \"amp\"?",
            "show.toml:11:17: error: parameter \"gain\" needs a number, got \"loud\"",
            "show.toml:11:37: error: parameter \"fromrange\" must be a number or a list of 2 numbers",
            "show.toml:11:50: error: math has no parameter \"reset\"",
        ]
    );
    // A group's list sets its members; a value below a clamped minimum is clamped, as
    // TouchDesigner does.
    let c = ok(r#"
[[operator]]
name = "math1"
type = "math"
pars = { fromrange = [0, 127], torange = 2 }

[[operator]]
name = "filter1"
type = "filter"
pars = { width = -1 }
"#);
    let m: &crate::chop::shaping::ShapeConfig<crate::chop::math::MathShape> =
        c.operators[0].settings().unwrap();
    let v = |n: &str| {
        m.pars
            .iter()
            .find(|p| p.0 == n)
            .map(|p| p.1.clone())
            .unwrap()
    };
    assert_eq!(v("fromrange2"), crate::cook::ParValue::Float(127.0));
    assert_eq!(v("torange1"), crate::cook::ParValue::Float(2.0));
    let f: &crate::chop::shaping::ShapeConfig<crate::chop::filter::FilterShape> =
        c.operators[1].settings().unwrap();
    assert_eq!(
        f.pars,
        [("width".to_string(), crate::cook::ParValue::Float(0.0))]
    );
}

#[test]
fn oscquery_is_off_without_its_section_and_checked_with_it() {
    let op = "[[operator]]\nname = \"a\"\ntype = \"info\"\nop = \"/\"\n";
    assert!(ok(op).oscquery.is_none());
    let q = ok(&format!("[oscquery]\n{op}")).oscquery.unwrap();
    assert_eq!(q.addr, "127.0.0.1:9010".parse().unwrap());
    assert_eq!((q.name.as_str(), q.announce), ("chopd", false));
    let q = ok(&format!(
        "[oscquery]\nport = 0\naddress = \"0.0.0.0\"\nname = \"stage left\"\nannounce = true\n{op}"
    ))
    .oscquery
    .unwrap();
    assert_eq!(q.addr, "0.0.0.0:0".parse().unwrap());
    assert_eq!((q.name.as_str(), q.announce), ("stage left", true));
    assert_eq!(
        errors(&format!("[oscquery]\nname = \"\"\n{op}")),
        ["show.toml:2:8: error: the OSCQuery name is 1 to 63 bytes without control characters"]
    );
    let e = errors(&format!("[oscquery]\nprot = 1\n{op}"));
    assert!(
        e[0].starts_with("show.toml:2:1: error:") && e[0].contains("prot"),
        "{e:?}"
    );
}
