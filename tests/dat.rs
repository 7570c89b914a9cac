//! Table and text DATs end to end: the real binary runs TouchDesigner-shaped callbacks files
//! (tests/fixtures/scripts/dat_*.py) against tables and texts from files and from the config,
//! asserting what TouchDesigner gives; reading a DAT is a cook dependency, an edited file or a
//! script's write reaches its readers, a text DAT imports as a module, and an export table kept
//! in a table DAT re-maps when it changes.

use std::collections::HashMap;

use rosc::OscType;

use crate::util::*;

const CUES: &str = "name,value\na,1\nb,2\n";

/// Every `check=NAME got=REPR` line the scripts logged, once the `end` check is there.
fn checks(d: &Daemon, last: &str) -> HashMap<String, String> {
    d.wait_logged(|f| f.get("check").is_some_and(|c| c == last), 1, TIMEOUT)
        .unwrap_or_else(|| panic!("no check {last}; log:\n{}", d.log_text()));
    d.logged(|f| f.contains_key("check") && f.contains_key("got"))
        .into_iter()
        .map(|f| (f["check"].clone(), f["got"].clone()))
        .collect()
}

fn assert_checks(got: &HashMap<String, String>, want: &[(&str, &str)]) {
    let mut wrong = Vec::new();
    for (name, value) in want {
        match got.get(*name) {
            Some(v) if v == value => {}
            other => wrong.push(format!("{name}: want {value}, got {other:?}")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_table_and_text_dat_members_give_what_touchdesigner_gives() {
    let cfg = Config::new()
        .op("cues", "table", r#"file = "cues.csv""#)
        .op("grid1", "table", r#"rows = [["x", "y"], [1, "2"]]"#)
        .op("notes", "text", r#"file = "notes.txt""#)
        .script("api", "dat_api.py", "", "");
    let d = Daemon::start(
        &cfg.text(),
        &[
            ("cues.csv", CUES),
            ("notes.txt", "first line\nsecond line\n"),
            ("dat_api.py", &fixture("dat_api.py")),
        ],
    );
    let got = checks(&d, "end");
    assert_checks(
        &got,
        &[
            ("type", "('table', 'tableDAT', 'DAT')"),
            ("flags", "(True, True, False, False)"),
            ("path", "('cues', '/project1/cues')"),
            ("isinstance", "(True, True, True, False)"),
            ("size", "(3, 2)"),
            ("by_index", "'1'"),
            ("by_name", "'2'"),
            ("mixed", "'1'"),
            ("missing", "(None, None, None)"),
            ("cell_casts", "('1', 1.0, 1)"),
            ("cell_compare", "(True, True, True)"),
            ("cell_members", "(2, 1, 'cues', True)"),
            ("offset", "('1', 'b', None)"),
            ("cell_fn", "('2', '2', None, '1')"),
            ("cells", "['value', '1', '2']"),
            ("row", "(['a', '1'], ['b', '2'], ['b', '2'], None)"),
            ("col", "(['value', '1', '2'], ['name', 'a', 'b'])"),
            (
                "rows",
                "([['name', 'value'], ['a', '1'], ['b', '2']], [['a', '1'], ['b', '2']])",
            ),
            ("cols", "[['name', 'a', 'b'], ['value', '1', '2']]"),
            ("text_lines", r"['name\tvalue', 'a\t1', 'b\t2']"),
            ("storage", "(5, 5, 7)"),
        ],
    );
    assert_checks(
        &got,
        &[
            ("digits", "(1, 'grid')"),
            ("set_item", "'5'"),
            ("append_row", "(2, [['x', 'y'], ['1', '5'], ['3', '4']])"),
            (
                "append_row_after",
                "(1, [['x', 'y'], ['mid', ''], ['1', '5'], ['3', '4']])",
            ),
            (
                "insert_row",
                "(0, [['top', 't'], ['x', 'y'], ['mid', ''], ['1', '5'], ['3', '4']])",
            ),
            ("delete_rows", "[['x', 'y'], ['1', '5'], ['3', '4']]"),
            ("replace_row", "(2, ['3', '40'])"),
            ("append_col", "(2, 3, ['z', 'a', 'b'])"),
            ("insert_col", "(0, ['w', '', ''], 4)"),
            ("delete_col", "3"),
            ("replace_col", "(2, ['z', 'A', ''])"),
            (
                "many",
                "(4, 4, None, None, [['x', 'y', 'z'], ['1', '5', 'A'], ['3', '40', '']])",
            ),
            ("set_size", "([['x', 'y'], ['1', '5']], False)"),
            ("set_text", "[['p', 'q'], ['r', 's']]"),
            ("cell_val_set", "'P'"),
            ("clear_keep_first_row", "[['P', 'q']]"),
            ("clear", "(0, 0)"),
        ],
    );
    assert_checks(
        &got,
        &[
            ("write_outside", "'tdError'"),
            ("delete_missing", "'tdError'"),
            ("gui_member", "'tdError'"),
            ("gui_attribute", "'tdError'"),
            ("run", "'tdError'"),
            ("text_type", "('text', 'textDAT', True, False, True)"),
            ("text", r"'first line\nsecond line\n'"),
            ("text_set", "'changed'"),
            ("text_clear", "''"),
        ],
    );
}

#[test]
fn a_text_dat_is_a_module_until_its_text_changes() {
    let rx = OscRx::new();
    let cfg = Config::new()
        .dest("show", rx.port())
        .oscin("in", "")
        .op("helpers", "text", r#"file = "helpers.py""#)
        .op("scratch", "text", r#"text = "value = 1\n""#)
        .script("m", "dat_module.py", r#""in""#, TO_SHOW);
    let helpers = |factor: u32| {
        format!("factor = {factor}\n\ndef scale(x):\n    return x * factor\n\ndef whoami():\n    return me.name\n")
    };
    let d = Daemon::start(
        &cfg.text(),
        &[
            ("helpers.py", &helpers(2)),
            ("dat_module.py", &fixture("dat_module.py")),
        ],
    );
    let got = checks(&d, "missing");
    assert_checks(
        &got,
        &[
            ("same_module", "(True, True)"),
            ("module_me", "'helpers'"),
            ("scratch", "1"),
            ("scratch_rerun", "(2, False, 1)"),
            ("missing", "'ModuleNotFoundError'"),
        ],
    );
    send(d.port("in"), "/x", vec![OscType::Float(1.5)]);
    rx.wait_value("/show/scaled", |v| v == 3.0);
    // The file changes: the DAT reads it, the script that used the module cooks again and the
    // module is run anew from the new text.
    let tmp = d.dir.write("helpers.py.new", &helpers(10));
    std::fs::rename(tmp, d.dir.path("helpers.py")).unwrap();
    rx.wait_value("/show/scaled", |v| v == 15.0);
}

#[test]
fn a_reload_that_changes_a_text_dat_runs_its_module_anew() {
    let rx = OscRx::new();
    let cfg = |factor: u32| {
        Config::new()
            .dest("show", rx.port())
            .oscin("in", "")
            .op(
                "helpers",
                "text",
                &format!("text = \"factor = {factor}\\ndef scale(x):\\n    return x * factor\\n\""),
            )
            .op("scratch", "text", r#"text = "value = 1\n""#)
            .script("m", "dat_module.py", r#""in""#, TO_SHOW)
            .text()
    };
    let d = Daemon::start(&cfg(2), &[("dat_module.py", &fixture("dat_module.py"))]);
    send(d.port("in"), "/x", vec![OscType::Float(1.5)]);
    rx.wait_value("/show/scaled", |v| v == 3.0);
    d.rewrite_config(&cfg(10));
    assert!(d.reload_applied(1).contains("helpers"), "{}", d.log_text());
    rx.wait_value("/show/scaled", |v| v == 15.0);
}

#[test]
fn a_reader_cooks_when_the_file_or_a_script_changes_the_table_and_only_then() {
    let rx = OscRx::new();
    let cfg = Config::new()
        .dest("show", rx.port())
        .oscin("in", "")
        .op("cues", "table", r#"file = "cues.csv""#)
        .op(
            "exports",
            "table",
            r#"rows = [["chan", "path", "parameter"]]"#,
        )
        .script("writer", "dat_writer.py", r#""in""#, TO_SHOW)
        .script("reader", "dat_reader.py", "", TO_SHOW);
    let d = Daemon::start(
        &cfg.text(),
        &[
            ("cues.csv", CUES),
            ("dat_writer.py", &fixture("dat_writer.py")),
            ("dat_reader.py", &fixture("dat_reader.py")),
        ],
    );
    rx.wait_value("/show/value", |v| v == 1.0);
    let first = rx.value_at("/show/cooks");
    // A new file version reaches the reader: one more cook, not one a frame.
    let tmp = d.dir.write("cues.csv.new", "name,value\na,7\n");
    std::fs::rename(tmp, d.dir.path("cues.csv")).unwrap();
    rx.wait_value("/show/value", |v| v == 7.0);
    assert_eq!(rx.value_at("/show/cooks"), first + 1.0);
    // A script's write reaches it too.
    let port = d.port("in");
    send(port, "/x", vec![OscType::Float(0.5)]);
    rx.wait_value("/show/value", |v| v == 0.5);
    send(port, "/x", vec![OscType::Float(0.25)]);
    rx.wait_value("/show/value", |v| v == 0.25);
    assert_eq!(
        rx.wait_value("/show/cooks", |v| v >= first + 3.0),
        first + 3.0
    );
}

#[test]
fn a_file_that_no_longer_reads_keeps_the_old_content_until_it_is_fixed() {
    let rx = OscRx::new();
    let cfg = Config::new()
        .dest("show", rx.port())
        .op("cues", "table", r#"file = "cues.csv""#)
        .script("reader", "dat_reader.py", "", TO_SHOW);
    let d = Daemon::start(
        &cfg.text(),
        &[
            ("cues.csv", CUES),
            ("dat_reader.py", &fixture("dat_reader.py")),
        ],
    );
    rx.wait_value("/show/value", |v| v == 1.0);
    std::fs::write(d.dir.path("cues.csv.new"), b"name,value\na,5\nb,\xff\n").unwrap();
    std::fs::rename(d.dir.path("cues.csv.new"), d.dir.path("cues.csv")).unwrap();
    let f = d
        .wait_logged(|f| f.contains_key("error"), 1, TIMEOUT)
        .unwrap_or_else(|| panic!("no error; log:\n{}", d.log_text()));
    assert!(f["error"].ends_with("cues.csv:3: not UTF-8 text"), "{f:?}");
    let tmp = d.dir.write("cues.csv.new", "name,value\na,9\n");
    std::fs::rename(tmp, d.dir.path("cues.csv")).unwrap();
    rx.wait_value("/show/value", |v| v == 9.0);
    // The bad version never reached the reader: it saw 1, then 9.
    let cooks = rx.value_at("/show/cooks");
    assert_eq!(cooks, 2.0);
}

#[test]
fn an_export_table_kept_in_a_table_dat_re_maps_when_a_script_edits_it() {
    let rx = OscRx::new();
    let cfg = Config::new()
        .dest("show", rx.port())
        .oscin(
            "in",
            r#"export = { method = "datname", root = "show", dat = "exports" }"#,
        )
        .oscin("ctl", "")
        .op("cues", "table", r#"rows = [["name", "value"], ["a", "1"]]"#)
        .op(
            "exports",
            "table",
            r#"rows = [["chan", "path", "parameter"], ["x", "mixer", "fader"]]"#,
        )
        .script("writer", "dat_writer.py", r#""ctl""#, "");
    let d = Daemon::start(&cfg.text(), &[("dat_writer.py", &fixture("dat_writer.py"))]);
    send(d.port("in"), "/x", vec![OscType::Float(0.5)]);
    rx.expect("/show/mixer/fader", 0.5);
    send(d.port("ctl"), "/path", vec![OscType::Float(1.0)]);
    // The table now sends x to /show/desk/fader: the mapping is rebuilt and the new address
    // gets the current value.
    rx.expect("/show/desk/fader", 0.5);
}

#[test]
fn dat_config_problems_are_reported_where_they_are_written() {
    let dir = TempDir::new();
    std::fs::write(dir.path("bad.csv"), b"name,value\na,\xff\n").unwrap();
    let config = dir.write(
        "chopd.toml",
        "rate = 100\n\n[[operator]]\nname = \"cues\"\ntype = \"table\"\nfile = \"bad.csv\"\n\n\
         [[operator]]\nname = \"both\"\ntype = \"text\"\nfile = \"x.txt\"\ntext = \"y\"\n\n\
         [[operator]]\nname = \"in\"\ntype = \"oscin\"\nport = 0\n\
         export = { method = \"datname\", root = \"op:/\", dat = \"in\" }\n",
    );
    let (code, out) = check(&config);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("chopd.toml:6:8: error: table file "), "{out}");
    assert!(out.contains("bad.csv:2: not UTF-8 text"), "{out}");
    assert!(
        out.contains("chopd.toml:12:8: error: a text DAT takes its text from \"file\" or from \"text\", not both"),
        "{out}"
    );
    assert!(
        out.contains(
            "chopd.toml:18:53: error: export \"dat\" names \"in\", which is not a table operator"
        ),
        "{out}"
    );
}
