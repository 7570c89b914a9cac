//! The checked config: the only config types the rest of the daemon sees. Every value here has
//! passed its checks; defaults are filled in. A kind's own settings are its business (see
//! `kind`): here they are an opaque [`Settings`] that builds the operator.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::diag::Diagnostic;
use crate::cook::{BuildCtx, Operator, SrSelect};
use crate::osc::framing::Framing;
use crate::pattern::Pattern;

/// The accepted range of an integer key. The checker enforces it and the JSON Schema states it
/// (`#[schemars(range(min = X.min, max = X.max))]` on the raw key), so both read one constant.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub min: i64,
    pub max: i64,
}

impl Bounds {
    pub const fn new(min: i64, max: i64) -> Bounds {
        Bounds { min, max }
    }
}

/// The checked config of one daemon.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub file: PathBuf,
    /// Frames per second.
    pub rate: f64,
    /// Longest time slice a cook may see; older samples are cut.
    pub max_slice: Duration,
    /// Reload when the config or a file it names changes on disk.
    pub watch: bool,
    /// Cook the time-independent operators downstream of new input as soon as it arrives,
    /// between frames (`react`, docs/react.md).
    pub react: bool,
    /// Warn when the process's resident memory passes this many MB (`rss_warn_mb`); `None`:
    /// twice the RSS at start-up, at least 256 MB (see `daemon::memory`).
    pub rss_warn_mb: Option<u64>,
    /// Where the show state is kept across restarts (`state_dir`, resolved against the
    /// config's directory); `None`: `$STATE_DIRECTORY`, else nothing is kept.
    pub state_dir: Option<PathBuf>,
    pub control: Option<ControlConfig>,
    /// The OSCQuery server, when the config has `[oscquery]`.
    pub oscquery: Option<OscQueryConfig>,
    /// Site directories added to Python's path (a venv's site-packages).
    pub python_path: Vec<PathBuf>,
    pub destinations: BTreeMap<String, Destination>,
    /// `[destinations.NAME] type = "midi"`: the `midiout` kind's settings (its keys and checks;
    /// the export layer sends through them).
    pub midi_destinations: BTreeMap<String, Arc<dyn Settings>>,
    /// In file order.
    pub operators: Vec<OperatorConfig>,
    /// Indices into `operators`, each after every operator it depends on (its inputs and what it
    /// reads): the order the graph cooks in.
    pub order: Vec<usize>,
    /// Warnings found while checking (the config is usable).
    pub warnings: Vec<Diagnostic>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ControlConfig {
    pub addr: SocketAddr,
    pub allow: Vec<Cidr>,
    /// Required on the control port's mutating requests (`/chopd/auth/TOKEN/…`).
    pub token: Option<String>,
    /// Senders whose replies are not bounded by the size of their request.
    pub full_replies: Vec<Cidr>,
    /// The local administration socket, when the config names one.
    pub socket: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OscQueryConfig {
    /// HTTP and websocket (TCP); OSC writes (UDP) on the same port when it is free.
    pub addr: SocketAddr,
    /// Shown to clients (`HOST_INFO` `NAME`) and announced.
    pub name: String,
    /// Announce over mDNS/DNS-SD.
    pub announce: bool,
}

/// The OSCQuery server listens on loopback, port 9010, unless the config says otherwise.
pub const DEFAULT_OSCQUERY_PORT: u16 = 9010;

/// Length of a control token, in characters.
pub const TOKEN_LEN: Bounds = Bounds::new(16, 128);

/// The control port listens on loopback, port 9002, unless the config says otherwise.
pub const DEFAULT_CONTROL_PORT: u16 = 9002;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NumFormat {
    Float,
    Double,
    Int,
}

/// `protocol` of an OSC In or a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OscProtocol {
    /// Datagrams (the default)
    Udp,
    /// A stream, packets framed by `framing`
    Tcp,
}

/// `framing` of OSC over TCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OscFraming {
    /// OSC 1.1: SLIP (RFC 1055), the default
    Slip,
    /// OSC 1.0: a 4-byte big-endian size before each packet
    Size,
}

impl From<OscFraming> for Framing {
    fn from(f: OscFraming) -> Framing {
        match f {
            OscFraming::Slip => Framing::Slip,
            OscFraming::Size => Framing::Size,
        }
    }
}

/// How a destination's packets travel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Transport {
    Udp,
    /// To an IPv4 multicast group (the host), with this TTL, from this interface (its address;
    /// unspecified: the kernel's choice).
    Multicast {
        ttl: u32,
        interface: Ipv4Addr,
    },
    Tcp(Framing),
}

/// A message a destination sends on a period, whatever is exported (`/xremote` keeps an X32
/// sending), and right after each TCP connection is made.
#[derive(Clone, Debug, PartialEq)]
pub struct Keepalive {
    /// Sent as written: the destination's prefix is not added.
    pub address: String,
    pub every: Duration,
    /// Int32, float32 and string arguments.
    pub args: Vec<rosc::OscType>,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SendMode {
    /// Only values that changed since the last send.
    #[default]
    OnChange,
    /// Every channel every cook.
    EveryCook,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Destination {
    pub name: String,
    pub host: String,
    pub port: u16,
    /// Address prefix, `""` or `/something` without a trailing `/`.
    pub prefix: String,
    pub format: NumFormat,
    /// Largest bundle sent, bytes.
    pub max_packet: usize,
    pub timetag: bool,
    /// Periodic full resend for receivers that missed a packet.
    pub resend: Option<Duration>,
    pub transport: Transport,
    pub keepalive: Vec<Keepalive>,
}

/// Fits one Ethernet frame: 1500 − 20 (IPv4) − 8 (UDP).
pub const DEFAULT_MAX_PACKET: usize = 1472;

/// `max_packet`: from a minimal bundle to the largest UDP payload over IPv4.
pub const MAX_PACKET: Bounds = Bounds::new(64, 65_507);
/// `multicast_ttl` of a destination.
pub const MULTICAST_TTL: Bounds = Bounds::new(0, 255);
/// `every_s` of a keep-alive: 10 ms to an hour.
pub const KEEPALIVE_MIN_S: f64 = 0.01;
pub const KEEPALIVE_MAX_S: f64 = 3600.0;
/// `resend_ms` of a destination or an export.
pub const RESEND_MS: Bounds = Bounds::new(10, 3_600_000);
/// `max_slice_ms`, and its default.
pub const MAX_SLICE_MS: Bounds = Bounds::new(1, 10_000);
pub const DEFAULT_MAX_SLICE_MS: u64 = 200;
/// `rss_warn_mb`.
pub const RSS_WARN_MB: Bounds = Bounds::new(1, 1 << 20);
/// `rate`, frames per second, and its default.
pub const RATE: (f64, f64) = (1.0, 1000.0);
pub const DEFAULT_RATE: f64 = 60.0;

#[derive(Clone, Debug)]
pub struct OperatorConfig {
    pub name: String,
    /// The operator's `type`, as registered by its kind.
    pub kind: &'static str,
    pub inputs: Vec<String>,
    /// Other operators this one reads besides its inputs (an Info CHOP's `op`): they cook first.
    pub reads: Vec<String>,
    pub timeslice: bool,
    pub scope: Pattern,
    pub srselect: SrSelect,
    pub export: Option<ExportConfig>,
    /// What the kind checked out of its own keys; it builds the operator.
    pub settings: Arc<dyn Settings>,
}

impl PartialEq for OperatorConfig {
    fn eq(&self, other: &OperatorConfig) -> bool {
        self.same_but_export(other) && self.export == other.export
    }
}

impl OperatorConfig {
    /// Same operator apart from its export settings (reload keeps such an operator).
    pub fn same_but_export(&self, other: &OperatorConfig) -> bool {
        self.name == other.name
            && self.kind == other.kind
            && self.inputs == other.inputs
            && self.reads == other.reads
            && self.timeslice == other.timeslice
            && self.scope == other.scope
            && self.srselect == other.srselect
            && *self.settings == *other.settings
    }

    /// Name, kind and what the kind adds ([`Settings::identity`]): an operator whose identity
    /// is unchanged gets its runtime-set state back after a rebuild or a restart.
    pub fn identity(&self) -> Identity {
        Identity {
            kind: self.kind.to_string(),
            of: self.settings.identity(),
        }
    }

    /// The kind's settings as their own type (`None` for another kind).
    pub fn settings<T: 'static>(&self) -> Option<&T> {
        // Deref first: the `Arc` itself is `DynEq` too (it is `PartialEq`), and would answer.
        (*self.settings).as_any().downcast_ref()
    }
}

/// What an operator is, beyond its name (the key it is found by), for restoring its state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub kind: String,
    /// The kind's own part (a Script CHOP's callbacks file); empty for most kinds.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub of: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ExportConfig {
    pub method: ExportMethod,
    pub root: ExportRoot,
    pub send: SendMode,
    pub resend: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExportMethod {
    /// Channel Name is Path:Parameter.
    AutoName,
    /// DAT Table by Index.
    DatIndex(ExportTable),
    /// DAT Table by Name.
    DatName(ExportTable),
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExportRoot {
    /// A `[destinations.NAME]`.
    Destination(String),
    /// An operator of this daemon; `""` is the top (`op:/`).
    Op(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ExportTable {
    pub source: TableSource,
    /// The rows of a file table; a DAT's rows are read from the DAT while running.
    pub rows: Vec<ExportRow>,
}

/// Where an export table comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum TableSource {
    /// A CSV file (`table = "map.csv"`), followed by the config watcher.
    File(PathBuf),
    /// A table DAT of this daemon (`dat = "NAME"`), re-mapped whenever its content changes.
    Dat(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ExportRow {
    pub chan: ChanRef,
    pub path: String,
    pub parameter: String,
    pub enable: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ChanRef {
    Index(usize),
    Name(String),
}

/// An IP network (`192.168.1.0/24`, `::1/128`, or a single address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("\"{s}\" is not an IP address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("bad prefix length in \"{s}\" (0–{max})"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The checked settings of one operator's kind.
pub trait Settings: DynEq + Debug + Send + Sync {
    /// Builds the running operator (opens its sockets, loads its code).
    fn build(&self, op: &OperatorConfig, cx: &BuildCtx) -> Result<Box<dyn Operator>, String>;

    /// The UDP port this operator binds, if it binds one: two operators cannot share it, and
    /// a reload lets the old operator go before its replacement binds it.
    fn udp_port(&self) -> Option<u16> {
        None
    }

    /// Whether building it needs the embedded Python interpreter.
    fn uses_python(&self) -> bool {
        false
    }

    /// What, beside its name and kind, makes an operator the same one whose runtime-set
    /// state a rebuild or a restart may bring back (a Script CHOP's callbacks file). Default:
    /// nothing more.
    fn identity(&self) -> String {
        String::new()
    }

    /// Whether the operator is a table DAT, which export tables may name (`dat = "NAME"`).
    fn is_table_dat(&self) -> bool {
        false
    }

    /// Files the running operator reads from its settings that a reload should follow.
    fn files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

/// Equality across `dyn Settings` (same kind and same values), so that a reload can tell an
/// unchanged operator from a changed one.
pub trait DynEq {
    fn as_any(&self) -> &dyn Any;
    fn dyn_eq(&self, other: &dyn Any) -> bool;
}

impl<T: PartialEq + Any> DynEq for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn dyn_eq(&self, other: &dyn Any) -> bool {
        other.downcast_ref::<T>() == Some(self)
    }
}

impl PartialEq for dyn Settings {
    fn eq(&self, other: &dyn Settings) -> bool {
        self.dyn_eq(other.as_any())
    }
}
