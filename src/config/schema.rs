//! JSON Schema of the config file, for editors (Taplo / Even Better TOML read the
//! `#:schema ./chopd.schema.json` line of the example configs). It is derived from the raw
//! config types (schemars), so keys, descriptions and ranges are written once, beside the
//! types the checker reads. `chopd schema` prints it; `config/chopd.schema.json` is a copy that
//! a test keeps current, and another test holds its ranges against what the checker accepts.

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use super::kind::Kinds;
use super::raw;

pub fn schema(kinds: &Kinds) -> Value {
    // Draft 7 is what the TOML editors read; optional keys are plain (absent, never null), and
    // everything is inline so that an editor shows each key's description where it is used.
    let mut settings = SchemaSettings::draft07();
    settings.inline_subschemas = true;
    let mut generator = settings.into_generator();
    let mut top = generator.root_schema_for::<raw::Top>().to_value();
    let common = generator.root_schema_for::<raw::Common>().to_value();
    let items: Vec<Value> = kinds
        .iter()
        .map(|k| {
            let own = k.schema(&mut generator).to_value();
            let mut props = Map::new();
            props.insert(
                "type".into(),
                json!({ "const": k.name(), "description": k.summary() }),
            );
            for part in [&common, &own] {
                if let Some(p) = part["properties"].as_object() {
                    props.extend(p.clone());
                }
            }
            let mut required = vec![json!("name"), json!("type")];
            required.extend(own["required"].as_array().cloned().unwrap_or_default());
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": required,
                "properties": props,
            })
        })
        .collect();
    top["properties"]["operator"] = json!({
        "type": "array",
        "description": "The operators, written [[operator]]",
        "items": { "oneOf": items },
    });
    // A destination is OSC (the default) or, with `type = "midi"`, a MIDI Out's keys.
    let osc = &mut top["properties"]["destinations"]["additionalProperties"];
    if let (Some(p), Some(midi)) = (
        osc["properties"].as_object_mut(),
        kinds.iter().find(|k| k.name() == "midiout"),
    ) {
        p.insert(
            "type".into(),
            json!({ "enum": ["osc"], "description": "OSC over UDP (the default)" }),
        );
        let own = midi.schema(&mut generator).to_value();
        let mut props = own["properties"].as_object().cloned().unwrap_or_default();
        props.insert(
            "type".into(),
            json!({ "const": "midi", "description": "A MIDI port: exported channels named ch1c7, ch1n60, … become MIDI messages" }),
        );
        let mut required = vec![json!("type")];
        required.extend(own["required"].as_array().cloned().unwrap_or_default());
        let midi = json!({
            "type": "object",
            "additionalProperties": false,
            "required": required,
            "properties": props,
        });
        let osc_schema = osc.take();
        *osc = json!({ "oneOf": [osc_schema, midi] });
    }
    if let Some(t) = top.as_object_mut() {
        // The Rust doc of the type is for contributors, not for the editor's tooltip.
        t.remove("description");
    }
    tidy(&mut top);
    top
}

/// Optional keys are absent, never null, in TOML: drops the `null` schemars allows for an
/// `Option`, and the numeric `format` hints (int64, uint16, …) that say nothing to an editor.
fn tidy(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.get("format").is_some_and(Value::is_string) {
                map.remove("format");
            }
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(values)) = map.get_mut("enum") {
                values.retain(|x| !x.is_null());
            }
            if let Some(Value::Array(alts)) = map.get_mut("anyOf") {
                alts.retain(|a| a.get("type").is_none_or(|t| t != "null"));
                if alts.len() == 1 {
                    let Value::Object(only) = alts.remove(0) else {
                        unreachable!("schemas are objects")
                    };
                    map.remove("anyOf");
                    for (k, x) in only {
                        map.entry(k).or_insert(x);
                    }
                }
            }
            map.values_mut().for_each(tidy);
        }
        Value::Array(items) => items.iter_mut().for_each(tidy),
        _ => {}
    }
}
