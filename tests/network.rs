//! The TouchDesigner network around a script, end to end with the real binary: a component
//! (`base`) with custom parameter pages, shortcuts and an extension; operators inside it found
//! by TouchDesigner's path rules; a top-level script reading into it; control-port writes to
//! a component's parameter reaching the scripts that read it.

use rosc::OscType;

use crate::util::*;

fn net_fixture(name: &str) -> String {
    std::fs::read_to_string(repo().join("tests/fixtures/network").join(name)).unwrap()
}

/// The component `show` with one parameter of most styles, its OSC In `faders`, the script
/// `logic` inside it, and `level` at the top; everything exports to `show` on `dest`.
fn show_network(dest: u16) -> Config {
    let comp = r#"parent_shortcut = "Show"
op_shortcut = "Stage"
iop = { Fader = "faders" }
pars = { Master = 0.5, Pos = [1, 2, 3], Double = { expr = "me.par.Master * 2" } }
extensions = [{ object = "op('./ShowExt').module.ShowExt(me)", promote = true }]

[[operator.par]]
name = "Master"
style = "Float"
page = "Controls"
default = 1
min = 0
max = 2
clampMin = true
clampMax = true

[[operator.par]]
name = "Color"
style = "RGB"
default = [1, 0.25, 0]

[[operator.par]]
name = "Mode"
style = "Menu"
menuNames = ["soft", "hard"]
menuLabels = ["Soft", "Hard"]
default = "hard"

[[operator.par]]
name = "Steps"
style = "Int"
size = 2
default = [3, 4]

[[operator.par]]
name = "Title"
style = "Str"
default = "Act 1"

[[operator.par]]
name = "Pos"
style = "XYZ"

[[operator.par]]
name = "Go"
style = "Pulse"

[[operator.par]]
name = "Double"
style = "Float"

[[operator.par]]
name = "Target"
style = "CHOP"
default = "show/faders"
"#;
    Config::new()
        .control()
        .dest("show", dest)
        .op("show", "base", comp)
        .op("show/ShowExt", "text", "file = \"showext.py\"")
        .oscin("show/faders", "")
        .script(
            "show/logic",
            "show_logic.py",
            r#""faders""#,
            &format!("{TO_SHOW}\npars = {{ Follow = {{ bind = \"parent().par.Master\" }} }}"),
        )
        .script("level", "level.py", "", TO_SHOW)
        .info("level_info", "/project1/level", "")
}

fn files() -> Vec<(&'static str, String)> {
    ["show_logic.py", "level.py", "showext.py"]
        .into_iter()
        .map(|f| (f, net_fixture(f)))
        .collect()
}

/// Waits until the latest value at `addr` is `v` (values arrive in any order between frames).
fn is(rx: &OscRx, addr: &str, v: f32) {
    rx.wait_value(addr, |x| (x - v).abs() < 1e-6);
}

#[test]
fn a_script_in_a_component_sees_its_network_as_touchdesigner_has_it() {
    let rx = OscRx::new();
    let files = files();
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let d = Daemon::start(&show_network(rx.port()).text(), &files);
    // Custom parameters: the config's values over the declared defaults.
    rx.wait_value("/show/master", |v| v == 0.5);
    is(&rx, "/show/master_max", 2.0);
    is(&rx, "/show/colorg", 0.25);
    is(&rx, "/show/mode", 1.0);
    is(&rx, "/show/mode_hard", 1.0);
    is(&rx, "/show/steps2", 4.0);
    is(&rx, "/show/title", 1.0);
    is(&rx, "/show/posz", 3.0);
    is(&rx, "/show/go_is_pulse", 1.0);
    is(&rx, "/show/pages", 2.0);
    // Paths, patterns, children, parents, me.
    for check in [
        "sibling",
        "faders_path",
        "up",
        "missing",
        "pattern",
        "children",
        "parent2",
        "me",
        "scriptop_parent",
        "root",
        "pars_pattern",
        "builtin_pars",
        "op_ref",
        "parent_shortcut",
        "project_shortcut",
        "global_shortcut",
        "iop",
    ] {
        is(&rx, &format!("/show/{check}"), 1.0);
    }
    // The promoted extension: Cue(3) = 3 × Master; the same object each cook.
    is(&rx, "/show/cue", 1.5);
    assert!(rx.wait_value("/show/ext_calls", |v| v >= 1.0) >= 1.0);
    // The script's own parameter follows the default set right after appendFloat.
    is(&rx, "/show/scale", 2.0);
    // Parameters made by Component Editor JSON through TDJSON.
    is(&rx, "/show/speed", 0.5);
    is(&rx, "/show/double", 1.0);
    is(&rx, "/show/double_mode", 1.0);
    is(&rx, "/show/follow", 0.5);
    is(&rx, "/show/follow_master", 1.0);
    is(&rx, "/show/look", 1.0);
    // The top-level script reads into the component.
    is(&rx, "/show/master_seen", 5.0);
    is(&rx, "/show/via_td", 1.0);
    // Built-in parameters of other kinds are visible under TouchDesigner's names.
    is(&rx, "/show/faders_port", d.port("show/faders") as f32);
    is(&rx, "/show/faders_port_readonly", 1.0);
    is(&rx, "/show/info_op", 1.0);
    // The input wired inside the component is its sibling OSC In.
    send(d.port("show/faders"), "/x", vec![OscType::Float(0.25)]);
    is(&rx, "/show/input", 0.25);
    // A control-port write to the component's parameter re-cooks the scripts reading it,
    // clamped as the parameter says.
    let c = Control::new(d.control_port());
    c.ok("/chopd/op/show/par/Master", vec![OscType::Float(0.75)]);
    is(&rx, "/show/master", 0.75);
    is(&rx, "/show/master_seen", 7.5);
    is(&rx, "/show/cue", 2.25);
    // An expression follows what it reads; a binding shows its master.
    is(&rx, "/show/double", 1.5);
    is(&rx, "/show/follow", 0.75);
    let why = c.err("/chopd/op/show/par/Double", vec![OscType::Float(1.0)]);
    assert!(why.contains("driven by its expression"), "{why}");
    c.ok("/chopd/op/show/par/Master", vec![OscType::Float(9.0)]);
    is(&rx, "/show/master", 2.0);
    // Operators inside components take control requests by key.
    c.ok("/chopd/op/show/logic/par/Scale", vec![OscType::Float(4.0)]);
    is(&rx, "/show/scale", 4.0);
}

#[test]
fn an_operator_in_an_undeclared_component_is_a_config_error() {
    let dir = TempDir::new();
    let path = dir.write(
        "bad.toml",
        "[[operator]]\nname = \"show/faders\"\ntype = \"oscin\"\nport = 0\n\n\
         [[operator]]\nname = \"x\"\ntype = \"oscin\"\nport = 0\n\n\
         [[operator]]\nname = \"x/y\"\ntype = \"oscin\"\nport = 0\n\n\
         [[operator]]\nname = \"c\"\ntype = \"base\"\n[[operator.par]]\nname = \"gain\"\nstyle = \"Flaot\"\n",
    );
    let (code, text) = check(&path);
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("bad.toml:2:8: error: operator \"show/faders\" sits inside \"show\", which is not declared"),
        "{text}"
    );
    assert!(
        text.contains("bad.toml:12:8: error: operator \"x/y\" sits inside \"x\", which is a \"oscin\" operator, not a component"),
        "{text}"
    );
    assert!(
        text.contains("custom parameter name \"gain\" must be one capital letter"),
        "{text}"
    );
    assert!(
        text.contains("unknown style \"Flaot\"; did you mean \"Float\"?"),
        "{text}"
    );
}
