//! The raw serde mirror of the TOML file. Only `config::check` sees these types; everything else
//! uses the checked model. Every struct rejects unknown keys; references keep their spans.

use serde::Deserialize;
use toml::Spanned;

/// Top-level keys. The `operator` array and the `destinations` table are read item by item (in
/// `check`) so that every broken item is reported, not only the first.
pub const TOP_KEYS: &[&str] = &[
    "rate",
    "max_slice_ms",
    "watch",
    "rss_warn_mb",
    "control",
    "python",
    "destinations",
    "operator",
];

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Control {
    pub address: Option<Spanned<String>>,
    pub port: Option<u16>,
    pub allow: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Python {
    #[serde(default)]
    pub path: Vec<Spanned<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    pub host: Spanned<String>,
    pub port: Spanned<u16>,
    pub prefix: Option<Spanned<String>>,
    pub format: Option<crate::config::NumFormat>,
    pub max_packet: Option<Spanned<i64>>,
    pub timetag: Option<bool>,
    pub resend_ms: Option<Spanned<i64>>,
}

/// Keys every operator has (SPEC §4); read apart from the kind's own keys.
pub const COMMON_KEYS: &[&str] = &[
    "name",
    "type",
    "inputs",
    "timeslice",
    "scope",
    "srselect",
    "export",
];

pub const KINDS: &[&str] = &["oscin", "midiin", "script", "info"];

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Common {
    pub name: Spanned<String>,
    #[serde(default)]
    pub inputs: Vec<Spanned<String>>,
    pub timeslice: Option<bool>,
    pub scope: Option<Spanned<String>>,
    pub srselect: Option<crate::chop::SrSelect>,
    pub export: Option<Spanned<Export>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Export {
    pub method: Option<Spanned<String>>,
    pub root: Spanned<String>,
    pub table: Option<Spanned<String>>,
    pub send: Option<crate::config::SendMode>,
    pub resend_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct OscIn {
    pub port: Spanned<u16>,
    pub local_address: Option<Spanned<String>>,
    pub multicast: Option<Spanned<String>>,
    pub multicast_interface: Option<Spanned<String>>,
    pub address_scope: Option<Spanned<String>>,
    pub strip_segments: Option<Spanned<i64>>,
    pub queued: Option<bool>,
    pub allow: Option<Vec<Spanned<String>>>,
    pub receive_buffer: Option<Spanned<i64>>,
    pub max_channels: Option<Spanned<i64>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct MidiIn {
    pub device: Spanned<String>,
    pub required: Option<bool>,
    pub channel: Option<Spanned<String>>,
    pub norm: Option<crate::config::MidiNorm>,
    pub prefix: Option<Spanned<String>>,
    pub notename: Option<Spanned<String>>,
    pub controlname: Option<Spanned<String>>,
    pub polyname: Option<Spanned<String>>,
    pub pressurename: Option<Spanned<String>>,
    pub pitchname: Option<Spanned<String>>,
    pub programname: Option<Spanned<String>>,
    pub highres: Option<Vec<Spanned<i64>>>,
    pub preserve_pulses: Option<bool>,
    pub queued: Option<bool>,
    pub scan_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Script {
    pub callbacks: Spanned<String>,
    pub cook_budget_ms: Option<Spanned<i64>>,
    pub modoutsidecook: Option<bool>,
    /// Initial custom parameter values, by parameter name.
    pub pars: Option<Spanned<toml::Table>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Info {
    pub op: Spanned<String>,
}
