//! JSON Schema of the config file, for editors (Taplo / Even Better TOML read the
//! `#:schema ./chopd.schema.json` line of the example configs). `chopd schema` prints it and
//! `config/chopd.schema.json` is a copy that a test keeps in step; another test checks that its
//! keys are exactly the keys the parser accepts.

use serde_json::{json, Map, Value};

fn s(desc: &str) -> Value {
    json!({ "type": "string", "description": desc })
}
fn int(desc: &str, min: i64, max: i64) -> Value {
    json!({ "type": "integer", "minimum": min, "maximum": max, "description": desc })
}
fn boolean(desc: &str) -> Value {
    json!({ "type": "boolean", "description": desc })
}
fn strings(desc: &str) -> Value {
    json!({ "type": "array", "items": { "type": "string" }, "description": desc })
}
fn one_of(values: &[&str], desc: &str) -> Value {
    json!({ "enum": values, "description": desc })
}

/// Keys every operator has.
fn common() -> Vec<(&'static str, Value)> {
    vec![
        ("name", json!({ "type": "string", "pattern": "^[A-Za-z0-9_]+$", "description": "Unique operator name: letters, digits, _" })),
        ("inputs", strings("Names of input operators, in order")),
        ("timeslice", boolean("Output every sample since the last cook (on) or one sample (off, default)")),
        ("scope", s("Pattern: channels of input 0 this operator works on; others pass through (default *)")),
        ("srselect", one_of(&["first", "max", "min", "err"], "How inputs of different sample rates are matched")),
        ("export", json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["root"],
            "description": "Export this operator's channels",
            "properties": {
                "method": one_of(&["autoname", "datindex", "datname"], "autoname = Channel Name is Path:Parameter; datindex/datname = export table"),
                "root": s("A [destinations.NAME], or op:NAME / op:/ for this daemon's operators"),
                "table": s("CSV export table (chan,path,parameter[,enable]) for datindex/datname"),
                "send": one_of(&["on_change", "every_cook"], "Send changed values only (default) or every channel every cook"),
                "resend_ms": int("Resend every value this often (ms)", 10, 3_600_000),
            }
        })),
    ]
}

fn kind(name: &str, desc: &str, own: Vec<(&str, Value)>, required: &[&str]) -> Value {
    let mut props = Map::new();
    props.insert("type".into(), json!({ "const": name, "description": desc }));
    for (k, v) in common().into_iter().chain(own) {
        props.insert(k.into(), v);
    }
    let mut req = vec!["name", "type"];
    req.extend_from_slice(required);
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": req,
        "properties": props,
    })
}

pub fn schema() -> Value {
    let oscin = kind(
        "oscin",
        "OSC In: UDP traffic → channels",
        vec![
            ("port", int("UDP port (0 = any free port)", 0, 65535)),
            (
                "local_address",
                s("Address to listen on (default: all, IPv4 and IPv6)"),
            ),
            ("multicast", s("IPv4 multicast group to join")),
            (
                "multicast_interface",
                s("Interface address to join the group on"),
            ),
            (
                "address_scope",
                s("Pattern on the OSC address: which messages to keep"),
            ),
            (
                "strip_segments",
                int("Leading address segments removed from channel names", 0, 64),
            ),
            (
                "queued",
                boolean("With timeslice: every message becomes a sample"),
            ),
            (
                "allow",
                strings("Source networks allowed to send (CIDR); others are dropped"),
            ),
            (
                "receive_buffer",
                int("SO_RCVBUF requested, bytes", 4096, 1 << 30),
            ),
            (
                "max_channels",
                int("Most channels this operator creates", 1, 1_000_000),
            ),
        ],
        &["port"],
    );
    let midiin = kind(
        "midiin",
        "MIDI In: a MIDI port → channels",
        vec![
            ("device", s("Pattern on the MIDI port name")),
            (
                "required",
                boolean("A missing device is an error at start (default: a warning)"),
            ),
            ("channel", s("MIDI channels, e.g. \"1-7 12\"")),
            (
                "norm",
                one_of(&["0to1", "-1to1", "off", "onoff"], "Value normalisation"),
            ),
            ("prefix", s("Channel name prefix (default ch)")),
            ("notename", s("Base name of notes (default n)")),
            ("controlname", s("Base name of controllers (default c)")),
            ("polyname", s("Base name of poly aftertouch (default a)")),
            (
                "pressurename",
                s("Base name of channel pressure (default pr)"),
            ),
            ("pitchname", s("Base name of the pitch wheel (default pw)")),
            ("programname", s("Base name of program change (default pc)")),
            (
                "highres",
                json!({ "type": "array", "items": { "type": "integer", "minimum": 0, "maximum": 31 }, "description": "Controllers read as 14-bit MSB/LSB pairs (n with n+32)" }),
            ),
            (
                "preserve_pulses",
                boolean("A note on and off within one frame shows for one frame"),
            ),
            (
                "queued",
                boolean("With timeslice: every message becomes a sample"),
            ),
            (
                "scan_ms",
                int("How often ports are scanned for hot-plug (ms)", 50, 60_000),
            ),
        ],
        &["device"],
    );
    let script = kind(
        "script",
        "Script CHOP: Python callbacks",
        vec![
            (
                "callbacks",
                s("Python callbacks file, relative to this config"),
            ),
            (
                "cook_budget_ms",
                int("A callback running longer is interrupted", 1, 60_000),
            ),
            (
                "modoutsidecook",
                boolean("Allow writing this operator's channels outside its cook"),
            ),
            (
                "pars",
                json!({ "type": "object", "description": "Initial custom parameter values by name" }),
            ),
        ],
        &["callbacks"],
    );
    let info = kind(
        "info",
        "Info CHOP: another operator's statistics",
        vec![("op", s("Operator to inspect, or \"/\" for the daemon"))],
        &["op"],
    );
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "chopd config",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "rate": { "type": "number", "minimum": 1, "maximum": 1000, "description": "Frames per second (default 60)" },
            "max_slice_ms": int("Longest time slice a cook sees (ms, default 200)", 1, 10_000),
            "watch": boolean("Reload when the config or a file it names changes (default true)"),
            "rss_warn_mb": int("Warn when chopd's resident memory passes this many MB (default: twice the RSS at start-up, at least 256)", 1, 1 << 20),
            "control": {
                "type": "object",
                "additionalProperties": false,
                "description": "OSC control port",
                "properties": {
                    "address": s("Address to listen on (default 127.0.0.1)"),
                    "port": int("UDP port", 0, 65535),
                    "allow": strings("Source networks allowed (CIDR, default 127.0.0.0/8)"),
                }
            },
            "python": {
                "type": "object",
                "additionalProperties": false,
                "properties": { "path": strings("Site directories added to Python's path (a venv's site-packages)") }
            },
            "destinations": {
                "type": "object",
                "description": "OSC destinations, by name",
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["host", "port"],
                    "properties": {
                        "host": s("Host name or address"),
                        "port": int("UDP port", 1, 65535),
                        "prefix": s("Address prefix, e.g. /show"),
                        "format": one_of(&["float", "double", "int"], "Numeric format sent"),
                        "max_packet": int("Largest bundle, bytes (default 1472)", 64, 65507),
                        "timetag": boolean("Time-tag bundles with the send time"),
                        "resend_ms": int("Resend every exported value this often (ms)", 10, 3_600_000),
                    }
                }
            },
            "operator": {
                "type": "array",
                "description": "The operators, written [[operator]]",
                "items": { "oneOf": [oscin, midiin, script, info] }
            }
        }
    })
}
