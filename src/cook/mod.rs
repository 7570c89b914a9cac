//! The operator contract, below every operator kind: what a cook sees (the frame, the node
//! states of the graph, daemon statistics), what it reports (cook statistics, errors), the trait
//! every kind implements, the channel data model in [`data`], DAT content in [`dat`], and in
//! [`slice`] the time slices of queued input that OSC In and MIDI In share.
//!
//! Nothing here knows a particular kind, the config file or a socket: kinds live in `chop`, the
//! graph that drives them in `graph`.

pub mod dat;
pub mod data;
pub mod par;
pub mod slice;

pub use data::{match_rates, sanitize_name, ChopData, RateMismatch, SrSelect};
pub use slice::SliceQueue;

use std::collections::HashMap;
use std::time::Instant;

/// One tick of the clock, as operators see it (TouchDesigner's `absTime`). A reaction cook
/// (`react = true`: input arrived between frames) sees the frame it follows with a step of 0:
/// no time has passed.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    /// Absolute frame number since the clock started (first frame is 1, as in TouchDesigner).
    pub frame: i64,
    /// Frames since the previous tick: 1 normally, k > 1 when k − 1 frames were dropped, 0 in a
    /// reaction cook between frames.
    pub step: i64,
    /// Clock rate, frames per second.
    pub rate: f64,
    /// When this frame was due on the monotonic clock.
    pub due: Instant,
    /// When this frame's work started.
    pub started: Instant,
}

impl Frame {
    /// `absTime.seconds`.
    pub fn seconds(&self) -> f64 {
        self.frame as f64 / self.rate
    }

    /// A reaction cook between frames, not a tick of the clock.
    pub fn is_reaction(&self) -> bool {
        self.step == 0
    }

    /// `absTime.stepSeconds`.
    pub fn step_seconds(&self) -> f64 {
        self.step as f64 / self.rate
    }

    /// Milliseconds from this frame's start to `t` (Info CHOP `cook_start_time`/`cook_end_time`).
    pub fn ms_since_start(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.started).as_secs_f64() * 1e3
    }
}

/// Cook statistics of one operator (what an Info CHOP shows).
#[derive(Clone, Debug, Default)]
pub struct CookStats {
    /// Every cook, reaction cooks included.
    pub total_cooks: u64,
    /// Cooks between frames (`react = true`), also counted in `total_cooks`.
    pub react_cooks: u64,
    /// Duration of the last cook, ms.
    pub cook_time_ms: f64,
    /// Frame of the last cook (the same as `cook_abs_frame`: chopd has no timeline).
    pub cook_frame: i64,
    pub cook_abs_frame: i64,
    /// Offsets of the last cook within its frame, ms.
    pub cook_start_ms: f64,
    pub cook_end_ms: f64,
    pub cooked_this_frame: bool,
    pub warnings: u64,
    pub errors: u64,
    /// How many times the export mapping of this operator changed.
    pub export_sernum: u64,
    pub last_error: Option<String>,
}

/// What the graph keeps for every node, readable by every operator during a cook.
#[derive(Debug)]
pub struct NodeState {
    pub name: String,
    /// Operator kind as written in the config (`oscin`, `script`, …).
    pub kind: &'static str,
    /// Indices of input nodes, in order.
    pub inputs: Vec<usize>,
    pub output: ChopData,
    pub stats: CookStats,
    /// Which change of `output` (or of the DAT's content) this is: a number no other change of
    /// any node in this process had, 0 before the first. A reader compares it with the one it
    /// saw to know whether anything changed since: two changes can share a stamp, and a node
    /// built anew (a reload) never repeats the old one's. Set with [`NodeState::mark_changed`].
    pub version: u64,
    /// The newest `version` among its inputs when it last cooked: an input with a newer one
    /// changed since, and the node cooks again (at a frame, or in a reaction if it may react).
    pub inputs_seen: u64,
    /// Kind-specific statistics (OSC counters, MIDI `connected`, …), refreshed every frame.
    pub extras: Vec<(&'static str, f64)>,
    /// Set while the operator's time-slice option is on.
    pub timeslice: bool,
    /// A DAT's rows or text (table and text operators); scripts read and edit it, and a write
    /// moves `version` like a change of channels.
    pub dat: Option<Box<dat::DatContent>>,
}

/// The newest `version` among the inputs of node `i` (0 when it has none).
pub fn newest_input(nodes: &[NodeState], i: usize) -> u64 {
    nodes[i]
        .inputs
        .iter()
        .map(|&j| nodes[j].version)
        .max()
        .unwrap_or(0)
}

impl NodeState {
    /// The output (or the DAT) changed: the nodes it feeds cook again.
    pub fn mark_changed(&mut self) {
        static VERSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        self.version = VERSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn new(name: &str, kind: &'static str, rate: f64) -> NodeState {
        NodeState {
            name: name.to_string(),
            kind,
            inputs: Vec::new(),
            output: ChopData::new(rate),
            stats: CookStats::default(),
            version: 0,
            inputs_seen: 0,
            extras: Vec::new(),
            timeslice: false,
            dat: None,
        }
    }
}

/// Daemon-wide statistics (Info CHOP with `op = "/"`).
#[derive(Clone, Debug, Default)]
pub struct DaemonStats {
    pub frames: u64,
    pub dropped_frames: u64,
    pub lateness_p50_ms: f64,
    pub lateness_p99_ms: f64,
    pub lateness_max_ms: f64,
    /// Work time of the last frame (cook + export), ms.
    pub frame_time_ms: f64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub messages_out: u64,
    /// TCP destinations not connected now.
    pub dests_down: u64,
    /// Outages of TCP destinations since start (connections lost or never made).
    pub dest_outages: u64,
    /// Messages dropped because a TCP destination was down or not reading.
    pub dest_drops: u64,
    /// Resident memory of the process, MB (sampled once a second; 0 until the first sample).
    pub rss_mb: f64,
    /// Reaction passes run between frames (`react = true`).
    pub react_passes: u64,
    /// Times input arrived between frames but waited for the frame: the reaction work of the
    /// frame interval was used up (the flood bound).
    pub react_deferred: u64,
}

/// Everything an operator may look at while it cooks. Its own output has been taken out of
/// `nodes[me]` and is passed separately, so inputs and output borrow independently.
pub struct CookCtx<'a> {
    pub frame: &'a Frame,
    pub me: usize,
    pub nodes: &'a mut [NodeState],
    pub names: &'a HashMap<String, usize>,
    pub daemon: &'a DaemonStats,
}

impl<'a> CookCtx<'a> {
    /// The node state of this operator (its output is the separate `out` argument of `cook`).
    pub fn state(&mut self) -> &mut NodeState {
        &mut self.nodes[self.me]
    }

    /// Input `k`'s output.
    pub fn input(&self, k: usize) -> Option<&ChopData> {
        self.nodes[self.me]
            .inputs
            .get(k)
            .map(|&i| &self.nodes[i].output)
    }

    pub fn inputs(&self) -> Vec<&ChopData> {
        self.nodes[self.me]
            .inputs
            .iter()
            .map(|&i| &self.nodes[i].output)
            .collect()
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.names.get(name).copied()
    }
}

/// A problem an operator reports from a cook; its last good output is kept.
#[derive(Debug, thiserror::Error)]
pub enum CookError {
    #[error(transparent)]
    Rate(#[from] RateMismatch),
    #[error("{0}")]
    Other(String),
    /// A failure the operator has already logged in full (a Python traceback): the graph counts
    /// it and keeps the last good output, without a second log line.
    #[error("{0}")]
    Logged(String),
}

/// A MIDI message a script sent through a MIDI Out (`python::api::midi`), made into bytes by
/// the operator, which knows its normalisation.
#[derive(Clone, Debug, PartialEq)]
pub enum ScriptMidi {
    /// Sent as they are.
    Bytes(Vec<u8>),
    /// A channel voice message: `status` with its channel, the index (note, controller) for the
    /// kinds that have one, and the value in the operator's `norm` (pitch bend: −1..1; `None`:
    /// note-on at full velocity, note-off at 0).
    Level {
        status: u8,
        index: Option<u8>,
        value: Option<f64>,
    },
}

/// The contract of every operator kind. All methods run on the cook thread.
pub trait Operator {
    /// Called once per frame before cooking, in topological order: fold queued input traffic,
    /// decide whether this operator must cook this frame for reasons of its own (new input data,
    /// a changed parameter, `CookLevel.ALWAYS`, something it read last time changed).
    /// Changed inputs and the first frame make it cook anyway.
    fn wants_cook(&mut self, frame: &Frame, nodes: &[NodeState]) -> bool;

    /// Computes `out` (the previous output, to update in place or rebuild). An error keeps the
    /// previous output (the graph restores it) and is counted.
    fn cook(&mut self, ctx: &mut CookCtx, out: &mut ChopData) -> Result<(), CookError>;

    /// Whether this operator's output depends on time (an oscillator, a timer, a filter with
    /// state over time, a time-sliced operator, a script that read the time): such an operator
    /// cooks on the clock only. One that says `false` may also cook between frames, when input
    /// arrives (`react = true`), with a [`Frame`] of step 0. Asked before every reaction pass.
    /// Default: `true`, an operator reacts only when it says it can.
    fn time_dependent(&self) -> bool {
        true
    }

    /// Whether the moment its frames start matters: its output follows time, and leaves late
    /// when a frame starts late (an oscillator, a timer, a filter). With `react = true` the
    /// clock spins before a frame only while some operator says so. Default: whether it depends
    /// on time; one that cooks every frame only to report (an Info CHOP) says `false`.
    fn keeps_time(&self) -> bool {
        self.time_dependent()
    }

    /// Kind-specific statistics for the Info CHOP, as (name, value).
    fn extras(&self, _out: &mut Vec<(&'static str, f64)>) {}

    /// Network packets this operator has received in all (the daemon's `packets_in`).
    fn packets_in(&self) -> u64 {
        0
    }

    /// Sets a parameter by name (control port, export to `op:NAME`). The default operator has
    /// none.
    fn set_par(&mut self, name: &str, _value: ParValue) -> Result<(), String> {
        Err(format!("no parameter \"{name}\""))
    }

    /// Pulses a parameter (control port).
    fn pulse_par(&mut self, name: &str) -> Result<(), String> {
        Err(format!("no pulse parameter \"{name}\""))
    }

    /// Runs the operator's set-up of its parameters (Script CHOP: `onSetupParameters`), as the
    /// control port's `setuppars` asks. Default: the `setuppars` pulse, which kinds without one
    /// refuse.
    fn setup_pars(&mut self) -> Result<(), String> {
        self.pulse_par("setuppars")
    }

    /// Every parameter this operator has, with its definition (style, range, menu, label) and
    /// current value: built-in ones first, then custom ones. What the status, Python's `.par`
    /// of another operator and discovery clients show. Default: none.
    fn par_defs(&self) -> Vec<par::ParDef> {
        Vec::new()
    }

    /// Current parameter values by name, for the control port's status.
    fn pars(&self) -> Vec<(String, ParValue)> {
        self.par_defs()
            .into_iter()
            .map(|d| (d.name, d.val))
            .collect()
    }

    /// Parameter values set while running (control port, a script, an export), which a rebuild
    /// of the same operator and a restart bring back. Default: none.
    fn runtime_pars(&self) -> KeptPars {
        Vec::new()
    }

    /// Brings back values [`Operator::runtime_pars`] gave, on a freshly built operator of the
    /// same identity. One that no longer applies (unknown, refused) is dropped quietly: the
    /// config or the script changed since. Default: nothing.
    fn restore_pars(&mut self, _pars: &[(String, KeptPar)]) {}

    /// The content a DAT operator starts with, put into its node when the node is made (a kept
    /// operator keeps its node and content). Default: none, the operator is no DAT.
    fn initial_dat(&self) -> Option<dat::DatContent> {
        None
    }

    /// The network address this operator listens on, if any (for the start line).
    fn bound(&self) -> Option<std::net::SocketAddr> {
        None
    }

    /// Resets the operator (`reset_channels`-style: drop channels, clear state).
    fn reset(&mut self) {}

    /// Sends one MIDI message a script made (`op('midiout1').sendControl(…)`). Only MIDI Out
    /// has this.
    fn send_midi(&mut self, _msg: &ScriptMidi) -> Result<(), String> {
        Err("this operator is no MIDI Out".into())
    }

    /// Called on the cook thread once per frame after exports, with the frame's wall time
    /// left; operators with background work to hand over (file watching, reconnection) do it
    /// here. Default: nothing.
    fn housekeeping(&mut self) {}

    /// OSC this operator has for a destination (an OSC Out DAT's `sendOSC`), handed to `send`
    /// with the destination's name; the graph sends it with this frame's exports. Called once
    /// per frame after the cooks. Default: none.
    fn osc_out(&mut self, _send: &mut dyn FnMut(&str, OscOutgoing)) {}
}

/// What a script sends to a destination.
#[derive(Clone, Debug, PartialEq)]
pub enum OscOutgoing {
    /// One message, packed with the frame's other messages to the destination.
    Message(rosc::OscMessage),
    /// A packet as it is (a bundle made by the script, or `sendBytes`'s bytes), sent on its own.
    Packet(Vec<u8>),
}

/// A parameter's value: what the config sets, the control port and exports write, the status
/// shows (as a plain JSON number or string) and Python reads.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum ParValue {
    Float(f64),
    Str(String),
}

/// A parameter value set while running, as a rebuild and a restart bring it back.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeptPar {
    pub value: ParValue,
    /// The config's value for the parameter when this one was set: once the config says
    /// something else, the config's edit is the newer word and wins.
    #[serde(default)]
    pub config: Option<ParValue>,
}

/// Runtime-set parameters of one operator, by name.
pub type KeptPars = Vec<(String, KeptPar)>;

/// What building an operator may need beyond its own config.
#[derive(Clone, Debug)]
pub struct BuildCtx {
    /// Clock rate, frames per second.
    pub rate: f64,
    /// Longest time slice a cook may see (`max_slice_ms`).
    pub max_slice: std::time::Duration,
    /// The UDP port exports leave from, shared by every operator that must recognise its own
    /// traffic (feedback guard); kept across reloads.
    pub own_port: OwnPort,
    /// Rung by receive threads when they queued input (`react = true`); kept across reloads.
    pub wake: crate::wake::Wake,
}

/// The local UDP port exports are sent from (0 until the exporter has bound it).
#[derive(Clone, Default, Debug)]
pub struct OwnPort(std::sync::Arc<std::sync::atomic::AtomicU16>);

impl OwnPort {
    pub fn set(&self, port: u16) {
        self.0.store(port, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn get(&self) -> u16 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}
