//! The raw serde mirror of the file's common parts: the top level, `[control]`, `[python]`,
//! destinations and the keys every operator has. Only `check` reads these types; everything
//! else uses the checked model. Every struct rejects unknown keys; references keep their spans.
//! The doc comments of the fields are the descriptions in the JSON Schema (`schema`), and the
//! ranges there come from the same constants the checker enforces.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::model::{
    NumFormat, OscFraming, OscProtocol, SendMode, MAX_PACKET, MAX_SLICE_MS, MULTICAST_TTL, RATE,
    RESEND_MS, RSS_WARN_MB,
};
use crate::cook::SrSelect;

/// Top-level keys. The `operator` array and the `destinations` table are read item by item (in
/// `check`) so that every broken item is reported, not only the first.
pub const TOP_KEYS: &[&str] = &[
    "rate",
    "max_slice_ms",
    "watch",
    "react",
    "rss_warn_mb",
    "state_dir",
    "control",
    "oscquery",
    "python",
    "destinations",
    "operator",
];

/// The top level as the JSON Schema describes it. The checker reads these keys one by one
/// (`TOP_KEYS`), so that one bad key does not hide the others; a test ties the two.
#[derive(schemars::JsonSchema)]
#[schemars(deny_unknown_fields, title = "chopd config")]
#[allow(dead_code)]
pub struct Top {
    /// Frames per second (default 60)
    #[schemars(range(min = RATE.0, max = RATE.1))]
    pub rate: Option<f64>,
    /// Longest time slice a cook sees (ms, default 200)
    #[schemars(range(min = MAX_SLICE_MS.min, max = MAX_SLICE_MS.max))]
    pub max_slice_ms: Option<i64>,
    /// Reload when the config or a file it names changes (default true)
    pub watch: Option<bool>,
    /// Cook what new input changes as soon as it arrives, between frames, instead of at the
    /// next frame; operators that depend on time still cook on the clock (default false)
    pub react: Option<bool>,
    /// Warn when chopd's resident memory passes this many MB (default: twice the RSS at
    /// start-up, at least 256)
    #[schemars(range(min = RSS_WARN_MB.min, max = RSS_WARN_MB.max))]
    pub rss_warn_mb: Option<i64>,
    /// Directory for the show state kept across restarts, relative to this config (default:
    /// $STATE_DIRECTORY; without either, nothing is kept)
    pub state_dir: Option<String>,
    /// OSC control port
    pub control: Option<Control>,
    /// OSCQuery server: discovery, live values and a web page over HTTP and websocket
    pub oscquery: Option<OscQuery>,
    pub python: Option<Python>,
    /// OSC destinations, by name
    pub destinations: Option<BTreeMap<String, Destination>>,
    /// The operators, written [[operator]]; the schema fills in one entry per kind.
    pub operator: Option<Vec<()>>,
}

#[derive(Deserialize, Debug, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// Address to listen on (default 127.0.0.1)
    #[schemars(with = "Option<String>")]
    pub address: Option<Spanned<String>>,
    /// UDP port
    pub port: Option<u16>,
    /// Source networks allowed (CIDR, default 127.0.0.0/8)
    #[schemars(with = "Option<Vec<String>>")]
    pub allow: Option<Vec<Spanned<String>>>,
    /// Shared secret required on set, reset, pulse, setuppars and reload: send
    /// /chopd/auth/TOKEN/… instead of /chopd/… (letters, digits, - _ . ~; 16 to 128 of them)
    #[schemars(with = "Option<String>")]
    pub token: Option<Spanned<String>>,
    /// Senders that get replies of any size (CIDR, default 127.0.0.0/8 and ::1); others get
    /// at most 4 times the bytes they sent unless they send the token
    #[schemars(with = "Option<Vec<String>>")]
    pub full_replies: Option<Vec<Spanned<String>>>,
    /// Path of the local administration socket (default: chopd.sock in the runtime directory)
    #[schemars(with = "Option<String>")]
    pub socket: Option<Spanned<String>>,
}

#[derive(Deserialize, Debug, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OscQuery {
    /// Address to listen on (default 127.0.0.1)
    #[schemars(with = "Option<String>")]
    pub address: Option<Spanned<String>>,
    /// TCP port of HTTP and websocket, and UDP port of OSC writes when free (0: any free
    /// port, logged; default 9010)
    pub port: Option<u16>,
    /// Name shown to clients and announced (default "chopd")
    #[schemars(with = "Option<String>")]
    pub name: Option<Spanned<String>>,
    /// Announce _oscjson._tcp and _osc._udp over mDNS/DNS-SD (default false)
    pub announce: Option<bool>,
}

#[derive(Deserialize, Debug, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Python {
    /// Site directories added to Python's path (a venv's site-packages)
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub path: Vec<Spanned<String>>,
}

#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// Host name or address
    #[schemars(with = "String")]
    pub host: Spanned<String>,
    /// UDP port
    #[schemars(with = "u16", range(min = 1))]
    pub port: Spanned<u16>,
    /// Address prefix, e.g. /show
    #[schemars(with = "Option<String>")]
    pub prefix: Option<Spanned<String>>,
    /// Numeric format sent
    pub format: Option<NumFormat>,
    /// Largest bundle, bytes (default 1472)
    #[schemars(with = "Option<i64>", range(min = MAX_PACKET.min, max = MAX_PACKET.max))]
    pub max_packet: Option<Spanned<i64>>,
    /// Time-tag bundles with the send time
    pub timetag: Option<bool>,
    /// Resend every exported value this often (ms)
    #[schemars(with = "Option<i64>", range(min = RESEND_MS.min, max = RESEND_MS.max))]
    pub resend_ms: Option<Spanned<i64>>,
    /// "udp" (default) or "tcp"
    pub protocol: Option<OscProtocol>,
    /// With protocol = "tcp": "slip" (OSC 1.1, default) or "size" (OSC 1.0)
    #[schemars(with = "Option<OscFraming>")]
    pub framing: Option<Spanned<OscFraming>>,
    /// With a multicast group as host: hops the packets may take (default 1: this network)
    #[schemars(with = "Option<i64>", range(min = MULTICAST_TTL.min, max = MULTICAST_TTL.max))]
    pub multicast_ttl: Option<Spanned<i64>>,
    /// With a multicast group as host: address of the interface to send from
    #[schemars(with = "Option<String>")]
    pub multicast_interface: Option<Spanned<String>>,
    /// Messages sent on a period and on each TCP connect, e.g. [{ address = "/xremote", every_s = 9 }]
    pub keepalive: Option<Vec<Keepalive>>,
}

/// One keep-alive or subscribe message of a destination.
#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Keepalive {
    /// OSC address, sent without the destination's prefix
    #[schemars(with = "String")]
    pub address: Spanned<String>,
    /// Period, seconds (0.01 to 3600)
    #[schemars(with = "f64", range(min = 0.01, max = 3600))]
    pub every_s: Spanned<f64>,
    /// Arguments: integers (int32), floats (float32) and strings
    #[schemars(with = "Option<Vec<KeepaliveArg>>")]
    pub args: Option<Spanned<Vec<KeepaliveArg>>>,
}

/// An argument of a keep-alive message.
#[derive(Deserialize, Debug, Clone, schemars::JsonSchema)]
#[serde(untagged)]
pub enum KeepaliveArg {
    Int(i64),
    Float(f64),
    Str(String),
}

/// Keys every operator has; read apart from the kind's own keys.
pub const COMMON_KEYS: &[&str] = &[
    "name",
    "type",
    "inputs",
    "timeslice",
    "scope",
    "srselect",
    "export",
];

#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Common {
    /// Unique operator name: letters, digits, _ ("show/gain" puts gain in the component show)
    #[schemars(with = "String", regex(pattern = "^[A-Za-z0-9_]+(/[A-Za-z0-9_]+)*$"))]
    pub name: Spanned<String>,
    /// Names of input operators, in order
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub inputs: Vec<Spanned<String>>,
    /// Output every sample since the last cook (on) or one sample (off, default)
    pub timeslice: Option<bool>,
    /// Pattern: channels of input 0 this operator works on; others pass through (default *)
    #[schemars(with = "Option<String>")]
    pub scope: Option<Spanned<String>>,
    /// How inputs of different sample rates are matched
    pub srselect: Option<SrSelect>,
    /// Export this operator's channels
    #[schemars(with = "Option<Export>")]
    pub export: Option<Spanned<Export>>,
}

#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Export {
    /// autoname = Channel Name is Path:Parameter; datindex/datname = export table
    #[schemars(with = "Option<ExportMethodName>")]
    pub method: Option<Spanned<String>>,
    /// A [destinations.NAME], or op:NAME / op:/ for this daemon's operators
    #[schemars(with = "String")]
    pub root: Spanned<String>,
    /// CSV export table (chan,path,parameter[,enable]) for datindex/datname
    #[schemars(with = "Option<String>")]
    pub table: Option<Spanned<String>>,
    /// A table operator holding the export table instead of a file, for datindex/datname
    #[schemars(with = "Option<String>")]
    pub dat: Option<Spanned<String>>,
    /// Send changed values only (default) or every channel every cook
    pub send: Option<SendMode>,
    /// Resend every value this often (ms)
    #[schemars(with = "Option<i64>", range(min = RESEND_MS.min, max = RESEND_MS.max))]
    pub resend_ms: Option<Spanned<i64>>,
}

/// The export methods, for the schema (the checker reads `method` as a string, to suggest the
/// closest one when it is misspelled).
#[derive(schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ExportMethodName {
    Autoname,
    Datindex,
    Datname,
}
